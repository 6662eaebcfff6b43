"""The Kptfile (``kpt.dev/v1``) as typed data, read-only view; edits go through ``krm``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from porch.api._serde import from_dict, to_dict
from porch.api.types import Condition, GitLock, ReadinessGate

KPTFILE = "Kptfile"
KPTFILE_API_VERSION = "kpt.dev/v1"
LOCAL_CONFIG = "config.kubernetes.io/local-config"
SAVE_ON_RENDER_FAILURE = "kpt.dev/save-on-render-failure"
BFS_RENDERING = "kpt.dev/bfs-rendering"


@dataclass
class KptMeta:
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Upstream:
    type: str = ""
    git: GitLock | None = None
    update_strategy: str = ""


@dataclass
class UpstreamLock:
    type: str = ""
    git: GitLock | None = None


@dataclass
class PackageInfo:
    site: str = ""
    emails: list[str] = field(default_factory=list)
    license: str = ""
    license_file: str = ""
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    man: str = ""
    readiness_gates: list[ReadinessGate] = field(default_factory=list)


@dataclass
class Selector:
    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Function:
    image: str = ""
    exec: str = ""
    name: str = ""
    config_path: str = ""
    config_map: dict[str, str] = field(default_factory=dict)
    tag: str = ""
    selectors: list[Selector] = field(default_factory=list)
    exclude: list[Selector] = field(default_factory=list)


@dataclass
class Pipeline:
    mutators: list[Function] = field(default_factory=list)
    validators: list[Function] = field(default_factory=list)


@dataclass
class Inventory:
    namespace: str = ""
    name: str = ""
    inventory_id: str = ""


@dataclass
class PipelineStepResult:
    name: str = ""
    image: str = ""
    exec_path: str = ""
    stderr: str = ""
    exit_code: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    error_results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class KptRenderStatus:
    mutation_steps: list[PipelineStepResult] = field(default_factory=list)
    validation_steps: list[PipelineStepResult] = field(default_factory=list)
    error_summary: str = ""


@dataclass
class KptStatus:
    conditions: list[Condition] = field(default_factory=list)
    render_status: KptRenderStatus | None = None


@dataclass
class Kptfile:
    api_version: str = KPTFILE_API_VERSION
    kind: str = KPTFILE
    metadata: KptMeta = field(default_factory=KptMeta)
    upstream: Upstream | None = None
    upstream_lock: UpstreamLock | None = None
    info: PackageInfo | None = None
    pipeline: Pipeline | None = None
    inventory: Inventory | None = None
    status: KptStatus | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Kptfile:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_dict(self)
        return out
