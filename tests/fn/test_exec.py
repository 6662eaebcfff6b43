"""The exec runtime: allow-listed binaries and exec paths, bounded in time and output."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from porch.fn import resourcelist
from porch.fn.exec import (
    ExecConfig,
    ExecConfigError,
    ExecRuntime,
    FunctionExecutionError,
    dump_resource_list,
    exit_status_text,
    load_resource_list,
    parse_exit_status,
)
from porch.fn.types import FunctionNotFound, FunctionSpec, ResourceList
from porch.krm import yaml as krm_yaml

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm # keep me
  namespace: ns
data:
  key: "true"
"""


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def sample() -> ResourceList:
    fc = krm_yaml.load_object("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fc\n")
    return ResourceList(items=[krm_yaml.load_object(CONFIGMAP)], function_config=fc)


def allow(path: Path, name: str = "fn", tags: tuple[str, ...] = ("v1",)) -> ExecConfig:
    return ExecConfig.from_documents(
        [{"functions": [{"image": name, "tags": list(tags), "path": str(path)}]}]
    )


# ----------------------------------------------------------------------------- allow-list


def test_config_maps_name_prefix_and_tag_to_binary(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(
        textwrap.dedent(
            """\
            functionsDir: bin
            functions:
            - image: set-namespace
              prefixes: [""]
              tags: [v0.4.1, v0.4]
              path: set-namespace
            - image: mine
              prefixes: [example.com/team]
              tags: ["*"]
              path: /opt/mine
              args: [--fast]
            """
        )
    )
    config = ExecConfig.from_file(tmp_path / "cfg.yaml")
    binary = str((tmp_path / "bin" / "set-namespace").absolute())
    ns = config.lookup("ghcr.io/kptdev/krm-functions-catalog/set-namespace:v0.4")
    assert ns == (binary, ())
    # A registry outside the prefixes, or an unlisted tag, is not allowed.
    assert config.lookup("docker.io/evil/set-namespace:v0.4") is None
    assert config.lookup("ghcr.io/kptdev/krm-functions-catalog/set-namespace:v9") is None
    assert config.lookup("example.com/team/mine:anything") == ("/opt/mine", ("--fast",))
    assert config.lookup("example.com/team/sub/mine:anything") == ("/opt/mine", ("--fast",))
    assert config.lookup("example.com/other/mine:v1") is None


def test_config_accepts_porch_function_configs(tmp_path: Path) -> None:
    (tmp_path / "fc.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: config.porch.kpt.dev/v1alpha1
            kind: FunctionConfig
            metadata:
              name: apply-setters
            spec:
              image: apply-setters
              binaryExecutor:
                tags: [v0.2.0]
                path: /usr/local/bin/apply-setters
            ---
            apiVersion: config.porch.kpt.dev/v1alpha1
            kind: FunctionConfig
            metadata:
              name: starlark
            spec:
              image: starlark
              goExecutor:
                tags: [v0.5]
            """
        )
    )
    config = ExecConfig.from_file(tmp_path / "fc.yaml")
    found = config.lookup("ghcr.io/kptdev/krm-functions-catalog/apply-setters:v0.2.0")
    assert found == ("/usr/local/bin/apply-setters", ())
    # Porch's default: the FunctionConfig's prefixes default to the default image prefix.
    assert config.lookup("example.com/apply-setters:v0.2.0") is None
    assert config.lookup("ghcr.io/kptdev/krm-functions-catalog/starlark:v0.5") is None


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"functions": [{"image": "x", "tags": ["v1"]}]}, "path"),
        ({"functions": [{"image": "a/x", "tags": ["v1"], "path": "p"}]}, "bare function name"),
        ({"functions": [{"image": "x", "tags": [], "path": "p"}]}, "tags"),
        ({"functions": [{"image": "x", "tags": ["v1"], "path": "p", "prefixes": "a"}]}, "prefix"),
        ({"functions": {"image": "x"}}, "functions must be a list"),
        ({"something": 1}, "functions"),
    ],
)
def test_bad_config_is_refused_clearly(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(ExecConfigError, match=needle):
        ExecConfig.from_documents([doc])


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExecConfigError, match="cannot read exec config"):
        ExecConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("functions: [\n")
    with pytest.raises(ExecConfigError, match="not valid YAML"):
        ExecConfig.from_file(tmp_path / "bad.yaml")


# ----------------------------------------------------------------------------- running


def test_unknown_image_and_disallowed_exec_are_not_found(tmp_path: Path) -> None:
    runtime = ExecRuntime(allow(script(tmp_path, "f.sh", "cat\n")))
    with pytest.raises(FunctionNotFound):
        runtime.run(FunctionSpec(image="example.com/other:v1"), sample(), timeout=10)
    with pytest.raises(FunctionNotFound):
        runtime.run(FunctionSpec(exec_path=str(tmp_path / "f.sh")), sample(), timeout=10)


def test_allow_listed_binary_round_trips_the_resource_list(tmp_path: Path) -> None:
    # The function sees kpt's wire format and its output is read back.
    binary = script(
        tmp_path,
        "f.sh",
        f"""\
        tee {tmp_path}/seen.yaml | sed 's/namespace: ns/namespace: changed/'
        echo "a note" >&2
        """,
    )
    out = ExecRuntime(allow(binary)).run(
        FunctionSpec(image="example.com/fns/fn:v1"), sample(), timeout=30
    )
    assert out.exit_code == 0
    assert out.stderr == "a note\n"
    seen = (tmp_path / "seen.yaml").read_text()
    assert seen == resourcelist.dumps(sample())
    assert out.resource_list.items[0]["metadata"]["namespace"] == "changed"
    assert out.resource_list.function_config is not None
    # Comments of the items survive the round trip.
    assert krm_yaml.dumps(out.resource_list.items[0]).startswith(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm # keep me\n  namespace: changed\n"
    )


def test_non_zero_exit_keeps_results_and_stderr(tmp_path: Path) -> None:
    binary = script(
        tmp_path,
        "fail.sh",
        """\
        cat > /dev/null
        cat <<'EOF'
        apiVersion: config.kubernetes.io/v1
        kind: ResourceList
        items: []
        results:
        - message: replicas must be positive
          severity: error
        EOF
        echo "validation failed" >&2
        exit 3
        """,
    )
    out = ExecRuntime(allow(binary)).run(
        FunctionSpec(image="example.com/fn:v1"), sample(), timeout=30
    )
    assert out.exit_code == 3
    assert out.stderr == "validation failed\n"
    assert out.resource_list.results == [
        {"message": "replicas must be positive", "severity": "error"}
    ]


def test_non_zero_exit_without_a_resource_list_is_a_plain_failure(tmp_path: Path) -> None:
    binary = script(tmp_path, "f.sh", "echo 'not: [yaml' ; echo boom >&2; exit 2\n")
    out = ExecRuntime(allow(binary)).run(
        FunctionSpec(image="example.com/fn:v1"), sample(), timeout=30
    )
    assert (out.exit_code, out.stderr, out.resource_list.results) == (2, "boom\n", [])


def test_invalid_output_is_a_clear_error_naming_the_function(tmp_path: Path) -> None:
    binary = script(tmp_path, "f.sh", "cat >/dev/null; echo 'items: [unclosed'\n")
    with pytest.raises(FunctionExecutionError) as info:
        ExecRuntime(allow(binary)).run(
            FunctionSpec(image="example.com/fn:v1"), sample(), timeout=30
        )
    assert "function example.com/fn:v1 produced invalid output" in info.value.message
    assert info.value.exit_code != 0


def test_output_that_is_not_a_resource_list_is_refused(tmp_path: Path) -> None:
    binary = script(tmp_path, "f.sh", f"cat >/dev/null; cat <<'EOF'\n{CONFIGMAP}EOF\n")
    with pytest.raises(FunctionExecutionError, match="kind 'ConfigMap', want 'ResourceList'"):
        ExecRuntime(allow(binary)).run(
            FunctionSpec(image="example.com/fn:v1"), sample(), timeout=30
        )


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    binary = script(
        tmp_path,
        "loop.sh",
        f"""\
        sleep 1000 &
        echo $! > {pidfile}
        echo "started" >&2
        while :; do :; done
        """,
    )
    with pytest.raises(FunctionExecutionError) as info:
        ExecRuntime(allow(binary)).run(FunctionSpec(image="example.com/fn:v1"), sample(), timeout=5)
    assert info.value.message.startswith("function example.com/fn:v1 timed out after 5s")
    assert "started" in info.value.message
    child = int(pidfile.read_text())
    # The background child was in the killed group: it is gone (or a zombie of init).
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_output_over_the_limit_is_refused(tmp_path: Path) -> None:
    # An endless stream: refused as soon as it passes the limit, never buffered whole.
    binary = script(tmp_path, "yes.sh", "cat >/dev/null; yes 'items: []'\n")
    runtime = ExecRuntime(allow(binary), max_output_bytes=256 * 1024)
    with pytest.raises(FunctionExecutionError) as info:
        runtime.run(FunctionSpec(image="example.com/fn:v1"), sample(), timeout=60)
    assert "output exceeds the limit of 262144 bytes" in info.value.message


def test_default_output_limit_is_six_mebibytes(tmp_path: Path) -> None:
    binary = script(tmp_path, "big.sh", "cat >/dev/null; head -c 7000000 /dev/zero\n")
    with pytest.raises(FunctionExecutionError, match="limit of 6291456 bytes"):
        ExecRuntime(allow(binary)).run(
            FunctionSpec(image="example.com/fn:v1"), sample(), timeout=60
        )


def test_large_input_does_not_deadlock(tmp_path: Path) -> None:
    # Input several pipe buffers large, echoed back while it is still being written.
    items = [
        krm_yaml.load_object(
            CONFIGMAP.replace("name: cm", f"name: cm{i}").replace("true", "x" * 2000)
        )
        for i in range(200)
    ]
    binary = script(tmp_path, "cat.sh", "cat\n")
    out = ExecRuntime(allow(binary)).run(
        FunctionSpec(image="example.com/fn:v1"), ResourceList(items=items), timeout=60
    )
    assert [i["metadata"]["name"] for i in out.resource_list.items] == [
        f"cm{i}" for i in range(200)
    ]
    assert out.resource_list.items[-1]["data"]["key"] == "x" * 2000


def test_exec_path_with_arguments_when_allowed(tmp_path: Path) -> None:
    binary = script(
        tmp_path, "args.sh", 'cat >/dev/null; echo "args: $*" >&2; echo "kind: ResourceList"\n'
    )
    runtime = ExecRuntime(allow_exec=True, exec_dir=tmp_path)
    out = runtime.run(FunctionSpec(exec_path="./args.sh --one 'two words'"), sample(), timeout=30)
    assert out.stderr == "args: --one two words\n"
    assert out.resource_list.items == []
    out = runtime.run(FunctionSpec(exec_path=str(binary), args=("x",)), sample(), timeout=30)
    assert out.stderr == "args: x\n"
    with pytest.raises(FunctionExecutionError, match="must be valid"):
        runtime.run(FunctionSpec(exec_path="./args.sh 'unclosed"), sample(), timeout=30)


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    runtime = ExecRuntime(allow(tmp_path / "missing"))
    with pytest.raises(FunctionExecutionError) as info:
        runtime.run(FunctionSpec(image="example.com/fn:v1"), sample(), timeout=30)
    assert "could not be started" in info.value.message
    assert info.value.exit_code == 127


def test_signal_death_reads_like_go() -> None:
    assert exit_status_text(3) == "exit status 3"
    assert exit_status_text(128 + 9) == "signal: killed"
    assert parse_exit_status('Failed to execute function "x": exit status 4 (oops)') == 4
    assert parse_exit_status("signal: killed") is None


def test_env_is_passed(tmp_path: Path) -> None:
    binary = script(tmp_path, "env.sh", 'cat; echo "$PORCH_TEST_VALUE" >&2\n')
    runtime = ExecRuntime(allow(binary), env={**os.environ, "PORCH_TEST_VALUE": "xyz"})
    out = runtime.run(FunctionSpec(image="example.com/fn:v1"), sample(), timeout=30)
    assert out.stderr == "xyz\n"


FILES = [
    "# head one\napiVersion: v1\nkind: A\nmetadata:\n  name: a # eol\n  l:\n  - x\n  - y    # yy\n",
    "# head two\n\n# second para\napiVersion: v1\nkind: B\nmetadata:\n  name: b\n"
    "  labels:\n    a: b          # far\n",
    "apiVersion: v1\nkind: C\nmetadata:\n  name: c\n  # trailing inside\n",
    "# licence\n# more\napiVersion: v1\nkind: D\nmetadata:\n  name: d\n",
]


def test_wire_round_trip_keeps_each_items_comments_in_place() -> None:
    # Header comments stay with their own resource (not glued to the previous one) and
    # end-of-line comments keep their columns, however often the list crosses the wire.
    items = [krm_yaml.parse_documents(text).objects()[0] for text in FILES]
    rl = ResourceList(items=items)
    for _ in range(2):
        rl = load_resource_list(dump_resource_list(rl), source="test")
        assert [krm_yaml.dumps(item) for item in rl.items] == FILES
    # Dumping does not disturb the caller's trees.
    assert [krm_yaml.dumps(item) for item in items] == FILES


def test_wire_round_trip_of_real_packages() -> None:
    catalog = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "nephio-catalog"
    if not catalog.is_dir():
        pytest.skip(f"shared conformance data not found at {catalog}")
    for sample_path in ("nephio/optional/argo-cd-app", "nephio/core/configsync"):
        items = []
        for path in sorted((catalog / sample_path).glob("*.yaml")):
            items += krm_yaml.parse_documents(path.read_text(), filename=path.name).objects()
        before = [krm_yaml.dumps(item) for item in items]
        back = load_resource_list(dump_resource_list(ResourceList(items=items)), source="t")
        assert [krm_yaml.dumps(item) for item in back.items] == before, sample_path
