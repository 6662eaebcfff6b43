"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.x).

``OciRegistry`` writes a config (filesystem storage in a temporary directory, deletes enabled,
``127.0.0.1:<free port>``, optionally htpasswd basic auth), starts ``docker-registry serve`` and
waits until ``/v2/`` answers. ``stop()``/``start()`` take it down and bring it back on the same
port and storage, so tests can check what survives an outage.

When the binary is missing, ``RegistryMissing`` says so; tests skip then, unless
``PORCH_REQUIRE_OCI=1`` makes them fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import httpx

BINARY_NAMES = ("docker-registry", "registry")


class RegistryMissing(RuntimeError):
    """No registry binary (``apt-get install docker-registry``), or no way to hash a password."""


class PasswordHasherMissing(RegistryMissing):
    """Neither the ``bcrypt`` package nor ``htpasswd``: only tests needing auth can't run."""


def find_binary() -> str:
    for name in BINARY_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RegistryMissing(
        "docker-registry is not installed (apt-get install docker-registry); "
        "OCI tests need a real registry"
    )


def required() -> bool:
    """PORCH_REQUIRE_OCI=1: a missing registry is a failure, not a skip."""
    return os.environ.get("PORCH_REQUIRE_OCI", "") not in ("", "0")


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (``bcrypt`` package, else apache2-utils)."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))
        return hashed.decode()
    except ImportError:
        pass
    tool = shutil.which("htpasswd")
    if tool is None:
        raise PasswordHasherMissing(
            "cannot create a bcrypt password: neither the bcrypt package nor htpasswd "
            "(apt-get install apache2-utils) is available"
        )
    out = subprocess.run(
        [tool, "-nbBC", "4", "u", password], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().split(":", 1)[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OciRegistry:
    """Context manager; ``host`` is ``127.0.0.1:PORT``, ``registry(prefix)`` a spec value."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        basic: tuple[str, str] | None = None,
        token: TokenServer | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.binary = find_binary()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="porch-oci-")
            root = Path(self._tmp.name)
        self.root = Path(root)
        self.basic = basic
        self.token = token
        self.start_timeout = start_timeout
        self.port = free_port()
        self.config = self.root / "config.yml"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def registry(self, prefix: str = "") -> str:
        return f"{self.host}/{prefix}" if prefix else self.host

    def _write_config(self) -> None:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
            "  secret: porch-test-secret",
        ]
        if self.basic is not None:
            user, password = self.basic
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(f"{user}:{bcrypt_hash(password)}\n")
            lines += ["auth:", "  htpasswd:", "    realm: porch-test", f"    path: {htpasswd}"]
        if self.token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {TokenServer.SERVICE}",
                f"    issuer: {TokenServer.ISSUER}",
                f"    rootcertbundle: {self.token.bundle}",
            ]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        if self._proc is not None:
            return
        log = open(self.root / "registry.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                [self.binary, "serve", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"docker-registry exited at start: {self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/v2/", timeout=1.0)
                if answer.status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not answer on {self.url}/v2/")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self) -> str:
        path = self.root / "registry.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def __enter__(self) -> OciRegistry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


FailRule = Callable[[str, str], bool]


class FaultProxy:
    """An HTTP proxy in front of a registry that answers 500 when ``fail(method, path)`` says so.

    ``host`` is what to put in ``spec.oci.registry``; ``fail`` may be changed at any time.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail: FailRule | None = None
        self.failed: list[tuple[str, str]] = []
        self.http = httpx.Client(timeout=30.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = 1 << 16  # one write per response; flushed after each request

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rule = proxy.fail
                if rule is not None and rule(self.command, self.path):
                    proxy.failed.append((self.command, self.path))
                    payload = b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}'
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                try:
                    answer = proxy.http.request(
                        self.command,
                        proxy.upstream + self.path,
                        headers=headers,
                        content=body,
                    )
                except httpx.HTTPError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    lowered = key.lower()
                    if lowered in ("content-length", "connection", "transfer-encoding"):
                        continue
                    if lowered == "content-encoding":
                        continue
                    if lowered == "location":
                        value = value.replace(proxy.upstream, proxy.url)
                    self.send_header(key, value)
                data = b"" if self.command == "HEAD" else answer.content
                length_header = answer.headers.get("content-length", str(len(data)))
                self.send_header(
                    "Content-Length", length_header if self.command == "HEAD" else str(len(data))
                )
                self.end_headers()
                if data:
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self.http.close()


class TokenServer:
    """A registry token service (the ``Bearer realm=…`` challenge flow) for one user.

    It signs ES256 JWTs with a self-signed certificate, sent in the ``x5c`` header, that the
    registry trusts through ``rootcertbundle``. ``GET /token?service=…&scope=…`` with the right
    basic credentials grants every action asked for; anything else gets 401.
    """

    SERVICE = "porch-test-registry"
    ISSUER = "porch-test-issuer"

    def __init__(self, user: str, password: str, root: Path) -> None:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.user, self.password = user, password
        self.issued: list[str] = []  # scopes granted
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "porch-test-token")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.bundle = root / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                expected = (
                    "Basic "
                    + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
                )
                if self.headers.get("Authorization", "") != expected:
                    self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return
                scopes = [s for value in query.get("scope", []) for s in value.split(" ")]
                token = server.sign(scopes)
                server.issued += scopes
                self._send(200, json.dumps({"token": token, "access_token": token}).encode())

            def _send(self, code: int, payload: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    def sign(self, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.ISSUER,
            "sub": self.user,
            "aud": self.SERVICE,
            "exp": now + 3600,
            "nbf": now - 60,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}

        def part(value: object) -> str:
            raw = json.dumps(value, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        signing_input = f"{part(header)}.{part(claims)}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw_sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + base64.urlsafe_b64encode(raw_sig).rstrip(b"=").decode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
