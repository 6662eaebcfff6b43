"""The conformance harness itself: case discovery, config parsing, temp git repositories, the
comparison rules of kpt's e2e runner, skip rules, reporting and the CLI's exit status."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from porch.cli.admin import main
from porch.fn import conformance as h
from porch.fn import kptcli

SHARED = Path(__file__).resolve().parents[3] / "shared"
KPT_CASES = SHARED / "conformance" / "kpt-fn-render"
CATALOG = SHARED / "conformance" / "krm-functions-catalog"

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


RESOURCES = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"


def _expected_diff(tmp: Path, before: str, after: str) -> str:
    """The git diff a real edit of resources.yaml produces (built with git itself)."""
    repo = tmp / "diff-source"
    repo.mkdir()
    _write(repo / "resources.yaml", before)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    _write(repo / "resources.yaml", after)
    out = subprocess.run(
        ["git", "diff"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    shutil.rmtree(repo)
    return out


def _fake_kpt(
    stderr: str = "", exit_code: int = 0, new_value: str = "c"
) -> tuple[h.KptRunner, list[list[str]]]:
    """A stand-in for the kpt emulation: edits resources.yaml of the package it is given."""
    calls: list[list[str]] = []

    def run(argv: Sequence[str], cwd: Path, flavor: str, exec_dir: Path) -> h.CommandResult:
        calls.append(list(argv))
        pkg = Path(argv[2])
        if exit_code == 0:
            _write(pkg / "resources.yaml", RESOURCES.replace("a: b", f"a: {new_value}"))
        results = argv[argv.index("--results-dir") + 1] if "--results-dir" in argv else None
        if results:
            Path(results).mkdir(parents=True, exist_ok=True)
            _write(Path(results) / "results.yaml", "kind: FunctionResultList\nexitCode: 0\n")
        return h.CommandResult(exit_code, "", stderr)

    return run, calls


def _make_case(tmp: Path, name: str = "case", config: str = "", with_results: bool = False) -> Path:
    case = tmp / "suite" / name
    _write(case / "resources.yaml", RESOURCES)
    _write(
        case / "Kptfile",
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\n",
    )
    _write(case / ".expected" / "config.yaml", config)
    _write(
        case / ".expected" / "diff.patch",
        _expected_diff(tmp, RESOURCES, RESOURCES.replace("a: b", "a: c")),
    )
    if with_results:
        _write(case / ".expected" / "results.yaml", "kind: FunctionResultList\nexitCode: 0\n")
    return case


# --------------------------------------------------------------------------- config parsing


def test_parse_config_reads_harness_fields() -> None:
    config = h.parse_config(
        "exitCode: 1\nstdErr: |\n  boom\nstdErrStripLines:\n  - x\ntestType: eval\n"
        "image: gcr.io/kpt-fn/set-labels:unstable\nargs:\n  color: orange\n  replicas: 3\n"
        "disableOutputTruncate: true\napiVersion: ignored/v1\n"
    )
    assert config.exit_code == 1
    assert config.std_err == "boom\n"
    assert config.std_err_strip_lines == ["x"]
    assert config.test_type == "eval"
    assert config.eval.image == "gcr.io/kpt-fn/set-labels:unstable"
    assert config.eval.args == {"color": "orange", "replicas": "3"}
    assert config.disable_output_truncate is True


def test_parse_config_defaults_to_render() -> None:
    assert h.parse_config("").test_type == "render"
    assert h.parse_config("exitCode: 0\n").exit_code == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("exitCode: one\n", "exitCode: want an integer"),
        ("testType: apply\n", "testType must be render or eval"),
        ("- a\n", "must be a mapping"),
        ("stdErrStripLines: {a: b}\n", "want a list of strings"),
        ("exitCode: [\n", "not valid YAML"),
    ],
)
def test_parse_config_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(h.ConformanceError, match=message):
        h.parse_config(text)


# --------------------------------------------------------------------------- discovery


def test_discover_finds_nested_cases_and_names_them(tmp_path: Path) -> None:
    _write(tmp_path / "a" / ".expected" / "config.yaml", "")
    _write(tmp_path / "group" / "b" / ".expected" / "config.yaml", "exitCode: 1\n")
    _write(tmp_path / "not-a-case" / "x.yaml", "")
    cases = h.discover([tmp_path])
    assert [c.name for c in cases] == ["a", "group/b"]
    assert cases[1].config.exit_code == 1
    single = h.discover([tmp_path / "group" / "b"])
    assert [c.name for c in single] == ["b"]


def test_discover_refuses_missing_or_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(h.ConformanceError, match="not a directory"):
        h.discover([tmp_path / "nope"])
    with pytest.raises(h.ConformanceError, match="no test cases"):
        h.discover([tmp_path])


# --------------------------------------------------------------------------- comparison rules


def test_sanitize_timestamps_only_touches_pass_fail_lines() -> None:
    text = '[PASS] "img" in 1.234s\n  [PASS] "x" in 2s\n[FAIL] "img" in 12ms\n'
    assert (
        h.sanitize_timestamps(text)
        == '[PASS] "img" in 0s\n  [PASS] "x" in 2s\n[FAIL] "img" in 0s\n'
    )


def test_condition_stderr_removes_temp_dir_prefix() -> None:
    assert h.condition_stderr("at /tmp/kpt-pipeline-e2e-123/pkg/x") == "at pkg/x"


def test_normalize_diff_strips_and_normalises_headers() -> None:
    diff = "index 1a2b..3c4d 100644\n@@ -1,2 +1,3 @@\n+stderr: boom\n keep"
    assert h.normalize_diff(diff, r"\+stderr:") == (
        "index NORMALIZED 100644\n@@ NORMALIZED @@\n keep"
    )


def test_strip_lines_removes_whole_lines_only() -> None:
    assert h.strip_lines("a\nb\nab\n", ["a"]) == "b\nab\n"


# --------------------------------------------------------------------------- running cases


@needs_git
def test_matching_case_passes_and_runs_twice(tmp_path: Path) -> None:
    case = _make_case(tmp_path, with_results=True)
    kpt, calls = _fake_kpt()
    [c] = h.discover([case])
    outcome = h.run_case(c, h.SUITE_KPT, kpt)
    assert outcome.status == "PASS", outcome.reason
    assert len(calls) == 2
    argv = calls[0]
    assert argv[:2] == ["fn", "render"] and "--results-dir" in argv
    assert Path(argv[2]).name == "case"


@needs_git
def test_tampered_diff_fails_with_the_difference(tmp_path: Path) -> None:
    case = _make_case(tmp_path)
    kpt, _ = _fake_kpt(new_value="zzz")
    [c] = h.discover([case])
    outcome = h.run_case(c, h.SUITE_KPT, kpt)
    assert outcome.status == "FAIL"
    assert "diff doesn't match expected" in outcome.reason
    assert "+  a: zzz" in outcome.reason


@needs_git
def test_wrong_exit_code_and_stderr_fail(tmp_path: Path) -> None:
    case = _make_case(tmp_path, config="exitCode: 1\n")
    kpt, calls = _fake_kpt()
    [c] = h.discover([case])
    outcome = h.run_case(c, h.SUITE_KPT, kpt)
    assert outcome.status == "FAIL"
    assert "actual exit code 0 doesn't match expected 1" in outcome.reason

    case2 = _make_case(tmp_path, name="case2", config="stdErr: wanted text\n")
    kpt2, _ = _fake_kpt(stderr="something else\n")
    [c2] = h.discover([case2])
    outcome2 = h.run_case(c2, h.SUITE_KPT, kpt2)
    assert outcome2.status == "FAIL"
    assert "stderr does not contain the expected text" in outcome2.reason
    assert "wanted text" in outcome2.reason


@needs_git
def test_expected_failure_stops_after_first_run(tmp_path: Path) -> None:
    case = _make_case(tmp_path, config="exitCode: 1\nstdErr: boom\n")
    (case / ".expected" / "diff.patch").unlink()
    kpt, calls = _fake_kpt(stderr="Error: boom \n", exit_code=1)
    [c] = h.discover([case])
    outcome = h.run_case(c, h.SUITE_KPT, kpt)
    assert outcome.status == "PASS", outcome.reason
    assert len(calls) == 1


@needs_git
def test_results_mismatch_fails(tmp_path: Path) -> None:
    case = _make_case(tmp_path, with_results=True)
    _write(case / ".expected" / "results.yaml", "kind: FunctionResultList\nexitCode: 1\n")
    kpt, _ = _fake_kpt()
    [c] = h.discover([case])
    outcome = h.run_case(c, h.SUITE_KPT, kpt)
    assert outcome.status == "FAIL"
    assert "results don't match expected" in outcome.reason


def test_skip_rules_name_the_feature(tmp_path: Path) -> None:
    case = tmp_path / "c"
    _write(
        case / "Kptfile",
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: c\npipeline:\n  mutators:\n"
        "    - image: ghcr.io/kptdev/krm-functions-catalog/surely-not-shipped:latest\n",
    )
    _write(case / ".expected" / "config.yaml", "")
    [c] = h.discover([case])
    assert h.skip_reason(c, h.SUITE_KPT) == (
        "function not shipped: ghcr.io/kptdev/krm-functions-catalog/surely-not-shipped:latest"
    )
    _write(case / ".expected" / "exec.sh", "docker run --rm x\n")
    assert "container runtime" in h.skip_reason(c, h.SUITE_KPT)
    _write(case / ".expected" / "config.yaml", "imagePullPolicy: Never\n")
    [c] = h.discover([case])
    assert "image pull policy" in h.skip_reason(c, h.SUITE_KPT)


@needs_git
def test_run_suite_reports_each_case_and_summary(tmp_path: Path) -> None:
    _make_case(tmp_path, name="good")
    bad = _make_case(tmp_path, name="bad")
    _write(bad / ".expected" / "diff.patch", "something else\n")
    skipped = _make_case(tmp_path, name="skipped", config="skip: true\n")
    assert skipped.exists()
    kpt, _ = _fake_kpt()
    lines: list[str] = []
    summary = h.run_suite(
        [tmp_path / "suite"], h.SUITE_KPT, report=lambda o: lines.append(o.line()), kpt=kpt
    )
    assert summary.line() == "1 passed, 1 failed, 1 skipped"
    assert lines[0].startswith("FAIL bad: diff doesn't match expected")
    assert lines[1] == "PASS good"
    assert lines[2] == "SKIP skipped: marked skip: true in .expected/config.yaml"


# --------------------------------------------------------------------------- printer


def test_printer_formats_like_kpt() -> None:
    import io

    out = io.StringIO()
    p = kptcli.KptPrinter(out)
    p.package("app")
    p.running("ghcr.io/x/set-labels:latest", resource_count=2, package="app")
    p.failed(
        "ghcr.io/x/set-labels:latest",
        0.0042,
        [
            {
                "message": "m1",
                "severity": "error",
                "resourceRef": {"apiVersion": "v1", "kind": "Pod", "name": "p"},
                "field": {"path": "spec"},
            },
            {"message": "m2"},
        ],
        stderr="line one\nline two",
        exit_code=1,
    )
    assert out.getvalue() == (
        'Package "app":\n'
        '[RUNNING] "ghcr.io/x/set-labels:latest" on 2 resource(s) on package "app"\n'
        '[FAIL] "ghcr.io/x/set-labels:latest" in 4ms\n'
        "  [Results]:\n"
        "    [error] v1/Pod/p spec: m1\n"
        "    [info]: m2\n"
        "  Stderr:\n"
        "    line one\n"
        "    line two\n"
        "  Exit code: 1\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0004, "0s"), (0.012, "12ms"), (1.5, "1.5s"), (2.0, "2s"), (61.25, "1m1.25s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert kptcli.go_duration(seconds) == text


def test_results_file_layout() -> None:
    text = kptcli.dump_result_list(
        [
            {
                "image": "gcr.io/kpt-fn/set-image:unstable",
                "stderr": "failed: must specify `name`",
                "exitCode": 1,
                "results": [{"severity": "error", "message": "must specify `name`"}],
            }
        ],
        1,
    )
    assert text == (
        "apiVersion: kpt.dev/v1\nkind: FunctionResultList\nmetadata:\n  name: fnresults\n"
        "exitCode: 1\nitems:\n  - image: gcr.io/kpt-fn/set-image:unstable\n"
        "    stderr: 'failed: must specify `name`'\n    exitCode: 1\n    results:\n"
        "      - message: must specify `name`\n        severity: error\n"
    )


# --------------------------------------------------------------------------- CLI


def test_cli_refuses_missing_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["conformance", "kpt-fn-render", str(tmp_path / "nope")])
    assert result.exit_code != 0


# --------------------------------------------------------------------------- kpt emulation


def test_parse_flags_follows_pflag_rules() -> None:
    specs = (
        kptcli.FlagSpec(("output", "o"), "str", ""),
        kptcli.FlagSpec(("allow-exec",), "bool", False),
        kptcli.FlagSpec(("mount",), "list"),
    )
    parsed = kptcli.parse_flags(
        ["pkg", "-ostdout", "--allow-exec", "--mount=a", "--mount", "b", "--", "k=v"], specs
    )
    assert parsed.positional == ["pkg"]
    assert parsed.values == {"output": "stdout", "allow-exec": True, "mount": ["a", "b"]}
    assert parsed.after_dash == ["k=v"]
    with pytest.raises(kptcli.UsageError, match="unknown flag: --nope"):
        kptcli.parse_flags(["--nope"], specs)
    with pytest.raises(kptcli.UsageError, match="flag needs an argument"):
        kptcli.parse_flags(["--output"], specs)


def test_unwrap_error_takes_innermost_message() -> None:
    text = "fn.render: pkg .:\n\tpipeline.run: function must not modify resources"
    assert kptcli.unwrap_error(text) == "function must not modify resources"
    assert kptcli.unwrap_error('Kptfile at "." can\'t be read.') == 'Kptfile at "." can\'t be read.'


def test_eval_sets_labels_from_args_and_writes_results(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    _write(pkg / "Kptfile", "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: pkg\n")
    _write(pkg / "resources.yaml", "# keep me\n" + RESOURCES)
    results = tmp_path / "results"
    code, out, err = kptcli.run(
        [
            "fn",
            "eval",
            str(pkg),
            "--image",
            "set-labels:v0.2",
            "--results-dir",
            str(results),
            "--",
            "color=orange",
        ],
        cwd=tmp_path,
    )
    assert code == 0, err
    assert err.startswith('[RUNNING] "ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2"\n')
    assert '[PASS] "ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2" in ' in err
    text = (pkg / "resources.yaml").read_text()
    assert text.startswith("# keep me\n")
    assert "color: orange" in text
    saved = (results / "results.yaml").read_text()
    assert "image: ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2" in saved
    assert err.endswith(f"For complete results, see {results / 'results.yaml'}\n")


def test_eval_refuses_bad_invocations(tmp_path: Path) -> None:
    code, _, err = kptcli.run(["fn", "eval", str(tmp_path)], cwd=tmp_path)
    assert code == 1 and "must specify --image or --exec" in err
    code, _, err = kptcli.run(["fn", "apply"], cwd=tmp_path)
    assert code == 1 and "unsupported kpt command" in err


def test_render_without_kptfile_fails_like_kpt(tmp_path: Path) -> None:
    code, _, err = kptcli.run(["fn", "render", str(tmp_path)], cwd=tmp_path)
    assert code == 1
    assert err.startswith("Error: No Kptfile found at")


# --------------------------------------------------------------------------- real cases

needs_shared = pytest.mark.skipif(
    not KPT_CASES.is_dir(), reason=f"conformance data not found at {KPT_CASES}"
)


@needs_shared
@needs_git
def test_real_kpt_case_passes_and_tampered_copy_fails(tmp_path: Path) -> None:
    [case] = h.discover([KPT_CASES / "no-fnconfig"])
    outcome = h.run_case(case, h.SUITE_KPT)
    assert outcome.status == "PASS", outcome.reason

    copy = tmp_path / "no-fnconfig"
    shutil.copytree(KPT_CASES / "no-fnconfig", copy)
    patch = copy / ".expected" / "diff.patch"
    patch.write_text(patch.read_text().replace('updated to "staging"', 'updated to "prod"'))
    [tampered] = h.discover([copy])
    failed = h.run_case(tampered, h.SUITE_KPT)
    assert failed.status == "FAIL"
    assert failed.reason.startswith("diff doesn't match expected")
    assert '-+          - message: namespace [default] updated to "prod"' in failed.reason
    assert '++          - message: namespace [default] updated to "staging"' in failed.reason


@needs_shared
@needs_git
def test_cli_exit_status_and_summary(tmp_path: Path) -> None:
    good = CliRunner().invoke(
        main, ["conformance", "kpt-fn-render", str(KPT_CASES / "missing-kptfile")]
    )
    assert good.exit_code == 0, good.output
    assert good.output.splitlines() == ["PASS missing-kptfile", "1 passed, 0 failed, 0 skipped"]

    copy = tmp_path / "missing-kptfile"
    shutil.copytree(KPT_CASES / "missing-kptfile", copy)
    (copy / ".expected" / "config.yaml").write_text("exitCode: 0\n")
    bad = CliRunner().invoke(main, ["conformance", "kpt-fn-render", str(copy)])
    assert bad.exit_code == 1
    lines = bad.output.splitlines()
    assert lines[0].startswith("FAIL missing-kptfile: actual exit code 1 doesn't match expected 0")
    assert lines[-1] == "0 passed, 1 failed, 0 skipped"


def _pipeline_package(root: Path) -> Path:
    pkg = root / "app"
    _write(
        pkg / "Kptfile",
        "apiVersion: kpt.dev/v1\nkind: Kptfile\nmetadata:\n  name: app\npipeline:\n"
        "  mutators:\n    - image: set-namespace:v0.4\n      configMap:\n"
        "        namespace: staging\n",
    )
    _write(pkg / "resources.yaml", RESOURCES)
    return pkg


def test_render_to_stdout_leaves_the_package_alone(tmp_path: Path) -> None:
    pkg = _pipeline_package(tmp_path)
    before = {p.name: p.read_text() for p in pkg.iterdir()}
    code, out, err = kptcli.run(["fn", "render", str(pkg), "-o", "stdout"], cwd=tmp_path)
    assert code == 0, err
    assert {p.name: p.read_text() for p in pkg.iterdir()} == before
    assert out.startswith("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n")
    assert "      config.kubernetes.io/path: 'resources.yaml'\n" in out
    assert "  namespace: staging\n" in out
    assert "Successfully executed" not in err  # kpt prints no summary for -o


def test_render_status_depends_on_the_suite_flavor(tmp_path: Path) -> None:
    head = _pipeline_package(tmp_path / "head")
    code, _, err = kptcli.run(["fn", "render", str(head)], cwd=tmp_path)
    assert code == 0, err
    assert "reason: RenderSuccess" in (head / "Kptfile").read_text()
    assert err.endswith("Successfully executed 1 function(s) in 1 package(s).\n")

    old = _pipeline_package(tmp_path / "old")
    kptfile = (old / "Kptfile").read_text()
    code, _, err = kptcli.run(["fn", "render", str(old)], cwd=tmp_path, flavor=h.SUITE_CATALOG)
    assert code == 0, err
    assert (old / "Kptfile").read_text() == kptfile
    assert "namespace: staging" in (old / "resources.yaml").read_text()


def test_eval_fn_config_inside_package_per_flavor(tmp_path: Path) -> None:
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  color: blue\n"
    for flavor, relabelled in ((h.SUITE_KPT, False), (h.SUITE_CATALOG, True)):
        pkg = tmp_path / flavor
        _write(pkg / "resources.yaml", RESOURCES)
        _write(pkg / "fn-config.yaml", config)
        code, _, err = kptcli.run(
            ["fn", "eval", str(pkg), "-i", "set-labels:v0.2", "--fn-config", "fn-config.yaml"],
            cwd=pkg,
            flavor=flavor,
        )
        assert code == 0, err
        assert "color: blue" in (pkg / "resources.yaml").read_text()
        labelled = "labels:" in (pkg / "fn-config.yaml").read_text()
        assert labelled is relabelled, flavor


def test_container_runtime_detection_looks_at_commands_only() -> None:
    assert not h._calls_container_runtime('if [ "${KRM_FN_RUNTIME}" = "docker" ]; then\n  x\nfi')
    assert h._calls_container_runtime("${KRM_FN_RUNTIME} pull image")
    assert h._calls_container_runtime("kpt fn source | docker run -i img | kpt fn sink d")


def test_eval_tag_flag_replaces_or_refuses(tmp_path: Path) -> None:
    _write(tmp_path / "r.yaml", RESOURCES)
    code, _, err = kptcli.run(
        ["fn", "eval", ".", "-i", "set-labels", "--tag", "v0.2.1", "--", "a=b"], cwd=tmp_path
    )
    assert code == 0, err
    assert '[RUNNING] "ghcr.io/kptdev/krm-functions-catalog/set-labels:v0.2.1"' in err
    code, _, err = kptcli.run(
        ["fn", "eval", ".", "-i", "set-labels", "--tag", "~0.2", "--", "a=b"], cwd=tmp_path
    )
    assert code == 1
    assert "no tag could be found matching the version constraint" in err
