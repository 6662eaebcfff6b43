"""CEL expressions in PackageVariantSet templates (``repoExpr``, ``labelExprs``, ...).

cel-python (``celpy``) evaluates them; programs are compiled once per expression text. Every
expression must produce a string, as in Porch.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel

from porch.controllers.types import ReconcileError, ValidationError

_ENV = celpy.Environment()


@lru_cache(maxsize=512)
def _program(expr: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(expr))
    except Exception as exc:  # celpy raises its own parse error types
        raise ValidationError(f"invalid CEL expression {expr!r}: {_first_line(exc)}") from None


def compile_check(expr: str) -> None:
    _program(expr)


def evaluate(expr: str, variables: Mapping[str, Any]) -> str:
    program = _program(expr)
    activation = {k: json_to_cel(v) for k, v in variables.items()}
    try:
        result = program.evaluate(activation)
    except Exception as exc:  # evaluation errors: missing keys, wrong types
        raise ReconcileError(f"CEL expression {expr!r} failed: {_first_line(exc)}") from None
    if isinstance(result, Exception):
        raise ReconcileError(f"CEL expression {expr!r} failed: {_first_line(result)}")
    if not isinstance(result, str):
        raise ReconcileError(
            f"CEL expression {expr!r} must produce a string, not {type(result).__name__}"
        )
    return str(result)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
