"""``emptyDir``: scratch space that lives as long as the pod.

On disk it is the target directory itself; with ``medium: Memory`` a tmpfs is mounted at
the target, sized ``sizeLimit`` capped by the pod's memory limit (or, without one, by the
node's allocatable memory), as the kubelet sizes memory-backed volumes. The directory is
mode 0777 so that any user in the pod can write, as the kubelet makes it. A disk
``sizeLimit`` is not enforced here (the kubelet enforces it by eviction).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kcore.errors import NotSupported
from kcore.plugins.volumes.atomic_writer import invalid
from kcore.plugins.volumes.volume_dir import check_target, ensure_tmpfs, remove
from kcore.pods.resources import memory_volume_size

MODE = 0o777


class EmptyDirSource:
    type_name = "emptyDir"

    def __init__(self, node_allocatable: Mapping[str, Any] | None = None) -> None:
        self.node_allocatable = node_allocatable

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        source = volume.get("emptyDir") or {}
        medium = source.get("medium") or ""
        size = None
        if medium == "Memory":
            size = memory_volume_size(pod, source.get("sizeLimit"), self.node_allocatable)
        elif medium.startswith("HugePages"):
            raise NotSupported(f"emptyDir medium {medium} is not supported")
        elif medium:
            raise invalid(
                "emptyDir.medium",
                f'Unsupported value: "{medium}": supported values: "", "Memory"',
            )
        await asyncio.to_thread(_setup, Path(target), size)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        await asyncio.to_thread(remove, Path(target))


def _setup(target: Path, tmpfs_size: int | None) -> None:
    check_target(target)
    if tmpfs_size is not None:
        ensure_tmpfs(target, tmpfs_size, mode=MODE)
    os.chmod(target, MODE)


__all__ = ["EmptyDirSource"]
