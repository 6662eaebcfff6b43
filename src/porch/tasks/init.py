"""``init``: a fresh package, as ``kpt pkg init`` writes it (spec §4.1)."""

from __future__ import annotations

from porch.api.types import PackageInitTaskSpec
from porch.errors import Invalid
from porch.krm.kptfile import init_package


def init_task(spec: PackageInitTaskSpec, package_path: str) -> dict[str, str]:
    if spec.subpackage:
        # Later steps need a root Kptfile; a subpackage-only init cannot satisfy them (spec §4.1).
        raise Invalid("init task: subpackage is not supported; create the package at its own path")
    name = package_path.rsplit("/", 1)[-1]
    description = spec.description or f"{package_path} description"
    return init_package(name, description, list(spec.keywords), spec.site)
