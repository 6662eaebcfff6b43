"""The ASGI application: routes, authentication, error mapping, access log and metrics.

Every request gets an id and exactly one JSON access-log line (request id, user, verb,
resource, name, code, ms) when it finishes — for a watch, when the stream ends. Bodies are
never logged: they can hold Secret data.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from porch.apiserver import discovery, rest
from porch.apiserver.access import Security
from porch.apiserver.kinds import Caller
from porch.apiserver.metrics import Metrics
from porch.apiserver.negotiate import discovery_version
from porch.apiserver.openapi import OpenAPI
from porch.apiserver.registry import Registry, build_registry
from porch.apiserver.status import JSONResponse, error_response, status_body, status_response
from porch.apiserver.ui import ui_routes
from porch.engine import Engine
from porch.errors import MethodNotSupported, NotFound, PorchError

DEFAULT_MAX_BODY = 6 * 1024 * 1024
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")

access_log = logging.getLogger("porch.apiserver.access")


class AccessLog:
    """Pure ASGI wrapper (no buffering), so it also times streaming watch responses."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.monotonic()
        headers = dict(scope.get("headers") or [])
        # 32 random hex digits like uuid4().hex, at a tenth of its cost
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or os.urandom(16).hex()
        note: dict[str, Any] = {"requestID": request_id}
        scope.setdefault("state", {})["note"] = note
        code = 500

        async def tracking_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        finally:
            elapsed = time.monotonic() - started
            verb = note.get("verb") or scope["method"].lower()
            self._metrics.observe(verb, note.get("resource", ""), code, elapsed)
            line = {
                "requestID": request_id,
                "user": note.get("user", ""),
                "verb": verb,
                "resource": note.get("resource", ""),
                "subresource": note.get("subresource", ""),
                "name": note.get("name", ""),
                "path": scope["path"],
                "code": code,
                "ms": round(elapsed * 1000, 2),
            }
            access_log.info(orjson.dumps(line).decode())


def _client_cert_subject(request: Request) -> str | None:
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    name = tls.get("client_cert_name")
    return str(name) if name else None


class Api:
    def __init__(self, engine: Engine, security: Security, max_body: int) -> None:
        self.engine = engine
        self.registry: Registry = build_registry(engine)
        self.security = security
        self.max_body = max_body
        self.openapi = OpenAPI(self.registry)

    def caller(self, request: Request) -> Caller:
        caller = self.security.identify(request.headers, _client_cert_subject(request))
        request.state.note["user"] = caller.name
        return caller

    async def dispatch(self, request: Request) -> Response:
        """Entry for ``/api…``, ``/apis…`` and ``/openapi…``; maps every error to a Status."""
        parts = [p for p in request.url.path.split("/") if p]
        target: rest.Target | None = None
        try:
            caller = self.caller(request)
            if parts[0] == "openapi":
                return self._openapi(request, parts[1:])
            if parts[0] == "api":
                group, rest_parts = "", parts[1:]
            else:
                group, rest_parts = (parts[1] if len(parts) > 1 else ""), parts[2:]
            if parts[0] == "apis" and len(parts) <= 2 or parts[0] == "api" and len(parts) <= 2:
                return self._discovery(request, parts)
            version = rest_parts[0]
            target = rest.parse_target(self.registry, group, version, rest_parts[1:])
            return await rest.handle(
                request,
                target,
                caller=caller,
                security=self.security,
                max_body=self.max_body,
                note=request.state.note,
            )
        except PorchError as exc:
            if target is None:
                return error_response(exc)
            return error_response(
                exc, name=target.name, group=target.rt.group, kind=target.rt.plural
            )
        except Exception:  # a real bug: say so without leaking internals
            logging.getLogger("porch.apiserver").error(traceback.format_exc())
            return status_response(status_body(500, "InternalError", "internal server error"))

    def _discovery(self, request: Request, parts: list[str]) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotSupported(
                "the server does not allow this method on the requested resource"
            )
        if parts == ["api"] or parts == ["apis"]:
            version = discovery_version(request)
            if version:
                body = discovery.aggregated(self.registry, version, core=parts == ["api"])
                return JSONResponse(
                    body, media_type=discovery.DISCOVERY_CONTENT_TYPE.format(v=version)
                )
            if parts == ["api"]:
                return JSONResponse(discovery.api_versions(request.url.netloc))
            return JSONResponse(discovery.api_group_list(self.registry))
        if parts == ["api", "v1"]:
            return JSONResponse(discovery.resource_list(self.registry, "", "v1"))
        if parts[0] == "apis":
            found = discovery.api_group(self.registry, parts[1])
            if found is not None:
                return JSONResponse(found)
        raise NotFound("the server could not find the requested resource")

    def discovery_group_version(self, group: str, version: str) -> Response:
        if version not in self.registry.group_versions().get(group, []):
            raise NotFound("the server could not find the requested resource")
        return JSONResponse(discovery.resource_list(self.registry, group, version))

    def _openapi(self, request: Request, parts: list[str]) -> Response:
        if parts == ["v3"]:
            return JSONResponse(self.openapi.root)
        if len(parts) > 1 and parts[0] == "v3":
            doc = self.openapi.documents.get("/".join(parts[1:]))
            if doc is not None:
                return Response(doc, media_type="application/json")
        # v2 is requested as protobuf; a 404 makes kubectl fall back to v3.
        raise NotFound("the server could not find the requested resource")


def create_app(
    engine: Engine,
    *,
    security: Security | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> ASGIApp:
    api = Api(engine, security or Security(allow_anonymous=True), max_body)
    metrics = Metrics(engine)

    async def version(request: Request) -> Response:
        return JSONResponse(discovery.VERSION_INFO)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        engine.store.current_resource_version()  # the store answers: we can serve
        return PlainTextResponse("ok")

    async def prometheus(request: Request) -> Response:
        try:
            api.caller(request)
        except PorchError as exc:
            return error_response(exc)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def apis(request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        # ``/apis/{g}/{v}`` is discovery; everything longer is a resource
        if len(parts) == 3 and parts[0] == "apis" and request.method in ("GET", "HEAD"):
            try:
                api.caller(request)
                return api.discovery_group_version(parts[1], parts[2])
            except PorchError as exc:
                return error_response(exc)
        return await api.dispatch(request)

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 404
        reason = "MethodNotAllowed" if code == 405 else "NotFound"
        message = "the server could not find the requested resource"
        return status_response(status_body(code, reason, message))

    routes = [
        Route("/version", version),
        Route("/healthz", healthz),
        Route("/livez", healthz),
        Route("/readyz", readyz),
        Route("/metrics", prometheus),
        Route("/openapi/{rest:path}", api.dispatch),
        Route("/api", apis),
        Route("/api/{rest:path}", apis, methods=ALL_METHODS),
        Route("/apis", apis),
        Route("/apis/{rest:path}", apis, methods=ALL_METHODS),
        *ui_routes(api.caller, api.security),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.engine = engine
    app.state.metrics = metrics
    return AccessLog(app, metrics)
