"""Run one engine operation in a child process and SIGKILL it at a chosen point.

Usage: python -m tests.engine.crash_worker DATA_DIR OP POINT
POINT is an engine fault point, or ``random:SEED:MAX_MS`` to die after a random delay.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

from porch.api.types import (
    ObjectMeta,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    Repository,
    Task,
)
from porch.engine import Engine
from porch.repository.types import PackageRepository
from porch.store import SqliteStore


def opener(repo: Repository) -> PackageRepository:
    from porch.repository.git import GitRepository

    assert repo.spec.git is not None
    return GitRepository(repo.spec.git.repo, branch=repo.branch, create_branch=True)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    data, op, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    def fault(name: str) -> None:
        if name == point:
            die()

    if point.startswith("random:"):
        _, seed, max_ms = point.split(":")
        delay = random.Random(int(seed)).uniform(0, int(max_ms)) / 1000
        threading.Thread(target=lambda: (time.sleep(delay), die()), daemon=True).start()
    engine = Engine(store=SqliteStore(data / "store.db"), opener=opener, fault=fault)
    engine.start()
    if op == "create":
        engine.create(
            PackageRevision(
                metadata=ObjectMeta(namespace="default"),
                spec=PackageRevisionSpec(
                    package_name="new", repository="blue", workspace_name="ws1"
                ),
            )
        )
    elif op == "approve":
        pr = engine.get("default", "blue.app.ws3")
        pr.spec.lifecycle = "Published"
        from porch.api.lifecycle import Endpoint

        engine.update(pr, endpoint=Endpoint.APPROVAL)
    elif op == "copy-propose-approve":
        edit = Task(
            type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef("blue.app.ws2"))
        )
        pr = engine.create(
            PackageRevision(
                metadata=ObjectMeta(namespace="default"),
                spec=PackageRevisionSpec(
                    package_name="app", repository="blue", workspace_name="ws9", tasks=[edit]
                ),
            )
        )
        pr.spec.lifecycle = "Proposed"
        pr = engine.update(pr)
        pr.spec.lifecycle = "Published"
        from porch.api.lifecycle import Endpoint

        engine.update(pr, endpoint=Endpoint.APPROVAL)
    print("completed", flush=True)


if __name__ == "__main__":
    main()
