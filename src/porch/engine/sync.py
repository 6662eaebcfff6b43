"""Repository sync inside the server: notice what changed in git without being asked.

One scheduler thread keeps a small state per registered Repository and hands work to short-lived
worker threads (at most ``max_concurrent`` at once):

* a **ref check** every ``ref_interval``: fetch, then compare the adapter's refs digest with the
  one of the last sync; when the refs moved it goes on with a sync at once;
* a **full sync** (``Engine.sync_repository``) on the first reconcile, when the spec changed,
  every ``full_interval`` (or on the cron ``spec.sync.schedule``), once at ``spec.sync.runOnceAt``,
  and as the retry after a failure.

Every sync has a deadline (``timeout``): when it passes, the repository is marked
``Ready=False`` at once and its worker slot is given back, so a remote that never answers only
ever holds up its own repository (its worker ends with libgit2's own I/O timeout, and the
repository is not synced again before that). Failures are retried with capped exponential
back-off; success resets it. Results land in the Repository's status through the object
service's status path (normal ``MODIFIED`` events): ``conditions`` (``Ready``),
``lastFullSyncTime``, ``nextFullSyncTime``, ``packageCount``, ``gitCommitHash``,
``observedGeneration`` and ``observedRunOnceAt``.

Several replicas: a sync runs only while its worker holds the repository's *lease*
(``Lease``: ``lease(key)`` returns a context manager, or None when someone else holds it, and
then this replica skips the round). The default is the engine's ``sync_lease``: the store's own
(PostgreSQL: a session advisory lock, so one replica at a time across all of them), else an
in-process one (docs/sync.md).

The scheduler is also usable without its thread: ``tick()`` runs one round at the time given
by the injected clock, and ``wait_idle()`` waits for the workers it started (tests).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter

from porch.api.types import Repository
from porch.errors import NotFound, PorchError, StaleResourceVersion
from porch.repository.types import PackageRepository

if TYPE_CHECKING:
    from porch.engine.engine import Engine

log = logging.getLogger("porch.sync")

Clock = Callable[[], datetime]
Lease = Callable[[str], AbstractContextManager[object] | None]

KIND = "Repository"
STATUS_ATTEMPTS = 5
# Reasons of a sync that re-reads git even when the refs match the stored sync mark.
FULL_REASONS = frozenset({"schedule", "runOnceAt", "spec", "retry", "status"})
# Whatever the intervals say, the scheduler looks at the world at least this often.
MAX_SLEEP = 5.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (``Z`` or an offset; a naive one is taken as UTC)."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def backoff_delay(failures: int, initial: float, cap: float) -> float:
    """Seconds to wait before retry number ``failures`` (1, 2, ...): doubling, capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap, initial * 2 ** min(failures - 1, 62)))


def parse_schedule(schedule: str) -> str:
    """Validate a standard 5-field cron expression; returns it, raises ``ValueError``."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    try:
        croniter(schedule, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors
        raise ValueError(str(exc) or type(exc).__name__) from None
    return schedule


def next_cron(schedule: str, after: datetime) -> datetime:
    nxt: datetime = croniter(schedule, after.astimezone(UTC)).get_next(datetime)
    return nxt if nxt.tzinfo is not None else nxt.replace(tzinfo=UTC)


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def clean_message(text: str) -> str:
    """A failure as shown in status: one line, no user information in URLs."""
    text = _USERINFO.sub(r"\1", text)
    return " ".join(text.split())[:1000]


@dataclass(frozen=True)
class SyncSettings:
    ref_interval: float = 60.0  # seconds between ref checks of one repository
    full_interval: float = 3600.0  # seconds between full syncs (without spec.sync.schedule)
    max_concurrent: int = 4  # syncs and ref checks running at once, all repositories together
    timeout: float = 60.0  # seconds one sync may take before the repository is failed
    backoff_initial: float = 5.0  # first retry after a failure; doubles up to backoff_max
    backoff_max: float = 600.0
    rescan_interval: float = 30.0  # re-read the Repository list (changes made by other replicas)


class LocalLease:
    """The in-process lease: one sync per repository at a time within this process."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, key: str) -> AbstractContextManager[object] | None:
        with self._lock:
            if key in self._held:
                return None
            self._held.add(key)
        return self._hold(key)

    @contextlib.contextmanager
    def _hold(self, key: str) -> Iterator[object]:
        try:
            yield key
        finally:
            with self._lock:
                self._held.discard(key)


@dataclass(frozen=True)
class SyncOutcome:
    """What one worker did (handed to the ``observer`` hook, e.g. for tests and metrics)."""

    namespace: str
    name: str
    kind: str  # "check" (refs unchanged), "sync", "skipped" (lease held elsewhere), "failed"
    reasons: tuple[str, ...]
    error: str = ""


@dataclass(frozen=True)
class StartCheck:
    """What ``Engine.start`` found for a repository whose refs matched its sync mark: the
    refs digest at that moment."""

    version: str


@dataclass
class _Run:
    kind: str  # "check" or "full"
    reasons: tuple[str, ...]
    deadline: datetime
    generation: int
    run_once_at: str | None
    holds_slot: bool = True
    timed_out: bool = False
    thread: threading.Thread | None = None


@dataclass
class _State:
    namespace: str
    name: str
    generation: int = 0
    schedule: str = ""
    config_error: str = ""
    run_once_at: str | None = None
    run_once_due: datetime | None = None
    observed_run_once_at: str | None = None
    last_version: str | None = None
    last_full: datetime | None = None
    next_full: datetime | None = None
    next_check: datetime | None = None
    force: list[str] = field(default_factory=list)
    failures: int = 0
    retry_at: datetime | None = None
    running: _Run | None = None
    deferred_until: datetime | None = None  # another replica holds the lease
    spec_key: str = ""  # the spec without runOnceAt: what a "real" spec change changes
    spec_generation: int = -1  # the generation spec_key was computed at
    written_full: str | None = None  # the lastFullSyncTime this syncer last wrote
    gone: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class RepositorySyncer:
    """Keeps the engine's index in step with every registered repository (thread-safe)."""

    def __init__(
        self,
        engine: Engine,
        settings: SyncSettings | None = None,
        *,
        clock: Clock = utc_now,
        lease: Lease | None = None,
        observer: Callable[[SyncOutcome], None] | None = None,
    ) -> None:
        self._engine = engine
        self.settings = settings or SyncSettings()
        if self.settings.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._clock = clock
        self._lease: Lease = lease or engine.sync_lease
        self._observer = observer
        self._states: dict[tuple[str, str], _State] = {}
        self._lock = threading.RLock()
        self._slots = 0
        self._workers: set[threading.Thread] = set()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._rescan_at: datetime | None = None
        self._rescan_requested = True
        self._watcher: Any = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler thread (repository changes wake it through the watch hub)."""
        if self._thread is not None:
            return
        watcher = self._engine.hub.add(lambda obj: obj.get("kind") == KIND)
        watcher.set_notify(self._wake.set)
        watcher.go_live()
        self._watcher = watcher
        self._thread = threading.Thread(target=self._loop, name="repository-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling; wait up to ``timeout`` s for the scheduler and running workers.

        A worker stuck in a network call is left behind (daemon thread): it finishes with its
        I/O timeout and, the syncer being stopped, writes nothing.
        """
        self._stopped.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.wait_idle(timeout)

    def wake(self) -> None:
        """Look again now (a Repository was created, changed or deleted)."""
        with self._lock:
            self._rescan_requested = True
        self._wake.set()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait for the workers started so far; True when none is left running."""
        end = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, end - time.monotonic()))
        with self._lock:
            return not any(w.is_alive() for w in self._workers)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                wake_at = self.tick()
            except Exception:  # noqa: BLE001 - the scheduler must outlive any one bad round
                log.exception("repository sync round failed")
                wake_at = None
            delay = MAX_SLEEP
            if wake_at is not None:
                delay = min(MAX_SLEEP, max(0.0, (wake_at - self._clock()).total_seconds()))
            self._wake.wait(delay)

    # --- one round ---------------------------------------------------------------------------

    def tick(self) -> datetime | None:
        """Run one scheduling round; returns when the next one is due (None: no repository)."""
        now = self._clock()
        with self._lock:
            rescan = self._rescan_requested or self._rescan_at is None or now >= self._rescan_at
        if not rescan:
            # Woken by Repository events: most are status writes (this syncer's own, one per
            # sync), which change nothing the schedule depends on and need no new list.
            rescan = self._events_need_rescan()
        if rescan:
            with self._lock:
                # Cleared before the list is read: a change made meanwhile asks again.
                self._rescan_requested = False
                self._rescan_at = now + timedelta(seconds=self.settings.rescan_interval)
            self._rescan(now)
        timed_out: list[_State] = []
        with self._lock:
            for state in self._states.values():
                run = state.running
                if run is not None and run.holds_slot and now >= run.deadline:
                    run.holds_slot, run.timed_out = False, True
                    self._slots -= 1
                    timed_out.append(state)
        for state in timed_out:
            self._fail(
                state,
                f"sync did not finish within {_seconds(self.settings.timeout)}"
                " (the git remote is not answering)",
                now,
            )
        due: list[tuple[datetime, _State, str, tuple[str, ...]]] = []
        wake_at: datetime | None = None
        with self._lock:
            if self._rescan_at is not None:
                wake_at = self._rescan_at
            for state in self._states.values():
                if state.running is not None:
                    if state.running.holds_slot:
                        wake_at = _earliest(wake_at, state.running.deadline)
                    continue
                when, kind, reasons = self._next_action(state, now)
                if when <= now:
                    due.append((when, state, kind, reasons))
                else:
                    wake_at = _earliest(wake_at, when)
            due.sort(key=lambda item: item[0])
            for _when, state, kind, reasons in due:
                if self._slots >= self.settings.max_concurrent or self._stopped.is_set():
                    break  # a finishing worker wakes the scheduler again
                self._dispatch(state, kind, reasons, now)
        return wake_at

    def _next_action(self, state: _State, now: datetime) -> tuple[datetime, str, tuple[str, ...]]:
        """When this repository next needs work, and what: ("full" | "check", reasons)."""
        nxt_full, nxt_check = state.next_full, state.next_check
        if (
            nxt_full is not None
            and nxt_check is not None
            and nxt_full > now
            and nxt_check > now
            and not state.force
            and not state.failures
            and state.run_once_due is None
            and state.deferred_until is None
        ):
            # The common case, and every round looks at every repository: nothing due yet.
            return (nxt_full if nxt_full < nxt_check else nxt_check), "", ()
        if state.deferred_until is not None and state.deferred_until > now:
            return state.deferred_until, "", ()
        if state.failures and state.retry_at is not None:
            return state.retry_at, "full", ("retry",)
        if state.force:
            return now, "full", tuple(state.force)
        candidates: list[tuple[datetime, str, tuple[str, ...]]] = []
        if state.run_once_due is not None:
            candidates.append((state.run_once_due, "full", ("runOnceAt",)))
        if state.next_full is not None:
            candidates.append((state.next_full, "full", ("schedule",)))
        if state.next_check is not None:
            candidates.append((state.next_check, "check", ("refs",)))
        if not candidates:
            return now, "full", ("initial",)
        when = min(c[0] for c in candidates)
        if when > now:
            return when, "", ()
        ready = [c for c in candidates if c[0] <= now]
        if any(c[1] == "full" for c in ready):
            return when, "full", tuple(r for c in ready if c[1] == "full" for r in c[2])
        return when, "check", ("refs",)

    def _dispatch(self, state: _State, kind: str, reasons: tuple[str, ...], now: datetime) -> None:
        run = _Run(
            kind=kind,
            reasons=reasons,
            deadline=now + timedelta(seconds=self.settings.timeout),
            generation=state.generation,
            run_once_at=(
                state.run_once_at
                if state.run_once_due is not None and state.run_once_due <= now
                else None
            ),
        )
        state.running = run
        state.force = []
        self._slots += 1
        worker = threading.Thread(
            target=self._work,
            args=(state, run, state.last_version),
            name=f"sync {state.key}",
            daemon=True,
        )
        run.thread = worker
        self._workers.add(worker)
        worker.start()

    # --- the Repository list -----------------------------------------------------------------

    def _events_need_rescan(self) -> bool:
        """Take the queued Repository events; True when one of them may change the schedule
        (a new, deleted or re-specified repository, or a watch that ended): then the list is
        read again. A status-only change is looked at here and needs no list."""
        watcher = self._watcher
        if watcher is None:
            return False
        if watcher.closed:
            return True
        while watcher.has_pending():
            try:
                event = watcher.pending()
            except PorchError:  # expired: the rescan listens again
                return True
            if event is None:
                break
            if not self._status_only(event.type, event.object):
                return True  # the rescan takes the remaining events
        return False

    def _status_only(self, kind: str, obj: dict[str, Any]) -> bool:
        """Whether an event only changed the status of a known, unchanged repository (then
        the "status" check of ``_rescan`` is made here, on the event's object)."""
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        with self._lock:
            state = self._states.get((meta.get("namespace", ""), meta.get("name", "")))
            if (
                kind != "MODIFIED"
                or state is None
                or meta.get("deletionTimestamp")
                or meta.get("generation") != state.generation
                or status.get("observedRunOnceAt") != state.observed_run_once_at
            ):
                return False
            if (
                state.running is None
                and state.written_full is not None
                and (status.get("lastFullSyncTime") or "") < state.written_full
                and not state.force
            ):
                state.force.append("status")
        return True

    def _rescan(self, now: datetime) -> None:
        watcher = self._watcher
        if watcher is not None and watcher.closed:
            # Ended by the hub (fell behind, or expired after lost events): listen again. The
            # list below is read after that, so nothing falls between the two.
            watcher = None
            if not self._stopped.is_set():
                watcher = self._engine.hub.add(lambda obj: obj.get("kind") == KIND)
                watcher.set_notify(self._wake.set)
                watcher.go_live()
            self._watcher = watcher
        while watcher is not None and not watcher.closed and watcher.has_pending():
            try:
                if watcher.pending() is None:
                    break
            except PorchError:  # expired: replaced on the next round
                break
            # Events are only a wake-up signal: the list below is the truth.
        repos = [r for r in self._engine.repositories.list() if not r.metadata.deletion_timestamp]
        with self._lock:
            seen = set()
            for repo in repos:
                key = (repo.metadata.namespace, repo.metadata.name)
                seen.add(key)
                state = self._states.get(key)
                if state is None:
                    state = _State(*key, generation=repo.metadata.generation)
                    self._states[key] = state
                    self._configure(state, repo, now)
                    if not self._seed(state, repo, now):
                        state.force.append("initial")
                elif state.generation != repo.metadata.generation:
                    old_key = state.spec_key
                    state.generation = repo.metadata.generation
                    self._configure(state, repo, now)
                    if state.spec_key != old_key:
                        # Porch syncs on a generation change, except one that only set runOnceAt.
                        state.force.append("spec")
                        state.failures, state.retry_at = 0, None
                else:
                    self._configure(state, repo, now)
                if (
                    state.running is None
                    and state.written_full is not None
                    and (repo.status.last_full_sync_time or "") < state.written_full
                    and not state.force
                ):
                    # Someone replaced the status with an older one (the API's own open of a
                    # repository writes a bare one): sync again so that it is complete. A newer
                    # time is another replica's sync, which is just as good.
                    state.force.append("status")
            for key in [k for k in self._states if k not in seen]:
                gone = self._states.pop(key)
                gone.gone = True
                run = gone.running
                if run is not None and run.holds_slot:
                    run.holds_slot = False  # its worker writes nothing: free the slot now
                    self._slots -= 1

    def _seed(self, state: _State, repo: Repository, now: datetime) -> bool:
        """Take over what ``Engine.start`` verified instead of a first sync that would only
        repeat it; True when done (the first ref check is then at most one interval away).

        Only when the stored status already says what that sync would write: Ready for this
        generation, the head commit start saw, and full-sync times that match the schedule
        and are not yet due. Anything else (a first start, a crash before the status write, a
        schedule or a setting that changed, a full sync overdue) takes the ``initial`` sync.
        """
        check = self._engine.take_start_check(state.namespace, state.name)
        status = repo.status
        if check is None or state.config_error or not status.last_full_sync_time:
            return False
        ready = next((c for c in status.conditions if c.type == "Ready"), None)
        if ready is None or (ready.status, ready.reason) != ("True", "Ready"):
            return False
        if status.observed_generation != repo.metadata.generation:
            return False
        # The head now (not on the start's critical path): had it moved since, the status
        # would not say it and the first sync is needed anyway.
        try:
            adapter = self._engine.repositories.adapter(repo)  # opened by the start: cached
        except PorchError:
            return False
        if not callable(getattr(adapter, "branch_head", None)):
            return False  # it could only be found with a listing: take the first sync
        if status.git_commit_hash != branch_head(adapter):
            return False
        try:
            last_full = parse_time(status.last_full_sync_time)
        except ValueError:
            return False
        next_full = self._next_full(state, last_full)
        if next_full <= now or rfc3339(next_full) != status.next_full_sync_time:
            return False
        state.last_version = check.version
        state.last_full, state.next_full = last_full, next_full
        # Spread over the interval: 1,000 repositories started together are not all checked
        # in the same second (and from then on, not all in the same second of each minute).
        spread = (zlib.crc32(state.key.encode()) % 1000 + 1) / 1000
        state.next_check = now + timedelta(seconds=self.settings.ref_interval * spread)
        state.written_full = status.last_full_sync_time
        return True

    def _configure(self, state: _State, repo: Repository, now: datetime) -> None:
        schedule, run_once_at = _spec_sync(repo)
        if not state.spec_key or state.spec_generation != repo.metadata.generation:
            # Only a new generation can change the spec: this runs for every repository on
            # every rescan, and encoding 1,000 specs each time was most of a rescan's cost.
            state.spec_key = _spec_key(repo)
            state.spec_generation = repo.metadata.generation
        # Our own record wins until the status that carries it has been written.
        state.observed_run_once_at = repo.status.observed_run_once_at or state.observed_run_once_at
        errors = []
        if schedule:
            try:
                parse_schedule(schedule)
            except ValueError as exc:
                errors.append(f'invalid spec.sync.schedule "{schedule}": {exc}')
        state.run_once_at = run_once_at
        state.run_once_due = None
        if run_once_at and run_once_at != state.observed_run_once_at:
            try:
                state.run_once_due = parse_time(run_once_at)
            except ValueError:
                errors.append(f'invalid spec.sync.runOnceAt "{run_once_at}": not RFC 3339')
        rescheduled = schedule != state.schedule
        state.schedule = schedule
        state.config_error = "; ".join(errors)
        if rescheduled and state.last_full is not None:
            state.next_full = self._next_full(state, state.last_full)

    def _next_full(self, state: _State, after: datetime) -> datetime:
        if state.schedule and not state.config_error:
            try:
                return next_cron(state.schedule, after)
            except ValueError:
                pass
        return after + timedelta(seconds=self.settings.full_interval)

    # --- the work ----------------------------------------------------------------------------

    def _work(self, state: _State, run: _Run, last_version: str | None) -> None:
        outcome: SyncOutcome
        try:
            outcome = self._attempt(state, run, last_version)
        except Exception as exc:  # noqa: BLE001 - reported in status, retried later
            message = str(exc) if isinstance(exc, PorchError) else f"{type(exc).__name__}: {exc}"
            message = clean_message(message)
            outcome = SyncOutcome(state.namespace, state.name, "failed", run.reasons, message)
            if not self._stopped.is_set():
                with self._lock:
                    counted = run.timed_out
                if not counted:
                    self._fail(state, message, self._clock())
        finally:
            with self._lock:
                if run.holds_slot:
                    run.holds_slot = False
                    self._slots -= 1
                if state.running is run:
                    state.running = None
                self._workers.discard(threading.current_thread())
            self._wake.set()
        if self._observer is not None:
            self._observer(outcome)

    def _attempt(self, state: _State, run: _Run, last_version: str | None) -> SyncOutcome:
        ns, name = state.namespace, state.name
        lease = self._lease(f"{ns}/{name}")
        if lease is None:
            with self._lock:
                # Someone else syncs it now: look again after one ref-check interval.
                later = self._clock() + timedelta(seconds=self.settings.ref_interval)
                state.deferred_until = later
                state.force = sorted(set(state.force) | set(run.reasons) - {"refs"})
            return SyncOutcome(ns, name, "skipped", run.reasons)
        with lease:
            engine = self._engine
            repo = engine.repositories.get(ns, name)
            adapter = engine.repositories.adapter(repo)
            reasons = run.reasons
            if run.kind == "check":
                adapter.fetch()
                version = adapter.version()
                if version == last_version:
                    with self._lock:
                        state.next_check = self._clock() + timedelta(
                            seconds=self.settings.ref_interval
                        )
                    return SyncOutcome(ns, name, "check", reasons)
                reasons = ("refs moved",)
            if self._stopped.is_set() or state.gone:
                return SyncOutcome(ns, name, "skipped", reasons)
            # A sync on a schedule (or after a spec change or a failure) re-reads git even
            # when the refs match the sync mark; the first one after a start does not.
            full = any(r in FULL_REASONS for r in reasons)
            engine.sync_repository(ns, name, adapter=adapter, full=full)
            version = adapter.version()
            # A sync that gave up to API writes in flight left no sync mark: forget the
            # version so the next ref check syncs again instead of waiting for the schedule.
            settled = engine.index_matches(ns, name, version)
            count = engine.store.count_revisions(ns, name)
            head = branch_head(adapter)
        now = self._clock()
        scheduled = reasons != ("refs moved",)
        with self._lock:
            state.last_version = version if settled else None
            state.failures, state.retry_at = 0, None
            state.next_check = now + timedelta(seconds=self.settings.ref_interval)
            if scheduled or state.last_full is None:
                state.last_full = now
                state.next_full = self._next_full(state, now)
            if run.run_once_at is not None and run.run_once_at == state.run_once_at:
                state.observed_run_once_at = run.run_once_at
                state.run_once_due = None
            last_full, next_full = state.last_full, state.next_full
            observed_run_once_at = state.observed_run_once_at
            config_error = state.config_error
        if self._stopped.is_set() or state.gone:
            return SyncOutcome(ns, name, "sync", reasons)

        def update(status: dict[str, Any]) -> None:
            if config_error:
                _set_ready(status, "False", "Error", config_error, now)
            else:
                _set_ready(status, "True", "Ready", "Repository Ready", now)
            status["packageCount"] = count
            if head:
                status["gitCommitHash"] = head
            status["observedGeneration"] = run.generation
            if scheduled or "lastFullSyncTime" not in status:
                assert last_full is not None and next_full is not None
                status["lastFullSyncTime"] = rfc3339(last_full)
                status["nextFullSyncTime"] = rfc3339(next_full)
            if observed_run_once_at:
                status["observedRunOnceAt"] = observed_run_once_at

        if self._write_status(state, update):
            with self._lock:
                if last_full is not None:
                    state.written_full = rfc3339(last_full)
        return SyncOutcome(ns, name, "sync", reasons)

    def _fail(self, state: _State, message: str, now: datetime) -> None:
        with self._lock:
            state.failures += 1
            delay = backoff_delay(
                state.failures, self.settings.backoff_initial, self.settings.backoff_max
            )
            state.retry_at = now + timedelta(seconds=delay)
        log.warning("repository %s: sync failed (retry in %ss): %s", state.key, delay, message)
        if self._stopped.is_set() or state.gone:
            return

        def update(status: dict[str, Any]) -> None:
            _set_ready(status, "False", "Error", message, now)

        try:
            self._write_status(state, update)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("repository %s: status could not be written", state.key)

    def _write_status(self, state: _State, update: Callable[[dict[str, Any]], None]) -> bool:
        """Read-modify-write of the status subresource; retried when the object moved.

        True when the status now says what ``update`` made of it.
        """
        objects = self._engine.objects
        for _ in range(STATUS_ATTEMPTS):
            try:
                current = objects.get(KIND, state.namespace, state.name)
            except NotFound:
                state.gone = True
                return False
            status = copy.deepcopy(current.get("status") or {})
            update(status)
            if status == current.get("status"):
                return True
            body = {**current, "status": status}
            try:
                objects.update(KIND, body, subresource="status")
                return True
            except StaleResourceVersion:
                continue
            except NotFound:
                state.gone = True
                return False
        return False

    # --- introspection (tests, metrics) --------------------------------------------------------

    def failures(self, namespace: str, name: str) -> int:
        with self._lock:
            state = self._states.get((namespace, name))
            return state.failures if state else 0

    def retry_at(self, namespace: str, name: str) -> datetime | None:
        with self._lock:
            state = self._states.get((namespace, name))
            return state.retry_at if state else None

    def tracked(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._states)


def _spec_sync(repo: Repository) -> tuple[str, str | None]:
    sync = repo.spec.sync
    if sync is None:
        return "", None
    return (sync.schedule or "").strip(), (sync.run_once_at or None)


def _spec_key(repo: Repository) -> str:
    spec = repo.to_dict().get("spec") or {}
    sync = dict(spec.get("sync") or {})
    sync.pop("runOnceAt", None)
    return json.dumps({**spec, "sync": sync}, sort_keys=True)


def _set_ready(
    status: dict[str, Any], value: str, reason: str, message: str, now: datetime
) -> None:
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    old = next((c for c in conditions if c.get("type") == "Ready"), None)
    ready = {"type": "Ready", "status": value, "reason": reason, "message": message}
    if old is not None and old.get("status") == value and old.get("lastTransitionTime"):
        ready["lastTransitionTime"] = old["lastTransitionTime"]
    else:
        ready["lastTransitionTime"] = rfc3339(now)
    status["conditions"] = [c for c in conditions if c.get("type") != "Ready"] + [ready]


def branch_head(adapter: PackageRepository) -> str:
    """The head commit of the registered branch ("" when it holds no package yet).

    An adapter may say it directly (``branch_head()``); otherwise every placeholder revision
    (a package as it sits on the branch) carries the branch's head commit.
    """
    method = getattr(adapter, "branch_head", None)
    if callable(method):
        try:
            head = method()
        except PorchError:
            return ""
        return str(head) if head else ""
    for info in adapter.list_revisions():
        if info.placeholder and info.ref == adapter.branch:
            return info.commit
    return ""


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _seconds(value: float) -> str:
    return f"{value:g}s"
