"""Container resources as the downward API shows them, and the node's allocatable.

``resourceFieldRef`` (KK ``pkg/api/v1/resource/helpers.go``): the value is
``ceil(quantity / divisor)`` (CPU in millicores first, as ``MilliValue()``; the rest in
units, as ``Value()``); the divisor defaults to 1; a limit the container does not set is
the node's allocatable, as the kubelet's ``defaultPodLimitsForDownwardAPI`` makes it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import Any

from kcore.api.quantity import parse_quantity
from kcore.errors import NotFound
from kcore.pods.objects import invalid

_PLAIN = ("cpu", "memory", "ephemeral-storage")


def quantity(value: Any, field: str = "quantity") -> Decimal:
    """``"250m"`` -> 0.25, ``"1Gi"`` -> 1073741824, ``"128M"`` -> 128000000; ``Invalid``
    when ``value`` is no quantity."""
    try:
        return parse_quantity(value)
    except (ValueError, TypeError) as exc:
        raise invalid(field, f"{value!r}: {exc}") from None


def default_node_allocatable() -> dict[str, str]:
    """This machine's CPUs and memory (``MemTotal``), as a node without reservations
    offers them."""
    return dict(_machine())


@cache
def _machine() -> dict[str, str]:
    memory_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki"}


def find_container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if container.get("name") == name:
                return container
    raise NotFound(f"container {name} not found")


def _resource_name(resource: str) -> tuple[str, str]:
    kind, _, name = resource.partition(".")
    if kind in ("limits", "requests") and (name in _PLAIN or name.startswith("hugepages-")):
        return kind, name
    raise invalid("resourceFieldRef.resource", f"unsupported container resource : {resource}")


def container_resource_value(
    container: Mapping[str, Any],
    resource: str,
    divisor: Any = None,
    node_allocatable: Mapping[str, Any] | None = None,
) -> str:
    """The text of ``resource`` (``limits.cpu``, ``requests.memory``,
    ``limits.hugepages-2Mi`` ...) of ``container`` in units of ``divisor``."""
    kind, name = _resource_name(resource)
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = (node_allocatable or default_node_allocatable()).get(name)
    amount = quantity(value if value is not None else 0, f"resources.{kind}.{name}")
    by = quantity(divisor, "resourceFieldRef.divisor") if divisor not in (None, "") else Decimal(1)
    if by < 0:
        raise invalid("resourceFieldRef.divisor", f"{divisor!r}: must be positive")
    if by == 0:
        by = Decimal(1)
    if name == "cpu":
        return str(math.ceil(math.ceil(amount * 1000) / math.ceil(by * 1000)))
    return str(math.ceil(math.ceil(amount) / math.ceil(by)))


def pod_memory_limit(pod: Mapping[str, Any]) -> int | None:
    """The pod's memory limit in bytes (the larger of its containers' sum and its largest
    init container), or ``None`` when a container has no memory limit."""
    spec = pod.get("spec") or {}

    def limits(key: str) -> list[int | None]:
        out: list[int | None] = []
        for container in spec.get(key) or []:
            value = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            out.append(None if value is None else math.ceil(quantity(value)))
        return out

    app, init = limits("containers"), limits("initContainers")
    if not app or None in app or None in init:
        return None
    return max([sum(v for v in app if v is not None), *(v for v in init if v is not None)])


def memory_volume_size(
    pod: Mapping[str, Any],
    size_limit: Any,
    node_allocatable: Mapping[str, Any] | None,
) -> int:
    """The size of a memory-backed volume, as the kubelet computes it: the pod's memory
    limit, else the node's allocatable memory, capped by ``sizeLimit``."""
    limit = pod_memory_limit(pod)
    if limit is None:
        memory = (node_allocatable or default_node_allocatable()).get("memory")
        limit = math.ceil(quantity(memory)) if memory is not None else 0
    if size_limit not in (None, ""):
        wanted = math.ceil(quantity(size_limit, "emptyDir.sizeLimit"))
        if wanted <= 0:
            raise invalid("emptyDir.sizeLimit", f"{size_limit!r}: must be positive")
        limit = min(limit, wanted) if limit > 0 else wanted
    return limit


__all__ = [
    "container_resource_value",
    "default_node_allocatable",
    "find_container",
    "memory_volume_size",
    "pod_memory_limit",
    "quantity",
]
