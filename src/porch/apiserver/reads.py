"""The read verbs: get, list (JSON or Table, with ``limit``/``continue``) and watch."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from porch.apiserver.deadline import run_in_threadpool
from porch.apiserver.kinds import Body, Caller, ResourceType
from porch.apiserver.negotiate import wants_table
from porch.apiserver.status import JSONResponse
from porch.apiserver.table import check_include_object, table
from porch.apiserver.watchstream import WatchOptions, WatchResponse, WatchStream
from porch.errors import BadRequest

DEFAULT_WATCH_TIMEOUT = 1800.0  # kube-apiserver's --min-request-timeout


def _respond(
    request: Request, rt: ResourceType, items: list[Body], rv: str, **meta: Any
) -> Response:
    if wants_table(request):
        include = check_include_object(request.query_params.get("includeObject", ""))
        return JSONResponse(table(rt, items, resource_version=rv, include=include, list_meta=meta))
    return JSONResponse(
        {
            "kind": rt.list_kind_name,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": rv, **meta},
            "items": items,
        }
    )


def _respond_raw(rt: ResourceType, raw: list[bytes], rv: str, start: int, limit: int) -> Response:
    """A JSON list spliced from stored item texts: 10,000 items are neither parsed nor
    re-encoded on the way out."""
    meta: dict[str, Any] = {"resourceVersion": rv}
    if limit and start + limit < len(raw):
        meta["continue"] = encode_continue(rv, start + limit)
        meta["remainingItemCount"] = len(raw) - start - limit
        raw = raw[start : start + limit]
    elif start:
        raw = raw[start:]
    head = orjson.dumps({"kind": rt.list_kind_name, "apiVersion": rt.api_version, "metadata": meta})
    body = head[:-1] + b',"items":[' + b",".join(raw) + b"]}"
    return Response(body, media_type="application/json")


async def get(
    request: Request, rt: ResourceType, namespace: str, name: str, sub: str, caller: Caller
) -> Response:
    obj = await run_in_threadpool(rt.backend.get, caller, namespace, name, sub)
    if wants_table(request):
        include = check_include_object(request.query_params.get("includeObject", ""))
        rv = str(obj.get("metadata", {}).get("resourceVersion", ""))
        return JSONResponse(table(rt, [obj], resource_version=rv, include=include))
    return JSONResponse(obj)


def encode_continue(rv: str, start: int) -> str:
    raw = orjson.dumps({"rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        rv, start = str(data["rv"]), int(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("invalid continue token") from None
    if start < 0:
        raise BadRequest("invalid continue token")
    return rv, start


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "")
    if not raw:
        return 0
    if not raw.isdigit():
        raise BadRequest(f'invalid limit "{raw}"')
    return int(raw)


async def list_(
    request: Request, rt: ResourceType, namespace: str | None, caller: Caller
) -> Response:
    q = request.query_params
    limit = _limit(request)
    token = q.get("continue", "")
    start, snapshot_rv = 0, ""
    if token:
        snapshot_rv, start = decode_continue(token)
    raw_list = getattr(rt.backend, "list_raw", None)
    if raw_list is not None and not wants_table(request):
        raw, raw_rv = await run_in_threadpool(
            lambda: raw_list(
                caller,
                namespace,
                label_selector=q.get("labelSelector", ""),
                field_selector=q.get("fieldSelector", ""),
            )
        )
        if raw is not None:
            return _respond_raw(rt, raw, snapshot_rv or raw_rv, start, limit)
    items, rv = await run_in_threadpool(
        lambda: rt.backend.list(
            caller,
            namespace,
            label_selector=q.get("labelSelector", ""),
            field_selector=q.get("fieldSelector", ""),
        )
    )
    # A continued list re-reads and slices: pages are not one snapshot, but none is skipped
    # unless objects before the cut were deleted in between (documented in docs/).
    rv = snapshot_rv or rv
    meta: dict[str, Any] = {}
    if limit and start + limit < len(items):
        meta["continue"] = encode_continue(rv, start + limit)
        meta["remainingItemCount"] = len(items) - start - limit
        items = items[start : start + limit]
    elif start:
        items = items[start:]
    return _respond(request, rt, items, rv, **meta)


def _timeout(request: Request) -> float:
    raw = request.query_params.get("timeoutSeconds", "")
    if not raw:
        return DEFAULT_WATCH_TIMEOUT
    if not raw.isdigit():
        raise BadRequest(f'invalid timeoutSeconds "{raw}"')
    return float(raw)


async def watch(
    request: Request, rt: ResourceType, namespace: str | None, name: str, caller: Caller
) -> Response:
    q = request.query_params
    fields = q.get("fieldSelector", "")
    if name:  # watching one object is a watch with a name selector
        fields = ",".join(f for f in (fields, f"metadata.name={name}") if f)
    include = check_include_object(q.get("includeObject", ""))
    timeout = _timeout(request)
    engine = request.app.state.engine
    start_rv = await run_in_threadpool(engine.store.current_resource_version)
    # An expired resourceVersion raises Expired here, before streaming: a plain 410 answer.
    watcher = await run_in_threadpool(
        lambda: rt.backend.watch(
            caller,
            namespace,
            label_selector=q.get("labelSelector", ""),
            field_selector=fields,
            resource_version=q.get("resourceVersion", ""),
        )
    )
    opts = WatchOptions(
        as_table=wants_table(request),
        include=include,
        bookmarks=(q.get("allowWatchBookmarks", "").lower() in ("true", "1")),
        timeout=timeout,
        start_rv=int(start_rv),
        # what the watcher's filter depends on: streams alike share one selector check
        group=(rt.group, rt.plural, namespace, q.get("labelSelector", ""), fields),
    )
    metrics = request.app.state.metrics
    metrics.watch_opened(rt.plural)
    return WatchResponse(
        WatchStream(rt, watcher, opts), watcher, lambda: metrics.watch_closed(rt.plural)
    )
