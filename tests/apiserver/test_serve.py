"""``porch serve`` itself: HTTPS with a generated CA and admin token, and its refusals."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.apiserver.served import Kubectl, have_kubectl, porch_command, start

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not have_kubectl(), reason="kubectl is not installed")
def test_tls_and_token_with_kubectl(tmp_path: Path) -> None:
    served = start(tmp_path / "data")
    try:
        assert served.url.startswith("https://127.0.0.1:")
        kubectl = Kubectl(served.kubeconfig, tmp_path / "cache")
        out = kubectl("get", "packagerevisions")
        assert "demo.basens.v1" in out
        ca = ssl.create_default_context(cafile=served.data_dir / "pki" / "ca.crt")
        # Without a token the server refuses, over the same verified TLS.
        r = httpx.get(served.url + "/apis", verify=ca)
        assert r.status_code == 401
        assert httpx.get(served.url + "/version", verify=ca).json()["minor"] == "32"
        bad = kubectl.run("get", "packagerevisions", "--token", "wrong", check=False)
        assert "Unauthorized" in bad.stderr
        served.stderr.wait_for(r'"user":"admin".*"resource":"packagerevisions"')
    finally:
        served.stop()


@pytest.mark.skipif(not have_kubectl(), reason="kubectl is not installed")
def test_custom_token_file_gets_a_client_certificate_kubeconfig(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("carol-token,carol,carol\n")
    served = start(tmp_path / "data", "--token-file", str(tokens))
    try:
        kubectl = Kubectl(served.kubeconfig, tmp_path / "cache")
        assert "demo.basens.v1" in kubectl("get", "packagerevisions")
        served.stderr.wait_for(r'"user":"admin".*"resource":"packagerevisions"')
        carol = kubectl.run("get", "repositories", "--token", "carol-token", check=False)
        assert carol.returncode == 0, carol.stderr
        served.stderr.wait_for(r'"user":"carol".*"resource":"repositories"')
    finally:
        served.stop()


def test_insecure_http_needs_allow_anonymous(tmp_path: Path) -> None:
    result = subprocess.run(
        [*porch_command(), "serve", "--data-dir", str(tmp_path), "--insecure-http"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--insecure-http needs --allow-anonymous" in result.stderr


def test_watch_history_and_body_limit_flags(tmp_path: Path) -> None:
    served = start(
        tmp_path / "data",
        "--insecure-http",
        "--allow-anonymous",
        "--max-request-body",
        "64",
        "--watch-history",
        "5",
    )
    try:
        path = "/apis/porch.kpt.dev/v1alpha1/namespaces/default/packagerevisions"
        r = httpx.post(served.url + path, content=b"{" + b" " * 100 + b"}")
        assert r.status_code == 413
        # The compactor keeps 5 events; demo setup made more, so resuming from 1 has expired.
        r = httpx.get(served.url + path, params={"watch": "true", "resourceVersion": "1"})
        assert r.status_code == 410
    finally:
        served.stop()
