"""An engine with the demo repository and a ``PorchClient`` on the ASGI app, in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porch.apiserver import Security, create_app
from porch.client import InProcessTransport, PorchClient
from porch.engine import Engine
from porch.server import Settings, build_engine, ensure_demo


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    data = tmp_path / "data"
    eng = build_engine(Settings(data_dir=data))
    ensure_demo(eng, data)
    yield eng
    eng.store.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[PorchClient]:
    app = create_app(engine, security=Security(allow_anonymous=True))
    with PorchClient("http://porch.test", transport=InProcessTransport(app)) as c:
        yield c
