"""Shared shapes of the function runtime.

A function sees a :class:`ResourceList`: its ``items`` are ruamel ``CommentedMap`` trees (so
comments and key order survive a builtin), ``function_config`` is the functionConfig object (or
None) and ``results`` collects structured results (``config.kubernetes.io/v1`` Result shape:
``message``, ``severity`` ("error" | "warning" | "info"), optional ``resourceRef``, ``field``,
``file``, ``tags``).

A builtin is a callable ``fn(rl: ResourceList) -> None`` that edits ``rl`` in place. It reports
problems by appending results; raising :class:`FunctionFailure` means "non-zero exit" (the
runtime then marks the step failed, keeping the results already appended). Results of severity
"error" alone do not fail the step: as with kpt, only the exit code does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ruamel.yaml.comments import CommentedMap

RESOURCE_LIST_API_VERSION = "config.kubernetes.io/v1"
RESOURCE_LIST_KIND = "ResourceList"
DEFAULT_IMAGE_PREFIX = "ghcr.io/kptdev/krm-functions-catalog/"


@dataclass
class ResourceList:
    items: list[CommentedMap] = field(default_factory=list)
    function_config: CommentedMap | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""  # what a builtin "printed" to stderr (starlark's print), even on success


class FunctionFailure(Exception):
    """A function ended with a non-zero exit; ``message`` is what it printed as its error."""

    def __init__(self, message: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class FunctionNotFound(LookupError):
    """No runtime of this chain knows the image: the next runtime is tried."""


class Builtin(Protocol):
    def __call__(self, rl: ResourceList) -> None: ...


@dataclass(frozen=True)
class FunctionSpec:
    """What to run: a resolved ``image`` (with tag) or an ``exec`` path, plus its args."""

    image: str = ""
    exec_path: str = ""
    args: tuple[str, ...] = ()


@dataclass
class FunctionOutput:
    resource_list: ResourceList
    stderr: str = ""
    exit_code: int = 0


class Runtime(Protocol):
    """One link of the runtime chain; raises FunctionNotFound to let the next one try."""

    def run(self, spec: FunctionSpec, rl: ResourceList, *, timeout: float) -> FunctionOutput: ...
