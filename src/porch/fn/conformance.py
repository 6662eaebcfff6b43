"""Run kpt's fn-render e2e cases and the function catalog's e2e cases against our runtime.

A *case* is a directory holding an ``.expected/`` folder (kpt's ``pkg/test/runner``
convention). Each case is run the way kpt's harness runs it: the case is copied into a fresh
temporary directory, made a git repository with one commit, the command (``kpt fn render``,
``kpt fn eval`` per ``testType`` or the case's ``exec.sh``) is run with our kpt emulation
(:mod:`porch.fn.kptcli`), and then the exit code, stderr, stdout, the results file and the
``git diff`` against the first commit are compared with what ``.expected/`` holds, using the
harness's own rules (``stdErr`` is a substring, ``stdErrStripLines``/``actualStripLines`` drop
whole lines, ``diffStripRegEx`` normalises both diffs, ...). Each case runs twice, from a
fresh copy, as the harness does (stopping after a run whose command failed as expected).

A case is skipped only when it needs something we do not provide: a function image we do not
ship, or a CLI feature we do not emulate (wasm, container image pull policies, scripts that call
docker/kustomize, bind mounts). The reason names it.
"""

from __future__ import annotations

import difflib
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from porch.errors import Invalid

EXPECTED_DIR = ".expected"
CONFIG_FILE = "config.yaml"
DIFF_FILE = "diff.patch"
RESULTS_FILE = "results.yaml"
SETUP_SCRIPT = "setup.sh"
TEARDOWN_SCRIPT = "teardown.sh"
EXEC_SCRIPT = "exec.sh"
OUT_DIR = "out"
RUN_COUNT = 2

SUITE_KPT = "kpt-fn-render"
SUITE_CATALOG = "krm-catalog"
SUITES = (SUITE_KPT, SUITE_CATALOG)

FLAVOR_ENV = "PORCH_KPT_FLAVOR"
"""Environment variable the ``kpt`` shim reads: which kpt the suite was recorded with."""
EXEC_DIR_ENV = "PORCH_KPT_EXEC_DIR"
"""Environment variable the ``kpt`` shim reads: base directory of relative ``exec`` paths."""


class ConformanceError(Invalid):
    """Bad input to the harness: a missing directory, an unreadable case configuration."""


# --------------------------------------------------------------------------- configuration


@dataclass
class EvalConfig:
    exec_path: str = ""
    image: str = ""
    tag: str = ""
    args: dict[str, str] = field(default_factory=dict)
    network: bool = False
    include_meta_resources: bool = False
    fn_config: str = ""


@dataclass
class CaseConfig:
    exit_code: int = 0
    actual_strip_lines: list[str] = field(default_factory=list)
    diff_strip_regex: str = ""
    std_err: str = ""
    std_err_regex: str = ""
    std_err_strip_lines: list[str] = field(default_factory=list)
    std_out: str = ""
    sequential: bool = False
    image_pull_policy: str = ""
    runtimes: list[str] = field(default_factory=list)
    allow_exec: bool = False
    allow_network: bool = False
    allow_wasm: bool = False
    skip: bool = False
    debug: bool = False
    test_type: str = "render"
    disable_output_truncate: bool = False
    eval: EvalConfig = field(default_factory=EvalConfig)
    env: dict[str, str] = field(default_factory=dict)


_FIELDS: dict[str, tuple[str, str]] = {
    # yaml key: (attribute, kind)
    "exitCode": ("exit_code", "int"),
    "actualStripLines": ("actual_strip_lines", "strings"),
    "diffStripRegEx": ("diff_strip_regex", "str"),
    "stdErr": ("std_err", "str"),
    "stdErrRegEx": ("std_err_regex", "str"),
    "stdErrStripLines": ("std_err_strip_lines", "strings"),
    "stdOut": ("std_out", "str"),
    "sequential": ("sequential", "bool"),
    "imagePullPolicy": ("image_pull_policy", "str"),
    "runtimes": ("runtimes", "strings"),
    "allowExec": ("allow_exec", "bool"),
    "allowNetwork": ("allow_network", "bool"),
    "allowWasm": ("allow_wasm", "bool"),
    "skip": ("skip", "bool"),
    "debug": ("debug", "bool"),
    "testType": ("test_type", "str"),
    "disableOutputTruncate": ("disable_output_truncate", "bool"),
    "env": ("env", "map"),
}
_EVAL_FIELDS: dict[str, tuple[str, str]] = {
    "execPath": ("exec_path", "str"),
    "image": ("image", "str"),
    "tag": ("tag", "str"),
    "args": ("args", "map"),
    "network": ("network", "bool"),
    "includeMetaResources": ("include_meta_resources", "bool"),
    "fnConfig": ("fn_config", "str"),
}


def _scalar_text(value: Any) -> str:
    # Go's yaml.v3 decodes any scalar into a string field as its text.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _convert(value: Any, kind: str, where: str) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConformanceError(f"{where}: want an integer, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConformanceError(f"{where}: want true or false, got {value!r}")
        return value
    if kind == "str":
        if isinstance(value, (list, dict)):
            raise ConformanceError(f"{where}: want a string, got {type(value).__name__}")
        return _scalar_text(value)
    if kind == "strings":
        if value is None:
            return []
        if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
            raise ConformanceError(f"{where}: want a list of strings")
        return [_scalar_text(v) for v in value]
    if value is None:
        return {}
    if not isinstance(value, dict) or any(isinstance(v, (list, dict)) for v in value.values()):
        raise ConformanceError(f"{where}: want a map of strings")
    return {_scalar_text(k): _scalar_text(v) for k, v in value.items()}


def parse_config(text: str, *, source: str = CONFIG_FILE) -> CaseConfig:
    """A case's ``config.yaml`` (unknown keys are ignored, as Go's decoder does)."""
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise ConformanceError(f"{source} is not valid YAML: {exc}") from exc
    config = CaseConfig()
    if data is None:
        return config
    if not isinstance(data, dict):
        raise ConformanceError(f"{source} must be a mapping")
    for key, (attr, kind) in _FIELDS.items():
        if key in data:
            setattr(config, attr, _convert(data[key], kind, f"{source}: {key}"))
    for key, (attr, kind) in _EVAL_FIELDS.items():
        if key in data:
            setattr(config.eval, attr, _convert(data[key], kind, f"{source}: {key}"))
    if not config.test_type:
        config.test_type = "render"
    if config.test_type not in ("render", "eval"):
        raise ConformanceError(
            f"{source}: testType must be render or eval, got {config.test_type!r}"
        )
    return config


def load_config(case_dir: Path) -> CaseConfig:
    path = case_dir / EXPECTED_DIR / CONFIG_FILE
    if not path.exists():
        return CaseConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConformanceError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_config(text, source=str(path))


# --------------------------------------------------------------------------- discovery


@dataclass
class Case:
    path: Path
    name: str
    config: CaseConfig


def is_case(path: Path) -> bool:
    return path.is_dir() and (path / EXPECTED_DIR).is_dir()


def discover(dirs: Sequence[str | Path]) -> list[Case]:
    """Every case under each directory (a directory that is itself a case counts as one), in
    path order. Cases are named by their path relative to the directory given (a case given
    directly is named by its base name)."""
    if not dirs:
        raise ConformanceError("no case directories given")
    cases: list[Case] = []
    for raw in dirs:
        root = Path(raw)
        if not root.is_dir():
            raise ConformanceError(f"{raw}: not a directory")
        found: list[Path] = []
        for dirpath, dirnames, _ in os.walk(root):
            dirnames.sort()
            current = Path(dirpath)
            if is_case(current):
                found.append(current)
        if not found:
            raise ConformanceError(f"{raw}: no test cases (directories with {EXPECTED_DIR}/)")
        for path in found:
            rel = path.relative_to(root).as_posix()
            name = root.resolve().name if rel == "." else rel
            cases.append(Case(path=path, name=name, config=load_config(path)))
    return cases


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    name: str
    status: str  # PASS | FAIL | SKIP
    reason: str = ""

    def line(self) -> str:
        if self.status == "PASS":
            return f"PASS {self.name}"
        return f"{self.status} {self.name}: {self.reason}"


class CaseFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


# --------------------------------------------------------------------------- git helpers


def _git_binary() -> str:
    git = shutil.which("git")
    if git is None:
        raise ConformanceError("git is required by the conformance harness and is not on PATH")
    return git


def _run(
    argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> CommandResult:
    proc = subprocess.run(
        list(argv),
        cwd=str(cwd) if cwd is not None else None,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    return CommandResult(
        proc.returncode,
        proc.stdout.decode("utf-8", errors="replace"),
        proc.stderr.decode("utf-8", errors="replace"),
    )


def _git(pkg: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = _run([_git_binary(), *args], cwd=pkg, env=env)
    if result.exit_code != 0:
        raise CaseFailed(f"git {' '.join(args)} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


def git_commit_all(pkg: Path, message: str) -> None:
    _git(pkg, "add", "--all")
    _git(pkg, "config", "user.name", "none")
    _git(pkg, "config", "user.email", "none")
    _git(pkg, "commit", "-m", message, "--allow-empty")


def prepare_package(pkg: Path) -> str:
    """``git init`` + commit everything; the short hash of that commit."""
    _git(pkg, "init")
    git_commit_all(pkg, "first")
    return _git(pkg, "log", "-n", "1", "--pretty=format:%h")


def actual_diff(pkg: Path, initial: str) -> str:
    git_commit_all(pkg, "second")
    # The harness runs git diff with an environment holding only GIT_DIFF_OPTS=.
    out = _git(pkg, "diff", initial, "HEAD", env={"GIT_DIFF_OPTS": ""})
    return out.strip()


# --------------------------------------------------------------------------- comparisons


def strip_lines(text: str, lines: Iterable[str]) -> str:
    for line in lines:
        text = text.replace(line + "\n", "")
    return text


def sanitize_timestamps(stderr: str) -> str:
    out = []
    for line in stderr.split("\n"):
        if line.startswith("[PASS]") or line.startswith("[FAIL]"):
            tokens = line.split()
            if len(tokens) == 4 and tokens[2] == "in":
                tokens[3] = "0s"
                line = " ".join(tokens)
        out.append(line)
    return "\n".join(out)


_ARM_WARNING = (
    " Stderr: WARNING: The requested image's platform (linux/amd64) does not match the detected "
    "host platform (linux/arm64/v8) and no specific platform was requested"
)
_TMP_PREFIX = re.compile(r"/?\w+/kpt-pipeline-e2e-\d+/")


def condition_stderr(stderr: str) -> str:
    stderr = stderr.replace(_ARM_WARNING, "")
    if stderr.endswith("  Stderr:\n"):
        stderr = stderr.replace("  Stderr:\n", "", 1)
    return _TMP_PREFIX.sub("", stderr)


_INDEX_LINE = re.compile(r"^index [0-9a-f]+\.\.[0-9a-f]+")
_HUNK_LINE = re.compile(r"^@@ -\d+,\d+ \+\d+,\d+ @@")


def normalize_diff(diff: str, strip_regex: str) -> str:
    try:
        strip = re.compile(strip_regex)
    except re.error as exc:
        raise CaseFailed(f"unable to compile diffStripRegEx {strip_regex!r}: {exc}") from exc
    out = []
    for line in diff.split("\n"):
        if strip.search(line):
            continue
        line = _INDEX_LINE.sub("index NORMALIZED", line)
        line = _HUNK_LINE.sub("@@ NORMALIZED @@", line)
        out.append(line)
    return "\n".join(out)


def _unified(expected: str, actual: str, what: str, limit: int = 40) -> str:
    lines = list(
        difflib.unified_diff(
            expected.split("\n"),
            actual.split("\n"),
            f"expected {what}",
            f"actual {what}",
            lineterm="",
        )
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more lines)"]
    return "\n".join(lines)


def _clip(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more chars)"


def compare_output(config: CaseConfig, stdout: str, stderr: str) -> None:
    conditioned = condition_stderr(stderr)
    if config.std_err not in conditioned:
        raise CaseFailed(
            "stderr does not contain the expected text\n"
            + _unified(config.std_err, conditioned, "stderr")
        )
    if config.std_err_regex:
        try:
            pattern = re.compile(config.std_err_regex)
        except re.error as exc:
            raise CaseFailed(
                f"unable to compile stdErrRegEx {config.std_err_regex!r}: {exc}"
            ) from exc
        if not pattern.search(conditioned):
            raise CaseFailed(
                f"stderr does not match {config.std_err_regex!r}; got {_clip(conditioned)!r}"
            )
    if config.std_out not in stdout:
        raise CaseFailed(
            "stdout does not contain the expected text\n"
            + _unified(config.std_out, stdout, "stdout")
        )


def read_actual_results(results_dir: Path | None) -> str:
    if results_dir is None or not results_dir.exists():
        return ""
    files = sorted(results_dir.iterdir())
    if len(files) > 1:
        raise CaseFailed(f"unexpected results files number {len(files)}, should be 0 or 1")
    if not files:
        return ""
    return files[0].read_text(encoding="utf-8").strip()


def _read_expected(case_dir: Path, name: str) -> str:
    path = case_dir / EXPECTED_DIR / name
    if not path.exists():
        return ""
    return path.read_text(encoding="utf-8").strip()


def compare_result(
    case: Case,
    result: CommandResult,
    pkg: Path,
    initial: str,
    results_dir: Path | None,
) -> None:
    config = case.config
    stderr = strip_lines(sanitize_timestamps(result.stderr), config.std_err_strip_lines)
    if result.exit_code != config.exit_code:
        raise CaseFailed(
            f"actual exit code {result.exit_code} doesn't match expected {config.exit_code}; "
            f"stderr: {_clip(condition_stderr(stderr).strip())!r}"
        )
    compare_output(config, result.stdout, stderr)
    actual_results = strip_lines(read_actual_results(results_dir), config.actual_strip_lines)
    expected_results = _read_expected(pkg, RESULTS_FILE)
    if actual_results != expected_results:
        raise CaseFailed(
            "results don't match expected\n"
            + _unified(expected_results, actual_results, "results.yaml")
        )
    diff = actual_diff(pkg, initial)
    expected_diff = _read_expected(pkg, DIFF_FILE)
    if config.diff_strip_regex:
        diff = normalize_diff(diff, config.diff_strip_regex)
        expected_diff = normalize_diff(expected_diff, config.diff_strip_regex)
    if diff != expected_diff:
        raise CaseFailed(
            "diff doesn't match expected\n" + _unified(expected_diff, diff, "diff.patch")
        )


# --------------------------------------------------------------------------- skip rules

_CONTAINER_COMMAND = re.compile(r"^(?:docker|podman|\$\{?KRM_FN_RUNTIME\}?)$")
_UNSUPPORTED_SCRIPT = [
    (re.compile(r"(?:^|[|;&]\s*|\$\(\s*)kustomize\b", re.M), "a script calling kustomize"),
    (re.compile(r"\bkpt\s+fn\s+(?:source|sink)\b"), "kpt fn source/sink pipelines"),
    (re.compile(r"--mount\b"), "container bind mounts (kpt fn eval --mount)"),
    (re.compile(r"--as-current-user\b"), "container user mapping (--as-current-user)"),
]


def _calls_container_runtime(body: str) -> bool:
    """Whether a command of the script (first word of a pipeline stage) is a container CLI."""
    for line in body.replace("\\\n", " ").splitlines():
        for stage in re.split(r"\|\|?|&&|;|\$\(", line):
            words = stage.split()
            if words and _CONTAINER_COMMAND.match(words[0]):
                return True
    return False


def _script_text(case_dir: Path, name: str) -> str:
    path = case_dir / EXPECTED_DIR / name
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _script_body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _script_feature(case_dir: Path) -> str:
    for name in (SETUP_SCRIPT, EXEC_SCRIPT, TEARDOWN_SCRIPT):
        body = _script_body(_script_text(case_dir, name))
        if "KPT_FN_WASM_RUNTIME" in body:
            return f"wasm functions ({name} sets KPT_FN_WASM_RUNTIME)"
        if _calls_container_runtime(body):
            return f"a script calling a container runtime ({EXPECTED_DIR}/{name})"
        for pattern, feature in _UNSUPPORTED_SCRIPT:
            if pattern.search(body):
                return f"{feature} ({EXPECTED_DIR}/{name})"
    return ""


def _kptfile_functions(case_dir: Path) -> list[dict[str, Any]]:
    """The pipeline entries of every Kptfile of the case (outside ``.expected``)."""
    loader = YAML(typ="safe")
    functions: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(case_dir):
        dirnames[:] = sorted(d for d in dirnames if d != EXPECTED_DIR)
        if "Kptfile" not in filenames:
            continue
        try:
            docs = list(loader.load_all(Path(dirpath, "Kptfile").read_text(encoding="utf-8")))
        except (YAMLError, OSError, UnicodeDecodeError):
            continue  # the render itself reports a broken Kptfile
        for doc in docs:
            pipeline = doc.get("pipeline") if isinstance(doc, dict) else None
            if not isinstance(pipeline, dict):
                continue
            for key in ("mutators", "validators"):
                steps = pipeline.get(key)
                if isinstance(steps, list):
                    functions.extend(s for s in steps if isinstance(s, dict))
    return functions


def _script_images(case_dir: Path) -> list[str]:
    images: list[str] = []
    body = _script_body(_script_text(case_dir, EXEC_SCRIPT)).replace("\\\n", " ")
    for line in body.splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        for i, word in enumerate(words):
            if word in ("--image", "-i") and i + 1 < len(words):
                images.append(words[i + 1])
            elif word.startswith("--image="):
                images.append(word.split("=", 1)[1])
    return images


def _shipped(image: str) -> bool:
    from porch.fn.runtime import BuiltinRuntime, resolve_image

    try:
        resolved = resolve_image(image)
    except ValueError:
        return True  # an empty image is the render's error to report
    return BuiltinRuntime().lookup(resolved) is not None


def skip_reason(case: Case, suite: str) -> str:
    config = case.config
    if config.skip:
        return "marked skip: true in .expected/config.yaml"
    if config.allow_wasm:
        return "wasm functions (allowWasm: --allow-alpha-wasm)"
    if config.image_pull_policy and suite == SUITE_KPT:
        return f"container image pull policy (imagePullPolicy: {config.image_pull_policy})"
    feature = _script_feature(case.path)
    if feature:
        return feature
    images: list[str] = []
    for step in _kptfile_functions(case.path):
        image = step.get("image")
        if isinstance(image, str) and image:
            if "/wasm/" in image:
                return f"wasm functions ({image})"
            images.append(image)
    has_script = (case.path / EXPECTED_DIR / EXEC_SCRIPT).exists()
    if config.test_type == "eval" and not has_script and config.eval.image:
        images.append(config.eval.image)
    images.extend(_script_images(case.path))
    for image in images:
        if not _shipped(image):
            return f"function not shipped: {image}"
    return ""


# --------------------------------------------------------------------------- running a case


def _tmp_dir(prefix: str) -> Path:
    """A fresh directory named like Go's ``os.MkdirTemp(prefix + "*")`` (digits)."""
    base = Path(tempfile.gettempdir())
    for _ in range(100):
        candidate = base / f"{prefix}{random.randrange(10**9, 10**10)}"
        try:
            candidate.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return candidate
    raise ConformanceError(f"cannot create a temporary directory in {base}")


def _run_script(case_dir: Path, name: str, pkg: Path, env: dict[str, str]) -> None:
    script = (case_dir / EXPECTED_DIR / name).resolve()
    if not script.exists():
        return
    result = _run(["bash", str(script)], cwd=pkg, env=env)
    if result.exit_code != 0:
        raise CaseFailed(
            f"{name} failed (exit {result.exit_code}): {_clip(result.stdout + result.stderr)}"
        )


_SHIM = """#!/bin/sh
exec {python} -m porch.fn.kptcli "$@"
"""


def _shim_env(tmp: Path, flavor: str, exec_dir: Path) -> dict[str, str]:
    bin_dir = tmp / ".porch-kpt-bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "kpt"
    shim.write_text(_SHIM.format(python=shlex.quote(sys.executable)), encoding="utf-8")
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env[FLAVOR_ENV] = flavor
    env[EXEC_DIR_ENV] = str(exec_dir)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def exec_base_dir(case: Case, tmp: Path) -> Path:
    """The working directory kpt's e2e harness runs from, as far as ``exec:`` paths care.

    kpt's cases name their exec functions ``./testdata/fn-render/<case>/<script>`` relative
    to kpt's ``e2e`` directory; we make a directory whose ``testdata/fn-render`` points at the
    ancestor of the case that makes such a path resolve."""
    base = tmp / ".porch-e2e-cwd"
    base.mkdir(exist_ok=True)
    marker = "testdata/fn-render/"
    for step in _kptfile_functions(case.path):
        exec_path = step.get("exec")
        if not isinstance(exec_path, str) or marker not in exec_path:
            continue
        words = exec_path.split(marker, 1)[1].split()
        if not words:
            continue
        for ancestor in case.path.resolve().parents:
            if (ancestor / words[0]).exists():
                link = base / "testdata" / "fn-render"
                if not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(ancestor, target_is_directory=True)
                return base
    return base


def _command_argv(case: Case, pkg: Path, results_dir: Path | None, dest: Path | None) -> list[str]:
    config = case.config
    if config.test_type == "eval":
        argv = ["fn", "eval", str(pkg)]
        if results_dir is not None:
            argv += ["--results-dir", str(results_dir)]
        if dest is not None:
            argv += ["-o", str(dest)]
        if config.allow_wasm:
            argv.append("--allow-alpha-wasm")
        if config.eval.network:
            argv.append("--network")
        if config.eval.image:
            argv += ["--image", config.eval.image]
        elif config.eval.exec_path:
            argv += ["--exec", _from_slash(case.path / EXPECTED_DIR, config.eval.exec_path)]
        if config.eval.tag:
            argv += ["--tag", config.eval.tag]
        if config.eval.fn_config:
            argv += ["--fn-config", _from_slash(case.path / EXPECTED_DIR, config.eval.fn_config)]
        if config.eval.include_meta_resources:
            argv.append("--include-meta-resources")
        if config.eval.args:
            argv.append("--")
            argv += [f"{k}={v}" for k, v in config.eval.args.items()]
        return argv
    argv = ["fn", "render", str(pkg)]
    if results_dir is not None:
        argv += ["--results-dir", str(results_dir)]
    if dest is not None:
        argv += ["-o", str(dest)]
    if config.allow_exec:
        argv.append("--allow-exec")
    if config.allow_wasm:
        argv.append("--allow-alpha-wasm")
    if config.disable_output_truncate:
        argv.append("--truncate-output=false")
    return argv


def _from_slash(base: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (base / p).resolve())


KptRunner = Callable[[Sequence[str], Path, str, Path], CommandResult]
"""``(argv, cwd, flavor, exec_dir) -> result``: runs one emulated kpt command."""


def _default_kpt(argv: Sequence[str], cwd: Path, flavor: str, exec_dir: Path) -> CommandResult:
    from porch.fn import kptcli

    code, out, err = kptcli.run(list(argv), cwd=cwd, flavor=flavor, exec_dir=exec_dir)
    return CommandResult(code, out, err)


def run_case(case: Case, suite: str, kpt: KptRunner | None = None) -> Outcome:
    if suite not in SUITES:
        raise ConformanceError(f"unknown suite {suite!r}")
    reason = skip_reason(case, suite)
    if reason:
        return Outcome(case.name, "SKIP", reason)
    runner = kpt or _default_kpt
    for iteration in range(1, RUN_COUNT + 1):
        try:
            failed_as_expected = _run_once(case, suite, runner)
        except CaseFailed as exc:
            suffix = f" (run {iteration})" if iteration > 1 else ""
            return Outcome(case.name, "FAIL", exc.reason + suffix)
        if failed_as_expected:
            break
    return Outcome(case.name, "PASS")


def _run_once(case: Case, suite: str, kpt: KptRunner) -> bool:
    prefix = "krm-fn-e2e-" if case.config.test_type == "eval" else "kpt-pipeline-e2e-"
    tmp = _tmp_dir(prefix)
    try:
        pkg_name = case.path.resolve().name
        pkg = tmp / pkg_name
        shutil.copytree(case.path, pkg, symlinks=True)
        results_dir = (
            tmp / "results" if (case.path / EXPECTED_DIR / RESULTS_FILE).exists() else None
        )
        dest = pkg / OUT_DIR if (case.path / OUT_DIR).is_dir() else None
        initial = prepare_package(pkg)
        exec_dir = exec_base_dir(case, tmp)
        script_env = _shim_env(tmp, suite, exec_dir)
        for key, value in case.config.env.items():
            script_env[key] = value
        _run_script(case.path, SETUP_SCRIPT, pkg, script_env)
        exec_script = case.path / EXPECTED_DIR / EXEC_SCRIPT
        if exec_script.exists():
            result = _run(["bash", str(exec_script.resolve())], cwd=pkg, env=script_env)
        else:
            argv = _command_argv(case, pkg, results_dir, dest)
            result = kpt(argv, Path.cwd(), suite, exec_dir)
        compare_result(case, result, pkg, initial, results_dir)
        _run_script(case.path, TEARDOWN_SCRIPT, pkg, script_env)
        return result.exit_code != 0
    finally:
        if not case.config.debug:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- a whole run


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "PASS")

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "FAIL")

    @property
    def skipped(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "SKIP")

    def line(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def run_suite(
    dirs: Sequence[str | Path],
    suite: str,
    *,
    report: Callable[[Outcome], None] | None = None,
    kpt: KptRunner | None = None,
) -> Summary:
    """Run every case found under ``dirs``; sequential cases first, as kpt's harness does."""
    cases = discover(dirs)
    ordered = [c for c in cases if c.config.sequential] + [
        c for c in cases if not c.config.sequential
    ]
    summary = Summary()
    for case in ordered:
        try:
            outcome = run_case(case, suite, kpt)
        except Exception as exc:  # a harness or emulation crash fails this case only
            outcome = Outcome(case.name, "FAIL", f"harness error: {type(exc).__name__}: {exc}")
        summary.outcomes.append(outcome)
        if report is not None:
            report(outcome)
    return summary
