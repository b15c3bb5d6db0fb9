"""Every kind kcore serves, in one table.

The table drives decoding (which type an ``apiVersion``/``kind`` pair decodes into), the
API server's routes and discovery documents (plural names, scope, verbs, subresources,
short names, categories) and the CLI's name resolution (``po``, ``deploy``, ``pods``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from kcore.api import (
    apiextensions_v1,
    apps_v1,
    authentication_v1,
    autoscaling_v1,
    batch_v1,
    certificates_v1,
    coordination_v1,
    core_v1,
    discovery_v1,
    events_v1,
)
from kcore.api.meta import DeleteOptions, Status, TypedStruct

STANDARD_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
SUBRESOURCE_VERBS: tuple[str, ...] = ("get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    """``pods/status``, ``deployments/scale`` ...: what discovery lists after the resource."""

    name: str
    kind: str
    verbs: tuple[str, ...] = SUBRESOURCE_VERBS
    group: str | None = None
    """Set when the subresource's kind lives in another group (``autoscaling`` Scale)."""
    version: str | None = None


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource: its names, its scope, its Python type and its subresources."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    type: type[TypedStruct]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    group_version = api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path, e.g. ``/apis/apps/v1/namespaces/default/deployments/web``."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            root += f"/namespaces/{namespace}"
        root += f"/{self.plural}"
        return f"{root}/{name}" if name else root


@dataclass(frozen=True)
class CustomResourceInfo(ResourceInfo):
    """A resource that a CustomResourceDefinition adds. Its objects are plain dicts, held
    to the definition's schema by :mod:`kcore.apiserver.crd`."""

    type: type = dict  # type: ignore[assignment]
    list_kind_name: str = ""
    """``spec.names.listKind``."""
    storage_version: str = ""
    """The version objects are stored in (``None`` conversion: only ``apiVersion`` differs)."""

    @property
    def list_kind(self) -> str:
        return self.list_kind_name or f"{self.kind}List"


_SCALE = Subresource("scale", "Scale", group="autoscaling", version="v1")


def _with_status(kind: str) -> Subresource:
    return Subresource("status", kind)


RESOURCES: tuple[ResourceInfo, ...] = (
    # core/v1
    ResourceInfo(
        "", "v1", "Namespace", "namespaces", "namespace", False, core_v1.Namespace,
        short_names=("ns",),
        subresources=(_with_status("Namespace"),),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceInfo(
        "", "v1", "Node", "nodes", "node", False, core_v1.Node,
        short_names=("no",),
        subresources=(_with_status("Node"),),
    ),
    ResourceInfo(
        "", "v1", "Pod", "pods", "pod", True, core_v1.Pod,
        short_names=("po",),
        categories=("all",),
        subresources=(
            _with_status("Pod"),
            Subresource("log", "Pod", verbs=("get",)),
            Subresource("exec", "PodExecOptions", verbs=("create", "get")),
            Subresource("attach", "PodAttachOptions", verbs=("create", "get")),
            Subresource("binding", "Binding", verbs=("create",)),
        ),
    ),
    ResourceInfo(
        "", "v1", "Service", "services", "service", True, core_v1.Service,
        short_names=("svc",),
        categories=("all",),
        subresources=(_with_status("Service"),),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    ResourceInfo(
        "", "v1", "Endpoints", "endpoints", "endpoints", True, core_v1.Endpoints,
        short_names=("ep",),
    ),
    ResourceInfo("", "v1", "Secret", "secrets", "secret", True, core_v1.Secret),
    ResourceInfo(
        "", "v1", "ConfigMap", "configmaps", "configmap", True, core_v1.ConfigMap,
        short_names=("cm",),
    ),
    ResourceInfo(
        "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True,
        core_v1.ServiceAccount,
        short_names=("sa",),
        subresources=(
            Subresource(
                "token", "TokenRequest", verbs=("create",),
                group="authentication.k8s.io", version="v1",
            ),
        ),
    ),
    ResourceInfo(
        "", "v1", "Event", "events", "event", True, core_v1.Event,
        short_names=("ev",),
    ),
    # apps/v1
    ResourceInfo(
        "apps", "v1", "Deployment", "deployments", "deployment", True, apps_v1.Deployment,
        short_names=("deploy",),
        categories=("all",),
        subresources=(_with_status("Deployment"), _SCALE),
    ),
    ResourceInfo(
        "apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, apps_v1.ReplicaSet,
        short_names=("rs",),
        categories=("all",),
        subresources=(_with_status("ReplicaSet"), _SCALE),
    ),
    ResourceInfo(
        "apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, apps_v1.DaemonSet,
        short_names=("ds",),
        categories=("all",),
        subresources=(_with_status("DaemonSet"),),
    ),
    ResourceInfo(
        "apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision",
        True, apps_v1.ControllerRevision,
    ),
    # batch/v1
    ResourceInfo(
        "batch", "v1", "Job", "jobs", "job", True, batch_v1.Job,
        categories=("all",),
        subresources=(_with_status("Job"),),
    ),
    ResourceInfo(
        "batch", "v1", "CronJob", "cronjobs", "cronjob", True, batch_v1.CronJob,
        short_names=("cj",),
        categories=("all",),
        subresources=(_with_status("CronJob"),),
    ),
    # coordination.k8s.io/v1
    ResourceInfo(
        "coordination.k8s.io", "v1", "Lease", "leases", "lease", True, coordination_v1.Lease,
    ),
    # certificates.k8s.io/v1
    ResourceInfo(
        "certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
        "certificatesigningrequest", False, certificates_v1.CertificateSigningRequest,
        short_names=("csr",),
        subresources=(
            _with_status("CertificateSigningRequest"),
            Subresource("approval", "CertificateSigningRequest"),
        ),
    ),
    # apiextensions.k8s.io/v1
    ResourceInfo(
        "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
        "customresourcedefinition", False, apiextensions_v1.CustomResourceDefinition,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=(_with_status("CustomResourceDefinition"),),
    ),
    # events.k8s.io/v1
    ResourceInfo(
        "events.k8s.io", "v1", "Event", "events", "event", True, events_v1.Event,
        short_names=("ev",),
    ),
    # discovery.k8s.io/v1
    ResourceInfo(
        "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True,
        discovery_v1.EndpointSlice,
    ),
)  # fmt: skip

OTHER_KINDS: dict[tuple[str, str], type] = {
    ("v1", "Status"): Status,
    ("v1", "DeleteOptions"): DeleteOptions,
    ("meta.k8s.io/v1", "DeleteOptions"): DeleteOptions,
    ("v1", "Binding"): core_v1.Binding,
    ("autoscaling/v1", "Scale"): autoscaling_v1.Scale,
    ("authentication.k8s.io/v1", "TokenRequest"): authentication_v1.TokenRequest,
}
"""Kinds that are request or response bodies but not stored resources."""

_BY_KIND: dict[tuple[str, str], ResourceInfo] = {(r.api_version, r.kind): r for r in RESOURCES}
_BY_RESOURCE: dict[tuple[str, str, str], ResourceInfo] = {
    (r.group, r.version, r.plural): r for r in RESOURCES
}


# -- resources added at run time ---------------------------------------------------------


class ResourceSource(Protocol):
    """Something that serves resources besides the table: the API server's
    CustomResourceDefinitions (:class:`kcore.apiserver.crd.CustomResourceDefinitions`)."""

    def resources(self) -> Iterable[ResourceInfo]:
        """The resources served now."""
        ...


_SOURCES: list[weakref.ref[ResourceSource]] = []
_REGISTERED: list[ResourceInfo] = []


def add_source(source: ResourceSource) -> None:
    """Consult ``source`` in every lookup after the table, for as long as it lives (it is
    held weakly, so a dropped API server's resources go with it)."""
    _SOURCES.append(weakref.ref(source))


def remove_source(source: ResourceSource) -> None:
    _SOURCES[:] = [ref for ref in _SOURCES if ref() not in (None, source)]


def register(info: ResourceInfo) -> None:
    """Know a resource in this process without serving it: what a client of a custom
    resource does (as client-go's ``AddToScheme``) when the API server is elsewhere."""
    if info not in _REGISTERED:
        _REGISTERED.append(info)


def unregister(info: ResourceInfo) -> None:
    if info in _REGISTERED:
        _REGISTERED.remove(info)


def dynamic() -> list[ResourceInfo]:
    """The resources known besides the table: registered ones, then each source's."""
    found = list(_REGISTERED)
    alive = []
    for ref in _SOURCES:
        source = ref()
        if source is not None:
            alive.append(ref)
            found.extend(source.resources())
    _SOURCES[:] = alive
    return found


def served() -> list[ResourceInfo]:
    """Every resource: the table, then the dynamic ones (a dynamic resource never hides
    a table entry of the same name or kind)."""
    out = list(RESOURCES)
    seen = set(_BY_RESOURCE)
    kinds = set(_BY_KIND)
    for info in dynamic():
        key = (info.group, info.version, info.plural)
        if key in seen or (info.api_version, info.kind) in kinds:
            continue
        seen.add(key)
        kinds.add((info.api_version, info.kind))
        out.append(info)
    return out


# -- lookups -------------------------------------------------------------------------------


def by_kind(api_version: str, kind: str) -> ResourceInfo | None:
    """The resource for ``apiVersion``/``kind`` (``"apps/v1"``, ``"Deployment"``), or ``None``."""
    info = _BY_KIND.get((api_version, kind))
    if info is None and (_SOURCES or _REGISTERED):
        info = next((i for i in dynamic() if i.api_version == api_version and i.kind == kind), None)
    return info


def by_resource(group: str, version: str, resource: str) -> ResourceInfo | None:
    """The resource served at ``group``/``version``/``resource`` (``""`` is the core group)."""
    info = _BY_RESOURCE.get((group, version, resource))
    if info is None and (_SOURCES or _REGISTERED):
        info = next(
            (
                i
                for i in dynamic()
                if i.group == group and i.version == version and i.plural == resource
            ),
            None,
        )
    return info


def type_for(api_version: str, kind: str) -> type | None:
    """The Python type that ``apiVersion``/``kind`` decodes into, stored kind or not
    (custom resources have none: they stay plain dicts)."""
    info = _BY_KIND.get((api_version, kind))
    if info is not None:
        return info.type
    return OTHER_KINDS.get((api_version, kind))


def for_type(cls: type) -> ResourceInfo:
    """The resource whose Python type is ``cls``."""
    for info in RESOURCES:
        if info.type is cls:
            return info
    raise KeyError(f"{cls.__name__} is not a served resource")


def resolve(name: str) -> ResourceInfo | None:
    """Resolve a name as kubectl does: ``pods``, ``po``, ``Pod``, ``deploy.apps``, ``jobs.v1.batch``.

    A ``.group`` suffix picks the group; otherwise the first match in table order wins,
    which puts the core group first (``events`` is core/v1 Event). Custom resources come
    after the table.
    """
    lowered = name.lower()
    base, _, group = lowered.partition(".")
    for info in served():
        if (
            group
            and group
            not in (
                info.group,
                f"{info.version}.{info.group}",
            )
            and not info.group.startswith(group + ".")
        ):
            continue
        if base in (info.plural, info.singular, info.kind.lower(), *info.short_names):
            return info
    return None


def group_versions() -> list[str]:
    """The non-core group versions, in table order (for ``GET /apis``)."""
    seen: list[str] = []
    for info in served():
        if info.group and info.api_version not in seen:
            seen.append(info.api_version)
    return seen


def resources_in(group: str, version: str) -> list[ResourceInfo]:
    """The resources of one group version (for its APIResourceList)."""
    return [r for r in served() if r.group == group and r.version == version]


__all__ = [
    "OTHER_KINDS",
    "RESOURCES",
    "STANDARD_VERBS",
    "CustomResourceInfo",
    "ResourceInfo",
    "ResourceSource",
    "Subresource",
    "add_source",
    "by_kind",
    "by_resource",
    "dynamic",
    "for_type",
    "group_versions",
    "register",
    "remove_source",
    "resolve",
    "resources_in",
    "served",
    "unregister",
]
