"""Kptfile pipelines rendered by the engine with the real function runtime (spec §3.1m, §3.2d,
§3.3, §7.4): on create (init, clone, edit), on Draft updates and on resources updates; failures
block the write unless ``porch.kpt.dev/push-on-render-failure`` says otherwise; Proposed and
Published content is never rendered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from porch.api.types import (
    PUSH_ON_RENDER_FAILURE,
    PackageCloneTaskSpec,
    PackageEditTaskSpec,
    PackageMetadata,
    PackageRevisionRef,
    Task,
    UpstreamPackage,
)
from porch.engine.render import (
    FunctionRenderer,
    NoFunctionRuntime,
    RenderOutcome,
    RuntimeOptions,
    build_runtime,
    declares_pipeline,
)
from porch.errors import RenderError
from porch.krm import yaml as krm_yaml
from tests.engine.conftest import NS, Harness

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

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the web tier
spec:
  replicas: 3
"""


def need_builtins(*names: str) -> None:
    from porch.fn.registry import builtins

    missing = sorted(set(names) - set(builtins()))
    if missing:
        pytest.skip(f"builtin function(s) not in this build yet: {', '.join(missing)}")
    try:
        import porch.fn.render  # noqa: F401
    except ImportError:
        pytest.skip("the render core porch.fn.render is not in this build yet")


@pytest.fixture
def rendering(harness: Harness) -> Harness:
    need_builtins("set-namespace", "set-labels")
    harness.engine.renderer = FunctionRenderer.from_options(RuntimeOptions())
    harness.register()
    return harness


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def render(self, files: Mapping[str, str]) -> RenderOutcome:
        self.calls += 1
        outcome: RenderOutcome = self.inner.render(files)
        return outcome


NO_RENDER = NoFunctionRuntime(lambda files: False)  # stores files as given


def objects(text: str) -> list[dict[str, Any]]:
    return [krm_yaml.to_plain(o) for o in krm_yaml.parse_documents(text).objects()]


def one(text: str) -> dict[str, Any]:
    (obj,) = objects(text)
    return obj


def is_rendered(files: Mapping[str, str]) -> bool:
    deployment = one(files["deployment.yaml"])
    meta = deployment["metadata"]
    return bool(meta.get("namespace") == "staging" and meta.get("labels") == {"tier": "backend"})


def rendered_condition(files: Mapping[str, str]) -> dict[str, Any]:
    kptfile = one(files["Kptfile"])
    conditions = kptfile.get("status", {}).get("conditions", [])
    found = [c for c in conditions if c.get("type") == "Rendered"]
    assert found, f"no Rendered condition in {kptfile.get('status')}"
    cond: dict[str, Any] = found[0]
    return cond


def with_pipeline(kptfile: str, pipeline: str = PIPELINE) -> str:
    return kptfile.rstrip("\n") + "\n" + pipeline


def files_of(h: Harness, name: str) -> dict[str, str]:
    return dict(h.engine.get_resources(NS, name).spec.resources)


def put_files(h: Harness, name: str, files: Mapping[str, str]) -> Any:
    prr = h.engine.get_resources(NS, name)
    prr.spec.resources = dict(files)
    return h.engine.update_resources(prr)


def store_unrendered(h: Harness, name: str, pipeline: str = PIPELINE) -> dict[str, str]:
    """Write a pipeline package into a Draft without rendering it (a server without runtime)."""
    real = h.engine.renderer
    h.engine.renderer = NO_RENDER
    try:
        files = files_of(h, name)
        files = {**files, "Kptfile": with_pipeline(files["Kptfile"], pipeline)}
        files["deployment.yaml"] = DEPLOYMENT
        put_files(h, name, files)
    finally:
        h.engine.renderer = real
    stored = files_of(h, name)
    assert not is_rendered(stored)
    return stored


# --------------------------------------------------------------------------- resources update


def test_resources_update_renders_and_reports_render_status(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    files = files_of(h, pr.metadata.name)
    files["Kptfile"] = with_pipeline(files["Kptfile"])
    files["deployment.yaml"] = DEPLOYMENT
    out = put_files(h, pr.metadata.name, files)
    assert is_rendered(out.spec.resources)
    assert rendered_condition(out.spec.resources)["status"] == "True"
    # the comment of the submitted resource survives the pipeline
    assert "# the web tier" in out.spec.resources["deployment.yaml"]
    status = out.status.render_status
    assert status is not None and status.error == ""
    assert status.result is not None
    assert [item.image for item in status.result.items] == [SET_NAMESPACE, SET_LABELS]
    assert all(item.exit_code == 0 for item in status.result.items)
    assert any("staging" in r.message for r in status.result.items[0].results)
    # what was stored is what was returned
    assert files_of(h, pr.metadata.name) == out.spec.resources


def test_rendering_twice_changes_nothing(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    files = files_of(h, pr.metadata.name)
    files["Kptfile"] = with_pipeline(files["Kptfile"])
    files["deployment.yaml"] = DEPLOYMENT
    first = put_files(h, pr.metadata.name, files).spec.resources
    second = put_files(h, pr.metadata.name, first).spec.resources
    # the resources stay put; only the results recorded in the Kptfile may change wording
    assert {p for p in first if first[p] != second[p]} <= {"Kptfile"}
    third = put_files(h, pr.metadata.name, second).spec.resources
    assert third == second  # a fixed point
    # a Draft update re-renders too: still the fixed point
    current = h.engine.get(NS, pr.metadata.name)
    current.spec.lifecycle = "Proposed"
    h.engine.update(current)
    assert files_of(h, pr.metadata.name) == third


def test_render_failure_stores_nothing(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    before = files_of(h, pr.metadata.name)
    rv = h.engine.get(NS, pr.metadata.name).metadata.resource_version
    files = dict(before)
    files["Kptfile"] = with_pipeline(
        files["Kptfile"], f"pipeline:\n  mutators:\n    - image: {MISSING}\n"
    )
    files["deployment.yaml"] = DEPLOYMENT
    with pytest.raises(RenderError) as err:
        put_files(h, pr.metadata.name, files)
    assert not err.value.pushed
    assert str(err.value).startswith(
        "error rendering package in kpt function pipeline. Package NOT pushed to remote."
    )
    assert "no-such-function" in str(err.value)
    assert files_of(h, pr.metadata.name) == before
    assert h.engine.get(NS, pr.metadata.name).metadata.resource_version == rv


def test_push_on_render_failure_stores_the_unrendered_files(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    current = h.engine.get(NS, pr.metadata.name)
    current.metadata.annotations[PUSH_ON_RENDER_FAILURE] = "true"
    h.engine.update(current)
    files = files_of(h, pr.metadata.name)
    files["Kptfile"] = with_pipeline(
        files["Kptfile"],
        f"pipeline:\n  mutators:\n    - image: {SET_NAMESPACE}\n      configMap:\n"
        f"        namespace: staging\n    - image: {MISSING}\n",
    )
    files["deployment.yaml"] = DEPLOYMENT
    with pytest.raises(RenderError) as err:
        put_files(h, pr.metadata.name, files)
    assert err.value.pushed
    assert "Package pushed to remote despite render failure" in str(err.value)
    assert "no-such-function" in str(err.value)
    stored = files_of(h, pr.metadata.name)
    # no save-on-render-failure in the Kptfile: the files are stored as submitted
    assert stored["deployment.yaml"] == DEPLOYMENT
    assert one(stored["deployment.yaml"])["metadata"].get("namespace") is None


# --------------------------------------------------------------------------- create


def test_edit_renders_the_copied_package(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    store_unrendered(h, pr.metadata.name)
    h.engine.renderer = NO_RENDER
    h.set_lifecycle(pr, "Proposed")
    h.set_lifecycle(pr, "Published", approval=True)
    assert not is_rendered(files_of(h, pr.metadata.name))
    h.engine.renderer = FunctionRenderer.from_options(RuntimeOptions())
    copy = h.create(
        "app",
        "ws2",
        tasks=[
            Task(
                type="edit",
                edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(pr.metadata.name)),
            )
        ],
    )
    assert is_rendered(files_of(h, copy.metadata.name))


def test_clone_renders_the_new_package(rendering: Harness) -> None:
    h = rendering
    h.register("red")
    pr = h.create("base", "v1")
    store_unrendered(h, pr.metadata.name)
    h.engine.renderer = NO_RENDER
    h.set_lifecycle(pr, "Proposed")
    h.set_lifecycle(pr, "Published", approval=True)
    h.engine.renderer = FunctionRenderer.from_options(RuntimeOptions())
    clone = h.create(
        "site",
        "v1",
        repo="red",
        tasks=[
            Task(
                type="clone",
                clone=PackageCloneTaskSpec(
                    upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(pr.metadata.name))
                ),
            )
        ],
    )
    files = files_of(h, clone.metadata.name)
    assert is_rendered(files)
    assert one(files["Kptfile"])["upstream"]["type"] == "git"


def test_init_with_metadata_renders_nothing_without_pipeline(rendering: Harness) -> None:
    h = rendering
    counting = Counting(h.engine.renderer)
    h.engine.renderer = counting
    pr = h.create(package_metadata=PackageMetadata(labels={"a": "b"}))
    assert counting.calls == 1
    kptfile = one(files_of(h, pr.metadata.name)["Kptfile"])
    assert "status" not in kptfile  # nothing ran: no Rendered condition either


def test_create_with_failing_pipeline_creates_nothing(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    store_unrendered(h, pr.metadata.name, f"pipeline:\n  mutators:\n    - image: {MISSING}\n")
    h.engine.renderer = NO_RENDER
    h.set_lifecycle(pr, "Proposed")
    h.set_lifecycle(pr, "Published", approval=True)
    h.engine.renderer = FunctionRenderer.from_options(RuntimeOptions())
    before = sorted(p.metadata.name for p in h.engine.list(NS)[0])
    with pytest.raises(RenderError, match="Package NOT pushed to remote"):
        h.create(
            "app",
            "ws2",
            tasks=[
                Task(
                    type="edit",
                    edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(pr.metadata.name)),
                )
            ],
        )
    assert sorted(p.metadata.name for p in h.engine.list(NS)[0]) == before


# --------------------------------------------------------------------------- Draft update


def test_draft_update_renders(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    store_unrendered(h, pr.metadata.name)
    current = h.engine.get(NS, pr.metadata.name)
    current.spec.package_metadata = PackageMetadata(labels={"team": "web"})
    h.engine.update(current)
    files = files_of(h, pr.metadata.name)
    assert is_rendered(files)
    # set-labels sees the Kptfile too (kpt passes it to functions)
    assert one(files["Kptfile"])["metadata"]["labels"] == {"team": "web", "tier": "backend"}


def test_propose_renders_the_draft_and_published_is_never_rendered(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    store_unrendered(h, pr.metadata.name)
    counting = Counting(h.engine.renderer)
    h.engine.renderer = counting
    h.set_lifecycle(pr, "Proposed")  # Draft → Proposed is a Draft update: rendered
    assert counting.calls == 1
    proposed = files_of(h, pr.metadata.name)
    assert is_rendered(proposed)

    # a second package proposed unrendered: its Proposed content stays as it is
    other = h.create("other", "ws1")
    store_unrendered(h, other.metadata.name)
    h.engine.renderer = NO_RENDER
    h.set_lifecycle(other, "Proposed")
    unrendered = files_of(h, other.metadata.name)
    h.engine.renderer = counting
    calls = counting.calls
    current = h.engine.get(NS, other.metadata.name)
    current.metadata.labels["x"] = "y"
    h.engine.update(current)  # metadata change of a Proposed revision
    h.set_lifecycle(other, "Published", approval=True)
    current = h.engine.get(NS, other.metadata.name)
    current.metadata.labels["x"] = "z"
    h.engine.update(current)  # metadata change of a Published revision
    assert counting.calls == calls
    assert files_of(h, other.metadata.name) == unrendered


def test_draft_update_render_failure_stores_nothing(rendering: Harness) -> None:
    h = rendering
    pr = h.create()
    stored = store_unrendered(
        h, pr.metadata.name, f"pipeline:\n  mutators:\n    - image: {MISSING}\n"
    )
    current = h.engine.get(NS, pr.metadata.name)
    current.metadata.annotations[PUSH_ON_RENDER_FAILURE] = "true"  # not for Draft updates
    current.spec.lifecycle = "Proposed"
    with pytest.raises(RenderError, match="^Error rendering package in kpt function pipeline"):
        h.engine.update(current)
    after = h.engine.get(NS, pr.metadata.name)
    assert after.spec.lifecycle == "Draft"
    assert files_of(h, pr.metadata.name) == stored


# --------------------------------------------------------------------------- units


def test_declares_pipeline_looks_at_every_kptfile() -> None:
    kptfile = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: a\n"
    assert not declares_pipeline({"Kptfile": kptfile})
    assert not declares_pipeline({"Kptfile": kptfile, "sub/Kptfile": kptfile})
    assert declares_pipeline({"Kptfile": kptfile, "sub/Kptfile": with_pipeline(kptfile)})
    assert declares_pipeline({"Kptfile": with_pipeline(kptfile)})
    # "pipeline" mentioned, but an empty one
    assert not declares_pipeline({"Kptfile": kptfile + "pipeline: {}\n"})


def test_runtime_options_are_checked() -> None:
    from porch.errors import Invalid

    with pytest.raises(Invalid, match="--function-runner must be HOST:PORT"):
        build_runtime(RuntimeOptions(function_runner="localhost"))
    with pytest.raises(Invalid, match="--function-timeout must be positive"):
        build_runtime(RuntimeOptions(function_timeout=0))
    with pytest.raises(Invalid, match="exec config"):
        build_runtime(RuntimeOptions(exec_config=Path("/nonexistent/exec.yaml")))


def test_default_image_prefix_resolves_bare_names(tmp_path: Path) -> None:
    need_builtins("set-namespace")
    kptfile = (
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: a\n"
        "pipeline:\n  mutators:\n    - image: set-namespace:v0.4.1\n"
        "      configMap:\n        namespace: staging\n"
    )
    files = {"Kptfile": kptfile, "deployment.yaml": DEPLOYMENT}
    default = FunctionRenderer.from_options(RuntimeOptions()).render(files)
    assert not default.failed, default.error
    assert one(default.files["deployment.yaml"])["metadata"]["namespace"] == "staging"
    # another prefix: the builtin is still found under that registry
    other = FunctionRenderer.from_options(
        RuntimeOptions(default_image_prefix="registry.example.com/fns/")
    ).render(files)
    assert not other.failed, other.error
    assert other.result is not None
    assert other.result["items"][0]["image"] == "registry.example.com/fns/set-namespace:v0.4.1"
    assert other.files["deployment.yaml"] == default.files["deployment.yaml"]


# --------------------------------------------------------------------------- remote runner


SED_IMAGE = "example.com/fns/more-replicas:v1"


@pytest.fixture
def exec_config(tmp_path: Path) -> Path:
    """An allow-list with one non-builtin image: a shell script editing the ResourceList."""
    script = tmp_path / "more-replicas.sh"
    script.write_text("#!/bin/sh\nexec sed -e 's/replicas: 3/replicas: 5/'\n")
    script.chmod(0o755)
    config = tmp_path / "exec.yaml"
    config.write_text(
        "functions:\n- image: more-replicas\n  prefixes: [example.com/fns]\n"
        f"  tags: [v1]\n  path: {script}\n"
    )
    return config


def start_runner(*args: str) -> Generator[str, None, None]:
    porch = shutil.which("porch", path=str(Path(sys.executable).parent)) or shutil.which("porch")
    if porch is None:
        pytest.skip("the porch command is not installed in this environment")
    proc = subprocess.Popen(
        [porch, "fn-runner", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read()
            proc.wait(10)
            if "not built yet" in err:
                pytest.skip("`porch fn-runner` is still a stub in this build")
            pytest.fail(f"porch fn-runner did not start: {err}")
        yield _address(line)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def fn_runner() -> Iterator[str]:
    yield from start_runner()


@pytest.fixture
def exec_runner(exec_config: Path) -> Iterator[str]:
    yield from start_runner("--exec-config", str(exec_config))


MIXED_PIPELINE = f"""pipeline:
  mutators:
    - image: {SET_NAMESPACE}
      configMap:
        namespace: staging
    - image: {SED_IMAGE}
"""


def test_chain_falls_through_to_the_function_runner(exec_runner: str) -> None:
    need_builtins("set-namespace")
    kptfile = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
    files = {"Kptfile": with_pipeline(kptfile, MIXED_PIPELINE), "deployment.yaml": DEPLOYMENT}
    # without the runner the image is unknown
    alone = FunctionRenderer.from_options(RuntimeOptions()).render(files)
    assert alone.failed and "more-replicas" in alone.error
    renderer = FunctionRenderer.from_options(RuntimeOptions(function_runner=exec_runner))
    out = renderer.render(files)
    assert not out.failed, out.error
    deployment = one(out.files["deployment.yaml"])
    assert deployment["metadata"]["namespace"] == "staging"  # builtin, in-process
    assert deployment["spec"]["replicas"] == 5  # the runner's exec evaluator
    assert out.result is not None
    assert [i["image"] for i in out.result["items"]] == [SET_NAMESPACE, SED_IMAGE]


def test_exec_allow_list_in_the_server(exec_config: Path) -> None:
    need_builtins("set-namespace")
    kptfile = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
    files = {"Kptfile": with_pipeline(kptfile, MIXED_PIPELINE), "deployment.yaml": DEPLOYMENT}
    renderer = FunctionRenderer.from_options(RuntimeOptions(exec_config=exec_config))
    out = renderer.render(files)
    assert not out.failed, out.error
    assert one(out.files["deployment.yaml"])["spec"]["replicas"] == 5
    # a Kptfile exec: function is never run by the server, allow-list or not
    direct = f"pipeline:\n  mutators:\n    - exec: {exec_config.parent / 'more-replicas.sh'}\n"
    refused = renderer.render({"Kptfile": with_pipeline(kptfile, direct), "d.yaml": DEPLOYMENT})
    assert refused.failed
    assert one(refused.files["d.yaml"])["spec"]["replicas"] == 3


def _address(line: str) -> str:
    for word in line.split():
        word = word.strip().removeprefix("grpc://").removeprefix("http://")
        host, sep, port = word.rpartition(":")
        if sep and port.isdigit() and host:
            return word
    raise AssertionError(f"no HOST:PORT in the runner's first line: {line!r}")


def test_remote_runner_renders_byte_identically(fn_runner: str) -> None:
    need_builtins("set-namespace", "set-labels")
    from porch.fn.remote import RemoteRuntime

    kptfile = "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n"
    files = {
        "Kptfile": with_pipeline(kptfile),
        "deployment.yaml": DEPLOYMENT,
        "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: 'v' # q\n",
    }
    local = FunctionRenderer.from_options(RuntimeOptions()).render(files)
    assert not local.failed, local.error
    remote_runtime = RemoteRuntime(fn_runner)
    try:
        remote = FunctionRenderer(remote_runtime).render(files)
    finally:
        remote_runtime.close()
    assert not remote.failed, remote.error
    assert is_rendered(local.files)
    assert remote.files == local.files
    assert remote.result == local.result


def test_push_on_render_failure_reports_a_failed_persist(harness: Harness) -> None:
    from porch.errors import InternalError

    class BadOutput:
        def render(self, files: Mapping[str, str]) -> RenderOutcome:
            return RenderOutcome({**files, "../outside.yaml": DEPLOYMENT}, error="fn failed")

    harness.register()
    pr = harness.create()
    current = harness.engine.get(NS, pr.metadata.name)
    current.metadata.annotations[PUSH_ON_RENDER_FAILURE] = "true"
    harness.engine.update(current)
    before = files_of(harness, pr.metadata.name)
    harness.engine.renderer = BadOutput()
    with pytest.raises(InternalError, match="^failed to persist resources after render failure: "):
        put_files(harness, pr.metadata.name, {**before, "deployment.yaml": DEPLOYMENT})
    assert files_of(harness, pr.metadata.name) == before
