"""``downwardAPI``: the pod's own fields and its containers' resources as files.

Each item has a ``path`` and either a ``fieldRef`` (see :mod:`.fieldpath`: name,
namespace, uid, labels, annotations) or a ``resourceFieldRef`` (``containerName``
required, see :mod:`.resources`). On disk, as the kubelet keeps it; a label or annotation
change lands atomically at the next ``setup``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kcore.plugins.volumes.atomic_writer import FileProjection, invalid, validate_mode
from kcore.plugins.volumes.keyed import volume_default_mode
from kcore.plugins.volumes.volume_dir import materialize, remove
from kcore.pods.fieldpath import pod_field
from kcore.pods.resources import container_resource_value, find_container


def downward_payload(
    pod: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]] | None,
    default_mode: int,
    node_allocatable: Mapping[str, Any] | None,
) -> dict[str, FileProjection]:
    out: dict[str, FileProjection] = {}
    for i, item in enumerate(items or []):
        field_ref, resource_ref = item.get("fieldRef"), item.get("resourceFieldRef")
        if (field_ref is None) == (resource_ref is None):
            raise invalid(
                f"items[{i}]", "must specify exactly one of fieldRef and resourceFieldRef"
            )
        if field_ref is not None:
            value = pod_field(pod, field_ref, field=f"items[{i}].fieldRef.fieldPath")
        else:
            name = resource_ref.get("containerName")
            if not name:
                raise invalid(
                    f"items[{i}].resourceFieldRef.containerName",
                    "Required value: container name is required for volumes",
                )
            value = container_resource_value(
                find_container(pod, name),
                resource_ref.get("resource") or "",
                resource_ref.get("divisor"),
                node_allocatable,
            )
        mode = item.get("mode")
        mode = default_mode if mode is None else validate_mode(mode, f"items[{i}].mode")
        out[str(item.get("path") or "")] = FileProjection(value.encode(), mode)
    return out


class DownwardAPISource:
    type_name = "downwardAPI"
    read_only = True  # API data: never writable from a container, as in Kubernetes

    def __init__(self, node_allocatable: Mapping[str, Any] | None = None) -> None:
        self.node_allocatable = node_allocatable

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        source = volume.get("downwardAPI") or {}
        payload = downward_payload(
            pod, source.get("items"), volume_default_mode(source), self.node_allocatable
        )
        await asyncio.to_thread(materialize, Path(target), payload)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        await asyncio.to_thread(remove, Path(target))


__all__ = ["DownwardAPISource", "downward_payload"]
