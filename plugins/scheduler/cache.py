"""The scheduler's cache: every node with the pods bound or assumed on it.

Kept current from the Node and Pod watches. A pod the scheduler has chosen a node for is
*assumed* there at once (``assume``), before its binding is written, so the next decision
counts it; the Pod watch later shows it bound (``add_pod`` confirms the assumption), or the
binding fails and the scheduler ``forget``s it. Pods on a node the cache has not seen (the
Node watch lags, or the node is gone) are kept on a placeholder that is never scheduled to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kcore.plugins.scheduler.framework import NodeInfo, PodInfo


class SchedulerCache:
    """Nodes (``nodes``: the ones to schedule to, in a zone-interleaved order) and pods."""

    def __init__(self) -> None:
        self._infos: dict[str, NodeInfo] = {}
        self._known: dict[str, NodeInfo] = {}
        self._pods: dict[str, tuple[PodInfo, str]] = {}
        self._assumed: set[str] = set()
        self._order: list[NodeInfo] | None = None
        self._anti_affinity: dict[str, str] = {}
        self.image_nodes: dict[str, int] = {}
        """How many nodes report each (normalized) image, for ImageLocality."""
        self.zoned_nodes = 0
        """How many nodes carry a zone label."""

    # -- nodes -------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeInfo]:
        """The nodes to schedule to, zones interleaved (as the upstream node tree does), so
        that a sample of them spreads over the zones."""
        if self._order is None:
            zones: dict[str | None, list[NodeInfo]] = {}
            for info in self._known.values():
                zones.setdefault(info.zone, []).append(info)
            groups = list(zones.values())
            order: list[NodeInfo] = []
            for i in range(max((len(g) for g in groups), default=0)):
                order.extend(g[i] for g in groups if i < len(g))
            self._order = order
        return self._order

    def node(self, name: str) -> NodeInfo | None:
        """A known node by name (not the placeholders)."""
        return self._known.get(name)

    def __len__(self) -> int:
        return len(self._known)

    def set_node(self, node: dict[str, Any]) -> NodeInfo:
        """Add a node, or take a new version of it."""
        name = (node.get("metadata") or {}).get("name") or ""
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = NodeInfo(node)
        else:
            if name in self._known:
                self._count(info, -1)
            zone = info.zone
            info.set_node(node)
            if name in self._known and zone == info.zone:
                self._count(info, 1)
                return info
        self._count(info, 1)
        self._known[name] = info
        self._order = None
        return info

    def remove_node(self, name: str) -> None:
        info = self._known.pop(name, None)
        if info is None:
            return
        self._count(info, -1)
        self._order = None
        if not info.pods:
            del self._infos[name]

    def _count(self, info: NodeInfo, sign: int) -> None:
        for image in info.images:
            left = self.image_nodes.get(image, 0) + sign
            if left > 0:
                self.image_nodes[image] = left
            else:
                self.image_nodes.pop(image, None)
        if info.zone:
            self.zoned_nodes += sign

    # -- pods --------------------------------------------------------------------------------

    def add_pod(self, pod: PodInfo) -> None:
        """A pod bound to ``pod.node_name`` (new, changed or confirming its assumption)."""
        self._remove(pod.key)
        self._place(pod, pod.node_name)

    def confirm(self, key: str, pod: dict[str, Any], node_name: str) -> bool:
        """The watch shows an assumed pod bound where it was assumed: keep the parsed pod
        (its spec has not changed), now as a bound one. False if it is not assumed there."""
        placed = self._pods.get(key)
        if key not in self._assumed or placed is None or placed[1] != node_name:
            return False
        self._assumed.discard(key)
        placed[0].pod = pod
        placed[0].node_name = node_name
        return True

    def remove_pod(self, key: str) -> None:
        """A bound pod deleted, or finished (Succeeded or Failed pods use nothing)."""
        self._remove(key)

    def assume(self, pod: PodInfo, node_name: str) -> None:
        """Count ``pod`` on ``node_name`` before its binding is written."""
        self._remove(pod.key)
        self._place(pod, node_name)
        self._assumed.add(pod.key)

    def forget(self, key: str) -> None:
        """Undo :meth:`assume` (the binding failed); a confirmed pod stays."""
        if key in self._assumed:
            self._remove(key)

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def pod(self, key: str) -> tuple[PodInfo, str] | None:
        """The pod and its node, bound or assumed."""
        return self._pods.get(key)

    def pod_count(self) -> int:
        return len(self._pods)

    def anti_affinity_pods(self) -> Iterator[tuple[PodInfo, NodeInfo]]:
        """The placed pods with required pod anti-affinity, with their (known) nodes."""
        for key, node_name in self._anti_affinity.items():
            info = self._known.get(node_name)
            if info is not None:
                yield info.pods[key], info

    @property
    def has_anti_affinity_pods(self) -> bool:
        return bool(self._anti_affinity)

    def _place(self, pod: PodInfo, node_name: str) -> None:
        info = self._infos.get(node_name)
        if info is None:
            info = self._infos[node_name] = NodeInfo(name=node_name)
        info.add_pod(pod)
        self._pods[pod.key] = (pod, node_name)
        if pod.anti_affinity_terms:
            self._anti_affinity[pod.key] = node_name

    def _remove(self, key: str) -> None:
        self._assumed.discard(key)
        placed = self._pods.pop(key, None)
        if placed is None:
            return
        _, node_name = placed
        self._anti_affinity.pop(key, None)
        info = self._infos.get(node_name)
        if info is not None:
            info.remove_pod(key)
            if not info.pods and node_name not in self._known:
                del self._infos[node_name]


__all__ = ["SchedulerCache"]
