"""Issue #11 part 3: schemathesis over the served OpenAPI against a real ``porch serve``.

Every operation of every group version the server documents is fuzzed with schema-conforming
(positive) and schema-violating (negative) requests. No response may be a 5xx and the server
must still answer afterwards. The seed is printed (and can be set with ``PORCH_FUZZ_SEED``), so
a failure replays with the same requests; ``PORCH_FUZZ_SCALE`` multiplies the examples per
operation and mode (1 gives 2,072 requests).
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode

from tests.reliability.conftest import F2Server

DEFAULT_SEED = 20261127
# Examples per operation (positive, negative) by whether it has a body: bodies and negative
# (schema-violating) cases cost far more to generate than they cost the server to answer.
SCALE = float(os.environ.get("PORCH_FUZZ_SCALE", "1"))
EXAMPLES = {False: (62, 2), True: (22, 2)}
MIN_REQUESTS = 2_000
TIME_BUDGET_S = float(os.environ.get("PORCH_FUZZ_BUDGET", "300"))
# Names and namespaces that exist, so generated requests also reach real objects, not only 404s.
KNOWN_NAMESPACES = ["default", "default", "other"]


def _with_path_parameters(doc: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Declare the ``{namespace}``/``{name}`` path parameters, biased towards existing values."""
    doc = copy.deepcopy(doc)
    for path, item in doc["paths"].items():
        params = []
        for param in ("namespace", "name"):
            if "{" + param + "}" not in path:
                continue
            known = KNOWN_NAMESPACES if param == "namespace" else names
            schema = {"anyOf": [{"enum": known}, {"type": "string", "minLength": 1}]}
            params.append({"name": param, "in": "path", "required": True, "schema": schema})
        for op in item.values():
            op["parameters"] = params + op.get("parameters", [])
    return doc


def _documents(client: httpx.Client) -> dict[str, dict[str, Any]]:
    root = client.get("/openapi/v3").json()
    return {key: client.get(ref["serverRelativeURL"]).json() for key, ref in root["paths"].items()}


@pytest.mark.timeout(TIME_BUDGET_S + 120)  # the server's start and shutdown on top
def test_fuzz_openapi_no_5xx(f2_anonymous_server: F2Server) -> None:
    srv = f2_anonymous_server
    run_seed = int(os.environ.get("PORCH_FUZZ_SEED", DEFAULT_SEED))
    print(f"\nfuzz seed: {run_seed} (replay with PORCH_FUZZ_SEED={run_seed})")
    client = srv.client()
    names = [
        pr["metadata"]["name"]
        for pr in client.get("/apis/porch.kpt.dev/v1alpha1/packagerevisions").json()["items"]
    ] + ["demo"]
    documents = _documents(client)
    assert set(documents) >= {"apis/porch.kpt.dev/v1alpha1", "api/v1"}

    session = requests.Session()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = 0
    started = time.monotonic()
    rng = random.Random(run_seed)
    for key in sorted(documents):
        schema = schemathesis.openapi.from_dict(_with_path_parameters(documents[key], names))
        for result in schema.get_all_operations():
            # An operation schemathesis cannot read is a broken document: fail on it.
            operation = result.ok()  # type: ignore[union-attr]
            operations += 1
            has_body = bool(operation.body)
            for mode, examples in zip(
                (GenerationMode.POSITIVE, GenerationMode.NEGATIVE), EXAMPLES[has_body], strict=True
            ):
                strategy = operation.as_strategy(generation_mode=mode)

                @seed(rng.randrange(2**32))
                @settings(
                    max_examples=max(1, round(examples * SCALE)),
                    database=None,
                    deadline=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy)
                def run(case: Any) -> None:
                    try:
                        response = case.call(base_url=srv.url, session=session, timeout=30)
                    except Exception as exc:  # a dropped connection is a failure too
                        failures.append(f"{case.method} {case.formatted_path}: {exc!r}")
                        return
                    statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:300]}\n  replay: {case.as_curl_command()}"
                        )

                t0 = time.monotonic()
                run()
                if os.environ.get("PORCH_FUZZ_VERBOSE"):
                    print(
                        f"{operation.method} {operation.path} {mode.value}: "
                        f"{time.monotonic() - t0:.1f}s",
                        flush=True,
                    )
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    print(
        f"fuzzed {total} requests over {operations} operations in {elapsed:.1f}s; "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, f"{len(failures)} failures (seed {run_seed}):\n" + "\n".join(failures[:20])
    assert total >= MIN_REQUESTS, f"only {total} requests were generated"
    assert elapsed < TIME_BUDGET_S, f"fuzzing took {elapsed:.0f}s"
    assert srv.alive()
    after = client.get("/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions")
    assert after.status_code == 200
