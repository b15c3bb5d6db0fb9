"""The EndpointSlice controller: discovery.k8s.io/v1 EndpointSlices for Services with a
selector.

As Kubernetes' ``pkg/controller/endpointslice`` (its ``reconciler.go``):

* **Endpoints.** One per pod of the Service's namespace that matches the selector, is not
  Succeeded or Failed and has an IP of the slice's address type (the Service's
  ``ipFamilies``; IPv4 by default), terminating pods included. Conditions: ``serving`` = the
  pod is Ready, ``terminating`` = it has a ``deletionTimestamp``, ``ready`` =
  ``publishNotReadyAddresses`` or (serving and not terminating). Each carries ``nodeName``,
  the node's ``topology.kubernetes.io/zone`` as ``zone``, a ``targetRef`` to the pod, and the
  pod's ``hostname`` when its ``subdomain`` is the Service's name.
* **Ports.** The Service's ports with ``targetPort`` resolved per pod (a number, or the
  pod's container port of that name and protocol); pods are grouped by the ports they
  resolve to, and each group has slices of its own (a pod lacking a named port lands in
  the group without it).
* **Slices** hold at most 100 endpoints, are named ``<service>-<random>`` (``generateName``),
  labelled ``kubernetes.io/service-name``, ``endpointslice.kubernetes.io/managed-by:
  endpointslice-controller.k8s.io`` and the Service's own labels (plus
  ``service.kubernetes.io/headless`` without a cluster IP), and controlled by the Service
  (ownerReference), so the garbage collector removes them with it. Existing slices are
  updated in place: endpoints that went are dropped, changed ones rewritten, new ones fill
  the slices being updated first, then the unchanged slice that fits best, then new slices;
  a slice left empty is deleted, or reused for a slice that would be created. A Service
  with no endpoints keeps one empty placeholder slice. A converged Service costs no writes.
* **Stale caches.** The generation of each slice written is remembered; until the cache
  shows it (or shows a deleted slice gone), the Service is not reconciled again, so a slow
  cache never causes duplicate slices.

Services without a selector (and ExternalName Services) are left alone: their slices are
the user's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from kcore.api.discovery_v1 import MANAGED_BY_LABEL, SERVICE_NAME_LABEL
from kcore.controllers import (
    DELETED,
    MODIFIED,
    Reconciler,
    ResourceEvent,
    being_deleted,
    is_pod_ready,
    make_key,
    namespace_terminating,
    owner_reference,
)
from kcore.errors import KcoreError, NotFound
from kcore.plugins.controllers.endpoints import (
    HEADLESS_LABEL,
    POD,
    SERVICE,
    ServicePodsReconciler,
    find_port,
    pod_ip,
    service_families,
    service_labels,
    service_selector,
    should_pod_be_in_endpoints,
    should_set_hostname,
    target_ref,
)
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.endpointslice")

SLICE = ("discovery.k8s.io/v1", "EndpointSlice")
NODE = ("v1", "Node")
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
"""The ``endpointslice.kubernetes.io/managed-by`` value of the slices this controller owns."""
MAX_ENDPOINTS_PER_SLICE = 100
ZONE_LABEL = "topology.kubernetes.io/zone"
BY_SERVICE = "service"
"""EndpointSlice index: ``namespace/service`` of the slices this controller manages."""
STALE_RETRY = 0.5
"""Seconds after which a Service whose slices the cache has not caught up with is retried."""
EXPECTATION_TIMEOUT = 60.0
"""A written slice the cache has not shown for this long is no longer waited for."""

Obj = dict[str, Any]
ZoneOf = Callable[[str], str | None]


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def managed_service_key(eps: Mapping[str, Any]) -> list[str]:
    """The ``namespace/service`` of a slice this controller manages (index function)."""
    labels = _meta(eps).get("labels") or {}
    name = labels.get(SERVICE_NAME_LABEL)
    if not name or labels.get(MANAGED_BY_LABEL) != CONTROLLER_NAME:
        return []
    return [make_key(_meta(eps).get("namespace"), name)]


# --------------------------------------------------------------------------- desired state


def endpoint_ports(svc: Mapping[str, Any], pod: Mapping[str, Any]) -> list[Obj]:
    """The slice ports of ``pod`` for ``svc``: each Service port the pod resolves."""
    ports = []
    for service_port in (svc.get("spec") or {}).get("ports") or ():
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: Obj = {
            "name": service_port.get("name") or "",
            "protocol": service_port.get("protocol") or "TCP",
            "port": number,
        }
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        ports.append(port)
    return ports


def port_key(ports: Iterable[Mapping[str, Any]]) -> tuple[Any, ...]:
    """The same for the same set of ports, whatever their order."""
    return tuple(
        sorted(tuple(sorted((k, v) for k, v in p.items() if v is not None)) for p in ports)
    )


def pod_to_endpoint(
    pod: Mapping[str, Any], svc: Mapping[str, Any], ip: str, zone_of: ZoneOf
) -> Obj:
    serving = is_pod_ready(pod)
    terminating = bool(_meta(pod).get("deletionTimestamp"))
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    ep: Obj = {
        "addresses": [ip],
        "conditions": {
            "ready": publish or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
    }
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = target_ref(pod)
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
        zone = zone_of(node)
        if zone:
            ep["zone"] = zone
    return ep


def endpoint_id(ep: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two endpoints the same one (Kubernetes' endpoint hash): addresses,
    hostname and the pod referred to."""
    ref = ep.get("targetRef") or {}
    return (
        tuple(sorted(ep.get("addresses") or ())),
        ep.get("hostname") or "",
        ref.get("namespace") or "",
        ref.get("name") or "",
    )


def slice_labels(svc: Mapping[str, Any]) -> dict[str, str]:
    labels = {
        k: v
        for k, v in service_labels(svc).items()
        if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)
    }
    labels[SERVICE_NAME_LABEL] = _meta(svc)["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def owned_by(eps: Mapping[str, Any], svc: Mapping[str, Any]) -> bool:
    uid = _meta(svc).get("uid")
    return any(ref.get("uid") == uid for ref in _meta(eps).get("ownerReferences") or ())


def new_slice(
    svc: Mapping[str, Any], address_type: str, ports: list[Obj], labels: dict[str, str]
) -> Obj:
    owner = owner_reference({**svc, "apiVersion": SERVICE[0], "kind": SERVICE[1]})
    return {
        "apiVersion": SLICE[0],
        "kind": SLICE[1],
        "metadata": {
            "generateName": f"{_meta(svc)['name']}-",
            "namespace": _meta(svc).get("namespace"),
            "labels": dict(labels),
            "ownerReferences": [owner],
        },
        "addressType": address_type,
        "endpoints": [],
        "ports": copy.deepcopy(ports),
    }


@dataclass
class SlicePlan:
    """The writes that bring a Service's slices to the desired state."""

    creates: list[Obj] = field(default_factory=list)
    updates: list[Obj] = field(default_factory=list)
    deletes: list[Obj] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.creates or self.updates or self.deletes)


def _slice_to_fill(candidates: list[Obj], count: int, limit: int) -> Obj | None:
    """The unchanged slice that ``count`` more endpoints fill most closely, if any fits."""
    best, best_gap = None, limit
    for candidate in candidates:
        gap = limit - (count + len(candidate.get("endpoints") or ()))
        if 0 <= gap < best_gap:
            best, best_gap = candidate, gap
            if gap == 0:
                break
    return best


def _rewritten(eps: Obj, labels: dict[str, str], endpoints: list[Obj]) -> Obj:
    """A copy of a cached slice to write, with ``labels`` and ``endpoints`` (the cached
    object itself is never changed)."""
    meta = {**eps["metadata"], "labels": dict(labels)}
    return {**eps, "metadata": meta, "endpoints": endpoints}


def _plan_port_mapping(
    svc: Mapping[str, Any],
    address_type: str,
    ports: list[Obj],
    existing: list[Obj],
    desired: dict[tuple[Any, ...], Obj],
    labels: dict[str, str],
    limit: int,
    plan: SlicePlan,
) -> None:
    remaining = dict(desired)
    updates: list[Obj] = []
    unchanged: list[Obj] = []
    # 1. Keep what is still desired (rewritten when it changed), drop the rest.
    for eps in existing:
        kept, changed = [], False
        current = eps.get("endpoints") or []
        for ep in current:
            want = remaining.pop(endpoint_id(ep), None)
            if want is not None:
                kept.append(want)
                changed = changed or want != ep
        labels_changed = (_meta(eps).get("labels") or {}) != labels
        if changed or len(kept) != len(current):
            if not kept:
                plan.deletes.append(eps)
                continue
            updates.append(_rewritten(eps, labels, kept))
        elif labels_changed:
            updates.append(_rewritten(eps, labels, list(current)))
        else:
            unchanged.append(eps)
    if remaining:
        # 2. Fill the slices being written anyway, the fullest first.
        updates.sort(key=lambda s: -len(s["endpoints"]))
        for updated in updates:
            while remaining and len(updated["endpoints"]) < limit:
                updated["endpoints"].append(remaining.pop(next(iter(remaining))))
        # 3. Then the unchanged slice that fits the rest best, then new slices.
        while remaining:
            target = None
            if len(remaining) < limit and unchanged:
                target = _slice_to_fill(unchanged, len(remaining), limit)
            if target is None:
                target = new_slice(svc, address_type, ports, labels)
            else:
                unchanged.remove(target)
                target = _rewritten(target, labels, list(target.get("endpoints") or ()))
                updates.append(target)
            while remaining and len(target["endpoints"]) < limit:
                target["endpoints"].append(remaining.pop(next(iter(remaining))))
            if not _meta(target).get("name"):
                plan.creates.append(target)
    plan.updates.extend(updates)


def plan_slices(
    svc: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    existing: Iterable[Mapping[str, Any]],
    *,
    zone_of: ZoneOf = lambda node: None,
    max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> SlicePlan:
    """What to create, update and delete so that ``existing`` (the slices this controller
    manages for ``svc``) match ``pods`` (those its selector matches)."""
    families = service_families(svc)
    labels = slice_labels(svc)
    # (address type, port key) -> (ports, endpoint id -> endpoint)
    desired: dict[tuple[str, tuple[Any, ...]], tuple[list[Obj], dict[tuple[Any, ...], Obj]]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=True):
            continue
        ports = endpoint_ports(svc, pod)
        key = port_key(ports)
        for address_type in families:
            ip = pod_ip(pod, address_type)
            if ip is None:
                continue
            ep = pod_to_endpoint(pod, svc, ip, zone_of)
            desired.setdefault((address_type, key), (ports, {}))[1][endpoint_id(ep)] = ep
    plan = SlicePlan()
    existing = sorted(
        (dict(s) for s in existing),
        key=lambda s: (_meta(s).get("creationTimestamp") or "", _meta(s).get("name") or ""),
    )
    by_mapping: dict[tuple[str, tuple[Any, ...]], list[Obj]] = {}
    for eps in existing:
        if not owned_by(eps, svc) or eps.get("addressType") not in families:
            plan.deletes.append(eps)
            continue
        key = (eps["addressType"], port_key(eps.get("ports") or ()))
        by_mapping.setdefault(key, []).append(eps)
    for key, (ports, endpoints) in desired.items():
        _plan_port_mapping(
            svc,
            key[0],
            ports,
            by_mapping.get(key, []),
            endpoints,
            labels,
            max_endpoints_per_slice,
            plan,
        )
    for key, slices in by_mapping.items():
        if key not in desired:
            plan.deletes.extend(slices)  # a set of ports no longer served
    if len(existing) == len(plan.deletes) and not plan.creates:
        # No endpoints at all: keep (or make) one empty placeholder slice.
        placeholder = new_slice(svc, families[0], [], labels)
        if len(plan.deletes) == 1 and _same_placeholder(plan.deletes[0], placeholder, svc):
            plan.deletes.clear()
        else:
            plan.creates.append(placeholder)
    # Rather than delete one slice and create another, reuse the one being deleted.
    i = 0
    while i < len(plan.deletes) and plan.creates:
        old = plan.deletes[i]
        new = plan.creates[-1]
        if old.get("addressType") == new["addressType"] and owned_by(old, svc):
            reused = _rewritten(old, new["metadata"]["labels"], new["endpoints"])
            reused["metadata"]["ownerReferences"] = new["metadata"]["ownerReferences"]
            reused["ports"] = new["ports"]
            plan.creates.pop()
            plan.updates.append(reused)
            plan.deletes.pop(i)
        else:
            i += 1
    return plan


def _same_placeholder(eps: Mapping[str, Any], placeholder: Mapping[str, Any], svc: Any) -> bool:
    return (
        owned_by(eps, svc)
        and eps.get("addressType") == placeholder["addressType"]
        and not eps.get("endpoints")
        and not eps.get("ports")
        and (_meta(eps).get("labels") or {}) == placeholder["metadata"]["labels"]
    )


# --------------------------------------------------------------------------- stale caches


class SliceTracker:
    """The generation of each slice this controller wrote, per Service (Kubernetes'
    ``EndpointSliceTracker``): the cache is stale while it shows an older one, or still shows
    a slice that was deleted."""

    DELETED = -1

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._written: dict[str, dict[str, tuple[int, float]]] = {}

    def expect(self, service: str, name: str, generation: int) -> None:
        self._written.setdefault(service, {})[name] = (generation, self._clock())

    def forget(self, service: str, name: str | None = None) -> None:
        if name is None:
            self._written.pop(service, None)
        else:
            self._written.get(service, {}).pop(name, None)

    def stale(self, service: str, cached: Iterable[Mapping[str, Any]]) -> bool:
        written = self._written.get(service)
        if not written:
            return False
        by_name = {_meta(s).get("name"): s for s in cached}
        now = self._clock()
        stale = False
        for name, (generation, since) in list(written.items()):
            eps = by_name.get(name)
            if generation == self.DELETED:
                behind = eps is not None
            else:
                behind = eps is None or int(_meta(eps).get("generation") or 0) < generation
            if not behind or now - since > EXPECTATION_TIMEOUT:
                del written[name]
            else:
                stale = True
        if not written:
            self._written.pop(service, None)
        return stale


# --------------------------------------------------------------------------- controller


class EndpointSliceController(ServicePodsReconciler):
    name = "endpointslice-controller"
    kinds = (SERVICE, POD, SLICE, NODE)
    max_endpoints_per_slice = MAX_ENDPOINTS_PER_SLICE

    conformance = scenarios("endpointslice_scenarios")

    async def setup(self) -> None:
        self.tracker = SliceTracker()
        self.informers.add_index(*SLICE, BY_SERVICE, managed_service_key)

    def observe(self, event: ResourceEvent) -> None:
        if (event.api_version, event.kind) == SLICE and event.type == DELETED:
            for service in managed_service_key(event.obj):
                self.tracker.forget(service, event.name)

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == SLICE:
            if event.type == MODIFIED and event.old is not None:
                if _meta(event.old).get("resourceVersion") == _meta(event.obj).get(
                    "resourceVersion"
                ):
                    return []
            keys = managed_service_key(event.obj)
            if event.old is not None:
                keys += [k for k in managed_service_key(event.old) if k not in keys]
            return keys
        return super().keys_for(event)

    def zone_of(self, node_name: str) -> str | None:
        node = self.informers.get(*NODE, node_name)
        return ((node or {}).get("metadata") or {}).get("labels", {}).get(ZONE_LABEL) or None

    async def reconcile(self, key: str) -> float | None:
        svc = self.cached(key)
        if svc is None:
            # The garbage collector deletes the slices it owned.
            self.tracker.forget(key)
            return None
        if service_selector(svc) is None:
            return None
        existing = self.informers.by_index(*SLICE, BY_SERVICE, key)
        if self.tracker.stale(key, existing):
            log.debug("endpoint slice cache is behind", service=key)
            return STALE_RETRY
        plan = plan_slices(
            svc,
            self.selected_pods(svc),
            existing,
            zone_of=self.zone_of,
            max_endpoints_per_slice=self.max_endpoints_per_slice,
        )
        if being_deleted(svc):
            plan.creates.clear()  # as upstream: no new slices for a Service on its way out
        if plan:
            await self.apply(key, plan)
        return None

    async def apply(self, key: str, plan: SlicePlan) -> None:
        """Creates, then updates, then deletes, as Kubernetes orders them."""
        for eps in plan.creates:
            try:
                created = await self.api.create(eps)
            except KcoreError as exc:
                if namespace_terminating(exc):
                    return
                raise
            self.tracker.expect(key, created["metadata"]["name"], _generation(created))
        for eps in plan.updates:
            updated = await self.api.update(eps)
            self.tracker.expect(key, updated["metadata"]["name"], _generation(updated))
        for eps in plan.deletes:
            m = _meta(eps)
            try:
                await self.api.delete(*SLICE, m["name"], m.get("namespace"))
            except NotFound:
                continue
            if key in managed_service_key(eps):
                self.tracker.expect(key, m["name"], SliceTracker.DELETED)
        log.debug(
            "endpoint slices written",
            service=key,
            created=len(plan.creates),
            updated=len(plan.updates),
            deleted=len(plan.deletes),
        )


def _generation(eps: Mapping[str, Any]) -> int:
    return int(_meta(eps).get("generation") or 0)


def controllers(settings: Any) -> list[Reconciler]:
    return [EndpointSliceController()]


__all__ = [
    "BY_SERVICE",
    "CONTROLLER_NAME",
    "HEADLESS_LABEL",
    "MAX_ENDPOINTS_PER_SLICE",
    "EndpointSliceController",
    "SlicePlan",
    "SliceTracker",
    "controllers",
    "endpoint_ports",
    "managed_service_key",
    "plan_slices",
]
