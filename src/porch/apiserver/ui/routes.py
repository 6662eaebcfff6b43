"""Routes of the web UI: the page, its static files and a batched self access review.

Porch serves no ``SelfSubjectAccessReview``, so the UI asks ``/ui/api/access`` which of the
actions it is about to offer the caller may perform. The answer comes from the same
``Security`` object the REST handler uses, so it cannot drift from what a write would get; a
403 from a write is still shown when the policy changed in between.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from porch.apiserver.access import Security
from porch.apiserver.kinds import Caller
from porch.apiserver.status import JSONResponse, error_response
from porch.errors import BadRequest, MethodNotSupported, PorchError

STATIC_DIR = Path(__file__).with_name("static")
MAX_CHECKS = 64
MAX_BODY = 64 * 1024
VERBS = frozenset(
    ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
)

# The page only loads its own files; file contents are rendered as text, never as markup.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def _check(item: Any, index: int) -> tuple[str, str, str, str, str]:
    if not isinstance(item, dict):
        raise BadRequest(f"checks[{index}] must be an object")
    unknown = sorted(set(item) - {"verb", "group", "resource", "subresource", "namespace"})
    if unknown:
        raise BadRequest(f"checks[{index}]: unknown field(s) {unknown}")
    fields = {k: item.get(k, "") for k in ("verb", "group", "resource", "subresource")}
    fields["namespace"] = item.get("namespace", "")
    for key, value in fields.items():
        if not isinstance(value, str):
            raise BadRequest(f"checks[{index}].{key} must be a string")
    if fields["verb"] not in VERBS:
        raise BadRequest(f"checks[{index}].verb: unknown verb {fields['verb']!r}")
    if not fields["resource"]:
        raise BadRequest(f"checks[{index}].resource is required")
    return (
        fields["verb"],
        fields["group"],
        fields["resource"],
        fields["subresource"],
        fields["namespace"],
    )


def parse_checks(raw: bytes) -> list[tuple[str, str, str, str, str]]:
    """``{"checks": [{verb, group, resource, subresource?, namespace?}, …]}`` → tuples."""
    if len(raw) > MAX_BODY:
        raise BadRequest(f"request body larger than {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("checks"), list):
        raise BadRequest('request body must be {"checks": [...]}')
    checks = body["checks"]
    if len(checks) > MAX_CHECKS:
        raise BadRequest(f"at most {MAX_CHECKS} checks per request")
    return [_check(item, i) for i, item in enumerate(checks)]


def ui_routes(identify: Callable[[Request], Caller], security: Security) -> list[BaseRoute]:
    """Routes under ``/ui``; ``identify`` authenticates like every API request."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)

    async def to_index(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    async def access(request: Request) -> Response:
        try:
            if request.method != "POST":
                raise MethodNotSupported("use POST")
            caller = identify(request)
            checks = parse_checks(await request.body())
        except PorchError as exc:
            return error_response(exc)
        allowed = [
            security.authorizer.allowed(caller, verb, group, resource, sub, namespace)
            for verb, group, resource, sub, namespace in checks
        ]
        return JSONResponse(
            {"user": caller.name, "groups": list(caller.groups), "allowed": allowed}
        )

    return [
        Route("/ui", to_index),
        Route("/ui/", index),
        Route("/ui/api/access", access, methods=["GET", "POST"]),
        Mount("/ui/static", app=_Static(directory=STATIC_DIR), name="ui-static"),
    ]
