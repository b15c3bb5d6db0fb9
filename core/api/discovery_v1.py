"""discovery.k8s.io/v1 EndpointSlice: a Service's endpoints, in slices of bounded size.

The EndpointSlice controller writes them for Services with a selector; the service proxy
and cluster DNS read them. Each endpoint carries one address (the controller's) and
conditions ``ready``, ``serving`` and ``terminating``.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from kcore.api.meta import K8sStruct, ObjectReference, TypedObject

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"


class EndpointConditions(K8sStruct):
    ready: bool | None = None
    """Ready to receive traffic (``serving`` and not ``terminating``, or the Service
    publishes not-ready addresses)."""
    serving: bool | None = None
    """The pod is Ready, whether terminating or not."""
    terminating: bool | None = None


class ForZone(K8sStruct):
    name: str = ""


class ForNode(K8sStruct):
    name: str = ""


class EndpointHints(K8sStruct):
    for_zones: list[ForZone] = []
    for_nodes: list[ForNode] = []


def _conditions() -> EndpointConditions:
    return EndpointConditions()


def _empty() -> list:
    return []


class Endpoint(K8sStruct):
    addresses: list[str] = msgspec.field(default_factory=_empty)
    """Always encoded, as Kubernetes requires it."""
    conditions: EndpointConditions = msgspec.field(default_factory=_conditions)
    hostname: str | None = None
    target_ref: ObjectReference | None = None
    deprecated_topology: dict[str, str] = {}
    node_name: str | None = None
    zone: str | None = None
    hints: EndpointHints | None = None


class EndpointPort(K8sStruct):
    name: str | None = None
    """Defaults to ``""`` (an unnamed Service port)."""
    protocol: str | None = None
    port: int | None = None
    app_protocol: str | None = None


class EndpointSlice(TypedObject):
    API_VERSION: ClassVar[str] = "discovery.k8s.io/v1"
    KIND: ClassVar[str] = "EndpointSlice"

    address_type: str | None = None
    """``IPv4``, ``IPv6`` or ``FQDN``; required and immutable."""
    endpoints: list[Endpoint] = msgspec.field(default_factory=_empty)
    """Always encoded (``[]`` when empty): clients require the field."""
    ports: list[EndpointPort] = []


__all__ = [
    "ADDRESS_TYPES",
    "MANAGED_BY_LABEL",
    "SERVICE_NAME_LABEL",
    "Endpoint",
    "EndpointConditions",
    "EndpointHints",
    "EndpointPort",
    "EndpointSlice",
    "ForNode",
    "ForZone",
]
