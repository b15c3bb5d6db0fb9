"""Pulling images from OCI distribution (v2) registries into the node's image store.

``await pull(store, "busybox")`` resolves the reference (``docker.io/library/busybox:latest``),
fetches its manifest (from an image index or Docker manifest list it picks linux and this
node's architecture), the config, and the layer blobs whose layers the store lacks, at most
``RegistryConfig.max_concurrent_downloads`` at a time, then hands them to
:meth:`ImageStore.import_blobs <kcore.images.ImageStore.import_blobs>`, which verifies and
unpacks them. Every manifest and blob is checked against its digest before it is used.

Layer blobs download into the store's ``downloads/`` folder. An interrupted download goes on
where it stopped (a ``Range`` request), after a retry in the same pull or in the next pull;
nothing there is an image, so a failed pull leaves the store's images as they were.

Authentication is Docker's: anonymous, ``Basic``, or the bearer token flow (a 401 with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` sends the client to the realm,
with its credentials, for a token). Credentials come as CRI's ``AuthConfig`` keys
(``username``, ``password``, ``auth``, ``identity_token``, ``registry_token``), from the
caller or from the node's registry configuration. HTTPS is verified against the system's
CAs and an optional CA file per registry; plain HTTP is used only for registries listed as
insecure.

Errors are kcore's: ``Forbidden`` (401/403: pull access denied), ``NotFound`` (manifest
unknown, repository does not exist), ``TemporaryError`` (5xx, 429, a connection dropped or
stalled, retried a few times with back-off within one pull), ``Invalid`` (a digest that does
not match), ``PermanentError`` (TLS failures and the rest).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import structlog

from kcore.errors import (
    BadRequest,
    Forbidden,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
    PermanentError,
    TemporaryError,
)
from kcore.images import ImageStore, parse_reference

log = structlog.get_logger("kcore.registry")

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
ACCEPT = ", ".join([MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST])
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}

MAX_MANIFEST = 4 << 20  # the distribution spec's limit
MAX_CONFIG = 8 << 20
WRITE_CHUNK = 1 << 20
STALE_DOWNLOAD = 7 * 24 * 3600
DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
USER_AGENT = "kcore/0.1"

_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def host_platform() -> tuple[str, str, str]:
    """``(os, architecture, variant)`` of this node in OCI's words: ``x86_64`` is
    ``amd64``, ``aarch64`` is ``arm64`` (variant ``v8``)."""
    machine = platform.machine()
    arch, variant = _ARCH.get(machine, (machine, ""))
    return "linux", arch, variant


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class Reference:
    """An image reference taken apart: ``registry`` (``docker.io``, ``localhost:5000``),
    ``path`` in it (``library/busybox``), and a ``tag`` or ``digest`` (the digest wins
    when both are given, as in containerd)."""

    registry: str
    path: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, ref: str) -> Reference:
        repository, tag, digest = parse_reference(ref)
        registry, _, path = repository.partition("/")
        return cls(registry, path, None if digest else (tag or "latest"), digest)

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}"

    @property
    def reference(self) -> str:
        """What follows ``/manifests/`` in the URL: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def endpoint(self) -> str:
        """The host (and port) to talk to: Docker Hub's API is not at ``docker.io``."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"


def _registry_key(server: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``host:5000/`` -> ``host:5000``."""
    server = server.strip()
    if "://" in server:
        server = urlsplit(server).netloc
    server = server.split("/", 1)[0].lower()
    return DOCKER_HUB if server in DOCKER_HUB_ALIASES else server


# --------------------------------------------------------------------------- configuration


def _split_list(values: Iterable[str] | str | None) -> list[str]:
    if not values:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in str(value).split(",") if item.strip()]


def _load_auth_file(path: Path) -> dict[str, dict[str, str]]:
    """The ``auths`` of a Docker ``config.json`` (what ``docker login`` writes), by registry."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadRequest(f"registry auth file {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise BadRequest(f"registry auth file {path}: {exc}") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise BadRequest(f'registry auth file {path}: no "auths" object')
    out = {}
    for server, entry in auths.items():
        if isinstance(entry, dict):
            out[_registry_key(server)] = {str(k): str(v) for k, v in entry.items() if v}
    return out


@dataclass(frozen=True)
class RegistryConfig:
    """How this node reaches registries: hosts (``host[:port]`` as references spell them)
    that may use plain HTTP or unverified TLS, a CA file per host, node-level credentials
    by host, and the limits of one pull."""

    insecure: frozenset[str] = frozenset()
    ca_files: Mapping[str, Path] = field(default_factory=dict)
    auths: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    read_timeout: float = 30.0
    connect_timeout: float = 30.0
    max_concurrent_downloads: int = 3
    attempts: int = 3
    backoff: float = 0.5

    @classmethod
    def from_options(
        cls,
        *,
        insecure: Iterable[str] | str | None = (),
        ca: Iterable[str] | str | None = (),
        auth_file: str | Path | None = None,
        **limits: Any,
    ) -> RegistryConfig:
        """From command-line style values: ``insecure`` hosts (repeatable, comma lists),
        ``ca`` as ``host[:port]=/path/ca.pem``, ``auth_file`` a Docker ``config.json``,
        and any field of this class as a keyword (``read_timeout=10``)."""
        ca_files: dict[str, Path] = {}
        for item in _split_list(ca):
            host, eq, path = item.partition("=")
            if not eq or not host.strip() or not path.strip():
                raise BadRequest(f"--registry-ca {item!r}: want HOST[:PORT]=/path/to/ca.pem")
            if not Path(path.strip()).is_file():
                raise BadRequest(f"--registry-ca {item!r}: {path.strip()} is not a file")
            ca_files[_registry_key(host)] = Path(path.strip())
        auths = _load_auth_file(Path(auth_file)) if auth_file else {}
        known = {f for f in cls.__dataclass_fields__ if f not in ("insecure", "ca_files", "auths")}
        unknown = set(limits) - known
        if unknown:
            raise TypeError(f"unknown registry settings: {', '.join(sorted(unknown))}")
        values = {k: v for k, v in limits.items() if v is not None}
        return cls(
            insecure=frozenset(_registry_key(h) for h in _split_list(insecure)),
            ca_files=ca_files,
            auths=auths,
            **values,
        )

    def _lookup(self, table: Mapping[str, Any] | frozenset[str], registry: str) -> Any:
        key = _registry_key(registry)
        for candidate in (key, key.rsplit(":", 1)[0] if ":" in key else None):
            if candidate is not None and candidate in table:
                return table[candidate] if isinstance(table, Mapping) else True
        return None

    def is_insecure(self, registry: str) -> bool:
        """Listed as insecure (a host without a port stands for every port of it)."""
        return bool(self._lookup(self.insecure, registry))

    def ca_file(self, registry: str) -> Path | None:
        return self._lookup(self.ca_files, registry)

    def node_auth(self, registry: str) -> Mapping[str, str] | None:
        return self._lookup(self.auths, registry)


@dataclass(frozen=True)
class _Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @classmethod
    def from_auth(cls, auth: Mapping[str, str] | None) -> _Credentials:
        """From CRI ``AuthConfig`` keys (snake_case, camelCase, or Docker config.json's)."""
        if not auth:
            return cls()

        def get(*keys: str) -> str:
            for key in keys:
                value = auth.get(key)
                if value:
                    return str(value)
            return ""

        username, password = get("username"), get("password")
        encoded = get("auth")
        if encoded:  # wins over username and password, as in the kubelet
            try:
                padded = encoded + "=" * (-len(encoded) % 4)
                username, sep, password = base64.b64decode(padded).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:
                raise BadRequest('registry credentials: "auth" is not base64 of user:password')
        return cls(
            username=username,
            password=password,
            identity_token=get("identity_token", "identityToken", "identitytoken"),
            registry_token=get("registry_token", "registryToken", "registrytoken"),
        )

    def basic(self) -> str | None:
        if not self.username:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="..."`` -> ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class PullProgress:
    """One step of one layer: ``status`` is ``waiting``, ``downloading``, ``downloaded``,
    ``exists`` (the store has the layer), ``unpacking`` or ``done``; ``done`` and
    ``total`` are bytes of the layer's blob."""

    layer: str
    status: str
    done: int
    total: int


ProgressCallback = Callable[[PullProgress], None]


@dataclass(frozen=True)
class PulledImage:
    """What :func:`pull` made present: the store's ``image`` record, the ``reference`` it
    resolved, the manifest ``digest`` (that of the index when there is one), and how much
    it fetched."""

    image: dict
    reference: str
    digest: str
    layers_downloaded: int
    bytes_downloaded: int


# --------------------------------------------------------------------------- the client


def _sha256_hex(digest: str, what: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256":
        raise NotSupported(f"{what}: digest {digest!r}: only sha256 digests are supported")
    if not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise Invalid(f"{what}: malformed digest {digest!r}")
    return hexpart


async def _registry_reason(resp: aiohttp.ClientResponse) -> str:
    """The registry's own words for an error answer: its ``errors`` list, else the text."""
    with contextlib.suppress(Exception):
        body = await resp.content.read(64 << 10)
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            errors = json.loads(body).get("errors")
            parts = []
            for e in errors or []:
                code, message = e.get("code", ""), e.get("message", "")
                parts.append(f"{code}: {message}" if code and message else code or message)
            if parts:
                return "; ".join(parts)
        text = body.decode("utf-8", "replace").strip()
        if text:
            return text[:200]
    return resp.reason or f"HTTP {resp.status}"


async def _read_body(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body of a small answer (a manifest, a config, a token), at most ``limit``."""
    if (resp.content_length or 0) > limit:
        raise Invalid(f"{what} is larger than {limit} bytes")
    chunks = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 << 10):
        total += len(chunk)
        if total > limit:
            raise Invalid(f"{what} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _hash_file(fd: int) -> tuple[Any, int]:
    """sha256 state and size of what a partial download already holds."""
    h = hashlib.sha256()
    size = 0
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, WRITE_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h, size


def _write_at(fd: int, hasher: Any, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]
    hasher.update(data)


class RegistryClient:
    """HTTP to one registry for one repository: TLS, auth challenges, error mapping and
    retries. Use it as ``async with RegistryClient(ref, config, auth) as client``."""

    def __init__(
        self,
        ref: Reference,
        config: RegistryConfig | None = None,
        auth: Mapping[str, str] | None = None,
    ) -> None:
        self.ref = ref
        self.config = config or RegistryConfig()
        self.host = ref.endpoint
        self.creds = _Credentials.from_auth(auth or self.config.node_auth(ref.registry))
        self._authorization: str | None = None
        self._base: str | None = None
        self._ssl: ssl.SSLContext | bool = True
        self._session: aiohttp.ClientSession | None = None
        self._ping_lock = asyncio.Lock()

    async def __aenter__(self) -> RegistryClient:
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.config.connect_timeout,
            sock_read=self.config.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ plumbing

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RegistryClient is used outside 'async with'")
        return self._session

    def _verified_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca = self.config.ca_file(self.ref.registry)
        if ca is not None:
            try:
                context.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise PermanentError(f"registry {self.host}: CA file {ca}: {exc}") from None
        return context

    def _network_error(self, exc: BaseException, what: str) -> KcoreError:
        where = f"registry {self.host}: {what}"
        # aiohttp's connector errors print the SSL context; the cause reads better.
        cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
        if isinstance(exc, aiohttp.ClientConnectorCertificateError) or isinstance(
            exc, ssl.SSLCertVerificationError
        ):
            return PermanentError(
                f"{where}: TLS certificate not trusted ({cause}); give its CA with "
                f"--registry-ca {self.ref.registry}=/path/to/ca.pem"
            )
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
            hint = ""
            if not self.config.is_insecure(self.ref.registry):
                hint = (
                    "; a registry that serves plain HTTP must be listed with "
                    f"--registry-insecure {self.ref.registry}"
                )
            return PermanentError(f"{where}: TLS handshake failed ({cause}){hint}")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return TemporaryError(
                f"{where}: cannot connect within {self.config.connect_timeout:g}s"
            )
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return TemporaryError(
                f"{where}: the registry stalled (no data for {self.config.read_timeout:g}s)"
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return TemporaryError(f"{where}: the download was cut short ({exc})")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return TemporaryError(f"{where}: cannot reach the registry ({cause})")
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return TemporaryError(f"{where}: the registry closed the connection")
        if isinstance(exc, aiohttp.InvalidURL):
            return PermanentError(f"{where}: invalid URL {exc}")
        return TemporaryError(f"{where}: {type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        """aiohttp's and the socket's exceptions become kcore errors."""
        try:
            yield
        except KcoreError:
            raise
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
            raise self._network_error(exc, what) from exc

    async def _error(self, resp: aiohttp.ClientResponse, what: str) -> KcoreError:
        reason = await _registry_reason(resp)
        status = resp.status
        if status in (401, 403):
            return Forbidden(
                f"pull access denied for {self.ref.repository}, repository does not exist or "
                f"may require authorization: authorization failed: {reason}"
            )
        if status == 404:
            if "NAME_UNKNOWN" in reason:
                return NotFound(f"{what}: repository does not exist ({reason})")
            return NotFound(f"{what}: not found ({reason})")
        if status == 429 or status >= 500:
            return TemporaryError(f"registry {self.host} answered {status} for {what}: {reason}")
        return PermanentError(f"registry {self.host} answered {status} for {what}: {reason}")

    async def retrying(self, what: str, step: Callable[[], Awaitable[Any]]) -> Any:
        """``step()``, again after a back-off while it fails with a ``TemporaryError``."""
        for attempt in range(1, self.config.attempts + 1):
            try:
                return await step()
            except TemporaryError as exc:
                if attempt >= self.config.attempts:
                    raise
                delay = self.config.backoff * 2 ** (attempt - 1)
                log.info("registry retry", what=what, error=str(exc), after=delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _ping(self) -> None:
        """``GET /v2/``: which scheme works, and which authentication the registry wants."""
        async with self._ping_lock:
            if self._base is not None:
                return
            insecure = self.config.is_insecure(self.ref.registry)
            attempts: list[tuple[str, ssl.SSLContext | bool]] = []
            attempts.append(("https", False if insecure else self._verified_context()))
            if insecure:
                attempts.append(("http", False))
            last: KcoreError | None = None
            for scheme, context in attempts:
                base = f"{scheme}://{self.host}"
                try:
                    async with self._guard("GET /v2/"):
                        async with self.session.get(f"{base}/v2/", ssl=context) as resp:
                            challenge = resp.headers.get("WWW-Authenticate", "")
                            status = resp.status
                            if status not in (200, 401):
                                raise await self._error(resp, "GET /v2/")
                except (PermanentError, TemporaryError) as exc:
                    last = exc
                    if scheme == "https" and insecure:
                        continue  # an insecure registry may speak plain HTTP
                    raise
                self._base, self._ssl = base, context
                if status == 401:
                    await self._authenticate(challenge, first=True)
                return
            assert last is not None
            raise last

    async def _authenticate(self, challenge: str, *, first: bool = False) -> bool:
        """Answer a 401's challenge; False when there is nothing more to try."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            basic = self.creds.basic()
            if basic is None or basic == self._authorization:
                return False
            self._authorization = basic
            return True
        if scheme == "bearer":
            if not first and self._authorization and self._authorization.startswith("Bearer"):
                # A token we already hold was refused: perhaps for a narrower scope.
                if params.get("error") != "insufficient_scope" and "scope" not in params:
                    return False
            token = await self._token(params)
            bearer = f"Bearer {token}"
            if bearer == self._authorization:
                return False
            self._authorization = bearer
            return True
        return False

    async def _token(self, params: Mapping[str, str]) -> str:
        if self.creds.registry_token:
            return self.creds.registry_token
        realm = params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PermanentError(f"registry {self.host}: bad token realm {realm!r}")
        if (
            parts.scheme == "http"
            and self.creds
            and not (self._base or "").startswith("http:")
            and not self.config.is_insecure(parts.netloc)
        ):
            raise PermanentError(
                f"registry {self.host}: refusing to send credentials to the plain-HTTP token "
                f"realm {realm} (list {parts.netloc} with --registry-insecure to allow it)"
            )
        query = {"scope": params.get("scope") or f"repository:{self.ref.path}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        context: ssl.SSLContext | bool = False
        if parts.scheme == "https":
            context = False if self.config.is_insecure(parts.netloc) else self._verified_context()
        what = f"token from {realm}"
        async with self._guard(what):
            if self.creds.identity_token:
                form = {
                    **query,
                    "grant_type": "refresh_token",
                    "refresh_token": self.creds.identity_token,
                    "client_id": "kcore",
                }
                request = self.session.post(realm, data=form, ssl=context)
            else:
                headers = {}
                basic = self.creds.basic()
                if basic:
                    headers["Authorization"] = basic
                sep = "&" if parts.query else "?"
                request = self.session.get(
                    realm + sep + urlencode(query), headers=headers, ssl=context
                )
            async with request as resp:
                if resp.status != 200:
                    raise await self._error(resp, what)
                body = await _read_body(resp, 1 << 20, what)
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise PermanentError(f"registry {self.host}: {what}: the answer holds no token")
        return token

    @contextlib.asynccontextmanager
    async def get(
        self, path: str, headers: Mapping[str, str], what: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``GET`` a path of the repository (``manifests/...``, ``blobs/...``) with the
        credentials the registry asked for; the response's status is the caller's."""
        await self._ping()
        url = f"{self._base}/v2/{self.ref.path}/{path}"
        for attempt in range(3):
            sent = dict(headers)
            if self._authorization:
                sent["Authorization"] = self._authorization
            async with self._guard(what):
                resp = await self.session.get(url, headers=sent, ssl=self._ssl)
            try:
                if resp.status == 401 and attempt < 2:
                    challenge = resp.headers.get("WWW-Authenticate", "")
                    if await self._authenticate(challenge):
                        continue
                yield resp
                return
            finally:
                resp.release()

    # ------------------------------------------------------------------ operations

    async def manifest(self, reference: str) -> tuple[bytes, str, str]:
        """``(body, media type, digest)`` of a manifest by tag or digest, verified."""
        by_digest = ":" in reference  # tags cannot hold a colon
        what = f"manifest {self.ref.repository}{'@' if by_digest else ':'}{reference}"

        async def once() -> tuple[bytes, str, str | None]:
            async with (
                self._guard(what),
                self.get(f"manifests/{reference}", {"Accept": ACCEPT}, what) as resp,
            ):
                if resp.status != 200:
                    raise await self._error(resp, what)
                data = await _read_body(resp, MAX_MANIFEST, what)
                media = resp.headers.get("Content-Type", "").partition(";")[0].strip()
                return data, media, resp.headers.get("Docker-Content-Digest")

        data, media, claimed = await self.retrying(what, once)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if by_digest:
            _sha256_hex(reference, what)
            if digest != reference:
                raise Invalid(f"{what} does not match its digest (content is {digest})")
        elif claimed and claimed.startswith("sha256:") and claimed != digest:
            raise Invalid(
                f"{what}: the registry says its digest is {claimed} but the content is {digest}"
            )
        return data, media, digest

    async def blob_bytes(self, desc: Mapping[str, Any], limit: int, what: str) -> bytes:
        """A small blob (a config) in memory, checked against its descriptor."""
        hexdigest = _sha256_hex(str(desc.get("digest", "")), what)
        size = desc.get("size")
        if not isinstance(size, int) or size < 0 or size > limit:
            raise Invalid(f"{what}: descriptor size {size!r} is not within 0..{limit}")

        async def once() -> bytes:
            async with self._guard(what), self.get(f"blobs/sha256:{hexdigest}", {}, what) as resp:
                if resp.status != 200:
                    raise await self._error(resp, what)
                return await _read_body(resp, size, what)

        data = await self.retrying(what, once)
        got = hashlib.sha256(data).hexdigest()
        if got != hexdigest or len(data) != size:
            raise Invalid(
                f"{what} sha256:{hexdigest} does not match its digest "
                f"(content is sha256:{got}, {len(data)} bytes)"
            )
        return data

    async def download(
        self,
        desc: Mapping[str, Any],
        dest: Path,
        what: str,
        on_bytes: Callable[[int], None] = lambda n: None,
    ) -> int:
        """Download a blob to ``dest``, continuing a ``dest.partial`` left by an earlier
        attempt; ``dest`` appears only once the content matches its digest. Returns the
        bytes fetched over the network."""
        hexdigest = _sha256_hex(str(desc.get("digest", "")), what)
        size = desc.get("size")
        if not isinstance(size, int) or size < 0:
            raise Invalid(f"{what}: descriptor without a valid size")
        if dest.is_file() and dest.stat().st_size == size:
            on_bytes(size)
            return 0
        partial = dest.with_name(dest.name + ".partial")
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while True:  # another process may be downloading it: wait for its flock
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.2)
            if dest.is_file() and dest.stat().st_size == size:
                on_bytes(size)
                return 0
            return await self._download_locked(fd, hexdigest, size, partial, dest, what, on_bytes)
        finally:
            os.close(fd)

    async def _download_locked(
        self,
        fd: int,
        hexdigest: str,
        size: int,
        partial: Path,
        dest: Path,
        what: str,
        on_bytes: Callable[[int], None],
    ) -> int:
        hasher, offset = await asyncio.to_thread(_hash_file, fd)
        if offset > size:
            os.ftruncate(fd, 0)
            hasher, offset = hashlib.sha256(), 0
        state = {"hasher": hasher, "offset": offset, "fetched": 0}
        fresh_retry = offset > 0  # a resumed download that fails to verify gets one more go
        if offset:
            log.info("resuming download", blob=hexdigest[:12], offset=offset, size=size)
        on_bytes(offset)
        try:
            while True:
                if state["offset"] < size:
                    await self.retrying(
                        what, lambda: self._fetch_rest(fd, hexdigest, size, state, what, on_bytes)
                    )
                got = state["hasher"].hexdigest()
                if got == hexdigest and state["offset"] == size:
                    break
                os.ftruncate(fd, 0)
                state.update(hasher=hashlib.sha256(), offset=0)
                if fresh_retry:
                    fresh_retry = False
                    log.warning("resumed download did not verify; starting over", blob=hexdigest)
                    continue
                raise Invalid(
                    f"{what} sha256:{hexdigest} does not match its digest "
                    f"(content is sha256:{got}); the registry served other bytes"
                )
        except Invalid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)  # wrong bytes are not worth resuming
            raise
        os.fsync(fd)
        os.rename(partial, dest)
        return state["fetched"]

    async def _fetch_rest(
        self,
        fd: int,
        hexdigest: str,
        size: int,
        state: dict[str, Any],
        what: str,
        on_bytes: Callable[[int], None],
    ) -> None:
        """One GET of the rest of a blob, from ``state["offset"]`` on."""
        headers = {}
        if state["offset"]:
            headers["Range"] = f"bytes={state['offset']}-"
        buffer = bytearray()

        async def flush() -> None:
            if buffer:
                data = bytes(buffer)
                buffer.clear()
                try:
                    await asyncio.to_thread(_write_at, fd, state["hasher"], data, state["offset"])
                except OSError as exc:
                    raise TemporaryError(f"{what}: cannot write the download: {exc}") from None
                state["offset"] += len(data)
                state["fetched"] += len(data)
                on_bytes(state["offset"])

        async with self._guard(what), self.get(f"blobs/sha256:{hexdigest}", headers, what) as resp:
            if resp.status == 416 and state["offset"] == size:
                return
            if resp.status == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != state["offset"]:
                    os.ftruncate(fd, 0)
                    state.update(hasher=hashlib.sha256(), offset=0)
                    raise TemporaryError(f"{what}: the registry answered another range")
            elif resp.status == 200:
                if state["offset"]:  # the registry ignored the Range: start over
                    os.ftruncate(fd, 0)
                    state.update(hasher=hashlib.sha256(), offset=0)
                    on_bytes(0)
            else:
                raise await self._error(resp, what)
            try:
                async for chunk in resp.content.iter_chunked(256 << 10):
                    buffer += chunk
                    if state["offset"] + len(buffer) > size:
                        os.ftruncate(fd, 0)
                        state.update(hasher=hashlib.sha256(), offset=0)
                        raise Invalid(
                            f"{what} sha256:{hexdigest} is larger than its descriptor's "
                            f"{size} bytes"
                        )
                    if len(buffer) >= WRITE_CHUNK:
                        await flush()
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                await flush()  # what arrived before the failure is kept for resuming
                raise
            await flush()
        if state["offset"] < size:
            raise TemporaryError(
                f"{what}: the download was cut short at {state['offset']} of {size} bytes"
            )


# --------------------------------------------------------------------------- pulling


def _platform_matches(p: Any, wanted: tuple[str, str, str]) -> int:
    """0 when ``p`` does not fit this node; higher is a better fit."""
    if not isinstance(p, dict):
        return 0
    os_name, arch, variant = wanted
    if p.get("os") != os_name or p.get("architecture") != arch:
        return 0
    got = p.get("variant") or ""
    if got == variant:
        return 3
    return 2 if not got or not variant else 1


def choose_manifest(index: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """The descriptor of an image index that fits this node (linux, its architecture and,
    where it matters, variant)."""
    children = index.get("manifests")
    if not isinstance(children, list):
        raise Invalid(f"{what}: an index without a manifests list")
    wanted = host_platform()
    scored = [(_platform_matches(c.get("platform"), wanted), n, c) for n, c in enumerate(children)]
    scored = [s for s in scored if s[0] > 0 and isinstance(s[2], dict)]
    if not scored:
        have = sorted(
            "/".join(filter(None, (c["platform"].get("os"), c["platform"].get("architecture"))))
            for c in children
            if isinstance(c, dict) and isinstance(c.get("platform"), dict)
        )
        raise NotSupported(
            f"{what} has no image for {wanted[0]}/{wanted[1]} (it has: {', '.join(have) or 'none'})"
        )
    scored.sort(key=lambda s: (-s[0], s[1]))
    return scored[0][2]


def _kind(data: bytes, media: str, what: str) -> tuple[str, dict]:
    """``("index" | "manifest", parsed)`` of a manifest body."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise Invalid(f"{what}: not a JSON object")
    media = obj.get("mediaType") or media
    if media in MEDIA_DOCKER_SCHEMA1 or obj.get("schemaVersion") == 1:
        raise NotSupported(f"{what}: Docker schema 1 manifests are not supported")
    if media in INDEX_TYPES or (media not in MANIFEST_TYPES and "manifests" in obj):
        return "index", obj
    if media in MANIFEST_TYPES or "layers" in obj:
        if not isinstance(obj.get("layers"), list) or not isinstance(obj.get("config"), dict):
            raise Invalid(f"{what}: a manifest without config and layers")
        return "manifest", obj
    raise NotSupported(f"{what}: unsupported manifest media type {media!r}")


def clean_downloads(store: ImageStore, max_age: float = STALE_DOWNLOAD) -> None:
    """Remove downloads nobody touched for ``max_age`` seconds (abandoned pulls)."""
    folder = store.download_dir
    if not folder.is_dir():
        return
    cutoff = time.time() - max_age
    with os.scandir(folder) as it:
        for entry in it:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)


class _Pull:
    def __init__(
        self,
        store: ImageStore,
        ref: Reference,
        client: RegistryClient,
        progress: ProgressCallback | None,
    ) -> None:
        self.store = store
        self.ref = ref
        self.client = client
        self.progress = progress or (lambda event: None)
        self.states: dict[str, str] = {}
        self.fetched_bytes = 0

    def report(self, label: str, status: str, done: int, total: int) -> None:
        self.states[label] = status
        self.progress(PullProgress(label, status, done, total))

    def _store_progress(self, label: str, done: int, total: int) -> None:
        if self.states.get(label) in (None, "exists"):
            return
        self.report(label, "done" if done >= total else "unpacking", done, total)

    async def run(self) -> PulledImage:
        ref, client = self.ref, self.client
        top, top_media, top_digest = await client.manifest(ref.reference)
        kind, obj = _kind(top, top_media, f"manifest {ref}")
        index_bytes = None
        manifest, manifest_digest = top, top_digest
        if kind == "index":
            index_bytes = top
            child = choose_manifest(obj, str(ref))
            child_digest = str(child.get("digest", ""))
            _sha256_hex(child_digest, f"index {ref}")
            manifest, media, manifest_digest = await client.manifest(child_digest)
            kind, obj = _kind(manifest, media, f"manifest {ref.repository}@{child_digest}")
            if kind != "manifest":
                raise NotSupported(f"{ref}: an index inside an index is not supported")
        what = f"{ref.repository}@{manifest_digest}"
        layers = obj["layers"]
        for n, desc in enumerate(layers, 1):
            if not isinstance(desc, dict):
                raise Invalid(f"manifest {what}: layer {n} is not a descriptor")
            media = desc.get("mediaType")
            if media and media not in LAYER_TYPES:
                raise NotSupported(f"manifest {what}: layer {n} has media type {media!r}")
        config_desc = obj["config"]
        config_digest = str(config_desc.get("digest", ""))
        _sha256_hex(config_digest, f"config of {what}")
        config = self.store.read_blob(config_digest)
        if config is None:
            config = await client.blob_bytes(config_desc, MAX_CONFIG, f"config of {what}")
        try:
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            raise Invalid(f"config {config_digest} of {what} has no rootfs.diff_ids") from None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise Invalid(
                f"manifest {what} has {len(layers)} layers but its config lists "
                f"{len(diff_ids) if isinstance(diff_ids, list) else 'no'} diff_ids"
            )

        wanted: dict[str, dict] = {}
        for desc, diff_id in zip(layers, diff_ids, strict=True):
            hexdigest = _sha256_hex(str(desc.get("digest", "")), f"layer of {what}")
            label = hexdigest[:12]
            size = desc.get("size") if isinstance(desc.get("size"), int) else 0
            if isinstance(diff_id, str) and self.store.has_layer(diff_id):
                self.report(label, "exists", size, size)
            elif hexdigest not in wanted:
                wanted[hexdigest] = desc
                self.report(label, "waiting", 0, size)

        folder = self.store.download_dir
        folder.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(clean_downloads, self.store)
        files = await self._download_all(wanted, folder, what)
        tags = [] if ref.digest else [str(ref)]
        record = await asyncio.to_thread(
            self.store.import_blobs,
            manifest,
            config,
            {f"sha256:{h}": p for h, p in files.items()},
            tags=tags,
            digests=[f"{ref.repository}@{top_digest}"],
            index=index_bytes,
            source=f"{ref.repository}@{top_digest}",
            progress=self._store_progress,
        )
        for path in files.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return PulledImage(
            image=record,
            reference=str(ref),
            digest=top_digest,
            layers_downloaded=len(files),
            bytes_downloaded=self.fetched_bytes,
        )

    async def _download_all(
        self, wanted: Mapping[str, dict], folder: Path, what: str
    ) -> dict[str, Path]:
        limit = asyncio.Semaphore(max(1, self.client.config.max_concurrent_downloads))

        async def one(hexdigest: str, desc: dict) -> tuple[str, Path]:
            label = hexdigest[:12]
            total = desc.get("size") if isinstance(desc.get("size"), int) else 0
            async with limit:
                self.report(label, "downloading", 0, total)
                dest = folder / hexdigest
                fetched = await self.client.download(
                    desc,
                    dest,
                    f"layer {label} of {what}",
                    lambda n: self.report(label, "downloading", n, total),
                )
                self.fetched_bytes += fetched
                self.report(label, "downloaded", total, total)
                return hexdigest, dest

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(h, d)) for h, d in wanted.items()]
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        return dict(t.result() for t in tasks)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a failed group of downloads: a kcore error when there is one."""
    errors: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            errors.append(exc)

    walk(group)
    for exc in errors:
        if isinstance(exc, KcoreError):
            return exc
    return errors[0]


async def pull(
    store: ImageStore,
    image: str,
    *,
    auth: Mapping[str, str] | None = None,
    config: RegistryConfig | None = None,
    progress: ProgressCallback | None = None,
) -> PulledImage:
    """Pull ``image`` (a tag or digest reference) from its registry into ``store``.

    Always asks the registry (a tag may have moved); fetches only what the store lacks.
    ``auth`` holds CRI ``AuthConfig`` keys; without it, the node's credentials for that
    registry (``config.auths``) or none. Raises kcore errors (see the module's docstring).
    """
    ref = Reference.parse(image)
    async with RegistryClient(ref, config, auth) as client:
        return await _Pull(store, ref, client, progress).run()


__all__ = [
    "PullProgress",
    "PulledImage",
    "Reference",
    "RegistryClient",
    "RegistryConfig",
    "choose_manifest",
    "clean_downloads",
    "host_platform",
    "parse_challenge",
    "pull",
]
