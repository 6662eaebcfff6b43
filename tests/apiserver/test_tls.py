"""Certificates checked with cryptography, real TLS handshakes, and kubeconfigs read by kubectl."""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ruamel.yaml import YAML

from porch.apiserver import tls
from porch.apiserver.auth import Authenticator, User, user_from_subject
from porch.apiserver.tls import (
    ServerCert,
    ensure_admin_token,
    ensure_server_cert,
    issue_client_cert,
    server_ssl_context,
    subject_from_peercert,
    write_kubeconfig,
)

KUBECTL = Path("/usr/bin/kubectl")


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- certificates


def test_first_start_creates_a_ca_and_a_loopback_server_certificate(tmp_path: Path) -> None:
    server = ensure_server_cert(tmp_path)
    ca, cert = load(server.ca_path), load(server.cert_path)
    assert server.ca_pem == server.ca_path.read_bytes()

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > dt.timedelta(days=3649)

    cert.verify_directly_issued_by(ca)  # raises if the signature is not the CA's
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) < lifetime < dt.timedelta(days=366)

    key = serialization.load_pem_private_key(server.key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert mode(server.key_path) == 0o600
    assert mode(tmp_path / "pki" / "ca.key") == 0o600
    assert mode(server.cert_path.parent) == 0o700


def test_later_starts_reuse_the_certificates(tmp_path: Path) -> None:
    first = ensure_server_cert(tmp_path)
    files = {p: p.read_bytes() for p in (first.cert_path, first.key_path, first.ca_path)}
    second = ensure_server_cert(tmp_path)
    assert second == first
    assert {p: p.read_bytes() for p in files} == files


def test_a_missing_san_regenerates_only_the_server_certificate(tmp_path: Path) -> None:
    first = ensure_server_cert(tmp_path)
    old_cert = first.cert_path.read_bytes()
    second = ensure_server_cert(tmp_path, hosts=["porch.example", "10.1.2.3"])
    assert second.ca_pem == first.ca_pem
    assert second.cert_path.read_bytes() != old_cert
    sans = load(second.cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "porch.example" in sans.value.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.1.2.3") in sans.value.get_values_for_type(x509.IPAddress)
    assert ensure_server_cert(tmp_path).cert_path.read_bytes() == second.cert_path.read_bytes()


def test_expiry_and_damage_regenerate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ensure_server_cert(tmp_path)
    old_cert = first.cert_path.read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    monkeypatch.setattr(tls, "_now", lambda: later)
    renewed = ensure_server_cert(tmp_path)
    assert renewed.ca_pem == first.ca_pem  # the CA lives ten years
    assert renewed.cert_path.read_bytes() != old_cert
    assert load(renewed.cert_path).not_valid_after_utc > later + dt.timedelta(days=300)

    monkeypatch.setattr(tls, "_now", lambda: later + dt.timedelta(days=3700))
    assert ensure_server_cert(tmp_path).ca_pem != first.ca_pem
    monkeypatch.undo()

    # A key that does not match its certificate (a crash between two writes) is replaced too.
    key_path = renewed.key_path
    key_path.write_bytes((tmp_path / "pki" / "ca.key").read_bytes())
    repaired = ensure_server_cert(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == load(repaired.cert_path).public_key()


def test_client_certificates_carry_user_and_groups(tmp_path: Path) -> None:
    server = ensure_server_cert(tmp_path)
    cert_pem, key_pem = issue_client_cert(tmp_path, "alice", ["devs", "ops"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(load(server.ca_path))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["devs", "ops"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert serialization.load_pem_private_key(key_pem, None).public_key() == cert.public_key()
    assert ensure_server_cert(tmp_path).ca_pem == server.ca_pem  # same CA


# ---------------------------------------------------------------- real handshakes


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers with what the server saw: client subject and Authorization header."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        assert isinstance(self.connection, ssl.SSLSocket)
        peer = self.connection.getpeercert()
        body: bytes
        if self.path.startswith("/version"):
            body = json.dumps({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}).encode()
        else:
            seen = {
                "subject": subject_from_peercert(peer) if peer else "",
                "authorization": self.headers.get("Authorization", ""),
            }
            body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the refused handshakes below are expected, not worth a traceback


@contextmanager
def serve(server: ServerCert, client_ca: bytes | None = None) -> Iterator[int]:
    httpd = QuietServer(("127.0.0.1", 0), Echo)
    context = server_ssl_context(server, client_ca=client_ca)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def get(host: str, port: int, context: ssl.SSLContext) -> dict[str, str]:
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        conn.request("GET", "/whoami")
        response = conn.getresponse()
        assert response.status == 200
        result: dict[str, str] = json.loads(response.read())
        return result
    finally:
        conn.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_handshake_verifies_against_the_ca(tmp_path: Path, host: str) -> None:
    server = ensure_server_cert(tmp_path)
    with serve(server) as port:
        client = ssl.create_default_context(cafile=str(server.ca_path))
        assert get(host, port, client)["subject"] == ""


def test_handshake_fails_with_another_ca(tmp_path: Path) -> None:
    server = ensure_server_cert(tmp_path / "one")
    other = ensure_server_cert(tmp_path / "two")
    with serve(server) as port:
        client = ssl.create_default_context(cafile=str(other.ca_path))
        with pytest.raises(ssl.SSLCertVerificationError):
            get("127.0.0.1", port, client)


def client_context(tmp_path: Path, ca: Path, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    (tmp_path / "client.crt").write_bytes(cert_pem)
    (tmp_path / "client.key").write_bytes(key_pem)
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    return context


def test_client_certificate_handshake(tmp_path: Path) -> None:
    server = ensure_server_cert(tmp_path)
    cert_pem, key_pem = issue_client_cert(tmp_path, "alice", ["devs"])
    with serve(server, client_ca=server.ca_pem) as port:
        seen = get("127.0.0.1", port, client_context(tmp_path, server.ca_path, cert_pem, key_pem))
        assert seen["subject"] == "CN=alice,O=devs"
        auth = Authenticator(None, allow_anonymous=False, client_ca=server.ca_pem)
        user = auth.authenticate({}, client_cert_subject=seen["subject"])
        assert user == User("alice", ("devs", "system:authenticated"))
        # Certificates are optional: a token user needs none.
        plain = ssl.create_default_context(cafile=str(server.ca_path))
        assert get("localhost", port, plain)["subject"] == ""
        # A certificate from a foreign CA is refused during the handshake.
        foreign_cert, foreign_key = issue_client_cert(tmp_path / "elsewhere", "mallory")
        foreign = client_context(tmp_path, server.ca_path, foreign_cert, foreign_key)
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get("127.0.0.1", port, foreign)


@pytest.mark.parametrize(
    ("user", "groups"),
    [("alice", ["devs"]), ("a,b+c", ['x"y', "#lead", "trail "]), ("über", []), (" sp", ["<>;"])],
)
def test_subject_from_peercert_matches_rfc4514_and_round_trips(
    user: str, groups: list[str]
) -> None:
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        + [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    )
    # The shape ssl.SSLSocket.getpeercert() returns: RDNs in certificate order, long names.
    long_names = {NameOID.COMMON_NAME: "commonName", NameOID.ORGANIZATION_NAME: "organizationName"}
    peercert = {
        "subject": tuple(tuple((long_names[a.oid], str(a.value)) for a in rdn) for rdn in name.rdns)
    }
    subject = subject_from_peercert(peercert)
    assert subject == name.rfc4514_string()
    parsed = user_from_subject(subject)
    assert parsed.name == user
    # RFC 4514 writes RDNs last-first, so groups come back reversed; their order carries no meaning.
    assert sorted(parsed.groups) == sorted([*groups, "system:authenticated"])


# ---------------------------------------------------------------- kubeconfig and admin token


def read_yaml(text: str) -> dict[str, object]:
    data: dict[str, object] = YAML(typ="safe", pure=True).load(text)
    return data


def test_write_kubeconfig_shape_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kubeconfig"
    write_kubeconfig(path, server_url="https://127.0.0.1:7007", ca_pem=b"PEM", token="t0k")
    assert mode(path) == 0o600
    config = read_yaml(path.read_text())
    assert config["current-context"] == "porch"
    assert config["clusters"] == [
        {
            "name": "porch",
            "cluster": {"server": "https://127.0.0.1:7007", "certificate-authority-data": "UEVN"},
        }
    ]
    assert config["users"] == [{"name": "porch", "user": {"token": "t0k"}}]
    assert config["contexts"] == [
        {"name": "porch", "context": {"cluster": "porch", "user": "porch", "namespace": "default"}}
    ]
    with pytest.raises(ValueError, match="needs a token or a client certificate"):
        write_kubeconfig(path, server_url="https://127.0.0.1:1", ca_pem=None, token=None)
    with pytest.raises(ValueError, match="go together"):
        write_kubeconfig(path, server_url="https://x", ca_pem=None, token="t", client_key_pem=b"k")
    write_kubeconfig(path, server_url="http://127.0.0.1:1", ca_pem=None, token=None)
    assert read_yaml(path.read_text())["users"] == [{"name": "porch", "user": {}}]


def test_admin_token_is_created_once(tmp_path: Path) -> None:
    token = ensure_admin_token(tmp_path)
    assert len(token) >= 40
    assert ensure_admin_token(tmp_path) == token
    tokens = tmp_path / "tokens.csv"
    assert mode(tokens) == 0o600
    user = Authenticator(tokens, allow_anonymous=False).authenticate(
        {"Authorization": f"Bearer {token}"}
    )
    assert user == User("admin", ("system:masters", "system:authenticated"))


def test_admin_token_appends_to_an_existing_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("tok-a,alice,1")  # no trailing newline
    os.chmod(tokens, 0o644)
    token = ensure_admin_token(tmp_path)
    assert mode(tokens) == 0o600
    lines = tokens.read_text().splitlines()
    assert lines == ["tok-a,alice,1", f'{token},admin,admin,"system:masters"']


def kubectl(kubeconfig: Path, cache: Path, *args: str) -> str:
    if not os.access(KUBECTL, os.X_OK) and shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed at /usr/bin/kubectl")
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_kubectl_reads_the_kubeconfig_back(tmp_path: Path) -> None:
    server = ensure_server_cert(tmp_path)
    token = ensure_admin_token(tmp_path)
    cert_pem, key_pem = issue_client_cert(tmp_path, "bob", ["ops"])
    path = tmp_path / "kubeconfig"
    url = f"https://127.0.0.1:{free_port()}"  # nothing listens: config view stays local
    write_kubeconfig(
        path,
        server_url=url,
        ca_pem=server.ca_pem,
        token=token,
        namespace="team-a",
        client_cert_pem=cert_pem,
        client_key_pem=key_pem,
    )
    view = read_yaml(kubectl(path, tmp_path / "cache", "config", "view", "--minify", "--raw"))
    assert view["clusters"] == read_yaml(path.read_text())["clusters"]
    assert view["users"] == read_yaml(path.read_text())["users"]
    assert view["contexts"] == [
        {"name": "porch", "context": {"cluster": "porch", "user": "porch", "namespace": "team-a"}}
    ]


def test_kubectl_trusts_the_ca_and_sends_the_token(tmp_path: Path) -> None:
    server = ensure_server_cert(tmp_path)
    token = ensure_admin_token(tmp_path)
    cert_pem, key_pem = issue_client_cert(tmp_path, "bob", ["ops"])
    with serve(server, client_ca=server.ca_pem) as port:
        path = tmp_path / "kubeconfig"
        url = f"https://localhost:{port}"
        write_kubeconfig(path, server_url=url, ca_pem=server.ca_pem, token=token)
        seen = json.loads(kubectl(path, tmp_path / "c1", "get", "--raw", "/whoami"))
        assert seen == {"subject": "", "authorization": f"Bearer {token}"}

        write_kubeconfig(
            path,
            server_url=url,
            ca_pem=server.ca_pem,
            token=None,
            client_cert_pem=cert_pem,
            client_key_pem=key_pem,
        )
        seen = json.loads(kubectl(path, tmp_path / "c2", "get", "--raw", "/whoami"))
        assert seen == {"subject": "CN=bob,O=ops", "authorization": ""}
