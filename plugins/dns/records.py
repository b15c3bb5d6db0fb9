"""The cluster's names, as CoreDNS's ``kubernetes`` plugin serves them (with kubeadm's
``pods insecure``): :func:`service_records` turns one Service and its EndpointSlices into
records, :class:`ClusterZone` keeps those of every Service and answers questions.

For a Service ``s`` in namespace ``n`` and the cluster domain ``d``:

- ``s.n.svc.d`` A/AAAA: the ClusterIPs; for a headless Service (``clusterIP: None``) the
  addresses of its ready endpoints (all of them with ``publishNotReadyAddresses``);
  ExternalName: a CNAME to ``spec.externalName``.
- ``h.s.n.svc.d`` A/AAAA for each such endpoint, ``h`` its ``hostname`` or else its
  address with dashes (``10-244-1-5``); a pod with ``hostname`` and ``subdomain: s`` gets
  its name that way, through the endpoint's hostname.
- ``_p._tcp.s.n.svc.d`` SRV for a named port ``p`` (``_udp``, ``_sctp`` by protocol):
  one record with target ``s.n.svc.d`` for a ClusterIP Service, one per endpoint with
  target ``h.s.n.svc.d`` for a headless one; the targets' addresses go in the additional
  section. An SRV question for ``s.n.svc.d`` itself lists every port.
- PTR for the ClusterIPs (to ``s.n.svc.d``) and the endpoint addresses (to
  ``h.s.n.svc.d``); reverse names of other addresses are not ours (they are forwarded).
- ``a-b-c-d.n.pod.d`` A: the address in the name, whether or not a pod has it.
- ``d`` SOA and NS (``ns.dns.d``, with the server's address), ``dns-version.d`` TXT
  ``1.1.0`` (the schema version of the Kubernetes DNS specification).

A name in the zone that nothing defines is NXDOMAIN; a name that exists (a Service without
endpoints, a parent like ``n.svc.d``) but lacks the asked type is NODATA. Both carry the
SOA in the authority section. Names are compared without regard to case.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kcore.plugins.dns import wire
from kcore.plugins.dns.wire import (
    AAAA,
    ANY,
    CNAME,
    NS,
    NXDOMAIN,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Record,
    SOAData,
    SRVData,
)

SCHEMA_VERSION = b"1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_CHASE = 8
"""How many CNAMEs inside the zone an answer follows."""

Owner = tuple[str, str]
"""(namespace, Service name): who defined a record."""


@dataclass
class Answer:
    """The zone's answer: a response code and the three sections. ``chase`` is a CNAME
    target outside the zone, for the caller to resolve upstream and append."""

    rcode: int = wire.NOERROR
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    chase: str | None = None


def dashed(address: str) -> str:
    """``10.244.1.5`` -> ``10-244-1-5`` (``:`` -> ``-`` for IPv6)."""
    return address.replace(".", "-").replace(":", "-")


def _address_type(address: str) -> int | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return A if ip.version == 4 else AAAA


def ready_endpoints(service: Mapping[str, Any], slices: Iterable[Mapping[str, Any]]):
    """``(slice, endpoint, address)`` for each address DNS publishes: IPv4/IPv6 slices,
    endpoints whose ``ready`` condition is not false (or every endpoint when the Service
    has ``publishNotReadyAddresses``)."""
    publish_all = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    for es in sorted(slices, key=lambda s: (s.get("metadata") or {}).get("name") or ""):
        if es.get("addressType") not in ("IPv4", "IPv6"):
            continue
        for endpoint in es.get("endpoints") or []:
            ready = (endpoint.get("conditions") or {}).get("ready")
            if ready is False and not publish_all:
                continue
            for address in endpoint.get("addresses") or []:
                if _address_type(address) is not None:
                    yield es, endpoint, address


def service_records(
    service: Mapping[str, Any],
    slices: Iterable[Mapping[str, Any]],
    domain: str = "cluster.local",
    ttl: int = 5,
) -> dict[str, list[Record]]:
    """Every record one Service defines, by lowercase owner name. The Service's own name
    is always a key (perhaps with no records: it exists, so other types are NODATA)."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    base = f"{meta.get('name')}.{meta.get('namespace') or 'default'}.svc.{domain}".lower()
    out: dict[str, list[Record]] = {base: []}

    def add(name: str, rtype: int, data: Any) -> None:
        out.setdefault(name, []).append(Record(name, rtype, data, ttl=ttl))

    if spec.get("type") == "ExternalName":
        target = str(spec.get("externalName") or "").rstrip(".").lower()
        if target:
            add(base, CNAME, target)
        return out

    ports = spec.get("ports") or []
    cluster_ips = list(
        spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    )
    headless = cluster_ips == ["None"] or spec.get("clusterIP") == "None"
    if not headless:
        for ip in cluster_ips:
            rtype = _address_type(ip)
            if rtype is not None:
                add(base, rtype, str(ipaddress.ip_address(ip)))
                add(wire.reverse_name(ip), PTR, base)
        for port in ports:
            proto = str(port.get("protocol") or "TCP").lower()
            srv = SRVData(0, 100, int(port.get("port") or 0), base)
            if port.get("name"):
                add(f"_{port['name']}._{proto}.{base}".lower(), SRV, srv)
            add(base, SRV, srv)

    srv_sets: dict[str, list[SRVData]] = {}
    for es, endpoint, address in ready_endpoints(service, slices):
        host = f"{(endpoint.get('hostname') or dashed(address)).lower()}.{base}"
        rtype = _address_type(address)
        address = str(ipaddress.ip_address(address))
        add(host, rtype, address)  # type: ignore[arg-type]
        add(wire.reverse_name(address), PTR, host)
        if not headless:
            continue
        add(base, rtype, address)  # type: ignore[arg-type]
        for port in es.get("ports") or []:
            srv = SRVData(0, 0, int(port.get("port") or 0), host)
            proto = str(port.get("protocol") or "TCP").lower()
            if port.get("name"):
                srv_sets.setdefault(f"_{port['name']}._{proto}.{base}".lower(), []).append(srv)
            srv_sets.setdefault(base, []).append(srv)
    for name, srvs in srv_sets.items():
        unique = list(dict.fromkeys(srvs))
        weight = max(1, 100 // len(unique))
        for srv in unique:
            add(name, SRV, SRVData(srv.priority, weight, srv.port, srv.target))
    for name, records in out.items():
        out[name] = list(dict.fromkeys(records))  # dual listings (two slices) once
    return out


class ClusterZone:
    """The records of every Service, kept current by :meth:`set_service`,
    :meth:`delete_service`, :meth:`set_slice` and :meth:`delete_slice` (informer
    handlers call them), and :meth:`lookup` to answer a question."""

    def __init__(
        self, domain: str = "cluster.local", ttl: int = 5, nameserver: str | None = None
    ) -> None:
        self.domain = domain.strip(".").lower()
        self.ttl = ttl
        self.nameserver = nameserver
        self.serial = int(time.time()) & 0xFFFFFFFF
        self._services: dict[Owner, Mapping[str, Any]] = {}
        self._slices: dict[Owner, dict[str, Mapping[str, Any]]] = {}
        self._slice_owner: dict[tuple[str, str], str] = {}
        self._owned: dict[Owner, dict[str, list[Record]]] = {}
        self._names: dict[str, dict[Owner, list[Record]]] = {}
        self._parents: Counter[str] = Counter()
        self._apex = self._apex_records()

    # -- keeping it current ---------------------------------------------------------------

    def set_service(self, service: Mapping[str, Any]) -> None:
        owner = _owner(service)
        self._services[owner] = service
        self._rebuild(owner)

    def delete_service(self, service: Mapping[str, Any]) -> None:
        owner = _owner(service)
        self._services.pop(owner, None)
        self._rebuild(owner)

    def set_slice(self, es: Mapping[str, Any]) -> None:
        meta = es.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", str(meta.get("name"))
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        previous = self._slice_owner.get((namespace, name))
        if previous is not None and previous != service:
            self._drop_slice(namespace, name)
        if not service:
            return
        self._slice_owner[(namespace, name)] = service
        self._slices.setdefault((namespace, service), {})[name] = es
        self._rebuild((namespace, service))

    def delete_slice(self, es: Mapping[str, Any]) -> None:
        meta = es.get("metadata") or {}
        self._drop_slice(meta.get("namespace") or "default", str(meta.get("name")))

    def _drop_slice(self, namespace: str, name: str) -> None:
        service = self._slice_owner.pop((namespace, name), None)
        if service is None:
            return
        group = self._slices.get((namespace, service), {})
        group.pop(name, None)
        if not group:
            self._slices.pop((namespace, service), None)
        self._rebuild((namespace, service))

    def _rebuild(self, owner: Owner) -> None:
        service = self._services.get(owner)
        new: dict[str, list[Record]] = {}
        if service is not None:
            slices = self._slices.get(owner, {}).values()
            new = service_records(service, slices, self.domain, self.ttl)
        old = self._owned.pop(owner, {})
        if old == new:
            if new:
                self._owned[owner] = new
            return
        for name in old:
            holders = self._names.get(name, {})
            holders.pop(owner, None)
            if not holders:
                self._names.pop(name, None)
            for parent in self._parents_of(name):
                self._parents[parent] -= 1
                if self._parents[parent] <= 0:
                    del self._parents[parent]
        for name, records in new.items():
            self._names.setdefault(name, {})[owner] = records
            for parent in self._parents_of(name):
                self._parents[parent] += 1
        if new:
            self._owned[owner] = new
        self.serial = (self.serial + 1) & 0xFFFFFFFF

    def _parents_of(self, name: str) -> list[str]:
        """The names between ``name`` and the zone apex (both excluded)."""
        if not name.endswith("." + self.domain):
            return []
        labels = name[: -len(self.domain) - 1].split(".")
        return [".".join([*labels[i:], self.domain]) for i in range(1, len(labels))]

    # -- answering ------------------------------------------------------------------------

    def in_zone(self, name: str) -> bool:
        name = name.rstrip(".").lower()
        return name == self.domain or name.endswith("." + self.domain)

    def soa(self) -> Record:
        return Record(
            self.domain,
            SOA,
            SOAData(
                f"ns.dns.{self.domain}",
                f"hostmaster.{self.domain}",
                self.serial,
                7200,
                1800,
                86400,
                self.ttl,
            ),
            ttl=self.ttl,
        )

    def _apex_records(self) -> dict[str, list[Record]]:
        d = self.domain
        records = {
            d: [Record(d, NS, f"ns.dns.{d}", ttl=self.ttl)],
            f"dns-version.{d}": [Record(f"dns-version.{d}", TXT, (SCHEMA_VERSION,), ttl=self.ttl)],
            f"svc.{d}": [],
            f"pod.{d}": [],
            f"dns.{d}": [],
            f"ns.dns.{d}": [],
        }
        if self.nameserver:
            rtype = _address_type(self.nameserver)
            if rtype is not None:
                records[f"ns.dns.{d}"].append(
                    Record(f"ns.dns.{d}", rtype, self.nameserver, ttl=self.ttl)
                )
        return records

    def records(self, name: str) -> list[Record] | None:
        """Every record owned by ``name`` (lowercase, no trailing dot), or None when the
        name does not exist."""
        if name == self.domain:
            return [self.soa(), *self._apex[name]]
        if name in self._apex:
            return list(self._apex[name])
        holders = self._names.get(name)
        if holders is not None:
            return [r for records in holders.values() for r in records]
        if name in self._parents:
            return []
        return self._pod_records(name)

    def _pod_records(self, name: str) -> list[Record] | None:
        suffix = f".pod.{self.domain}"
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) == 1:
            return []  # <namespace>.pod.<domain>
        if len(labels) != 2 or not labels[1]:
            return None
        ip_label = labels[0]
        for text in (ip_label.replace("-", "."), ip_label.replace("-", ":")):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if dashed(str(ip)) == ip_label or ip.version == 6:
                return [Record(name, A if ip.version == 4 else AAAA, str(ip), ttl=self.ttl)]
        return None

    def lookup(self, qname: str, qtype: int) -> Answer | None:
        """The answer for ``qname``/``qtype``, or None when the name is not the zone's (a
        name outside it, a reverse name of an address nobody here has)."""
        name = qname.rstrip(".").lower()
        if not self.in_zone(name):
            ptrs = self._names.get(name) if name.endswith(".arpa") else None
            if not ptrs:
                return None
            records = [r for records in ptrs.values() for r in records]
            if qtype not in (PTR, ANY):
                return Answer(answers=[])
            return Answer(answers=_renamed(records, qname))
        answer = Answer()
        current, asked = name, qname.rstrip(".")
        for _ in range(MAX_CHASE):
            records = self.records(current)
            if records is None:
                answer.rcode = NXDOMAIN
                break
            cnames = [r for r in records if r.rtype == CNAME]
            if cnames and qtype not in (CNAME, ANY):
                answer.answers += _renamed(cnames, asked)
                current = asked = cnames[0].data
                if not self.in_zone(current):
                    answer.chase = current
                    return answer
                continue
            matching = [r for r in records if qtype == ANY or r.rtype == qtype]
            answer.answers += _renamed(matching, asked)
            for r in matching:
                if r.rtype == SRV:
                    answer.additional += [
                        a for a in self.records(r.data.target) or [] if a.rtype in (A, AAAA)
                    ]
            break
        if not answer.answers or answer.rcode == NXDOMAIN:
            answer.authority.append(self.soa())
        answer.additional = list(dict.fromkeys(answer.additional))
        return answer


def _renamed(records: list[Record], name: str) -> list[Record]:
    """The records with ``name`` as owner (the question's spelling, case kept)."""
    return [Record(name, r.rtype, r.data, ttl=r.ttl, rclass=r.rclass) for r in records]


def _owner(obj: Mapping[str, Any]) -> Owner:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", str(meta.get("name"))


__all__ = ["Answer", "ClusterZone", "dashed", "ready_endpoints", "service_records"]
