"""The built-in filter steps, as upstream's default plugins filter (``pkg/scheduler/
framework/plugins``), with their reasons word for word.

Each step is a :class:`kcore.FilterStep`: ``filter(pod, node, state)`` returns ``None`` when
the pod may go to the node, else the reason (several reasons as a tuple). ``node`` is a
:class:`~kcore.plugins.scheduler.framework.NodeInfo` and ``state`` a
:class:`~kcore.plugins.scheduler.framework.CycleState`. The optional ``prepare(pod, state)``
runs once per attempt before the first ``filter`` call (upstream's PreFilter) and returns
``SKIP`` when the step has nothing to check for this pod. ``unresolvable`` says whether a
failure could be fixed by preempting pods on the node (upstream's
``UnschedulableAndUnresolvable``): ``True`` for all of the step's reasons, or the set of
reasons that are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kcore.plugins.scheduler.framework import (
    HOSTNAME_LABEL,
    SKIP,
    UNSCHEDULABLE_TAINT,
    CycleState,
    NodeInfo,
    PodInfo,
    SpreadConstraint,
    node_affinity_matcher,
    tolerates,
)

_UNSCHEDULABLE_TAINT = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}


class NodeUnschedulable:
    """Nodes with ``spec.unschedulable`` (cordoned) take no pods, unless the pod tolerates
    the ``node.kubernetes.io/unschedulable:NoSchedule`` taint."""

    name = "NodeUnschedulable"
    unresolvable = True
    reason = "node(s) were unschedulable"

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        return SKIP if tolerates(state.pod_info.tolerations, _UNSCHEDULABLE_TAINT) else None

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        return self.reason if node.unschedulable else None


class NodeName:
    """A pod that names its node (``spec.nodeName``) fits only there."""

    name = "NodeName"
    unresolvable = True
    reason = "node(s) didn't match the requested node name"

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        return None if state.pod_info.node_name else SKIP

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        wanted = state.pod_info.node_name
        return self.reason if wanted and wanted != node.name else None


class TaintToleration:
    """A node's ``NoSchedule`` and ``NoExecute`` taints keep out pods that do not tolerate
    them."""

    name = "TaintToleration"
    unresolvable = True

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        if not node.hard_taints:
            return None
        tolerations = state.pod_info.tolerations
        for taint in node.hard_taints:
            if not tolerates(tolerations, taint):
                return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
        return None


class NodeAffinity:
    """``spec.nodeSelector`` (every label equal) and the required node affinity (any of
    the ``nodeSelectorTerms``: ``matchExpressions`` with In, NotIn, Exists, DoesNotExist,
    Gt, Lt, and ``matchFields`` on ``metadata.name``)."""

    name = "NodeAffinity"
    unresolvable = True
    reason = "node(s) didn't match Pod's node affinity/selector"

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        info = state.pod_info
        return None if info.node_selector or info.required_node_terms is not None else SKIP

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        info = state.pod_info
        labels = node.labels
        for key, value in info.node_selector.items():
            if labels.get(key) != value:
                return self.reason
        terms = info.required_node_terms
        if terms is not None and not any(term(labels, node.name) for term in terms):
            return self.reason
        return None


class NodePorts:
    """A host port (``hostPort``, per protocol and host IP) is used by one pod per node."""

    name = "NodePorts"
    reason = "node(s) didn't have free ports for the requested pod ports"

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        return None if state.pod_info.ports else SKIP

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        used = node.used_ports
        if not used:
            return None
        for ip, protocol, port in state.pod_info.ports:
            ips = used.get((protocol, port))
            if ips and (ip == "0.0.0.0" or "0.0.0.0" in ips or ip in ips):
                return self.reason
        return None


class NodeResourcesFit:
    """The pod's requests (containers summed, or the largest init container, plus
    overhead) fit in the node's allocatable minus what its pods request, and one more pod
    fits under its allocatable ``pods``."""

    name = "NodeResourcesFit"

    def filter(
        self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState
    ) -> str | tuple[str, ...] | None:
        want = state.pod_info.requests
        if (
            node.free_pods > 0
            and want.cpu <= node.free_cpu
            and want.memory <= node.free_memory
            and want.ephemeral <= node.free_ephemeral
            and not want.scalars
        ):
            return None
        return self._reasons(node, state)

    def _reasons(self, node: NodeInfo, state: CycleState) -> str | tuple[str, ...] | None:
        reasons: list[str] | None = None
        if len(node.pods) + 1 > node.allowed_pods:
            reasons = ["Too many pods"]
        want = state.pod_info.requests
        have = node.allocatable
        used = node.requested
        if want.cpu and want.cpu > have.cpu - used.cpu:
            reasons = [*(reasons or ()), "Insufficient cpu"]
        if want.memory and want.memory > have.memory - used.memory:
            reasons = [*(reasons or ()), "Insufficient memory"]
        if want.ephemeral and want.ephemeral > have.ephemeral - used.ephemeral:
            reasons = [*(reasons or ()), "Insufficient ephemeral-storage"]
        for name, amount in want.scalars.items():
            if amount and amount > have.scalars.get(name, 0) - used.scalars.get(name, 0):
                reasons = [*(reasons or ()), f"Insufficient {name}"]
        if reasons is None:
            return None
        return reasons[0] if len(reasons) == 1 else tuple(reasons)


class InterPodAffinity:
    """Required pod anti-affinity, both ways (the pod's terms against the pods placed in a
    topology domain, and placed pods' terms against the pod), and required pod affinity.
    A term's topology domain is the node's value of ``topologyKey``
    (``kubernetes.io/hostname``: the node itself)."""

    name = "InterPodAffinity"
    unresolvable = frozenset(("node(s) didn't match pod affinity rules",))
    AFFINITY = "node(s) didn't match pod affinity rules"
    ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
    EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        info = state.pod_info
        snapshot = state.snapshot
        # Domains where a placed pod's anti-affinity term refuses this pod.
        existing: set[tuple[str, str]] = set()
        if snapshot.has_anti_affinity_pods:
            for other, node in snapshot.anti_affinity_pods():
                if other.key == info.key:
                    continue
                for term in other.anti_affinity_terms:
                    value = node.labels.get(term.topology_key)
                    if value is not None and term.matches(info):
                        existing.add((term.topology_key, value))
        # The pod's own anti-affinity: per node for the hostname key, else per domain.
        node_local = []
        forbidden: set[tuple[str, str]] = set()
        for term in info.anti_affinity_terms:
            if term.topology_key == HOSTNAME_LABEL:
                node_local.append(term)
            else:
                forbidden |= _domains(snapshot, term, info.key)
        # Required affinity: each term needs a domain holding a matching pod.
        affinity = []
        for term in info.affinity_terms:
            domains = _domains(snapshot, term, info.key)
            if not domains and term.matches(info):
                domains = None  # the first pod of a group that selects itself goes anywhere
            affinity.append((term.topology_key, domains))
        if not (existing or node_local or forbidden or affinity):
            return SKIP
        state.data[self.name] = (existing, node_local, forbidden, affinity)
        return None

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        existing, node_local, forbidden, affinity = state.data[self.name]
        labels = node.labels
        for key, domains in affinity:
            value = labels.get(key)
            if value is None or (domains is not None and (key, value) not in domains):
                return self.AFFINITY
        for term in node_local:
            if HOSTNAME_LABEL in labels and any(
                term.matches(other) for key, other in node.pods.items() if key != state.pod_info.key
            ):
                return self.ANTI_AFFINITY
        if forbidden:
            for key, value in labels.items():
                if (key, value) in forbidden:
                    return self.ANTI_AFFINITY
        if existing:
            for key, value in labels.items():
                if (key, value) in existing:
                    return self.EXISTING_ANTI_AFFINITY
        return None


class PodTopologySpread:
    """The pod's ``DoNotSchedule`` topology spread constraints: placing the pod in a
    node's domain may not make that domain hold more than ``maxSkew`` matching pods above
    the emptiest domain (zero while fewer than ``minDomains`` domains exist). A node
    lacking a constraint's topology label is refused (unresolvably)."""

    name = "PodTopologySpread"
    MISMATCH = "node(s) didn't match pod topology spread constraints"
    MISSING_LABEL = MISMATCH + " (missing required label)"
    unresolvable = frozenset((MISSING_LABEL,))

    def prepare(self, pod: Mapping[str, Any], state: CycleState) -> str | None:
        info = state.pod_info
        hard = [c for c in info.spread_constraints if c.hard]
        if not hard:
            return SKIP
        counts = spread_counts(info, hard, state.snapshot.nodes)
        checks = []
        for constraint, domains in zip(hard, counts, strict=True):
            lowest = min(domains.values()) if domains else 0
            if len(domains) < constraint.min_domains:
                lowest = 0
            self_match = 1 if constraint.matches(info, info.namespace) else 0
            checks.append((constraint, domains, lowest, self_match))
        state.data[self.name] = checks
        return None

    def filter(self, pod: Mapping[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        labels = node.labels
        for constraint, domains, lowest, self_match in state.data[self.name]:
            value = labels.get(constraint.topology_key)
            if value is None:
                return self.MISSING_LABEL
            if domains.get(value, 0) + self_match - lowest > constraint.max_skew:
                return self.MISMATCH
        return None


def spread_counts(
    info: PodInfo, constraints: list[SpreadConstraint], nodes: Any
) -> list[dict[str, int]]:
    """Per constraint, the matching pods in each topology domain, over the nodes that
    count: they carry every constraint's topology label and pass the constraint's node
    affinity and taint policies (upstream's PreFilter and PreScore counting)."""
    affinity = node_affinity_matcher(info)
    keys = [c.topology_key for c in constraints]
    counts: list[dict[str, int]] = [{} for _ in constraints]
    for node in nodes:
        labels = node.labels
        if any(k not in labels for k in keys):
            continue
        passes_affinity = None
        tolerated = None
        for i, constraint in enumerate(constraints):
            if constraint.honor_affinity:
                if passes_affinity is None:
                    passes_affinity = affinity(node)
                if not passes_affinity:
                    continue
            if constraint.honor_taints:
                if tolerated is None:
                    tolerated = all(tolerates(info.tolerations, t) for t in node.hard_taints)
                if not tolerated:
                    continue
            value = labels[constraint.topology_key]
            found = sum(1 for p in node.pods.values() if constraint.matches(p, info.namespace))
            domain = counts[i]
            domain[value] = domain.get(value, 0) + found
    return counts


def _domains(snapshot: Any, term: Any, own_key: str) -> set[tuple[str, str]]:
    """The ``(topologyKey, value)`` domains holding a pod that matches ``term``."""
    found: set[tuple[str, str]] = set()
    key = term.topology_key
    for node in snapshot.nodes:
        value = node.labels.get(key)
        if value is None or (key, value) in found:
            continue
        for pod_key, other in node.pods.items():
            if pod_key != own_key and term.matches(other):
                found.add((key, value))
                break
    return found


def default_filters() -> list[Any]:
    """The built-in filters in upstream's order (the first failing one names the reason)."""
    return [
        NodeUnschedulable(),
        NodeName(),
        TaintToleration(),
        NodeAffinity(),
        NodePorts(),
        NodeResourcesFit(),
        PodTopologySpread(),
        InterPodAffinity(),
    ]


__all__ = [
    "InterPodAffinity",
    "NodeAffinity",
    "NodeName",
    "NodePorts",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "PodTopologySpread",
    "TaintToleration",
    "default_filters",
    "spread_counts",
]
