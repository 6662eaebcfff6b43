"""Errors a client sees, built from the server's ``metav1.Status`` (never from message text).

::

    ClientError                 any failure talking to the server
    ├── ConfigError             no usable kubeconfig, server URL or credentials
    ├── TransportError          connection refused, TLS failure, timeout (code 0)
    ├── PreconditionFailed      checked client-side: wrong lifecycle, readiness gates not met
    └── StatusError             the server answered with a Status; carries code/reason/message
        ├── BadRequest          400
        ├── Unauthorized        401
        ├── Forbidden           403
        ├── NotFound            404
        ├── MethodNotAllowed    405
        ├── Conflict            409 (stale resourceVersion, request in flight, AlreadyExists)
        ├── Gone                410 (Gone, Expired)
        ├── Invalid             422
        └── ServerError         5xx and anything else unexpected

``retryable`` says whether the same request may succeed later unchanged.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx


class ClientError(Exception):
    """Base of every client failure; ``code`` is the HTTP status (0 without a response)."""

    code: ClassVar[int] = 0
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ClientError):
    """The kubeconfig (or the flags standing in for it) does not say how to reach a server."""


class TransportError(ClientError):
    """No HTTP answer at all: the server is down, unreachable, or TLS failed."""

    retryable = True


class PreconditionFailed(ClientError):
    """The request was not sent: the object is not in a state the operation accepts."""


class StatusError(ClientError):
    """The server refused the request with a ``metav1.Status``."""

    code = 500
    reason_default: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, reason: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.reason_default
        self.status = status if status is not None else self.code

    @property
    def http_status(self) -> int:
        return self.status


class BadRequest(StatusError):
    code = 400
    reason_default = "BadRequest"


class Unauthorized(StatusError):
    code = 401
    reason_default = "Unauthorized"


class Forbidden(StatusError):
    code = 403
    reason_default = "Forbidden"


class NotFound(StatusError):
    code = 404
    reason_default = "NotFound"


class MethodNotAllowed(StatusError):
    code = 405
    reason_default = "MethodNotAllowed"


class Conflict(StatusError):
    code = 409
    reason_default = "Conflict"
    retryable = True


class Gone(StatusError):
    code = 410
    reason_default = "Gone"


class Invalid(StatusError):
    code = 422
    reason_default = "Invalid"


class ServerError(StatusError):
    code = 500
    reason_default = "InternalError"


_BY_CODE: dict[int, type[StatusError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict)
}
_BY_CODE.update({Gone.code: Gone, Invalid.code: Invalid})


def error_from_response(response: httpx.Response) -> StatusError:
    """Map a failed response to the exception for its code, keeping the Status' message."""
    reason = ""
    message = ""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or "")
    if not message:
        text = response.text.strip().splitlines()
        message = text[0] if text else f"HTTP {response.status_code}"
    cls = _BY_CODE.get(response.status_code, ServerError)
    return cls(message, reason=reason, status=response.status_code)
