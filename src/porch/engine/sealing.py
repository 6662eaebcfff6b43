"""Secret data encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256, from ``cryptography``).

With a key configured, a Secret's ``data`` is stored as one opaque ``sealedData`` token and
opened again on every read, so the store file (or a backup of it) never holds credentials in
the clear. Without a key the data is stored as the API received it (base64, like etcd does by
default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from porch.errors import InternalError, Invalid

SEALED = "sealedData"


class Sealer:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise Invalid(
                "encryption key must be 32 url-safe base64-encoded bytes (a Fernet key)"
            ) from exc

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        return cls(path.read_bytes().strip())

    def seal(self, body: dict[str, Any]) -> dict[str, Any]:
        data = body.get("data")
        if not data:
            return body
        sealed = {k: v for k, v in body.items() if k != "data"}
        sealed[SEALED] = self._fernet.encrypt(orjson.dumps(data)).decode()
        return sealed

    def open(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get(SEALED)
        if token is None:
            return body
        try:
            data = orjson.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            # Never say more: the message may end up in a log.
            raise InternalError(
                "stored secret cannot be decrypted with the configured key"
            ) from None
        opened = {k: v for k, v in body.items() if k != SEALED}
        opened["data"] = data
        return opened
