"""Scale: 1,000 repositories x 50 revisions on PostgreSQL, served by real ``porch serve``.

Setup (not timed): ``--repos`` local bare repositories are seeded with ``--revisions``
published revisions each (``seed()`` of ``bench/lifecycle.py``: raw pygit2 plumbing, spread
over at most ``--max-packages`` packages per repository), on ``--seed-workers`` processes. A
throw-away PostgreSQL (``porch.testing.postgres.PostgresServer``) gets a fresh database, and the
``Repository`` objects are written straight into it through the store's own API
(``open_store(...).transaction()``), so the revision index is empty: what git holds has not been
read yet.

Measured:

* **cold start**: from launching ``porch serve --store postgresql://…`` until a list of one
  repository's revisions comes back complete. On start the engine re-indexes every registered
  repository from git (``Engine.start``), so this is the index build of all revisions. The
  full list of every revision is then fetched (not timed in the figure) to check the count.
* **warm restart**: once the cold-started server has settled (its background syncer wrote
  every Repository's status; the wait is printed, not part of any figure), it is stopped and
  started again on the same database: the index is there, start-up only compares each
  repository's refs with the sync mark its last sync left (docs/sync.md), and the syncer
  takes that over instead of checking again. Same end point as the cold start.
* **RSS**: the server's peak resident set (``VmHWM``) at the end, after the mixed phase.
* **list one repository**: p50 of ``GET …/packagerevisions?fieldSelector=spec.repository=R``
  (``--revisions`` items) over one keep-alive connection, R random; the baseline is
  ``GET /healthz`` on the same server (one HTTP round trip through the app), as a ratio.
* **mixed**: ``--clients`` concurrent keep-alive connections (``--replicas`` servers on the same
  database, clients spread over them) for ``--mixed-seconds``, each in a loop of: get a
  revision by name (40 %), list one repository (25 %), create a draft (15 %), update a draft
  (20 %: GET then PUT of a label; every fourth update deliberately PUTs a stale
  resourceVersion, and drafts are shared by all clients, so 409 Conflict is expected and counted
  as a correct answer). Operations/s counts HTTP requests answered as expected; any other
  status is an error and is reported.

The clients are asyncio coroutines over raw HTTP/1.1 in one process (cheaper than httpx, so
the 2 cores go to the server as far as possible); client and server share the machine.

The last line of output is one JSON object: ``cold_start_s``, ``warm_restart_s``, ``rss_mib``,
``list_one_repo_ms``, ``mixed_ops_per_s``, then extra figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lifecycle import p, seed  # noqa: E402

from api import Server  # noqa: E402
from api import start_server as api_start_server  # noqa: E402

NS = "scale"
PR_PATH = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisions"
REPO_PATH = f"/apis/config.porch.kpt.dev/v1alpha1/namespaces/{NS}/repositories"
START_TIMEOUT = 1800.0  # an upper bound for a start at full scale, not a speed


# --- setup --------------------------------------------------------------------------------------


def repo_name(i: int) -> str:
    return f"repo-{i:04d}"


def _seed_range(root: str, first: int, last: int, revisions: int, max_packages: int) -> None:
    for i in range(first, last):
        seed(Path(root) / f"{repo_name(i)}.git", revisions, max_packages)


def seed_all(root: Path, repos: int, revisions: int, max_packages: int, workers: int) -> None:
    step = max(1, -(-repos // max(1, workers * 4)))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(_seed_range, str(root), a, min(repos, a + step), revisions, max_packages)
            for a in range(0, repos, step)
        ]
        for f in futures:
            f.result()


def register_in_store(dsn: str, root: Path, repos: int, data_dir: Path) -> None:
    """Repository objects written with the store's API: registered, not yet indexed."""
    from porch.api.names import object_uid
    from porch.store.factory import open_store
    from porch.store.types import ObjectRow

    store = open_store(dsn, data_dir)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        with store.transaction() as txn:
            for i in range(repos):
                name = repo_name(i)
                body = {
                    "metadata": {
                        "name": name,
                        "namespace": NS,
                        "uid": object_uid("Repository", "config.porch.kpt.dev/v1alpha1", NS, name),
                        "creationTimestamp": now,
                        "generation": 1,
                    },
                    "spec": {
                        "type": "git",
                        "content": "Package",
                        "description": "bench/scale.py seed",
                        "git": {"repo": str(root / f"{name}.git"), "branch": "main"},
                    },
                }
                txn.put_object(ObjectRow("Repository", NS, name, body, txn.next_resource_version()))
    finally:
        store.close()


# --- servers ----------------------------------------------------------------------------------


def start_server(data_dir: Path, store: str, log: Path) -> tuple[Server, float]:
    """``porch serve`` on a free port; returns it and the seconds until it printed its URL."""
    t0 = time.perf_counter()
    server = api_start_server(
        data_dir, log, extra=("--store", store), timeout=START_TIMEOUT, log_mode="a"
    )
    return server, time.perf_counter() - t0


def published(items: list[dict[str, Any]]) -> int:
    """Numbered revisions among listed ones (each package's ``main`` revision is listed too)."""
    return sum(1 for i in items if (i["spec"].get("revision") or 0) > 0)


def until_lists(server: Server, repo: str, want: int) -> None:
    """Returns once a list of one repository's revisions is complete."""
    with httpx.Client(base_url=server.url, timeout=600) as client:
        while True:
            resp = client.get(PR_PATH, params={"fieldSelector": f"spec.repository={repo}"})
            if resp.status_code == 200 and published(resp.json()["items"]) >= want:
                return
            time.sleep(0.05)


def until_settled(server: Server, repos: int) -> None:
    """Returns once every Repository's status records a sync: the background syncer has
    finished its first round (status, head commit, package count of each repository)."""
    with httpx.Client(base_url=server.url, timeout=600) as client:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            items = client.get(REPO_PATH).json()["items"]
            if sum(1 for r in items if (r.get("status") or {}).get("lastFullSyncTime")) >= repos:
                return
            time.sleep(1.0)
    raise SystemExit(f"the Repositories' status was not complete after {START_TIMEOUT:.0f}s")


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of a process, MiB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_start(
    data_dir: Path, store: str, log: Path, repos: int, revisions: int
) -> tuple[Server, float, float, float]:
    """A started server, seconds until it printed its URL and until one repo lists, and the
    CPU seconds the server used until then (what the start costs, however busy the machine)."""
    t0 = time.perf_counter()
    server, serving_s = start_server(data_dir, store, log)
    until_lists(server, repo_name(repos - 1), revisions)
    return server, serving_s, time.perf_counter() - t0, cpu_s(server.proc.pid)


# --- the mixed workload: raw HTTP/1.1 over asyncio streams ------------------------------------


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = orjson.dumps(body) if body is not None else b""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: application/json\r\n"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.writer.write(head.encode("latin-1") + b"\r\n" + data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip().lower()
        if "chunked" in headers.get("transfer-encoding", ""):
            payload = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                payload += chunk[:-2]
            content = bytes(payload)
        else:
            content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            self.writer.close()
            self.writer = None
        return status, orjson.loads(content) if content else None


@dataclass
class Tally:
    ok: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # the first of each unexpected answer

    def count(
        self, op: str, status: int, expected: tuple[int, ...], ms: float, obj: Any = None
    ) -> bool:
        self.latencies.setdefault(op, []).append(ms)
        if status == 409 and 409 in expected:
            self.conflicts += 1
        if status in expected:
            self.ok[op] = self.ok.get(op, 0) + 1
            return True
        key = f"{op} {status}"
        self.errors[key] = self.errors.get(key, 0) + 1
        if key not in self.messages:
            self.messages[key] = str((obj or {}).get("message", obj))[:300]
        return False


async def client_loop(
    k: int,
    server: Server,
    names: list[str],
    repos: int,
    drafts: list[str],
    until: float,
    tally: Tally,
) -> None:
    rnd = random.Random(k)
    conn = Conn(server.host, server.port)
    created = 0

    async def call(
        op: str, method: str, target: str, expected: tuple[int, ...], body: Any = None
    ) -> tuple[int, Any]:
        t0 = time.perf_counter()
        status, obj = await conn.request(method, target, body)
        tally.count(op, status, expected, (time.perf_counter() - t0) * 1000, obj)
        return status, obj

    while time.perf_counter() < until:
        roll = rnd.random()
        if roll < 0.40:
            await call("get", "GET", f"{PR_PATH}/{rnd.choice(names)}", (200,))
        elif roll < 0.65:
            repo = repo_name(rnd.randrange(repos))
            await call("list", "GET", f"{PR_PATH}?fieldSelector=spec.repository={repo}", (200,))
        elif roll < 0.80 or not drafts:
            created += 1
            body = {
                "apiVersion": "porch.kpt.dev/v1alpha1",
                "kind": "PackageRevision",
                "metadata": {"namespace": NS},
                "spec": {
                    "packageName": f"mixed-{k:02d}-{created:05d}",
                    "repository": repo_name(rnd.randrange(repos)),
                    "workspaceName": "ws1",
                    "tasks": [{"type": "init", "init": {"description": "bench/scale.py"}}],
                },
            }
            status, obj = await call("create", "POST", PR_PATH, (201,), body)
            if status == 201:
                drafts.append(obj["metadata"]["name"])
        else:
            name = rnd.choice(drafts)
            status, obj = await call("update-get", "GET", f"{PR_PATH}/{name}", (200,))
            if status != 200:
                continue
            stale = rnd.random() < 0.25
            if stale:  # an older resourceVersion than the one just read: must be 409
                obj["metadata"]["resourceVersion"] = str(
                    int(obj["metadata"]["resourceVersion"]) - 1
                )
            labels = obj["metadata"].setdefault("labels", {})
            labels["bench.porch.kpt.dev/writer"] = f"c{k}"
            expected = (409,) if stale else (200, 409)
            await call("update", "PUT", f"{PR_PATH}/{name}", expected, obj)


async def mixed(
    servers: list[Server], names: list[str], repos: int, clients: int, seconds: float
) -> tuple[Tally, float]:
    tally = Tally()
    drafts: list[str] = []
    t0 = time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(
        *(
            client_loop(k, servers[k % len(servers)], names, repos, drafts, until, tally)
            for k in range(clients)
        )
    )
    return tally, time.perf_counter() - t0


# --- the run ----------------------------------------------------------------------------------


def timed_gets(client: httpx.Client, path: str, runs: int, params: Any = None) -> list[float]:
    client.get(path, params=params).raise_for_status()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = client.get(path, params=params)
        samples.append((time.perf_counter() - t0) * 1000)
        resp.raise_for_status()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--revisions", type=int, default=50, help="per repository")
    parser.add_argument("--max-packages", type=int, default=10, help="per repository")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--replicas",
        type=int,
        default=2,
        help="servers on the one database in the mixed phase (default 2: the scaled-out"
        " deployment issue #7 is about; 1 measures a single server)",
    )
    parser.add_argument("--mixed-seconds", type=float, default=30.0)
    parser.add_argument("--list-runs", type=int, default=200)
    parser.add_argument("--seed-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = parser.parse_args()

    from porch.testing.postgres import PostgresServer

    with tempfile.TemporaryDirectory(prefix="porch-bench-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with PostgresServer() as pg:
            figures = run(work, pg.create_database(), args)
        # Printed before the clean-up, which removes some GiB of repositories for a minute
        # or more (nothing is printed after it: this stays the last line).
        print(json.dumps(figures))
        sys.stdout.flush()


def run(work: Path, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    total = args.repos * args.revisions
    t0 = time.perf_counter()
    seed_all(work / "repos", args.repos, args.revisions, args.max_packages, args.seed_workers)
    seeded_s = time.perf_counter() - t0
    register_in_store(dsn, work / "repos", args.repos, work / "data-0")
    print(f"{args.repos} repositories x {args.revisions} revisions = {total} seeded in")
    print(f"{seeded_s:.1f}s ({args.seed_workers} processes); Repository objects in PostgreSQL")
    sys.stdout.flush()

    logs = [work / f"serve-{i}.log" for i in range(max(1, args.replicas))]
    data = [work / f"data-{i}" for i in range(max(1, args.replicas))]
    servers: list[Server] = []
    try:
        server, cold_serving_s, cold_s, cold_cpu_s = timed_start(
            data[0], dsn, logs[0], args.repos, args.revisions
        )
        servers.append(server)
        with httpx.Client(base_url=server.url, timeout=600) as client:
            t1 = time.perf_counter()
            items = client.get(PR_PATH).json()["items"]
            full_list_s = time.perf_counter() - t1
            # A server that indexes in the background may have finished the last repository
            # before others: then the cold start lasts until the full list is complete.
            late = 0
            while published(items) < total and late < START_TIMEOUT / 2:
                time.sleep(1.0)
                late += 1
                items = client.get(PR_PATH).json()["items"]
            if late:
                cold_s += time.perf_counter() - t1
                print(f"(the full list was complete {time.perf_counter() - t1:.1f}s later)")
        names = [i["metadata"]["name"] for i in items]
        if published(items) != total:
            raise SystemExit(f"cold start: {published(items)} published revisions, {total} seeded")
        print(f"cold start: URL printed after {cold_serving_s:.1f}s, lists after {cold_s:.1f}s")
        print(f"(server CPU {cold_cpu_s:.1f}s);")
        print(f"full list of {len(items)} ({total} published) took {full_list_s:.2f}s")
        sys.stdout.flush()
        # The restart below is one of a server that had settled: its syncer wrote every
        # Repository's status once (a server stopped before that redoes it after the restart).
        t1 = time.perf_counter()
        until_settled(server, args.repos)
        settle_s = time.perf_counter() - t1
        print(f"every Repository's status written {settle_s:.1f}s after the full list")
        sys.stdout.flush()

        server.stop()
        servers.clear()
        server, warm_serving_s, warm_s, warm_cpu_s = timed_start(
            data[0], dsn, logs[0], args.repos, args.revisions
        )
        servers.append(server)
        print(
            f"warm restart: URL printed after {warm_serving_s:.2f}s, lists after {warm_s:.2f}s"
            f" (server CPU {warm_cpu_s:.2f}s)"
        )
        sys.stdout.flush()
        for i in range(1, len(data)):
            servers.append(timed_start(data[i], dsn, logs[i], args.repos, args.revisions)[0])

        rnd = random.Random(7)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            healthz = timed_gets(client, "/healthz", args.list_runs)
            one = [
                timed_gets(
                    client,
                    PR_PATH,
                    1,
                    {"fieldSelector": f"spec.repository={repo_name(rnd.randrange(args.repos))}"},
                )[0]
                for _ in range(args.list_runs)
            ]
            got = client.get(PR_PATH, params={"fieldSelector": "spec.repository=repo-0000"})
            per_repo = len(got.json()["items"])
            assert published(got.json()["items"]) == args.revisions, per_repo

        cpu_before = sum(cpu_s(s.proc.pid) for s in servers)
        tally, elapsed = asyncio.run(
            mixed(servers, names, args.repos, args.clients, args.mixed_seconds)
        )
        mixed_cpu_s = sum(cpu_s(s.proc.pid) for s in servers) - cpu_before
        rss = [rss_mib(s.proc.pid) for s in servers]
    except BaseException:
        for s in servers:
            print(f"server log (tail):\n{s.log_tail()}", file=sys.stderr)
        raise
    finally:
        for s in servers:
            s.stop()

    ok = sum(tally.ok.values())
    errors = sum(tally.errors.values())
    ops_s = ok / elapsed
    peak = max(h for _, h in rss)
    floor = p(healthz, 0.5)
    print(f"\n== {args.repos} x {args.revisions} = {total} revisions on PostgreSQL ==")
    print(f"{'figure':<52}{'value':>12}{'target':>12}")
    print(f"{'cold start to serving lists (s)':<52}{cold_s:>12.1f}{'<= 60':>12}")
    print(f"{'warm restart (s)':<52}{warm_s:>12.2f}{'<= 5':>12}")
    print(f"{'server peak RSS (MiB, VmHWM)':<52}{peak:>12.0f}{'<= 1024':>12}")
    print(
        f"{'list one repository p50 (ms)':<52}{p(one, 0.5):>12.2f}{'<= 10':>12}"
        f"   p95 {p(one, 0.95):.2f}, {p(one, 0.5) / floor:.1f}x GET /healthz ({floor:.2f} ms)"
    )
    print(
        f"{f'mixed, {args.clients} clients, {len(servers)} server(s) (ops/s)':<52}"
        f"{ops_s:>12.0f}{'>= 200':>12}"
    )
    print(f"\nmixed: {ok} requests answered as expected in {elapsed:.1f}s, {errors} errors")
    print(f"{'op':<12}{'ok':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for op, lat in sorted(tally.latencies.items()):
        print(f"{op:<12}{tally.ok.get(op, 0):>8}{p(lat, 0.5):>10.1f}{p(lat, 0.95):>10.1f}")
    print(f"409 Conflict (expected): {tally.conflicts}")
    print(
        f"server CPU during the mixed phase: {mixed_cpu_s:.1f}s of {elapsed:.1f}s wall"
        f" ({mixed_cpu_s / max(1, ok) * 1000:.2f} ms per request)"
    )
    if tally.errors:
        print(f"UNEXPECTED: {tally.errors}")
        for key, message in tally.messages.items():
            print(f"  first {key}: {message}")
    sys.stdout.flush()
    return {
        "cold_start_s": round(cold_s, 2),
        "warm_restart_s": round(warm_s, 2),
        "rss_mib": round(peak, 1),
        "list_one_repo_ms": round(p(one, 0.5), 3),
        "mixed_ops_per_s": round(ops_s, 1),
        "repos": args.repos,
        "revisions": total,
        "replicas": len(servers),
        "clients": args.clients,
        "seed_s": round(seeded_s, 1),
        "cold_url_printed_s": round(cold_serving_s, 2),
        "cold_server_cpu_s": round(cold_cpu_s, 2),
        "warm_server_cpu_s": round(warm_cpu_s, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "warm_url_printed_s": round(warm_serving_s, 2),
        "full_list_s": round(full_list_s, 3),
        "settle_after_full_list_s": round(settle_s, 1),
        "list_one_repo_p95_ms": round(p(one, 0.95), 3),
        "healthz_p50_ms": round(floor, 3),
        "ratio_list_one_vs_healthz": round(p(one, 0.5) / floor, 2),
        "rss_now_mib": round(max(r for r, _ in rss), 1),
        "mixed_conflicts_409": tally.conflicts,
        "mixed_errors": errors,
        "mixed_server_cpu_ms_per_op": round(mixed_cpu_s / max(1, ok) * 1000, 3),
        "mixed_ok_by_op": tally.ok,
    }


if __name__ == "__main__":
    main()
