"""The catalog's ``starlark`` function: run a Starlark script over the resource list.

The functionConfig is a ``StarlarkRun`` (``fn.kpt.dev/v1alpha1``: ``source``, optional ``params``)
or a ``ConfigMap`` whose ``data.source`` is the script. The script sees ``ctx.resource_list``
(``items`` and ``functionConfig``, plain Starlark dicts and lists) and may modify, delete or add
items; ``ctx.environment`` is an empty dict (the server's environment is not the script's
business) and ``ctx.open_api`` is an empty dict.

The script runs in a separate Python process (``starlark_go`` cannot be interrupted), so a
runaway script is killed after ``timeout`` seconds. The ``starlark_go`` bindings have neither
``struct`` values nor ``load()``; the script is therefore rewritten, keeping every line and
column in place: ``ctx.resource_list`` becomes the global ``ctx_resource_list`` (same length),
``load()`` statements become ``pass`` and ``module.member`` of a loaded module becomes
``module_member``, bound to a Python implementation (``json``, ``base64``, ``yaml``, ``hash``,
``math``, ``re``, ``krmfn``; members of other catalog modules fail with a clear error). A
prelude line fetching the (mutable) resource list is prepended; reported line numbers are
corrected for it.

Results are merged back into the original ruamel trees: unchanged values keep their nodes,
comments and key order; new keys are appended in Go's (sorted) order, like the catalog whose
output passes through Go maps.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import io
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import tokenize
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, cast

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from porch.fn.registry import register
from porch.fn.types import FunctionFailure, ResourceList
from porch.krm.yaml import from_plain, to_plain_value

DEFAULT_TIMEOUT = 60.0
FAILURE_STDERR = "failed to evaluate function: error: function failure"
DEFAULT_PROGRAM_NAME = "starlark-function-run"
_ID_ANNOTATION = "internal.porch.kpt.dev/starlark-item-id"
_CTX_FIELDS = ("resource_list", "open_api", "environment")
_STDERR_ATTR = "stderr"
_PRELUDE = "ctx_resource_list = _porch_resource_list()\n"

# Catalog modules a script may load (file name -> bound name).
KNOWN_MODULES = {
    "bsoup.star": "bsoup",
    "encoding/base64.star": "base64",
    "encoding/csv.star": "csv",
    "encoding/json.star": "json",
    "encoding/yaml.star": "yaml",
    "geo.star": "geo",
    "hash.star": "hash",
    "html.star": "html",
    "http.star": "http",
    "math.star": "math",
    "re.star": "re",
    "time.star": "time",
    "xlsx.star": "xlsx",
    "zipfile.star": "ZipFile",
    "krmfn.star": "krmfn",
}


# --------------------------------------------------------------------------------------------
# The function (parent process)


def starlark_run(rl: ResourceList, *, timeout: float | None = None) -> None:
    """Run the configured script; ``timeout`` (seconds) bounds the script's run time."""
    try:
        name, source = _config(rl.function_config)
    except ValueError as exc:
        _fail(rl, str(exc))
    ids: dict[str, CommentedMap] = {}
    had: dict[str, tuple[bool, bool]] = {}  # id -> (had metadata, had annotations)
    plain_items: list[Any] = []
    for n, item in enumerate(rl.items):
        key = str(n)
        ids[key] = item
        plain = to_plain_value(item)
        if isinstance(plain, dict):
            had_metadata = isinstance(plain.get("metadata"), dict)
            meta = plain.setdefault("metadata", {})
            if isinstance(meta, dict):
                had[key] = (had_metadata, isinstance(meta.get("annotations"), dict))
                annotations = meta.get("annotations")
                if not isinstance(annotations, dict):
                    annotations = meta["annotations"] = {}
                annotations[_ID_ANNOTATION] = key
        plain_items.append(plain)
    resource_list: dict[str, Any] = {
        "apiVersion": "config.kubernetes.io/v1",
        "kind": "ResourceList",
        "items": plain_items,
    }
    if rl.function_config is not None:
        resource_list["functionConfig"] = to_plain_value(rl.function_config)
    request: dict[str, Any] = {"name": name, "source": source, "resource_list": resource_list}
    if re.search(r"\bctx\s*\.\s*open_api\b", source):
        request["open_api"] = open_api()
    reply = _run_worker(request, DEFAULT_TIMEOUT if timeout is None else timeout)
    prints = [str(p) for p in reply.get("prints", [])]
    if not reply.get("ok"):
        _fail(rl, str(reply.get("error", "starlark: unknown error")), prints)
    out_items = reply.get("items")
    if not isinstance(out_items, list):
        _fail(rl, 'ctx.resource_list["items"] must be a list of resources', prints)
    new_items: list[CommentedMap] = []
    for out in out_items:
        if not isinstance(out, dict):
            _fail(rl, f"resource_list items must be mappings, got {_go_type(out)}", prints)
        item_id = _pop_id(out, had)
        original = ids.pop(item_id, None) if item_id is not None else None
        if original is not None:
            new_items.append(_merge_map(original, out))
        else:
            node = _from_go(out)
            assert isinstance(node, CommentedMap)
            new_items.append(node)
    rl.items[:] = new_items
    if prints:
        _attach_stderr(rl, "\n".join(prints))


register("starlark")(starlark_run)


def _fail(rl: ResourceList, message: str, prints: list[str] | None = None) -> NoReturn:
    rl.results.append({"message": message, "severity": "error"})
    raise FunctionFailure("\n".join([*(prints or []), FAILURE_STDERR]))


def _attach_stderr(rl: ResourceList, text: str) -> None:
    # The builtin protocol has no stderr channel on success; a ResourceList that grows a
    # ``stderr`` attribute receives the script's print() output.
    if hasattr(rl, _STDERR_ATTR):
        previous = getattr(rl, _STDERR_ATTR) or ""
        setattr(rl, _STDERR_ATTR, previous + text)


def open_api() -> dict[str, Any]:
    """A small OpenAPI document (``definitions`` with group/version/kind) of the built-in kinds.

    Built from the kubeval schema bundle; definition names follow Kubernetes' own
    (``io.k8s.api.apps.v1.Deployment``), core kinds living under ``io.k8s.api.core.v1``.
    """
    from porch.fn.builtins.kubeval import bundle

    data = bundle()
    definitions: dict[str, Any] = {}
    for key, model in data["kinds"].items():
        group_version, _, kind = key.rpartition("/")
        group, _, version = group_version.rpartition("/")
        package = group.split(".")[0] if group else "core"
        body = dict(data["definitions"].get(model, {}))
        body["x-kubernetes-group-version-kind"] = [
            {"group": group, "kind": kind, "version": version}
        ]
        definitions[f"io.k8s.api.{package}.{version}.{kind}"] = body
    return {"definitions": definitions}


def _config(fc: Mapping[str, Any] | None) -> tuple[str, str]:
    """(program name, source) from the functionConfig, with the catalog's error texts."""
    if not fc:
        raise ValueError("FunctionConfig is missing. Expect `ConfigMap` or `StarlarkRun`")
    api_version = str(fc.get("apiVersion") or "")
    kind = str(fc.get("kind") or "")
    meta = fc.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, Mapping) else ""
    if api_version == "v1" and kind == "ConfigMap":
        data = fc.get("data")
        source_value = data.get("source") if isinstance(data, Mapping) else None
    elif api_version == "fn.kpt.dev/v1alpha1" and kind == "StarlarkRun":
        source_value = fc.get("source")
        params = fc.get("params")
        if params is not None and not isinstance(params, Mapping):
            raise ValueError("`params` must be a map")
    else:
        raise ValueError(
            "`functionConfig` must be either /v1, Kind=ConfigMap or "
            "fn.kpt.dev/v1alpha1, Kind=StarlarkRun, but we got: "
            f"{_gvk_string(api_version, kind)}"
        )
    if source_value is not None and not isinstance(source_value, str):
        raise ValueError("`source` must be a string")
    if not source_value:
        raise ValueError("`source` must not be empty")
    return name or DEFAULT_PROGRAM_NAME, source_value


def _gvk_string(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={kind}"


def _run_worker(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Evaluate in a long-lived worker process (starting one costs ~0.15 s); a worker that
    overruns ``timeout`` or dies is killed and replaced, so a runaway script never lingers."""
    worker = _acquire_worker()
    try:
        reply = worker.call(request, timeout)
    except _WorkerTimeout:
        worker.kill()
        return {
            "ok": False,
            "error": f"starlark program did not finish within {timeout:g}s and was stopped",
        }
    except _WorkerDied as exc:
        worker.kill()
        return {"ok": False, "error": f"starlark runtime failed: {exc}"}
    _release_worker(worker)
    return reply


_WORKER_CODE = (
    "import importlib.util as u, sys\n"
    "s = u.spec_from_file_location('porch_starlark_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s)\n"
    "s.loader.exec_module(m)\n"
    "m.worker_loop()\n"
)
_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()
_MAX_IDLE = 4


class _WorkerTimeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = json.dumps(request).encode()
        try:
            self.proc.stdin.write(len(data).to_bytes(8, "big") + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerDied(f"cannot reach the worker: {exc}") from None
        deadline = time.monotonic() + timeout
        head = self._read(8, deadline)
        body = self._read(int.from_bytes(head, "big"), deadline)
        try:
            reply = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            raise _WorkerDied("the worker sent a malformed reply") from None
        if not isinstance(reply, dict):
            raise _WorkerDied("the worker sent a malformed reply")
        return reply

    def _read(self, size: int, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks: list[bytes] = []
        missing = size
        while missing > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _WorkerTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise _WorkerTimeout()
            chunk = os.read(fd, min(missing, 1 << 20))
            if not chunk:
                raise _WorkerDied(f"the worker exited (code {self.proc.poll()})")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _acquire_worker() -> _Worker:
    with _IDLE_LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.alive():
                return worker
            worker.kill()
    return _Worker()


def _release_worker(worker: _Worker) -> None:
    with _IDLE_LOCK:
        if worker.alive() and len(_IDLE) < _MAX_IDLE:
            _IDLE.append(worker)
            return
    worker.kill()


@atexit.register
def _stop_workers() -> None:
    with _IDLE_LOCK:
        workers, _IDLE[:] = list(_IDLE), []
    for worker in workers:
        worker.kill()


# --------------------------------------------------------------------------------------------
# Merging the script's output back into the original trees


def _pop_id(out: dict[str, Any], had: Mapping[str, tuple[bool, bool]]) -> str | None:
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        return None
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        return None
    key = annotations.pop(_ID_ANNOTATION, None)
    if not isinstance(key, str):
        return None
    had_metadata, had_annotations = had.get(key, (True, True))
    if not annotations and not had_annotations:
        del meta["annotations"]
    if not meta and not had_metadata:
        del out["metadata"]
    return key


def _same(old: Any, new: Any) -> bool:
    plain = to_plain_value(old)
    return type(plain) is type(new) and bool(plain == new)


def _merge_map(old: CommentedMap, new: Mapping[str, Any]) -> CommentedMap:
    for key in [k for k in old if k not in new]:
        del old[key]
    for key in _go_sorted(new):
        value = new[key]
        if key in old:
            old[key] = _merge_value(old[key], value)
        else:
            old[key] = _from_go(value)
    return old


def _merge_value(old: Any, new: Any) -> Any:
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        return _merge_map(old, new)
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        for i, value in enumerate(new):
            if i < len(old):
                old[i] = _merge_value(old[i], value)
            else:
                old.append(_from_go(value))
        del old[len(new) :]
        return old
    if _same(old, new):
        return old
    return _from_go(new)


def _from_go(value: Any) -> Any:
    """A new tree for plain output, keys sorted as Go's yaml marshaller sorts map keys."""
    if isinstance(value, dict):
        out = CommentedMap()
        for key in _go_sorted(value):
            out[key] = _from_go(value[key])
        return out
    if isinstance(value, list):
        return CommentedSeq([_from_go(v) for v in value])
    return from_plain(value)


def _go_sorted(mapping: Mapping[str, Any]) -> list[str]:
    return sorted(mapping, key=_natural_key)


def _natural_key(key: Any) -> list[tuple[int, Any]]:
    parts: list[tuple[int, Any]] = []
    for digits, text in re.findall(r"(\d+)|(\D+)", str(key)):
        parts.append((0, int(digits)) if digits else (1, text))
    return parts


def _go_type(value: Any) -> str:
    return {dict: "map", list: "list", str: "string", int: "int", float: "float"}.get(
        type(value), type(value).__name__
    )


# --------------------------------------------------------------------------------------------
# Source rewriting (shared by parent tests and the worker)


def rewrite_source(source: str) -> tuple[str, dict[str, str]]:
    """The script with ``ctx.x``/``module.member``/``load()`` rewritten in place.

    Returns the rewritten text (same lines and columns) and the global names it introduced for
    module members, mapped to ``module.member``.
    """
    lines = source.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return _rewrite_ctx_regex(source), {}
    edits: list[tuple[int, int, int, int, str]] = []  # (row, col, end_row, end_col, text)
    modules: dict[str, str] = {}  # bound name -> module file
    members: dict[str, str] = {}
    significant = [t for t in tokens if t.type not in _TRIVIA]
    i = 0
    while i < len(significant):
        tok = significant[i]
        if tok.type == tokenize.NAME and tok.string == "load" and _at_line_start(lines, tok):
            end = _load_end(significant, i)
            if end is not None:
                bound = _load_bindings(significant[i : end + 1])
                if bound is not None:
                    modules.update(bound)
                    last = significant[end]
                    edits.append((tok.start[0], tok.start[1], last.end[0], last.end[1], "pass"))
                    i = end + 1
                    continue
        i += 1
    for n in range(len(significant) - 2):
        first, dot, attr = significant[n], significant[n + 1], significant[n + 2]
        if not (first.type == tokenize.NAME and dot.string == "." and attr.type == tokenize.NAME):
            continue
        if n > 0 and significant[n - 1].string == ".":
            continue
        if first.end != dot.start or dot.end != attr.start:
            continue
        if first.string == "ctx" and attr.string in _CTX_FIELDS:
            pass
        elif first.string in modules:
            members[f"{first.string}_{attr.string}"] = f"{modules[first.string]}:{attr.string}"
        else:
            continue
        edits.append((dot.start[0], dot.start[1], dot.end[0], dot.end[1], "_"))
    return _apply_edits(lines, edits), members


_TRIVIA = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
}


def _at_line_start(lines: list[str], tok: tokenize.TokenInfo) -> bool:
    return lines[tok.start[0] - 1][: tok.start[1]].strip() == ""


def _load_end(tokens: list[tokenize.TokenInfo], start: int) -> int | None:
    if start + 1 >= len(tokens) or tokens[start + 1].string != "(":
        return None
    depth = 0
    for j in range(start + 1, len(tokens)):
        if tokens[j].string == "(":
            depth += 1
        elif tokens[j].string == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def _load_bindings(tokens: list[tokenize.TokenInfo]) -> dict[str, str] | None:
    """``load('m.star', 'a', b='c')`` -> {"a": "m.star:a", "b": "m.star:c"}."""
    args = tokens[2:-1]
    parts: list[list[tokenize.TokenInfo]] = [[]]
    for tok in args:
        if tok.string == ",":
            parts.append([])
        else:
            parts[-1].append(tok)
    parts = [p for p in parts if p]
    if not parts or len(parts[0]) != 1 or parts[0][0].type != tokenize.STRING:
        return None
    module = _string_value(parts[0][0].string)
    if module is None:
        return None
    bound: dict[str, str] = {}
    for part in parts[1:]:
        if len(part) == 1 and part[0].type == tokenize.STRING:
            symbol = _string_value(part[0].string)
            if symbol is None:
                return None
            bound[symbol] = f"{module}:{symbol}"
        elif len(part) == 3 and part[1].string == "=" and part[2].type == tokenize.STRING:
            symbol = _string_value(part[2].string)
            if symbol is None:
                return None
            bound[part[0].string] = f"{module}:{symbol}"
        else:
            return None
    return bound


def _string_value(literal: str) -> str | None:
    m = re.fullmatch(r"""(['"])(.*)\1""", literal, re.S)
    return m.group(2) if m else None


def _apply_edits(lines: list[str], edits: list[tuple[int, int, int, int, str]]) -> str:
    out = [list(line) for line in lines]
    for row, col, end_row, end_col, text in edits:
        if row == end_row:
            span = end_col - col
            out[row - 1][col:end_col] = list(text.ljust(span))
            continue
        first = out[row - 1]
        first[col:] = list(text.ljust(len(first) - col - 1)) + ["\n"]
        for r in range(row, end_row - 1):
            out[r] = [" " if c not in "\r\n" else c for c in out[r]]
        last = out[end_row - 1]
        last[:end_col] = [" "] * end_col
    return "".join("".join(chars) for chars in out)


def _rewrite_ctx_regex(source: str) -> str:
    return re.sub(r"\bctx\.(resource_list|open_api|environment)\b", r"ctx_\1", source)


# --------------------------------------------------------------------------------------------
# The worker (runs in a child process; only json, starlark_go and this module)


def worker_main() -> None:
    """One request on stdin, one reply on stdout (kept for running a script by hand)."""
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    sys.stdout.write(json.dumps(_answer(request)))
    sys.stdout.flush()


def worker_loop() -> None:
    """Serve length-prefixed JSON requests until stdin closes (see :class:`_Worker`)."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the reply pipe
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        body = inp.read(int.from_bytes(head, "big"))
        try:
            reply = _answer(json.loads(body.decode("utf-8")))
        except Exception as exc:  # a bug here must not take the worker's caller down
            reply = {"ok": False, "error": f"starlark runtime failed: {exc}", "prints": []}
        data = json.dumps(reply).encode()
        out.write(len(data).to_bytes(8, "big") + data)
        out.flush()


def _answer(request: Mapping[str, Any]) -> dict[str, Any]:
    prints: list[str] = []
    try:
        items = _evaluate(request, prints)
        return {"ok": True, "items": items, "prints": prints}
    except _ScriptError as exc:
        return {"ok": False, "error": str(exc), "prints": prints}


class _ScriptError(Exception):
    pass


def _evaluate(request: Mapping[str, Any], prints: list[str]) -> Any:
    import starlark_go
    from starlark_go import errors

    starlark_go.configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)
    name = str(request["name"])
    resource_list = request["resource_list"]
    source, members = rewrite_source(str(request["source"]))
    program = _PRELUDE + source

    def fetch() -> Any:
        return resource_list

    def on_print(*args: Any) -> None:
        prints.append(" ".join(str(a) for a in args))

    interp = starlark_go.Starlark(print=on_print)
    interp.set(
        _porch_resource_list=fetch,
        ctx_open_api=request.get("open_api") or {},
        ctx_environment={},
    )
    bindings: dict[str, Any] = {}
    for global_name, target in members.items():
        bindings[global_name] = _module_member(target)
    if bindings:
        interp.set(**bindings)
    try:
        interp.exec(program, filename=name, print=on_print)
    except errors.SyntaxError as exc:
        line, column = exc.line, exc.column
        if str(exc.msg).startswith("got newline") and column == 1 and line > 2:
            # Go's scanner places the newline token at the end of the line it ends.
            line -= 1
            column = len(program.splitlines()[line - 1]) + 1
        raise _ScriptError(f"{exc.filename}:{line - 1}:{column}: {exc.msg}") from None
    except errors.ResolveError as exc:
        items = list(getattr(exc, "errors", []))
        if items:
            first = items[0]
            raise _ScriptError(f"{name}:{first.line - 1}:{first.column}: {first.msg}") from None
        raise _ScriptError(str(exc)) from None
    except errors.EvalError as exc:
        raise _ScriptError(_eval_message(exc)) from None
    except errors.StarlarkError as exc:
        raise _ScriptError(str(exc)) from None
    try:
        out = cast(Any, interp.get("ctx_resource_list"))
    except errors.StarlarkError as exc:
        raise _ScriptError(f"cannot convert the resource list back: {exc}") from None
    if not isinstance(out, dict):
        raise _ScriptError("ctx.resource_list must be a dict")
    return _jsonable(out.get("items"))


def _eval_message(exc: Any) -> str:
    text = str(getattr(exc, "error", "") or exc)
    prefix = f"{exc.filename} in {exc.function_name}:{exc.line}:{exc.column}: "
    if text.startswith(prefix):
        return text[len(prefix) :]
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        raise _ScriptError(f"cannot convert float {value} to YAML")
    return value


def _module_member(target: str) -> Callable[..., Any]:
    module, _, rest = target.partition(":")
    _symbol, _, member = rest.partition(":")
    impl = _LIBRARY.get(module, {}).get(member)
    if impl is not None:
        return impl
    if module not in KNOWN_MODULES:
        missing = f"cannot load {module}: unknown module"
    else:
        missing = f"{KNOWN_MODULES[module]}.{member} is not supported by this starlark runtime"

    def unsupported(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(missing)

    return unsupported


def _json_encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _json_indent(text: str, prefix: str = "", indent: str = "\t") -> str:
    return json.dumps(json.loads(text), indent=indent) if not prefix else text


def _yaml_loads(text: str) -> Any:
    from porch.krm.yaml import parse_documents

    objects = parse_documents(text).entries
    node = objects[0].node if objects else None
    return to_plain_value(node)


def _yaml_dumps(value: Any) -> str:
    from porch.krm.yaml import dumps

    return dumps(from_plain(value))


def _gvk_matches(obj: Any, api_version: str, kind: str) -> bool:
    return (
        isinstance(obj, dict) and obj.get("apiVersion") == api_version and (obj.get("kind") == kind)
    )


def _meta(obj: Any, field: str) -> Any:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta.get(field, "") if isinstance(meta, dict) else ""


_LIBRARY: dict[str, dict[str, Callable[..., Any]]] = {
    "encoding/json.star": {
        "encode": _json_encode,
        "decode": json.loads,
        "indent": _json_indent,
    },
    "encoding/base64.star": {
        "encode": lambda s, encoding=None: base64.b64encode(str(s).encode()).decode(),
        "decode": lambda s, encoding=None: base64.b64decode(str(s)).decode("utf-8", "replace"),
    },
    "encoding/yaml.star": {"loads": _yaml_loads, "dumps": _yaml_dumps},
    "hash.star": {
        "md5": lambda s: hashlib.md5(str(s).encode()).hexdigest(),
        "sha1": lambda s: hashlib.sha1(str(s).encode()).hexdigest(),
        "sha256": lambda s: hashlib.sha256(str(s).encode()).hexdigest(),
    },
    "math.star": {
        "ceil": lambda x: math.ceil(x),
        "floor": lambda x: math.floor(x),
        "round": lambda x: round(x),
        "sqrt": math.sqrt,
        "pow": math.pow,
        "fabs": math.fabs,
        "exp": math.exp,
        "log": math.log,
    },
    "re.star": {
        "findall": lambda pattern, text, flags=0: re.findall(pattern, text),
        "split": lambda pattern, text, maxsplit=0: re.split(pattern, text, maxsplit=maxsplit),
        "sub": lambda pattern, repl, text, count=0: re.sub(pattern, repl, text, count=count),
        "match": lambda pattern, text: [
            list(m.groups()) and [m.group(0), *m.groups()] or [m.group(0)]
            for m in [re.match(pattern, text)]
            if m
        ],
    },
    "krmfn.star": {
        "match_gvk": _gvk_matches,
        "match_name": lambda obj, name: _meta(obj, "name") == name,
        "match_namespace": lambda obj, ns: _meta(obj, "namespace") == ns,
    },
}
