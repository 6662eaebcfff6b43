"""Running the app: a listening socket (port 0 picks one), uvicorn with optional TLS, and
the periodic compaction of the watch event log.

Client certificates: uvicorn does not put the peer certificate into the ASGI scope, so the
HTTP protocol class below reads it from the TLS transport when a connection is made and hands
the subject to the app through the ASGI TLS extension (``scope["extensions"]["tls"]``).

The same class hands each request the connection's asyncio transport
(``scope["extensions"]["porch.transport"]``): watch streams write their pre-framed chunks
straight to it from one loop callback per event (``watchstream.Fanout``) instead of waking a
task and going through the ASGI ``send`` chain per stream.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from porch.apiserver.tls import subject_from_peercert
from porch.apiserver.watchstream import TRANSPORT_EXTENSION
from porch.engine import Engine

COMPACT_EVERY = 30.0


class HttpProtocol(HttpToolsProtocol):
    # httptools parses and frames in C: with 1,000 watch streams the per-chunk cost of the
    # pure-Python h11 protocol was most of a publish. The hooks hand the verified client
    # certificate's subject to authentication and the transport to watch streams.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_EXTENSION: self.transport}  # type: ignore[dict-item]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sslobj = transport.get_extra_info("ssl_object")
        peer = sslobj.getpeercert() if sslobj is not None else None
        if peer:
            self.app = _with_subject(self.app, subject_from_peercert(peer))


_PeerCertHttpTools = HttpProtocol  # the former name


def _with_subject(inner: Any, subject: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("extensions", {})["tls"] = {"client_cert_name": subject}
        await inner(scope, receive, send)

    return app


def bind(listen: str) -> socket.socket:
    """A bound, listening socket for ``host:port``; port 0 lets the kernel choose."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so, and without it every small response waits for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port or "0")))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None


def _compact(engine: Engine, keep: int) -> None:
    try:
        engine.store.compact(keep=keep)
    except Exception as exc:  # noqa: BLE001 - compaction must never take the server down
        logging.getLogger("porch.apiserver").warning("event log compaction failed: %s", exc)


def _compactor(engine: Engine, keep: int, stop: threading.Event) -> None:
    while not stop.wait(COMPACT_EVERY):
        _compact(engine, keep)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("porch.apiserver.access", "porch.apiserver"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def run(
    app: ASGIApp,
    sock: socket.socket,
    *,
    engine: Engine,
    tls: TLSFiles | None,
    watch_history: int,
) -> None:
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs.update(ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
        if tls.client_ca is not None:
            # Optional: token users and certificate users share one listener.
            kwargs.update(ssl_ca_certs=str(tls.client_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    config = uvicorn.Config(
        app,
        http=HttpProtocol,
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
        **kwargs,
    )
    _compact(engine, watch_history)  # before the first request: resume limits hold at once
    stop = threading.Event()
    threading.Thread(
        target=_compactor, args=(engine, watch_history, stop), name="compactor", daemon=True
    ).start()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        stop.set()
