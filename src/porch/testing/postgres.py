"""A throw-away PostgreSQL server for tests: ``initdb`` in a temp dir, ``postgres`` on 127.0.0.1.

    with PostgresServer() as server:
        dsn = server.create_database()      # a fresh, empty database
        store = PostgresStore(dsn)

The server listens on 127.0.0.1 on a port chosen at run time (its Unix socket lives in the temp
dir), trusts local connections (user ``porch``, no password) and runs with ``fsync=off``. When
the process runs as root (initdb refuses to) the cluster is created and run as an unprivileged
account: ``postgres`` if it exists, otherwise a system user ``porchtest`` created with useradd.
Missing binaries raise :class:`PostgresUnavailable`, which tests turn into a skip.

For the engine and API suites, :func:`store_url_from_env` honours ``PORCH_TEST_STORE``
(``sqlite``, the default, or ``postgres``) and gives a ``--store`` value for a fresh store.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from porch.store.types import Store

ENV_VAR = "PORCH_TEST_STORE"
SUPERUSER = "porch"
_FALLBACK_OS_USER = "porchtest"
_START_TIMEOUT = 60.0  # seconds to wait for a starting server (an upper bound, not a speed)


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed, or the server could not start."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (newest installed version first)."""
    candidates: list[str] = []
    if os.environ.get("PORCH_PG_BINDIR"):
        candidates.append(os.environ["PORCH_PG_BINDIR"])
    candidates.append("/usr/local/bin")
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for directory in candidates:
        d = Path(directory)
        if (d / "initdb").exists() and (d / "postgres").exists():
            return (d / "initdb").resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found in /usr/local/bin or"
        " /usr/lib/postgresql/*/bin; install them (apt-get install postgresql) or set"
        " PORCH_PG_BINDIR"
    )


def _os_user() -> pwd.struct_passwd | None:
    """The account to run the server as: None when not root, else an unprivileged one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_OS_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    try:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _FALLBACK_OS_USER,
            ],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PostgresUnavailable(
            f"running as root and no unprivileged user to run PostgreSQL as: {exc}"
        ) from None
    return pwd.getpwnam(_FALLBACK_OS_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """Context manager running one PostgreSQL cluster; :meth:`create_database` gives DSNs."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self._settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            **(settings or {}),
        }
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def _popen_kwargs(self) -> dict[str, Any]:
        assert self._tmp is not None
        kwargs: dict[str, Any] = {"cwd": str(self._tmp), "env": {**os.environ, "LC_ALL": "C"}}
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
            kwargs["env"]["HOME"] = str(self._tmp)
        return kwargs

    def start(self) -> PostgresServer:
        bindir = find_bindir()
        self._user = _os_user()
        self._tmp = Path(tempfile.mkdtemp(prefix="porch-pg-"))
        if self._user is not None:
            os.chown(self._tmp, self._user.pw_uid, self._user.pw_gid)
        data = self._tmp / "data"
        out = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            **self._popen_kwargs(),
        )
        if out.returncode != 0:
            self._cleanup()
            raise PostgresUnavailable(
                f"initdb failed ({out.returncode}): {out.stderr.decode(errors='replace')[-2000:]}"
            )
        last = ""
        for _ in range(5):  # the port is free when chosen but another process may take it
            self.port = _free_port()
            last = self._launch(bindir, data)
            if not last:
                atexit.register(self.stop)
                return self
        self._cleanup()
        raise PostgresUnavailable(f"postgres did not start: {last[-2000:]}")

    def _launch(self, bindir: Path, data: Path) -> str:
        """Start postgres and wait until it accepts connections; "" or the reason it failed."""
        assert self._tmp is not None
        log = self._tmp / "postgres.log"
        args = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(self._tmp),
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        for key, value in self._settings.items():
            args += ["-c", f"{key}={value}"]
        with open(log, "ab") as sink:
            self._proc = subprocess.Popen(
                args,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **self._popen_kwargs(),
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return log.read_text(errors="replace")
            if self._ready():
                return ""
            time.sleep(0.05)
        self._terminate()
        return f"not ready after {_START_TIMEOUT:.0f}s: " + log.read_text(errors="replace")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # fast shutdown: roll back sessions, exit
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _cleanup(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def stop(self) -> None:
        self._terminate()
        self._cleanup()
        atexit.unregister(self.stop)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- databases ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str = "") -> str:
        """Create an empty database (a fresh name unless given) and return its DSN."""
        if not name:
            with self._lock:
                name = f"t{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def drop_database(self, name_or_dsn: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        name = name_or_dsn.rsplit("/", 1)[-1].split("?", 1)[0]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """One server per test process, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = PostgresServer().start()
        return _shared


def store_kind_from_env() -> str:
    """``sqlite`` (default) or ``postgres``, from ``PORCH_TEST_STORE``."""
    kind = os.environ.get(ENV_VAR, "").strip().lower() or "sqlite"
    if kind in ("postgresql", "pg"):
        kind = "postgres"
    if kind not in ("sqlite", "postgres"):
        raise ValueError(f"{ENV_VAR}={kind!r}: expected sqlite or postgres")
    return kind


def store_url_from_env(tmp_dir: Path) -> str:
    """A ``--store`` value for a fresh, empty store of the kind ``PORCH_TEST_STORE`` names.

    SQLite: ``sqlite://<tmp_dir>/store.db``. PostgreSQL: a new database on :func:`shared_server`
    (reopening the same URL later reaches the same data, as a restart would).
    """
    if store_kind_from_env() == "postgres":
        return shared_server().create_database()
    return f"sqlite://{tmp_dir / 'store.db'}"


def store_from_env(tmp_dir: Path) -> Store:
    """Open a fresh store of the kind ``PORCH_TEST_STORE`` names (see store_url_from_env)."""
    from porch.store.factory import open_store

    return open_store(store_url_from_env(tmp_dir), tmp_dir)
