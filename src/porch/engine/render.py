"""The render hook: the engine renders after every content change (spec §3.1m, §3.2d, §3.3).

The KRM function runtime plugs in here. Without one, a package whose Kptfile declares a
pipeline cannot be rendered and says so, instead of silently passing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


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
