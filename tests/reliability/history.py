"""Record a concurrent history against real servers and check it against a sequential model.

``Workload`` runs N client threads, each issuing random operations over raw HTTP (httpx):
create, update (labels) with the current or a deliberately stale resourceVersion, propose,
approve, reject, delete (Draft/Proposed only) and a resources update. Every request is recorded
as an ``Op`` with its monotonic start/end time, the resourceVersion it was based on and the
answer. A ``WatchRecorder`` per replica records the committed order. ``check`` then verifies:

* each watch stream has strictly increasing resourceVersions, and all streams are equal;
* every successful write is in the stream, with the type it implies, at its resourceVersion;
* compare-and-swap: the event before a successful write's event, for that object, carries
  exactly the resourceVersion the write was based on (so no update was lost), and the object
  in the event holds what the write asked for;
* every stale write (based on a resourceVersion older than one a completed request had already
  returned for that object) got 409, and every 409 had a newer committed version to lose to;
* real-time order: a write that finished before another started has a smaller resourceVersion;
* replaying the stream through the lifecycle model: only legal transitions, revision 0 until
  publish, publish numbers per package unique and gap-free (1, 2, 3, ...), never renumbered;
* the final list equals the state the replay ends in.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

NS = "default"
PR_PATH = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisions"
PRR_PATH = f"/apis/porch.kpt.dev/v1alpha1/namespaces/{NS}/packagerevisionresources"
REPO_PATH = f"/apis/config.porch.kpt.dev/v1alpha1/namespaces/{NS}/repositories"
TIMEOUT = httpx.Timeout(120.0)  # an upper bound, never a speed expectation

WRITES = ("create", "update", "stale-update", "propose", "approve", "reject", "delete", "resources")
WEIGHTS = (3, 4, 1, 2, 2, 1, 1, 2)
LEGAL = {
    ("Draft", "Draft"),
    ("Draft", "Proposed"),
    ("Proposed", "Draft"),
    ("Proposed", "Proposed"),
    ("Proposed", "Published"),
    ("Published", "Published"),
    ("Published", "DeletionProposed"),
    ("DeletionProposed", "Published"),
    ("DeletionProposed", "DeletionProposed"),
}


@dataclass
class Op:
    client: int
    seq: int
    kind: str
    name: str
    base_rv: int  # the resourceVersion the write was based on (0: none, e.g. create/delete)
    start: float
    end: float = 0.0
    status: int = 0
    rv: int = 0  # resourceVersion in the answer (0: none)
    expect: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def describe(self) -> str:
        return (
            f"client {self.client} op {self.seq} {self.kind} {self.name} base={self.base_rv}"
            f" -> {self.status} rv={self.rv} {self.text[:200]}"
        )


@dataclass(frozen=True)
class Event:
    type: str
    name: str
    rv: int
    lifecycle: str
    revision: int
    package: str
    labels: tuple[tuple[str, str], ...]


def _event(raw: dict[str, Any]) -> Event:
    obj = raw["object"]
    meta, spec = obj["metadata"], obj.get("spec", {})
    return Event(
        type=raw["type"],
        name=meta["name"],
        rv=int(meta["resourceVersion"]),
        lifecycle=spec.get("lifecycle", "") or "Draft",
        revision=int(spec.get("revision", 0) or 0),
        package=spec.get("packageName", ""),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
    )


class WatchRecorder:
    """Follows the packagerevision watch of one replica from a resourceVersion, resuming if cut."""

    def __init__(self, url: str, since: str, repository: str) -> None:
        self.events: list[Event] = []
        self.errors: list[str] = []
        self._url, self._since, self._repository = url, since, repository
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(120.0, read=None))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        since = self._since
        while not self._stop.is_set():
            params = {"watch": "true", "resourceVersion": since, "allowWatchBookmarks": "false"}
            try:
                with self._client.stream("GET", PR_PATH, params=params) as r:
                    if r.status_code != 200:
                        self.errors.append(f"watch answered {r.status_code}: {r.read()!r}")
                        return
                    for line in r.iter_lines():
                        if not line:
                            continue
                        raw = orjson.loads(line)
                        if raw["type"] == "ERROR":
                            self.errors.append(f"watch error event: {raw}")
                            return
                        if raw["type"] == "BOOKMARK":
                            continue
                        event = _event(raw)
                        since = str(event.rv)
                        if event.name.startswith(f"{self._repository}."):
                            self.events.append(event)
            except httpx.HTTPError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # reconnect and resume from the last seen resourceVersion

    def wait_until(self, rv: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.errors:
                return
            if self.events and self.events[-1].rv >= rv:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"watch on {self._url} did not reach resourceVersion {rv} within {timeout}s;"
            f" last {self.events[-1] if self.events else None}"
        )

    def close(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(10)


def _pr_body(repository: str, package: str, workspace: str) -> dict[str, Any]:
    return {
        "apiVersion": "porch.kpt.dev/v1alpha1",
        "kind": "PackageRevision",
        "metadata": {"namespace": NS},
        "spec": {"packageName": package, "repository": repository, "workspaceName": workspace},
    }


class Workload:
    """``clients`` threads, ``ops`` operations in all, over the given base URLs (round robin)."""

    def __init__(
        self, urls: Sequence[str], repository: str, *, seed: int, clients: int, ops: int
    ) -> None:
        self.urls, self.repository, self.seed = list(urls), repository, seed
        self.clients, self.ops = clients, ops
        self.history: list[Op] = []
        self._names: list[str] = []
        self._lock = threading.Lock()
        self.packages = [f"p{i}" for i in range(8)]
        self._created: set[str] = set()  # packages with a revision
        self._published: dict[str, list[str]] = defaultdict(list)  # package -> published names

    def run(self) -> None:
        per = [
            self.ops // self.clients + (1 if i < self.ops % self.clients else 0)
            for i in range(self.clients)
        ]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._client, args=(i, per[i], errors), daemon=True)
            for i in range(self.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _client(self, index: int, count: int, errors: list[BaseException]) -> None:
        rng = random.Random(self.seed * 1000 + index)
        client = httpx.Client(base_url=self.urls[index % len(self.urls)], timeout=TIMEOUT)
        stale: dict[str, dict[str, Any]] = {}  # the first copy this client read of each object
        try:
            for seq in range(count):
                kind = rng.choices(WRITES, WEIGHTS)[0]
                with self._lock:
                    names = list(self._names)
                if kind != "create" and not names:
                    kind = "create"
                op = self._one(client, rng, index, seq, kind, names, stale)
                if op is None:
                    continue
                with self._lock:
                    self.history.append(op)
                    if op.kind == "create" and op.ok:
                        self._names.append(op.name)
                        self._created.add(op.name.split(".")[1])
                    if op.kind == "approve" and op.ok:
                        self._published[op.name.split(".")[1]].append(op.name)
                    if op.kind == "delete" and op.status in (200, 404) and op.name in self._names:
                        self._names.remove(op.name)
        except BaseException as exc:  # surfaced by run()
            errors.append(exc)
        finally:
            client.close()

    def _one(
        self,
        client: httpx.Client,
        rng: random.Random,
        index: int,
        seq: int,
        kind: str,
        names: list[str],
        stale: dict[str, dict[str, Any]],
    ) -> Op | None:
        if kind == "create":
            # A package's first revision is an init; later ones copy a published revision
            # (an init of an existing package is refused). Without one, a new package.
            package = rng.choice(self.packages)
            with self._lock:
                sources = list(self._published[package])
                exists = package in self._created
            body = _pr_body(self.repository, package, f"c{index}-{seq}")
            if sources:
                edit = {"sourceRef": {"name": rng.choice(sources)}}
                body["spec"]["tasks"] = [{"type": "edit", "edit": edit}]
            elif exists:
                body["spec"]["packageName"] = f"n{index}-{seq}"
            op = Op(index, seq, kind, "", 0, time.monotonic())
            return self._finish(op, client.post(PR_PATH, json=body), name_from_body=True)
        mine = [n for n in names if f".c{index}-" in n]
        name = rng.choice(mine if mine and rng.random() < 0.7 else names)
        got = client.get(f"{PR_PATH}/{name}")
        if got.status_code == 404:  # deleted by another client: create instead
            return self._one(client, rng, index, seq, "create", names, stale)
        if got.status_code != 200:
            return None
        current = got.json()
        stale.setdefault(name, current)
        lifecycle = current["spec"].get("lifecycle") or "Draft"
        # Choose a write that applies to what was read, so almost every choice is a request.
        if kind in ("propose", "approve", "reject"):
            kind = "propose" if lifecycle == "Draft" else kind
        if kind == "propose" and lifecycle == "Proposed":
            kind = "approve"
        if lifecycle not in ("Draft", "Proposed") and kind in WRITES[3:]:
            kind = "update"
        if kind == "resources" and lifecycle != "Draft":
            kind = "update"
        if kind == "resources":
            got = client.get(f"{PRR_PATH}/{name}")
            if got.status_code != 200:
                return None
            body = got.json()
            body["spec"]["resources"][f"c{index}-{seq}.yaml"] = (
                f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{index}-{seq}\n"
            )
            op = Op(index, seq, kind, name, int(body["metadata"]["resourceVersion"]), 0.0)
            op.start = time.monotonic()
            return self._finish(op, client.put(f"{PRR_PATH}/{name}", json=body))
        if kind == "delete":
            op = Op(index, seq, kind, name, 0, time.monotonic())
            return self._finish(op, client.delete(f"{PR_PATH}/{name}"))
        body = copy.deepcopy(current)
        path = f"{PR_PATH}/{name}"
        if kind == "stale-update":
            body = copy.deepcopy(stale[name])
            if body["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]:
                kind = "update"  # nothing newer known yet: an ordinary update
        if kind in ("update", "stale-update"):
            labels = dict(body["metadata"].get("labels") or {})
            labels["writer"] = f"c{index}-{seq}"
            body["metadata"]["labels"] = labels
            expect: dict[str, Any] = {"writer": labels["writer"]}
        elif kind == "propose":
            body["spec"]["lifecycle"] = "Proposed"
            expect = {"lifecycle": "Proposed"}
        elif kind in ("approve", "reject"):
            target = "Published" if kind == "approve" else "Draft"
            body["spec"]["lifecycle"] = target
            path += "/approval"
            expect = {"lifecycle": target}
        else:
            raise AssertionError(kind)
        op = Op(index, seq, kind, name, int(body["metadata"]["resourceVersion"]), 0.0)
        op.expect = expect
        op.start = time.monotonic()
        return self._finish(op, client.put(path, json=body))

    @staticmethod
    def _finish(op: Op, r: httpx.Response, *, name_from_body: bool = False) -> Op:
        op.end = time.monotonic()
        op.status = r.status_code
        if op.ok:
            body = r.json()
            if name_from_body:
                op.name = body["metadata"]["name"]
            rv = body.get("metadata", {}).get("resourceVersion")
            op.rv = int(rv) if rv else 0
        else:
            op.text = r.text
        return op


@dataclass
class Report:
    ops: int
    ok: int
    conflicts: int
    indeterminate: int
    stale: int
    events: int
    published: int
    failures: list[str]
    by_kind: dict[str, dict[int, int]] = field(default_factory=dict)


def check(
    history: Sequence[Op],
    streams: Sequence[Sequence[Event]],
    final: dict[str, dict[str, Any]],
    *,
    allowed: Callable[[Op], bool] | None = None,
) -> Report:
    """Check a recorded history; ``final`` is the final list of the repository's revisions."""
    failures: list[str] = []

    def fail(message: str) -> None:
        if len(failures) < 40:
            failures.append(message)

    stream = list(streams[0])
    for other in streams[1:]:
        if [(e.type, e.name, e.rv) for e in other] != [(e.type, e.name, e.rv) for e in stream]:
            fail(f"watch streams differ: {len(other)} vs {len(stream)} events")
    for prev, cur in zip(stream, stream[1:], strict=False):
        if cur.rv <= prev.rv:
            fail(f"watch resourceVersions not increasing: {prev} then {cur}")
    # Events of our objects (placeholders, revision -1, are the engine's own writes).
    by_rv = {(e.name, e.rv): i for i, e in enumerate(stream)}
    per_name: dict[str, list[Event]] = defaultdict(list)
    for e in stream:
        per_name[e.name].append(e)

    # Each write, found in the stream; compare-and-swap; content.
    types = {"create": "ADDED", "delete": "DELETED"}
    at = {(e.name, e.rv): e for e in stream}
    for op in history:
        base = at.get((op.name, op.base_rv))
        if op.kind == "resources" and op.status == 422 and base and base.lifecycle != "Draft":
            continue  # the resources of a revision that was no longer a Draft when read
        if (
            op.kind == "delete"
            and op.status == 403
            and any(e.lifecycle == "Published" for e in per_name.get(op.name, []))
        ):
            continue  # approved between the client's read and its delete
        if op.status == 504:
            continue  # kube's Timeout: the write may or may not happen (indeterminate)
        if op.status == 503 and "cannot push" in op.text:
            continue  # the other replica pushed first; the write was rolled back (retryable)
        if (
            op.status >= 500
            or op.status in (0, 400, 422)
            or (not op.ok and op.status not in (404, 409))
        ):
            if allowed is None or not allowed(op):
                fail(f"unexpected answer: {op.describe()}")
            continue
        if not op.ok:
            continue
        if op.kind == "delete":
            if not any(e.type == "DELETED" for e in per_name.get(op.name, [])):
                fail(f"delete succeeded but no DELETED event: {op.describe()}")
            continue
        index = by_rv.get((op.name, op.rv))
        if index is None:
            fail(f"successful write missing from the watch stream: {op.describe()}")
            continue
        event = stream[index]
        if event.type != types.get(op.kind, "MODIFIED"):
            fail(f"write is {event.type} in the stream: {op.describe()}")
        if op.base_rv:
            events = per_name[op.name]
            pos = events.index(event)
            before = events[pos - 1].rv if pos > 0 else None
            if before != op.base_rv:
                fail(f"lost update: event before rv {op.rv} is {before}: {op.describe()}")
        if "writer" in op.expect and dict(event.labels).get("writer") != op.expect["writer"]:
            fail(f"the write's label is not in its event {event}: {op.describe()}")
        if "lifecycle" in op.expect and event.lifecycle != op.expect["lifecycle"]:
            fail(f"the write's lifecycle is not in its event {event}: {op.describe()}")

    # Stale writes: a completed request had already returned a newer version of the object.
    seen: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for op in history:
        if op.ok and op.rv and op.kind != "delete":
            seen[op.name].append((op.end, op.rv))
    stale = 0
    for op in history:
        if not op.base_rv:
            continue
        newer = any(end < op.start and rv > op.base_rv for end, rv in seen[op.name])
        if newer:
            stale += 1
            if op.status not in (409, 404):
                fail(f"stale write not refused with 409: {op.describe()}")
        lost_to = [e for e in per_name.get(op.name, []) if e.rv > op.base_rv]
        if op.status == 409 and "has been modified" in op.text and not lost_to:
            fail(f"409 without a newer committed version: {op.describe()}")

    # Real time: a write that ended before another began committed before it.
    writes = sorted(
        (op for op in history if op.ok and op.rv and op.kind != "delete"), key=lambda o: o.start
    )
    ended = sorted(writes, key=lambda o: o.end)
    j, highest, holder = 0, 0, None
    for op in writes:
        while j < len(ended) and ended[j].end < op.start:
            if ended[j].rv > highest:
                highest, holder = ended[j].rv, ended[j]
            j += 1
        if op.rv <= highest and holder is not None:
            fail(f"real-time order broken: {op.describe()} after {holder.describe()}")

    # Sequential model.
    state: dict[str, Event] = {}
    numbers: dict[str, list[int]] = defaultdict(list)
    for e in stream:
        if e.revision == -1:
            continue  # placeholder rows mirror the branch, not a lifecycle
        old = state.get(e.name)
        if e.type == "ADDED":
            if old is not None:
                fail(f"ADDED twice: {e}")
            if e.lifecycle != "Draft" or e.revision != 0:
                fail(f"created other than as Draft revision 0: {e}")
        elif old is None:
            fail(f"{e.type} of an object not in the model: {e}")
            continue
        elif e.type == "DELETED":
            if old.lifecycle not in ("Draft", "Proposed"):
                fail(f"a {old.lifecycle} revision was deleted: {e}")
            del state[e.name]
            continue
        else:
            if (old.lifecycle, e.lifecycle) not in LEGAL:
                fail(f"illegal transition {old.lifecycle} -> {e.lifecycle}: {e}")
            if old.lifecycle in ("Published", "DeletionProposed") and e.revision != old.revision:
                fail(f"published revision renumbered {old.revision} -> {e.revision}: {e}")
            if old.lifecycle not in ("Published", "DeletionProposed") and e.lifecycle in (
                "Published",
                "DeletionProposed",
            ):
                expected = max(numbers[e.package], default=0) + 1
                if e.revision != expected:
                    fail(f"publish numbered {e.revision}, model says {expected}: {e}")
                numbers[e.package].append(e.revision)
        if e.lifecycle in ("Draft", "Proposed") and e.revision != 0:
            fail(f"unpublished revision with a number: {e}")
        state[e.name] = e
    for package, got in numbers.items():
        if sorted(got) != list(range(1, len(got) + 1)):
            fail(f"revision numbers of {package} not unique and gap-free: {sorted(got)}")

    model = {name: (e.rv, e.lifecycle, e.revision) for name, e in state.items()}
    listed = {
        name: (
            int(o["metadata"]["resourceVersion"]),
            o["spec"].get("lifecycle") or "Draft",
            int(o["spec"].get("revision", 0) or 0),
        )
        for name, o in final.items()
        if int(o["spec"].get("revision", 0) or 0) != -1
    }
    if model != listed:
        diff = sorted(set(model.items()) ^ set(listed.items()))[:10]
        fail(f"final list differs from the replayed model: {diff}")
    by_kind: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for op in history:
        by_kind[op.kind][op.status] += 1
    by_kind = {k: dict(v) for k, v in by_kind.items()}
    return Report(
        ops=len(history),
        ok=sum(op.ok for op in history),
        conflicts=sum(op.status == 409 for op in history),
        indeterminate=sum(op.status in (503, 504) for op in history),
        stale=stale,
        events=len(stream),
        published=sum(len(v) for v in numbers.values()),
        failures=failures,
        by_kind=by_kind,
    )
