"""OCI-registry-backed package repositories (spec §5.6, done properly; docs/oci.md)."""

from porch.repository.oci.adapter import OciRepository
from porch.repository.oci.client import OciCredentials, secret_credentials
from porch.repository.oci.upstream import fetch_oci_package, split_image

__all__ = [
    "OciCredentials",
    "OciRepository",
    "fetch_oci_package",
    "secret_credentials",
    "split_image",
]
