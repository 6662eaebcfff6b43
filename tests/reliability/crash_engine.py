"""Crash injection at the engine level, many points per process start (issue #11 part 2).

Usage: python -m tests.reliability.crash_engine DATA_DIR SEED POINTS

Starting a Python process with porch imported takes seconds on a busy machine, so this driver
imports everything once and then, for each crash point, forks:

1. a *worker* that opens the engine on DATA_DIR (as a server start does), runs one random
   lifecycle operation (create, copy, propose, approve, reject, update, resources update,
   propose-deletion + delete of a published revision, or a sync that indexes revisions another
   git writer pushed) and is SIGKILLed part-way: at the k-th engine fault point it reaches, or
   after a random delay (which lands anywhere: in git object/ref writes, in the SQLite commit);
2. a *restart* that opens the engine again, runs ``Engine.start()`` (the recovery a server start
   runs; its notes are the leftovers it reported and cleaned) and checks: ``git fsck --strict``
   is clean; a second sync finds nothing to change (index and git agree); every revision has
   a Kptfile and readable resources; every revision that was Published before is still
   Published with the same number and files; per package, published numbers are 1..n and equal
   the tags in git.

The worker and the restart are real processes killed with a real SIGKILL; only the import is
shared. One JSON line per point goes to stdout, and a summary line at the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pygit2

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
    Task,
)
from porch.engine import Engine
from porch.repository.git.recovery import STALE_LOCK_S
from porch.repository.types import PackageRepository
from porch.store import SqliteStore

NS = "default"
REPO = "blue"
PACKAGES = ("app", "db", "web")
OPS = (
    "create",
    "copy",
    "propose",
    "approve",
    "reject",
    "update",
    "resources",
    "delete-draft",
    "delete-published",
    "sync",
)


def opener(repo: Repository) -> PackageRepository:
    from porch.repository.git import GitRepository

    assert repo.spec.git is not None
    return GitRepository(repo.spec.git.repo, branch=repo.branch, create_branch=True)


def git(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "--git-dir", str(data / f"{REPO}.git"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def open_engine(data: Path, fault: Any = None) -> Engine:
    kwargs: dict[str, Any] = {"fault": fault} if fault is not None else {}
    return Engine(store=SqliteStore(data / "store.db"), opener=opener, **kwargs)


def setup(data: Path) -> None:
    pygit2.init_repository(str(data / f"{REPO}.git"), bare=True, initial_head="main")
    pygit2.init_repository(str(data / "other.git"), bare=True, initial_head="main")
    engine = open_engine(data)
    engine.register_repository(
        Repository(
            metadata=ObjectMeta(name=REPO, namespace=NS),
            spec=RepositorySpec(
                type="git",
                git=GitRepositorySpec(repo=str(data / f"{REPO}.git"), create_branch=True),
            ),
        )
    )
    for package in PACKAGES:  # one published revision each, so copies have a source
        pr = engine.create(_pr(package, "v1"))
        _advance(engine, pr.metadata.name, "Proposed", Endpoint.MAIN)
        _advance(engine, pr.metadata.name, "Published", Endpoint.APPROVAL)
    engine.store.close()


def _pr(package: str, ws: str, source: str = "") -> PackageRevision:
    tasks = (
        [Task(type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(source)))]
        if source
        else []
    )
    return PackageRevision(
        metadata=ObjectMeta(namespace=NS),
        spec=PackageRevisionSpec(
            package_name=package, repository=REPO, workspace_name=ws, tasks=tasks
        ),
    )


def _advance(engine: Engine, name: str, lifecycle: str, endpoint: Endpoint) -> None:
    cur = engine.get(NS, name)
    cur.spec.lifecycle = lifecycle
    engine.update(cur, endpoint=endpoint)


def _by_lifecycle(engine: Engine, lifecycle: str) -> list[PackageRevision]:
    return [
        p for p in engine.list(NS)[0] if p.spec.lifecycle == lifecycle and p.spec.revision != -1
    ]


def _push_elsewhere(data: Path, rng: random.Random, point: int) -> None:
    """Another git writer adds a package (a commit on main and a tag) the engine must index."""
    repo = pygit2.Repository(str(data / f"{REPO}.git"))
    parent = repo.references.get("refs/heads/main")
    package = f"ext{point}"
    kptfile = (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n"
        f'  name: {package}\n  annotations:\n    config.kubernetes.io/local-config: "true"\n'
        f"info:\n  description: pushed by another writer\n"
    )
    builder = repo.TreeBuilder(repo[parent.target].tree) if parent else repo.TreeBuilder()
    sub = repo.TreeBuilder()
    sub.insert("Kptfile", repo.create_blob(kptfile.encode()), pygit2.GIT_FILEMODE_BLOB)
    sub.insert(
        "cm.yaml",
        repo.create_blob(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{rng.random()}\n".encode()
        ),
        pygit2.GIT_FILEMODE_BLOB,
    )
    builder.insert(package, sub.write(), pygit2.GIT_FILEMODE_TREE)
    sig = pygit2.Signature("other", "other@example.com")
    commit = repo.create_commit(
        "refs/heads/main",
        sig,
        sig,
        f"add {package}",
        builder.write(),
        [parent.target] if parent else [],
    )
    repo.create_reference(f"refs/tags/{package}/v1", commit)


def run_op(engine: Engine, data: Path, op: str, rng: random.Random, point: int) -> str:
    """One operation; returns what it did (the worker may die before it returns)."""
    ws = f"w{point}"
    drafts = _by_lifecycle(engine, "Draft")
    proposed = _by_lifecycle(engine, "Proposed")
    published = [p for p in _by_lifecycle(engine, "Published") if p.spec.package_name in PACKAGES]
    if not (drafts or proposed) and op not in ("create", "delete-published", "sync"):
        op = "copy"  # nothing in flight yet: start something
    if op == "create":
        engine.create(_pr(f"new{point}", ws))
    elif op == "copy" or (op in ("propose", "update", "resources", "delete-draft") and not drafts):
        source = rng.choice(published)
        engine.create(_pr(source.spec.package_name, ws, source.metadata.name))
        op = "copy"
    elif op in ("approve", "reject") and proposed:
        target = "Published" if op == "approve" else "Draft"
        _advance(engine, rng.choice(proposed).metadata.name, target, Endpoint.APPROVAL)
    elif op in ("approve", "reject"):
        _advance(engine, rng.choice(drafts).metadata.name, "Proposed", Endpoint.MAIN)
        op = "propose"
    elif op == "propose":
        _advance(engine, rng.choice(drafts).metadata.name, "Proposed", Endpoint.MAIN)
    elif op == "update":
        cur = engine.get(NS, rng.choice(drafts).metadata.name)
        cur.metadata.labels = {**(cur.metadata.labels or {}), "point": str(point)}
        engine.update(cur)
    elif op == "resources":
        prr = engine.get_resources(NS, rng.choice(drafts).metadata.name)
        prr.spec.resources[f"cm{point}.yaml"] = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{point}\n"
        )
        engine.update_resources(prr)
    elif op == "delete-draft":
        engine.delete(NS, rng.choice(drafts).metadata.name)
    elif op == "delete-published":
        # Only revisions of packages made by "create" (never a copy's source) are deleted.
        mine = [
            p for p in _by_lifecycle(engine, "Published") if p.spec.package_name.startswith("new")
        ]
        if not mine:
            engine.create(_pr(f"new{point}", ws))
            return "create"
        name = rng.choice(mine).metadata.name
        _advance(engine, name, "DeletionProposed", Endpoint.MAIN)
        engine.delete(NS, name)
    elif op == "sync":
        _push_elsewhere(data, rng, point)
        engine.sync_repository(NS, REPO)
    else:
        raise AssertionError(op)
    return op


def _digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def snapshot_published(engine: Engine) -> dict[str, list[Any]]:
    return {
        p.metadata.name: [
            p.spec.revision,
            _digest(engine.get_resources(NS, p.metadata.name).spec.resources),
        ]
        for p in engine.list(NS)[0]
        if p.spec.lifecycle == "Published" and p.spec.revision > 0
    }


def check_restart(data: Path, before: dict[str, list[Any]], deleting: str) -> dict[str, Any]:
    """The restart: recovery, then the invariants. Returns notes, problems and the new snapshot."""
    problems: list[str] = []
    if any((data / f"{REPO}.git").rglob("*.lock")):
        # A ref lock the kill left: the engine removes locks older than STALE_LOCK_S (a live
        # update holds one for milliseconds); a real restart takes longer than that anyway.
        time.sleep(STALE_LOCK_S + 0.2)
    fsck = git(data, "fsck", "--strict", "--no-progress")
    if fsck.returncode != 0:
        problems.append(f"git fsck --strict: {fsck.stdout}{fsck.stderr}")
    engine = open_engine(data)
    notes = engine.start()
    git_dir = data / f"{REPO}.git"
    locks = [str(p.relative_to(git_dir)) for p in git_dir.rglob("*.lock")]
    if locks:
        problems.append(f"lock files left in git after start: {locks}")
    rv = engine.current_resource_version()
    engine.sync_repository(NS, REPO)
    if engine.current_resource_version() != rv:
        problems.append("a second sync changed the index: store and git disagreed after start")
    numbers: dict[str, list[int]] = {}
    for pr in engine.list(NS)[0]:
        name = pr.metadata.name
        try:
            files = engine.get_resources(NS, name).spec.resources
        except Exception as exc:  # noqa: BLE001 - reported as a problem
            problems.append(f"{name}: resources unreadable: {exc!r}")
            continue
        if "Kptfile" not in files:
            problems.append(f"{name}: half-written, no Kptfile ({sorted(files)})")
        if pr.spec.lifecycle in ("Published", "DeletionProposed") and pr.spec.revision > 0:
            numbers.setdefault(pr.spec.package_name, []).append(pr.spec.revision)
    after = snapshot_published(engine)
    for name, (revision, digest) in before.items():
        if name == deleting and name not in after:
            continue  # the interrupted operation was deleting exactly this one
        got = after.get(name)
        if got is None:
            try:
                state = engine.get(NS, name).spec.lifecycle
            except Exception as exc:  # noqa: BLE001
                state = repr(exc)
            if not (name == deleting and state == "DeletionProposed"):
                problems.append(f"published {name} v{revision} lost (now {state})")
        elif got != [revision, digest]:
            problems.append(f"published {name} changed: {before[name]} -> {got}")
    tags = set(git(data, "tag", "--list").stdout.split())
    for package, revs in numbers.items():
        if sorted(revs) != list(range(1, len(revs) + 1)) and not package.startswith("new"):
            problems.append(f"{package}: published numbers {sorted(revs)} not 1..n")
        for r in revs:
            if f"{package}/v{r}" not in tags:
                problems.append(f"{package} v{r} published without its tag")
    engine.store.close()
    return {"notes": notes, "problems": problems, "published": after}


def _fork(fn: Any) -> int:
    """Run ``fn`` in a child; returns its wait status (a SIGKILLed child: -9)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:  # noqa: BLE001 - the child must never return into the parent
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def worker(
    data: Path, op: str, mode: str, nth: int, delay: float, op_seed: int, point: int
) -> None:
    """One operation on a freshly opened engine, SIGKILLed at the chosen moment."""
    deleting_file = data / "deleting"
    calls = [0]

    def fault(name: str) -> None:
        calls[0] += 1
        if mode == "fault" and calls[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    engine = open_engine(data, fault)
    engine.start()
    op_rng = random.Random(op_seed)
    if op == "delete-published":
        mine = [
            p.metadata.name
            for p in _by_lifecycle(engine, "Published")
            if p.spec.package_name.startswith("new")
        ]
        if mine:
            deleting_file.write_text(random.Random(op_seed).choice(mine))
    if mode == "delay":  # a random moment of the operation itself

        def die() -> None:
            time.sleep(delay)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=die, daemon=True).start()
    run_op(engine, data, op, op_rng, point)
    engine.store.close()


def main() -> None:
    data, seed, points = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    if not (data / "store.db").exists():
        data.mkdir(parents=True, exist_ok=True)
        assert _fork(lambda: setup(data)) == 0
    result_path = data / "restart.json"

    def restart(deleting: str) -> dict[str, Any]:
        before = json.loads((data / "published.json").read_text())

        def child() -> None:
            result_path.write_text(json.dumps(check_restart(data, before, deleting)))

        code = _fork(child)
        if code != 0:
            return {"notes": [], "problems": [f"restart exited {code}"], "published": before}
        result: dict[str, Any] = json.loads(result_path.read_text())
        (data / "published.json").write_text(json.dumps(result["published"]))
        return result

    (data / "published.json").write_text("{}")
    restart("")
    killed = completed = 0
    all_notes = 0
    failures: list[str] = []
    started = time.monotonic()
    point = -1
    # POINTS counts crashes: an operation that finished before its kill came is not one, so
    # the loop goes on (bounded) until that many workers were really SIGKILLed.
    while killed < points and point < 4 * points:
        point += 1
        op = rng.choice(OPS)
        mode = rng.choice(("fault", "delay"))
        nth = rng.randint(1, 2)
        delay = rng.uniform(0.0, 0.06)
        op_seed = rng.randrange(2**31)
        deleting_file = data / "deleting"
        deleting_file.write_text("")

        code = _fork(functools.partial(worker, data, op, mode, nth, delay, op_seed, point))
        if code == -signal.SIGKILL:
            killed += 1
        elif code == 0:
            completed += 1
        else:
            failures.append(f"point {point}: worker {op} exited {code}")
        result = restart(deleting_file.read_text())
        all_notes += len(result["notes"])
        line = {
            "point": point,
            "op": op,
            "mode": mode,
            "nth": nth,
            "delay": round(delay, 3),
            "worker": code,
            "notes": result["notes"],
            "problems": result["problems"],
        }
        print(json.dumps(line), flush=True)
        failures += [f"point {point} ({op}, {mode}): {p}" for p in result["problems"]]
    print(
        json.dumps(
            {
                "summary": True,
                "seed": seed,
                "points": points,
                "operations": point + 1,
                "killed": killed,
                "completed": completed,
                "notes": all_notes,
                "seconds": round(time.monotonic() - started, 1),
                "failures": failures,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
