"""Lifecycle verbs (propose, approve, reject, propose-delete) as porchctl performs them.

Each verb re-reads the revision, checks client-side what the server would not (readiness
gates, which Porch leaves to clients), and writes through the endpoint Porch requires. A 409 —
someone else wrote in between, or the server's per-object lock was held — restarts the whole
read-check-write, as client-go's ``retry.RetryOnConflict`` does for upstream porchctl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from porch.api.types import PackageRevision
from porch.client._client import PorchClient
from porch.client._errors import Conflict, PreconditionFailed

# client-go's retry.DefaultRetry: 5 attempts, 10 ms apart (jitter omitted: one client process).
RETRY_ATTEMPTS = 5
RETRY_DELAY = 0.01


class Outcome(StrEnum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"  # already in the requested state: a notice, not an error


def is_ready(pr: PackageRevision) -> bool:
    """Every readiness gate has a condition of that type with status ``True``."""
    status = {c.type: c.status for c in pr.status.conditions}
    return all(status.get(g.condition_type) == "True" for g in pr.spec.readiness_gates)


def unmet_gates(pr: PackageRevision) -> list[str]:
    status = {c.type: c.status for c in pr.status.conditions}
    return [
        g.condition_type for g in pr.spec.readiness_gates if status.get(g.condition_type) != "True"
    ]


Step = Callable[[PackageRevision], tuple[Outcome, PackageRevision]]


class LifecycleVerbs:
    """The four verbs over one client; ``sleep`` is injectable so tests never wait."""

    def __init__(self, client: PorchClient, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self._sleep = sleep

    def _retry(
        self, name: str, namespace: str | None, step: Step
    ) -> tuple[Outcome, PackageRevision]:
        for attempt in range(RETRY_ATTEMPTS):
            pr = self.client.get_package_revision(name, namespace=namespace)
            try:
                return step(pr)
            except Conflict:
                if attempt == RETRY_ATTEMPTS - 1:
                    raise
                self._sleep(RETRY_DELAY)
        raise AssertionError("unreachable")

    def _check_ready(self, pr: PackageRevision) -> None:
        missing = unmet_gates(pr)
        if missing:
            raise PreconditionFailed(
                f"readiness conditions not met for {pr.metadata.name}: {', '.join(missing)}"
            )

    def propose(
        self, name: str, *, namespace: str | None = None
    ) -> tuple[Outcome, PackageRevision]:
        def step(pr: PackageRevision) -> tuple[Outcome, PackageRevision]:
            if pr.spec.lifecycle == "Proposed":
                return Outcome.UNCHANGED, pr
            if pr.spec.lifecycle != "Draft":
                raise PreconditionFailed(f"cannot propose {pr.spec.lifecycle} package {name}")
            self._check_ready(pr)
            pr.spec.lifecycle = "Proposed"
            return Outcome.CHANGED, self.client.update_package_revision(pr)

        return self._retry(name, namespace, step)

    def approve(
        self, name: str, *, namespace: str | None = None
    ) -> tuple[Outcome, PackageRevision]:
        def step(pr: PackageRevision) -> tuple[Outcome, PackageRevision]:
            if pr.spec.lifecycle == "Published":
                return Outcome.UNCHANGED, pr
            if pr.spec.lifecycle not in ("Proposed", "DeletionProposed"):
                raise PreconditionFailed(
                    f"cannot approve {pr.spec.lifecycle} package {name};"
                    " only Proposed packages can be approved"
                )
            self._check_ready(pr)
            pr.spec.lifecycle = "Published"
            return Outcome.CHANGED, self.client.update_approval(pr)

        return self._retry(name, namespace, step)

    def reject(self, name: str, *, namespace: str | None = None) -> tuple[Outcome, PackageRevision]:
        def step(pr: PackageRevision) -> tuple[Outcome, PackageRevision]:
            if pr.spec.lifecycle == "Proposed":
                pr.spec.lifecycle = "Draft"
                return Outcome.CHANGED, self.client.update_approval(pr)
            if pr.spec.lifecycle == "DeletionProposed":
                pr.spec.lifecycle = "Published"
                return Outcome.CHANGED, self.client.update_package_revision(pr)
            raise PreconditionFailed(f"cannot reject {name} with lifecycle '{pr.spec.lifecycle}'")

        return self._retry(name, namespace, step)

    def propose_delete(
        self, name: str, *, namespace: str | None = None
    ) -> tuple[Outcome, PackageRevision]:
        def step(pr: PackageRevision) -> tuple[Outcome, PackageRevision]:
            if pr.spec.lifecycle == "DeletionProposed":
                return Outcome.UNCHANGED, pr
            if pr.spec.lifecycle != "Published":
                raise PreconditionFailed(
                    "can only propose published packages for deletion;"
                    f" package {name} is not published"
                )
            pr.spec.lifecycle = "DeletionProposed"
            return Outcome.CHANGED, self.client.update_package_revision(pr)

        return self._retry(name, namespace, step)
