"""The set of served resources, looked up by group/version/plural or by short name."""

from __future__ import annotations

from collections.abc import Iterable

from porch.apiserver import (
    packagerevisionresources,
    packagerevisions,
    packages,
    packagevariants,
    packagevariantsets,
    repositories,
    secrets,
)
from porch.apiserver.kinds import ResourceType
from porch.engine import Engine


class Registry:
    def __init__(self, types: Iterable[ResourceType]) -> None:
        self.types = tuple(types)
        self._by_path = {(t.group, t.version, t.plural): t for t in self.types}

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def group_versions(self) -> dict[str, list[str]]:
        """Every API group (core excluded) and its versions, in the order first served."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            if t.group and t.version not in out.setdefault(t.group, []):
                out[t.group].append(t.version)
        return out

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]


def build_registry(engine: Engine) -> Registry:
    return Registry(
        m.resource(engine)
        for m in (
            packagerevisions,
            packagerevisionresources,
            packages,
            repositories,
            packagevariants,
            packagevariantsets,
            secrets,
        )
    )
