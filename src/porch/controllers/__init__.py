"""PackageVariant and PackageVariantSet controllers, clients of the API like any other.

They talk to the server only through ``porch.client`` (an import-linter contract keeps them
away from the engine, store and repositories), so the same code runs in-process beside
``porch serve --controllers`` and as a separate ``porch controllers --server URL``.
"""

from porch.controllers.packagevariant import PackageVariantReconciler
from porch.controllers.packagevariantset import PackageVariantSetReconciler, variant_name
from porch.controllers.runner import ControllerRunner
from porch.controllers.types import Outcome, ReconcileError, ValidationError

__all__ = [
    "ControllerRunner",
    "Outcome",
    "PackageVariantReconciler",
    "PackageVariantSetReconciler",
    "ReconcileError",
    "ValidationError",
    "variant_name",
]
