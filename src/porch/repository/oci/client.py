"""A small OCI distribution API client on httpx: blobs, manifests, tags, catalog, auth.

Authentication follows the registry's challenge: ``WWW-Authenticate: Basic`` → HTTP basic with
the configured username/password; ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` → a
token from the realm (sent basic credentials, or the static bearer token, or nothing), cached
per scope. A static bearer token with no challenge is sent as is.

Errors: connection failures, timeouts and 5xx answers become ``Unavailable`` naming the
registry host (never credentials); 401/403 become ``Unauthorized``/``Forbidden``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson

from porch.errors import BadRequest, Forbidden, NotFound, PorchError, Unauthorized, Unavailable
from porch.waits import remote_wait

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
PAGE = 100


@dataclass(frozen=True)
class OciCredentials:
    username: str = ""
    password: str = ""
    bearer_token: str = ""

    def __repr__(self) -> str:  # never print secrets
        return f"OciCredentials(username={self.username!r}, password=***, bearer_token=***)"


CredentialSource = OciCredentials | Callable[[], OciCredentials | None] | None


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in _CHALLENGE.findall(rest)}


def split_registry(registry: str) -> tuple[str, str, str]:
    """``[http(s)://]host[:port][/prefix]`` → (base URL, host, prefix)."""
    value = registry.strip().rstrip("/")
    scheme = ""
    if "://" in value:
        scheme, value = value.split("://", 1)
        if scheme not in ("http", "https"):
            raise BadRequest(f"spec.oci.registry: unsupported scheme {scheme!r}")
    host, _, prefix = value.partition("/")
    if "@" in host:
        raise BadRequest("spec.oci.registry must not contain credentials; use secretRef")
    if not host:
        raise BadRequest("spec.oci.registry: Required value")
    if not scheme:
        bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        local = bare in ("localhost", "[::1]") or bare.startswith("127.")
        scheme = "http" if local else "https"
    return f"{scheme}://{host}", host, prefix.strip("/")


class RegistryClient:
    """Thread-safe; one per registry and credentials."""

    def __init__(
        self,
        registry: str,
        credentials: CredentialSource = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base, self.host, self.prefix = split_registry(registry)
        # A callable is resolved on first need and once more after an authentication failure
        # (spec §5.5: credentials are cached and re-resolved once).
        self._source = credentials
        self._resolved: OciCredentials | None = None
        self._http = httpx.Client(
            base_url=self.base, timeout=timeout, transport=transport, follow_redirects=True
        )
        self._lock = threading.RLock()
        self._tokens: dict[str, str] = {}  # scope → bearer token
        self._basic_challenged = False

    def close(self) -> None:
        self._http.close()

    @property
    def _creds(self) -> OciCredentials:
        with self._lock:
            if self._resolved is None:
                source = self._source
                got = source() if callable(source) else source
                self._resolved = got or OciCredentials()
            return self._resolved

    def _forget_credentials(self) -> None:
        with self._lock:
            self._resolved = None
            self._tokens.clear()

    # --- requests and auth ---------------------------------------------------------------

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
            basic = self._basic_challenged
        if token:
            return {"Authorization": f"Bearer {token}"}
        if basic and (self._creds.username or self._creds.password):
            raw = f"{self._creds.username}:{self._creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self._creds.bearer_token:
            return {"Authorization": f"Bearer {self._creds.bearer_token}"}
        return {}

    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        missing_ok: bool = False,
    ) -> httpx.Response | None:
        """One call with the challenge flow; None for 404 when ``missing_ok``."""
        refreshed = False
        for attempt in range(3):
            sent = {**(headers or {}), **self._auth_header(scope)}
            try:
                with remote_wait(f"OCI registry {self.host}"):
                    answer = self._http.request(method, url, content=content, headers=sent)
            except httpx.HTTPError as exc:
                raise Unavailable(
                    f"OCI registry {self.host} is unavailable: {type(exc).__name__}"
                ) from None
            if answer.status_code != 401 or attempt == 2:
                break
            if attempt == 0 and self._challenge(answer, scope):
                continue
            if not refreshed and callable(self._source):
                refreshed = True
                self._forget_credentials()
                if self._challenge(answer, scope):
                    continue
            break
        code = answer.status_code
        if code in ok:
            return answer
        if code == 404 and missing_ok:
            return None
        what = f"{method} {_path(url)}"
        if code == 401:
            raise Unauthorized(f"OCI registry {self.host} refused the credentials ({what})")
        if code == 403:
            raise Forbidden(f"OCI registry {self.host} denied {what}")
        if code == 404:
            raise NotFound(f"OCI registry {self.host}: {what}: not found")
        if code >= 500 or code == 429:
            raise Unavailable(f"OCI registry {self.host} answered {code} to {what}")
        raise PorchError(f"OCI registry {self.host} answered {code} to {what}: {_errors(answer)}")

    def _challenge(self, answer: httpx.Response, scope: str) -> bool:
        """Handle a 401: True when a retry with new credentials makes sense."""
        scheme, params = parse_challenge(answer.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if not (self._creds.username or self._creds.password):
                return False
            with self._lock:
                self._basic_challenged = True
            return True
        if scheme == "bearer" and params.get("realm"):
            token = self._fetch_token(params, scope)
            if token is None:
                return False
            with self._lock:
                self._tokens[scope] = token
            return True
        return False

    def _fetch_token(self, params: dict[str, str], scope: str) -> str | None:
        query: dict[str, str] = {}
        if params.get("service"):
            query["service"] = params["service"]
        wanted = params.get("scope") or scope
        if wanted:
            query["scope"] = wanted
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if self._creds.username or self._creds.password:
            auth = (self._creds.username, self._creds.password)
        elif self._creds.bearer_token:
            headers["Authorization"] = f"Bearer {self._creds.bearer_token}"
        try:
            with remote_wait(f"the token service of OCI registry {self.host}"):
                answer = self._http.get(params["realm"], params=query, headers=headers, auth=auth)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"token service of OCI registry {self.host} is unavailable: {type(exc).__name__}"
            ) from None
        if answer.status_code >= 500:
            raise Unavailable(
                f"token service of OCI registry {self.host} answered {answer.status_code}"
            )
        if answer.status_code != 200:
            return None
        body = _json(answer)
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None

    # --- the distribution API ------------------------------------------------------------

    def check(self) -> None:
        """GET /v2/: reachable and the credentials work."""
        self.request("GET", "/v2/", scope="")

    def catalog(self) -> Iterator[str]:
        """Every repository name, following ``n``/``last`` pagination (Link headers)."""
        url: str | None = f"/v2/_catalog?n={PAGE}"
        seen: set[str] = set()
        while url is not None:
            answer = self.request("GET", url, scope="registry:catalog:*")
            assert answer is not None
            names = [str(n) for n in (_json(answer).get("repositories") or [])]
            fresh = [n for n in names if n not in seen]
            seen.update(fresh)
            yield from fresh
            url = _next_page(answer, url) if fresh else None

    def tags(self, name: str) -> list[str]:
        out: list[str] = []
        url: str | None = f"/v2/{name}/tags/list?n={PAGE}"
        while url is not None:
            answer = self.request("GET", url, scope=_pull(name), missing_ok=True)
            if answer is None:
                return out
            page = [str(t) for t in (_json(answer).get("tags") or [])]
            fresh = [t for t in page if t not in out]
            out += fresh
            url = _next_page(answer, url) if fresh else None
        return out

    def head_manifest(self, name: str, reference: str) -> str | None:
        """The digest a tag (or digest) currently names, None when absent."""
        answer = self.request(
            "HEAD",
            f"/v2/{name}/manifests/{reference}",
            scope=_pull(name),
            headers={"Accept": MANIFEST_TYPE},
            missing_ok=True,
        )
        if answer is None:
            return None
        digest = answer.headers.get("docker-content-digest")
        if digest:
            return str(digest)
        got = self.get_manifest(name, reference)
        return got[0] if got else None

    def get_manifest(self, name: str, reference: str) -> tuple[str, bytes] | None:
        answer = self.request(
            "GET",
            f"/v2/{name}/manifests/{reference}",
            scope=_pull(name),
            headers={"Accept": MANIFEST_TYPE},
            missing_ok=True,
        )
        if answer is None:
            return None
        return digest_of(answer.content), answer.content

    def put_manifest(self, name: str, tag: str, body: bytes) -> str:
        self.request(
            "PUT",
            f"/v2/{name}/manifests/{tag}",
            scope=_push(name),
            content=body,
            headers={"Content-Type": MANIFEST_TYPE},
            ok=(200, 201),
        )
        return digest_of(body)

    def delete_manifest(self, name: str, digest: str) -> bool:
        answer = self.request(
            "DELETE",
            f"/v2/{name}/manifests/{digest}",
            scope=_delete(name),
            ok=(200, 202),
            missing_ok=True,
        )
        return answer is not None

    def get_blob(self, name: str, digest: str) -> bytes:
        answer = self.request("GET", f"/v2/{name}/blobs/{digest}", scope=_pull(name))
        assert answer is not None
        if digest_of(answer.content) != digest:
            raise Unavailable(f"OCI registry {self.host} returned a corrupt blob {digest}")
        return answer.content

    def put_blob(self, name: str, data: bytes) -> str:
        digest = digest_of(data)
        exists = self.request(
            "HEAD", f"/v2/{name}/blobs/{digest}", scope=_push(name), missing_ok=True
        )
        if exists is not None:
            return digest
        started = self.request("POST", f"/v2/{name}/blobs/uploads/", scope=_push(name), ok=(202,))
        assert started is not None
        location = started.headers.get("location", "")
        if not location:
            raise Unavailable(f"OCI registry {self.host} gave no upload location")
        location = urljoin(self.base + "/", location)
        joiner = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{joiner}digest={digest}",
            scope=_push(name),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201, 204),
        )
        return digest


_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _next_page(answer: httpx.Response, current: str) -> str | None:
    """The ``rel="next"`` Link (distribution spec), None on the last page."""
    matched = _LINK.search(answer.headers.get("link", ""))
    if matched is None:
        return None
    target = matched.group(1)
    if "://" in target:
        target = "/" + target.split("://", 1)[1].split("/", 1)[1]
    return None if target == current else target


def _pull(name: str) -> str:
    return f"repository:{name}:pull"


def _push(name: str) -> str:
    return f"repository:{name}:pull,push"


def _delete(name: str) -> str:
    return f"repository:{name}:delete"


def _path(url: str) -> str:
    path = url.split("://", 1)[-1]
    if not url.startswith("/"):
        path = "/" + path.split("/", 1)[-1]
    return path.split("?", 1)[0]


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _errors(answer: httpx.Response) -> str:
    errors = _json(answer).get("errors") or []
    parts = [f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict)]
    return "; ".join(parts) or answer.text[:200]


SecretReader = Callable[[str, str], Mapping[str, str]]


def secret_credentials(
    namespace: str, secret_name: str, secrets: SecretReader | None
) -> Callable[[], OciCredentials | None] | None:
    """Credentials read lazily from a Secret (``username``/``password`` or ``bearerToken``).

    ``secrets(namespace, name)`` is the engine's resolver (spec §5.5); None or no secret name
    means anonymous access.
    """
    if not secret_name or secrets is None:
        return None
    reader = secrets

    def resolve() -> OciCredentials:
        got = reader(namespace, secret_name)
        return OciCredentials(
            username=got.get("username", ""),
            password=got.get("password", ""),
            bearer_token=got.get("bearerToken", ""),
        )

    return resolve
