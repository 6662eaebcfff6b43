"""The builtin catalog: functions keyed by their catalog name (``set-namespace``), looked up by
image. ``register`` is used by the modules of ``porch.fn.builtins`` at import time."""

from __future__ import annotations

from collections.abc import Callable

from porch.fn.types import Builtin

_BUILTINS: dict[str, Builtin] = {}


def register(name: str) -> Callable[[Builtin], Builtin]:
    def wrap(fn: Builtin) -> Builtin:
        if name in _BUILTINS:
            raise RuntimeError(f"builtin function {name!r} registered twice")
        _BUILTINS[name] = fn
        return fn

    return wrap


def builtins() -> dict[str, Builtin]:
    """Every builtin by catalog name (imports the catalog on first use)."""
    import porch.fn.builtins  # noqa: F401  (registers)

    return dict(_BUILTINS)
