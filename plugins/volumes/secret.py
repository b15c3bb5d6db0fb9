"""``secret``: a Secret's keys as files, always on a tmpfs of the volume's own (a secret
never touches the node's disk), sized as a memory-backed ``emptyDir``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kcore.plugins.volumes.keyed import (
    fetch,
    keyed_payload,
    pod_namespace,
    secret_data,
    volume_default_mode,
)
from kcore.plugins.volumes.volume_dir import materialize, remove
from kcore.pods.resources import memory_volume_size


class SecretSource:
    type_name = "secret"
    read_only = True  # API data: never writable from a container, as in Kubernetes

    def __init__(self, node_allocatable: Mapping[str, Any] | None = None) -> None:
        self.node_allocatable = node_allocatable

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        source = volume.get("secret") or {}
        optional = bool(source.get("optional"))
        obj = await fetch(
            api, "Secret", pod_namespace(pod), source.get("secretName"), optional=optional
        )
        payload = keyed_payload(
            "Secret",
            None if obj is None else secret_data(obj),
            source.get("items"),
            volume_default_mode(source),
            optional=optional,
        )
        size = memory_volume_size(pod, None, self.node_allocatable)
        await asyncio.to_thread(materialize, Path(target), payload, tmpfs_size=size)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        await asyncio.to_thread(remove, Path(target))


__all__ = ["SecretSource"]
