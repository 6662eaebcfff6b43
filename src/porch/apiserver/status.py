"""Every error leaves the server as a ``metav1.Status``; this is the one place that builds it.

kubectl prints ``Error from server (<reason>): <message>`` from these bodies, so ``reason`` and
``message`` matter more than the HTTP code; ``details`` names the object the way
kube-apiserver does (``kind`` is the resource plural there, not the Kind).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from porch.errors import PorchError


class JSONResponse(Response):
    """orjson-encoded JSON; non-str keys never occur in our wire shapes."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def status_body(
    code: int,
    reason: str,
    message: str,
    *,
    name: str = "",
    group: str = "",
    kind: str = "",
    causes: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if causes:
        details["causes"] = causes
    if details:
        body["details"] = details
    return body


def status_from_error(
    exc: PorchError, *, name: str = "", group: str = "", kind: str = ""
) -> dict[str, Any]:
    """The Status for a deliberate error; the error's own details win over the request's."""
    d = exc.details
    causes = [
        {k: v for k, v in (("message", c.message), ("field", c.field), ("reason", c.reason)) if v}
        for c in d.causes
    ]
    return status_body(
        exc.code,
        exc.reason,
        exc.message,
        name=d.name or name,
        group=d.group or group,
        kind=d.kind or kind,
        causes=causes,
    )


def status_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["code"]))


def error_response(
    exc: PorchError, *, name: str = "", group: str = "", kind: str = ""
) -> JSONResponse:
    return status_response(status_from_error(exc, name=name, group=group, kind=kind))


def success_status(*, name: str, group: str, kind: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": kind},
    }
