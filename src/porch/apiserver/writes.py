"""The write verbs: create (POST), update (PUT), patch (PATCH) and delete.

Each decodes the body, checks that it names the same kind, namespace and name as the URL (as
kube-apiserver does), and hands a whole object to the backend. PATCH reads the live object,
applies the patch here and writes the result like a PUT, so a patch without a
resourceVersion (kubectl edit/apply) still goes through the engine's optimistic check.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from porch.apiserver.codec import (
    APPLY_PATCH,
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    decode,
    decode_object,
    media_type,
    read_body,
)
from porch.apiserver.deadline import run_in_threadpool
from porch.apiserver.kinds import Body, Caller, ResourceType
from porch.apiserver.patch import apply_patch, json_patch, merge_patch, strategic_as_merge
from porch.apiserver.status import JSONResponse
from porch.errors import BadRequest, Conflict, NotFound, UnsupportedMediaType

STRATEGIC_REFUSED = (
    "the body of the request was in an unknown format - accepted media types include:"
    " application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)


# Warnings a backend raises while it serves one write; they leave as ``Warning`` headers, which
# kubectl prints (kube-apiserver's ``warning.AddWarning``). The list object is shared with the
# worker thread because anyio copies the context into it.
_WARNINGS: ContextVar[list[str] | None] = ContextVar("porch_write_warnings", default=None)


def add_warning(text: str) -> None:
    """Attach a warning to the response of the write being served (no-op outside one)."""
    sink = _WARNINGS.get()
    if sink is not None and text not in sink:
        sink.append(text)


def _warning_header(text: str) -> str:
    """RFC 7234 warn-value with code 299, as kube-apiserver writes it."""
    clean = " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{clean}"'


async def _run(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, str]]:
    sink: list[str] = []
    token = _WARNINGS.set(sink)
    try:
        result = await run_in_threadpool(fn, *args)
    finally:
        _WARNINGS.reset(token)
    return result, {"Warning": ", ".join(_warning_header(w) for w in sink)} if sink else {}


def check_identity(rt: ResourceType, body: Body, namespace: str, name: str = "") -> Body:
    """Fill in and check apiVersion, kind, namespace and (for PUT/PATCH) name."""
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != rt.api_version:
        raise BadRequest(
            f"the API version in the data ({api_version}) does not match the expected API"
            f" version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise BadRequest(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    body["apiVersion"], body["kind"] = rt.api_version, rt.kind
    meta = body.get("metadata")
    if meta is None:
        meta = body["metadata"] = {}
    if not isinstance(meta, dict):
        raise BadRequest("metadata must be an object")
    if rt.namespaced:
        if not meta.get("namespace"):
            meta["namespace"] = namespace
        elif meta["namespace"] != namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
    if name:
        if not meta.get("name"):
            meta["name"] = name
        elif meta["name"] != name:
            raise BadRequest(
                f"the name of the object ({meta['name']}) does not match the name on the URL"
                f" ({name})"
            )
    meta.pop("managedFields", None)
    return body


async def create(
    request: Request, rt: ResourceType, namespace: str, caller: Caller, limit: int
) -> Response:
    body = decode_object(await read_body(request, limit), media_type(request))
    body = check_identity(rt, body, namespace)
    created = await run_in_threadpool(rt.backend.create, caller, namespace, body)
    return JSONResponse(created, status_code=201)


async def update(
    request: Request,
    rt: ResourceType,
    namespace: str,
    name: str,
    sub: str,
    caller: Caller,
    limit: int,
) -> Response:
    body = decode_object(await read_body(request, limit), media_type(request))
    body = check_identity(rt, body, namespace, name)
    updated, headers = await _run(rt.backend.update, caller, namespace, body, sub)
    return JSONResponse(updated, headers=headers)


def _patched(mtype: str, current: Body, doc: Any) -> Any:
    if mtype == JSON_PATCH:
        return json_patch(current, doc)
    if mtype == APPLY_PATCH:
        return apply_patch(current, doc)
    return merge_patch(current, doc)


async def patch(
    request: Request,
    rt: ResourceType,
    namespace: str,
    name: str,
    sub: str,
    caller: Caller,
    limit: int,
) -> Response:
    mtype = media_type(request)
    raw = await read_body(request, limit)
    if mtype == STRATEGIC_PATCH:
        if rt.group:  # our kinds have no strategic-merge schema, like CRDs
            raise UnsupportedMediaType(STRATEGIC_REFUSED)
        doc, mtype = strategic_as_merge(decode(raw, JSON)), MERGE_PATCH
    else:
        doc = decode(raw, mtype, patch=True)
    try:
        current = await run_in_threadpool(rt.backend.get, caller, namespace, name, sub)
    except NotFound:
        if mtype != APPLY_PATCH or sub:
            raise
        # Server-side apply creates what does not exist yet (kubectl apply --server-side).
        body = check_identity(rt, apply_patch(None, doc), namespace, name)
        created = await run_in_threadpool(rt.backend.create, caller, namespace, body)
        return JSONResponse(created, status_code=201)
    new = _patched(mtype, current, doc)
    if not isinstance(new, dict):
        raise BadRequest("the patched object is not a JSON object")
    new = check_identity(rt, new, namespace, name)
    updated, headers = await _run(rt.backend.update, caller, namespace, new, sub)
    return JSONResponse(updated, headers=headers)


def _check_preconditions(current: Body, pre: Any) -> None:
    if not isinstance(pre, dict):
        raise BadRequest("preconditions must be an object")
    meta = current.get("metadata", {})
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        want = pre.get(key)
        if want and want != meta.get(key):
            raise Conflict(
                f"Precondition failed: {label} in precondition: {want}, {label} in object meta:"
                f" {meta.get(key, '')}"
            )


async def delete(
    request: Request, rt: ResourceType, namespace: str, name: str, caller: Caller, limit: int
) -> Response:
    raw = await read_body(request, limit)
    options = decode_object(raw, media_type(request)) if raw.strip() else {}
    if options.get("dryRun"):
        raise BadRequest("dryRun is not supported")
    if options.get("preconditions"):
        current = await run_in_threadpool(rt.backend.get, caller, namespace, name, "")
        _check_preconditions(current, options["preconditions"])
    deleted = await run_in_threadpool(rt.backend.delete, caller, namespace, name)
    return JSONResponse(deleted)
