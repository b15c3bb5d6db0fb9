"""The built-in score steps, as upstream's default plugins score, with upstream's default
weights.

Each step is a :class:`kcore.ScoreStep`: ``score(pod, node, state)`` in 0..100 for a node
that passed every filter, multiplied by ``weight``. Optional, as upstream's PreScore and
NormalizeScore: ``prepare(pod, state)`` runs once per attempt after the filters
(``state.feasible`` holds the nodes that passed) and returns ``SKIP`` when the step would
score every node alike; ``normalize(pod, scores, state)`` rewrites the raw scores of all
feasible nodes (a list, in the order of ``state.feasible``) into 0..100. A step may also
offer ``score_nodes(pod, nodes, state)``, the list of scores of many nodes at once, which the
scheduler then calls instead of ``score`` (the built-ins do, to save a call per node).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kcore.plugins.scheduler.framework import (
    SKIP,
    CycleState,
    NodeInfo,
    node_affinity_matcher,
    normalized_image,
    tolerates,
)

MAX_NODE_SCORE = 100
_MB = 1024 * 1024
IMAGE_MIN_THRESHOLD = 23 * _MB
IMAGE_MAX_CONTAINER_THRESHOLD = 1000 * _MB


def default_normalize(scores: list[int], reverse: bool = False) -> None:
    """Scale so that the highest score is 100 (``reverse``: the lowest raw score gets 100),
    as upstream's ``DefaultNormalizeScore``."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    for i, score in enumerate(scores):
        score = MAX_NODE_SCORE * score // highest
        scores[i] = MAX_NODE_SCORE - score if reverse else score


class LeastAllocated:
    """NodeResourcesFit's default strategy: prefer nodes with more CPU and memory left
    after the pod (pods without requests count as 100m / 200Mi), CPU and memory weighing
    the same."""

    name = "NodeResourcesFit"
    weight = 1

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        return self.score_nodes(pod, [node], state)[0]

    def score_nodes(
        self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo], state: CycleState
    ) -> list[int]:
        """The scores of many nodes at once (what the scheduler calls)."""
        cpu, memory = state.pod_info.non_zero_cpu, state.pod_info.non_zero_memory
        out = []
        for node in nodes:
            allocatable = node.allocatable
            total = weights = 0
            capacity = allocatable.cpu
            if capacity:
                requested = node.non_zero_cpu + cpu
                if requested <= capacity:
                    total = (capacity - requested) * MAX_NODE_SCORE // capacity
                weights = 1
            capacity = allocatable.memory
            if capacity:
                requested = node.non_zero_memory + memory
                if requested <= capacity:
                    total += (capacity - requested) * MAX_NODE_SCORE // capacity
                weights += 1
            out.append(total // weights if weights else 0)
        return out


class BalancedAllocation:
    """NodeResourcesBalancedAllocation: prefer nodes whose CPU and memory would be used in
    the same proportion after the pod (1 - the standard deviation of the fractions)."""

    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        requests = state.pod_info.requests
        return None if requests.cpu or requests.memory else SKIP  # best-effort pods

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        return self.score_nodes(pod, [node], state)[0]

    def score_nodes(
        self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo], state: CycleState
    ) -> list[int]:
        """The scores of many nodes at once (what the scheduler calls)."""
        want = state.pod_info.requests
        cpu, memory = want.cpu, want.memory
        out = []
        for node in nodes:
            have = node.allocatable
            used = node.requested
            if have.cpu and have.memory:
                cpu_fraction = (used.cpu + cpu) / have.cpu
                memory_fraction = (used.memory + memory) / have.memory
                if cpu_fraction > 1.0:
                    cpu_fraction = 1.0
                if memory_fraction > 1.0:
                    memory_fraction = 1.0
                std = abs(cpu_fraction - memory_fraction) / 2
                out.append(int((1 - std) * MAX_NODE_SCORE))
            else:
                out.append(MAX_NODE_SCORE)  # one resource or none: nothing to balance
        return out


class NodeAffinityPreferred:
    """NodeAffinity's score: the summed weights of the matching
    ``preferredDuringSchedulingIgnoredDuringExecution`` terms, scaled to 0..100."""

    name = "NodeAffinity"
    weight = 2

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        return None if state.pod_info.preferred_node_terms else SKIP

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        labels, name = node.labels, node.name
        return sum(
            weight for weight, term in state.pod_info.preferred_node_terms if term(labels, name)
        )

    def normalize(self, pod: Mapping[str, Any], scores: list[int], state: CycleState) -> None:
        default_normalize(scores)


class TaintTolerationPreferred:
    """TaintToleration's score: prefer nodes with fewer ``PreferNoSchedule`` taints the
    pod does not tolerate."""

    name = "TaintToleration"
    weight = 3

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        if not any(node.prefer_taints for node in state.feasible):
            return SKIP
        state.data[self.name] = tuple(
            t
            for t in state.pod_info.tolerations
            if not t.get("effect") or t.get("effect") == "PreferNoSchedule"
        )
        return None

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        if not node.prefer_taints:
            return 0
        tolerations = state.data[self.name]
        return sum(1 for taint in node.prefer_taints if not tolerates(tolerations, taint))

    def normalize(self, pod: Mapping[str, Any], scores: list[int], state: CycleState) -> None:
        default_normalize(scores, reverse=True)


class PodTopologySpread:
    """Spread the pods of one controller (the same controller ``ownerReference``) over the
    nodes and zones, as upstream's PodTopologySpread does with its system default
    constraints (``kubernetes.io/hostname`` with maxSkew 3 and
    ``topology.kubernetes.io/zone`` with maxSkew 5, both ScheduleAnyway): fewer pods of the
    controller in the node and in its zone score higher. A node without a hostname label
    counts as its own domain."""

    name = "PodTopologySpread"
    weight = 2
    HOSTNAME_MAX_SKEW = 3
    ZONE_MAX_SKEW = 5

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        info = state.pod_info
        if info.spread_constraints:
            return self._prepare_explicit(state)
        if not info.owner_uid or len(state.feasible) < 2:
            return SKIP
        owner = info.owner_uid
        host_weight = math.log(len(state.feasible) + 2)
        zone_counts: dict[str, int] | None = None
        zone_weight = 0.0
        if state.snapshot.zoned_nodes:
            zone_counts = {}
            affinity = node_affinity_matcher(info)
            for node in state.snapshot.nodes:
                if node.zone is None or not affinity(node):
                    continue
                zone_counts[node.zone] = zone_counts.get(node.zone, 0) + node.owner_counts.get(
                    owner, 0
                )
            zones = {node.zone for node in state.feasible if node.zone is not None}
            zone_weight = math.log(len(zones) + 2)
        state.data[self.name] = (owner, host_weight, zone_counts, zone_weight)
        return None

    def _prepare_explicit(self, state: CycleState) -> str | None:
        """The pod's own ``ScheduleAnyway`` constraints replace the system defaults
        (``DoNotSchedule`` ones are the filter's)."""
        from kcore.plugins.scheduler.filters import spread_counts

        soft = [c for c in state.pod_info.spread_constraints if not c.hard]
        if not soft or len(state.feasible) < 2:
            return SKIP
        counts = spread_counts(state.pod_info, soft, state.snapshot.nodes)
        weights = []
        for constraint in soft:
            key = constraint.topology_key
            domains = {n.labels[key] for n in state.feasible if key in n.labels}
            weights.append(math.log(len(domains) + 2))
        state.data[self.name] = ("explicit", soft, counts, weights)
        return None

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        return self.score_nodes(pod, [node], state)[0]

    def score_nodes(
        self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo], state: CycleState
    ) -> list[int]:
        """The scores of many nodes at once (what the scheduler calls)."""
        if state.data[self.name][0] == "explicit":
            return self._score_explicit(nodes, state)
        owner, host_weight, zone_counts, zone_weight = state.data[self.name]
        host_base = self.HOSTNAME_MAX_SKEW - 1
        if zone_counts is None:
            return [round(n.owner_counts.get(owner, 0) * host_weight + host_base) for n in nodes]
        zone_base = self.ZONE_MAX_SKEW - 1
        out = []
        for node in nodes:
            score = node.owner_counts.get(owner, 0) * host_weight + host_base
            if node.zone is not None:
                score += zone_counts.get(node.zone, 0) * zone_weight + zone_base
            out.append(round(score))
        return out

    def _score_explicit(self, nodes: Sequence[NodeInfo], state: CycleState) -> list[int]:
        _, soft, counts, weights = state.data[self.name]
        out = []
        for node in nodes:
            labels = node.labels
            if any(c.topology_key not in labels for c in soft):
                out.append(-1)  # ignored: scores 0 after normalizing, as upstream
                continue
            total = 0.0
            for constraint, domains, weight in zip(soft, counts, weights, strict=True):
                found = domains.get(labels[constraint.topology_key], 0)
                total += found * weight + constraint.max_skew - 1
            out.append(round(total))
        return out

    def normalize(self, pod: Mapping[str, Any], scores: list[int], state: CycleState) -> None:
        if not scores:
            return
        ignored = [i for i, score in enumerate(scores) if score < 0]
        if ignored:
            counted = [s for s in scores if s >= 0]
            if not counted:
                scores[:] = [0] * len(scores)
                return
            for i in ignored:
                scores[i] = max(counted)
            self.normalize(pod, scores, state)
            for i in ignored:
                scores[i] = 0
            return
        highest, lowest = max(scores), min(scores)
        if highest == 0:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
            return
        for i, score in enumerate(scores):
            scores[i] = MAX_NODE_SCORE * (highest + lowest - score) // highest


class InterPodAffinityPreferred:
    """Preferred pod affinity and anti-affinity: each placed pod matching one of the pod's
    weighted terms adds (affinity) or takes away (anti-affinity) the term's weight for
    every node in its topology domain; the sums are scaled to 0..100 between the lowest
    and highest node, as upstream's InterPodAffinity score."""

    name = "InterPodAffinity"
    weight = 2

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        info = state.pod_info
        terms = info.preferred_affinity_terms
        if not terms or len(state.feasible) < 2:
            return SKIP
        domains: dict[tuple[str, str], int] = {}
        for node in state.snapshot.nodes:
            labels = node.labels
            for key, other in node.pods.items():
                if key == info.key:
                    continue
                for weight, term in terms:
                    value = labels.get(term.topology_key)
                    if value is not None and term.matches(other):
                        domain = (term.topology_key, value)
                        domains[domain] = domains.get(domain, 0) + weight
        if not domains:
            return SKIP
        keys = tuple({term.topology_key for _, term in terms})
        state.data[self.name] = (domains, keys)
        return None

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        domains, keys = state.data[self.name]
        labels = node.labels
        return sum(domains.get((k, labels[k]), 0) for k in keys if k in labels)

    def normalize(self, pod: Mapping[str, Any], scores: list[int], state: CycleState) -> None:
        if not scores:
            return
        lowest, highest = min(scores), max(scores)
        spread = highest - lowest
        for i, score in enumerate(scores):
            scores[i] = MAX_NODE_SCORE * (score - lowest) // spread if spread > 0 else 0


class ImageLocality:
    """Prefer nodes that already have the pod's images, weighted by image size and by how
    many nodes have them (so one node holding a popular image does not attract
    everything)."""

    name = "ImageLocality"
    weight = 1

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        images = state.pod_info.images
        if not images or not state.snapshot.image_nodes:
            return SKIP
        state.data[self.name] = tuple(normalized_image(i) for i in images)
        return None

    def score(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> int:
        if not node.images:
            return 0
        images = state.data[self.name]
        spread = state.snapshot.image_nodes
        total_nodes = max(len(state.snapshot), 1)
        total = 0
        for image in images:
            size = node.images.get(image)
            if size is not None:
                total += int(size * spread.get(image, 0) / total_nodes)
        high = IMAGE_MAX_CONTAINER_THRESHOLD * len(images)
        total = min(max(total, IMAGE_MIN_THRESHOLD), high)
        return MAX_NODE_SCORE * (total - IMAGE_MIN_THRESHOLD) // (high - IMAGE_MIN_THRESHOLD)


def default_scores() -> list[Any]:
    return [
        TaintTolerationPreferred(),
        NodeAffinityPreferred(),
        LeastAllocated(),
        PodTopologySpread(),
        InterPodAffinityPreferred(),
        BalancedAllocation(),
        ImageLocality(),
    ]


__all__ = [
    "BalancedAllocation",
    "ImageLocality",
    "InterPodAffinityPreferred",
    "LeastAllocated",
    "NodeAffinityPreferred",
    "PodTopologySpread",
    "TaintTolerationPreferred",
    "default_normalize",
    "default_scores",
]
