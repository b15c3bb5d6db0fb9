"""The kind table: names, scopes and subresources as Kubernetes serves them."""

from __future__ import annotations

import pytest

from kcore.api import (
    ConfigMap,
    CronJob,
    DaemonSet,
    Deployment,
    Endpoints,
    Event,
    Job,
    Lease,
    Namespace,
    Node,
    Pod,
    ReplicaSet,
    Scale,
    Secret,
    Service,
    ServiceAccount,
    Status,
    events_v1,
    registry,
)

EXPECTED = {
    # (group, version, plural): (kind, namespaced, short names, in category "all")
    ("", "v1", "namespaces"): ("Namespace", False, ("ns",), False),
    ("", "v1", "nodes"): ("Node", False, ("no",), False),
    ("", "v1", "pods"): ("Pod", True, ("po",), True),
    ("", "v1", "services"): ("Service", True, ("svc",), True),
    ("", "v1", "endpoints"): ("Endpoints", True, ("ep",), False),
    ("", "v1", "secrets"): ("Secret", True, (), False),
    ("", "v1", "configmaps"): ("ConfigMap", True, ("cm",), False),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True, ("sa",), False),
    ("", "v1", "events"): ("Event", True, ("ev",), False),
    ("apps", "v1", "deployments"): ("Deployment", True, ("deploy",), True),
    ("apps", "v1", "replicasets"): ("ReplicaSet", True, ("rs",), True),
    ("apps", "v1", "daemonsets"): ("DaemonSet", True, ("ds",), True),
    ("apps", "v1", "controllerrevisions"): ("ControllerRevision", True, (), False),
    ("discovery.k8s.io", "v1", "endpointslices"): ("EndpointSlice", True, (), False),
    ("certificates.k8s.io", "v1", "certificatesigningrequests"): (
        "CertificateSigningRequest",
        False,
        ("csr",),
        False,
    ),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): (
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        False,
    ),
    ("batch", "v1", "jobs"): ("Job", True, (), True),
    ("batch", "v1", "cronjobs"): ("CronJob", True, ("cj",), True),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True, (), False),
    ("events.k8s.io", "v1", "events"): ("Event", True, ("ev",), False),
}


def test_the_table_serves_exactly_the_expected_resources():
    got = {
        (r.group, r.version, r.plural): (r.kind, r.namespaced, r.short_names, "all" in r.categories)
        for r in registry.RESOURCES
    }
    assert got == EXPECTED


@pytest.mark.parametrize("info", registry.RESOURCES, ids=lambda i: f"{i.api_version}/{i.plural}")
def test_each_entry_agrees_with_its_type(info):
    assert info.type.API_VERSION == info.api_version
    assert info.type.KIND == info.kind
    assert registry.by_kind(info.api_version, info.kind) is info
    assert registry.by_resource(info.group, info.version, info.plural) is info
    assert info.singular == info.kind.lower()
    assert info.list_kind == f"{info.kind}List"


def test_lookup_by_kind_and_by_resource():
    assert registry.by_kind("apps/v1", "Deployment").type is Deployment
    assert registry.by_kind("v1", "Deployment") is None
    assert registry.by_resource("", "v1", "pods").type is Pod
    assert registry.by_resource("apps", "v1", "pods") is None
    assert registry.by_resource("events.k8s.io", "v1", "events").type is events_v1.Event
    assert registry.by_resource("", "v1", "events").type is Event


def test_type_for_knows_request_and_response_kinds_too():
    assert registry.type_for("v1", "Status") is Status
    assert registry.type_for("autoscaling/v1", "Scale") is Scale
    assert registry.type_for("v1", "Pod") is Pod
    assert registry.type_for("v1", "Nope") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("po", Pod),
        ("pod", Pod),
        ("pods", Pod),
        ("Pod", Pod),
        ("svc", Service),
        ("deploy", Deployment),
        ("deployments.apps", Deployment),
        ("deployments.v1.apps", Deployment),
        ("rs", ReplicaSet),
        ("ds", DaemonSet),
        ("cj", CronJob),
        ("jobs", Job),
        ("cm", ConfigMap),
        ("ns", Namespace),
        ("no", Node),
        ("ep", Endpoints),
        ("sa", ServiceAccount),
        ("ev", Event),
        ("events.events.k8s.io", events_v1.Event),
        ("secrets", Secret),
        ("leases.coordination.k8s.io", Lease),
        ("leases.coordination", Lease),
    ],
)
def test_resolve_names_like_kubectl(name, expected):
    assert registry.resolve(name).type is expected


def test_resolve_unknown_names():
    assert registry.resolve("widgets") is None
    assert registry.resolve("pods.apps") is None


def test_subresources():
    pods = registry.by_resource("", "v1", "pods")
    assert [s.name for s in pods.subresources] == ["status", "log", "exec", "attach", "binding"]
    assert pods.subresource("exec").kind == "PodExecOptions"
    assert pods.subresource("log").verbs == ("get",)
    for plural in ("deployments", "replicasets"):
        scale = registry.by_resource("apps", "v1", plural).subresource("scale")
        assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
        assert scale.verbs == ("get", "patch", "update")
    assert registry.by_resource("apps", "v1", "daemonsets").subresource("scale") is None
    status_kinds = {r.kind for r in registry.RESOURCES if r.subresource("status")}
    assert status_kinds == {
        "Namespace",
        "Node",
        "Pod",
        "Service",
        "Deployment",
        "ReplicaSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "CertificateSigningRequest",
        "CustomResourceDefinition",
    }
    token = registry.by_resource("", "v1", "serviceaccounts").subresource("token")
    assert (token.group, token.kind) == ("authentication.k8s.io", "TokenRequest")


def test_verbs():
    assert registry.by_resource("", "v1", "pods").verbs == (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    assert "deletecollection" not in registry.by_resource("", "v1", "namespaces").verbs


def test_group_versions_and_paths():
    assert registry.group_versions() == [
        "apps/v1",
        "batch/v1",
        "coordination.k8s.io/v1",
        "certificates.k8s.io/v1",
        "apiextensions.k8s.io/v1",
        "events.k8s.io/v1",
        "discovery.k8s.io/v1",
    ]
    assert [r.plural for r in registry.resources_in("batch", "v1")] == ["jobs", "cronjobs"]
    deploy = registry.by_kind("apps/v1", "Deployment")
    assert deploy.path("default", "web") == "/apis/apps/v1/namespaces/default/deployments/web"
    assert deploy.path() == "/apis/apps/v1/deployments"
    assert registry.by_kind("v1", "Node").path("ignored", "n1") == "/api/v1/nodes/n1"
