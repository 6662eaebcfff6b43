"""Direct watch fan-out (``porch serve``'s HTTP protocol): many streams, selectors, slow readers.

The streams here go through ``serving.HttpProtocol``, which hands watch streams the transport,
so live events take the direct path of ``watchstream.Fanout``; the same behaviour over the
queued path is what ``test_watch.py`` checks (its server is plain uvicorn).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from porch.apiserver import Security, create_app
from porch.apiserver import watchstream as ws
from porch.apiserver.serving import HttpProtocol
from porch.engine import Engine
from porch.engine.watch import WatchEvent, WatchHub
from tests.apiserver import test_watch
from tests.apiserver.conftest import PR_PATH, LiveServer, draft

WAIT = 15.0


def start_direct(app: Any) -> LiveServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=HttpProtocol, lifespan="off", log_config=None, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    return LiveServer(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def direct(engine: Engine) -> Iterator[LiveServer]:
    srv = start_direct(create_app(engine, security=Security(allow_anonymous=True)))
    yield srv
    srv.server.should_exit = True
    srv.thread.join(10)


class RawWatch:
    """One watch over a plain socket: HTTP/1.1 chunked JSON lines, read only when asked."""

    def __init__(self, url: str, query: str, *, rcvbuf: int = 0) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect((host, int(port)))
        target = f"{PR_PATH}?watch=true&{query}"
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.buf = b""
        self.partial = b""
        self.lines: list[bytes] = []
        self.ended = False
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"transfer-encoding: chunked" in head.lower()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def next(self) -> dict[str, Any] | None:
        """The next event; None once the stream has ended."""
        while not self.lines and not self.ended:
            while b"\r\n" not in self.buf:
                self._fill()
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line, 16)
            if size == 0:
                self.ended = True
                break
            while len(rest) < size + 2:
                self._fill()
                rest = self.buf.split(b"\r\n", 1)[1]
            self.partial += rest[:size]
            self.buf = rest[size + 2 :]
            *done, self.partial = self.partial.split(b"\n")
            self.lines += done
        return orjson.loads(self.lines.pop(0)) if self.lines else None

    def until(self, last: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        seen = []
        while True:
            event = self.next()
            assert event is not None, f"stream ended after {len(seen)} events"
            seen.append(event)
            if last(event):
                return seen

    def close(self) -> None:
        self.sock.close()


def _key(event: dict[str, Any]) -> tuple[str, str, str]:
    meta = event["object"]["metadata"]
    return (event["type"], meta["name"], meta["resourceVersion"])


def _list_rv(url: str) -> str:
    return str(httpx.get(url + PR_PATH, timeout=WAIT).json()["metadata"]["resourceVersion"])


def _patch(url: str, name: str, meta: dict[str, Any]) -> None:
    r = httpx.patch(
        f"{url}{PR_PATH}/{name}",
        content=orjson.dumps({"metadata": meta}),
        headers={"content-type": "application/merge-patch+json"},
        timeout=WAIT,
    )
    assert r.status_code == 200, r.text


def _create(url: str, package: str, workspace: str) -> str:
    r = httpx.post(url + PR_PATH, json=draft(package, workspace), timeout=WAIT)
    assert r.status_code == 201, r.text
    return str(r.json()["metadata"]["name"])


def test_many_watchers_with_different_selectors_get_exactly_their_events_in_order(
    direct: LiveServer, engine: Engine
) -> None:
    url = direct.url
    rv = _list_rv(url)
    a1 = _create(url, "a", "w1")  # before the watches: replayed from the log
    packages = ["a", "b", "c"]
    streams: dict[str, list[RawWatch]] = {"all": [RawWatch(url, f"resourceVersion={rv}")]}
    streams["all"].append(RawWatch(url, f"resourceVersion={rv}&labelSelector="))
    for pkg in packages:
        query = f"resourceVersion={rv}&fieldSelector=spec.packageName={pkg}"
        streams[pkg] = [RawWatch(url, query) for _ in range(4)]
    query = f"resourceVersion={rv}&fieldSelector=metadata.name={a1}"
    streams["name"] = [RawWatch(url, query) for _ in range(3)]
    streams["team"] = [RawWatch(url, f"resourceVersion={rv}&labelSelector=team%3Dx")]
    opened = sum(len(s) for s in streams.values())

    b1 = _create(url, "b", "w1")
    c1 = _create(url, "c", "w1")
    _patch(url, a1, {"labels": {"team": "x"}})
    _patch(url, b1, {"labels": {"team": "y"}})
    _patch(url, c1, {"labels": {"team": "x"}})
    _patch(url, c1, {"annotations": {"note": "n"}})
    assert httpx.delete(f"{url}{PR_PATH}/{b1}", timeout=WAIT).status_code == 200
    b2 = _create(url, "b", "w2")
    ends = {"a": a1, "b": b2, "c": c1}
    for name in ends.values():
        _patch(url, name, {"annotations": {"end": "1"}})
    _patch(url, a1, {"labels": {"team": "x", "final": "1"}})
    assert ws.direct_streams(engine.hub) == opened  # all of them took the direct path

    def final(event: dict[str, Any]) -> bool:
        meta = event["object"]["metadata"]
        return meta["name"] == a1 and (meta.get("labels") or {}).get("final") == "1"

    def end(pkg: str) -> Callable[[dict[str, Any]], bool]:
        def last(event: dict[str, Any]) -> bool:
            meta = event["object"]["metadata"]
            return meta["name"] == ends[pkg] and (meta.get("annotations") or {}).get("end") == "1"

        return last

    reference = streams["all"][0].until(final)
    assert [_key(e) for e in streams["all"][1].until(final)] == [_key(e) for e in reference]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in reference]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    assert {_key(e)[1] for e in reference} >= {a1, b1, c1, b2}
    assert ("DELETED", b1) in {_key(e)[:2] for e in reference}

    def expected(
        match: Callable[[dict[str, Any]], bool], last: Callable[[dict[str, Any]], bool]
    ) -> list[Any]:
        subset = [e for e in reference if match(e["object"])]
        upto = next(i for i, e in enumerate(subset) if last(e))
        return [_key(e) for e in subset[: upto + 1]]

    for pkg in packages:
        want = expected(lambda o, p=pkg: o["spec"]["packageName"] == p, end(pkg))
        assert len(want) >= 3
        for stream in streams[pkg]:
            assert [_key(e) for e in stream.until(end(pkg))] == want
    want = expected(lambda o: o["metadata"]["name"] == a1, final)
    for stream in streams["name"]:
        assert [_key(e) for e in stream.until(final)] == want
    team = [
        _key(e) for e in reference if e["object"]["metadata"].get("labels", {}).get("team") == "x"
    ]
    assert [_key(e) for e in streams["team"][0].until(final)] == team
    for group in streams.values():
        for stream in group:
            stream.close()


def test_slow_reader_blocks_neither_the_writer_nor_other_watchers(
    direct: LiveServer, engine: Engine
) -> None:
    url = direct.url
    name = _create(url, "big", "w1")
    rv = _list_rv(url)
    query = f"resourceVersion={rv}&fieldSelector=metadata.name={name}"
    slow = RawWatch(url, query, rcvbuf=4096)  # never reads until the writes are done
    fast = RawWatch(url, query)
    writes = _kernel_send_buffer_max() // 250_000 + 8
    filler = "x" * 250_000  # more in all than the kernel buffers take
    got: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: got.extend(fast.next() or {} for _ in range(writes)))
    reader.start()
    for i in range(writes):
        _patch(url, name, {"annotations": {"filler": filler, "seq": str(i)}})
    reader.join(WAIT)
    assert not reader.is_alive()
    seqs = [e["object"]["metadata"]["annotations"]["seq"] for e in got]
    assert seqs == [str(i) for i in range(writes)]
    # the slow reader gets everything too, in order, once it reads (its backlog drained
    # through the queued path with back-pressure)
    late = [slow.next() for _ in range(writes)]
    assert [e["object"]["metadata"]["annotations"]["seq"] for e in late if e] == seqs
    slow.close()
    fast.close()


def _kernel_send_buffer_max() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def test_watcher_too_far_behind_ends_with_410_without_blocking_the_writer(
    engine: Engine,
) -> None:
    engine.hub = WatchHub(capacity=3)  # before any watch: 3 undelivered events at most
    srv = start_direct(create_app(engine, security=Security(allow_anonymous=True)))
    try:
        url = srv.url
        name = _create(url, "big", "w1")
        query = f"resourceVersion={_list_rv(url)}&fieldSelector=metadata.name={name}"
        slow = RawWatch(url, query, rcvbuf=4096)
        filler = "x" * 250_000
        writes = _kernel_send_buffer_max() // 250_000 + 8  # more than the socket can take
        for i in range(writes):
            _patch(url, name, {"annotations": {"filler": filler, "seq": str(i)}})
        events = []
        while (event := slow.next()) is not None:
            events.append(event)
        *delivered, error = events
        assert error["type"] == "ERROR"
        assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
        seqs = [e["object"]["metadata"]["annotations"]["seq"] for e in delivered]
        assert seqs == [str(i) for i in range(len(seqs))] and len(seqs) < writes
        slow.close()
    finally:
        srv.server.should_exit = True
        srv.thread.join(10)


def test_disconnect_cleanup_on_the_direct_path(direct: LiveServer, engine: Engine) -> None:
    rv = _list_rv(direct.url)
    streams = [RawWatch(direct.url, f"resourceVersion={rv}") for _ in range(12)]
    _create(direct.url, "one", "w1")
    for stream in streams:
        assert stream.next() is not None  # live: the stream has joined the fan-out
    assert engine.hub.count == 12 and ws.direct_streams(engine.hub) == 12
    metrics = httpx.get(direct.url + "/metrics", timeout=WAIT).text
    assert 'porch_apiserver_watchers{resource="packagerevisions"} 12.0' in metrics
    for stream in streams:
        stream.close()
    with httpx.Client(base_url=direct.url, timeout=WAIT) as c:
        for _ in range(400):
            if engine.hub.count == 0 and ws.direct_streams(engine.hub) == 0:
                break
            c.get("/healthz")  # yields the server loop a turn between checks
        metrics = c.get("/metrics").text
    assert engine.hub.count == 0 and ws.direct_streams(engine.hub) == 0
    assert 'porch_apiserver_watchers{resource="packagerevisions"} 0.0' in metrics
    _create(direct.url, "two", "w1")  # publishing after everyone left is fine


def _live_cases() -> list[Any]:
    cases = []
    for name, fn in inspect.getmembers(test_watch, inspect.isfunction):
        if name.startswith("test_") and "live" in inspect.signature(fn).parameters:
            cases.append(pytest.param(fn, id=name))
    return cases


@pytest.mark.parametrize("case", _live_cases())
def test_watch_behaviour_is_the_same_on_the_direct_path(
    case: Callable[..., None], direct: LiveServer, engine: Engine
) -> None:
    params = inspect.signature(case).parameters
    case(**{k: v for k, v in {"live": direct, "engine": engine}.items() if k in params})


# --- the fan-out itself, with fake transports ------------------------------------------------


class FakeTransport(asyncio.WriteTransport):
    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.buffered = buffered
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.chunks.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16384, 65536)

    def is_closing(self) -> bool:
        return self.closing

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for chunk in self.chunks:
            size, rest = chunk.split(b"\r\n", 1)
            assert rest.endswith(b"\r\n") and int(size, 16) == len(rest) - 2
            out.append(orjson.loads(rest[:-2]))
        return out


def _event(rv: int, pkg: str) -> WatchEvent:
    obj = {"kind": "X", "metadata": {"name": f"n{rv}", "resourceVersion": str(rv)}, "pkg": pkg}
    return WatchEvent("MODIFIED", obj, rv)


def test_fanout_checks_each_group_once_and_backs_off_a_full_transport() -> None:
    hub = WatchHub(capacity=3)
    calls = {"a": 0, "b": 0}

    def predicate(pkg: str) -> Callable[[dict[str, Any]], bool]:
        def match(obj: dict[str, Any]) -> bool:
            calls[pkg] += 1
            return bool(obj["pkg"] == pkg)

        return match

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        fanout = ws.fanout_of(loop, hub)
        sinks = {}
        for pkg, n in (("a", 20), ("b", 5)):
            for i in range(n):
                watcher = hub.add(predicate(pkg))
                watcher.go_live()
                transport = FakeTransport()
                sinks[(pkg, i)] = (fanout.attach(watcher, transport, pkg, 0), transport)
        full = sinks[("a", 0)][1]
        full.buffered = 1 << 20  # over the high-water mark: events go to the backlog
        gone = sinks[("a", 1)][1]
        gone.closing = True
        for rv in range(1, 6):
            hub.publish(_event(rv, "a" if rv != 3 else "b"))
        await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        assert calls == {"a": 5, "b": 5}  # once per group and event, not per stream
        for (pkg, _i), (sink, transport) in sinks.items():
            if transport is full or transport is gone:
                continue
            want = [f"n{rv}" for rv in range(1, 6) if (rv == 3) == (pkg == "b")]
            assert [e["object"]["metadata"]["name"] for e in transport.lines()] == want
            assert sink.last_rv == int(want[-1][1:])
        assert gone.chunks == []
        backed = sinks[("a", 0)][0]
        assert full.chunks == [] and backed.overflowed  # 4 events > capacity 3
        assert [orjson.loads(line)["object"]["metadata"]["name"] for line in backed.backlog] == [
            "n1",
            "n2",
            "n4",
            "n5",
        ]
        assert ws.direct_streams(hub) == 24
        for sink, _ in sinks.values():
            fanout.remove(sink)
        assert ws.direct_streams(hub) == 0
        assert hub._subscribers == ()  # the idle fan-out left the hub
        hub.publish(_event(6, "a"))

    asyncio.run(scenario())
