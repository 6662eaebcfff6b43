"""A throw-away OCI registry for tests, or a skip (a failure where CI requires it)."""

from __future__ import annotations

from typing import Any

import pytest

from porch.testing.oci_registry import OciRegistry, PasswordHasherMissing, RegistryMissing, required


def registry_or_skip(*args: Any, **kwargs: Any) -> OciRegistry:
    """``OciRegistry(...)`` (not started yet). Without Debian's docker-registry the test is
    skipped, unless ``PORCH_REQUIRE_OCI=1`` makes that a failure; without a password hasher
    only a registry that needs one (auth) is skipped, always."""
    try:
        return OciRegistry(*args, **kwargs)
    except PasswordHasherMissing as exc:
        pytest.skip(f"auth tests need a bcrypt hasher: {exc}")
    except RegistryMissing as exc:
        if required():
            pytest.fail(f"PORCH_REQUIRE_OCI=1 but {exc}")
        pytest.skip(str(exc))
