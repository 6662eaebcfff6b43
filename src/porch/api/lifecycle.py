"""The lifecycle transition table of spec §2.

Two endpoints update a PackageRevision: the main one (PUT/PATCH of the object) and the
``approval`` subresource. Which moves each allows is data, not scattered ``if``s.
"""

from __future__ import annotations

from enum import StrEnum

from porch.api.types import Lifecycle
from porch.errors import Invalid

D, P, PUB, DP = (
    Lifecycle.DRAFT,
    Lifecycle.PROPOSED,
    Lifecycle.PUBLISHED,
    Lifecycle.DELETION_PROPOSED,
)


class Endpoint(StrEnum):
    MAIN = "main"
    APPROVAL = "approval"


TRANSITIONS: dict[Endpoint, frozenset[tuple[Lifecycle, Lifecycle]]] = {
    Endpoint.MAIN: frozenset(
        {(D, D), (D, P), (P, D), (P, P), (PUB, PUB), (PUB, DP), (DP, PUB), (DP, DP)}
    ),
    Endpoint.APPROVAL: frozenset({(P, D), (P, PUB), (PUB, DP), (DP, PUB)}),
}


def parse_lifecycle(value: str) -> Lifecycle:
    """Empty means Draft; anything but the four values is invalid."""
    if value == "":
        return D
    try:
        return Lifecycle(value)
    except ValueError:
        raise Invalid(f"unsupported lifecycle value: {value}") from None


def check_create_lifecycle(value: str) -> Lifecycle:
    if value not in ("", D):
        raise Invalid(
            f"spec.lifecycle: Invalid value: {value!r}: value can be only created as Draft"
        )
    return D


def check_transition(old: Lifecycle, new: Lifecycle, endpoint: Endpoint) -> None:
    """Raise ``Invalid`` with Porch's message when ``old → new`` is not allowed on ``endpoint``."""
    if (old, new) in TRANSITIONS[endpoint]:
        return
    if endpoint is Endpoint.APPROVAL:
        if old is D:
            raise Invalid(
                "cannot approve package with Draft lifecycle value; only Proposed packages can"
                " be approved"
            )
        if old is P:
            raise Invalid(
                f"cannot change approval from {old} to {new}; only Draft and Published are allowed"
            )
        raise Invalid(f"cannot change approval from {old} to {new}")
    if old in (D, P):
        raise Invalid(
            f"spec.lifecycle: Invalid value: {new!r}: value can be only updated to Draft,Proposed"
        )
    raise Invalid(
        f"spec.lifecycle: Invalid value: {new!r}: value can be only updated to"
        " Published,DeletionProposed"
    )
