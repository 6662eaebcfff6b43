"""Fixtures: an engine with the demo repository, the app in-process, and a live server.

The live server runs uvicorn in a thread on 127.0.0.1 with a kernel-chosen port; it is for
tests that need real streaming (watch) or a real HTTP client (the kubernetes package).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal

from porch.apiserver import Security, create_app
from porch.engine import Engine
from porch.server import Settings, build_engine, ensure_demo
from porch.testing.postgres import store_url_from_env

NS = "default"
PR_PATH = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions"
PRR_PATH = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisionresources"
REPO_PATH = "/apis/config.porch.kpt.dev/v1alpha1/namespaces/default/repositories"
SECRET_PATH = "/api/v1/namespaces/default/secrets"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    data = tmp_path / "data"
    # PORCH_TEST_STORE=postgres runs the API suite on a throwaway PostgreSQL database
    eng = build_engine(Settings(data_dir=data, store=store_url_from_env(tmp_path)))
    ensure_demo(eng, data)
    yield eng
    eng.store.close()


class Client:
    """Synchronous face of ``httpx.AsyncClient`` over ``ASGITransport`` (app in-process)."""

    def __init__(self, portal: BlockingPortal, app: Any) -> None:
        self._portal = portal
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://porch.test"
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(lambda: self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)


def make_client(app: Any) -> Iterator[Client]:
    with start_blocking_portal() as portal:
        c = Client(portal, app)
        yield c
        c.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[Client]:
    yield from make_client(create_app(engine))


def draft(package: str, workspace: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"namespace": NS},
        "spec": {"packageName": package, "repository": "demo", "workspaceName": workspace, **spec},
    }


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


def start_live(app: Any) -> LiveServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_config=None, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    # The socket already listens, so clients may connect at once: the kernel queues them
    # until uvicorn accepts. No need to wait for startup.
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    return LiveServer(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def live(engine: Engine) -> Iterator[LiveServer]:
    srv = start_live(create_app(engine, security=Security(allow_anonymous=True)))
    yield srv
    srv.server.should_exit = True
    srv.thread.join(10)
