"""The render hook: the engine renders after every content change (spec §3.1m, §3.2d, §3.3).

:class:`FunctionRenderer` plugs the KRM function runtime (:mod:`porch.fn`) in: it runs the
Kptfile pipelines of a package's in-memory file map through ``porch.fn.render`` with a runtime
chain built by :func:`build_runtime` (builtin → exec allow-list → remote function runner) and
hands the engine the rendered files, the kpt ``FunctionResultList`` and the error text.

:class:`NoFunctionRuntime` is the fallback of an engine built without a runtime: a package
whose Kptfile declares a pipeline cannot be rendered and says so, instead of silently passing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from porch.errors import Invalid
from porch.fn.runtime import CATALOG_PREFIXES, BuiltinRuntime, Chain
from porch.fn.types import DEFAULT_IMAGE_PREFIX, Runtime

log = logging.getLogger(__name__)

DEFAULT_FUNCTION_TIMEOUT = 60.0
"""Seconds one function call may take before it fails (kpt has none; Porch's runner has 5 min)."""


@dataclass
class RenderOutcome:
    files: dict[str, str]
    result: dict[str, Any] | None = None  # a kpt FunctionResultList, JSON-shaped
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


class Renderer(Protocol):
    def render(self, files: Mapping[str, str]) -> RenderOutcome: ...


class NoFunctionRuntime:
    """Renders packages without a pipeline (a no-op); refuses packages that declare one."""

    def __init__(self, has_pipeline: Any) -> None:
        self._has_pipeline = has_pipeline

    def render(self, files: Mapping[str, str]) -> RenderOutcome:
        if self._has_pipeline(files):
            return RenderOutcome(
                dict(files),
                error="no KRM function runtime is configured on this server; cannot run the"
                " Kptfile pipeline",
            )
        return RenderOutcome(dict(files))


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RuntimeOptions:
    """How ``porch serve`` runs functions (flags ``--function-runner``, ``--default-image-
    prefix``, ``--function-timeout``, ``--exec-config``)."""

    function_runner: str = ""  # host:port of a function runner; "" = none
    default_image_prefix: str = DEFAULT_IMAGE_PREFIX
    function_timeout: float = DEFAULT_FUNCTION_TIMEOUT
    exec_config: Path | None = None  # allow-listed binaries; None = exec runtime off
    extra: tuple[Runtime, ...] = field(default=(), compare=False)  # appended links (tests)

    def validate(self) -> None:
        if self.function_timeout <= 0:
            raise Invalid(f"--function-timeout must be positive, got {self.function_timeout:g}")
        if not self.default_image_prefix.strip():
            raise Invalid("--default-image-prefix must not be empty")
        if self.function_runner:
            host, sep, port = self.function_runner.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise Invalid(f'--function-runner must be HOST:PORT, got "{self.function_runner}"')


def build_runtime(options: RuntimeOptions) -> Runtime:
    """The chain builtin → exec (only with an allow-list) → remote runner (only if given)."""
    options.validate()
    prefixes = list(CATALOG_PREFIXES)
    if options.default_image_prefix.rstrip("/") + "/" not in prefixes:
        prefixes.append(options.default_image_prefix)
    links: list[Runtime] = [BuiltinRuntime(prefixes=prefixes)]
    if options.exec_config is not None:
        from porch.fn.exec import ExecConfig, ExecRuntime

        config = ExecConfig.from_file(options.exec_config)
        config.default_image_prefix = options.default_image_prefix
        links.append(ExecRuntime(config))
    if options.function_runner:
        from porch.fn.remote import RemoteRuntime

        links.append(RemoteRuntime(options.function_runner))
    links.extend(options.extra)
    return Chain(links)


# --------------------------------------------------------------------------- the renderer


class FunctionRenderer:
    """Renders a package's files with the KRM function runtime (the kpt render algorithm).

    Packages in which no Kptfile declares a pipeline are returned unchanged without running
    anything (as ``kpt fn render`` leaves them byte-for-byte). ``timeout`` bounds each function
    call.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        default_image_prefix: str = DEFAULT_IMAGE_PREFIX,
        timeout: float = DEFAULT_FUNCTION_TIMEOUT,
    ) -> None:
        self.runtime = runtime
        self.default_image_prefix = default_image_prefix
        self.timeout = timeout

    @classmethod
    def from_options(cls, options: RuntimeOptions) -> FunctionRenderer:
        return cls(
            build_runtime(options),
            default_image_prefix=options.default_image_prefix,
            timeout=options.function_timeout,
        )

    def render(self, files: Mapping[str, str]) -> RenderOutcome:
        if not declares_pipeline(files):
            return RenderOutcome(dict(files))
        from porch.fn.render import render as render_package

        try:
            got = render_package(
                dict(files),
                self.runtime,
                default_image_prefix=self.default_image_prefix,
                timeout=self.timeout,
            )
        except Invalid as exc:  # bad input the core refused up front (unparseable Kptfile...)
            return RenderOutcome(dict(files), error=str(exc))
        result = result_list(got.results)
        error = got.error
        if error:
            error += failure_details(result)
        return RenderOutcome(dict(got.files), result=result, error=error)


def result_list(results: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """kpt's ``FunctionResultList`` (JSON-shaped) of a render; None when no function ran."""
    if not results or not results.get("items"):
        return None
    out = dict(results)
    out.setdefault("apiVersion", "kpt.dev/v1")
    out.setdefault("kind", "FunctionResultList")
    out.setdefault("metadata", {"name": "fnresults"})
    out.setdefault("exitCode", 0)
    return out


def failure_details(result: Mapping[str, Any] | None) -> str:
    """What kpt prints about the failed steps, for the error text.

    kpt's error value often says only ``already handled error`` (its progress output said the
    rest), and Porch's caller sees nothing but the error; so the failed steps' results and
    stderr are appended to it.
    """
    if not result:
        return ""
    from porch.fn.render import result_line

    lines: list[str] = []
    for item in result.get("items") or []:
        code = int(item.get("exitCode") or 0)
        if code == 0:
            continue
        name = item.get("image") or item.get("exec") or item.get("execPath") or "function"
        lines.append(f'\n[FAIL] "{name}" (exit code {code})')
        for res in item.get("results") or []:
            lines.append("  " + result_line(res))
        stderr = str(item.get("stderr") or "").strip()
        if stderr:
            lines.append("  stderr: " + stderr.replace("\n", "\n    "))
    return "\n".join(lines)


def declares_pipeline(files: Mapping[str, str]) -> bool:
    """True when any Kptfile of the package (root or nested) declares a function pipeline.

    A Kptfile that cannot be read counts as declaring one: the render core reports it.
    """
    from porch.engine.convert import kptfile_summary

    for path, text in files.items():
        if path != "Kptfile" and not path.endswith("/Kptfile"):
            continue
        if "pipeline" not in text:
            continue
        try:
            if kptfile_summary({"Kptfile": text})["hasPipeline"]:
                return True
        except Exception:  # noqa: BLE001 - unreadable: let the render core explain
            return True
    return False
