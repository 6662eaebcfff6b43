"""HTTPS by default: a private CA, the server certificate, client certificates, kubeconfigs.

kubectl only sends a bearer token over TLS, so ``porch serve`` needs a certificate before any
user can authenticate. On first start we create a CA and a server certificate for the loopback
addresses under ``<data-dir>/pki`` and put the CA into the kubeconfig we write; later starts reuse
them, and replace them only when they are expired (or close to it), damaged, or lack a SAN.

Keys are ECDSA P-256: Go (kubectl), OpenSSL and browsers all accept it, and generating one takes
microseconds instead of the tens of milliseconds of RSA, which matters to the test suite.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import fcntl
import ipaddress
import os
import secrets
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ruamel.yaml import YAML

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
"""Certificates this close to expiry are replaced on start, so a server that restarts now and
then never runs into an expired certificate."""
LOOPBACK = ("127.0.0.1", "::1", "localhost")
ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"


@dataclass(frozen=True)
class ServerCert:
    cert_path: Path
    key_path: Path
    ca_path: Path
    ca_pem: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    # Two replicas starting on one data dir must not each mint a different CA.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically; the file never exists with looser permissions than ``mode``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask and ignored for old files
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or ``None`` if either is missing, unreadable or unmatched."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    # A crash between writing the key and the certificate leaves a mismatched pair.
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    days: int,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """Sign ``key``'s public half for ``subject``; ``issuer=None`` makes it self-signed."""
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a little so a client whose clock lags ours still accepts the certificate.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    authority = issuer[1].public_key() if issuer else key.public_key()
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), False
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(signing_key, hashes.SHA256())


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ensure_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Load the CA or create it; the caller holds the lock."""
    pair = _load_pair(pki / "ca.crt", pki / "ca.key")
    if pair and _fresh(pair[0]):
        return pair
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "porch-ca")])
    cert = _issue(
        name,
        key,
        None,
        CA_DAYS,
        [(x509.BasicConstraints(ca=True, path_length=0), True), (_usage(cert_sign=True), True)],
    )
    _write(pki / "ca.key", _key_pem(key), 0o600)
    _write(pki / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _server_ok(cert: x509.Certificate, ca: x509.Certificate, hosts: Sequence[str]) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return _fresh(cert) and all(name in sans for name in _san(hosts))


def _pki(data_dir: Path) -> Path:
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    return pki


def ensure_server_cert(data_dir: Path, *, hosts: Sequence[str] = ()) -> ServerCert:
    """The CA and a server certificate for the loopback names (plus ``hosts``), made once."""
    pki = _pki(data_dir)
    wanted = list(dict.fromkeys([*LOOPBACK, *hosts]))
    with _locked(pki / ".lock"):
        ca_cert, ca_key = _ensure_ca(pki)
        pair = _load_pair(pki / "server.crt", pki / "server.key")
        if pair is None or not _server_ok(pair[0], ca_cert, wanted):
            key = ec.generate_private_key(ec.SECP256R1())
            extensions: list[tuple[x509.ExtensionType, bool]] = [
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (_usage(cert_sign=False), True),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                (x509.SubjectAlternativeName(_san(wanted)), False),
            ]
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "porch-server")])
            cert = _issue(name, key, (ca_cert, ca_key), LEAF_DAYS, extensions)
            _write(pki / "server.key", _key_pem(key), 0o600)
            _write(pki / "server.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return ServerCert(
        cert_path=pki / "server.crt",
        key_path=pki / "server.key",
        ca_path=pki / "ca.crt",
        ca_pem=(pki / "ca.crt").read_bytes(),
    )


def issue_client_cert(data_dir: Path, user: str, groups: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """A client certificate (CN=user, one O per group) signed by the data dir's CA, as PEM."""
    pki = _pki(data_dir)
    with _locked(pki / ".lock"):
        ca = _ensure_ca(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    name = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_usage(cert_sign=False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
    ]
    cert = _issue(name, key, ca, LEAF_DAYS, extensions)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def server_ssl_context(server: ServerCert, *, client_ca: bytes | None = None) -> ssl.SSLContext:
    """A server-side context; with ``client_ca`` clients *may* present a certificate from it.

    Optional rather than required, so token users and certificate users share one listener.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server.cert_path, server.key_path)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}


def _escape(value: str) -> str:
    # RFC 4514 §2.4, escaped exactly as cryptography's Name.rfc4514_string() does.
    for char in '\\"+,;<>':
        value = value.replace(char, "\\" + char)
    value = value.replace("\0", "\\00")
    if value[:1] in ("#", " "):
        value = "\\" + value
    if value.endswith(" "):
        value = value[:-1] + "\\ "
    return value


def subject_from_peercert(peercert: Mapping[str, Any]) -> str:
    """RFC 4514 subject of ``SSLSocket.getpeercert()``'s result, e.g. ``CN=alice,O=devs``.

    RDNs come out in reverse order of the certificate, as RFC 4514 (and cryptography) write them.
    """
    rdns = peercert.get("subject", ())
    return ",".join(
        "+".join(f"{_SHORT_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn)
        for rdn in reversed(rdns)
    )


def write_kubeconfig(
    path: Path,
    *,
    server_url: str,
    ca_pem: bytes | None,
    token: str | None,
    namespace: str = "default",
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    name: str = "porch",
) -> None:
    """Write a kubeconfig (mode 0600) with one cluster, user and context, all called ``name``."""
    if (client_cert_pem is None) != (client_key_pem is None):
        raise ValueError("client_cert_pem and client_key_pem go together")
    if server_url.startswith("https://") and token is None and client_cert_pem is None:
        # kubectl would stop at "Please enter Username:" (and fail with EOF without a terminal).
        raise ValueError("an https kubeconfig needs a token or a client certificate")
    cluster: dict[str, str] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode("ascii")
    user: dict[str, str] = {}
    if token is not None:
        user["token"] = token
    if client_cert_pem is not None and client_key_pem is not None:
        user["client-certificate-data"] = base64.b64encode(client_cert_pem).decode("ascii")
        user["client-key-data"] = base64.b64encode(client_key_pem).decode("ascii")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 1 << 20  # keep base64 blobs on one line, as kubectl writes them
    out = StringIO()
    yaml.dump(config, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, out.getvalue().encode(), 0o600)


def _admin_token(text: str) -> str | None:
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = [f.strip() for f in next(csv.reader([line], skipinitialspace=True))]
        except csv.Error:
            continue  # the Authenticator reports bad lines; here we only look for ours
        if len(row) >= 4 and row[1] == ADMIN_USER and ADMIN_GROUP in row[3].split(","):
            return row[0]
    return None


def ensure_admin_token(data_dir: Path) -> str:
    """The admin token from ``<data_dir>/tokens.csv``, appending a new one if there is none.

    Deleting the admin line and restarting rotates the token.
    """
    path = data_dir / "tokens.csv"
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir / ".tokens.lock"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as f:
            os.fchmod(fd, 0o600)  # the file holds credentials: never group/world readable
            text = f.read()
            token = _admin_token(text)
            if token is None:
                token = secrets.token_urlsafe(32)  # URL-safe alphabet: nothing to quote in CSV
                if not text:
                    f.write('# token,user,uid,"group1,group2"  (see docs/auth.md)\n')
                elif not text.endswith("\n"):
                    f.write("\n")
                f.write(f'{token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"\n')
    return token
