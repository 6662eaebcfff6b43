"""Watch streams over a real socket: initial state, bookmarks, live events, resume, 410."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from porch.engine import Engine
from porch.errors import Expired
from tests.apiserver.conftest import PR_PATH, REPO_PATH, TABLE, LiveServer, draft

WAIT = httpx.Timeout(15.0)


@contextmanager
def watch(live: LiveServer, path: str, **params: str) -> Iterator[Iterator[dict[str, Any]]]:
    headers = {"accept": params.pop("accept", "application/json")}
    with httpx.Client(base_url=live.url, timeout=WAIT) as c:
        with c.stream("GET", path, params={"watch": "true", **params}, headers=headers) as r:
            assert r.status_code == 200, r.read()
            yield (orjson.loads(line) for line in r.iter_lines() if line)


def post(live: LiveServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(live.url + path, json=body, timeout=WAIT)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_initial_state_bookmark_then_live_events(live: LiveServer) -> None:
    with watch(live, PR_PATH, allowWatchBookmarks="true") as events:
        initial = [next(events) for _ in range(4)]
        assert {e["type"] for e in initial} == {"ADDED"}
        bookmark = next(events)
        assert bookmark["type"] == "BOOKMARK"
        meta = bookmark["object"]["metadata"]
        assert meta["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert int(meta["resourceVersion"]) >= max(
            int(e["object"]["metadata"]["resourceVersion"]) for e in initial
        )
        post(live, PR_PATH, draft("live"))
        added = next(events)
        assert added["type"] == "ADDED"
        assert added["object"]["metadata"]["name"] == "demo.live.v1"
        httpx.delete(live.url + PR_PATH + "/demo.live.v1", timeout=WAIT)
        assert next(events)["type"] == "DELETED"


def test_field_selector_applies_to_live_events(live: LiveServer) -> None:
    with watch(live, PR_PATH, fieldSelector="spec.packageName=wanted") as events:
        post(live, PR_PATH, draft("other"))
        post(live, PR_PATH, draft("wanted"))
        first = next(events)
        assert first["object"]["spec"]["packageName"] == "wanted"


def test_table_watch_sends_columns_once(live: LiveServer) -> None:
    with watch(live, PR_PATH, accept=TABLE) as events:
        first, second = next(events), next(events)
    assert first["object"]["kind"] == "Table"
    assert first["object"]["columnDefinitions"][0]["name"] == "Name"
    assert second["object"]["columnDefinitions"] is None
    assert len(second["object"]["rows"]) == 1


def test_resume_from_resource_version(live: LiveServer) -> None:
    listed = httpx.get(live.url + PR_PATH, timeout=WAIT).json()
    rv = listed["metadata"]["resourceVersion"]
    post(live, PR_PATH, draft("later"))
    with watch(live, PR_PATH, resourceVersion=rv) as events:
        event = next(events)  # only what happened after the list, not the initial state
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "demo.later.v1")


def test_expired_resource_version_is_410(live: LiveServer, engine: Engine) -> None:
    post(live, PR_PATH, draft("one"))
    post(live, PR_PATH, draft("two"))
    engine.store.compact(keep=1)
    r = httpx.get(live.url + PR_PATH, params={"watch": "1", "resourceVersion": "1"}, timeout=WAIT)
    assert r.status_code == 410
    assert r.json()["reason"] == "Expired"


def test_timeout_seconds_ends_the_stream(live: LiveServer) -> None:
    with watch(live, PR_PATH, timeoutSeconds="1", fieldSelector="spec.packageName=none") as ev:
        assert list(ev) == []


def test_watch_one_object_by_name_path(live: LiveServer) -> None:
    with watch(live, PR_PATH + "/demo.basens.v1") as events:
        event = next(events)
    assert event["object"]["metadata"]["name"] == "demo.basens.v1"


def test_legacy_watch_path_and_repositories(live: LiveServer) -> None:
    path = "/apis/config.porch.kpt.dev/v1alpha1/watch/namespaces/default/repositories"
    with watch(live, path) as events:
        assert next(events)["object"]["metadata"]["name"] == "demo"
    with watch(live, REPO_PATH) as events:
        assert next(events)["object"]["kind"] == "Repository"


def test_watchers_gauge_and_disconnect_cleanup(live: LiveServer, engine: Engine) -> None:
    with watch(live, PR_PATH) as events:
        next(events)
        assert engine.hub.count == 1
        metrics = httpx.get(live.url + "/metrics", timeout=WAIT).text
        assert 'porch_apiserver_watchers{resource="packagerevisions"} 1.0' in metrics
    # The server notices the disconnect and closes the engine watcher; poll its count.
    with httpx.Client(base_url=live.url, timeout=WAIT) as c:
        for _ in range(200):
            if engine.hub.count == 0:
                break
            c.get("/healthz")  # yields the server loop a turn between checks
    assert engine.hub.count == 0


class _FellBehind:
    """A watcher whose consumer fell behind: the engine raises Expired from ``next``."""

    def next(self, timeout: float | None = None) -> None:
        raise Expired("watch fell too far behind; list again and restart the watch")

    def pending(self) -> None:
        return self.next(timeout=0)

    def close(self) -> None:
        pass


def test_fallen_behind_watch_ends_with_error_event(engine: Engine) -> None:
    import asyncio

    from porch.apiserver import packagerevisions
    from porch.apiserver.watchstream import WatchOptions, WatchStream

    rt = packagerevisions.resource(engine)
    opts = WatchOptions(as_table=False, include="Metadata", bookmarks=False, timeout=5, start_rv=0)
    stream = WatchStream(rt, _FellBehind(), opts)  # type: ignore[arg-type]

    async def collect() -> list[dict[str, Any]]:
        return [orjson.loads(line) async for line in stream.lines()]

    (event,) = asyncio.run(collect())
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
