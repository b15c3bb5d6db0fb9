"""``configMap``: a ConfigMap's keys as files, on disk as the kubelet keeps them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kcore.plugins.volumes.keyed import (
    config_map_data,
    fetch,
    keyed_payload,
    pod_namespace,
    volume_default_mode,
)
from kcore.plugins.volumes.volume_dir import materialize, remove


class ConfigMapSource:
    type_name = "configMap"
    read_only = True  # API data: never writable from a container, as in Kubernetes

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        source = volume.get("configMap") or {}
        optional = bool(source.get("optional"))
        obj = await fetch(
            api, "ConfigMap", pod_namespace(pod), source.get("name"), optional=optional
        )
        payload = keyed_payload(
            "ConfigMap",
            None if obj is None else config_map_data(obj),
            source.get("items"),
            volume_default_mode(source),
            optional=optional,
        )
        await asyncio.to_thread(materialize, Path(target), payload)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        await asyncio.to_thread(remove, Path(target))


__all__ = ["ConfigMapSource"]
