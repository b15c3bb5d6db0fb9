"""The scheduler's data model: a pod parsed once (:class:`PodInfo`), a node with what is
placed on it (:class:`NodeInfo`), one scheduling attempt (:class:`CycleState`), and the
matching rules the steps share (label selectors, node selector terms, tolerations).

As in the Kubernetes scheduling framework (``pkg/scheduler/framework/types.go``), a node's
accounting counts every pod bound to it and every pod the scheduler has *assumed* on it
(chosen, binding in flight), so the next decision already sees the previous one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from kcore.api.quantity import parse_quantity

HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

DEFAULT_MILLI_CPU_REQUEST = 100
"""A container without a CPU request counts as 100m when scoring (not when fitting)."""
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
"""A container without a memory request counts as 200Mi when scoring (not when fitting)."""

SKIP = "Skip"
"""What a step's optional ``prepare`` returns when it has nothing to do for this pod: the
scheduler then leaves the step out of this attempt (the framework's ``Skip`` status)."""


# -- quantities --------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def milli_value(value: str | int | float) -> int:
    """``"250m"`` -> 250, ``"2"`` -> 2000 (rounded up, as ``Quantity.MilliValue``)."""
    return math.ceil(parse_quantity(value) * 1000)


@lru_cache(maxsize=8192)
def int_value(value: str | int | float) -> int:
    """``"1Ki"`` -> 1024 (rounded up, as ``Quantity.Value``)."""
    return math.ceil(parse_quantity(value))


def _amount(name: str, value: Any) -> int:
    try:
        return milli_value(value) if name == "cpu" else int_value(value)
    except (ValueError, TypeError):
        return 0


class Resources:
    """An amount of CPU (millicores), memory, ephemeral storage (bytes) and any other
    resource by name (extended resources, hugepages), as plain integers."""

    __slots__ = ("cpu", "ephemeral", "memory", "scalars")

    def __init__(
        self, cpu: int = 0, memory: int = 0, ephemeral: int = 0, scalars: dict | None = None
    ):
        self.cpu = cpu
        self.memory = memory
        self.ephemeral = ephemeral
        self.scalars: dict[str, int] = scalars or {}

    @classmethod
    def parse(cls, values: Mapping[str, Any] | None) -> Resources:
        out = cls()
        for name, value in (values or {}).items():
            out.set(name, _amount(name, value))
        return out

    def get(self, name: str) -> int:
        if name == "cpu":
            return self.cpu
        if name == "memory":
            return self.memory
        if name == "ephemeral-storage":
            return self.ephemeral
        return self.scalars.get(name, 0)

    def set(self, name: str, amount: int) -> None:
        if name == "cpu":
            self.cpu = amount
        elif name == "memory":
            self.memory = amount
        elif name == "ephemeral-storage":
            self.ephemeral = amount
        elif name != "pods":
            self.scalars[name] = amount

    def names(self) -> Iterator[str]:
        yield from ("cpu", "memory", "ephemeral-storage")
        yield from self.scalars

    def add(self, other: Resources, sign: int = 1) -> None:
        self.cpu += sign * other.cpu
        self.memory += sign * other.memory
        self.ephemeral += sign * other.ephemeral
        for name, amount in other.scalars.items():
            self.scalars[name] = self.scalars.get(name, 0) + sign * amount

    def maximum(self, other: Resources) -> None:
        for name in other.names():
            if other.get(name) > self.get(name):
                self.set(name, other.get(name))

    def copy(self) -> Resources:
        return Resources(self.cpu, self.memory, self.ephemeral, dict(self.scalars))

    def is_zero(self) -> bool:
        return not (self.cpu or self.memory or self.ephemeral or any(self.scalars.values()))

    def __repr__(self) -> str:
        return (
            f"Resources(cpu={self.cpu}m, memory={self.memory}, "
            f"ephemeral={self.ephemeral}, scalars={self.scalars})"
        )


def pod_requests(spec: Mapping[str, Any]) -> tuple[Resources, int, int]:
    """What a pod asks for, as ``pkg/api/v1/resource.PodRequests`` computes it: the sum
    over its containers, or the largest init container if larger (sidecars, i.e. init
    containers with ``restartPolicy: Always``, run beside everything after them), plus
    ``spec.overhead``. Also the CPU and memory used for scoring, where a container without
    a request counts as 100m / 200Mi."""
    total = Resources()
    non_zero_cpu = non_zero_memory = 0
    for container in spec.get("containers") or ():
        requests = Resources.parse((container.get("resources") or {}).get("requests"))
        total.add(requests)
        non_zero_cpu += requests.cpu or DEFAULT_MILLI_CPU_REQUEST
        non_zero_memory += requests.memory or DEFAULT_MEMORY_REQUEST
    sidecars = Resources()
    init_max = Resources()
    init_nz_cpu = init_nz_memory = sidecar_nz_cpu = sidecar_nz_memory = 0
    for container in spec.get("initContainers") or ():
        requests = Resources.parse((container.get("resources") or {}).get("requests"))
        nz_cpu = requests.cpu or DEFAULT_MILLI_CPU_REQUEST
        nz_memory = requests.memory or DEFAULT_MEMORY_REQUEST
        if container.get("restartPolicy") == "Always":
            sidecars.add(requests)
            sidecar_nz_cpu += nz_cpu
            sidecar_nz_memory += nz_memory
            candidate = sidecars.copy()
            cand_cpu, cand_memory = sidecar_nz_cpu, sidecar_nz_memory
        else:
            candidate = sidecars.copy()
            candidate.add(requests)
            cand_cpu, cand_memory = sidecar_nz_cpu + nz_cpu, sidecar_nz_memory + nz_memory
        init_max.maximum(candidate)
        init_nz_cpu = max(init_nz_cpu, cand_cpu)
        init_nz_memory = max(init_nz_memory, cand_memory)
    total.add(sidecars)
    total.maximum(init_max)
    non_zero_cpu = max(non_zero_cpu + sidecar_nz_cpu, init_nz_cpu)
    non_zero_memory = max(non_zero_memory + sidecar_nz_memory, init_nz_memory)
    overhead = spec.get("overhead")
    if overhead:
        extra = Resources.parse(overhead)
        total.add(extra)
        non_zero_cpu += extra.cpu
        non_zero_memory += extra.memory
    return total, non_zero_cpu, non_zero_memory


# -- selectors ---------------------------------------------------------------------------

LabelMatcher = Callable[[Mapping[str, str]], bool]


def _never(labels: Mapping[str, str]) -> bool:
    return False


def _always(labels: Mapping[str, str]) -> bool:
    return True


def label_selector_matcher(selector: Mapping[str, Any] | None) -> LabelMatcher:
    """A ``metav1.LabelSelector`` as a function of labels. An empty selector matches
    everything; a missing one (``None``) matches nothing, as in affinity terms."""
    if selector is None:
        return _never
    match_labels = dict(selector.get("matchLabels") or {})
    expressions = []
    for expr in selector.get("matchExpressions") or ():
        expressions.append(
            (expr.get("key"), expr.get("operator"), frozenset(expr.get("values") or ()))
        )
    if not match_labels and not expressions:
        return _always

    def matches(labels: Mapping[str, str]) -> bool:
        for key, value in match_labels.items():
            if labels.get(key) != value:
                return False
        for key, op, values in expressions:
            if op == "In":
                if labels.get(key) not in values:
                    return False
            elif op == "NotIn":
                if key in labels and labels[key] in values:
                    return False
            elif op == "Exists":
                if key not in labels:
                    return False
            elif op == "DoesNotExist":
                if key in labels:
                    return False
            else:
                return False
        return True

    return matches


NodeMatcher = Callable[[Mapping[str, str], str], bool]


def _requirement(expr: Mapping[str, Any]) -> Callable[[Mapping[str, str]], bool]:
    key, op = expr.get("key"), expr.get("operator")
    values = list(expr.get("values") or ())
    if op == "In":
        allowed = frozenset(values)
        return lambda labels: labels.get(key) in allowed
    if op == "NotIn":
        refused = frozenset(values)
        return lambda labels: labels.get(key) not in refused
    if op == "Exists":
        return lambda labels: key in labels
    if op == "DoesNotExist":
        return lambda labels: key not in labels
    if op in ("Gt", "Lt") and len(values) == 1:
        try:
            bound = int(values[0])
        except (TypeError, ValueError):
            return _never

        def compare(labels: Mapping[str, str]) -> bool:
            try:
                value = int(labels[key])
            except (KeyError, TypeError, ValueError):
                return False
            return value > bound if op == "Gt" else value < bound

        return compare
    return _never


def node_selector_term_matcher(term: Mapping[str, Any]) -> NodeMatcher:
    """One ``NodeSelectorTerm``: its ``matchExpressions`` (In, NotIn, Exists,
    DoesNotExist, Gt, Lt on labels) and ``matchFields`` (``metadata.name`` with In or
    NotIn) all hold. A term with neither matches no node."""
    label_reqs = [_requirement(e) for e in term.get("matchExpressions") or ()]
    field_reqs = []
    for expr in term.get("matchFields") or ():
        if expr.get("key") != "metadata.name" or expr.get("operator") not in ("In", "NotIn"):
            field_reqs.append(_never)
        else:
            field_reqs.append(_requirement(expr))
    if not label_reqs and not field_reqs:
        return lambda labels, name: False

    def matches(labels: Mapping[str, str], name: str) -> bool:
        for req in label_reqs:
            if not req(labels):
                return False
        if field_reqs:
            fields = {"metadata.name": name}
            for req in field_reqs:
                if not req(fields):
                    return False
        return True

    return matches


# -- tolerations -------------------------------------------------------------------------


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (``Toleration.ToleratesTaint``)."""
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key")
        if key and key != taint.get("key"):
            continue
        op = toleration.get("operator") or "Equal"
        if op == "Exists":
            return True
        if op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


# -- pods --------------------------------------------------------------------------------


class AffinityTerm:
    """A ``PodAffinityTerm``: pods matching ``selector`` in ``namespaces`` (``None``: all
    namespaces), per domain of ``topology_key``."""

    __slots__ = ("namespaces", "selector", "topology_key")

    def __init__(self, term: Mapping[str, Any], own_namespace: str):
        self.topology_key: str = term.get("topologyKey") or ""
        self.selector = label_selector_matcher(term.get("labelSelector"))
        namespaces = term.get("namespaces") or ()
        if namespaces:
            self.namespaces: frozenset[str] | None = frozenset(namespaces)
        elif term.get("namespaceSelector") is not None:
            # Namespace labels are not watched: any namespaceSelector counts as all namespaces.
            self.namespaces = None
        else:
            self.namespaces = frozenset((own_namespace,))

    def matches(self, pod: PodInfo) -> bool:
        if self.namespaces is not None and pod.namespace not in self.namespaces:
            return False
        return self.selector(pod.labels)


class SpreadConstraint:
    """A ``TopologySpreadConstraint`` of a pod: how many pods matching ``selector`` (in the
    pod's namespace; ``matchLabelKeys`` folded in with the pod's own values) each domain of
    ``topology_key`` holds may differ by at most ``max_skew``. ``hard`` for
    ``DoNotSchedule`` (a filter), else ``ScheduleAnyway`` (a score). Nodes count when they
    pass the pod's node affinity (``nodeAffinityPolicy: Honor``, the default) and, with
    ``nodeTaintsPolicy: Honor``, when the pod tolerates their taints."""

    __slots__ = (
        "hard",
        "honor_affinity",
        "honor_taints",
        "max_skew",
        "min_domains",
        "selector",
        "topology_key",
    )

    def __init__(self, constraint: Mapping[str, Any], labels: Mapping[str, str]):
        self.max_skew = int(constraint.get("maxSkew") or 1)
        self.topology_key: str = constraint.get("topologyKey") or ""
        self.hard = (constraint.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"
        selector = constraint.get("labelSelector")
        keys = [k for k in constraint.get("matchLabelKeys") or () if k in labels]
        if selector is not None and keys:
            selector = dict(selector)
            selector["matchLabels"] = {
                **(selector.get("matchLabels") or {}),
                **{k: labels[k] for k in keys},
            }
        self.selector = label_selector_matcher(selector)
        self.min_domains = int(constraint.get("minDomains") or 1)
        self.honor_affinity = (constraint.get("nodeAffinityPolicy") or "Honor") == "Honor"
        self.honor_taints = (constraint.get("nodeTaintsPolicy") or "Ignore") == "Honor"

    def matches(self, pod: PodInfo, namespace: str) -> bool:
        """Whether a placed pod counts for this constraint (terminating pods do not)."""
        if pod.namespace != namespace or (pod.pod.get("metadata") or {}).get("deletionTimestamp"):
            return False
        return self.selector(pod.labels)


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    ports = []
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or ():
            if key == "initContainers" and container.get("restartPolicy") != "Always":
                continue
            for port in container.get("ports") or ():
                host_port = port.get("hostPort")
                if host_port:
                    ports.append(
                        (port.get("hostIP") or "0.0.0.0", port.get("protocol") or "TCP", host_port)
                    )
    return tuple(ports)


class PodInfo:
    """A pod, parsed once for every attempt and for the node accounting: its requests,
    tolerations, affinity, owner and host ports. ``pod`` is the object as served."""

    __slots__ = (
        "affinity_terms",
        "anti_affinity_terms",
        "creation",
        "images",
        "key",
        "labels",
        "name",
        "namespace",
        "node_name",
        "node_selector",
        "non_zero_cpu",
        "non_zero_memory",
        "owner_uid",
        "pod",
        "ports",
        "preemption_policy",
        "preferred_affinity_terms",
        "preferred_node_terms",
        "priority",
        "requests",
        "required_node_terms",
        "scheduler_name",
        "spread_constraints",
        "tolerations",
        "uid",
    )

    def __init__(self, pod: Mapping[str, Any]):
        self.pod = pod
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.namespace: str = meta.get("namespace") or "default"
        self.name: str = meta.get("name") or ""
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = meta.get("uid") or ""
        self.labels: Mapping[str, str] = meta.get("labels") or {}
        self.creation: str = meta.get("creationTimestamp") or ""
        self.owner_uid: str | None = None
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller"):
                self.owner_uid = ref.get("uid")
                break
        self.node_name: str = spec.get("nodeName") or ""
        self.scheduler_name: str = spec.get("schedulerName") or "default-scheduler"
        self.priority: int = spec.get("priority") or 0
        self.preemption_policy: str = spec.get("preemptionPolicy") or "PreemptLowerPriority"
        self.requests, self.non_zero_cpu, self.non_zero_memory = pod_requests(spec)
        self.tolerations: tuple[Mapping[str, Any], ...] = tuple(spec.get("tolerations") or ())
        self.node_selector: Mapping[str, str] = spec.get("nodeSelector") or {}
        affinity = spec.get("affinity") or {}
        node_affinity = affinity.get("nodeAffinity") or {}
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        self.required_node_terms: tuple[NodeMatcher, ...] | None = None
        if required is not None:
            self.required_node_terms = tuple(
                node_selector_term_matcher(t) for t in required.get("nodeSelectorTerms") or ()
            )
        self.preferred_node_terms: tuple[tuple[int, NodeMatcher], ...] = tuple(
            (int(p.get("weight") or 0), node_selector_term_matcher(p.get("preference") or {}))
            for p in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        )
        anti = (affinity.get("podAntiAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        self.anti_affinity_terms = tuple(AffinityTerm(t, self.namespace) for t in anti or ())
        pod_affinity = (affinity.get("podAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        self.affinity_terms = tuple(AffinityTerm(t, self.namespace) for t in pod_affinity or ())
        preferred: list[tuple[int, AffinityTerm]] = []
        for kind, sign in (("podAffinity", 1), ("podAntiAffinity", -1)):
            for weighted in (affinity.get(kind) or {}).get(
                "preferredDuringSchedulingIgnoredDuringExecution"
            ) or ():
                term = weighted.get("podAffinityTerm") or {}
                weight = sign * int(weighted.get("weight") or 0)
                if weight:
                    preferred.append((weight, AffinityTerm(term, self.namespace)))
        self.preferred_affinity_terms: tuple[tuple[int, AffinityTerm], ...] = tuple(preferred)
        """Preferred pod affinity (positive weight) and anti-affinity (negative)."""
        self.spread_constraints = tuple(
            SpreadConstraint(c, self.labels) for c in spec.get("topologySpreadConstraints") or ()
        )
        self.ports = _host_ports(spec)
        self.images = tuple(c.get("image") for c in spec.get("containers") or () if c.get("image"))

    def __repr__(self) -> str:
        return f"PodInfo({self.key})"


def node_affinity_matcher(info: PodInfo) -> Callable[[NodeInfo], bool]:
    """Whether a node passes the pod's nodeSelector and required node affinity (the nodes
    whose pods count for spreading, upstream's ``nodeAffinityPolicy: Honor``)."""
    if not info.node_selector and info.required_node_terms is None:
        return lambda node: True

    def matches(node: NodeInfo) -> bool:
        labels = node.labels
        if any(labels.get(k) != v for k, v in info.node_selector.items()):
            return False
        terms = info.required_node_terms
        return terms is None or any(term(labels, node.name) for term in terms)

    return matches


# -- nodes -------------------------------------------------------------------------------


class NodeInfo(Mapping[str, Any]):
    """A node and the pods on it (bound or assumed). It is a read-only mapping view of the
    Node object, so a step sees ``node["metadata"]["labels"]`` as it would in the object,
    and it carries the accounting: ``allocatable``, ``requested`` (the pods' requests),
    ``non_zero_cpu``/``non_zero_memory`` (the same with the scoring defaults), ``pods``
    (by ``namespace/name``), ``owner_counts`` (pods per controller uid)."""

    __slots__ = (
        "allocatable",
        "allowed_pods",
        "anti_affinity_pods",
        "free_cpu",
        "free_ephemeral",
        "free_memory",
        "free_pods",
        "hard_taints",
        "images",
        "labels",
        "name",
        "node",
        "non_zero_cpu",
        "non_zero_memory",
        "owner_counts",
        "pods",
        "prefer_taints",
        "requested",
        "taints",
        "unschedulable",
        "used_ports",
        "zone",
    )

    def __init__(self, node: Mapping[str, Any] | None = None, name: str | None = None):
        self.requested = Resources()
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.owner_counts: dict[str, int] = {}
        self.used_ports: dict[tuple[str, int], set[str]] = {}
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        self.name = name or ""
        self.set_node(node or {"metadata": {"name": self.name}})

    def set_node(self, node: Mapping[str, Any]) -> None:
        """Take a new version of the Node object (the pods stay)."""
        self.node = node
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.name = meta.get("name") or self.name
        self.labels: Mapping[str, str] = meta.get("labels") or {}
        self.zone: str | None = self.labels.get(ZONE_LABEL) or self.labels.get(
            "failure-domain.beta.kubernetes.io/zone"
        )
        self.unschedulable = bool(spec.get("unschedulable"))
        self.taints: tuple[Mapping[str, Any], ...] = tuple(spec.get("taints") or ())
        self.hard_taints = tuple(
            t for t in self.taints if t.get("effect") in ("NoSchedule", "NoExecute")
        )
        self.prefer_taints = tuple(t for t in self.taints if t.get("effect") == "PreferNoSchedule")
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = Resources.parse(allocatable)
        self.allowed_pods = _amount("pods", allocatable.get("pods", 0))
        self._update_free()
        images: dict[str, int] = {}
        for image in status.get("images") or ():
            size = int(image.get("sizeBytes") or 0)
            for name in image.get("names") or ():
                images[normalized_image(name)] = size
        self.images = images

    # -- the Mapping view of the Node object -----------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.node[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.node)

    def __len__(self) -> int:
        return len(self.node)

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)})"

    # -- accounting ------------------------------------------------------------------------

    def add_pod(self, pod: PodInfo) -> None:
        if pod.key in self.pods:
            self.remove_pod(pod.key)
        self.pods[pod.key] = pod
        self.requested.add(pod.requests)
        self.non_zero_cpu += pod.non_zero_cpu
        self.non_zero_memory += pod.non_zero_memory
        if pod.owner_uid:
            self.owner_counts[pod.owner_uid] = self.owner_counts.get(pod.owner_uid, 0) + 1
        for ip, protocol, port in pod.ports:
            self.used_ports.setdefault((protocol, port), set()).add(ip)
        if pod.anti_affinity_terms:
            self.anti_affinity_pods[pod.key] = pod
        self._update_free()

    def _update_free(self) -> None:
        """What is left: allocatable minus requested (``free_cpu`` ..., ``free_pods``)."""
        have, used = self.allocatable, self.requested
        self.free_cpu = have.cpu - used.cpu
        self.free_memory = have.memory - used.memory
        self.free_ephemeral = have.ephemeral - used.ephemeral
        self.free_pods = self.allowed_pods - len(self.pods)

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self.requested.add(pod.requests, -1)
        self.non_zero_cpu -= pod.non_zero_cpu
        self.non_zero_memory -= pod.non_zero_memory
        if pod.owner_uid:
            left = self.owner_counts.get(pod.owner_uid, 0) - 1
            if left > 0:
                self.owner_counts[pod.owner_uid] = left
            else:
                self.owner_counts.pop(pod.owner_uid, None)
        for ip, protocol, port in pod.ports:
            ips = self.used_ports.get((protocol, port))
            if ips is not None:
                ips.discard(ip)
                if not ips:
                    del self.used_ports[(protocol, port)]
        self.anti_affinity_pods.pop(key, None)
        self._update_free()
        return pod


def normalized_image(name: str) -> str:
    """An image reference in full (``busybox`` -> ``docker.io/library/busybox:latest``),
    so that a pod's image and a node's image list compare equal."""
    return _normalized_image(name)


@lru_cache(maxsize=4096)
def _normalized_image(name: str) -> str:
    from kcore.images import normalize_reference

    try:
        return normalize_reference(name)
    except Exception:
        return name


class CycleState:
    """One scheduling attempt of one pod. ``pod_info`` is the parsed pod, ``snapshot`` the
    scheduler's view of the cluster (``snapshot.nodes``: every :class:`NodeInfo`), and
    ``data`` a scratch dict where steps keep what their ``prepare`` computed (by step
    name), as the framework's ``CycleState`` does."""

    __slots__ = ("data", "feasible", "pod_info", "snapshot")

    def __init__(self, pod_info: PodInfo, snapshot: Any):
        self.pod_info = pod_info
        self.snapshot = snapshot
        self.data: dict[str, Any] = {}
        self.feasible: Sequence[NodeInfo] = ()
        """The nodes that passed the filters (set before the score steps' ``prepare``)."""


__all__ = [
    "DEFAULT_MEMORY_REQUEST",
    "DEFAULT_MILLI_CPU_REQUEST",
    "HOSTNAME_LABEL",
    "SKIP",
    "ZONE_LABEL",
    "AffinityTerm",
    "CycleState",
    "NodeInfo",
    "PodInfo",
    "Resources",
    "SpreadConstraint",
    "label_selector_matcher",
    "node_affinity_matcher",
    "node_selector_term_matcher",
    "normalized_image",
    "pod_requests",
    "tolerates",
]
