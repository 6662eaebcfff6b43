"""Accept-header negotiation: plain JSON, ``Table`` and aggregated discovery.

Clients list what they take in order of preference (kubectl: Table v1, Table v1beta1, JSON);
we answer with the first entry we can produce. Only the media-type parameters Kubernetes uses
(``as``, ``g``, ``v``) are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

DISCOVERY_GROUP = "apidiscovery.k8s.io"


@dataclass(frozen=True)
class MediaRange:
    type: str
    as_: str = ""
    group: str = ""
    version: str = ""

    @property
    def json_like(self) -> bool:
        return self.type in ("application/json", "application/*", "*/*", "")


def parse_accept(header: str) -> list[MediaRange]:
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0] and len(fields) == 1:
            continue
        params: dict[str, str] = {}
        for f in fields[1:]:
            key, _, value = f.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        if params.get("q") == "0":
            continue
        out.append(
            MediaRange(
                fields[0].lower(), params.get("as", ""), params.get("g", ""), params.get("v", "")
            )
        )
    return out or [MediaRange("application/json")]


def wants_table(request: Request) -> bool:
    """True when the first acceptable entry asks for a meta.k8s.io Table."""
    for m in parse_accept(request.headers.get("accept", "")):
        if m.as_ == "Table" and m.group == "meta.k8s.io" and m.json_like:
            return True
        if m.json_like and not m.as_:
            return False
    return False


def discovery_version(request: Request) -> str:
    """``v2``/``v2beta1`` when the client prefers aggregated discovery, else ``""``."""
    for m in parse_accept(request.headers.get("accept", "")):
        if m.as_ == "APIGroupDiscoveryList" and m.group == DISCOVERY_GROUP and m.json_like:
            if m.version in ("v2", "v2beta1"):
                return m.version
        elif m.json_like and not m.as_:
            return ""
    return ""


def wants_yaml(request: Request) -> bool:
    first = parse_accept(request.headers.get("accept", ""))[0]
    return first.type in ("application/yaml", "application/x-yaml", "text/yaml")
