"""ConfigMaps and Secrets turned into files (reading them is :mod:`kcore.pods.objects`).

Errors carry the kubelet's messages: ``configmap "c" not found``, ``secret "s" not found``,
``configmap references non-existent config key: k``, ``references non-existent secret
key: k``. ``optional: true`` tolerates a missing object (an empty payload) and missing keys
(left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kcore.errors import NotFound
from kcore.plugins.volumes.atomic_writer import FileProjection, validate_mode
from kcore.pods.objects import (
    _WORDS,
    config_map_data,
    fetch,
    pod_namespace,
    secret_data,
)

DEFAULT_MODE = 0o644


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


__all__ = [
    "DEFAULT_MODE",
    "config_map_data",
    "fetch",
    "keyed_payload",
    "pod_namespace",
    "secret_data",
    "volume_default_mode",
]
