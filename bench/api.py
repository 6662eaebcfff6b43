"""HTTP API latency: a list of 10,000 revisions, field-selected lists, 1,000 watchers.

A real ``porch serve --insecure-http --allow-anonymous`` runs as a subprocess on a kernel-chosen
port. Before it starts, a local bare repository is seeded with ``--revisions`` published
revisions in Porch's layout (``seed()`` of ``bench/lifecycle.py``, spread over at most
``--max-packages`` packages); it is then registered through the API as a ``Repository`` and the
benchmark waits until it is Ready.

Measured, over HTTP/1.1 keep-alive:

* **list**: ``GET …/namespaces/default/packagerevisions`` as a full JSON list and as a
  ``Table`` (what kubectl asks for), p50/p95 over ``--list-runs`` runs (httpx, time until the
  whole body has arrived).
* **selected list**: the same list with ``fieldSelector=metadata.name=<one name>`` (the
  headline figure) and with ``fieldSelector=spec.packageName=<one package>``.
* **watch**: ``--watchers`` concurrent ``?watch=true&resourceVersion=<list rv>`` streams, then
  ``--changes`` label PATCHes (``application/merge-patch+json``) of one revision, one at a time.
  For every watcher and change the latency is the time from the moment the PATCH response
  arrived to the moment that watcher's socket received the MODIFIED event. Both moments are the
  kernel's receive timestamps (``SO_TIMESTAMPNS``) of the packets on the client's sockets, so
  the time this (single-threaded, selector-based) client needs to get round to 1,000 sockets
  does not count; the client-observed figure is printed beside it. An event that arrives before
  the write's response counts as 0 ms, so the time after the write was *sent* (an upper bound)
  and the spread after the first watcher got the event (the server's fan-out cost, independent
  of when the write's response left) are printed too.

Baseline in the same run: serialising the same list payload in this process with ``orjson``
(the least any server must do to answer the list), and ``GET /healthz`` on the same server (the
floor of one HTTP round trip through uvicorn and the app). Ratios against both are printed.

``--tcp-nodelay`` is a what-if: the server is started with TCP_NODELAY on its accepted sockets
(see "Performance" in ``docs/api.md``); ``--py-spy PATH`` records the server's stacks during the
list and the watch phases (collapsed stacks in ``--profile-dir``), which slows it down.

The last line of output is one JSON object: ``list_10000_p50_ms``, ``list_selected_p50_ms``,
``watch_1000_p99_ms``, then extra figures (the keys keep their names at other sizes).
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifecycle import MAX_PACKAGES, p, seed  # noqa: E402

NS = "default"
PR_PATH = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisions"
REPO_PATH = f"/apis/config.porch.kpt.dev/v1alpha1/namespaces/{NS}/repositories"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
REPO_NAME = "bench"
CHANGE_LABEL = "bench.porch.kpt.dev/change"
START_TIMEOUT = 120.0
# <asm-generic/socket.h>: SO_TIMESTAMPNS (and SCM_TIMESTAMPNS, the same number); the socket
# module does not export it. Linux only; without it the client's own clock is used.
SO_TIMESTAMPNS = 35


# --- the server ----------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    host: str
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# What-if for --tcp-nodelay: the listening socket re-wrapped so that its ``proto`` is
# IPPROTO_TCP (auto-detected from the fd). asyncio sets TCP_NODELAY only on accepted sockets
# whose ``proto`` is IPPROTO_TCP, and ``serving.bind`` creates its socket with proto 0.
NODELAY_WRAPPER = """
import socket
from porch.apiserver import serving
_bind = serving.bind
def bind(listen):
    return socket.socket(fileno=_bind(listen).detach())
serving.bind = bind
from porch.cli.admin import main
main()
"""


def porch_command(tcp_nodelay: bool = False) -> list[str]:
    if tcp_nodelay:
        return [sys.executable, "-c", NODELAY_WRAPPER]
    script = Path(sys.executable).with_name("porch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from porch.cli.admin import main; main()"]


def start_server(
    data_dir: Path,
    log: Path,
    *,
    tcp_nodelay: bool = False,
    extra: tuple[str, ...] = (),
    timeout: float = START_TIMEOUT,
    log_mode: str = "w",
) -> Server:
    """``porch serve`` (plus ``extra`` flags) on a free port; returns once it printed its URL."""
    err: IO[str] = log.open(log_mode)  # the access log goes to stderr: never let a pipe fill up
    proc = subprocess.Popen(
        [
            *porch_command(tcp_nodelay),
            "serve",
            "--data-dir",
            str(data_dir),
            *extra,
            "--listen",
            "127.0.0.1:0",
            "--insecure-http",
            "--allow-anonymous",
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    err.close()
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            proc.wait()
            raise SystemExit(f"porch serve did not start:\n{log.read_text(errors='replace')}")
        found = re.search(r"porch serving on (http://(\S+):(\d+))", line)
        if found:
            return Server(proc, found.group(1), found.group(2), int(found.group(3)), log)


def register_repository(client: httpx.Client, path: Path, timeout: float) -> float:
    """POST the Repository, then wait for Ready=True; seconds until Ready."""
    body = {
        "apiVersion": "config.porch.kpt.dev/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": REPO_NAME, "namespace": NS},
        "spec": {
            "type": "git",
            "content": "Package",
            "description": "bench/api.py seed",
            "git": {"repo": str(path), "branch": "main"},
        },
    }
    t0 = time.perf_counter()
    resp = client.post(REPO_PATH, json=body, timeout=timeout)
    if resp.status_code != 201:
        raise SystemExit(f"creating the Repository failed: {resp.status_code} {resp.text}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = client.get(f"{REPO_PATH}/{REPO_NAME}").json()
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                return time.perf_counter() - t0
            if cond.get("type") == "Ready" and cond.get("status") == "False":
                raise SystemExit(f"repository not ready: {cond}")
        time.sleep(0.1)
    raise SystemExit(f"repository {REPO_NAME} not Ready after {timeout:.0f}s")


# --- lists -----------------------------------------------------------------------------------


@contextmanager
def profiled(
    server: Server, args: argparse.Namespace, phase: str, *, gil: bool = False
) -> Iterator[None]:
    """py-spy (when given) records the server's Python stacks for the duration of a phase.

    ``gil``: only the thread holding the GIL is sampled (what uses the one core Python has).
    """
    if args.py_spy is None:
        yield
        return
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    out = args.profile_dir / f"{phase}.txt"
    spy = subprocess.Popen(
        [str(args.py_spy), "record", "--pid", str(server.proc.pid), "--rate", "200"]
        + ["--nonblocking", "--format", "raw", "--output", str(out)]
        + (["--gil"] if gil else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attach before the phase starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
        print(f"py-spy: {phase} profile in {out}")


def timed_gets(
    client: httpx.Client,
    path: str,
    runs: int,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[list[float], httpx.Response]:
    """``runs`` GETs after one warm-up; ms until the whole body has arrived."""
    resp = client.get(path, params=params, headers=headers)
    resp.raise_for_status()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = client.get(path, params=params, headers=headers)
        samples.append((time.perf_counter() - t0) * 1000)
        resp.raise_for_status()
    return samples, resp


def timed_local(fn: Callable[[], object], runs: int) -> list[float]:
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


# --- watches: raw HTTP/1.1 over non-blocking sockets with kernel receive timestamps ------------


def _kernel_time(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return float(sec) + float(nsec) / 1e9
    return None


@dataclass
class Conn:
    """One HTTP/1.1 connection: a response with Content-Length, or a chunked JSON-lines stream."""

    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    status: int = 0
    head_done: bool = False
    chunked: bool = False
    length: int = -1
    body: bytearray = field(default_factory=bytearray)
    partial: bytearray = field(default_factory=bytearray)
    done: bool = False  # the whole response (Content-Length) or the stream's last chunk
    done_at: tuple[float, float] = (0.0, 0.0)  # (kernel, client) time it completed
    closed: bool = False
    # each complete line of the stream: (kernel time, client time, line)
    lines: list[tuple[float, float, bytes]] = field(default_factory=list)

    def reset(self) -> None:
        """Ready for the next response on this keep-alive connection."""
        self.status, self.head_done, self.chunked, self.length = 0, False, False, -1
        self.body.clear()
        self.done = False

    def feed(self, data: bytes, kernel: float, user: float) -> int:
        """Take received bytes; returns how many complete stream lines they finished."""
        self.buf += data
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return 0
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[: end + 4]
            self.status = int(head[0].split(" ", 2)[1])
            headers = {}
            for line in head[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip().lower()
            self.chunked = "chunked" in headers.get("transfer-encoding", "")
            self.length = int(headers.get("content-length", "-1"))
            self.head_done = True
        if not self.chunked:
            self.body += self.buf
            self.buf.clear()
            if 0 <= self.length <= len(self.body):
                self.done, self.done_at = True, (kernel, user)
            return 0
        return self._chunks(kernel, user)

    def _chunks(self, kernel: float, user: float) -> int:
        count = 0
        while not self.done:
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            size = int(bytes(self.buf[:nl]).split(b";")[0], 16)
            if size == 0:
                self.done, self.done_at = True, (kernel, user)
                break
            if len(self.buf) < nl + 2 + size + 2:
                break
            self.partial += self.buf[nl + 2 : nl + 2 + size]
            del self.buf[: nl + 4 + size]
            while (i := self.partial.find(b"\n")) >= 0:
                self.lines.append((kernel, user, bytes(self.partial[:i])))
                del self.partial[: i + 1]
                count += 1
        return count


class Client:
    """A single-threaded selector loop over many ``Conn``s."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sel = selectors.DefaultSelector()
        self.lines = 0  # complete stream lines over all connections
        self.timestamps = True

    def connect(self) -> Conn:
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            self.timestamps = False
        sock.setblocking(False)
        conn = Conn(sock)
        self.sel.register(sock, selectors.EVENT_READ, conn)
        return conn

    def request(self, conn: Conn, method: str, target: str, body: bytes = b"", **hdr: str) -> float:
        """Send one request; returns the client time just before sending."""
        headers = {"Host": f"{self.host}:{self.port}", "Accept": "application/json", **hdr}
        if body or method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        head = f"{method} {target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.reset()
        sent = time.time()
        conn.sock.setblocking(True)
        conn.sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        conn.sock.setblocking(False)
        return sent

    def pump(self, until: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        space = socket.CMSG_SPACE(16)
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self.sel.select(min(left, 0.5)):
                conn: Conn = key.data
                try:
                    data, anc, _, _ = conn.sock.recvmsg(1 << 18, space)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data, anc = b"", []
                user = time.time()
                if not data:
                    conn.closed = True
                    self.sel.unregister(conn.sock)
                    continue
                kernel = _kernel_time(anc)
                self.lines += conn.feed(data, user if kernel is None else kernel, user)
        return True

    def close(self, conn: Conn) -> None:
        if not conn.closed:
            self.sel.unregister(conn.sock)
            conn.closed = True
        conn.sock.close()


@dataclass
class WatchResult:
    latencies: list[float]  # ms after the write's response (kernel timestamps), clamped at 0
    client_latencies: list[float]  # the same as this client's loop saw it
    after_request: list[float]  # ms after the write was sent
    spread: list[float]  # ms after the first watcher got the same event (fan-out cost)
    writes: list[float]  # ms each PATCH took
    open_s: float
    missing: int


def answered(conns: list[Conn]) -> Callable[[], bool]:
    return lambda: all(c.head_done or c.closed for c in conns)


def delivered(client: Client, writer: Conn, lines: int) -> Callable[[], bool]:
    return lambda: writer.done and client.lines >= lines


def fan_out(
    client: Client,
    writer: Conn,
    name: str,
    watchers: int,
    changes: int,
    sent_at: list[float],
    done_at: list[tuple[float, float]],
    writes: list[float],
) -> None:
    """The PATCHes, one at a time, each until every watcher has received its event."""
    for k in range(changes):
        body = orjson.dumps({"metadata": {"labels": {CHANGE_LABEL: str(k)}}})
        want = client.lines + watchers
        sent = client.request(
            writer,
            "PATCH",
            f"{PR_PATH}/{name}",
            body,
            **{"Content-Type": "application/merge-patch+json"},
        )
        if not client.pump(delivered(client, writer, want), 60):
            print(f"  change {k}: timed out ({client.lines - want + watchers} events seen)")
        if writer.status != 200:
            raise SystemExit(f"PATCH failed: HTTP {writer.status} {bytes(writer.body)[:300]!r}")
        sent_at.append(sent)
        done_at.append(writer.done_at)
        writes.append((writer.done_at[1] - sent) * 1000)
        # let stragglers and any extra events of this change drain before the next one
        client.pump(lambda: False, 0.3)


def watch_fanout(
    server: Server,
    rv: str,
    name: str,
    watchers: int,
    changes: int,
    around_changes: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> WatchResult:
    client = Client(server.host, server.port)
    streams: list[Conn] = []
    target = f"{PR_PATH}?watch=true&resourceVersion={rv}&timeoutSeconds=3600"
    t0 = time.perf_counter()
    batch = 100
    for start in range(0, watchers, batch):
        opened = [client.connect() for _ in range(min(batch, watchers - start))]
        for conn in opened:
            client.request(conn, "GET", target)
        if not client.pump(answered(opened), 120):
            raise SystemExit("watches did not open within 120 s")
        bad = [c for c in opened if c.status != 200]
        if bad:
            raise SystemExit(f"watch refused: HTTP {bad[0].status} {bytes(bad[0].buf)[:300]!r}")
        streams += opened
    open_s = time.perf_counter() - t0
    writer = client.connect()
    sent_at: list[float] = []
    done_at: list[tuple[float, float]] = []
    writes: list[float] = []
    with around_changes():
        fan_out(client, writer, name, watchers, changes, sent_at, done_at, writes)
    for conn in [*streams, writer]:
        client.close(conn)
    latencies: list[float] = []
    client_latencies: list[float] = []
    after_request: list[float] = []
    spread: list[float] = []
    missing = 0
    arrivals: list[dict[int, tuple[float, float]]] = []
    for conn in streams:
        arrived: dict[int, tuple[float, float]] = {}
        arrivals.append(arrived)
        for kernel, user, line in conn.lines:
            event = orjson.loads(line)
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            mark = (meta.get("labels") or {}).get(CHANGE_LABEL)
            if event.get("type") == "MODIFIED" and meta.get("name") == name and mark:
                arrived.setdefault(int(mark), (kernel, user))
        for k in range(changes):
            if k not in arrived:
                missing += 1
                continue
            kernel, user = arrived[k]
            latencies.append(max(0.0, (kernel - done_at[k][0]) * 1000))
            client_latencies.append(max(0.0, (user - done_at[k][1]) * 1000))
            after_request.append((kernel - sent_at[k]) * 1000)
    for k in range(changes):
        times = [a[k][0] for a in arrivals if k in a]
        spread += [(t - min(times)) * 1000 for t in times]
    return WatchResult(latencies, client_latencies, after_request, spread, writes, open_s, missing)


# --- the run ----------------------------------------------------------------------------------


def row(label: str, samples: list[float], base: float | None = None) -> str:
    ratio = f"{p(samples, 0.5) / base:>9.1f}x" if base else f"{'':>10}"
    return (
        f"{label:<46}{p(samples, 0.5):>9.2f}{p(samples, 0.95):>9.2f}{p(samples, 0.99):>9.2f}"
        f"{len(samples):>7}{ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--revisions", type=int, default=10000)
    parser.add_argument("--max-packages", type=int, default=MAX_PACKAGES)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5, help="PATCHes the watchers receive")
    parser.add_argument("--list-runs", type=int, default=20)
    parser.add_argument("--selected-runs", type=int, default=100)
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument(
        "--tcp-nodelay",
        action="store_true",
        help="what-if: start the server with TCP_NODELAY on its sockets (docs/api.md)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="py-spy binary: record the server during the list and the watch phase",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=Path("bench-api-profile"),
        help="where --py-spy writes list.txt and watch.txt (collapsed stacks)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="porch-bench-api-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        seed(work / "seed.git", args.revisions, args.max_packages)
        seeded_s = time.perf_counter() - t0
        server = start_server(work / "data", work / "serve.log", tcp_nodelay=args.tcp_nodelay)
        if args.tcp_nodelay:
            print("WHAT-IF run: the server's sockets have TCP_NODELAY (not the shipped server)")
        try:
            figures = run(server, work, args, seeded_s)
        except BaseException:
            print(f"server log (tail):\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            server.stop()
        shutil.rmtree(work / "data", ignore_errors=True)
    print(json.dumps(figures))


def run(server: Server, work: Path, args: argparse.Namespace, seeded_s: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=server.url, timeout=120, limits=limits) as client:
        ready_s = register_repository(client, work / "seed.git", args.ready_timeout)
        print(f"server {server.url}; {args.revisions} revisions seeded in {seeded_s:.1f}s,")
        print(f"repository registered and Ready in {ready_s:.1f}s")

        healthz, _ = timed_gets(client, "/healthz", args.selected_runs)
        with profiled(server, args, "list"):
            full, resp = timed_gets(client, PR_PATH, args.list_runs)
        payload = resp.json()
        items = payload["items"]
        rv = str(payload["metadata"]["resourceVersion"])
        size_kib = len(resp.content) / 1024
        table, tresp = timed_gets(client, PR_PATH, args.list_runs, headers={"Accept": TABLE})
        assert tresp.json()["kind"] == "Table"
        encode = timed_local(lambda: orjson.dumps(payload), args.list_runs)

        ours = [i for i in items if i["spec"].get("repository") == REPO_NAME]
        chosen = ours[len(ours) // 2] if ours else items[0]
        name, package = chosen["metadata"]["name"], chosen["spec"]["packageName"]
        by_name, nresp = timed_gets(
            client, PR_PATH, args.selected_runs, params={"fieldSelector": f"metadata.name={name}"}
        )
        assert [i["metadata"]["name"] for i in nresp.json()["items"]] == [name]
        by_package, presp = timed_gets(
            client,
            PR_PATH,
            args.selected_runs,
            params={"fieldSelector": f"spec.packageName={package}"},
        )
        per_package = len(presp.json()["items"])

    watch = watch_fanout(
        server,
        rv,
        name,
        args.watchers,
        args.changes,
        lambda: profiled(server, args, "watch", gil=True),
    )

    n = len(items)
    base = p(encode, 0.5)
    floor = p(healthz, 0.5)
    print(f"\n== {n} package revisions ({size_kib:.0f} KiB as JSON), one client, keep-alive ==")
    print(f"{'request':<46}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'n':>7}{'ratio':>10}")
    print(row("baseline: orjson.dumps(list) in-process", encode))
    print(row("baseline: GET /healthz", healthz))
    print(row(f"list {n} (JSON)   vs orjson", full, base))
    print(row(f"list {n} (Table)  vs orjson", table, base))
    print(row("list fieldSelector=metadata.name  vs /healthz", by_name, floor))
    print(row(f"list fieldSelector=spec.packageName ({per_package})", by_package, floor))
    print(
        f"\n== {args.watchers} watchers x {args.changes} label PATCHes"
        f" (opened in {watch.open_s:.1f}s) =="
    )
    print(f"{'latency':<46}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'n':>7}{'ratio':>10}")
    print(row("PATCH (write) round trip", watch.writes))
    print(
        row("event after write response (kernel)  vs PATCH", watch.latencies, p(watch.writes, 0.5))
    )
    print(row("event after write response (client loop)", watch.client_latencies))
    print(row("event after write was sent (kernel)", watch.after_request))
    print(row("event after the first watcher got it (kernel)", watch.spread))
    if watch.missing:
        print(f"MISSING: {watch.missing} of {args.watchers * args.changes} events never arrived")
    sys.stdout.flush()
    return {
        "list_10000_p50_ms": round(p(full, 0.5), 3),
        "list_selected_p50_ms": round(p(by_name, 0.5), 3),
        "watch_1000_p99_ms": round(p(watch.latencies, 0.99), 3) if watch.latencies else None,
        "revisions_listed": n,
        "watchers": args.watchers,
        "list_p95_ms": round(p(full, 0.95), 3),
        "list_table_p50_ms": round(p(table, 0.5), 3),
        "list_package_p50_ms": round(p(by_package, 0.5), 3),
        "watch_p50_ms": round(p(watch.latencies, 0.5), 3) if watch.latencies else None,
        "watch_after_request_p50_ms": round(p(watch.after_request, 0.5), 3)
        if watch.after_request
        else None,
        "watch_after_request_p99_ms": round(p(watch.after_request, 0.99), 3)
        if watch.after_request
        else None,
        "watch_spread_p99_ms": round(p(watch.spread, 0.99), 3) if watch.spread else None,
        "watch_missing": watch.missing,
        "patch_p50_ms": round(p(watch.writes, 0.5), 3),
        "patch_p99_ms": round(p(watch.writes, 0.99), 3),
        "orjson_dumps_p50_ms": round(base, 3),
        "healthz_p50_ms": round(floor, 3),
        "ratio_list_vs_orjson": round(p(full, 0.5) / base, 2),
        "ratio_selected_vs_healthz": round(p(by_name, 0.5) / floor, 2),
    }


if __name__ == "__main__":
    main()
