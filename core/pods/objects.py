"""A pod's ConfigMaps and Secrets read through the API, with the kubelet's messages:
``configmap "c" not found``, ``secret "s" not found``; ``optional`` tolerates a missing
object. Shared by the node agent's environment building and the volume sources."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from kcore.errors import FieldError, Invalid, NotFound


def invalid(field: str, message: str) -> Invalid:
    """``Invalid`` whose message is exactly the kubelet's, with the field as its cause."""
    return Invalid(message, causes=[FieldError(field, message)])


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


def pod_namespace(pod: Mapping[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("namespace") or "default"
