"""Clone source: one package image (``upstream.oci.image``) read from a registry."""

from __future__ import annotations

from porch.errors import BadRequest, NotFound

from . import layout
from .client import OciCredentials, RegistryClient


def split_image(image: str) -> tuple[str, str, str]:
    """``host[:port]/name[:tag|@digest]`` → (host, name, reference); the tag defaults to latest."""
    value = image.strip()
    scheme = ""
    if "://" in value:
        scheme, value = value.split("://", 1)
        scheme += "://"
    host, _, rest = value.partition("/")
    if not host or not rest:
        raise BadRequest(f"invalid OCI image reference {image!r}: want host/name[:tag]")
    if "@" in rest:
        name, _, reference = rest.partition("@")
    else:
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            name, _, reference = rest.rpartition(":")
        else:
            name, reference = rest, "latest"
    if not name or not reference:
        raise BadRequest(f"invalid OCI image reference {image!r}")
    return scheme + host, name, reference


def fetch_oci_package(
    image: str, credentials: OciCredentials | None = None
) -> tuple[dict[str, str], str]:
    """The package files of ``image`` (its last layer) and the manifest digest."""
    host, name, reference = split_image(image)
    client = RegistryClient(host, credentials)
    try:
        got = client.get_manifest(name, reference)
        if got is None:
            raise NotFound(f"OCI image {image} not found")
        digest, body = got
        _manifest, _annotations, layer = layout.parse_manifest(body)
        if not layer:
            raise NotFound(f"OCI image {image} has no layers")
        return layout.unpack(client.get_blob(name, layer)), digest
    finally:
        client.close()
