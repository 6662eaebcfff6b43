"""A real ``porch serve`` (HTTPS, token file, RBAC policy) and Debian's Chromium via Playwright.

Two users: ``admin`` (``system:masters``, may do everything) and ``viewer`` (group ``readers``,
may only get, list and watch). Without ``/usr/bin/chromium`` the UI tests skip, unless
``PORCH_REQUIRE_UI=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver.served import Served, start

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADMIN_TOKEN = "admin-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
EDITOR_TOKEN = "editor-token-0123456789abcdef"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "ui-screenshots"
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
TIMEOUT_MS = 30_000  # generous: the machine may be busy; nothing waits this long when all is well
# A browser logs every non-2xx fetch; the ones the UI expects are not failures.
EXPECTED = re.compile(r"status of (401|403|422)")

RBAC = """\
rules:
  - subjects: [{group: readers}]
    namespaces: "*"
    resources: ["*"]
    verbs: [get, list, watch]
"""


def _missing(reason: str) -> None:
    if os.environ.get("PORCH_REQUIRE_UI") == "1":
        pytest.fail(f"PORCH_REQUIRE_UI=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e .[dev])")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class UIServer:
    served: Served
    rbac: Path

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def ca(self) -> Path:
        return self.served.data_dir / "pki" / "ca.crt"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    """One server for the UI tests; ``editor`` has no rule until a test writes one."""
    data = tmp_path_factory.mktemp("ui")
    tokens = data / "tokens.csv"
    tokens.write_text(
        f'{ADMIN_TOKEN},admin,1,"system:masters"\n'
        f'{VIEWER_TOKEN},viewer,2,"readers"\n'
        f"{EDITOR_TOKEN},editor,3\n"
    )
    rbac = data / "rbac.yaml"
    rbac.write_text(RBAC)
    served = start(
        data / "data", "--token-file", str(tokens), "--rbac-file", str(rbac), "--no-sync"
    )
    yield UIServer(served, rbac)
    served.stop()


def new_page(browser: Any, server: UIServer, token: str | None, errors: list[str]) -> Any:
    """A page in a fresh context (own sessionStorage), signed in when ``token`` is given."""
    context = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.goto(server.url + "/ui/")
    if token is not None:
        page.get_by_label("Bearer token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.locator("#whoami").wait_for()
    return page


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def expect(locator: Any) -> Any:
    """Playwright's retrying assertion, with the generous timeout instead of its 5 s."""
    from playwright.sync_api import expect as pw_expect

    pw_expect.set_options(timeout=TIMEOUT_MS)
    return pw_expect(locator)
