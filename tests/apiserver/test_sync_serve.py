"""``porch serve`` syncs repositories in the background (docs/sync.md).

The server runs as a subprocess with short sync intervals; remotes are served by
``GitHttpServer`` and changed with the git CLI. Every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from porch.cli.serve import serve
from porch.testing.git_server import GitHttpServer
from tests.apiserver.served import Served, start
from tests.engine.test_sync import Clone, seed_remote

PR_PATH = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions"
REPO_PATH = "/apis/config.porch.kpt.dev/v1alpha1/namespaces/default/repositories"
DEADLINE = 30.0


def repository_body(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "git", "git": {"repo": url, "branch": "main"}},
    }


def ready(body: dict[str, Any]) -> dict[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    end = time.monotonic() + DEADLINE
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Watch:
    """A ``?watch=true`` stream read by a thread; events wait in a queue."""

    def __init__(self, url: str) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(url,), daemon=True)
        self._thread.start()
        assert self._ready.wait(DEADLINE), "the watch did not start"

    def _pump(self, url: str) -> None:
        try:
            with self._client.stream("GET", url, params={"watch": "true"}) as response:
                self._ready.set()
                for line in response.iter_lines():
                    if line.strip():
                        self.events.put(json.loads(line))
        except httpx.HTTPError:
            return

    def wait(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if match(event):
                return event
        raise AssertionError(f"no watch event: {what}")

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as es:
        yield es


def git_server(stack: ExitStack, root: Path) -> GitHttpServer:
    root.mkdir(parents=True, exist_ok=True)
    return stack.enter_context(GitHttpServer(root))


def serve_with(stack: ExitStack, data_dir: Path, *args: str) -> Served:
    served = start(data_dir, "--insecure-http", "--allow-anonymous", *args)
    stack.callback(served.stop)  # before the git servers go: a hung fetch is still hung
    return served


def test_serve_syncs_outside_pushes_and_isolates_a_hanging_remote(
    tmp_path: Path, stack: ExitStack
) -> None:
    good = git_server(stack, tmp_path / "good")
    bad = git_server(stack, tmp_path / "bad")
    seed_remote(good.root, "good")
    seed_remote(bad.root, "bad")
    served = serve_with(
        stack,
        tmp_path / "data",
        "--sync-ref-interval",
        "0.2",
        "--sync-timeout",
        "2",
        "--max-concurrent-syncs",
        "1",
    )
    api = httpx.Client(base_url=served.url, timeout=DEADLINE)
    stack.callback(api.close)
    for name, server in (("good", good), ("bad", bad)):
        r = api.post(REPO_PATH, json=repository_body(name, server.repo_url(f"{name}.git")))
        assert r.status_code == 201, r.text
    wait_for(
        lambda: "lastFullSyncTime" in (api.get(f"{REPO_PATH}/bad").json().get("status") or {}),
        "the first background sync of bad",
    )
    bad.set_fault("hang")
    assert bad.hanging.wait(DEADLINE), "the hanging remote was never asked"
    wait_for(
        lambda: ready(api.get(f"{REPO_PATH}/bad").json()).get("status") == "False",
        "bad to be marked not Ready",
    )
    assert "did not finish within 2s" in ready(api.get(f"{REPO_PATH}/bad").json())["message"]

    watch = Watch(served.url + PR_PATH)
    stack.callback(watch.close)
    head = Clone(good.repo_url("good.git"), tmp_path / "clone").add_package("plum", "plum/v1")
    event = watch.wait(
        lambda e: (
            e["type"] == "ADDED"
            and e["object"]["spec"]["packageName"] == "plum"
            and e["object"]["spec"]["revision"] == 1
        ),
        "ADDED plum v1",
    )
    name = event["object"]["metadata"]["name"]
    # API requests complete while the other remote hangs (completion, not speed, is asserted).
    listed = api.get(PR_PATH).json()["items"]
    assert name in {item["metadata"]["name"] for item in listed}
    good_body = wait_for(
        lambda: (
            (body := api.get(f"{REPO_PATH}/good").json())["status"].get("gitCommitHash") == head
            and body
        ),
        "good's status to show the new head",
    )
    status = good_body["status"]
    assert ready(good_body)["status"] == "True"
    assert status["packageCount"] == 2
    assert status["observedGeneration"] == good_body["metadata"]["generation"]
    assert status["lastFullSyncTime"] and status["nextFullSyncTime"]
    assert ready(api.get(f"{REPO_PATH}/bad").json())["status"] == "False"


def test_no_sync_leaves_repositories_alone(tmp_path: Path, stack: ExitStack) -> None:
    server = git_server(stack, tmp_path / "remotes")
    seed_remote(server.root, "quiet")
    served = serve_with(stack, tmp_path / "data", "--no-sync")
    api = httpx.Client(base_url=served.url, timeout=DEADLINE)
    stack.callback(api.close)
    r = api.post(REPO_PATH, json=repository_body("quiet", server.repo_url("quiet.git")))
    assert r.status_code == 201, r.text
    # Registration itself still opens and indexes the repository ...
    assert ready(api.get(f"{REPO_PATH}/quiet").json())["status"] == "True"
    # ... but nothing runs in the background, so no sync time is ever recorded.
    assert "lastFullSyncTime" not in api.get(f"{REPO_PATH}/quiet").json()["status"]


def test_serve_sync_flags_are_documented() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--sync-ref-interval",
        "--sync-full-interval",
        "--max-concurrent-syncs",
        "--sync-timeout",
        "--no-sync",
    ):
        assert flag in result.output
    bad = CliRunner().invoke(serve, ["--max-concurrent-syncs", "0"])
    assert bad.exit_code != 0 and "--max-concurrent-syncs" in bad.output
