"""Bearer-token authentication for libgit2 through a loopback forwarder.

libgit2 has no bearer scheme, and its custom-header option sends the header to whatever host a
redirect leads to. Instead, a repository with a bearer token is reached through a tiny HTTP
server on 127.0.0.1: each registered route forwards ``/<route>/<path>`` to the route's origin
(http or https) with ``Authorization: Bearer …`` added. Redirects are never followed here:
a redirect within the same origin is rewritten to come back through the route, and one to
another origin is handed to libgit2 unchanged, so the token never leaves its own host.
"""

from __future__ import annotations

import http.client
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urljoin, urlsplit

_HOP_BY_HOP = frozenset(
    {
        "authorization",
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_TIMEOUT_S = 120.0


@dataclass
class Route:
    scheme: str
    netloc: str
    token: str = field(repr=False)
    prefix: str = ""  # "http://127.0.0.1:<port>/<id>"
    last_error: str = ""

    def local_url(self, url: str) -> str:
        """``url`` (same origin as the route) as seen through the forwarder."""
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.prefix}{parts.path}{query}"


class BearerForwarder:
    """One process-wide forwarder; routes live as long as the process."""

    _shared: BearerForwarder | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        handler = type("Handler", (_Handler,), {"routes": self._routes})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()

    @classmethod
    def shared(cls) -> BearerForwarder:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = BearerForwarder()
            return cls._shared

    def register(self, url: str, token: str) -> tuple[str, Route]:
        """A local URL that reaches ``url`` with the token, and the route carrying it."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"bearer tokens need an http(s) URL, not {parts.scheme}")
        route_id = secrets.token_hex(8)
        host, port = self._server.server_address[:2]
        route = Route(parts.scheme, parts.netloc, token, f"http://{host!s}:{port}/{route_id}")
        self._routes[route_id] = route
        return route.local_url(url), route


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Route]

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        route_id, _, rest = self.path.lstrip("/").partition("/")
        route = self.routes.get(route_id)
        if route is None:
            self.send_error(404)
            return
        body = self._read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Authorization"] = f"Bearer {route.token}"
        headers["Content-Length"] = str(len(body))
        conn = _connect(route)
        try:
            conn.request(self.command, "/" + rest, body=body or None, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as err:
            route.last_error = f"cannot reach {route.netloc}: {err}"
            conn.close()
            self.send_error(502, "upstream unreachable")
            return
        try:
            self._relay(route, response)
        finally:
            conn.close()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _relay(self, route: Route, response: http.client.HTTPResponse) -> None:
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            lowered = name.lower()
            if lowered in _HOP_BY_HOP:
                continue
            if lowered == "location":
                value = _rewrite_location(route, self.path, value)
            self.send_header(name, value)
        length = response.getheader("Content-Length")
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        # Without a length, the body ends when this (HTTP/1.0) connection closes.
        while chunk := response.read(65536):
            self.wfile.write(chunk)


def _connect(route: Route) -> http.client.HTTPConnection:
    if route.scheme == "https":
        return http.client.HTTPSConnection(
            route.netloc, timeout=_TIMEOUT_S, context=ssl.create_default_context()
        )
    return http.client.HTTPConnection(route.netloc, timeout=_TIMEOUT_S)


def _rewrite_location(route: Route, local_path: str, location: str) -> str:
    _, _, rest = local_path.lstrip("/").partition("/")
    target = urlsplit(urljoin(f"{route.scheme}://{route.netloc}/{rest}", location))
    if (target.scheme, target.netloc) == (route.scheme, route.netloc):
        return route.local_url(target.geturl())
    return location
