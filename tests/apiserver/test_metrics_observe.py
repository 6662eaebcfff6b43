"""Request metrics: each (verb, resource, code) counts on its own series (the label children
are looked up once per key and reused)."""

from __future__ import annotations

import re

from porch.apiserver.metrics import Metrics
from porch.engine import Engine


def _value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert found is not None, series
    return float(found.group(1))


def test_each_key_counts_on_its_own_series(engine: Engine) -> None:
    metrics = Metrics(engine)
    for _ in range(3):
        metrics.observe("get", "packagerevisions", 200, 0.002)
    metrics.observe("get", "packagerevisions", 404, 0.002)
    metrics.observe("", "", 200, 0.3)
    text = metrics.exposition().decode()
    total = "porch_apiserver_requests_total"
    assert _value(text, f'{total}{{code="200",resource="packagerevisions",verb="get"}}') == 3
    assert _value(text, f'{total}{{code="404",resource="packagerevisions",verb="get"}}') == 1
    assert _value(text, f'{total}{{code="200",resource="",verb="other"}}') == 1
    bucket = "porch_apiserver_request_duration_seconds_bucket"
    series = f'{bucket}{{code="200",le="0.005",resource="packagerevisions",verb="get"}}'
    assert _value(text, series) == 3
    assert _value(text, f'{bucket}{{code="200",le="0.25",resource="",verb="other"}}') == 0
