"""Reading a kubeconfig into what an HTTP client needs: URL, TLS material, credentials.

Only the fields porchctl's users actually set are honoured (server, CA, insecure flag, TLS
server name, bearer token or token file, client certificate, basic auth, namespace). Exec and
auth-provider plugins are refused with a clear message rather than silently ignored, because a
request without the credentials the user configured would fail later with a confusing 401.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from porch.client._errors import ConfigError


@dataclass(frozen=True)
class Connection:
    """Everything needed to open an HTTP connection to one API server."""

    server: str
    namespace: str = "default"
    ca_pem: bytes | None = None
    insecure: bool = False
    tls_server_name: str = ""
    token: str = ""
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    username: str = ""
    password: str = ""

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username:
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
        return {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """A context for https servers; ``True`` means the system defaults are fine."""
        if not self.server.startswith("https://"):
            return True
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem is not None:
            ctx = ssl.create_default_context(cadata=self.ca_pem.decode("ascii", "replace"))
        elif self.client_cert_pem is None:
            return True
        else:
            ctx = ssl.create_default_context()
        if self.client_cert_pem is not None and self.client_key_pem is not None:
            # ssl only loads certificate chains from files; keep them on disk only while loading.
            with tempfile.TemporaryDirectory(prefix="porchctl-") as tmp:
                cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                cert.write_bytes(self.client_cert_pem)
                key.touch(0o600)
                key.write_bytes(self.client_key_pem)
                ctx.load_cert_chain(str(cert), str(key))
        return ctx


def default_kubeconfig_paths() -> list[Path]:
    """``$KUBECONFIG`` (a path list) or ``~/.kube/config``, as kubectl resolves it."""
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _named(items: Any, name: str, what: str, source: Path) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(what)
            return body if isinstance(body, dict) else {}
    raise ConfigError(f'kubeconfig {source}: no {what} named "{name}"')


def _blob(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data))
        except ValueError:
            raise ConfigError(f"kubeconfig: {key}-data is not valid base64") from None
    path = entry.get(key)
    if path:
        file = Path(str(path)).expanduser()
        file = file if file.is_absolute() else base / file
        try:
            return file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"kubeconfig: cannot read {key} {file}: {exc.strerror}") from None
    return None


def load_kubeconfig(
    path: Path | None = None,
    *,
    context: str = "",
    cluster: str = "",
    user: str = "",
) -> Connection:
    """Resolve the current (or named) context of a kubeconfig into a ``Connection``."""
    candidates = [path] if path is not None else default_kubeconfig_paths()
    source = next((p for p in candidates if p.is_file()), None)
    if source is None:
        where = ", ".join(str(p) for p in candidates)
        raise ConfigError(f"no kubeconfig found (looked at {where}); use --kubeconfig or --server")
    try:
        doc = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read kubeconfig {source}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {source} is not a YAML mapping")
    ctx_name = context or str(doc.get("current-context") or "")
    ctx: dict[str, Any] = {}
    if ctx_name:
        ctx = _named(doc.get("contexts"), ctx_name, "context", source)
    cluster_name = cluster or str(ctx.get("cluster") or "")
    user_name = user or str(ctx.get("user") or "")
    if not cluster_name:
        raise ConfigError(f"kubeconfig {source}: no current context; use --context")
    cl = _named(doc.get("clusters"), cluster_name, "cluster", source)
    us = _named(doc.get("users"), user_name, "user", source) if user_name else {}
    if us.get("exec") or us.get("auth-provider"):
        raise ConfigError(
            f'kubeconfig {source}: user "{user_name}" uses an exec/auth-provider plugin,'
            " which porchctl does not run; use a token or client certificate"
        )
    server = str(cl.get("server") or "")
    if not server:
        raise ConfigError(f'kubeconfig {source}: cluster "{cluster_name}" has no server')
    base = source.parent
    token = str(us.get("token") or "")
    if not token and us.get("tokenFile"):
        token_blob = _blob({"token": us["tokenFile"]}, "token", base) or b""
        token = token_blob.decode().strip()
    return Connection(
        server=server.rstrip("/"),
        namespace=str(ctx.get("namespace") or "default"),
        ca_pem=_blob(cl, "certificate-authority", base),
        insecure=bool(cl.get("insecure-skip-tls-verify")),
        tls_server_name=str(cl.get("tls-server-name") or ""),
        token=token,
        client_cert_pem=_blob(us, "client-certificate", base),
        client_key_pem=_blob(us, "client-key", base),
        username=str(us.get("username") or ""),
        password=str(us.get("password") or ""),
    )
