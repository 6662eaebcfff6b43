"""The background repository syncer (porch.engine.sync, docs/sync.md).

Remotes are bare repositories served by ``GitHttpServer``; outside changes are pushed with the
git CLI from a separate clone. Scheduling tests drive ``tick()`` with a fake clock; the others run
the real scheduler thread with short intervals and wait for conditions with generous deadlines.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from porch.api.types import (
    GitRepositorySpec,
    Lifecycle,
    ObjectMeta,
    PackageInitTaskSpec,
    PackageRevision,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
    RepositorySync,
    Task,
)
from porch.engine import Engine
from porch.engine.sync import (
    LocalLease,
    RepositorySyncer,
    SyncOutcome,
    SyncSettings,
    backoff_delay,
    clean_message,
    parse_schedule,
)
from porch.engine.watch import Watcher
from porch.repository.memory import MemoryRepository
from porch.repository.types import Author, PackageRepository, RevisionInfo
from porch.server import Settings, build_engine
from porch.store.factory import open_store
from porch.testing.git_repos import KPTFILE, cli_commit, git, new_bare
from porch.testing.git_server import GitHttpServer

NS = "default"
DEADLINE = 30.0
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Outside",
    "GIT_AUTHOR_EMAIL": "outside@example.com",
    "GIT_COMMITTER_NAME": "Outside",
    "GIT_COMMITTER_EMAIL": "outside@example.com",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# --- helpers (also used by tests/apiserver/test_sync_serve.py) ---------------------------------


def seed_remote(root: Path, name: str) -> Path:
    """A bare repository ``root/name.git`` whose main branch has one commit (a README)."""
    bare = new_bare(root / f"{name}.git")
    cli_commit(bare, "main", {"README.md": "hello\n"}, "initial", index=root / f"{name}.index")
    return bare


class Clone:
    """A working clone of a remote, changed with the git CLI (an outside writer)."""

    def __init__(self, url: str, path: Path) -> None:
        self.path = path
        self._run("git", "clone", "-q", url, str(path), cwd=path.parent)

    def _run(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            list(args),
            cwd=cwd or self.path,
            env={**os.environ, **GIT_ENV, "HOME": str(self.path.parent)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def git(self, *args: str) -> str:
        return self._run("git", *args)

    def add_package(self, package: str, tag: str | None = None) -> str:
        """Commit ``package/Kptfile`` on main (and tag it), push; returns the commit."""
        (self.path / package).mkdir(parents=True, exist_ok=True)
        (self.path / package / "Kptfile").write_text(KPTFILE)
        self.git("add", package)
        self.git("commit", "-q", "-m", f"add {package}")
        self.git("push", "-q", "origin", "HEAD:refs/heads/main")
        if tag is not None:
            self.git("tag", tag)
            self.git("push", "-q", "origin", f"refs/tags/{tag}")
        return self.git("rev-parse", "HEAD").strip()

    def delete_tag(self, tag: str) -> None:
        self.git("push", "-q", "origin", f":refs/tags/{tag}")


def repository(name: str, url: str, sync: RepositorySync | None = None) -> Repository:
    return Repository(
        metadata=ObjectMeta(name=name, namespace=NS),
        spec=RepositorySpec(type="git", git=GitRepositorySpec(repo=url, branch="main"), sync=sync),
    )


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = DEADLINE, every: float = 0.05
) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def next_event(
    watcher: Watcher, match: Callable[[str, dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        event = watcher.next(timeout=0.5)
        if event is not None and match(event.type, event.object):
            return event.object
    raise AssertionError(f"no event: {what}")


def status_of(engine: Engine, name: str) -> dict[str, Any]:
    status: dict[str, Any] = engine.objects.get("Repository", NS, name).get("status") or {}
    return status


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


T0 = datetime(2026, 1, 1, 0, 3, 0, tzinfo=UTC)


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = build_engine(Settings(data_dir=tmp_path / "data", sync=False))
    yield eng
    eng.store.close()


class Stack(ExitStack):
    """Teardown in reverse order, then ``late`` callbacks (after every git server is gone)."""

    def __init__(self) -> None:
        super().__init__()
        self.late = ExitStack()


@pytest.fixture
def stack() -> Iterator[Stack]:
    es = Stack()
    with es.late, es:
        yield es


def served(stack: Stack, root: Path) -> GitHttpServer:
    root.mkdir(parents=True, exist_ok=True)
    return stack.enter_context(GitHttpServer(root))


def running_syncer(stack: Stack, engine: Engine, **settings: Any) -> RepositorySyncer:
    values: dict[str, Any] = {
        "ref_interval": 0.2,
        "timeout": 20.0,
        "backoff_initial": 0.2,
        "backoff_max": 1.0,
        "rescan_interval": 0.5,
    }
    values.update(settings)
    syncer = RepositorySyncer(engine, SyncSettings(**values))
    syncer.start()
    # Stopped first, before the git servers go (which frees any hung fetch); the workers are
    # waited for after that, before the engine's store closes.
    stack.callback(syncer.stop, 1.0)
    stack.late.callback(syncer.wait_idle, DEADLINE)
    return syncer


# --- (1) outside changes reach watchers ------------------------------------------------------


def test_pushed_tag_is_added_and_deleted_tag_is_deleted(
    engine: Engine, tmp_path: Path, stack: Stack
) -> None:
    server = served(stack, tmp_path / "remotes")
    bare = seed_remote(server.root, "r1")
    engine.register_repository(repository("r1", server.repo_url("r1.git")))
    watcher = engine.watch(NS)
    stack.callback(watcher.close)
    syncer = running_syncer(stack, engine)
    wait_for(lambda: "lastFullSyncTime" in status_of(engine, "r1"), "the initial sync")

    clone = Clone(server.repo_url("r1.git"), tmp_path / "clone")
    head = clone.add_package("apple", tag="apple/v1")

    def is_apple_v1(kind: str, obj: dict[str, Any]) -> bool:
        spec = obj["spec"]
        return kind == "ADDED" and spec["packageName"] == "apple" and spec["revision"] == 1

    added = next_event(watcher, is_apple_v1, "ADDED apple v1")
    assert added["spec"]["lifecycle"] == "Published"
    assert added["spec"]["repository"] == "r1"
    listed = {p.metadata.name for p in engine.list(NS)[0]}
    assert added["metadata"]["name"] in listed

    # (4) status follows the branch head and the revision count.
    wait_for(lambda: status_of(engine, "r1").get("gitCommitHash") == head, "gitCommitHash")
    assert git(bare, "rev-parse", "main").strip() == head
    status = status_of(engine, "r1")
    count = len([p for p in engine.list(NS)[0] if p.spec.repository == "r1"])
    assert status["packageCount"] == count == 2  # apple v1 and apple on main
    assert ready(status)["status"] == "True"

    clone.delete_tag("apple/v1")

    def is_gone(kind: str, obj: dict[str, Any]) -> bool:
        return kind == "DELETED" and obj["metadata"]["name"] == added["metadata"]["name"]

    next_event(watcher, is_gone, "DELETED apple v1")
    assert added["metadata"]["name"] not in {p.metadata.name for p in engine.list(NS)[0]}
    wait_for(lambda: status_of(engine, "r1").get("packageCount") == 1, "packageCount 1")
    assert syncer.failures(NS, "r1") == 0


# --- (2) a black-hole remote only hurts its own repository -----------------------------------


def test_hanging_remote_fails_alone(engine: Engine, tmp_path: Path, stack: Stack) -> None:
    good = served(stack, tmp_path / "good")
    bad = served(stack, tmp_path / "bad")
    seed_remote(good.root, "good")
    seed_remote(bad.root, "bad")
    engine.register_repository(repository("good", good.repo_url("good.git")))
    engine.register_repository(repository("bad", bad.repo_url("bad.git")))
    bad.set_fault("hang")
    # One slot only: even so the hung sync must not hold up the other repository for long.
    syncer = running_syncer(stack, engine, timeout=1.0, max_concurrent=1)

    assert bad.hanging.wait(DEADLINE), "the bad remote was never asked"
    wait_for(lambda: ready(status_of(engine, "bad")).get("status") == "False", "bad not Ready")
    condition = ready(status_of(engine, "bad"))
    assert condition["reason"] == "Error"
    assert "did not finish within 1s" in condition["message"]
    assert "not answering" in condition["message"]

    watcher = engine.watch(NS)
    stack.callback(watcher.close)
    Clone(good.repo_url("good.git"), tmp_path / "clone").add_package("pear", tag="pear/v1")
    next_event(
        watcher,
        lambda kind, obj: kind == "ADDED" and obj["spec"]["packageName"] == "pear",
        "ADDED pear while the other remote hangs",
    )
    # API reads keep working (completion, not speed, is asserted).
    assert any(p.spec.package_name == "pear" for p in engine.list(NS)[0])
    assert engine.objects.get("Repository", NS, "good")["metadata"]["name"] == "good"
    assert ready(status_of(engine, "good")).get("status") == "True"
    assert ready(status_of(engine, "bad")).get("status") == "False"
    assert syncer.failures(NS, "bad") >= 1
    assert syncer.failures(NS, "good") == 0


def test_unreachable_remote_message_has_no_credentials(
    engine: Engine, tmp_path: Path, stack: Stack
) -> None:
    server = served(stack, tmp_path / "remotes")
    seed_remote(server.root, "r")
    engine.register_repository(repository("r", server.repo_url("r.git")))
    server.set_fault("500")
    running_syncer(stack, engine)
    wait_for(lambda: ready(status_of(engine, "r")).get("status") == "False", "Ready=False")
    message = ready(status_of(engine, "r"))["message"]
    assert "cannot fetch from git repository" in message
    assert clean_message("fetch https://joe:s3cret@example.com/x.git failed") == (
        "fetch https://example.com/x.git failed"
    )


# --- (3) runOnceAt and cron --------------------------------------------------------------------


def test_run_once_at_runs_exactly_once(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "once")
    at = "2026-01-01T00:03:30Z"
    engine.register_repository(repository("once", str(remote), RepositorySync(run_once_at=at)))
    clock = FakeClock(T0)
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(
        engine,
        SyncSettings(ref_interval=1000, full_interval=10_000),
        clock=clock,
        observer=outcomes.append,
    )

    def round_() -> None:
        syncer.tick()
        assert syncer.wait_idle(DEADLINE)

    round_()
    assert [o.reasons for o in outcomes] == [("initial",)]  # runOnceAt is not due yet
    assert "observedRunOnceAt" not in status_of(engine, "once")
    clock.advance(10)
    round_()
    assert len(outcomes) == 1
    clock.advance(25)  # 00:03:35, past runOnceAt
    round_()
    assert [o.reasons for o in outcomes][1:] == [("runOnceAt",)]
    assert outcomes[1].kind == "sync"
    assert status_of(engine, "once")["observedRunOnceAt"] == at
    for _ in range(5):
        clock.advance(60)
        round_()
    assert len(outcomes) == 2


def test_past_due_run_once_at_is_consumed_by_one_sync(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "late")
    at = "2025-12-31T23:00:00Z"
    engine.register_repository(repository("late", str(remote), RepositorySync(run_once_at=at)))
    clock = FakeClock(T0)
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(
        engine, SyncSettings(ref_interval=1000), clock=clock, observer=outcomes.append
    )
    for _ in range(4):
        syncer.tick()
        assert syncer.wait_idle(DEADLINE)
        clock.advance(30)
    assert len(outcomes) == 1
    assert status_of(engine, "late")["observedRunOnceAt"] == at


def test_cron_schedule_sets_next_full_sync(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "cron")
    engine.register_repository(
        repository("cron", str(remote), RepositorySync(schedule="*/5 * * * *"))
    )
    clock = FakeClock(T0)
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(
        engine, SyncSettings(ref_interval=1000), clock=clock, observer=outcomes.append
    )
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    status = status_of(engine, "cron")
    assert status["lastFullSyncTime"] == "2026-01-01T00:03:00Z"
    assert status["nextFullSyncTime"] == "2026-01-01T00:05:00Z"
    assert ready(status)["status"] == "True"
    clock.advance(119)  # 00:04:59: nothing due
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert len(outcomes) == 1
    clock.advance(1)
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert [o.reasons for o in outcomes][1:] == [("schedule",)]
    assert status_of(engine, "cron")["nextFullSyncTime"] == "2026-01-01T00:10:00Z"


@pytest.mark.parametrize("schedule", ["not a cron", "61 * * * *", "* * * * * *"])
def test_invalid_cron_makes_repository_not_ready(
    engine: Engine, tmp_path: Path, schedule: str
) -> None:
    remote = seed_remote(tmp_path, "badcron")
    engine.register_repository(repository("badcron", str(remote), RepositorySync(schedule)))
    clock = FakeClock(T0)
    syncer = RepositorySyncer(engine, SyncSettings(full_interval=600), clock=clock)
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    status = status_of(engine, "badcron")
    condition = ready(status)
    assert condition["status"] == "False"
    assert condition["reason"] == "Error"
    assert condition["message"].startswith(f'invalid spec.sync.schedule "{schedule}": ')
    # The index is still kept fresh, on the default interval.
    assert status["nextFullSyncTime"] == "2026-01-01T00:13:00Z"


def test_parse_schedule() -> None:
    assert parse_schedule("0 */2 * * 1-5") == "0 */2 * * 1-5"
    for bad in ("", "* * * *", "* * * * * *", "60 * * * *", "a b c d e"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


# --- (4) status fields --------------------------------------------------------------------------


def test_status_fields_after_a_sync(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "st")
    engine.register_repository(repository("st", str(remote)))
    watcher = engine.objects.watch("Repository", NS)
    try:
        while watcher.next(timeout=0) is not None:
            pass
        clock = FakeClock(T0)
        syncer = RepositorySyncer(engine, SyncSettings(full_interval=3600), clock=clock)
        syncer.tick()
        syncer.wait_idle(DEADLINE)
        body = engine.objects.get("Repository", NS, "st")
        status = body["status"]
        assert status["lastFullSyncTime"] == "2026-01-01T00:03:00Z"
        assert status["nextFullSyncTime"] == "2026-01-01T01:03:00Z"
        assert status["packageCount"] == 0
        assert status["observedGeneration"] == body["metadata"]["generation"] == 1
        assert ready(status) == {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "Repository Ready",
            "lastTransitionTime": "2026-01-01T00:03:00Z",
        }
        event = watcher.next(timeout=DEADLINE)
        assert event is not None and event.type == "MODIFIED"
        assert event.object["status"]["lastFullSyncTime"] == "2026-01-01T00:03:00Z"
    finally:
        watcher.close()


def test_git_commit_hash_and_count_with_packages(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "pk")
    head = cli_commit(
        remote, "main", {"a/Kptfile": KPTFILE, "b/Kptfile": KPTFILE}, "two", index=tmp_path / "i"
    )
    engine.register_repository(repository("pk", str(remote)))
    syncer = RepositorySyncer(engine, SyncSettings(), clock=FakeClock(T0))
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    status = status_of(engine, "pk")
    assert status["gitCommitHash"] == head
    assert status["packageCount"] == 2


# --- (5) back-off ----------------------------------------------------------------------------


def test_backoff_delay() -> None:
    assert [backoff_delay(n, 5, 60) for n in range(6)] == [0, 5, 10, 20, 40, 60]
    assert backoff_delay(10_000, 5, 60) == 60


def test_backoff_grows_and_resets_on_success(engine: Engine, tmp_path: Path, stack: Stack) -> None:
    server = served(stack, tmp_path / "remotes")
    seed_remote(server.root, "flaky")
    engine.register_repository(repository("flaky", server.repo_url("flaky.git")))
    clock = FakeClock(T0)
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(
        engine,
        SyncSettings(ref_interval=10, backoff_initial=2, backoff_max=5),
        clock=clock,
        observer=outcomes.append,
    )

    def round_() -> None:
        syncer.tick()
        assert syncer.wait_idle(DEADLINE)

    round_()
    assert outcomes[-1].kind == "sync"
    server.set_fault("500")
    clock.advance(10)
    round_()
    assert outcomes[-1].kind == "failed"
    assert syncer.failures(NS, "flaky") == 1
    assert syncer.retry_at(NS, "flaky") == clock.now + timedelta(seconds=2)
    assert ready(status_of(engine, "flaky"))["status"] == "False"
    delays = []
    for _ in range(3):
        retry = syncer.retry_at(NS, "flaky")
        assert retry is not None
        clock.advance(((retry - clock.now).total_seconds()) - 0.5)
        before = len(outcomes)
        round_()
        assert len(outcomes) == before  # not retried early
        clock.advance(0.5)
        round_()
        assert outcomes[-1].kind == "failed" and outcomes[-1].reasons == ("retry",)
        retry = syncer.retry_at(NS, "flaky")
        assert retry is not None
        delays.append((retry - clock.now).total_seconds())
    assert delays == [4, 5, 5]  # doubling, capped
    assert syncer.failures(NS, "flaky") == 4
    server.set_fault(None)
    clock.advance(5)
    round_()
    assert outcomes[-1].kind == "sync"
    assert syncer.failures(NS, "flaky") == 0
    assert syncer.retry_at(NS, "flaky") is None
    assert ready(status_of(engine, "flaky"))["status"] == "True"
    # A later failure starts again from the first delay.
    server.set_fault("500")
    clock.advance(10)
    round_()
    assert syncer.retry_at(NS, "flaky") == clock.now + timedelta(seconds=2)


# --- reacting to repositories, leases, concurrency ---------------------------------------------


def test_new_repository_is_synced_and_deleted_one_forgotten(
    engine: Engine, tmp_path: Path, stack: Stack
) -> None:
    syncer = running_syncer(stack, engine, rescan_interval=3600)
    remote = seed_remote(tmp_path, "fresh")
    engine.register_repository(repository("fresh", str(remote)))
    wait_for(lambda: "lastFullSyncTime" in status_of(engine, "fresh"), "the initial sync")
    assert (NS, "fresh") in syncer.tracked()
    engine.objects.delete("Repository", NS, "fresh")
    wait_for(lambda: (NS, "fresh") not in syncer.tracked(), "the repository to be dropped")


def test_lease_held_elsewhere_skips_the_repository(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "leased")
    engine.register_repository(repository("leased", str(remote)))
    lease = LocalLease()
    clock = FakeClock(T0)
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(
        engine,
        SyncSettings(ref_interval=10),
        clock=clock,
        lease=lease,
        observer=outcomes.append,
    )
    other_replica = lease(f"{NS}/leased")
    assert other_replica is not None and lease(f"{NS}/leased") is None
    with other_replica:
        syncer.tick()
        syncer.wait_idle(DEADLINE)
        assert [o.kind for o in outcomes] == ["skipped"]
        clock.advance(5)
        syncer.tick()  # deferred for one ref interval: no busy retrying
        syncer.wait_idle(DEADLINE)
        assert len(outcomes) == 1
    assert "lastFullSyncTime" not in status_of(engine, "leased")
    clock.advance(5)
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert outcomes[-1].kind == "sync" and outcomes[-1].reasons == ("initial",)
    assert "lastFullSyncTime" in status_of(engine, "leased")


def test_concurrent_syncs_are_bounded(engine: Engine, tmp_path: Path) -> None:
    for i in range(5):
        engine.register_repository(repository(f"c{i}", str(seed_remote(tmp_path, f"c{i}"))))
    clock = FakeClock(T0)
    syncer = RepositorySyncer(engine, SyncSettings(max_concurrent=2), clock=clock)
    import threading

    gate = threading.Event()
    inside: list[str] = []
    original = engine.sync_repository

    def slow_sync(namespace: str, name: str, **kwargs: Any) -> list[str]:
        inside.append(name)
        gate.wait(DEADLINE)
        return original(namespace, name, **kwargs)

    engine.sync_repository = slow_sync  # type: ignore[method-assign]
    syncer.tick()
    wait_for(lambda: len(inside) == 2, "two syncs to start")
    syncer.tick()
    assert len(inside) == 2  # the others wait for a free slot
    gate.set()
    for _ in range(3):
        syncer.wait_idle(DEADLINE)
        syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert sorted(inside) == [f"c{i}" for i in range(5)]


# --- sync_repository against concurrent API writes ---------------------------------------------


class _StaleFirstListing:
    """An adapter whose first listing is taken before an API write lands (a racing sync)."""

    def __init__(self, inner: PackageRepository, during: Callable[[], None]) -> None:
        self._inner = inner
        self._during: Callable[[], None] | None = during

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_revisions(self) -> list[RevisionInfo]:
        listing = self._inner.list_revisions()
        if self._during is not None:
            during, self._during = self._during, None
            during()
        return listing


def test_racing_api_write_is_not_undone_by_a_sync(tmp_path: Path) -> None:
    adapters: dict[str, MemoryRepository] = {}

    def opener(repo: Repository) -> PackageRepository:
        name = repo.metadata.name
        if name not in adapters:
            adapters[name] = MemoryRepository(url=f"memory://{name}", branch="main")
        return adapters[name]

    engine = Engine(store=open_store("", tmp_path), opener=opener)
    try:
        engine.register_repository(repository("m", "memory://m"))
        created: list[str] = []

        def api_create() -> None:
            pr = engine.create(
                PackageRevision(
                    metadata=ObjectMeta(namespace=NS, labels={"keep": "me"}),
                    spec=PackageRevisionSpec(
                        package_name="raced",
                        repository="m",
                        workspace_name="ws",
                        tasks=[Task(type="init", init=PackageInitTaskSpec(description="d"))],
                    ),
                )
            )
            created.append(pr.metadata.name)

        watcher = engine.watch(NS)
        try:
            stale = _StaleFirstListing(adapters["m"], api_create)
            engine.sync_repository(NS, "m", adapter=stale, full=True)  # type: ignore[arg-type]
            assert created
            kept = engine.get(NS, created[0])
            assert kept.metadata.labels.get("keep") == "me"
            events = []
            while (event := watcher.next(timeout=0)) is not None:
                events.append(event.type)
            assert "DELETED" not in events
        finally:
            watcher.close()
    finally:
        engine.store.close()


def test_api_write_between_listing_and_commit_makes_the_sync_start_over(tmp_path: Path) -> None:
    adapters: dict[str, MemoryRepository] = {}

    def opener(repo: Repository) -> PackageRepository:
        name = repo.metadata.name
        if name not in adapters:
            adapters[name] = MemoryRepository(url=f"memory://{name}", branch="main")
        return adapters[name]

    engine = Engine(store=open_store("", tmp_path), opener=opener)
    try:
        engine.register_repository(repository("m", "memory://m"))
        pr = engine.create(
            PackageRevision(
                metadata=ObjectMeta(namespace=NS),
                spec=PackageRevisionSpec(
                    package_name="d",
                    repository="m",
                    workspace_name="ws",
                    tasks=[Task(type="init", init=PackageInitTaskSpec(description="d"))],
                ),
            )
        )
        memory = adapters["m"]
        (info,) = [i for i in memory.list_revisions() if i.package == "d"]
        # Someone else moves the draft in git: the index is now behind.
        files = {**memory.read_files(info), "extra.yaml": "a: 1\n"}
        from porch.repository.types import PORCH_AUTHOR

        outside = memory.write(
            package="d",
            workspace="ws",
            files=files,
            lifecycle=info.lifecycle,
            task=None,
            author=PORCH_AUTHOR,
            base=info,
        ).info
        assert outside is not None

        def api_label() -> None:
            current = engine.get(NS, pr.metadata.name)
            current.metadata.labels = {"keep": "me"}
            engine.update(current)

        engine.sync_repository(NS, "m", adapter=_StaleFirstListing(memory, api_label), full=True)  # type: ignore[arg-type]
        synced = engine.get(NS, pr.metadata.name)
        assert synced.metadata.labels.get("keep") == "me"  # the racing label survived
        assert engine.store.get_revision(NS, pr.metadata.name).commit == outside.commit  # type: ignore[union-attr]
    finally:
        engine.store.close()


def test_status_replaced_by_someone_else_is_completed_again(engine: Engine, tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "wiped")
    engine.register_repository(repository("wiped", str(remote)))
    clock = FakeClock(T0)
    outcomes: list[SyncOutcome] = []
    syncer = RepositorySyncer(
        engine,
        SyncSettings(ref_interval=1000, rescan_interval=10),
        clock=clock,
        observer=outcomes.append,
    )
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert "lastFullSyncTime" in status_of(engine, "wiped")
    # What the API's synchronous open of a repository does: a bare status, no sync times.
    body = engine.objects.get("Repository", NS, "wiped")
    body["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
    engine.objects.update("Repository", body, subresource="status")
    clock.advance(11)
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert outcomes[-1].reasons == ("status",)
    assert status_of(engine, "wiped")["lastFullSyncTime"] == "2026-01-01T00:03:11Z"
    clock.advance(11)
    syncer.tick()
    syncer.wait_idle(DEADLINE)
    assert len(outcomes) == 2  # complete again: nothing more to do


def test_scheduler_listens_again_after_its_watch_is_ended(
    engine: Engine, tmp_path: Path, stack: Stack
) -> None:
    expire_all = getattr(engine.hub, "expire_all", None)
    if expire_all is None:
        pytest.skip("this hub cannot end its watches")
    syncer = running_syncer(stack, engine, rescan_interval=3600)
    first = seed_remote(tmp_path, "first")
    engine.register_repository(repository("first", str(first)))
    wait_for(lambda: "lastFullSyncTime" in status_of(engine, "first"), "the first repository")
    expire_all()
    second = seed_remote(tmp_path, "second")
    engine.register_repository(repository("second", str(second)))
    wait_for(lambda: "lastFullSyncTime" in status_of(engine, "second"), "the second repository")
    assert (NS, "second") in syncer.tracked()


# --- sync marks: a restart reads nothing from git when the refs did not move --------------------


class _Counting:
    """Delegates to a MemoryRepository and records every full listing."""

    def __init__(self, inner: MemoryRepository, calls: list[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_revisions(self) -> list[RevisionInfo]:
        self._calls.append(self._inner.url)
        return self._inner.list_revisions()


def _init(engine: Engine, package: str, repo: str = "m") -> PackageRevision:
    return engine.create(
        PackageRevision(
            metadata=ObjectMeta(namespace=NS),
            spec=PackageRevisionSpec(
                package_name=package,
                repository=repo,
                workspace_name="ws",
                tasks=[Task(type="init", init=PackageInitTaskSpec(description="d"))],
            ),
        )
    )


def test_restart_with_unmoved_refs_reads_nothing_and_moved_refs_are_synced(
    tmp_path: Path,
) -> None:
    memories: dict[str, MemoryRepository] = {}
    calls: list[str] = []

    def opener(repo: Repository) -> PackageRepository:
        name = repo.metadata.name
        memories.setdefault(name, MemoryRepository(url=f"memory://{name}", branch="main"))
        return _Counting(memories[name], calls)  # type: ignore[return-value]

    def open_engine() -> Engine:
        return Engine(store=open_store("", tmp_path), opener=opener)

    first = open_engine()
    first.register_repository(repository("m", "memory://m"))
    first.register_repository(repository("n", "memory://n"))
    made = _init(first, "app")
    first.store.close()

    second = open_engine()
    calls.clear()
    assert second.start() == []
    # m's refs moved with the API write after its last sync (the background syncer's ref
    # check would have caught up); n's did not move
    assert calls == ["memory://m"]
    second.store.close()

    second = open_engine()
    calls.clear()
    assert second.start() == []
    assert calls == []  # both repositories' refs match their marks: no listing at all
    assert [p.metadata.name for p in second.list(NS)[0]] == [made.metadata.name]
    # An outside writer moves m's refs while no server runs.
    outside = memories["m"].write(
        package="other",
        workspace="ws",
        files={"Kptfile": KPTFILE},
        lifecycle=Lifecycle.DRAFT,
        task={"type": "init"},
        author=Author("o", "o@example.com"),
        base=None,
    )
    assert outside.info is not None
    second.store.close()

    third = open_engine()
    calls.clear()
    third.start()
    assert calls == ["memory://m"]  # only the repository whose refs moved is listed
    names = {p.spec.package_name for p in third.list(NS)[0]}
    assert names == {"app", "other"}
    # The sync after a start (the syncer's "initial") is as cheap; a full one is not.
    calls.clear()
    third.sync_repository(NS, "n")
    assert calls == []
    third.sync_repository(NS, "n", full=True)
    assert calls == ["memory://n"]
    third.store.close()


def test_a_namesake_of_a_removed_repository_is_indexed_afresh(tmp_path: Path) -> None:
    memories: dict[str, MemoryRepository] = {}

    def opener(repo: Repository) -> PackageRepository:
        url = repo.spec.git.repo if repo.spec.git else ""
        return memories.setdefault(url, MemoryRepository(url=url, branch="main"))

    engine = Engine(store=open_store("", tmp_path), opener=opener)
    try:
        engine.register_repository(repository("m", "memory://one"))
        made = _init(engine, "app")
        engine.objects.delete("Repository", NS, "m")
        assert engine.list(NS)[0] == []
        # Same name, same (unmoved) refs: without its old mark it is read again.
        engine.register_repository(repository("m", "memory://one"))
        assert [p.metadata.name for p in engine.list(NS)[0]] == [made.metadata.name]
    finally:
        engine.store.close()
