"""Who is calling and what they may do: the seam to the authentication/RBAC module.

The token, certificate and RBAC logic lives in ``porch.apiserver.auth``; this module only
defines the shapes the REST layer needs (so tests and ``--allow-anonymous`` work without it)
and turns a refusal into Kubernetes' exact 401/403 wording, which kubectl prints verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from porch.apiserver.kinds import Caller
from porch.errors import Forbidden, Unauthorized

ANONYMOUS = Caller("system:anonymous", ("system:unauthenticated",))


class UserLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...


class Authenticator(Protocol):
    def authenticate(
        self, headers: Mapping[str, str], client_cert_subject: str | None
    ) -> UserLike | None: ...


class Authorizer(Protocol):
    def allowed(
        self,
        user: UserLike,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str,
    ) -> bool: ...


class NoCredentials:
    """Nobody is recognised: only useful together with anonymous access."""

    def authenticate(
        self, headers: Mapping[str, str], client_cert_subject: str | None
    ) -> UserLike | None:
        return None


class AllowAll:
    def allowed(
        self,
        user: UserLike,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str,
    ) -> bool:
        return True


@dataclass(frozen=True)
class Security:
    authenticator: Authenticator = field(default_factory=NoCredentials)
    authorizer: Authorizer = field(default_factory=AllowAll)
    allow_anonymous: bool = False

    def identify(self, headers: Mapping[str, str], client_cert_subject: str | None) -> Caller:
        user = self.authenticator.authenticate(headers, client_cert_subject)
        if user is not None:
            return Caller(user.name, tuple(user.groups))
        if self.allow_anonymous:
            return ANONYMOUS
        raise Unauthorized("Unauthorized")

    def authorize(
        self,
        caller: Caller,
        *,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str | None,
        name: str,
    ) -> None:
        if self.authorizer.allowed(caller, verb, group, resource, subresource, namespace or ""):
            return
        raise Forbidden(
            forbidden_message(caller, verb, group, resource, subresource, namespace, name)
        )


def forbidden_message(
    caller: Caller,
    verb: str,
    group: str,
    resource: str,
    subresource: str,
    namespace: str | None,
    name: str,
) -> str:
    """kube-apiserver's wording, e.g. ``packagerevisions.porch.kpt.dev "x" is forbidden: …``."""
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    full = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{subject} is forbidden: User "{caller.name}" cannot {verb} resource "{full}"'
        f' in API group "{group}" {scope}'
    )


class _Authorization:
    """Hands ``porch.apiserver.auth.Authorizer`` the user type it expects."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def allowed(
        self,
        user: UserLike,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str,
    ) -> bool:
        from porch.apiserver.auth import User

        return bool(
            self._inner.allowed(
                User(user.name, tuple(user.groups)), verb, group, resource, subresource, namespace
            )
        )


def security_from_files(
    *,
    token_file: Path | None,
    rbac_file: Path | None,
    allow_anonymous: bool,
    client_ca: bytes | None = None,
) -> Security:
    """Tokens, client certificates and RBAC from files (``porch.apiserver.auth``)."""
    from porch.apiserver.auth import Authenticator
    from porch.apiserver.auth import Authorizer as PolicyAuthorizer

    return Security(
        authenticator=Authenticator(
            token_file, allow_anonymous=allow_anonymous, client_ca=client_ca
        ),
        authorizer=_Authorization(PolicyAuthorizer(rbac_file)),
        allow_anonymous=allow_anonymous,
    )
