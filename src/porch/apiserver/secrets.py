"""Core ``v1`` Secret, namespaced, for repository credentials.

``data`` values are base64 as on the wire; ``stringData`` is a write-only convenience folded
into ``data`` (it wins on conflicts, as in Kubernetes) so it is never stored or returned.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from porch.apiserver.kinds import Body, Column, ResourceType, name_column
from porch.apiserver.stored import StoredBackend
from porch.engine import Engine
from porch.errors import Invalid


class SecretBackend(StoredBackend):
    def prepare(self, body: Body) -> Body:
        data = body.get("data") or {}
        if not isinstance(data, dict):
            raise Invalid("data: Invalid value: must be a map of base64 strings")
        for key, value in data.items():
            if not isinstance(value, str):
                raise Invalid(f"data[{key}]: Invalid value: must be a base64 string")
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error:
                raise Invalid(f"data[{key}]: Invalid value: illegal base64 data") from None
        string_data = body.pop("stringData", None) or {}
        if not isinstance(string_data, dict):
            raise Invalid("stringData: Invalid value: must be a map of strings")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data:
            body["data"] = data
        body.setdefault("type", "Opaque")
        return body


def _data_count(obj: Body) -> Any:
    return len(obj.get("data") or {})


def resource(engine: Engine) -> ResourceType:
    return ResourceType(
        group="",
        version="v1",
        plural="secrets",
        singular="secret",
        kind="Secret",
        backend=SecretBackend(engine, "Secret"),
        columns=(
            name_column(),
            Column("Type", lambda o: o.get("type", "")),
            Column("Data", _data_count, type="integer"),
        ),
    )
