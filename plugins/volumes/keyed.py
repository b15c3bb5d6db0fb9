"""ConfigMaps and Secrets: reading them through the API and turning their keys into files.

Errors carry the kubelet's messages: ``configmap "c" not found``, ``secret "s" not found``,
``configmap references non-existent config key: k``, ``references non-existent secret
key: k``. ``optional: true`` tolerates a missing object (an empty payload) and missing keys
(left out).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from kcore.errors import NotFound
from kcore.plugins.volumes.atomic_writer import FileProjection, invalid, validate_mode

DEFAULT_MODE = 0o644

#: kind -> (the word the kubelet's messages use, the message of a missing key)
_WORDS = {
    "ConfigMap": ("configmap", "configmap references non-existent config key: {key}"),
    "Secret": ("secret", "references non-existent secret key: {key}"),
}


async def fetch(
    api: Any, kind: str, namespace: str, name: str, *, optional: bool = False
) -> Mapping[str, Any] | None:
    """The ConfigMap or Secret ``namespace/name``; ``None`` when it is missing and
    ``optional``; ``NotFound`` with the kubelet's message when it is missing and required."""
    if not name:
        raise invalid("name", f"a {kind} name is required")
    try:
        return await api.get("v1", kind, name, namespace)
    except NotFound:
        if optional:
            return None
        raise NotFound(f'{_WORDS[kind][0]} "{name}" not found') from None


def _b64(value: Any, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise invalid(field, "illegal base64 data") from None


def config_map_data(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    """Every key of a ConfigMap: ``data`` as UTF-8, ``binaryData`` base64-decoded."""
    out = {k: str(v).encode() for k, v in (config_map.get("data") or {}).items()}
    for key, value in (config_map.get("binaryData") or {}).items():
        out[key] = _b64(value, f"binaryData[{key}]")
    return out


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """Every key of a Secret: ``data`` base64-decoded (as JSON carries it), plus any
    ``stringData`` a server left unmerged."""
    out = {k: _b64(v, f"data[{k}]") for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def keyed_payload(
    kind: str,
    data: Mapping[str, bytes] | None,
    items: Sequence[Mapping[str, Any]] | None,
    default_mode: int,
    *,
    optional: bool,
) -> dict[str, FileProjection]:
    """Files for ``data`` (``None``: the object is missing and optional): every key at its
    own name, or only ``items[{key, path, mode}]``."""
    if data is None:
        return {}
    if not items:
        return {key: FileProjection(value, default_mode) for key, value in data.items()}
    out: dict[str, FileProjection] = {}
    for i, item in enumerate(items):
        key, path = item.get("key"), item.get("path")
        if key not in data:
            if optional:
                continue
            raise NotFound(_WORDS[kind][1].format(key=key))
        mode = item.get("mode")
        mode = default_mode if mode is None else validate_mode(mode, f"items[{i}].mode")
        out[str(path) if path is not None else ""] = FileProjection(data[key], mode)
    return out


def volume_default_mode(source: Mapping[str, Any]) -> int:
    mode = source.get("defaultMode")
    return DEFAULT_MODE if mode is None else validate_mode(mode, "defaultMode")


def pod_namespace(pod: Mapping[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("namespace") or "default"


__all__ = [
    "DEFAULT_MODE",
    "config_map_data",
    "fetch",
    "keyed_payload",
    "pod_namespace",
    "secret_data",
    "volume_default_mode",
]
