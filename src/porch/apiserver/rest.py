"""Resource URLs → verbs → backends: the generic REST handler every kind goes through.

Paths follow kube-apiserver: ``/apis/{g}/{v}[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]``
(and ``/api/v1/…`` for the core group), plus the legacy ``/watch/`` prefix. Authorization is
checked here with the verb Kubernetes would use (``list`` vs ``watch``, ``patch`` vs
``update``), then the read or write verb runs its backend call in the thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from porch.apiserver import reads, writes
from porch.apiserver.access import Security
from porch.apiserver.kinds import Caller, ResourceType
from porch.apiserver.registry import Registry
from porch.errors import BadRequest, MethodNotSupported, NotFound

WRITE_VERBS = ("create", "update", "patch", "delete")


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str | None  # None: across all namespaces
    name: str = ""
    subresource: str = ""
    watch_path: bool = False


def parse_target(registry: Registry, group: str, version: str, parts: list[str]) -> Target:
    """``parts`` is what follows ``/apis/{g}/{v}/`` (or ``/api/v1/``); unknown → 404."""
    watch_path = bool(parts) and parts[0] == "watch"
    if watch_path:
        parts = parts[1:]
    namespace: str | None = None
    if len(parts) >= 3 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    if not parts or len(parts) > 3:
        raise NotFound("the server could not find the requested resource")
    rt = registry.find(group, version, parts[0])
    if rt is None:
        raise NotFound("the server could not find the requested resource")
    name = parts[1] if len(parts) > 1 else ""
    sub = parts[2] if len(parts) > 2 else ""
    if name and namespace is None and rt.namespaced:
        raise NotFound("the server could not find the requested resource")
    if sub and sub not in rt.subresources:
        raise NotFound("the server could not find the requested resource")
    return Target(rt, namespace, name, sub, watch_path)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def verb_of(request: Request, target: Target) -> str:
    method = request.method
    watching = target.watch_path or _truthy(request.query_params.get("watch"))
    if not target.name:
        verbs = {"GET": "watch" if watching else "list", "POST": "create"}
        verbs["DELETE"] = "deletecollection"
    else:
        verbs = {"GET": "watch" if watching else "get", "PUT": "update", "PATCH": "patch"}
        verbs["DELETE"] = "delete"
    if method == "HEAD":
        method = "GET"
    if method not in verbs:
        raise MethodNotSupported(
            f"the server does not allow this method on the requested resource ({method})"
        )
    return verbs[method]


def _check_supported(target: Target, verb: str) -> None:
    rt = target.rt
    if target.subresource:
        allowed: tuple[str, ...] = ("get", "update", "patch")
    elif target.namespace is None and rt.namespaced:
        allowed = tuple(v for v in rt.verbs if v in ("list", "watch"))
    else:
        allowed = rt.verbs
    if verb not in allowed:
        raise MethodNotSupported(
            "the server does not allow this method on the requested resource"
            f" ({verb} {rt.qualified})"
        )


def _check_dry_run(request: Request, verb: str) -> None:
    # Never ignore dryRun silently: a client that asked for it must not see a real write.
    if verb in WRITE_VERBS and request.query_params.getlist("dryRun"):
        raise BadRequest("dryRun is not supported")


async def handle(
    request: Request,
    target: Target,
    *,
    caller: Caller,
    security: Security,
    max_body: int,
    note: dict[str, Any],
) -> Response:
    verb = verb_of(request, target)
    rt = target.rt
    note.update(verb=verb, resource=rt.plural, name=target.name, subresource=target.subresource)
    security.authorize(
        caller,
        verb=verb,
        group=rt.group,
        resource=rt.plural,
        subresource=target.subresource,
        namespace=target.namespace,
        name=target.name,
    )
    _check_supported(target, verb)
    _check_dry_run(request, verb)
    if verb == "get":
        return await reads.get(
            request, rt, target.namespace or "", target.name, target.subresource, caller
        )
    if verb == "list":
        return await reads.list_(request, rt, target.namespace, caller)
    if verb == "watch":
        return await reads.watch(request, rt, target.namespace, target.name, caller)
    ns = target.namespace or ""
    if verb == "create":
        return await writes.create(request, rt, ns, caller, max_body)
    if verb == "update":
        return await writes.update(
            request, rt, ns, target.name, target.subresource, caller, max_body
        )
    if verb == "patch":
        return await writes.patch(
            request, rt, ns, target.name, target.subresource, caller, max_body
        )
    return await writes.delete(request, rt, ns, target.name, caller, max_body)
