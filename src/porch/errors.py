"""One exception tree for the whole server.

Every error the engine, the store or an adapter raises on purpose is a ``PorchError``. Each
carries the HTTP status, the Kubernetes ``StatusReason`` and structured details, so the API
server maps them to ``metav1.Status`` in one place and never classifies errors by their text::

    PorchError                      500 InternalError (only for real bugs)
    ├── BadRequest                  400 BadRequest
    ├── Unauthorized                401 Unauthorized
    ├── Forbidden                   403 Forbidden
    ├── NotFound                    404 NotFound
    ├── MethodNotSupported          405 MethodNotAllowed
    ├── Conflict                    409 Conflict
    │   ├── StaleResourceVersion    409 (the object has been modified …)
    │   └── InFlight                409 (another request is already in progress …)
    ├── AlreadyExists               409 AlreadyExists
    ├── Expired                     410 Expired (watch resourceVersion too old)
    ├── Gone                        410 Gone
    ├── RequestEntityTooLarge       413 RequestEntityTooLarge
    ├── UnsupportedMediaType        415 UnsupportedMediaType
    ├── Invalid                     422 Invalid
    ├── RenderError                 422 Invalid (function pipeline failed)
    ├── InternalError               500 InternalError
    └── Unavailable                 503 ServiceUnavailable (remote down; retryable)

``retryable`` tells a client (or a controller) whether trying again later can succeed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Cause:
    """One field-level reason, as in ``metav1.StatusCause``."""

    message: str
    field: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Details:
    """Which object an error is about, as in ``metav1.StatusDetails``."""

    name: str = ""
    group: str = ""
    kind: str = ""
    causes: tuple[Cause, ...] = field(default_factory=tuple)


class PorchError(Exception):
    """Base of every deliberate error; ``code`` and ``reason`` follow Kubernetes conventions."""

    code: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalError"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: Details | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or Details()

    def __str__(self) -> str:
        return self.message


class BadRequest(PorchError):
    code = 400
    reason = "BadRequest"


class Unauthorized(PorchError):
    code = 401
    reason = "Unauthorized"


class Forbidden(PorchError):
    code = 403
    reason = "Forbidden"


class NotFound(PorchError):
    code = 404
    reason = "NotFound"


class MethodNotSupported(PorchError):
    code = 405
    reason = "MethodNotAllowed"


class Conflict(PorchError):
    code = 409
    reason = "Conflict"
    retryable = True


class StaleResourceVersion(Conflict):
    """The update named a resourceVersion that is no longer (or never was) current."""


class InFlight(Conflict):
    """Another request holds the per-object lock; Porch answers at once instead of waiting."""


class AlreadyExists(PorchError):
    code = 409
    reason = "AlreadyExists"


class Expired(PorchError):
    code = 410
    reason = "Expired"


class Gone(PorchError):
    code = 410
    reason = "Gone"


class RequestEntityTooLarge(PorchError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedMediaType(PorchError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(PorchError):
    code = 422
    reason = "Invalid"


class RenderError(Invalid):
    """The KRM function pipeline failed; ``pushed`` says whether the files were stored anyway."""

    def __init__(self, message: str, *, pushed: bool = False, details: Details | None = None):
        super().__init__(message, details=details)
        self.pushed = pushed


class InternalError(PorchError):
    code = 500
    reason = "InternalError"


class Unavailable(PorchError):
    code = 503
    reason = "ServiceUnavailable"
    retryable = True


__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Cause",
    "Conflict",
    "Details",
    "Expired",
    "Forbidden",
    "Gone",
    "InFlight",
    "InternalError",
    "Invalid",
    "MethodNotSupported",
    "NotFound",
    "PorchError",
    "RenderError",
    "RequestEntityTooLarge",
    "StaleResourceVersion",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
]
