"""Run the variant controllers: watches wake a worker, a periodic resync catches the rest.

The loop is level-triggered: an event says only "something changed", and a pass reconciles
every PackageVariantSet and then every PackageVariant from a fresh list. One worker thread does
all passes, so no object is ever reconciled twice at once; because a pass writes nothing when
nothing changed, the events caused by a pass's own writes lead to one quiet pass and stop.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from porch.api.types import PackageRevision
from porch.client import (
    ALL_NAMESPACES,
    CONFIG,
    CONFIG_V1ALPHA2,
    ClientError,
    PorchClient,
)
from porch.controllers.packagevariant import PackageVariantReconciler
from porch.controllers.packagevariantset import PackageVariantSetReconciler
from porch.controllers.types import Outcome

log = logging.getLogger("porch.controllers")

WATCHED = (
    (CONFIG_V1ALPHA2, "packagevariantsets"),
    (CONFIG, "packagevariants"),
    ("/apis/porch.kpt.dev/v1alpha1", "packagerevisions"),
)


def _by_namespace(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        out[str((item.get("metadata") or {}).get("namespace") or "")].append(item)
    return out


class ControllerRunner:
    """``make_client`` is called once per thread (httpx clients are not shared across them)."""

    def __init__(
        self,
        make_client: Callable[[], PorchClient],
        *,
        namespace: str = ALL_NAMESPACES,
        resync: float = 30.0,
        retry: float = 2.0,
    ) -> None:
        self._make_client = make_client
        self._client = make_client()
        self.namespace = namespace
        self.resync = resync
        self.retry = retry
        self.passes = 0
        self._variants = PackageVariantReconciler(self._client)
        self._sets = PackageVariantSetReconciler(self._client)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch_clients: list[PorchClient] = []

    @property
    def base_url(self) -> str:
        return self._client.base_url

    # --- one pass --------------------------------------------------------------------------

    def reconcile_once(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        client = self._client
        sets = client.list_objects(CONFIG_V1ALPHA2, "packagevariantsets", namespace=self.namespace)
        for pvs in sets:
            outcomes.append(self._guarded(self._sets.reconcile, pvs))
        variants = client.list_objects(CONFIG, "packagevariants", namespace=self.namespace)
        for ns, items in sorted(_by_namespace(variants).items()):
            prs: list[PackageRevision] | None = None
            for pv in items:
                if prs is None:
                    prs = client.list_package_revisions(namespace=ns)
                outcome = self._guarded(self._variants.reconcile, pv, prs)
                if outcome.wrote or outcome.error:
                    prs = None  # what this variant wrote is seen by the next one
                outcomes.append(outcome)
        self.passes += 1
        for outcome in outcomes:
            if outcome.error:
                log.info("reconcile %s: %s", outcome.name, outcome.error)
        return outcomes

    def _guarded(
        self, reconcile: Callable[..., Outcome], obj: dict[str, Any], *args: Any
    ) -> Outcome:
        name = str((obj.get("metadata") or {}).get("name") or "")
        try:
            return reconcile(obj, *args)
        except ClientError as exc:  # a stale resourceVersion, a lost connection: next pass
            return Outcome(name, error=str(exc))
        except Exception as exc:  # a bug must not stop the other objects' reconciles
            log.exception("reconcile %s failed", name)
            return Outcome(name, error=f"internal error: {exc}")

    # --- running in the background ---------------------------------------------------------

    def start(self) -> None:
        worker = threading.Thread(target=self._work, name="variant-controller", daemon=True)
        self._threads.append(worker)
        for api, plural in WATCHED:
            watch = threading.Thread(
                target=self._watch, args=(api, plural), name=f"watch-{plural}", daemon=True
            )
            self._threads.append(watch)
        for thread in self._threads:
            thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the pass under way; watch threads are daemons and may stay blocked on
        their streams (a blocked read cannot be interrupted portably), so they are not waited
        for beyond a moment."""
        self._stop.set()
        self._wake.set()
        for client in list(self._watch_clients):
            client.close()
        for thread in self._threads:
            thread.join(timeout if thread.name == "variant-controller" else 0.1)
        self._client.close()

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.resync)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile_once()
            except ClientError as exc:
                log.warning("controller pass failed: %s", exc)
                self._stop.wait(self.retry)
                self._wake.set()
            except Exception:
                log.exception("controller pass failed")
                self._stop.wait(self.retry)

    def _watch(self, api: str, plural: str) -> None:
        client = self._make_client()
        self._watch_clients.append(client)
        while not self._stop.is_set():
            try:
                for event in client.watch_objects(api, plural, namespace=self.namespace):
                    if self._stop.is_set():
                        return
                    if event.type != "BOOKMARK":
                        self._wake.set()
            except ClientError as exc:
                if self._stop.is_set():
                    return
                log.info("watch on %s ended (%s); watching again", plural, exc)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("watch on %s failed", plural)
            self._stop.wait(self.retry)
            self._wake.set()  # events may have been missed while away
