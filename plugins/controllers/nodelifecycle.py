"""Node lifecycle: nodes that stop heartbeating become ``Unknown``, get tainted, and lose
their pods.

Two controllers, as Kubernetes' ``pkg/controller/nodelifecycle`` and
``pkg/controller/tainteviction``:

:class:`NodeLifecycleController` (``node-lifecycle-controller``)
    * **Heartbeats** are renewals of the node's Lease in ``kube-node-lease`` and changes of
      its Ready condition's ``lastHeartbeatTime``; the controller notes *its own* time when
      it sees one (so clock skew does not matter). A node first seen counts as having just
      heartbeated.
    * A node with no heartbeat for ``--node-monitor-grace-period`` (40 s; 60 s while it
      never posted a Ready condition) gets ``Ready``,
      ``MemoryPressure``, ``DiskPressure`` and ``PIDPressure`` ``Unknown``, reason
      ``NodeStatusUnknown``, "Kubelet stopped posting node status." (conditions it never
      had: ``NodeStatusNeverUpdated``, "Kubelet never posted node status."); event
      ``NodeNotReady`` on the node. Only the kubelet makes it Ready again.
    * **Taints** follow the conditions: ``NoSchedule`` ``node.kubernetes.io/not-ready``
      (Ready False), ``unreachable`` (Ready Unknown), ``memory-pressure``,
      ``disk-pressure``, ``pid-pressure``, ``network-unavailable`` and ``unschedulable``
      (``spec.unschedulable``); ``NoExecute`` ``not-ready`` / ``unreachable`` with
      ``timeAdded``. New ``NoExecute`` taints are rate limited per zone (0.1 nodes/s;
      0.01 when over 55 % of a zone's nodes, and more than 2, are not ready, and none at
      all then in zones of 50 nodes or fewer); when no node of the cluster is ready the
      controller blames itself, not the nodes, and takes the ``NoExecute`` taints off.
    * **Pods** of a node that is not Ready get ``Ready=False`` (Warning event
      ``NodeNotReady``, "Node is not ready" on each); their phase stays ``Running``.

:class:`TaintEvictionController` (``taint-eviction-controller``)
    Deletes the pods of a node with ``NoExecute`` taints: at once when one of them is not
    tolerated, else when the shortest ``tolerationSeconds`` of the tolerations used has
    passed since the taint was added (no seconds: never). A pod without a toleration of
    ``not-ready`` / ``unreachable`` ``NoExecute`` is treated as having one for
    ``--pod-eviction-timeout`` seconds (300), as the API server's
    DefaultTolerationSeconds admission would have given it. An evicted pod gets the
    ``DisruptionTarget`` condition (``DeletionByTaintManager``), and, when its node is
    unreachable, ``status.reason: NodeLost`` (so kubectl shows it ``Unknown`` while it
    is Terminating); event ``TaintManagerEviction``. Pods stay Terminating until their
    node's agent comes back and finishes the deletion, or the Node is deleted (then the
    pod garbage collector, :mod:`.podgc`, removes them).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from kcore.controllers import (
    BY_NODE,
    DELETED,
    MODIFIED,
    Reconciler,
    ResourceEvent,
    being_deleted,
    is_pod_ready,
    parse_time,
    pod_condition,
)
from kcore.errors import Conflict, KcoreError, NotFound
from kcore.plugins.controllers.scenarios import scenarios
from kcore.pods.tolerations import with_default_tolerations

log = structlog.get_logger("kcore.plugins.controllers.nodelifecycle")

NODE = ("v1", "Node")
POD = ("v1", "Pod")
LEASE = ("coordination.k8s.io/v1", "Lease")
LEASE_NAMESPACE = "kube-node-lease"

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
TAINT_DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
TAINT_PID_PRESSURE = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"

NODE_MONITOR_GRACE_PERIOD = 40.0
NODE_STARTUP_GRACE_PERIOD = 60.0
POD_EVICTION_TIMEOUT = 300.0
EVICTION_RATE = 0.1
"""New NoExecute taints per second and zone."""
SECONDARY_EVICTION_RATE = 0.01
"""... in a partially disrupted zone of more than :data:`LARGE_CLUSTER_THRESHOLD` nodes."""
LARGE_CLUSTER_THRESHOLD = 50
UNHEALTHY_ZONE_THRESHOLD = 0.55
RATE_LIMITED_RECHECK = 60.0
"""Seconds before a node whose NoExecute taint waits for the rate limiter looks again (at
most; sooner when the limiter says so)."""

NODE_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
NO_SCHEDULE_TAINTS = (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_MEMORY_PRESSURE,
    TAINT_DISK_PRESSURE,
    TAINT_PID_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE,
    TAINT_UNSCHEDULABLE,
)
NO_EXECUTE_TAINTS = (TAINT_NOT_READY, TAINT_UNREACHABLE)


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- taints and tolerations ------------------------------------------------------------------


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (``Toleration.ToleratesTaint``:
    an empty effect or key matches any; ``Exists`` ignores the value)."""
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key")
        if key and key != taint.get("key"):
            continue
        if (toleration.get("operator") or "Equal") == "Exists":
            return True
        if (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def eviction_delay(
    taints: Sequence[Mapping[str, Any]], tolerations: Sequence[Mapping[str, Any]]
) -> float | None:
    """Seconds a pod with ``tolerations`` may stay under the ``NoExecute`` ``taints``: 0
    when one is not tolerated, ``None`` for ever, else the shortest ``tolerationSeconds``
    of the tolerations used (Kubernetes' ``getMinTolerationTime``)."""
    used: list[Mapping[str, Any]] = []
    for taint in taints:
        matching = [t for t in tolerations if tolerates([t], taint)]
        if not matching:
            return 0.0
        used += matching
    seconds = [t.get("tolerationSeconds") for t in used if t.get("tolerationSeconds") is not None]
    if not seconds:
        return None
    return float(max(min(int(s) for s in seconds), 0))


def node_condition(node: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return cond
    return None


def ready_status(node: Mapping[str, Any]) -> str:
    """``True``, ``False`` or ``Unknown`` (no Ready condition counts as Unknown)."""
    cond = node_condition(node, "Ready")
    return (cond or {}).get("status") or "Unknown"


def condition_taints(node: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(key, effect)`` taints the node's conditions and ``spec.unschedulable`` call
    for; NoExecute ones before any rate limiting."""
    out: list[tuple[str, str]] = []
    ready = node_condition(node, "Ready")
    if ready is not None and ready.get("status") == "False":
        out += [(TAINT_NOT_READY, "NoSchedule"), (TAINT_NOT_READY, "NoExecute")]
    elif ready is not None and ready.get("status") == "Unknown":
        out += [(TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")]
    for cond_type, key in (
        ("MemoryPressure", TAINT_MEMORY_PRESSURE),
        ("DiskPressure", TAINT_DISK_PRESSURE),
        ("PIDPressure", TAINT_PID_PRESSURE),
        ("NetworkUnavailable", TAINT_NETWORK_UNAVAILABLE),
    ):
        if (node_condition(node, cond_type) or {}).get("status") == "True":
            out.append((key, "NoSchedule"))
    if _spec(node).get("unschedulable"):
        out.append((TAINT_UNSCHEDULABLE, "NoSchedule"))
    return out


def _managed(taint: Mapping[str, Any]) -> bool:
    key, effect = taint.get("key"), taint.get("effect")
    return (effect == "NoSchedule" and key in NO_SCHEDULE_TAINTS) or (
        effect == "NoExecute" and key in NO_EXECUTE_TAINTS
    )


def zone_of(node: Mapping[str, Any]) -> str:
    labels = _meta(node).get("labels") or {}
    return f"{labels.get(REGION_LABEL, '')}:\x00:{labels.get(ZONE_LABEL, '')}"


# -- the node lifecycle controller ---------------------------------------------------------


@dataclass
class _Health:
    probe: float
    """Our clock when we last saw a heartbeat."""
    heartbeat: str | None = None
    """The Ready condition's lastHeartbeatTime then."""
    renew: str | None = None
    """The Lease's renewTime then."""


class _TokenBucket:
    """One token per ``1 / rate`` seconds, at most one in hand."""

    def __init__(self, now: float) -> None:
        self.tokens = 1.0
        self.last = now

    def take(self, now: float, rate: float) -> float:
        """0 when a token was taken, else the seconds until one comes (inf at rate 0)."""
        if rate > 0:
            self.tokens = min(1.0, self.tokens + (now - self.last) * rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate if rate > 0 else float("inf")


class NodeLifecycleController(Reconciler):
    name = "node-lifecycle-controller"
    kinds = (NODE, LEASE, POD)
    workers = 4

    conformance = scenarios("node_lifecycle_scenarios")

    def __init__(
        self,
        *,
        grace_period: float = NODE_MONITOR_GRACE_PERIOD,
        startup_grace_period: float = NODE_STARTUP_GRACE_PERIOD,
    ) -> None:
        self.grace_period = grace_period
        self.startup_grace_period = startup_grace_period

    async def setup(self) -> None:
        self.health: dict[str, _Health] = {}
        self.buckets: dict[str, _TokenBucket] = {}

    # -- heartbeats -----------------------------------------------------------------------

    def observe(self, event: ResourceEvent) -> None:
        kind = (event.api_version, event.kind)
        if kind == NODE:
            if event.type == DELETED:
                self.health.pop(event.name, None)
                return
            ready = node_condition(event.obj, "Ready") or {}
            beat = ready.get("lastHeartbeatTime")
            if ready.get("reason") == "NodeStatusNeverUpdated":
                beat = None  # our own stand-in, not the kubelet's
            self._heartbeat(event.name, heartbeat=beat)
        elif kind == LEASE and event.namespace == LEASE_NAMESPACE and event.type != DELETED:
            self._heartbeat(event.name, renew=(event.obj.get("spec") or {}).get("renewTime"))

    def _heartbeat(self, name: str, *, heartbeat: str | None = None, renew: str | None = None):
        now = self.now()
        health = self.health.get(name)
        if health is None:
            self.health[name] = _Health(now, heartbeat, renew)
            return
        if heartbeat is not None and heartbeat != health.heartbeat:
            health.heartbeat, health.probe = heartbeat, now
        if renew is not None and renew != health.renew:
            old, new = parse_time(health.renew), parse_time(renew)
            if old is None or new is None or new > old:
                health.renew, health.probe = renew, now

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        kind = (event.api_version, event.kind)
        if kind == LEASE:
            return []  # heartbeats are noted in observe; the deadline requeue acts on them
        if kind == POD:
            node_name = _spec(event.obj).get("nodeName")
            if not node_name or being_deleted(event.obj) or not is_pod_ready(event.obj):
                return []
            node = self.informers.get(*NODE, node_name)
            return [node_name] if node is not None and ready_status(node) != "True" else []
        if event.type == MODIFIED and event.old is not None:
            old, new = event.old, event.obj
            if ready_status(old) != ready_status(new):
                return self._all_nodes()  # the cluster's disruption state may have changed
            if condition_taints(old) == condition_taints(new) and (
                _spec(old).get("taints") == _spec(new).get("taints")
            ):
                return []
            return [event.key]
        return self._all_nodes() if event.type == DELETED else [event.key]

    def _all_nodes(self) -> list[str]:
        return [_meta(n)["name"] for n in self.informers.list(*NODE)]

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        node = self.cached(key)
        if node is None:
            self.health.pop(key, None)
            return None
        now = self.now()
        health = self.health.setdefault(key, _Health(now))
        ready = node_condition(node, "Ready")
        grace = self.grace_period if ready is not None else self.startup_grace_period
        requeue: float | None = None
        if now > health.probe + grace:
            node = await self.mark_unknown(node, now)
        else:
            requeue = health.probe + grace - now + 0.05
        wait = await self.sync_taints(node, now)
        if wait is not None:
            requeue = wait if requeue is None else min(requeue, wait)
        if ready_status(node) != "True":
            await self.mark_pods_not_ready(node)
        return requeue

    async def mark_unknown(self, node: dict[str, Any], now: float) -> dict[str, Any]:
        """Set the kubelet's conditions to Unknown (Kubernetes' ``tryUpdateNodeHealth``)."""
        status = copy.deepcopy(node.get("status") or {})
        conditions = status.setdefault("conditions", [])
        by_type = {c.get("type"): c for c in conditions}
        was_ready = ready_status(node) == "True"
        changed = False
        stamp = rfc3339(now)
        for cond_type in NODE_CONDITIONS:
            cond = by_type.get(cond_type)
            if cond is None:
                conditions.append(
                    {
                        "type": cond_type,
                        "status": "Unknown",
                        "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.",
                        "lastHeartbeatTime": _meta(node).get("creationTimestamp"),
                        "lastTransitionTime": stamp,
                    }
                )
                changed = True
            elif cond.get("status") != "Unknown":
                cond.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                    lastTransitionTime=stamp,
                )
                changed = True
        if not changed:
            return node
        log.info("node stopped heartbeating", node=_meta(node)["name"])
        updated = await self.api.update_status(
            {"apiVersion": "v1", "kind": "Node", **node, "status": status}
        )
        if was_ready:
            await self.recorder.event(
                updated,
                "Normal",
                "NodeNotReady",
                f"Node {_meta(node)['name']} status is now: NodeNotReady",
            )
        return updated

    def _disruption(self, node: Mapping[str, Any]) -> tuple[bool, float]:
        """``(whole cluster down, NoExecute tainting rate in the node's zone)``."""
        nodes = self.informers.list(*NODE)
        if nodes and all(ready_status(n) != "True" for n in nodes):
            return True, 0.0
        zone = zone_of(node)
        members = [n for n in nodes if zone_of(n) == zone]
        not_ready = sum(1 for n in members if ready_status(n) != "True")
        if not_ready > 2 and not_ready / max(len(members), 1) >= UNHEALTHY_ZONE_THRESHOLD:
            return False, (
                SECONDARY_EVICTION_RATE if len(members) > LARGE_CLUSTER_THRESHOLD else 0.0
            )
        return False, EVICTION_RATE

    async def sync_taints(self, node: dict[str, Any], now: float) -> float | None:
        """Make the node's managed taints match its conditions; seconds until a rate-limited
        NoExecute taint may be added, if one waits."""
        current = list(_spec(node).get("taints") or ())
        wanted = condition_taints(node)
        wait: float | None = None
        no_execute = [k for k, e in wanted if e == "NoExecute"]
        have_no_execute = [t for t in current if t.get("effect") == "NoExecute" and _managed(t)]
        if no_execute:
            cluster_down, rate = self._disruption(node)
            if cluster_down:
                wanted = [(k, e) for k, e in wanted if e != "NoExecute"]
            elif not have_no_execute:  # swapping not-ready <-> unreachable is not limited
                bucket = self.buckets.setdefault(zone_of(node), _TokenBucket(now))
                delay = bucket.take(now, rate)
                if delay > 0:
                    wanted = [(k, e) for k, e in wanted if e != "NoExecute"]
                    wait = min(delay, RATE_LIMITED_RECHECK)
        keep = [t for t in current if not _managed(t) or (t.get("key"), t.get("effect")) in wanted]
        have = {(t.get("key"), t.get("effect")) for t in keep}
        added = []
        for taint_key, effect in wanted:
            if (taint_key, effect) not in have:
                taint: dict[str, Any] = {"key": taint_key, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = rfc3339(now)
                added.append(taint)
        new = keep + added
        if new != current:
            await self.api.update(
                {"apiVersion": "v1", "kind": "Node", **node, "spec": {**_spec(node), "taints": new}}
            )
            log.info(
                "node taints changed",
                node=_meta(node)["name"],
                taints=[f"{t['key']}:{t['effect']}" for t in new if _managed(t)],
            )
        return wait

    async def mark_pods_not_ready(self, node: Mapping[str, Any]) -> None:
        """``Ready=False`` on the node's ready pods (those that became ready before the
        node stopped being ready: a kubelet that reports later wins)."""
        name = _meta(node)["name"]
        since = parse_time((node_condition(node, "Ready") or {}).get("lastTransitionTime"))
        errors: list[BaseException] = []
        for pod in self.informers.by_index(*POD, BY_NODE, name):
            if being_deleted(pod) or not is_pod_ready(pod):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            became = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
            if since is not None and became is not None and became > since:
                continue
            status = copy.deepcopy(pod.get("status") or {})
            for cond in status.get("conditions") or ():
                if cond.get("type") == "Ready":
                    cond["status"] = "False"
                    cond["lastTransitionTime"] = rfc3339(self.now())
            try:
                updated = await self.api.update_status(
                    {"apiVersion": "v1", "kind": "Pod", **pod, "status": status}
                )
            except NotFound:
                continue
            except KcoreError as exc:
                errors.append(exc)
                continue
            await self.recorder.event(updated, "Warning", "NodeNotReady", "Node is not ready")
        if errors:
            raise errors[0]


# -- the taint eviction controller ---------------------------------------------------------


def _no_execute(node: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if node is None:
        return []
    return [t for t in _spec(node).get("taints") or () if t.get("effect") == "NoExecute"]


class TaintEvictionController(Reconciler):
    name = "taint-eviction-controller"
    kinds = (NODE, POD)
    workers = 4

    conformance = scenarios("taint_eviction_scenarios")

    def __init__(self, *, eviction_timeout: float = POD_EVICTION_TIMEOUT) -> None:
        self.eviction_timeout = eviction_timeout

    async def setup(self) -> None:
        self.first_seen: dict[tuple[str, str, str], float] = {}
        """When we first saw a NoExecute taint without ``timeAdded``, by (node, key, value)."""

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == NODE:
            if _no_execute(event.obj) or (event.old is not None and _no_execute(event.old)):
                return [event.key]
            return []
        pod, old = event.obj, event.old
        node_name = _spec(pod).get("nodeName")
        if not node_name or being_deleted(pod) or event.type == DELETED:
            return []
        if old is not None and (
            _spec(old).get("nodeName") == node_name
            and _spec(old).get("tolerations") == _spec(pod).get("tolerations")
        ):
            return []
        return [node_name] if _no_execute(self.informers.get(*NODE, node_name)) else []

    def _taint_start(self, node_name: str, taint: Mapping[str, Any], now: float) -> float:
        added = parse_time(taint.get("timeAdded"))
        if added is not None:
            return added
        key = (node_name, taint.get("key") or "", taint.get("value") or "")
        return self.first_seen.setdefault(key, now)

    async def reconcile(self, key: str) -> float | None:
        node = self.cached(key)
        taints = _no_execute(node)
        if node is None or not taints:
            for seen in [k for k in self.first_seen if k[0] == key]:
                del self.first_seen[seen]
            return None
        now = self.now()
        start = min(self._taint_start(key, t, now) for t in taints)
        unreachable = any(t.get("key") == TAINT_UNREACHABLE for t in taints)
        next_due: float | None = None
        errors: list[BaseException] = []
        for pod in self.informers.by_index(*POD, BY_NODE, key):
            if being_deleted(pod):
                continue
            tolerations = with_default_tolerations(
                _spec(pod).get("tolerations") or (), self.eviction_timeout
            )
            delay = eviction_delay(taints, tolerations)
            if delay is None:
                continue
            created = parse_time(_meta(pod).get("creationTimestamp")) or start
            due = max(start, created) + delay if delay > 0 else now
            if due > now:
                next_due = due if next_due is None else min(next_due, due)
                continue
            try:
                await self.evict(pod, key, unreachable, now)
            except KcoreError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return None if next_due is None else max(next_due - now, 0.05)

    async def evict(self, pod: dict[str, Any], node_name: str, unreachable: bool, now: float):
        m = _meta(pod)
        status = copy.deepcopy(pod.get("status") or {})
        conditions = [
            c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"
        ]
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": rfc3339(now),
            }
        )
        status["conditions"] = conditions
        if unreachable:
            status["reason"] = "NodeLost"
            status["message"] = (
                f"Node {node_name} which was running pod {m['name']} is unresponsive"
            )
        log.info("evicting pod", pod=m["name"], namespace=m.get("namespace"), node=node_name)
        await self.recorder.event(
            pod,
            "Normal",
            "TaintManagerEviction",
            f"Marking for deletion Pod {m.get('namespace')}/{m['name']}",
        )
        with contextlib.suppress(NotFound, Conflict):
            await self.api.update_status(
                {"apiVersion": "v1", "kind": "Pod", **pod, "status": status}
            )
        with contextlib.suppress(NotFound, Conflict):
            await self.api.delete(
                "v1", "Pod", m["name"], m.get("namespace"), preconditions={"uid": m.get("uid")}
            )


def controllers(settings: Any) -> list[Reconciler]:
    option = getattr(settings, "option", None)

    def value(name: str, default: float) -> float:
        return float(option(name, default)) if option is not None else default

    return [
        NodeLifecycleController(
            grace_period=value("node_monitor_grace_period", NODE_MONITOR_GRACE_PERIOD),
            startup_grace_period=value("node_startup_grace_period", NODE_STARTUP_GRACE_PERIOD),
        ),
        TaintEvictionController(
            eviction_timeout=value("pod_eviction_timeout", POD_EVICTION_TIMEOUT)
        ),
    ]


__all__ = [
    "NODE_MONITOR_GRACE_PERIOD",
    "POD_EVICTION_TIMEOUT",
    "TAINT_DISK_PRESSURE",
    "TAINT_MEMORY_PRESSURE",
    "TAINT_NETWORK_UNAVAILABLE",
    "TAINT_NOT_READY",
    "TAINT_PID_PRESSURE",
    "TAINT_UNREACHABLE",
    "TAINT_UNSCHEDULABLE",
    "NodeLifecycleController",
    "TaintEvictionController",
    "condition_taints",
    "controllers",
    "eviction_delay",
    "tolerates",
    "with_default_tolerations",
]
