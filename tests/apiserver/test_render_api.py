"""Kptfile pipelines over HTTP with the server's default runtime (builtins in-process): the PRR
response carries ``status.renderStatus``; failures answer 422 with Porch's message and store
nothing unless ``porch.kpt.dev/push-on-render-failure`` is set; Draft updates render; the
render counter of ``/metrics`` keeps counting."""

from __future__ import annotations

import re
from typing import Any

import pytest

from porch.engine import Engine
from porch.engine.render import NoFunctionRuntime
from porch.krm import yaml as krm_yaml
from tests.apiserver.conftest import NS, PR_PATH, PRR_PATH, Client, draft

SET_NAMESPACE = "ghcr.io/kptdev/krm-functions-catalog/set-namespace:v0.4.1"
SET_LABELS = "ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2.0"
MISSING = "example.com/functions/no-such-function:v1"

PIPELINE = f"""pipeline:
  mutators:
    - image: {SET_NAMESPACE}
      configMap:
        namespace: staging
    - image: {SET_LABELS}
      configMap:
        tier: backend
"""
FAILING = f"pipeline:\n  mutators:\n    - image: {MISSING}\n"

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
"""


@pytest.fixture(autouse=True)
def _builtins() -> None:
    from porch.fn.registry import builtins

    missing = {"set-namespace", "set-labels"} - set(builtins())
    if missing:
        pytest.skip(f"builtin function(s) not in this build yet: {sorted(missing)}")
    try:
        import porch.fn.render  # noqa: F401
    except ImportError:
        pytest.skip("the render core porch.fn.render is not in this build yet")


def one(text: str) -> dict[str, Any]:
    (obj,) = krm_yaml.parse_documents(text).objects()
    return krm_yaml.to_plain(obj)


def rendered(resources: dict[str, str]) -> bool:
    meta = one(resources["deployment.yaml"])["metadata"]
    return bool(meta.get("namespace") == "staging" and meta.get("labels") == {"tier": "backend"})


def new_draft(client: Client, package: str) -> dict[str, Any]:
    r = client.post(PR_PATH, json=draft(package))
    assert r.status_code == 201, r.text
    prr = client.get(f"{PRR_PATH}/demo.{package}.v1").json()
    assert isinstance(prr, dict)
    return prr


def with_files(prr: dict[str, Any], pipeline: str) -> dict[str, Any]:
    resources = prr["spec"]["resources"]
    resources["Kptfile"] = resources["Kptfile"].rstrip("\n") + "\n" + pipeline
    resources["deployment.yaml"] = DEPLOYMENT
    return prr


def renders_counted(client: Client, outcome: str) -> float:
    text = client.get("/metrics").text
    m = re.search(rf'^porch_renders_total{{outcome="{outcome}"}} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_prr_update_renders_and_answers_render_status(client: Client) -> None:
    ok_before = renders_counted(client, "ok")
    prr = with_files(new_draft(client, "web"), PIPELINE)
    r = client.put(f"{PRR_PATH}/demo.web.v1", json=prr)
    assert r.status_code == 200, r.text
    body = r.json()
    assert rendered(body["spec"]["resources"])
    status = body["status"]["renderStatus"]
    assert status.get("error", "") == ""
    result = status["result"]
    assert result["kind"] == "FunctionResultList"
    assert [i["image"] for i in result["items"]] == [SET_NAMESPACE, SET_LABELS]
    assert any("staging" in res["message"] for res in result["items"][0]["results"])
    stored = client.get(f"{PRR_PATH}/demo.web.v1").json()["spec"]["resources"]
    assert stored == body["spec"]["resources"]
    kptfile = one(stored["Kptfile"])
    assert {"type": "Rendered", "status": "True", "reason": "RenderSuccess"} in [
        {k: c.get(k) for k in ("type", "status", "reason")} for c in kptfile["status"]["conditions"]
    ]
    assert renders_counted(client, "ok") > ok_before


def test_prr_render_failure_is_422_and_stores_nothing(client: Client) -> None:
    failed_before = renders_counted(client, "failed")
    prr = new_draft(client, "broken")
    before = dict(prr["spec"]["resources"])
    r = client.put(f"{PRR_PATH}/demo.broken.v1", json=with_files(prr, FAILING))
    assert r.status_code == 422, r.text
    status = r.json()
    assert status["kind"] == "Status"
    assert status["message"].startswith(
        "error rendering package in kpt function pipeline. Package NOT pushed to remote."
    )
    assert "no-such-function" in status["message"]
    assert client.get(f"{PRR_PATH}/demo.broken.v1").json()["spec"]["resources"] == before
    assert renders_counted(client, "failed") > failed_before


def test_push_on_render_failure_stores_and_still_answers_an_error(client: Client) -> None:
    new_draft(client, "pushy")
    pr = client.get(f"{PR_PATH}/demo.pushy.v1").json()
    pr["metadata"].setdefault("annotations", {})["porch.kpt.dev/push-on-render-failure"] = "true"
    assert client.put(f"{PR_PATH}/demo.pushy.v1", json=pr).status_code == 200
    prr = client.get(f"{PRR_PATH}/demo.pushy.v1").json()
    r = client.put(f"{PRR_PATH}/demo.pushy.v1", json=with_files(prr, FAILING))
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    assert message.startswith(
        "error rendering package in kpt function pipeline. Package pushed to remote despite"
        " render failure."
    )
    assert "no-such-function" in message
    stored = client.get(f"{PRR_PATH}/demo.pushy.v1").json()["spec"]["resources"]
    assert stored["deployment.yaml"] == DEPLOYMENT  # pushed as submitted, unrendered


def test_draft_update_renders_and_propose_renders(engine: Engine, client: Client) -> None:
    prr = with_files(new_draft(client, "later"), PIPELINE)
    counting = engine.renderer  # the metrics wrapper around the server's renderer
    engine.renderer = NoFunctionRuntime(lambda files: False)  # store it unrendered
    try:
        r = client.put(f"{PRR_PATH}/demo.later.v1", json=prr)
        assert r.status_code == 200, r.text
    finally:
        engine.renderer = counting
    assert not rendered(client.get(f"{PRR_PATH}/demo.later.v1").json()["spec"]["resources"])
    pr = client.get(f"{PR_PATH}/demo.later.v1").json()
    pr["spec"]["lifecycle"] = "Proposed"
    r = client.put(f"{PR_PATH}/demo.later.v1", json=pr)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["lifecycle"] == "Proposed"
    assert rendered(client.get(f"{PRR_PATH}/demo.later.v1").json()["spec"]["resources"])


def test_draft_update_render_failure_is_refused(engine: Engine, client: Client) -> None:
    prr = with_files(new_draft(client, "stuck"), FAILING)
    counting = engine.renderer
    engine.renderer = NoFunctionRuntime(lambda files: False)
    try:
        assert client.put(f"{PRR_PATH}/demo.stuck.v1", json=prr).status_code == 200
    finally:
        engine.renderer = counting
    pr = client.get(f"{PR_PATH}/demo.stuck.v1").json()
    pr["spec"]["lifecycle"] = "Proposed"
    r = client.put(f"{PR_PATH}/demo.stuck.v1", json=pr)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(
        "Error rendering package in kpt function pipeline. Package NOT pushed to remote."
    )
    assert client.get(f"{PR_PATH}/demo.stuck.v1").json()["spec"]["lifecycle"] == "Draft"
    assert engine.get(NS, "demo.stuck.v1").spec.lifecycle == "Draft"


def test_settings_build_the_runtime_chain(tmp_path: Any) -> None:
    from porch.engine.render import FunctionRenderer
    from porch.errors import Invalid
    from porch.server import Settings, build_engine

    with pytest.raises(Invalid, match="--function-runner must be HOST:PORT"):
        build_engine(Settings(data_dir=tmp_path / "a", function_runner="nohost"))
    with pytest.raises(Invalid, match="exec config"):
        build_engine(Settings(data_dir=tmp_path / "b", exec_config=tmp_path / "missing.yaml"))
    eng = build_engine(Settings(data_dir=tmp_path / "c", function_timeout=5))
    try:
        assert isinstance(eng.renderer, FunctionRenderer)
        assert eng.renderer.timeout == 5
    finally:
        eng.store.close()


def test_serve_refuses_a_bad_exec_config(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from porch.cli.serve import serve

    bad = tmp_path / "exec.yaml"
    bad.write_text("functions: 3\n")
    result = CliRunner().invoke(
        serve,
        ["--data-dir", str(tmp_path / "d"), "--exec-config", str(bad), "--listen", "127.0.0.1:0"],
    )
    assert result.exit_code == 1
    assert "functions must be a list" in result.output


@pytest.mark.slow
def test_serve_flags_reach_a_function_runner(tmp_path: Any) -> None:
    """`porch serve --function-runner` sends images no builtin knows to a `porch fn-runner`."""
    import httpx

    from tests.apiserver.served import start
    from tests.engine.test_render_pipeline import start_runner

    script = tmp_path / "more-replicas.sh"
    script.write_text("#!/bin/sh\nexec sed -e 's/replicas: 3/replicas: 5/'\n")
    script.chmod(0o755)
    config = tmp_path / "exec.yaml"
    config.write_text(
        "functions:\n- image: more-replicas\n  prefixes: [example.com/fns]\n"
        f"  tags: [v1]\n  path: {script}\n"
    )
    runner = start_runner("--exec-config", str(config))
    try:
        served = start(
            tmp_path / "data",
            "--insecure-http",
            "--allow-anonymous",
            "--function-runner",
            next(runner),
            "--function-timeout",
            "30",
        )
        try:
            with httpx.Client(base_url=served.url, timeout=60) as http:
                assert http.post(PR_PATH, json=draft("remote")).status_code == 201
                prr = http.get(f"{PRR_PATH}/demo.remote.v1").json()
                pipeline = (
                    f"pipeline:\n  mutators:\n    - image: {SET_NAMESPACE}\n      configMap:\n"
                    "        namespace: staging\n    - image: example.com/fns/more-replicas:v1\n"
                )
                r = http.put(f"{PRR_PATH}/demo.remote.v1", json=with_files(prr, pipeline))
                assert r.status_code == 200, r.text
                deployment = one(r.json()["spec"]["resources"]["deployment.yaml"])
                assert deployment["metadata"]["namespace"] == "staging"
                assert deployment["spec"]["replicas"] == 5
        finally:
            served.stop()
    finally:
        runner.close()
