"""Prometheus metrics, one registry per app so several servers can live in one process (tests).

Request latency by verb/resource/code, open watches, and the number of package revisions
(computed at scrape time from the index; cheap next to a list request).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from porch.engine import Engine
from porch.engine.render import Renderer, RenderOutcome

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class Metrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "porch_apiserver_request_duration_seconds",
            "Time to answer an API request (for watches: how long the stream was open).",
            ("verb", "resource", "code"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "porch_apiserver_requests",
            "API requests by verb, resource and HTTP code.",
            ("verb", "resource", "code"),
            registry=self.registry,
        )
        self.watchers = Gauge(
            "porch_apiserver_watchers",
            "Watch streams currently open.",
            ("resource",),
            registry=self.registry,
        )
        revisions = Gauge(
            "porch_package_revisions",
            "Package revisions in the index.",
            registry=self.registry,
        )
        revisions.set_function(lambda: float(len(engine.store.list_revisions())))
        self.renders = Counter(
            "porch_renders",
            "Package renders by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}
        if not isinstance(engine.renderer, _CountingRenderer):
            engine.renderer = _CountingRenderer(engine.renderer, self.renders)

    def observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        key = (verb, resource, code)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and checks its arguments: once per key
            labels = (verb or "other", resource or "", str(code))
            children = (self.latency.labels(*labels), self.requests.labels(*labels))
            self._children[key] = children
        children[0].observe(seconds)
        children[1].inc()

    def watch_opened(self, resource: str) -> None:
        self.watchers.labels(resource).inc()

    def watch_closed(self, resource: str) -> None:
        self.watchers.labels(resource).dec()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _CountingRenderer:
    """Wraps the engine's renderer to count renders; the engine itself stays unaware."""

    def __init__(self, inner: Renderer, counter: Counter) -> None:
        self._inner = inner
        self._counter = counter

    def render(self, files: Mapping[str, str]) -> RenderOutcome:
        outcome = self._inner.render(files)
        self._counter.labels("failed" if outcome.failed else "ok").inc()
        return outcome
