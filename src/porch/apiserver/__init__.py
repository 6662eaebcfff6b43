"""Kubernetes-compatible API server over the engine: kubectl and client-go style clients work.

Layout: ``app`` (routes, access log), ``rest`` (URL → verb → backend), ``reads``/``writes``
(the verbs), one module per served kind, and the wire helpers (``discovery``, ``openapi``,
``table``, ``patch``, ``watchstream``, ``status``).
"""

from porch.apiserver.access import Security
from porch.apiserver.app import DEFAULT_MAX_BODY, create_app

__all__ = ["DEFAULT_MAX_BODY", "Security", "create_app"]
