"""Local executables as KRM functions (spec §7.2 "exec evaluator").

Two ways to reach a binary:

* an **allow-list** (:class:`ExecConfig`) mapping images to local binaries the way Porch's
  ``FunctionConfig.binaryExecutor`` does: the image's name (last path segment without the tag)
  selects an entry, its registry part must start with one of the entry's prefixes (``""`` stands
  for the default image prefix; no prefixes at all means any registry) and its tag picks the
  binary;
* a direct ``exec:`` path from a Kptfile (or ``kpt fn eval --exec``), only when the runtime was
  built with ``allow_exec=True``.

The binary gets the ResourceList on stdin and must print one on stdout. A run is bounded: on
timeout the whole process group is killed, and stdout is read incrementally and refused past
``max_output_bytes`` so a runaway function cannot exhaust memory. A non-zero exit is a failed
:class:`FunctionOutput` (kpt still reads the results the function printed); a run that cannot
produce an output at all (timeout, output too large, not a ResourceList, cannot start) raises
:class:`FunctionExecutionError`, a :class:`FunctionFailure` whose ``message`` names the function.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from porch.errors import Invalid
from porch.fn import resourcelist
from porch.fn.runtime import parse_image
from porch.fn.types import (
    DEFAULT_IMAGE_PREFIX,
    FunctionFailure,
    FunctionNotFound,
    FunctionOutput,
    FunctionSpec,
    ResourceList,
)
from porch.krm import yaml as krm_yaml

MAX_OUTPUT_BYTES = 6 * 1024 * 1024
"""Default cap on a function's stdout (Porch's gRPC message limit)."""
MAX_STDERR_BYTES = 1024 * 1024
"""stderr beyond this is dropped (the run goes on); a marker line says so."""

FUNCTION_CONFIG_API_VERSION = "config.porch.kpt.dev/v1alpha1"
_CHUNK = 64 * 1024


class FunctionExecutionError(FunctionFailure):
    """The function ran but gave no usable output: timeout, oversized or invalid output, or the
    binary could not be started. ``message`` is the whole, user-facing explanation."""

    def __init__(self, message: str, *, function: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code=exit_code)
        self.function = function


class ExecConfigError(Invalid):
    """The exec allow-list is malformed."""


# --------------------------------------------------------------------------- allow-list


@dataclass(frozen=True)
class BinaryEntry:
    """One allow-listed function: image name, accepted registry prefixes, tag → binary path."""

    name: str
    prefixes: tuple[str, ...] | None  # None: any registry
    tags: Mapping[str, str]
    args: tuple[str, ...] = ()

    def matches_registry(self, registry: str, default_prefix: str) -> bool:
        if self.prefixes is None:
            return True
        for prefix in self.prefixes:
            want = (prefix or default_prefix).rstrip("/")
            if registry.startswith(want):
                return True
        return False


@dataclass
class ExecConfig:
    """The allow-list: which images map to which local binaries."""

    entries: list[BinaryEntry] = field(default_factory=list)
    default_image_prefix: str = DEFAULT_IMAGE_PREFIX

    def lookup(self, image: str) -> tuple[str, tuple[str, ...]] | None:
        """``(binary path, extra args)`` for an image, or None when it is not allow-listed."""
        ref = parse_image(image)
        registry = ref.repository.rpartition("/")[0]
        tag = ref.tag or ("latest" if not ref.digest else "")
        default = self.default_image_prefix.rstrip("/")
        for entry in self.entries:
            if entry.name != ref.name or not entry.matches_registry(registry, default):
                continue
            path = entry.tags.get(tag)
            if path is None and "*" in entry.tags:
                path = entry.tags["*"]
            if path is not None:
                return path, entry.args
        return None

    def images(self) -> list[str]:
        """A readable list of what is allowed (for logs and ``--help`` output)."""
        out = []
        for entry in self.entries:
            prefixes = entry.prefixes if entry.prefixes is not None else ("*",)
            for prefix in prefixes:
                head = (prefix or self.default_image_prefix).rstrip("/")
                for tag in entry.tags:
                    out.append(f"{head}/{entry.name}:{tag}")
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> ExecConfig:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ExecConfigError(f"cannot read exec config {path}: {exc.strerror}") from exc
        try:
            docs = krm_yaml.parse_documents(text, filename=str(path)).objects()
        except Invalid as exc:
            raise ExecConfigError(f"exec config {path} is not valid YAML: {exc}") from exc
        return cls.from_documents(
            [krm_yaml.to_plain(d) for d in docs], base_dir=path.parent, source=str(path)
        )

    @classmethod
    def from_documents(
        cls,
        docs: Sequence[Mapping[str, Any]],
        *,
        base_dir: str | Path = ".",
        source: str = "exec config",
    ) -> ExecConfig:
        """Build from plain data: either one document of the form::

            defaultImagePrefix: ghcr.io/kptdev/krm-functions-catalog   # optional
            functionsDir: ./bin       # optional base of relative paths (default: the file's dir)
            functions:
            - image: set-namespace    # image name: last path segment, no tag
              prefixes: [""]          # optional; "" = default prefix; absent = any registry
              tags: [v0.4.1, latest]  # "*" = any tag
              path: set-namespace     # absolute, or relative to functionsDir
              args: []                # optional extra arguments

        or any number of Porch ``FunctionConfig`` objects (``spec.binaryExecutor``)."""
        config = cls()
        base = Path(base_dir)
        for index, doc in enumerate(docs):
            where = f"{source} document {index + 1}"
            if doc.get("kind") == "FunctionConfig":
                config._add_function_config(doc, base, where)
                continue
            if "functions" not in doc:
                raise ExecConfigError(
                    f"{where}: expected a 'functions' list or a FunctionConfig object"
                )
            prefix = doc.get("defaultImagePrefix")
            if prefix is not None:
                config.default_image_prefix = _string(prefix, f"{where}: defaultImagePrefix")
            fdir = doc.get("functionsDir")
            doc_base = base / _string(fdir, f"{where}: functionsDir") if fdir else base
            functions = doc.get("functions") or []
            if not isinstance(functions, list):
                raise ExecConfigError(f"{where}: functions must be a list")
            for i, item in enumerate(functions):
                if not isinstance(item, Mapping):
                    raise ExecConfigError(f"{where}: functions[{i}] must be an object")
                config.entries.append(_entry(item, doc_base, f"{where}: functions[{i}]"))
        return config

    def _add_function_config(self, doc: Mapping[str, Any], base: Path, where: str) -> None:
        if doc.get("apiVersion") != FUNCTION_CONFIG_API_VERSION:
            raise ExecConfigError(
                f"{where}: FunctionConfig apiVersion must be {FUNCTION_CONFIG_API_VERSION}"
            )
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            raise ExecConfigError(f"{where}: FunctionConfig has no spec")
        binary = spec.get("binaryExecutor")
        if binary is None:
            return  # a goExecutor/podExecutor-only config: nothing for the exec runtime
        if not isinstance(binary, Mapping):
            raise ExecConfigError(f"{where}: spec.binaryExecutor must be an object")
        item = {
            "image": spec.get("image"),
            "prefixes": spec.get("prefixes", [""]),
            "tags": binary.get("tags"),
            "path": binary.get("path"),
        }
        self.entries.append(_entry(item, base, where))


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ExecConfigError(f"{what} must be a non-empty string")
    return value


def _entry(item: Mapping[str, Any], base: Path, where: str) -> BinaryEntry:
    name = _string(item.get("image"), f"{where}: image")
    if "/" in name or ":" in name:
        raise ExecConfigError(
            f"{where}: image must be a bare function name (no registry, no tag), got {name!r}"
        )
    raw_path = _string(item.get("path"), f"{where}: path")
    path = Path(raw_path) if os.path.isabs(raw_path) else (base / raw_path).absolute()
    tags = item.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
        raise ExecConfigError(f"{where}: tags must be a non-empty list of strings")
    prefixes_raw = item.get("prefixes")
    prefixes: tuple[str, ...] | None = None
    if prefixes_raw is not None:
        if not isinstance(prefixes_raw, list) or not all(isinstance(p, str) for p in prefixes_raw):
            raise ExecConfigError(f"{where}: prefixes must be a list of strings")
        prefixes = tuple(prefixes_raw) or None
    args = item.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ExecConfigError(f"{where}: args must be a list of strings")
    return BinaryEntry(
        name=name,
        prefixes=prefixes,
        tags={tag: str(path) for tag in tags},
        args=tuple(args),
    )


# --------------------------------------------------------------------------- processes


@dataclass
class ProcessResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


class ProcessTimeout(Exception):
    def __init__(self, stderr: bytes) -> None:
        super().__init__("timed out")
        self.stderr = stderr


class OutputTooLarge(Exception):
    def __init__(self, stderr: bytes) -> None:
        super().__init__("output too large")
        self.stderr = stderr


def run_process(
    argv: Sequence[str],
    stdin: bytes,
    *,
    timeout: float,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    max_stderr_bytes: int = MAX_STDERR_BYTES,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``argv`` in its own process group, feeding ``stdin`` and collecting its output.

    Raises :class:`ProcessTimeout` or :class:`OutputTooLarge` after killing the whole group;
    ``OSError`` when the binary cannot be started.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + max(timeout, 0.0)
    out = bytearray()
    err = bytearray()
    err_dropped = False
    pending = memoryview(stdin)
    sel = selectors.DefaultSelector()
    try:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
        if pending:
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(proc)
                raise ProcessTimeout(bytes(err))
            for key, _ in sel.select(min(remaining, 1.0)):
                if key.fileobj is proc.stdin:
                    try:
                        written = os.write(proc.stdin.fileno(), pending[:_CHUNK])
                    except BrokenPipeError:
                        written = len(pending)  # the function stopped reading: fine
                    pending = pending[written:]
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                try:
                    chunk = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.fileobj is proc.stdout:
                    out += chunk
                    if len(out) > max_output_bytes:
                        _kill_group(proc)
                        raise OutputTooLarge(bytes(err))
                elif len(err) < max_stderr_bytes:
                    err += chunk[: max_stderr_bytes - len(err)]
                elif not err_dropped:
                    err_dropped = True
        remaining = deadline - time.monotonic()
        try:
            code = proc.wait(timeout=max(remaining, 0.01))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ProcessTimeout(bytes(err)) from None
    finally:
        sel.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if not stream.closed:
                stream.close()
        if proc.returncode is None:
            _kill_group(proc)
    if err_dropped:
        err += b"\n[stderr truncated]\n"
    return ProcessResult(stdout=bytes(out), stderr=bytes(err), exit_code=_exit_code(code))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        proc.kill()


def _exit_code(code: int) -> int:
    # A signal death is reported as a shell would (128 + signal number).
    return 128 - code if code < 0 else code


# --------------------------------------------------------------------------- the runtime


class ExecRuntime:
    """Runs allow-listed binaries (by image) and, if allowed, direct ``exec`` paths."""

    def __init__(
        self,
        config: ExecConfig | None = None,
        *,
        allow_exec: bool = False,
        exec_dir: str | Path | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or ExecConfig()
        self.allow_exec = allow_exec
        self.exec_dir = Path(exec_dir) if exec_dir is not None else None
        self.max_output_bytes = max_output_bytes
        self.env = env

    def resolve(self, spec: FunctionSpec) -> tuple[list[str], str]:
        """``(argv, display name)`` for a spec; raises FunctionNotFound when not ours."""
        if spec.image:
            found = self.config.lookup(spec.image)
            if found is None:
                raise FunctionNotFound(spec.image)
            path, extra = found
            return [path, *extra, *spec.args], spec.image
        if spec.exec_path and self.allow_exec:
            return self._exec_argv(spec), spec.exec_path
        raise FunctionNotFound(spec.exec_path or spec.image)

    def _exec_argv(self, spec: FunctionSpec) -> list[str]:
        # As kpt: the exec string is split shell-style into the binary and its arguments.
        try:
            words = shlex.split(spec.exec_path)
        except ValueError as exc:
            raise FunctionExecutionError(
                f"exec command {spec.exec_path!r} must be valid: {exc}", function=spec.exec_path
            ) from None
        if not words:
            raise FunctionNotFound(spec.exec_path)
        binary = words[0]
        if self.exec_dir is not None and not os.path.isabs(binary) and os.sep in binary:
            binary = str(self.exec_dir / binary)
        return [binary, *words[1:], *spec.args]

    def run(self, spec: FunctionSpec, rl: ResourceList, *, timeout: float) -> FunctionOutput:
        argv, name = self.resolve(spec)
        return self.run_argv(argv, name, dump_resource_list(rl), timeout)

    def run_argv(
        self, argv: Sequence[str], name: str, data: bytes, timeout: float
    ) -> FunctionOutput:
        result = self.run_raw(argv, name, data, timeout)
        stderr = result.stderr.decode("utf-8", errors="replace")
        return FunctionOutput(
            parse_function_output(result.stdout, result.exit_code, name, stderr),
            stderr=stderr,
            exit_code=result.exit_code,
        )

    def run_raw(self, argv: Sequence[str], name: str, data: bytes, timeout: float) -> ProcessResult:
        """Run without touching the bytes (the runner passes them through unchanged)."""
        try:
            return run_process(
                argv,
                data,
                timeout=timeout,
                max_output_bytes=self.max_output_bytes,
                cwd=str(self.exec_dir) if self.exec_dir is not None else None,
                env=self.env,
            )
        except ProcessTimeout as exc:
            raise FunctionExecutionError(
                f"function {name} timed out after {_seconds(timeout)}" + _stderr_suffix(exc.stderr),
                function=name,
            ) from None
        except OutputTooLarge as exc:
            raise FunctionExecutionError(
                f"function {name} output exceeds the limit of {self.max_output_bytes} bytes"
                + _stderr_suffix(exc.stderr),
                function=name,
            ) from None
        except OSError as exc:
            raise FunctionExecutionError(
                f"function {name} could not be started: {argv[0]}: {exc.strerror or exc}",
                function=name,
                exit_code=127,
            ) from None


def _seconds(timeout: float) -> str:
    return f"{round(timeout, 2):g}s"


def _stderr_suffix(stderr: bytes) -> str:
    text = stderr.decode("utf-8", errors="replace").strip()
    return f"; stderr: {text}" if text else ""


def parse_function_output(
    stdout: bytes, exit_code: int, name: str, stderr: str = ""
) -> ResourceList:
    """The function's ResourceList. On a non-zero exit kpt still reads stdout when it holds
    one (for the results); if it does not, the failure stands with no results."""
    if exit_code != 0 and not stdout.strip():
        return ResourceList()
    try:
        return load_resource_list(stdout, source=f"output of function {name}")
    except (Invalid, UnicodeDecodeError) as exc:
        if exit_code != 0:
            return ResourceList()
        raise FunctionExecutionError(
            f"function {name} produced invalid output: {exc}" + _stderr_suffix(stderr.encode()),
            function=name,
        ) from None


def exit_status_text(code: int) -> str:
    """How Go's os/exec spells a failed run ("exit status 1", "signal: killed")."""
    if code > 128 and code - 128 in _SIGNAL_NAMES:
        return f"signal: {_SIGNAL_NAMES[code - 128]}"
    return f"exit status {code}"


_SIGNAL_NAMES = {signal.SIGKILL.value: "killed", signal.SIGTERM.value: "terminated"}

_EXIT_STATUS = re.compile(r"exit status (\d+)")


def parse_exit_status(text: str) -> int | None:
    """The exit code inside a Go "exit status N" message, if any."""
    m = _EXIT_STATUS.search(text)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- comment fidelity
#
# Items nested in a ResourceList sit one level deeper than in their files. ruamel keeps the
# absolute column of end-of-line comments and attaches a comment line that precedes a ``- ``
# entry to the entry before it (or, for the first, to the sequence). Unless corrected, an item
# that went through an exec function or the runner would come back with its comments moved:
# a header comment glued to the end of the previous resource, end-of-line comments pushed two
# columns right. These two helpers make the wire round trip comment-faithful for ruamel trees.


def dump_resource_list(rl: ResourceList) -> bytes:
    """:func:`resourcelist.dumps`, with end-of-line comments kept at their place relative to
    each item (ruamel would otherwise keep their absolute column)."""
    shift = _nested_column()
    for item in rl.items:
        _shift_eol_comments(item, shift)
    try:
        return resourcelist.dumps(rl).encode("utf-8")
    finally:
        for item in rl.items:
            _shift_eol_comments(item, -shift)
            _reset_tokens(item)


def _reset_tokens(item: Any) -> None:
    """Clear the "already written" marks ruamel's emitter leaves on header comments: a tree
    that keeps them dumps without those comments once it has been deep-copied."""
    for node in _walk(item):
        ca = getattr(node, "ca", None)
        if ca is None:
            continue
        stack: list[Any] = [ca.comment, list(ca.items.values()), getattr(ca, "end", None)]
        while stack:
            value = stack.pop()
            if isinstance(value, CommentToken):
                value.reset()
            elif isinstance(value, list):
                stack.extend(value)


def load_resource_list(data: bytes | str, *, source: str) -> ResourceList:
    """:func:`resourcelist.loads`, handing each item back the comments that belong to it: its
    header comment lines and end-of-line comments at the columns they have in a file."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        docs = krm_yaml.parse_documents(text, filename=source)
    except Invalid as exc:
        raise resourcelist.ResourceListError(f"{source} is not valid YAML: {exc}") from exc
    objects = docs.objects()
    if len(objects) == 1 and isinstance(objects[0].get("items"), CommentedSeq):
        _settle_items(objects[0]["items"])
    # Validation and shape are resourcelist's; re-serialising would undo the settling, so
    # the checked tree is handed over as is.
    return _resource_list_of(objects, source)


def _resource_list_of(objects: list[CommentedMap], source: str) -> ResourceList:
    if len(objects) != 1:
        raise resourcelist.ResourceListError(
            f"{source} must be exactly one ResourceList object, found {len(objects)} documents"
        )
    root = objects[0]
    skeleton = CommentedMap((k, v) for k, v in root.items() if k != "items")
    checked = resourcelist.loads(krm_yaml.dumps(skeleton), source=source)
    items_node = root.get("items")
    if items_node is None:
        items_node = []
    if not isinstance(items_node, list):
        raise resourcelist.ResourceListError(f"{source}: items must be a list")
    for index, item in enumerate(items_node):
        if not isinstance(item, CommentedMap):
            raise resourcelist.ResourceListError(
                f"{source}: items[{index}] is not a KRM object (a mapping)"
            )
    fc = root.get("functionConfig")
    return ResourceList(
        items=list(items_node),
        function_config=fc if isinstance(fc, CommentedMap) else None,
        results=checked.results,
    )


def _settle_items(seq: CommentedSeq) -> None:
    """Give each entry of a ResourceList's ``items`` its own header comment and file columns."""
    for index, item in enumerate(seq):
        if not isinstance(item, CommentedMap):
            continue
        column = _item_column(item)
        header = ""
        if index > 0:
            header = _take_trailing_lines(seq[index - 1], column)
        header += _take_entry_comments(seq, index)
        if header.strip():
            _set_header(item, header)
    for item in seq:
        if isinstance(item, CommentedMap):
            _shift_eol_comments(item, -_item_column(item))


def _take_entry_comments(seq: CommentedSeq, index: int) -> str:
    """Comment lines ruamel attached to the sequence right before entry ``index``."""
    tokens: list[CommentToken] = []
    if index == 0 and seq.ca.comment and len(seq.ca.comment) > 1:
        tokens += [t for t in seq.ca.comment[1] or [] if isinstance(t, CommentToken)]
        seq.ca.comment[1] = None
    slots = seq.ca.items.get(index)
    if slots and len(slots) > 1 and isinstance(slots[1], list):
        tokens += [t for t in slots[1] if isinstance(t, CommentToken)]
        slots[1] = None
    lines = "".join(t.value for t in tokens).splitlines(keepends=True)
    return "".join(line.lstrip(" \t") if line.strip() else "\n" for line in lines)


_NESTED: list[int] = []


def _nested_column() -> int:
    """Column at which :func:`resourcelist.dumps` writes an item's keys (measured once)."""
    if not _NESTED:
        probe = CommentedMap()
        probe["k"] = "v"
        text = resourcelist.dumps(ResourceList(items=[probe]))
        line = next(li for li in text.splitlines() if li.lstrip(" -").startswith("k:"))
        _NESTED.append(line.index("k:"))
    return _NESTED[0]


def _item_column(item: Any) -> int:
    lc = getattr(item, "lc", None)
    col = getattr(lc, "col", None) if lc is not None else None
    return col if isinstance(col, int) and not _is_flow(item) else 0


def _is_flow(node: Any) -> bool:
    fa = getattr(node, "fa", None)
    return bool(fa is not None and fa.flow_style())


def _eol_tokens(node: Any) -> list[CommentToken]:
    """The end-of-line comment tokens of ``node``'s own entries (not header or end comments)."""
    ca = getattr(node, "ca", None)
    if ca is None:
        return []
    slot = 2 if isinstance(node, CommentedMap) else 0
    out = []
    for slots in ca.items.values():
        if isinstance(slots, list) and len(slots) > slot:
            token = slots[slot]
            if isinstance(token, CommentToken) and token.value.startswith("#"):
                out.append(token)
    return out


def _walk(node: Any) -> list[Any]:
    stack: list[Any] = [node]
    out: list[Any] = []
    while stack:
        current = stack.pop()
        if isinstance(current, CommentedMap):
            out.append(current)
            stack.extend(current.values())
        elif isinstance(current, CommentedSeq):
            out.append(current)
            stack.extend(current)
    return out


def _shift_eol_comments(item: Any, delta: int) -> None:
    if delta == 0:
        return
    seen: set[int] = set()
    for node in _walk(item):
        for token in _eol_tokens(node):
            if id(token) in seen:
                continue
            seen.add(id(token))
            column = token.column if token.start_mark is not None else token._column
            if column is None:
                continue
            token.start_mark = CommentMark(max(0, column + delta))  # type: ignore[assignment]


def _take_trailing_lines(item: Any, next_column: int) -> str:
    """Cut from the end of ``item`` the comment lines that stand before the next entry's dash
    (left of its keys' column): ruamel hangs them on the last scalar's comment, or on the
    ``end`` comments of the innermost collections along the item's last path."""
    path: list[Any] = []
    leaf: tuple[list[Any], int] | None = None
    node = item
    while True:
        path.append(node)
        if isinstance(node, CommentedMap) and node:
            key: Any = next(reversed(node))
            slot = 2
        elif isinstance(node, CommentedSeq) and node:
            key = len(node) - 1
            slot = 0
        else:
            break
        child = node[key]
        if isinstance(child, CommentedMap | CommentedSeq) and child and not _is_flow(child):
            node = child
            continue
        slots = node.ca.items.get(key)
        if slots and len(slots) > slot and isinstance(slots[slot], CommentToken):
            leaf = (slots, slot)
        break
    moved = ""
    if leaf is not None:
        moved += _cut_token(leaf[0], leaf[1], next_column)
    for collection in reversed(path):
        moved += _cut_end(collection, next_column)
    return "".join(li.lstrip(" \t") if li.strip() else "\n" for li in moved.splitlines(True))


def _is_header_line(line: str, next_column: int) -> bool:
    stripped = line.lstrip(" ")
    return stripped.startswith("#") and len(line) - len(stripped) < next_column


def _cut_token(slots: list[Any], slot: int, next_column: int) -> str:
    token: CommentToken = slots[slot]
    lines = token.value.splitlines(keepends=True)
    # The first line is the end-of-line part (a comment right of the value, or empty) unless
    # the token starts on a line of its own, as after a block scalar.
    first = 0 if lines and lines[0].startswith("#") and token.column < next_column else 1
    for index in range(first, len(lines)):
        if _is_header_line(lines[index], next_column):
            kept, moved = lines[:index], lines[index:]
            if kept and kept != ["\n"]:
                token.value = "".join(kept)
            else:
                slots[slot] = None  # nothing of its own was left
            return "".join(moved)
    return ""


def _cut_end(node: Any, next_column: int) -> str:
    ca = getattr(node, "ca", None)
    end = getattr(ca, "end", None) if ca is not None else None
    if not end:
        return ""
    for index, token in enumerate(end):
        if isinstance(token, CommentToken) and _is_header_line(
            " " * (token.column or 0) + token.value, next_column
        ):
            moved = end[index:]
            del end[index:]
            return "".join(t.value for t in moved if isinstance(t, CommentToken))
    return ""


def _set_header(item: Any, text: str) -> None:
    if not isinstance(item, CommentedMap) or not text:
        return
    if not text.endswith("\n"):
        text += "\n"
    item.ca.comment = [None, [CommentToken(text, CommentMark(0))]]
