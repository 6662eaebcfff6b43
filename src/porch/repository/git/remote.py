"""A local bare mirror of a remote repository: fetch, compare-and-swap push, credentials.

The mirror never has local branches: the remote's branches live under ``refs/remotes/origin``
and its tags under ``refs/tags``. Writes build objects in the mirror and push refspecs; the
mirror's copy of a ref is moved only after the remote accepted it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pygit2
from pygit2.enums import CredentialType, FetchPrune, ReferenceType

from porch.errors import Conflict, Unavailable
from porch.waits import remote_wait

from .bearer import BearerForwarder, Route
from .layout import HEADS, REMOTE_HEADS, TAGS
from .locks import LOCK_RETRY_DELAYS, locked_file
from .recovery import remove_stale_ref_locks
from .refs import RefUpdate, expectation_error, short

T = TypeVar("T")

# The pause between attempts on a file another process has locked; tests replace it.
lock_pause: Callable[[float], None] = time.sleep

ORIGIN = "origin"
FETCH_SPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")

# libgit2 waits forever by default; a hung server must not hang the API server with it.
DEFAULT_CONNECT_TIMEOUT_MS = 10_000
DEFAULT_IO_TIMEOUT_MS = 60_000


def set_network_timeouts(connect_ms: int, io_ms: int) -> tuple[int, int]:
    """Set libgit2's (process-wide) timeouts; returns the previous values."""
    previous = (pygit2.settings.server_connect_timeout, pygit2.settings.server_timeout)
    pygit2.settings.server_connect_timeout = connect_ms
    pygit2.settings.server_timeout = io_ms
    return previous


if pygit2.settings.server_timeout == 0:
    set_network_timeouts(DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_IO_TIMEOUT_MS)


@dataclass(frozen=True)
class GitCredentials:
    """HTTP basic (``username``/``password``) or bearer (``bearer_token``) credentials."""

    username: str = ""
    password: str = field(default="", repr=False)
    bearer_token: str = field(default="", repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.bearer_token) if s]


def safe_url(url: str) -> str:
    """``url`` without any user information, fit for messages and paths."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mirror_path(mirror_dir: Path, url: str) -> Path:
    return mirror_dir / re.sub(r"[/:]", "-", safe_url(url))


def mirror_name(name: str) -> str:
    """Where the mirror keeps its copy of the origin ref ``name``."""
    if name.startswith(HEADS):
        return REMOTE_HEADS + name[len(HEADS) :]
    return name


class _AuthFailed(Exception):
    pass


class _RedirectedAway(_AuthFailed):
    """A redirect led to another host: its credential request is refused."""


def _origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class _LeaseBroken(Exception):
    def __init__(self, update: RefUpdate, current: str | None) -> None:
        super().__init__(update.name)
        self.update = update
        self.current = current


class _Callbacks(pygit2.RemoteCallbacks):  # type: ignore[misc]  # pygit2 is untyped here
    def __init__(
        self,
        credentials: GitCredentials | None,
        leases: Sequence[RefUpdate] = (),
        *,
        origin: str = "",
    ) -> None:
        super().__init__()
        self._creds = credentials
        # Credentials go only to the repository's own scheme, host and port: libgit2 follows
        # redirects and would ask for (and send) them to wherever a redirect points.
        self._origin = _origin_of(origin) if origin else None
        self._attempts = 0
        self._leases = {u.name: u for u in leases}
        self.rejected: dict[str, str] = {}
        self.reported: set[str] = set()  # refs the remote gave a status for: the upload is done

    def credentials(self, url: str, username_from_url: str | None, allowed_types: Any) -> Any:
        creds = self._creds
        self._attempts += 1
        if creds and self._origin is not None and _origin_of(url) != self._origin:
            raise _RedirectedAway()
        # libgit2 asks again after a 401; answering with the same secret would loop.
        if creds and creds.username and allowed_types & CredentialType.USERPASS_PLAINTEXT:
            if self._attempts == 1:
                return pygit2.UserPass(creds.username, creds.password)
        raise _AuthFailed()

    def push_negotiation(self, updates: list[Any]) -> None:
        # The advertised values are what the server's receive-pack will compare against, so
        # checking them here turns a plain push into a compare-and-swap.
        for update in updates:
            lease = self._leases.get(update.dst_refname)
            if lease is None:
                continue
            current = None if update.src.raw == bytes(20) else str(update.src)
            if current != lease.old:
                raise _LeaseBroken(lease, current)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        self.reported.add(refname)
        if message:
            self.rejected[refname] = message


class RemoteRefStore:
    """Refs of a remote repository seen through (and written via) a local bare mirror.

    Callers hold the mirror's lock (``locks.path_lock``) around every call, the constructor
    included: no other operation of this process then touches the mirror, so a lock file found
    in it belongs to another process, live (held for milliseconds: retried) or killed (removed
    once older than ``recovery.STALE_LOCK_S``).
    """

    def __init__(self, repo: Any, url: str, credentials: GitCredentials | None) -> None:
        self._repo = repo
        self._url = url
        self._creds = credentials
        self._route: Route | None = None
        self._transport_url = url
        # Lock files a killed process left in the mirror block the fetch that opens it: they
        # go first (refs/remotes/origin/** included); the notes wait for remove_stale_locks().
        self._notes = remove_stale_ref_locks(repo.path, mirror=True)
        if credentials and credentials.bearer_token:
            forwarder = BearerForwarder.shared()
            self._transport_url, self._route = forwarder.register(url, credentials.bearer_token)
        if ORIGIN not in [r.name for r in repo.remotes]:
            try:
                self._retrying_locks(self._create_origin)
            except (pygit2.GitError, OSError) as err:
                raise self._unavailable("set up a mirror of", err) from None

    def _create_origin(self) -> None:
        self._repo.remotes.create(ORIGIN, self._transport_url, FETCH_SPECS[0])
        self._repo.remotes.add_fetch(ORIGIN, FETCH_SPECS[1])

    def _origin(self) -> Any:
        # Several objects may share this mirror (each with its own forwarder route), so the
        # URL is checked before every network operation; it is written (taking config.lock)
        # only when it differs.
        remote = self._repo.remotes[ORIGIN]
        if remote.url == self._transport_url:
            return remote
        self._repo.remotes.set_url(ORIGIN, self._transport_url)
        return self._repo.remotes[ORIGIN]

    def remove_stale_locks(self) -> list[str]:
        """Remove lock files killed writers left in the mirror (``recovery``); returns a note
        per file, those removed since the last call included."""
        notes = self._notes + remove_stale_ref_locks(self._repo.path, mirror=True)
        self._notes = []
        return notes

    def _retrying_locks(self, action: Callable[[], T]) -> T:
        """``action()``, again after a pause while a file it needs is locked by another
        process: libgit2 gives up at once instead of waiting (``locks.LOCK_RETRY_DELAYS``)."""
        delays = iter(LOCK_RETRY_DELAYS)
        while True:
            try:
                return action()
            except (pygit2.GitError, OSError) as err:  # pygit2 raises OSError on some locks
                delay = next(delays, None)
                if locked_file(err) is None or delay is None:
                    raise
            # Never this process's own lock (see the class): a killed writer's once it is old.
            removed = remove_stale_ref_locks(self._repo.path, mirror=True)
            self._notes += removed
            if not removed:
                with remote_wait(f"a lock file in the git mirror of {safe_url(self._url)}"):
                    lock_pause(delay)

    @staticmethod
    def open_mirror(path: Path) -> Any:
        if (path / "HEAD").exists():
            return pygit2.Repository(str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        return pygit2.init_repository(str(path), bare=True)

    def get(self, name: str) -> str | None:
        ref = self._repo.references.get(mirror_name(name))
        return None if ref is None else str(ref.resolve().target)

    def snapshot(self) -> dict[str, str]:
        refs: dict[str, str] = {}
        for ref in self._repo.references.iterator():
            if ref.type != ReferenceType.DIRECT:
                continue  # refs/remotes/origin/HEAD is symbolic
            name = ref.name
            if name.startswith(REMOTE_HEADS):
                refs[HEADS + name[len(REMOTE_HEADS) :]] = str(ref.target)
            elif name.startswith(TAGS):
                refs[name] = str(ref.target)
        return refs

    def fetch(self) -> None:
        for attempt in range(3):
            try:
                self._retrying_locks(self._fetch_once)
                return
            except (pygit2.GitError, _AuthFailed, OSError) as err:
                # Another writer deleted a ref between the advertisement and the fetch (a
                # branch renamed by propose/approve): the next attempt sees the new state.
                if attempt < 2 and "not found" in str(err) and "reference" in str(err):
                    continue
                raise self._unavailable("fetch from", err) from None

    def _fetch_once(self) -> None:
        callbacks = _Callbacks(self._creds, origin=self._transport_url)
        with remote_wait(f"a git fetch from {safe_url(self._url)}"):
            self._origin().fetch(callbacks=callbacks, prune=FetchPrune.PRUNE)

    def apply(self, updates: Sequence[RefUpdate]) -> None:
        if not updates:
            return
        rejected = self._push(updates)
        accepted = [u for u in updates if u.name not in rejected]
        self._record(accepted)
        if not rejected:
            return
        if accepted:
            # Keep the all-or-nothing promise: take back what the remote did accept.
            self._record([u.inverse() for u in accepted if not self._push_inverse(u)])
        name, message = next(iter(rejected.items()))
        raise Conflict(f"remote rejected {short(name)}: {self._clean(message)}")

    def _push_inverse(self, update: RefUpdate) -> bool:
        try:
            return not self._push([update.inverse()])
        except (Conflict, Unavailable):
            return False

    def _push(self, updates: Sequence[RefUpdate]) -> dict[str, str]:
        specs = [f"+{u.new}:{u.name}" if u.new else f":{u.name}" for u in updates]
        callbacks = _Callbacks(self._creds, updates, origin=self._transport_url)
        try:
            remote = self._retrying_locks(self._origin)
            with remote_wait(f"a git push to {safe_url(self._url)}"):
                remote.push(specs, callbacks=callbacks)
        except _LeaseBroken as broken:
            raise expectation_error(broken.update, broken.current) from None
        except (pygit2.GitError, _AuthFailed, OSError) as err:
            # libgit2 moves the mirror's copies of the pushed refs only after the remote has
            # answered for each: a lock failure then is the mirror's, and _record retries it.
            done = callbacks.reported >= {u.name for u in updates}
            if not (done and locked_file(err)):
                raise self._unavailable("push to", err) from None
        return callbacks.rejected

    def _record(self, updates: Sequence[RefUpdate]) -> None:
        refs = self._repo.references

        def one(update: RefUpdate) -> None:
            local = mirror_name(update.name)
            if update.new is None:
                if refs.get(local) is not None:
                    refs.delete(local)
            else:
                refs.create(local, update.new, force=True)

        for update in updates:
            try:
                self._retrying_locks(partial(one, update))
            except (pygit2.GitError, OSError) as err:
                raise self._unavailable("record a push to", err) from None

    def _clean(self, text: str) -> str:
        for secret in self._creds.secrets() if self._creds else []:
            text = text.replace(secret, "***")
        return text.replace(self._transport_url, safe_url(self._url)).replace(
            self._url, safe_url(self._url)
        )

    def _unavailable(self, verb: str, err: BaseException) -> Unavailable:
        where = safe_url(self._url)
        text = str(err).lower()
        if isinstance(err, _RedirectedAway):
            return Unavailable(
                f"cannot {verb} git repository {where}: the server redirected to another host;"
                " the repository credentials are not sent there"
            )
        if isinstance(err, _AuthFailed) or any(w in text for w in ("401", "403", "authenticat")):
            reason = (
                "authentication failed (check the repository credentials)"
                if self._creds
                else "authentication required but no credentials are configured"
            )
            return Unavailable(f"cannot {verb} git repository {where}: {reason}")
        reason = self._clean(str(err))
        if locked_file(err):
            reason = f"{reason.rstrip(': ')} (still locked after retries: another process is"
            reason += " writing this mirror)"
        if self._route is not None and self._route.last_error:
            reason, self._route.last_error = self._route.last_error, ""
        return Unavailable(f"cannot {verb} git repository {where}: {reason}")
