"""Typed HTTP client for the Porch API, shared by porchctl, controllers and tests."""

from porch.client._client import (
    ALL_NAMESPACES,
    CONFIG,
    CONFIG_V1ALPHA2,
    PorchClient,
    WatchEvent,
    field_selector,
)
from porch.client._config import Connection, load_kubeconfig
from porch.client._errors import (
    BadRequest,
    ClientError,
    ConfigError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    ServerError,
    StatusError,
    TransportError,
    Unauthorized,
)
from porch.client._inprocess import InProcessTransport
from porch.client._lifecycle import LifecycleVerbs, Outcome, is_ready, unmet_gates

__all__ = [
    "ALL_NAMESPACES",
    "BadRequest",
    "CONFIG",
    "CONFIG_V1ALPHA2",
    "ClientError",
    "ConfigError",
    "Conflict",
    "Connection",
    "Forbidden",
    "Gone",
    "InProcessTransport",
    "Invalid",
    "LifecycleVerbs",
    "MethodNotAllowed",
    "NotFound",
    "Outcome",
    "PorchClient",
    "PreconditionFailed",
    "ServerError",
    "StatusError",
    "TransportError",
    "Unauthorized",
    "WatchEvent",
    "field_selector",
    "is_ready",
    "load_kubeconfig",
    "unmet_gates",
]
