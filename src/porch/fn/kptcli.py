"""A small emulation of the ``kpt`` CLI (``fn render``, ``fn eval``, ``pkg init``) on our runtime.

Output follows kpt byte for byte where its e2e cases look: progress on stderr
(``Package "name":`` headers, ``[RUNNING] "image" on package "name"``, ``[PASS] "image" in
0s``, ``  [Results]:`` with ``    [info]: message`` lines, ``  Stderr:``, ``  Exit code: 1``, the
closing ``Successfully executed N function(s) in M package(s).``), errors as
``Error: <message> `` and the results file (``FunctionResultList``) in kyaml's layout.

:class:`KptPrinter` turns the render core's progress events into that text; :func:`run` is the
command line (also reachable as ``python -m porch.fn.kptcli``, which the conformance harness
puts on ``PATH`` as ``kpt`` for cases driven by an ``exec.sh`` script).
"""

from __future__ import annotations

import copy
import io
import os
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porch.fn.gotext import go_quote
from porch.krm import yaml as krm_yaml

# --------------------------------------------------------------------------- formatting


def go_duration(seconds: float) -> str:
    """A duration as Go prints ``time.Duration.Truncate(time.Millisecond)``: ``0s``,
    ``12ms``, ``1.5s``, ``2m3.004s``."""
    ms = max(int(seconds * 1000), 0)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    frac = f".{millis:03d}".rstrip("0").rstrip(".") if millis else ""
    text = f"{secs}{frac}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def result_item_text(item: Mapping[str, Any]) -> str:
    """One structured result as kpt prints it: ``[severity] apiVersion/Kind/ns/name
    field.path: message`` (severity defaults to info)."""
    severity = item.get("severity") or "info"
    parts = [f"[{severity}]"]
    ref = item.get("resourceRef")
    if isinstance(ref, Mapping):
        ids = [
            str(ref[k])
            for k in ("apiVersion", "kind", "namespace", "name")
            if ref.get(k) not in (None, "")
        ]
        if ids:
            parts.append(" " + "/".join(ids))
    fld = item.get("field")
    if isinstance(fld, Mapping):
        parts.append(" " + str(fld.get("path") or ""))
    message = item.get("message")
    parts.append(": " + ("" if message is None else str(message)))
    return "".join(parts)


def single_line_block(
    title: str, lines: Sequence[str], indent: int = 2, line_indent: int = 2
) -> str:
    """kpt's ``SingleLineFormatter``: a title line then each line, newlines folded, trimmed."""
    head = " " * indent
    body = head + " " * line_indent
    formatted = [body + line.replace("\n", " ").strip() for line in lines]
    return f"{head}{title}:\n" + "\n".join(formatted)


# --------------------------------------------------------------------------- results file


def result_list(items: Sequence[Mapping[str, Any]], exit_code: int) -> dict[str, Any]:
    """A ``kpt.dev/v1`` ``FunctionResultList`` with kpt's field order."""
    out: dict[str, Any] = {
        "apiVersion": "kpt.dev/v1",
        "kind": "FunctionResultList",
        "metadata": {"name": "fnresults"},
        "exitCode": exit_code,
    }
    if items:  # omitempty
        out["items"] = [_result_entry(i) for i in items]
    return out


_ENTRY_ORDER = ("image", "exec", "stderr", "exitCode", "results")
_ITEM_ORDER = ("message", "severity", "resourceRef", "field", "file", "tags")
_REF_ORDER = ("apiVersion", "kind", "name", "namespace")
_FIELD_ORDER = ("path", "currentValue", "proposedValue")
_FILE_ORDER = ("path", "index")


def _ordered(data: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    out = {k: data[k] for k in order if k in data}
    for k, v in data.items():
        if k not in out:
            out[k] = v
    return out


def _result_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _ENTRY_ORDER:
        value = entry.get(key)
        if key == "exitCode":
            out[key] = int(value or 0)
        elif key == "results":
            if value:
                out[key] = [_result_item(r) for r in value]
        elif value:
            out[key] = value
    return out


def _result_item(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _ITEM_ORDER:
        value = item.get(key)
        if value in (None, "", []) or (key == "tags" and not value):
            continue
        # resourceRef/field/file are pointers in kpt's ResultItem: present means written,
        # even when empty (``resourceRef: {}``).
        if key == "resourceRef" and isinstance(value, Mapping):
            value = _clean(_ordered(value, _REF_ORDER))
        elif key == "field" and isinstance(value, Mapping):
            value = _clean(_ordered(value, _FIELD_ORDER))
        elif key == "file" and isinstance(value, Mapping):
            value = _clean(_ordered(value, _FILE_ORDER))
        out[key] = value
    return out


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v not in (None, "", {}, [])}


def dump_result_list(items: Sequence[Mapping[str, Any]], exit_code: int) -> str:
    """The results file text, as ``kpt fn render/eval --results-dir`` writes it."""
    wide = krm_yaml.Indent(mapping=2, sequence=4, offset=2)
    return krm_yaml.dumps(krm_yaml.from_plain(result_list(items, exit_code)), indent=wide)


# --------------------------------------------------------------------------- progress printer


class KptPrinter:
    """Writes kpt's progress lines to a text stream (stderr)."""

    def __init__(self, out: io.TextIOBase | io.StringIO) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(text)

    def package(self, display_name: str) -> None:
        self.write(f"Package {go_quote(display_name)}:\n")

    def package_done(self) -> None:
        self.write("\n")

    def running(
        self,
        name: str,
        *,
        resource_count: int | None = None,
        package: str = "",
        package_path: str = "",
    ) -> None:
        line = "[RUNNING] " + go_quote(name)
        if resource_count is not None:
            line += f" on {resource_count} resource(s)"
        if package:
            line += " on package " + go_quote(package)
        elif package_path:
            line += " on package at path " + go_quote(package_path)
        self.write(line + "\n")

    def results(self, results: Sequence[Mapping[str, Any]]) -> None:
        if results:
            lines = [result_item_text(r) for r in results]
            self.write(single_line_block("[Results]", lines) + "\n")

    def stderr(self, text: str) -> None:
        if text:
            self.write(single_line_block("Stderr", text.split("\n")) + "\n")

    def passed(
        self, name: str, seconds: float, results: Sequence[Mapping[str, Any]], stderr: str
    ) -> None:
        self.write(f"[PASS] {go_quote(name)} in {go_duration(seconds)}\n")
        self.results(results)
        self.stderr(stderr)

    def failed(
        self,
        name: str,
        seconds: float,
        results: Sequence[Mapping[str, Any]],
        *,
        stderr: str = "",
        exit_code: int | None = None,
    ) -> None:
        """A failed step; ``exit_code`` is given when the function itself exited non-zero
        (kpt's ExecError: stderr and exit code follow the results)."""
        self.write(f"[FAIL] {go_quote(name)} in {go_duration(seconds)}\n")
        self.results(results)
        if exit_code is not None:
            self.stderr(stderr)
            self.write(f"  Exit code: {exit_code}\n")

    def summary(self, functions: int, packages: int, *, ok: bool) -> None:
        if ok:
            self.write(f"Successfully executed {functions} function(s) in {packages} package(s).\n")
        elif functions == 0:
            self.write(f"Failed to execute any functions in {packages} package(s).\n")
        else:
            self.write(f"Partially executed {functions} function(s) in {packages} package(s).\n")

    def results_file(self, path: str) -> None:
        self.write(f"\nFor complete results, see {path}\n")

    def error(self, message: str) -> None:
        self.write(f"Error: {message} \n")


# --------------------------------------------------------------------------- argument parsing


class UsageError(Exception):
    """Bad command line (kpt/cobra prints ``Error: <message>`` and exits 1)."""


@dataclass
class FlagSpec:
    names: tuple[str, ...]  # long name first, then a one-letter short name if any
    kind: str  # "str" | "bool" | "list"
    default: Any = None


@dataclass
class ParsedArgs:
    positional: list[str] = field(default_factory=list)
    after_dash: list[str] | None = None
    values: dict[str, Any] = field(default_factory=dict)


def _parse_bool(text: str, flag: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise UsageError(
        f'invalid argument "{text}" for "--{flag}" flag: '
        f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax"
    )


def parse_flags(argv: Sequence[str], specs: Sequence[FlagSpec]) -> ParsedArgs:
    """pflag's rules: ``--name value``, ``--name=value``, ``-n value``, ``-nvalue``, booleans
    without a value, repeated list flags, ``--`` ending the flags."""
    by_name: dict[str, FlagSpec] = {}
    for spec in specs:
        for name in spec.names:
            by_name[name] = spec
    parsed = ParsedArgs()
    for spec in specs:
        parsed.values[spec.names[0]] = (
            list(spec.default or []) if spec.kind == "list" else spec.default
        )
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            parsed.after_dash = args[i:]
            break
        if arg.startswith("--") or (arg.startswith("-") and len(arg) > 1):
            long = arg.startswith("--")
            body = arg[2:] if long else arg[1:]
            value: str | None = None
            if long and "=" in body:
                body, value = body.split("=", 1)
            elif not long and len(body) > 1:
                body, rest = body[0], body[1:]
                value = rest[1:] if rest.startswith("=") else rest
            found = by_name.get(body)
            if found is None:
                shown = f"--{body}" if long else f"-{body}"
                raise UsageError(
                    f"unknown flag: {shown}"
                    if long
                    else f"unknown shorthand flag: '{body}' in {arg}"
                )
            spec = found
            key = spec.names[0]
            if spec.kind == "bool":
                parsed.values[key] = True if value is None else _parse_bool(value, key)
                continue
            if value is None:
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: --{key}")
                value = args[i]
                i += 1
            if spec.kind == "list":
                parsed.values[key].append(value)
            else:
                parsed.values[key] = value
            continue
        parsed.positional.append(arg)
    return parsed


# --------------------------------------------------------------------------- output writers

_READER_ANNOTATIONS = (
    "config.kubernetes.io/index",
    "config.kubernetes.io/path",
    "internal.config.kubernetes.io/index",
    "internal.config.kubernetes.io/path",
    "internal.config.kubernetes.io/seqindent",
)


def _drop_head_blank_lines(node: Any) -> None:
    """yaml.v3 keeps a document's head comment but not the blank lines after it."""
    ca = getattr(node, "ca", None)
    comment = getattr(ca, "comment", None) if ca is not None else None
    if not comment or len(comment) < 2 or not comment[1]:
        return
    last = comment[1][-1]
    value = getattr(last, "value", None)
    if isinstance(value, str) and value.endswith("\n\n"):
        last.value = value.rstrip("\n") + "\n"


def wrapped_output(items: Sequence[Any]) -> str:
    """``-o stdout``: a ResourceList keeping the reader annotations (kyaml quotes them)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    from porch.fn import kio

    copies = []
    for item in items:
        node = copy.deepcopy(item)
        _drop_head_blank_lines(node)
        kio.clear_annotations(node, [kio.PACKAGE_PATH])
        meta = node.get("metadata")
        ann = meta.get("annotations") if isinstance(meta, Mapping) else None
        if isinstance(ann, MutableMapping):
            for key in _READER_ANNOTATIONS:
                if key in ann:
                    ann[key] = SingleQuotedScalarString(str(ann[key]))
        copies.append(node)
    root = CommentedMap()
    root["apiVersion"] = "config.kubernetes.io/v1"
    root["kind"] = "ResourceList"
    root["items"] = CommentedSeq(copies)
    return krm_yaml.dumps(root)


def _item_indent(node: Any) -> krm_yaml.Indent:
    from porch.fn import kio

    return kio.WIDE if kio.annotation(node, kio.SEQINDENT) == "wide" else kio.COMPACT


def unwrapped_output(items: Sequence[Any]) -> str:
    """``-o unwrap``: the resources as a multi-document stream, reader annotations removed."""
    from porch.fn import kio

    docs = []
    for item in items:
        node = copy.deepcopy(item)
        _drop_head_blank_lines(node)
        indent = _item_indent(node)
        kio.clear_annotations(node, kio.WRITER_STRIPPED)
        docs.append(krm_yaml.dumps(node, indent=indent))
    return "---\n".join(docs)


# --------------------------------------------------------------------------- commands


@dataclass
class Context:
    cwd: Path
    stdout: io.StringIO
    stderr: io.StringIO
    flavor: str = "kpt-fn-render"
    exec_dir: Path | None = None

    @property
    def printer(self) -> KptPrinter:
        return KptPrinter(self.stderr)

    def abspath(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.cwd / p)


_RENDER_FLAGS = (
    FlagSpec(("image-prefix",), "str", ""),
    FlagSpec(("results-dir",), "str", ""),
    FlagSpec(("output", "o"), "str", ""),
    FlagSpec(("image-pull-policy",), "str", ""),
    FlagSpec(("allow-exec",), "bool", False),
    FlagSpec(("allow-network",), "bool", False),
    FlagSpec(("allow-alpha-wasm",), "bool", False),
    FlagSpec(("truncate-output",), "bool", True),
)
_EVAL_FLAGS = (
    FlagSpec(("image-prefix",), "str", ""),
    FlagSpec(("output", "o"), "str", ""),
    FlagSpec(("image", "i"), "str", ""),
    FlagSpec(("tag",), "str", ""),
    FlagSpec(("type", "t"), "str", ""),
    FlagSpec(("save", "s"), "bool", False),
    FlagSpec(("exec",), "str", ""),
    FlagSpec(("fn-config",), "str", ""),
    FlagSpec(("include-meta-resources", "m"), "bool", False),
    FlagSpec(("results-dir",), "str", ""),
    FlagSpec(("network",), "bool", False),
    FlagSpec(("mount",), "list"),
    FlagSpec(("env", "e"), "list"),
    FlagSpec(("as-current-user",), "bool", False),
    FlagSpec(("image-pull-policy",), "str", ""),
    FlagSpec(("allow-alpha-wasm",), "bool", False),
    FlagSpec(("match-api-version",), "str", ""),
    FlagSpec(("match-kind",), "str", ""),
    FlagSpec(("match-name",), "str", ""),
    FlagSpec(("match-namespace",), "str", ""),
    FlagSpec(("match-annotations",), "list"),
    FlagSpec(("match-labels",), "list"),
    FlagSpec(("exclude-api-version",), "str", ""),
    FlagSpec(("exclude-kind",), "str", ""),
    FlagSpec(("exclude-name",), "str", ""),
    FlagSpec(("exclude-namespace",), "str", ""),
    FlagSpec(("exclude-annotations",), "list"),
    FlagSpec(("exclude-labels",), "list"),
    FlagSpec(("truncate-output",), "bool", True),
)
_PKG_INIT_FLAGS = (
    FlagSpec(("description",), "str", "sample description"),
    FlagSpec(("keywords",), "list"),
    FlagSpec(("site",), "str", ""),
)

_PULL_POLICIES = ("always", "ifnotpresent", "never")
DEFAULT_PREFIX = "ghcr.io/kptdev/krm-functions-catalog/"


class CommandError(Exception):
    """A command failed; ``message`` is printed as kpt's main prints it."""

    def __init__(self, message: str, *, style: str = "kpt") -> None:
        super().__init__(message)
        self.message = message
        self.style = style  # "kpt": "Error: msg \n"; "plain": "msg \n"; "kubectl": "error: msg\n"


def _check_pull_policy(value: str) -> None:
    if value and value.lower() not in _PULL_POLICIES:
        raise UsageError(
            f'invalid argument "{value}" for "--image-pull-policy" flag: '
            "must be one of Always, IfNotPresent, Never"
        )


def _check_dest(ctx: Context, dest: str) -> None:
    if dest and dest not in ("stdout", "unwrap") and ctx.abspath(dest).exists():
        raise CommandError(
            f'directory "{dest}" already exists, please delete the directory and retry',
            style="kubectl",
        )


def _results_dir(ctx: Context, value: str) -> Path | None:
    if not value:
        return None
    path = ctx.abspath(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(
            f'cannot read or create results dir "{value}": {exc.strerror}', style="kubectl"
        ) from exc
    return path


def _save_results(
    ctx: Context,
    results_dir: Path | None,
    items: Sequence[Mapping[str, Any]],
    exit_code: int,
    *,
    newline: bool,
) -> None:
    if results_dir is None:
        return
    target = results_dir / "results.yaml"
    target.write_text(dump_result_list(items, exit_code), encoding="utf-8")
    if newline:
        ctx.printer.results_file(str(target))
    else:
        ctx.printer.write(f"For complete results, see {target}\n")


def _write_dest(ctx: Context, dest: str, items: Sequence[Any]) -> None:
    if dest == "stdout":
        ctx.stdout.write(wrapped_output(items))
    elif dest == "unwrap":
        ctx.stdout.write(unwrapped_output(items))
    elif dest:
        from porch.fn import kio

        root = ctx.abspath(dest)
        root.mkdir(parents=True, exist_ok=True)
        written = kio.write_items(kio.PackageFiles({}), [copy.deepcopy(i) for i in items])
        for rel, text in written.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


def _runtime(ctx: Context, *, allow_exec: bool) -> Any:
    from porch.fn.exec import ExecRuntime
    from porch.fn.runtime import BuiltinRuntime, Chain

    exec_dir = ctx.exec_dir or ctx.cwd
    return Chain([BuiltinRuntime(), ExecRuntime(allow_exec=allow_exec, exec_dir=exec_dir)])


def _package_dir(ctx: Context, positional: Sequence[str]) -> Path:
    if len(positional) > 1:
        raise CommandError(
            "0 or 1 arguments supported, function arguments go after '--'", style="kubectl"
        )
    path = ctx.abspath(positional[0]) if positional else ctx.cwd
    return path.resolve()


_OP_PREFIX = re.compile(r"^(?:[A-Za-z]+\.[A-Za-z.]+)?(?::\s)?(?:pkg [^\n]*?:\s)?")


def unwrap_error(text: str) -> str:
    """The innermost message of a kpt ``errors.E`` chain rendered as text
    (``fn.render: pkg .:\\n\\tpipeline.run: <message>`` → ``<message>``)."""
    if not re.match(r"^[A-Za-z]+\.[A-Za-z.]+: ", text):
        return text
    last = text.rsplit("\n\t", 1)[-1]
    m = re.match(r"^(?:[A-Za-z]+\.[A-Za-z.]+: )?(?:pkg [^\n]*?: )?", last)
    return last[m.end() :] if m else last


def _render_files(
    files: Mapping[str, str],
    runtime: Any,
    *,
    allow_exec: bool,
    reporter: Callable[[Any], None],
    package_name: str,
    image_prefix: str,
    write_status: bool,
    capture: list[Any] | None,
    run_unselected: bool = False,
) -> Any:
    """Call the render core. Adapter: the core has no switch to leave the Kptfile status alone
    (the catalog's expectations predate it, and ``-o`` runs never write it) nor a way to get
    the rendered resources for ``-o``; both are obtained by wrapping the core's status writer
    and the package writer around the call."""
    from porch.fn import kio
    from porch.fn import render as render_mod

    patched_status = render_mod.__dict__.get("_set_render_status")
    if not write_status and patched_status is None:
        raise CommandError(
            "the render core no longer has the Kptfile status writer this emulation switches "
            "off (porch.fn.render._set_render_status); update porch.fn.kptcli._render_files"
        )
    original_write = kio.write_items

    def capturing_write(pf: Any, items: list[Any]) -> dict[str, str]:
        if capture is not None:
            capture[:] = [[copy.deepcopy(i) for i in items]]
        return original_write(pf, items)

    try:
        if not write_status and patched_status is not None:
            render_mod._set_render_status = _no_status
        kio.write_items = capturing_write
        kwargs: dict[str, Any] = {
            "allow_exec": allow_exec,
            "reporter": reporter,
            "package_name": package_name,
        }
        if image_prefix:
            kwargs["default_image_prefix"] = image_prefix
        if run_unselected:
            kwargs["run_unselected"] = True
        return render_mod.render(files, runtime, **kwargs)
    finally:
        kio.write_items = original_write
        if patched_status is not None:
            render_mod._set_render_status = patched_status


def _no_status(*_args: Any, **_kwargs: Any) -> None:
    return None


def _save_on_failure(files: Mapping[str, str]) -> bool:
    from porch.fn.kptfile_pipeline import (
        SAVE_ON_FAILURE_ANNOTATION,
        KptfileError,
        annotation_true,
        decode_kptfile,
    )

    text = files.get("Kptfile")
    if text is None:
        return False
    try:
        return annotation_true(decode_kptfile(text), SAVE_ON_FAILURE_ANNOTATION)
    except KptfileError:
        return False


def cmd_render(ctx: Context, argv: Sequence[str]) -> int:
    from porch.fn.eval import apply_to_disk, load_files

    args = parse_flags(argv, _RENDER_FLAGS)
    if args.after_dash:
        args.positional.extend(args.after_dash)
    values = args.values
    _check_pull_policy(values["image-pull-policy"])
    if values["allow-alpha-wasm"]:
        raise CommandError("wasm functions are not supported by this kpt emulation")
    pkg_dir = _package_dir(ctx, args.positional)
    dest = values["output"]
    _check_dest(ctx, dest)
    results_dir = _results_dir(ctx, values["results-dir"])
    if not (pkg_dir / "Kptfile").exists():
        raise CommandError(f"No Kptfile found at {go_quote(str(pkg_dir))}.", style="plain-error")
    files = load_files(pkg_dir)
    printer = ctx.printer

    def reporter(event: Any) -> None:
        _print_event(printer, event)

    captured: list[Any] = []  # [items] once the core has handed its output to the writer
    result = _render_files(
        files,
        _runtime(ctx, allow_exec=values["allow-exec"]),
        allow_exec=values["allow-exec"],
        reporter=reporter,
        package_name=pkg_dir.name,
        image_prefix=values["image-prefix"],
        write_status=not dest and ctx.flavor != "krm-catalog",
        capture=captured,
        # the catalog's expectations come from a kpt that ran such a function on no input
        run_unselected=ctx.flavor == "krm-catalog",
    )
    error = result.error
    if not dest:
        if not error or _save_on_failure(files):
            printer.summary(result.executed, result.packages, ok=not error)
        changed = {p: t for p, t in result.files.items() if files.get(p) != t}
        deleted = [p for p in files if p not in result.files]
        apply_to_disk(pkg_dir, changed, deleted)
    results = result.results if isinstance(result.results, Mapping) else {}
    _save_results(
        ctx,
        results_dir,
        list(results.get("items") or []),
        int(results.get("exitCode") or 0),
        newline=False,
    )
    if error:
        if "already handled error" in error:
            return 1
        raise CommandError(unwrap_error(error))
    if dest:
        if not captured:
            raise CommandError(
                "the render core did not hand its output to porch.fn.kio.write_items; "
                "cannot write -o output"
            )
        _write_dest(ctx, dest, captured[0])
    return 0


def _print_event(printer: KptPrinter, event: Any) -> None:
    kind = getattr(event, "kind", "")
    name = getattr(event, "name", "") or getattr(event, "image", "") or getattr(event, "exec", "")
    if kind == "package":
        printer.package(event.package)
    elif kind == "running":
        printer.running(name, resource_count=event.resource_count, package=event.package)
    elif kind == "pass":
        printer.passed(name, event.duration, event.results, event.stderr)
    elif kind == "fail":
        printer.failed(
            name,
            event.duration,
            event.results,
            stderr=event.stderr,
            exit_code=event.exit_code if event.exec_error else None,
        )
    elif kind == "package-done":
        printer.package_done()


def _selector(values: Mapping[str, Any], prefix: str) -> Any:
    from porch.fn.eval import Selector

    def pairs(items: Sequence[str]) -> dict[str, str]:
        out = {}
        for item in items:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    return Selector(
        api_version=values[f"{prefix}-api-version"],
        kind=values[f"{prefix}-kind"],
        name=values[f"{prefix}-name"],
        namespace=values[f"{prefix}-namespace"],
        labels=pairs(values[f"{prefix}-labels"]),
        annotations=pairs(values[f"{prefix}-annotations"]),
    )


def cmd_eval(ctx: Context, argv: Sequence[str]) -> int:
    from porch.fn import eval as fneval

    args = parse_flags(argv, _EVAL_FLAGS)
    values = args.values
    _check_pull_policy(values["image-pull-policy"])
    if values["allow-alpha-wasm"]:
        raise CommandError(
            "wasm functions are not supported by this kpt emulation", style="kubectl"
        )
    if values["include-meta-resources"]:
        raise CommandError(
            "--include-meta-resources is no longer necessary because meta resources are now "
            "included by default",
            style="kubectl",
        )
    if values["mount"] or values["as-current-user"]:
        raise CommandError(
            "--mount and --as-current-user need a container runtime, which this kpt emulation "
            "does not use",
            style="kubectl",
        )
    if values["save"]:
        raise CommandError("--save is not supported by this kpt emulation", style="kubectl")
    if values["env"] and values["image"]:
        raise CommandError(
            "--env sets a container's environment, which this kpt emulation does not use",
            style="kubectl",
        )
    image = values["image"]
    if image and values["tag"]:
        from porch.fn.render import resolve_tag
        from porch.fn.runtime import resolve_image

        prefix = values["image-prefix"] or DEFAULT_PREFIX
        try:
            image = resolve_tag(resolve_image(image, prefix), values["tag"], None)
        except ValueError as exc:
            raise CommandError(str(exc), style="kubectl") from exc
    results_dir = _results_dir(ctx, values["results-dir"])
    dest = values["output"]
    _check_dest(ctx, dest)
    if not values["image"] and not values["exec"]:
        raise CommandError("must specify --image or --exec", style="kubectl")
    if values["exec"] and (values["network"] or values["env"]):
        raise CommandError(
            "--mount, --as-current-user, --network and --env can only be used with container "
            "functions",
            style="kubectl",
        )
    if args.positional == ["-"]:
        raise CommandError(
            "reading resources from stdin is not supported by this kpt emulation", style="kubectl"
        )
    pkg_dir = _package_dir(ctx, args.positional)
    data_items = list(args.after_dash or [])
    fn_config = str(ctx.abspath(values["fn-config"])) if values["fn-config"] else ""
    if fn_config and not Path(fn_config).exists():
        raise CommandError(f"missing function config file: {fn_config}", style="kubectl")
    options = fneval.EvalOptions(
        # kpt before v1.0.0-beta.5x (the catalog's expectations) left a --fn-config file that
        # belongs to the package in the function's input.
        exclude_fn_config=ctx.flavor != "krm-catalog",
        image=image,
        exec_command=values["exec"],
        fn_config_path=fn_config,
        data_items=data_items,
        selector=_selector(values, "match"),
        exclusion=_selector(values, "exclude"),
    )
    if values["image-prefix"]:
        options.image_prefix = values["image-prefix"]
    files = fneval.load_files(pkg_dir)
    printer = ctx.printer
    try:
        outcome = fneval.evaluate(
            files,
            _runtime(ctx, allow_exec=True),
            options,
            printer,
            package_dir=pkg_dir,
        )
    except fneval.AlreadyReported as exc:
        _save_results(ctx, results_dir, exc.outcome.fn_results, 1, newline=True)
        return 1
    except fneval.EvalError as exc:
        raise CommandError(str(exc), style="kubectl") from exc
    if dest:
        _write_dest(ctx, dest, outcome.items)
    else:
        changed, deleted = outcome.changes()
        fneval.apply_to_disk(pkg_dir, changed, deleted)
    _save_results(ctx, results_dir, outcome.fn_results, outcome.exit_code, newline=True)
    return 0


def cmd_pkg_init(ctx: Context, argv: Sequence[str]) -> int:
    from porch.krm.kptfile import init_package

    args = parse_flags(argv, _PKG_INIT_FLAGS)
    if len(args.positional) > 1:
        raise CommandError(
            f"accepts at most 1 arg(s), received {len(args.positional)}", style="kubectl"
        )
    rel = args.positional[0] if args.positional else "."
    target = ctx.abspath(rel).resolve()
    printer = ctx.printer
    if not target.exists():
        printer.write(f"creating package directory {rel}\n")
        target.mkdir(parents=True)
    generated = init_package(
        target.name,
        values_str(args.values["description"]),
        list(args.values["keywords"]),
        values_str(args.values["site"]),
    )
    for name in ("Kptfile", "README.md", "package-context.yaml"):
        path = target / name
        if path.exists() or name not in generated:
            continue
        printer.write(f"writing {os.path.join(rel, name) if rel != '.' else name}\n")
        path.write_text(generated[name], encoding="utf-8")
    return 0


def values_str(value: Any) -> str:
    return "" if value is None else str(value)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    flavor: str = "kpt-fn-render",
    exec_dir: Path | str | None = None,
) -> tuple[int, str, str]:
    """Run one emulated kpt command; ``(exit code, stdout, stderr)``."""
    ctx = Context(
        cwd=Path(cwd) if cwd is not None else Path.cwd(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        flavor=flavor,
        exec_dir=Path(exec_dir) if exec_dir is not None else None,
    )
    words = list(argv)
    try:
        if words[:2] == ["fn", "render"]:
            code = cmd_render(ctx, words[2:])
        elif words[:2] == ["fn", "eval"]:
            code = cmd_eval(ctx, words[2:])
        elif words[:2] == ["pkg", "init"]:
            code = cmd_pkg_init(ctx, words[2:])
        else:
            shown = " ".join(words[:2]) or "(none)"
            raise CommandError(
                f"unsupported kpt command {shown!r}: this emulation runs fn render, fn eval "
                "and pkg init",
                style="kubectl",
            )
    except UsageError as exc:
        ctx.stderr.write(f"error: {exc}\n")
        code = 1
    except CommandError as exc:
        if exc.style == "kubectl":
            ctx.stderr.write(f"error: {exc.message}\n")
        else:
            ctx.stderr.write(f"Error: {exc.message} \n")
        code = 1
    return code, ctx.stdout.getvalue(), ctx.stderr.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m porch.fn.kptcli ...``: the ``kpt`` shim used by the conformance harness."""
    import sys

    flavor = os.environ.get("PORCH_KPT_FLAVOR", "kpt-fn-render")
    exec_dir = os.environ.get("PORCH_KPT_EXEC_DIR") or None
    code, out, err = run(
        list(sys.argv[1:] if argv is None else argv), flavor=flavor, exec_dir=exec_dir
    )
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
