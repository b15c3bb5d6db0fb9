"""The Endpoints controller: a v1 Endpoints object per Service with a selector.

As Kubernetes' ``pkg/controller/endpoint``:

* **Membership.** The pods of the Service's namespace that match its selector, have an IP of
  the Service's family and are not Succeeded or Failed. Terminating pods (with
  ``deletionTimestamp``) are left out unless the Service sets ``publishNotReadyAddresses``.
* **Readiness.** A pod that is Ready (or every pod, with ``publishNotReadyAddresses``) goes in
  ``addresses``, the others in ``notReadyAddresses``. Each address carries ``nodeName``, a
  ``targetRef`` to the pod and, when the pod's ``hostname`` is set and its ``subdomain`` is
  the Service's name, that ``hostname``.
* **Ports.** Each Service port's ``targetPort`` is resolved per pod: a number as is, a name
  through the pod's container ports of that name and protocol (a pod without it is left out
  of that port). Subsets group the addresses that serve the same set of ports, as
  ``RepackSubsets`` does. A headless Service without ports lists its addresses without ports.
* **Capacity.** Past 1000 addresses the subsets are truncated in proportion (ready addresses
  first) and the annotation ``endpoints.kubernetes.io/over-capacity: truncated`` is set.
* **The object** has the Service's name and labels (plus ``service.kubernetes.io/headless``
  when the Service has no cluster IP) and is written only when it differs, so a converged
  Service costs no writes. When the Service is deleted, its Endpoints go with it. Services
  without a selector are left alone: their Endpoints are the user's.

The pod and Service helpers here are shared with :mod:`.endpointslice`.
"""

from __future__ import annotations

import copy
import ipaddress
import math
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from kcore.controllers import (
    MODIFIED,
    Reconciler,
    ResourceEvent,
    is_pod_ready,
    label_selector_from_set,
    make_key,
    namespace_terminating,
    split_key,
)
from kcore.errors import AlreadyExists, Forbidden, NotFound
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.endpoints")

SERVICE = ("v1", "Service")
POD = ("v1", "Pod")
ENDPOINTS = ("v1", "Endpoints")

MAX_CAPACITY = 1000
"""Addresses an Endpoints object holds at most (Kubernetes' ``maxCapacity``)."""
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
HEADLESS_LABEL = "service.kubernetes.io/headless"

Obj = dict[str, Any]


# --------------------------------------------------------------------------- shared helpers


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def service_selector(svc: Mapping[str, Any]) -> dict[str, str] | None:
    """The Service's selector, or ``None`` when it has none (its endpoints are the user's,
    and ExternalName Services get none)."""
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    return spec.get("selector") or None


def is_service_ip_set(svc: Mapping[str, Any]) -> bool:
    """Kubernetes' ``IsServiceIPSet``: a cluster IP other than ``None``."""
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def service_families(svc: Mapping[str, Any]) -> list[str]:
    """The Service's IP families (``IPv4``/``IPv6``): ``spec.ipFamilies``, else the family
    of its cluster IP, else IPv4."""
    spec = svc.get("spec") or {}
    families = [f for f in spec.get("ipFamilies") or () if f in ("IPv4", "IPv6")]
    if families:
        return list(dict.fromkeys(families))
    if is_service_ip_set(svc):
        try:
            return ["IPv6" if ipaddress.ip_address(spec["clusterIP"]).version == 6 else "IPv4"]
        except ValueError:
            pass
    return ["IPv4"]


def pod_ip(pod: Mapping[str, Any], family: str) -> str | None:
    """The pod's first IP of ``family``, if any."""
    status = pod.get("status") or {}
    candidates = [p.get("ip") for p in status.get("podIPs") or () if isinstance(p, Mapping)]
    candidates.append(status.get("podIP"))
    want_v6 = family == "IPv6"
    for ip in candidates:
        if ip and isinstance(ip, str) and (":" in ip) == want_v6:
            return ip  # the API server has checked that it is an IP
    return None


def should_pod_be_in_endpoints(pod: Mapping[str, Any], include_terminating: bool) -> bool:
    """Kubernetes' ``ShouldPodBeInEndpoints``: not Succeeded/Failed, has an IP, and not
    terminating unless ``include_terminating``."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return include_terminating or not _meta(pod).get("deletionTimestamp")


def should_set_hostname(pod: Mapping[str, Any], svc: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return (
        bool(spec.get("hostname"))
        and spec.get("subdomain") == _meta(svc).get("name")
        and _meta(pod).get("namespace") == _meta(svc).get("namespace")
    )


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod's port for a Service port (Kubernetes' ``FindPort``): a numeric
    ``targetPort`` as is (the port itself when unset); a name through the pod's container
    ports (and its sidecars') of that name and protocol; ``None`` when the pod has none."""
    target = service_port.get("targetPort")
    if target in (None, 0, ""):
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or ())
    containers += [
        c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"
    ]
    for container in containers:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def target_ref(pod: Mapping[str, Any]) -> dict[str, Any]:
    m = _meta(pod)
    ref = {"kind": "Pod", "namespace": m.get("namespace"), "name": m.get("name")}
    if m.get("uid"):
        ref["uid"] = m["uid"]
    return ref


def _pod_endpoint_view(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pod its endpoints are made of (its labels aside)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return (
        bool(_meta(pod).get("deletionTimestamp")),
        status.get("phase") in ("Succeeded", "Failed"),
        status.get("podIP"),
        [p.get("ip") for p in status.get("podIPs") or () if isinstance(p, Mapping)],
        is_pod_ready(pod),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
    )


class ServicePodsReconciler(Reconciler):
    """A Reconciler of Services whose state comes from the pods they select.

    A pod change maps to the Services of its namespace that select the pod (before or
    after the change); a change that cannot affect any endpoint (a resync, a new container
    status) maps to nothing.
    """

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == SERVICE:
            return [event.key]
        if (event.api_version, event.kind) == POD:
            return self.services_for_pod(event)
        return []

    def services_for_pod(self, event: ResourceEvent) -> list[str]:
        pod, old = event.obj, event.old
        if event.type == MODIFIED and old is not None:
            same_labels = _meta(old).get("labels") == _meta(pod).get("labels")
            if same_labels and _pod_endpoint_view(old) == _pod_endpoint_view(pod):
                return []
        namespace = _meta(pod).get("namespace")
        keys: list[str] = []
        for svc in self.informers.list(*SERVICE, namespace):
            selector = service_selector(svc)
            if selector is None:
                continue
            match = label_selector_from_set(selector)
            if match.matches_object(pod) or (old is not None and match.matches_object(old)):
                keys.append(make_key(namespace, _meta(svc)["name"]))
        return keys

    def selected_pods(self, svc: Mapping[str, Any]) -> list[Obj]:
        """The cached pods of the Service's namespace its selector matches, by name."""
        match = label_selector_from_set(service_selector(svc))
        pods = self.informers.list(*POD, _meta(svc).get("namespace"))
        return sorted(
            (p for p in pods if match.matches_object(p)), key=lambda p: _meta(p).get("name", "")
        )


def service_labels(svc: Mapping[str, Any]) -> dict[str, str]:
    """The Service's labels, plus the headless label when it has no cluster IP."""
    labels = {k: v for k, v in (_meta(svc).get("labels") or {}).items() if k != HEADLESS_LABEL}
    if not is_service_ip_set(svc):
        labels[HEADLESS_LABEL] = ""
    return labels


# --------------------------------------------------------------------------- subsets


def _address(pod: Mapping[str, Any], svc: Mapping[str, Any], ip: str) -> dict[str, Any]:
    address: dict[str, Any] = {"ip": ip}
    if should_set_hostname(pod, svc):
        address["hostname"] = pod["spec"]["hostname"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        address["nodeName"] = node
    address["targetRef"] = target_ref(pod)
    return address


def _endpoint_port(service_port: Mapping[str, Any], number: int) -> dict[str, Any]:
    port: dict[str, Any] = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_sort_key(port: Mapping[str, Any]) -> tuple[Any, ...]:
    return (port.get("name") or "", port.get("port") or 0, port.get("protocol") or "")


def _address_sort_key(address: Mapping[str, Any]) -> tuple[Any, ...]:
    ip = address.get("ip") or ""
    try:
        parsed: Any = ipaddress.ip_address(ip)
        rank = (parsed.version, int(parsed))
    except ValueError:
        rank = (99, 0)
    return (rank, ip, (address.get("targetRef") or {}).get("uid") or "")


def desired_subsets(svc: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """The Endpoints subsets of ``svc`` over ``pods`` (already matched by its selector)."""
    spec = svc.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    family = service_families(svc)[0]
    service_ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    no_ports: tuple[Any, ...] = ()
    # port (as a sorted item tuple) -> address key -> (address, ready)
    by_port: dict[tuple[Any, ...], dict[tuple[str, str], tuple[Obj, bool]]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish_not_ready):
            continue
        ip = pod_ip(pod, family)
        if ip is None:
            continue
        address = _address(pod, svc, ip)
        ready = publish_not_ready or is_pod_ready(pod)
        key = (ip, _meta(pod).get("uid") or _meta(pod).get("name", ""))
        if not service_ports:
            if headless:
                by_port.setdefault(no_ports, {})[key] = (address, ready)
            continue
        for service_port in service_ports:
            number = find_port(pod, service_port)
            if number is None:
                continue
            port = tuple(sorted(_endpoint_port(service_port, number).items()))
            by_port.setdefault(port, {})[key] = (address, ready)
    # Group the ports that the very same addresses (with the same readiness) serve.
    groups: dict[frozenset[tuple[tuple[str, str], bool]], list[tuple[Any, ...]]] = {}
    members: dict[frozenset[tuple[tuple[str, str], bool]], dict[tuple[str, str], tuple[Obj, bool]]]
    members = {}
    for port, addresses in by_port.items():
        group = frozenset((k, ready) for k, (_, ready) in addresses.items())
        groups.setdefault(group, [])
        members[group] = addresses
        if port != no_ports:
            groups[group].append(port)
    subsets = []
    for group, ports in groups.items():
        addresses = members[group]
        subset: Obj = {}
        ready = [a for a, r in addresses.values() if r]
        not_ready = [a for a, r in addresses.values() if not r]
        if ready:
            subset["addresses"] = sorted(ready, key=_address_sort_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_sort_key)
        if ports:
            subset["ports"] = sorted((dict(p) for p in ports), key=_port_sort_key)
        subsets.append(subset)
    subsets.sort(key=_subset_sort_key)
    return subsets


def _subset_sort_key(subset: Mapping[str, Any]) -> tuple[Any, ...]:
    ports = [_port_sort_key(p) for p in subset.get("ports") or ()]
    first = (subset.get("addresses") or subset.get("notReadyAddresses") or [{}])[0]
    return (ports, _address_sort_key(first))


def truncate_subsets(subsets: list[Obj]) -> bool:
    """Cut ``subsets`` down to :data:`MAX_CAPACITY` addresses, in place, as Kubernetes'
    ``truncateEndpoints`` does: each subset keeps its share (rounded up), ready addresses
    first (all not-ready ones go when the ready ones alone are too many). Whether it cut."""
    total_ready = sum(len(s.get("addresses") or ()) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    limit = MAX_CAPACITY if truncate_ready else MAX_CAPACITY - total_ready
    total = total_ready if truncate_ready else total_not_ready
    room = limit
    for subset in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        present = subset.get(field) or []
        share = min(math.ceil(len(present) / total * limit), room) if total else 0
        kept = present[:share]
        if kept:
            subset[field] = kept
        else:
            subset.pop(field, None)
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
        room -= len(kept)
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


# --------------------------------------------------------------------------- controller


class EndpointsController(ServicePodsReconciler):
    name = "endpoints-controller"
    kinds = (SERVICE, POD, ENDPOINTS)

    conformance = scenarios("endpoints_scenarios")

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == ENDPOINTS:
            # Someone else changed or removed an Endpoints: put the Service's back.
            if event.type == MODIFIED and event.old is not None:
                if _meta(event.old).get("resourceVersion") == _meta(event.obj).get(
                    "resourceVersion"
                ):
                    return []
            return [event.key] if self.cached(event.key) is not None else []
        return super().keys_for(event)

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        svc = self.cached(key)
        current = self.cached(key, ENDPOINTS)
        if svc is None:
            if current is not None and not _meta(current).get("deletionTimestamp"):
                try:
                    await self.api.delete(*ENDPOINTS, name, namespace)
                except NotFound:
                    pass
            return None
        if service_selector(svc) is None:
            return None
        subsets = desired_subsets(svc, self.selected_pods(svc))
        truncated = truncate_subsets(subsets)
        labels = service_labels(svc)
        if current is None:
            annotations = {OVER_CAPACITY_ANNOTATION: "truncated"} if truncated else {}
            meta: Obj = {"name": name, "namespace": namespace}
            if labels:
                meta["labels"] = labels
            if annotations:
                meta["annotations"] = annotations
            try:
                await self.api.create(
                    {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets}
                )
            except AlreadyExists:
                return None  # the cache is behind: its ADDED event brings this key back
            except Forbidden as exc:
                if namespace_terminating(exc):
                    return None
                raise
            log.debug("created endpoints", service=key, subsets=len(subsets))
            return None
        cmeta = _meta(current)
        annotations = dict(cmeta.get("annotations") or {})
        if truncated:
            annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY_ANNOTATION, None)
        if (
            (current.get("subsets") or []) == subsets
            and (cmeta.get("labels") or {}) == labels
            and (cmeta.get("annotations") or {}) == annotations
        ):
            return None
        updated = copy.deepcopy(current)
        updated["metadata"]["labels"] = labels
        updated["metadata"]["annotations"] = annotations
        updated["subsets"] = subsets
        await self.api.update(updated)
        log.debug("updated endpoints", service=key, subsets=len(subsets))
        return None


def controllers(settings: Any) -> list[Reconciler]:
    return [EndpointsController()]


__all__ = [
    "HEADLESS_LABEL",
    "MAX_CAPACITY",
    "OVER_CAPACITY_ANNOTATION",
    "EndpointsController",
    "ServicePodsReconciler",
    "controllers",
    "desired_subsets",
    "find_port",
    "pod_ip",
    "service_families",
    "service_labels",
    "service_selector",
    "should_pod_be_in_endpoints",
    "should_set_hostname",
    "target_ref",
    "truncate_subsets",
]
