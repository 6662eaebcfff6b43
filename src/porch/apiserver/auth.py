"""Authentication (static tokens, client certificates) and authorization (an RBAC policy file).

Framework-free on purpose: the HTTP layer hands in headers and the verified client-certificate
subject and gets back a ``User``, then asks the ``Authorizer`` before touching the engine. File
formats are documented in ``docs/auth.md``.

* **Secrets never leave this module.** Errors name files and line numbers, never a token; the
  token table keeps SHA-256 digests; ``redact`` scrubs strings bound for logs.
* **Files are re-read when they change** (mtime, size or inode), so an admin can add a token or
  tighten a rule without a restart. A reload that fails to parse keeps the previous contents and
  logs a warning (a half-saved file must not lock everyone out); at startup it fails loudly.
"""

from __future__ import annotations

import base64
import csv
import enum
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from porch.errors import Unauthorized

log = logging.getLogger(__name__)

AUTHENTICATED: Final = "system:authenticated"
UNAUTHENTICATED: Final = "system:unauthenticated"
# Allowed everything whatever the policy says, as in kube-apiserver, so the admin kubeconfig
# written on first start keeps working when an RBAC file is added later.
MASTERS: Final = "system:masters"

VERBS: Final = frozenset("get list watch create update patch delete deletecollection *".split())


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


ANONYMOUS: Final = User("system:anonymous", (UNAUTHENTICATED,))


class AuthFileError(ValueError):
    """A token or policy file is malformed; the message names the file and the line or rule."""


def _authenticated(name: str, groups: Iterable[str]) -> User:
    unique = tuple(dict.fromkeys(g for g in groups if g and g != AUTHENTICATED))
    return User(name, (*unique, AUTHENTICATED))


_T = TypeVar("_T")


class _WatchedFile(Generic[_T]):
    """Parsed contents of a file, re-parsed when its stat signature changes."""

    def __init__(self, path: Path, parse: Callable[[Path], _T]) -> None:
        self._path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._value = parse(path)  # errors at startup propagate

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def get(self) -> _T:
        signature = self._stat()
        if signature == self._signature:
            return self._value
        with self._lock:
            if signature != self._signature:
                try:
                    self._value = self._parse(self._path)
                except (OSError, AuthFileError) as err:
                    why = redact(str(err))
                    log.warning("%s: reload failed, kept previous contents: %s", self._path, why)
                self._signature = signature
            return self._value


@dataclass(frozen=True)
class TokenEntry:
    user: User
    uid: str
    line: int


def parse_token_file(path: Path) -> dict[bytes, TokenEntry]:
    """Parse a Kubernetes static token CSV: ``token,user,uid[,"group1,group2"]``.

    Keys are SHA-256 digests. Extra columns are an error, not ignored: the likely cause is an
    unquoted group list, and silently dropping groups would change what a user may do.
    """
    table: dict[bytes, TokenEntry] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}: line {lineno}"
        try:
            row = next(csv.reader([stripped], skipinitialspace=True, strict=True))
        except csv.Error as err:
            raise AuthFileError(f"{where}: malformed CSV ({err})") from None
        fields = [field.strip() for field in row]
        if not 3 <= len(fields) <= 4:
            raise AuthFileError(
                f'{where}: expected 3 or 4 columns (token,user,uid,"group1,group2"), '
                f"got {len(fields)}"
            )
        token, name, uid = fields[:3]
        if not token or not name:
            raise AuthFileError(f"{where}: token and user must not be empty")
        groups = [g.strip() for g in fields[3].split(",")] if len(fields) == 4 else []
        digest = hashlib.sha256(token.encode()).digest()
        if digest in table:
            raise AuthFileError(f"{where}: duplicate token (first on line {table[digest].line})")
        table[digest] = TokenEntry(_authenticated(name, groups), uid, lineno)
    return table


_RDN = re.compile(r"((?:[^,+\\]|\\.)+)([,+]|$)")


def user_from_subject(subject: str) -> User:
    """A user from an RFC 4514 subject string: CN is the name, each O a group."""
    name = ""
    groups: list[str] = []
    for match in _RDN.finditer(subject.strip()):
        key, _, value = match.group(1).partition("=")
        value = re.sub(r"\\([0-9a-fA-F]{2}|.)", _unescape, value)
        if key.strip().upper() == "CN":
            name = value
        elif key.strip().upper() == "O":
            groups.append(value)
    if not name:
        raise Unauthorized("Unauthorized")
    return _authenticated(name, groups)


def _unescape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    return chr(int(escaped, 16)) if len(escaped) == 2 else escaped


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Plain dicts are case-sensitive, Starlette's Headers are not: accept both.
    return next((value for key, value in headers.items() if key.lower() == name), None)


class Authenticator:
    """Turns request credentials into a ``User``. A bearer token, when present, decides alone
    (an invalid one is 401 even where a client certificate or anonymous access would have been
    accepted, so a typo never silently downgrades a caller); then a client certificate (only if
    ``client_ca`` is set: the CA the HTTP layer loads into its TLS context); then anonymous.
    """

    def __init__(
        self, token_file: Path | None, *, allow_anonymous: bool, client_ca: bytes | None = None
    ) -> None:
        self.allow_anonymous = allow_anonymous
        self.client_ca = client_ca
        self._tokens = _WatchedFile(token_file, parse_token_file) if token_file else None

    def authenticate(
        self, headers: Mapping[str, str], client_cert_subject: str | None = None
    ) -> User:
        authorization = _header(headers, "authorization")
        if authorization is not None:
            return self._from_authorization(authorization)
        if client_cert_subject and self.client_ca is not None:
            return user_from_subject(client_cert_subject)
        if self.allow_anonymous:
            return ANONYMOUS
        raise Unauthorized("Unauthorized")

    def _from_authorization(self, value: str) -> User:
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or self._tokens is None:
            raise Unauthorized("Unauthorized")
        # Hashing before the lookup is what makes it constant-time in the sense that matters:
        # how long the lookup takes depends on the digest, so timing cannot reveal how many
        # leading characters of a guessed token were right.
        entry = self._tokens.get().get(hashlib.sha256(token.encode()).digest())
        if entry is None:
            raise Unauthorized("Unauthorized")
        return entry.user


class AllNamespaces(enum.Enum):
    ALL = "*"


ALL: Final = AllNamespaces.ALL
Namespaces: TypeAlias = set[str] | Literal[AllNamespaces.ALL]


@dataclass(frozen=True)
class Rule:
    users: frozenset[str]
    groups: frozenset[str]
    namespaces: frozenset[str] | None  # None: every namespace and cluster scope
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]

    def binds(self, user: User) -> bool:
        return user.name in self.users or not self.groups.isdisjoint(user.groups)

    def grants(self, verb: str, group: str, resource: str, subresource: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and group not in self.api_groups:
            return False
        if "*" in self.resources:
            return True
        if not subresource:
            return resource in self.resources
        # A plain resource never covers its subresources (as in Kubernetes RBAC): that is what
        # lets "update packagerevisions" exclude "update packagerevisions/approval".
        return bool(
            {f"{resource}/{subresource}", f"{resource}/*", f"*/{subresource}"} & self.resources
        )

    def covers(self, namespace: str | None) -> bool:
        return self.namespaces is None or (bool(namespace) and namespace in self.namespaces)


_REQUIRED_KEYS = {"subjects", "namespaces", "resources", "verbs"}
_RULE_KEYS = _REQUIRED_KEYS | {"apiGroups"}


def _strings(value: Any, where: str, *, star: bool = False, empty: bool = False) -> frozenset[str]:
    value = ["*"] if star and value == "*" else value
    # "" is a real value only for apiGroups (the core group of Secrets).
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        raise AuthFileError(f"{where}: expected a non-empty list of strings")
    if not empty and "" in value:
        raise AuthFileError(f"{where}: expected a non-empty list of strings")
    return frozenset(value)


def _parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise AuthFileError(f"{where}: expected a mapping")
    if set(raw) - _RULE_KEYS:
        raise AuthFileError(f"{where}: unknown key(s) {sorted(map(str, set(raw) - _RULE_KEYS))}")
    if _REQUIRED_KEYS - set(raw):
        raise AuthFileError(f"{where}: missing key(s) {sorted(_REQUIRED_KEYS - set(raw))}")
    users: set[str] = set()
    groups: set[str] = set()
    subjects = raw["subjects"]
    if not isinstance(subjects, list) or not subjects:
        raise AuthFileError(f"{where}.subjects: expected a non-empty list")
    for i, subject in enumerate(subjects):
        one = isinstance(subject, dict) and len(subject) == 1
        kind, value = next(iter(subject.items())) if one else ("", None)
        if kind not in ("user", "group") or not isinstance(value, str) or not value:
            raise AuthFileError(f"{where}.subjects[{i}]: expected {{user: X}} or {{group: X}}")
        (users if kind == "user" else groups).add(value)
    namespaces = _strings(raw["namespaces"], f"{where}.namespaces", star=True)
    verbs = _strings(raw["verbs"], f"{where}.verbs")
    if verbs - VERBS:
        raise AuthFileError(f"{where}.verbs: unknown verb(s) {sorted(verbs - VERBS)}")
    return Rule(
        users=frozenset(users),
        groups=frozenset(groups),
        namespaces=None if "*" in namespaces else namespaces,
        api_groups=_strings(raw.get("apiGroups", ["*"]), f"{where}.apiGroups", empty=True),
        resources=_strings(raw["resources"], f"{where}.resources"),
        verbs=verbs,
    )


def parse_policy_file(path: Path) -> tuple[Rule, ...]:
    """Parse an RBAC policy file (``rules:`` list, see docs/auth.md); unknown keys are errors."""
    try:
        doc = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as err:
        raise AuthFileError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise AuthFileError(f"{path}: expected a mapping with a 'rules' list")
    if unknown := sorted(map(str, set(doc) - {"apiVersion", "kind", "rules"})):
        raise AuthFileError(f"{path}: unknown top-level key(s) {unknown}")
    return tuple(_parse_rule(r, f"{path}: rules[{i}]") for i, r in enumerate(doc["rules"]))


class Authorizer:
    """Answers "may USER do VERB on GROUP/RESOURCE[/SUBRESOURCE] in NAMESPACE?".

    Without a policy file every user the ``Authenticator`` let in may do everything (so
    anonymous callers only when anonymous access is on). With one, rules are a union of grants;
    nothing is denied explicitly. ``namespace`` is ``None`` (or "") for cluster-scoped requests
    and all-namespace lists, which need a rule with ``namespaces: "*"``.
    """

    def __init__(self, policy_file: Path | None) -> None:
        self._policy = _WatchedFile(policy_file, parse_policy_file) if policy_file else None

    def _rules(self, user: User) -> list[Rule] | None:
        """Rules binding ``user``, or ``None`` when the user may do everything."""
        if self._policy is None or MASTERS in user.groups:
            return None
        return [rule for rule in self._policy.get() if rule.binds(user)]

    def allowed(
        self,
        user: User,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str | None,
    ) -> bool:
        rules = self._rules(user)
        return rules is None or any(
            r.covers(namespace) and r.grants(verb, group, resource, subresource) for r in rules
        )

    def namespaces_for(
        self, user: User, verb: str, group: str, resource: str, subresource: str = ""
    ) -> Namespaces:
        """Namespaces in which ``user`` may ``verb`` the resource; ``ALL`` means every one."""
        rules = self._rules(user)
        if rules is None:
            return ALL
        result: set[str] = set()
        for rule in rules:
            if rule.grants(verb, group, resource, subresource):
                if rule.namespaces is None:
                    return ALL
                result |= rule.namespaces
        return result

    @staticmethod
    def forbidden_message(
        user: User,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str | None,
        name: str = "",
    ) -> str:
        """kube-apiserver's wording, so clients and scripts matching on it keep working."""
        qualified = f"{resource}.{group}" if group else resource
        target = f'{qualified} "{name}"' if name else qualified
        full = f"{resource}/{subresource}" if subresource else resource
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        return (
            f'{target} is forbidden: User "{user.name}" cannot {verb} resource "{full}" '
            f'in API group "{group}" {scope}'
        )


# A Basic value is base64 only, so punctuation after it ("…dXNlcjpwYXNz).") is not taken in.
_AUTH_VALUE = re.compile(r"(?i)\b(?:(bearer)(\s+)([^\s\"',;]+)|(basic)(\s+)([A-Za-z0-9+/]+=*))")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_SECRET_PAIR = re.compile(  # key=value and "key": "value" where the key names a secret
    r"(?i)((?:[a-z_-]*token|password|passwd|client-key-data)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"
)


def _auth_value(match: re.Match[str]) -> str:
    groups = match.groups()
    scheme, space, value = groups[:3] if groups[0] else groups[3:]
    # "Basic" is also an English word: redact only what decodes to user:password.
    if scheme.lower() == "basic":
        try:
            if b":" not in base64.b64decode(value, validate=True):
                return match.group(0)
        except ValueError:
            return match.group(0)
    return f"{scheme}{space}[REDACTED]"


def redact(text: str) -> str:
    """Remove bearer tokens, basic credentials and URL passwords from ``text`` (for logs)."""
    text = _AUTH_VALUE.sub(_auth_value, text)
    text = _URL_USERINFO.sub(r"\1[REDACTED]@", text)
    return _SECRET_PAIR.sub(r"\1[REDACTED]", text)
