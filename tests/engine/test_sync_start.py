"""The syncer's first round after a restart takes over what ``Engine.start`` verified
(``Engine.take_start_check``, docs/sync.md "Sync marks") instead of repeating it, but only when
the stored status already says what that first sync would write."""

from __future__ import annotations

from pathlib import Path

import pytest

from porch.api.types import Repository
from porch.engine import Engine
from porch.engine.sync import RepositorySyncer, SyncOutcome, SyncSettings
from porch.server import Settings, build_engine
from tests.engine.test_sync import (
    DEADLINE,
    NS,
    T0,
    Clone,
    FakeClock,
    repository,
    seed_remote,
    status_of,
    wait_for,
)

REF_INTERVAL = 60.0
FULL_INTERVAL = 3600.0


def _syncer(engine: Engine, clock: FakeClock, outcomes: list[SyncOutcome]) -> RepositorySyncer:
    settings = SyncSettings(ref_interval=REF_INTERVAL, full_interval=FULL_INTERVAL)
    return RepositorySyncer(engine, settings, clock=clock, observer=outcomes.append)


def _round(syncer: RepositorySyncer) -> None:
    syncer.tick()
    assert syncer.wait_idle(DEADLINE)


def _first_life(data: Path, remote: Path, clock: FakeClock) -> None:
    """Register the repository, let a syncer write its status, stop."""
    engine = build_engine(Settings(data_dir=data, sync=False))
    try:
        engine.register_repository(repository("r", str(remote)))
        outcomes: list[SyncOutcome] = []
        _round(_syncer(engine, clock, outcomes))
        assert [(o.kind, o.reasons) for o in outcomes] == [("sync", ("initial",))]
        assert status_of(engine, "r")["lastFullSyncTime"] == "2026-01-01T00:03:00Z"
    finally:
        engine.store.close()


def test_restart_with_unmoved_refs_skips_the_first_sync(tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "r")
    data = tmp_path / "data"
    clock = FakeClock(T0)
    _first_life(data, remote, clock)

    clock.advance(600)
    engine = build_engine(Settings(data_dir=data, sync=False))  # start() finds the mark
    try:
        before = engine.objects.get("Repository", NS, "r")
        outcomes: list[SyncOutcome] = []
        syncer = _syncer(engine, clock, outcomes)
        _round(syncer)
        assert outcomes == []  # nothing to do: start has just verified the refs
        after = engine.objects.get("Repository", NS, "r")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["status"] == before["status"]
        clock.advance(REF_INTERVAL)  # within one ref-check interval of the start: a cheap check
        _round(syncer)
        assert [(o.kind, o.reasons) for o in outcomes] == [("check", ("refs",))]
        # The full-sync schedule carried over from the status, not restarted.
        clock.advance(FULL_INTERVAL - 600 - REF_INTERVAL)
        _round(syncer)
        assert outcomes[-1].kind == "sync" and outcomes[-1].reasons == ("schedule",)
        assert status_of(engine, "r")["lastFullSyncTime"] == "2026-01-01T01:03:00Z"
    finally:
        engine.store.close()


def test_refs_moved_while_down_take_the_first_sync(tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "r")
    data = tmp_path / "data"
    clock = FakeClock(T0)
    _first_life(data, remote, clock)
    head = Clone(str(remote), tmp_path / "clone").add_package("pkg", tag="pkg/v1")

    clock.advance(600)
    engine = build_engine(Settings(data_dir=data, sync=False))  # start() re-indexes it
    try:
        outcomes: list[SyncOutcome] = []
        _round(_syncer(engine, clock, outcomes))
        assert [(o.kind, o.reasons) for o in outcomes] == [("sync", ("initial",))]
        status = status_of(engine, "r")
        assert status["gitCommitHash"] == head
        assert status["packageCount"] == engine.store.count_revisions(NS, "r")
        assert status["lastFullSyncTime"] == "2026-01-01T00:13:00Z"
    finally:
        engine.store.close()


def test_overdue_full_sync_or_incomplete_status_take_the_first_sync(tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "r")
    data = tmp_path / "data"
    clock = FakeClock(T0)
    _first_life(data, remote, clock)

    clock.advance(FULL_INTERVAL + 1)  # down for longer than the full-sync interval
    engine = build_engine(Settings(data_dir=data, sync=False))
    try:
        outcomes: list[SyncOutcome] = []
        _round(_syncer(engine, clock, outcomes))
        assert [(o.kind, o.reasons) for o in outcomes] == [("sync", ("initial",))]
    finally:
        engine.store.close()

    # A status without the sync times (e.g. never written by a syncer): not taken over.
    engine = build_engine(Settings(data_dir=data, sync=False))
    try:
        current = engine.objects.get("Repository", NS, "r")
        status = dict(current["status"])
        status.pop("lastFullSyncTime")
        engine.objects.update("Repository", {**current, "status": status}, subresource="status")
        engine.store.close()
        engine = build_engine(Settings(data_dir=data, sync=False))
        outcomes = []
        _round(_syncer(engine, clock, outcomes))
        assert [(o.kind, o.reasons) for o in outcomes] == [("sync", ("initial",))]
        assert "lastFullSyncTime" in status_of(engine, "r")
    finally:
        engine.store.close()


def test_status_writes_do_not_make_the_scheduler_list_repositories_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = build_engine(Settings(data_dir=tmp_path / "data", sync=False))
    lists: list[int] = []
    real_list = engine.repositories.list

    def counting_list(namespace: str | None = None) -> list[Repository]:
        lists.append(1)
        return real_list(namespace)

    monkeypatch.setattr(engine.repositories, "list", counting_list)
    syncer = RepositorySyncer(
        engine, SyncSettings(ref_interval=3600, full_interval=36_000, rescan_interval=3600)
    )
    try:
        for name in ("a", "b", "c"):
            engine.register_repository(repository(name, str(seed_remote(tmp_path, name))))
        syncer.start()
        synced = lambda: all("lastFullSyncTime" in status_of(engine, n) for n in "abc")  # noqa: E731
        wait_for(synced, "the first syncs")
        assert syncer.wait_idle(DEADLINE)
        assert len(lists) == 1  # three status writes (three events) later: still one list
        engine.register_repository(repository("d", str(seed_remote(tmp_path, "d"))))
        wait_for(lambda: "lastFullSyncTime" in status_of(engine, "d"), "the new one synced")
        assert len(lists) == 2  # a new repository is an event that needs the list
        assert syncer.tracked() == [(NS, n) for n in ("a", "b", "c", "d")]
    finally:
        syncer.stop()
        engine.store.close()


def test_status_with_another_head_takes_the_first_sync(tmp_path: Path) -> None:
    remote = seed_remote(tmp_path, "r")
    data = tmp_path / "data"
    clock = FakeClock(T0)
    _first_life(data, remote, clock)
    engine = build_engine(Settings(data_dir=data, sync=False))
    try:
        head = status_of(engine, "r")["gitCommitHash"]
        current = engine.objects.get("Repository", NS, "r")
        status = {**current["status"], "gitCommitHash": "0" * 40}
        engine.objects.update("Repository", {**current, "status": status}, subresource="status")
    finally:
        engine.store.close()

    engine = build_engine(Settings(data_dir=data, sync=False))  # the mark still matches
    try:
        outcomes: list[SyncOutcome] = []
        _round(_syncer(engine, clock, outcomes))
        assert [(o.kind, o.reasons) for o in outcomes] == [("sync", ("initial",))]
        assert status_of(engine, "r")["gitCommitHash"] == head
    finally:
        engine.store.close()
