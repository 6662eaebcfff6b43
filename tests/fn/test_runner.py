"""The function runner as a real process: gRPC FunctionEvaluator + health, called by
RemoteRuntime and by a Porch-like raw client; plus ``porch fn run`` under real kpt."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from porch.fn import resourcelist
from porch.fn.exec import dump_resource_list
from porch.fn.registry import builtins
from porch.fn.remote import RemoteRuntime
from porch.fn.runtime import BuiltinRuntime
from porch.fn.types import FunctionNotFound, FunctionSpec, ResourceList
from porch.krm import yaml as krm_yaml
from porch.runner.generated import function_pb2, function_pb2_grpc

SHARED = Path(__file__).resolve().parents[3] / "shared"
CATALOG = "ghcr.io/kptdev/krm-functions-catalog/"
PORCH = [sys.executable, "-c", "from porch.cli.admin import main; main()"]

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
  namespace: ns
data:
  key: value
"""


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class Runner:
    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self.proc = proc
        self.address = address

    def raw_call(self, image: str, data: bytes, timeout: float = 30) -> Any:
        with grpc.insecure_channel(self.address) as channel:
            stub = function_pb2_grpc.FunctionEvaluatorStub(channel)
            request = function_pb2.EvaluateFunctionRequest(resource_list=data, image=image)
            return stub.EvaluateFunction(request, timeout=timeout)


@contextmanager
def start_runner(tmp_path: Path, *args: str) -> Iterator[Runner]:
    proc = subprocess.Popen(
        [*PORCH, "fn-runner", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"runner did not start: {line!r} {err}")
        yield Runner(proc, line.split()[-1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fns")
    script(d, "ident.sh", 'cat\necho "ident ran" >&2\n')
    script(
        d,
        "fail.sh",
        """\
        cat > /dev/null
        cat <<'EOF'
        apiVersion: config.kubernetes.io/v1
        kind: ResourceList
        items: []
        results:
        - message: bad input
          severity: error
        EOF
        echo "it broke" >&2
        exit 3
        """,
    )
    script(d, "loop.sh", "while :; do :; done\n")
    script(d, "yes.sh", "cat >/dev/null; yes 'items: []'\n")
    script(d, "invalid.sh", "cat >/dev/null; echo 'items: [unclosed'\n")
    script(
        d,
        "gate.sh",
        f"""\
        cat
        touch {d}/gate.started
        while [ ! -e {d}/gate.open ]; do sleep 0.05; done
        """,
    )
    lines = ["functions:"]
    for name in ("ident", "fail", "loop", "yes", "invalid", "gate"):
        lines += [f"- image: {name}", "  prefixes: [example.com/fns]", "  tags: [v1]"]
        lines += [f"  path: {name}.sh"]
    (d / "exec.yaml").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def runner(fixtures_dir: Path) -> Iterator[Runner]:
    config = str(fixtures_dir / "exec.yaml")
    with start_runner(
        fixtures_dir, "--exec-config", config, "--max-request-bytes", str(256 * 1024)
    ) as started:
        yield started


def sample() -> ResourceList:
    return ResourceList(items=[krm_yaml.load_object(CONFIGMAP)])


def test_health_is_serving(runner: Runner) -> None:
    with grpc.insecure_channel(runner.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "evaluator.FunctionEvaluator"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_exec_function_through_remote_runtime(runner: Runner) -> None:
    with RemoteRuntime(runner.address) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/ident:v1"), sample(), timeout=30)
    assert out.exit_code == 0
    assert out.stderr == "ident ran\n"
    assert krm_yaml.dumps(out.resource_list.items[0]) == CONFIGMAP


def test_exec_bytes_pass_through_unchanged(runner: Runner) -> None:
    # Porch's executable evaluator hands the request bytes over and returns stdout as is.
    data = b"kind: ResourceList\nitems:   []   # odd spacing kept\n"
    reply = runner.raw_call("example.com/fns/ident:v1", data)
    assert reply.resource_list == data
    assert reply.log == b"ident ran\n"


def test_unknown_image_is_not_found(runner: Runner) -> None:
    with pytest.raises(grpc.RpcError) as info:
        runner.raw_call("example.com/fns/nope:v1", resourcelist.dumps(sample()).encode())
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with RemoteRuntime(runner.address) as remote, pytest.raises(FunctionNotFound):
        remote.run(FunctionSpec(image="example.com/fns/nope:v1"), sample(), timeout=30)
    # Registry prefixes are enforced: the same name elsewhere is not allowed.
    with pytest.raises(grpc.RpcError) as info:
        runner.raw_call("evil.example/fns/ident:v1", resourcelist.dumps(sample()).encode())
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_non_zero_exit_is_internal_for_porch_clients(runner: Runner) -> None:
    with pytest.raises(grpc.RpcError) as info:
        runner.raw_call("example.com/fns/fail:v1", resourcelist.dumps(sample()).encode())
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == (
        'Failed to execute function "example.com/fns/fail:v1": exit status 3 (it broke\n)'
    )
    # A client that does not ask for failures as responses still learns the exit code.
    with RemoteRuntime(runner.address, return_failures=False) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/fail:v1"), sample(), timeout=30)
    assert out.exit_code == 3
    assert "Failed to execute function" in out.stderr and "it broke" in out.stderr


def test_non_zero_exit_keeps_results_for_our_client(runner: Runner) -> None:
    with RemoteRuntime(runner.address) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/fail:v1"), sample(), timeout=30)
    assert out.exit_code == 3
    assert out.stderr == "it broke\n"
    assert out.resource_list.results == [{"message": "bad input", "severity": "error"}]


def test_endless_function_is_stopped_by_the_deadline(runner: Runner) -> None:
    with RemoteRuntime(runner.address) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/loop:v1"), sample(), timeout=1.5)
    assert out.exit_code != 0
    assert "timed out after" in out.stderr


def test_huge_output_is_refused(runner: Runner) -> None:
    with RemoteRuntime(runner.address) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/yes:v1"), sample(), timeout=60)
    assert out.exit_code != 0
    assert "output exceeds the limit of 262144 bytes" in out.stderr


def test_invalid_output_is_a_clear_error(runner: Runner) -> None:
    with RemoteRuntime(runner.address) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/invalid:v1"), sample(), timeout=30)
    assert out.exit_code != 0
    assert "function example.com/fns/invalid:v1 produced invalid output" in out.stderr


def test_request_over_the_limit_is_refused(runner: Runner) -> None:
    big = ResourceList(
        items=[
            krm_yaml.load_object(CONFIGMAP.replace("value", "x" * 20000 + str(i)))
            for i in range(15)
        ]
    )
    with pytest.raises(grpc.RpcError) as info:
        runner.raw_call("example.com/fns/ident:v1", resourcelist.dumps(big).encode())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with RemoteRuntime(runner.address) as remote:
        out = remote.run(FunctionSpec(image="example.com/fns/ident:v1"), big, timeout=30)
    assert out.exit_code != 0 and "ResourceExhausted" in out.stderr


def test_bad_request_is_invalid_argument(runner: Runner) -> None:
    names = sorted(builtins())
    if not names:
        pytest.skip("no builtin function is registered yet")
    with pytest.raises(grpc.RpcError) as info:
        runner.raw_call(CATALOG + names[0] + ":v1", b"kind: NotAResourceList\n")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        runner.raw_call("", b"kind: ResourceList\n")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrency_is_bounded(fixtures_dir: Path, tmp_path: Path) -> None:
    for marker in ("gate.started", "gate.open"):
        (fixtures_dir / marker).unlink(missing_ok=True)
    config = str(fixtures_dir / "exec.yaml")
    data = resourcelist.dumps(sample()).encode()
    results: list[Any] = []
    with start_runner(
        tmp_path, "--exec-config", config, "--max-concurrency", "1", "--max-queue", "0"
    ) as srv:

        def call_gate() -> None:
            results.append(srv.raw_call("example.com/fns/gate:v1", data, 60))

        first = threading.Thread(target=call_gate)
        first.start()
        try:
            for _ in range(600):
                if (fixtures_dir / "gate.started").exists():
                    break
                time.sleep(0.05)
            assert (fixtures_dir / "gate.started").exists(), "the first call never started"
            with pytest.raises(grpc.RpcError) as info:
                srv.raw_call("example.com/fns/ident:v1", data)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Health probes are still answered while the slot is taken.
            with grpc.insecure_channel(srv.address) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            (fixtures_dir / "gate.open").touch()
            first.join(60)
        assert results and results[0].resource_list == data


# ----------------------------------------------------------------------------- builtins


def _example_input(name: str) -> ResourceList:
    """Resources and functionConfig from the catalog's example package for ``name``, if the
    shared conformance data has one; else a small ConfigMap with no functionConfig."""
    examples = SHARED / "conformance" / "krm-functions-catalog" / "examples"
    for pkg in sorted(examples.glob(f"{name}-*")) if examples.is_dir() else []:
        kptfile = pkg / "Kptfile"
        if not kptfile.is_file():
            continue
        fn_config = None
        pipeline = krm_yaml.load_object(kptfile.read_text()).get("pipeline") or {}
        for step in (pipeline.get("mutators") or []) + (pipeline.get("validators") or []):
            if str(step.get("image", "")).rsplit("/", 1)[-1].split(":")[0] != name:
                continue
            if step.get("configPath"):
                fn_config = krm_yaml.load_object((pkg / step["configPath"]).read_text())
            elif step.get("configMap"):
                fn_config = krm_yaml.from_plain(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "function-input"},
                        "data": krm_yaml.to_plain(step["configMap"]),
                    }
                )
        items = []
        for path in sorted(pkg.glob("*.y*ml")):
            items += krm_yaml.parse_documents(path.read_text(), filename=path.name).objects()
        return ResourceList(items=items, function_config=fn_config)
    return ResourceList(items=[krm_yaml.load_object(CONFIGMAP)])


def image_of(name: str) -> str:
    return f"{name}:v0.1" if "/" in name else f"{CATALOG}{name}:v0.1"


def test_builtins_through_the_runner_match_in_process(runner: Runner) -> None:
    names = sorted(builtins())
    if not names:
        pytest.skip("no builtin function is registered yet (porch.fn.registry.builtins())")
    local = BuiltinRuntime()
    with RemoteRuntime(runner.address) as remote:
        for name in names:
            spec = FunctionSpec(image=image_of(name))
            here = local.run(spec, _example_input(name), timeout=30)
            there = remote.run(spec, _example_input(name), timeout=30)
            assert (there.exit_code, there.stderr) == (here.exit_code, here.stderr), name
            assert there.resource_list.results == here.resource_list.results, name
            assert resourcelist.dumps(there.resource_list) == resourcelist.dumps(
                here.resource_list
            ), name
            # Item by item, as a render writes them back to files.
            assert [krm_yaml.dumps(i) for i in there.resource_list.items] == [
                krm_yaml.dumps(i) for i in here.resource_list.items
            ], name


def test_fn_list_and_run(tmp_path: Path) -> None:
    listed = subprocess.run([*PORCH, "fn", "list"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == sorted(builtins())
    missing = subprocess.run(
        [*PORCH, "fn", "run", "no-such-function"], input="", capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no builtin function 'no-such-function'" in missing.stderr
    names = sorted(builtins())
    if not names:
        pytest.skip("no builtin function is registered yet")
    rl = _example_input(names[0])
    here = BuiltinRuntime().run(FunctionSpec(image=image_of(names[0])), rl, timeout=30)
    ran = subprocess.run(
        [*PORCH, "fn", "run", names[0]],
        input=resourcelist.dumps(_example_input(names[0])),
        capture_output=True,
        text=True,
    )
    assert ran.returncode == here.exit_code
    assert ran.stdout == dump_resource_list(here.resource_list).decode()
    bad = subprocess.run(
        [*PORCH, "fn", "run", names[0]], input="kind: Nope\n", capture_output=True, text=True
    )
    assert bad.returncode == 1 and "want 'ResourceList'" in bad.stderr


def test_kpt_fn_eval_exec_runs_a_builtin(tmp_path: Path) -> None:
    if shutil.which("kpt") is None:
        pytest.skip("kpt is not on PATH")
    names = sorted(builtins())
    if not names:
        pytest.skip("no builtin function is registered yet")
    name = names[0]
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "cm.yaml").write_text(CONFIGMAP)
    wrapper = script(
        tmp_path,
        "porch-fn.sh",
        f"PYTHONPATH={os.pathsep.join(sys.path)} exec {sys.executable} -c "
        f'"from porch.cli.admin import main; main()" fn run {name} "$@"\n',
    )
    # kpt turns the arguments after "--" into a ConfigMap functionConfig.
    fn_config = krm_yaml.from_plain(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "function-input"},
            "data": {"placeholder": "1"},
        }
    )
    expected = BuiltinRuntime().run(
        FunctionSpec(image=image_of(name)),
        ResourceList(items=[krm_yaml.load_object(CONFIGMAP)], function_config=fn_config),
        timeout=30,
    )
    done = subprocess.run(
        ["kpt", "fn", "eval", str(pkg), "--exec", str(wrapper), "--", "placeholder=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == expected.exit_code, done.stderr
    # kpt ran our builtin: its results appear in kpt's report.
    for result in expected.resource_list.results:
        assert str(result["message"]) in done.stderr + done.stdout
    assert f"Running {wrapper}" in done.stderr or "[RUNNING]" in done.stderr


NEPHIO_SAMPLES = ("nephio/optional/argo-cd-app", "nephio/core/configsync", "nephio/core/porch")


def _package_items(pkg: Path) -> list[Any]:
    items: list[Any] = []
    for path in sorted(pkg.glob("*.yaml")):
        items += krm_yaml.parse_documents(path.read_text(), filename=path.name).objects()
    return items


def test_real_packages_render_the_same_through_the_runner(runner: Runner) -> None:
    # Real packages with licence headers, comments after block scalars and flow maps:
    # a function that edits every resource gives the same files through the runner.
    catalog = SHARED / "conformance" / "nephio-catalog"
    if not catalog.is_dir():
        pytest.skip(f"shared conformance data not found at {catalog}")
    if "set-labels" not in builtins():
        pytest.skip("builtin set-labels is not registered yet")
    fn_config = krm_yaml.from_plain(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "labels"},
            "data": {"team": "blue"},
        }
    )
    spec = FunctionSpec(image=f"{CATALOG}set-labels:v0.2")
    with RemoteRuntime(runner.address) as remote:
        for sample_path in NEPHIO_SAMPLES:
            pkg = catalog / sample_path
            here = BuiltinRuntime().run(
                spec, ResourceList(_package_items(pkg), fn_config), timeout=60
            )
            there = remote.run(spec, ResourceList(_package_items(pkg), fn_config), timeout=60)
            assert there.exit_code == here.exit_code == 0, there.stderr
            mine = [krm_yaml.dumps(i) for i in there.resource_list.items]
            assert mine == [krm_yaml.dumps(i) for i in here.resource_list.items], sample_path
            assert any("team: blue" in text for text in mine)


def test_unreachable_runner_is_a_failed_output() -> None:
    with RemoteRuntime("127.0.0.1:1") as remote:
        out = remote.run(FunctionSpec(image=f"{CATALOG}set-labels:v0.2"), sample(), timeout=10)
    assert out.exit_code != 0
    assert "function runner at 127.0.0.1:1 is unavailable" in out.stderr


def test_bad_runner_options_are_refused(tmp_path: Path) -> None:
    bad = subprocess.run(
        [*PORCH, "fn-runner", "--listen", "127.0.0.1:0", "--disable-runtimes", "pod"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "unknown runtime(s) to disable: pod" in bad.stderr
    (tmp_path / "exec.yaml").write_text("functions:\n- image: a/b\n  tags: [v1]\n  path: x\n")
    bad = subprocess.run(
        [*PORCH, "fn-runner", "--listen", "127.0.0.1:0", "--exec-config", "exec.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert bad.returncode != 0 and "image must be a bare function name" in bad.stderr
