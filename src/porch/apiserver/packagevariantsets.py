"""``config.porch.kpt.dev/v1alpha2`` PackageVariantSet: stored now, reconciled later."""

from __future__ import annotations

from porch.api.types import CONFIG_GROUP
from porch.apiserver.kinds import ResourceType, name_column
from porch.apiserver.stored import StoredBackend
from porch.engine import Engine


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group=CONFIG_GROUP,
        version="v1alpha2",
        plural="packagevariantsets",
        singular="packagevariantset",
        kind="PackageVariantSet",
        backend=StoredBackend(engine, "PackageVariantSet"),
        subresources=("status",),
        columns=(name_column(),),
    )
