"""Registry credentials for an image pull, found as the kubelet finds them.

Two sources, as Kubernetes' ``credentialprovider`` keyrings: the pod's
``spec.imagePullSecrets`` (Secrets of type ``kubernetes.io/dockerconfigjson``, whose
``.dockerconfigjson`` is ``{"auths": {"<registry>": {...}}}``, and the legacy
``kubernetes.io/dockercfg``, whose ``.dockercfg`` is the ``{"<registry>": {...}}`` map
itself), then the node's docker config file (the kubelet's ``/var/lib/kubelet/config.json``).
An entry holds ``auth`` (base64 ``user:password``, which wins) or ``username`` and
``password``; ``identitytoken`` and ``registrytoken`` are passed on too.

An entry's key says where it applies, as the kubelet reads it: an ``http://`` or
``https://`` scheme is dropped, and so is a ``/v1/`` or ``/v2/`` path prefix; the host
may carry a port, which must then be equal; a host label may be a glob (``*.example.com``
matches ``a.example.com``, not ``example.com`` nor ``a.b.example.com``); a path is a
string prefix of the image's repository path (``registry.example:5000/team`` matches
``registry.example:5000/team/app`` and, as in Kubernetes, ``.../teamwork/app``).
``docker.io``, ``index.docker.io``, ``registry-1.docker.io`` and
``https://index.docker.io/v1/`` all name Docker Hub, where ``busybox`` comes from.

Every entry that matches is a candidate, the pod's before the node's, each group most
specific first (longer path, then fewer globs in the host). The kubelet tries them in
turn and stops at the first pull that works; no candidate means an anonymous pull, and
when every candidate fails, so does the pull (without an anonymous try).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from kcore.errors import Invalid, KcoreError
from kcore.images import normalize_reference
from kcore.pods.objects import pod_namespace, secret_data

log = structlog.get_logger("kcore.nodeagent.credentials")

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
DOCKER_CFG_KEY = ".dockercfg"

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

Warn = Callable[[str, str], None]
"""``warn(reason, message)``: records a Warning event on the pod."""


@dataclass(frozen=True)
class _Entry:
    host: tuple[str, ...]
    port: str
    path: str
    auth: dict[str, str]

    @property
    def specificity(self) -> tuple[int, int]:
        """Sort key: longer paths first, then hosts with fewer glob characters."""
        globs = sum(label.count("*") + label.count("?") + label.count("[") for label in self.host)
        return (-len(self.path), globs)

    def matches(self, host: tuple[str, ...], port: str, path: str) -> bool:
        return (
            self.port == port
            and len(self.host) == len(host)
            and path.startswith(self.path)
            and all(fnmatch.fnmatchcase(t, g) for g, t in zip(self.host, host, strict=True))
        )


def _split_location(location: str) -> tuple[tuple[str, ...], str, str]:
    """``(host labels, port, path)`` of a keyring key or an image repository."""
    value = location.strip()
    for scheme in ("https://", "http://"):
        if value.lower().startswith(scheme):
            value = value[len(scheme) :]
            break
    hostport, slash, path = value.partition("/")
    path = slash + path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    if path == "/":
        path = ""
    hostport = hostport.lower()
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        labels: tuple[str, ...] = (host,)
    else:
        host, colon, port = hostport.rpartition(":")
        if not colon or not port.isdigit():
            host, port = hostport, ""
        labels = tuple(host.split("."))
    if not port and ".".join(labels) in _DOCKER_HUB_ALIASES:
        labels = tuple(DOCKER_HUB.split("."))
    return labels, port, path


def _decode_auth(value: str) -> tuple[str, str]:
    """``auth`` as the kubelet decodes it: base64, padded or not, of ``user:password``."""
    text = value.strip()
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the auth field is not base64: {exc}") from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise ValueError(
            "unable to parse auth field, must be formatted as base64(username:password)"
        )
    return user, password


def _entry_auth(registry: str, entry: Any) -> dict[str, str]:
    """One entry as a CRI ``AuthConfig`` (only the keys that have a value)."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"the entry for {registry!r} is not an object")
    fields = {}
    for name in ("username", "password", "auth", "identitytoken", "registrytoken"):
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} of the entry for {registry!r} is not a string")
        fields[name] = value or ""
    user, password = fields["username"], fields["password"]
    if fields["auth"]:
        try:
            user, password = _decode_auth(fields["auth"])
        except ValueError as exc:
            raise ValueError(f"the entry for {registry!r}: {exc}") from None
    out = {
        "username": user,
        "password": password,
        "identity_token": fields["identitytoken"],
        "registry_token": fields["registrytoken"],
    }
    return {k: v for k, v in out.items() if v}


class Keyring:
    """Registry credentials indexed by where they apply (Kubernetes' ``BasicDockerKeyring``)."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def add(self, config: Mapping[str, Any]) -> None:
        """Add a ``{"<registry>": {...}}`` map (``auths`` of a config.json). Raises
        ``ValueError`` saying what is wrong with a malformed one, adding nothing."""
        if not isinstance(config, Mapping):
            raise ValueError("the registry map is not an object")
        entries = []
        for registry, entry in config.items():
            auth = _entry_auth(registry, entry)
            if not auth:
                continue
            host, port, path = _split_location(str(registry))
            if not any(host):
                log.info("ignoring a registry credential without a host", registry=registry)
                continue
            entries.append(_Entry(host, port, path, auth))
        self._entries.extend(entries)
        self._entries.sort(key=lambda e: e.specificity)

    def lookup(self, repository: str) -> list[dict[str, str]]:
        """The credentials that apply to ``repository`` (``registry/path``, no tag), most
        specific first."""
        host, port, path = _split_location(repository)
        return [dict(e.auth) for e in self._entries if e.matches(host, port, path)]

    def __len__(self) -> int:
        return len(self._entries)


def repository_of(image: str) -> str:
    """``busybox:1.36`` -> ``docker.io/library/busybox``. Raises ``BadRequest``."""
    name = normalize_reference(image).partition("@")[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def add_secret(keyring: Keyring, secret: Mapping[str, Any]) -> bool:
    """Add an image pull secret's registries; ``False`` when the secret is not of a docker
    config type (the kubelet ignores it). Raises ``Invalid`` for a malformed one."""
    name = (secret.get("metadata") or {}).get("name") or ""
    kind = secret.get("type") or ""
    key = {DOCKER_CONFIG_JSON: DOCKER_CONFIG_JSON_KEY, DOCKER_CFG: DOCKER_CFG_KEY}.get(kind)
    try:
        raw = secret_data(secret).get(key or "") if key else None
    except Invalid as exc:
        raise Invalid(f'image pull secret "{name}": {exc}') from None
    if not raw:
        return False
    try:
        config = _parse_json(raw, key or "")
        if kind == DOCKER_CONFIG_JSON:
            if not isinstance(config, Mapping):
                raise ValueError(f"{key} is not an object")
            config = config.get("auths") or {}
        keyring.add(config)
    except ValueError as exc:
        raise Invalid(f'image pull secret "{name}" ({kind}): {exc}') from None
    return True


def read_node_config(path: Path | str | None) -> Keyring:
    """The node's docker config file: ``{"auths": {...}}`` (config.json) or the legacy
    ``.dockercfg`` map. A missing file is no credentials; a malformed one is logged and
    ignored, as the kubelet does."""
    keyring = Keyring()
    if path is None:
        return keyring
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return keyring
    except OSError as exc:
        log.warning("cannot read the node's docker config", path=str(path), error=str(exc))
        return keyring
    try:
        config = _parse_json(raw, str(path))
        if not isinstance(config, Mapping):
            raise ValueError("it is not an object")
        if "auths" in config:
            config = config["auths"] or {}
        elif not all(isinstance(v, Mapping) for v in config.values()):
            config = {}  # a config.json with only credsStore, HttpHeaders ...
        keyring.add(config)
    except ValueError as exc:
        log.warning("ignoring a malformed node docker config", path=str(path), error=str(exc))
        return Keyring()
    return keyring


async def image_credentials(
    api: Any,
    pod: Mapping[str, Any],
    image: str,
    *,
    node_config: Path | str | None,
    warn: Warn,
) -> list[dict[str, str]]:
    """The CRI ``AuthConfig``s to try, in order, to pull ``image`` for ``pod``; empty
    means pull anonymously.

    A pull secret that cannot be read is skipped and reported once through ``warn``
    (Warning ``FailedToRetrieveImagePullSecret``, the kubelet's words); a malformed one
    raises ``Invalid`` naming it, and an invalid image reference raises ``BadRequest``.
    """
    repository = repository_of(image)
    namespace = pod_namespace(pod)
    secrets = []
    failed = []
    for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        name = (ref or {}).get("name") if isinstance(ref, Mapping) else None
        if not name:
            continue
        try:
            secrets.append(await api.get("v1", "Secret", name, namespace))
        except KcoreError as exc:
            log.info("cannot read an image pull secret", secret=name, error=str(exc))
            failed.append(name)
    if failed:
        warn(
            "FailedToRetrieveImagePullSecret",
            f"Unable to retrieve some image pull secrets ({', '.join(failed)}); "
            "attempting to pull the image may not succeed.",
        )
    from_pod = Keyring()
    for secret in secrets:
        if not add_secret(from_pod, secret):
            name = (secret.get("metadata") or {}).get("name")
            log.info("an image pull secret of another type is ignored", secret=name)
    found = [*from_pod.lookup(repository), *read_node_config(node_config).lookup(repository)]
    unique: list[dict[str, str]] = []
    for auth in found:
        if auth not in unique:
            unique.append(auth)
    return unique


async def pull_with_credentials(
    images: Any, image: str, credentials: Sequence[Mapping[str, str]]
) -> str:
    """Pull ``image`` with each credential in turn until one works, as the kubelet does;
    anonymously when there are none. Returns the image reference. When every attempt
    fails, raises an error of the last one's category whose message is the kubelet's
    aggregate of them (one message alone; several distinct ones as ``[a, b]``)."""
    if not credentials:
        return await images.pull_image(image, None)
    errors: list[KcoreError] = []
    for auth in credentials:
        try:
            return await images.pull_image(image, dict(auth))
        except KcoreError as exc:
            errors.append(exc)
    messages = list(dict.fromkeys(str(e) for e in errors))
    if len(messages) == 1:
        raise errors[-1]
    message = "[" + ", ".join(messages) + "]"
    try:
        aggregate = type(errors[-1])(message)
    except TypeError:
        aggregate = KcoreError(message)
    raise aggregate from errors[-1]


__all__ = [
    "DOCKER_CFG",
    "DOCKER_CONFIG_JSON",
    "Keyring",
    "add_secret",
    "image_credentials",
    "pull_with_credentials",
    "read_node_config",
    "repository_of",
]
