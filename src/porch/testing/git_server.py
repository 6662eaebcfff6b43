"""A small smart-HTTP git server for tests: ``git http-backend`` behind ``http.server``.

It serves every bare repository below ``root`` on 127.0.0.1 (port chosen at run time), can
require HTTP basic or bearer authentication, and can misbehave on demand (answer 500, hang,
redirect elsewhere) so clients' error handling can be tested.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

Fault = Literal["500", "hang"]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    authorization: str


class GitHttpServer:
    """Context manager; ``url`` is the base URL, ``repo_url(name)`` a repository's URL."""

    def __init__(
        self,
        root: Path,
        *,
        basic: tuple[str, str] | None = None,
        bearer: str | None = None,
        redirect_to: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.basic = basic
        self.bearer = bearer
        self.redirect_to = redirect_to
        self.redirect_code = 302  # or 301, 307, 308
        self.fault: Fault | None = None
        self.requests: list[SeenRequest] = []
        self.hanging = threading.Event()  # set once a request is being held by "hang"
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    def set_fault(self, fault: Fault | None) -> None:
        self.fault = fault
        if fault != "hang":
            self._release.set()
        else:
            self._release.clear()
            self.hanging.clear()

    def __enter__(self) -> GitHttpServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _authorized(self, header: str) -> tuple[bool, str]:
        """Whether ``header`` satisfies the configured scheme, and the challenge if not."""
        if self.basic is not None:
            user, password = self.basic
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return hmac.compare_digest(header, f"Basic {token}"), 'Basic realm="git"'
        if self.bearer is not None:
            return hmac.compare_digest(header, f"Bearer {self.bearer}"), 'Bearer realm="git"'
        return True, ""


class _Handler(BaseHTTPRequestHandler):
    owner: GitHttpServer

    def log_message(self, format: str, *args: object) -> None:
        return None  # keep test output clean

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        owner = self.owner
        authorization = self.headers.get("Authorization", "")
        owner._record(SeenRequest(self.command, self.path, authorization))
        if owner.fault == "hang":
            owner.hanging.set()
            owner._release.wait()
            self.close_connection = True
            return
        if owner.fault == "500":
            self._reply(500, {"Content-Type": "text/plain"}, b"simulated failure\n")
            return
        if owner.redirect_to is not None:
            self._reply(owner.redirect_code, {"Location": owner.redirect_to + self.path}, b"")
            return
        ok, challenge = owner._authorized(authorization)
        if not ok:
            self._reply(401, {"WWW-Authenticate": challenge}, b"unauthorized\n")
            return
        body = self._read_body()
        status, headers, payload = self._run_backend(body)
        self._reply(status, headers, payload)

    def _read_body(self) -> bytes:
        if self.command != "POST":
            return b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _run_backend(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": split.path,
            "QUERY_STRING": split.query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": "porch-test",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            # Enable pushes and trust the test's repositories without editing their config.
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GIT_CONFIG_KEY_1": "safe.directory",
            "GIT_CONFIG_VALUE_1": "*",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.owner.root),
        }
        proc = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        if proc.returncode != 0 and not sep:
            return 500, {"Content-Type": "text/plain"}, proc.stderr
        return status, headers, payload

    def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
