"""CustomResourceDefinitions: resources added while the API server runs.

In-process first (the object store and its client, then the HTTP routes), then kubectl and
the official Python client against a daemon (API only, no node agent).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time

import pytest
import yaml
from daemon_process import start_daemon, stop_daemon
from inprocess_api import in_process_api
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kcore.api import registry
from kcore.apiserver.crd import find_json_path, parse_json_path, version_priority
from kcore.apiserver.objects import ObjectStore
from kcore.client import ApiClient, InProcessTransport
from kcore.daemon import bootstrap
from kcore.errors import Invalid, NotFound, NotSupported
from kcore.plugins.store_sqlite.backend import SqliteStore

CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
WIDGET = ("example.com/v1", "Widget")
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


def widget_crd(**changes) -> dict:
    """``widgets.example.com``: namespaced, status and scale subresources, printer columns,
    and a schema that uses most of what validation knows."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wd"],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color",
                         "priority": 1},
                        {"name": "Ready", "type": "string",
                         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": WIDGET_SCHEMA},
                }
            ],
        },
    }  # fmt: skip
    for key, value in changes.items():
        crd["spec"][key] = value
    return copy.deepcopy(crd)


WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["color"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "color": {"type": "string", "enum": ["red", "blue"]},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "note": {"type": "string", "nullable": True},
                "size": {"type": "string", "default": "M"},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "selector": {"type": "string"},
                "conditions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                    },
                },
            },
        },
    },
}


def widget(obj_name: str = "w1", **spec) -> dict:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": obj_name, "namespace": "default"},
        "spec": {"color": "red", **spec},
    }


async def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            assert value, f"not true within {timeout}s"
            return value
        await asyncio.sleep(0.02)


@pytest.fixture
async def kube():
    """An in-process API with the Widget definition."""
    async with in_process_api() as (api, _store, _objects):
        await api.create(widget_crd())
        yield api


def conditions(crd: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in crd["status"]["conditions"]}


# -- definitions ------------------------------------------------------------------------


async def test_a_definition_is_established_and_its_resource_served(kube: ApiClient):
    crd = await kube.get(*CRD, "widgets.example.com")
    assert conditions(crd) == {
        "NamesAccepted": ("True", "NoConflicts"),
        "Established": ("True", "InitialNamesAccepted"),
    }
    assert crd["status"]["acceptedNames"] == {
        "plural": "widgets",
        "singular": "widget",
        "shortNames": ["wd"],
        "kind": "Widget",
        "listKind": "WidgetList",
        "categories": ["all"],
    }
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    info = registry.by_kind(*WIDGET)
    assert (info.plural, info.namespaced, info.short_names) == ("widgets", True, ("wd",))
    assert registry.resolve("wd") is info and registry.resolve("widgets.example.com") is info
    assert [s.name for s in info.subresources] == ["status", "scale"]


async def test_a_status_written_by_a_client_cannot_unestablish_it(kube: ApiClient):
    crd = await kube.get(*CRD, "widgets.example.com")
    crd["status"]["conditions"] = []
    crd["status"]["acceptedNames"] = {"plural": "x", "kind": "X"}
    updated = await kube.update_status(crd)
    assert conditions(updated)["Established"] == ("True", "InitialNamesAccepted")
    assert updated["status"]["acceptedNames"]["plural"] == "widgets"


@pytest.mark.parametrize(
    ("change", "causes"),
    [
        (
            {"metadata": {"name": "gadgets.example.com"}},
            [("metadata.name", 'Invalid value: "gadgets.example.com": must be '
              'spec.names.plural+"."+spec.group')],
        ),
        (
            {"spec": {"scope": "Global"}},
            [("spec.scope", 'Unsupported value: "Global": supported values: "Cluster", '
              '"Namespaced"')],
        ),
        (
            {"spec": {"versions": [{"name": "v1", "served": True, "storage": True}]}},
            [("spec.versions[0].schema.openAPIV3Schema", "Required value: schemas are required")],
        ),
        (
            {"spec": {"versions": [
                {"name": "v1", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v2", "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
            ]}},
            [("spec.versions", 'Invalid value: ["v1", "v2"]: must have exactly one version '
              "marked as storage version")],
        ),
        (
            {"spec": {"versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object", "properties": {"spec": {"properties": {
                    "a": {"type": "integer", "default": "one"}}}}}}}]}},
            [
                ("spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
                 "Required value: must not be empty for specified object fields"),
                ("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].default",
                 'Invalid value: "string": in body must be of type integer: "string"'),
            ],
        ),
        (
            {"spec": {"versions": [{"name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
                "additionalPrinterColumns": [{"name": "X", "type": "float", "jsonPath": "spec"}],
            }]}},
            [
                ("spec.versions[0].additionalPrinterColumns[0].type",
                 'Unsupported value: "float": supported values: "integer", "number", "string", '
                 '"boolean", "date"'),
                ("spec.versions[0].additionalPrinterColumns[0].jsonPath",
                 'Invalid value: "spec": must be a simple json path starting with .'),
            ],
        ),
    ],
)  # fmt: skip
async def test_a_bad_definition_is_refused_naming_each_field(kube, change, causes):
    crd = widget_crd()
    crd["metadata"].update(change.get("metadata", {}))
    crd["spec"].update(change.get("spec", {}))
    if "metadata" not in change:
        crd["metadata"]["name"] = "widgets.example.com"
    with pytest.raises(Invalid) as info:
        await kube.create(crd, dry_run=True)
    assert [(c.field, c.message) for c in info.value.causes] == causes


async def test_a_group_needs_a_dot_and_protected_groups_an_approval(kube: ApiClient):
    bad = widget_crd(group="example")
    bad["metadata"]["name"] = "widgets.example"
    with pytest.raises(Invalid, match="should be a domain with at least one dot"):
        await kube.create(bad)
    protected = widget_crd(group="things.k8s.io")
    protected["metadata"]["name"] = "widgets.things.k8s.io"
    with pytest.raises(Invalid, match=r"api-approved\.kubernetes\.io"):
        await kube.create(protected)
    protected["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, test"}
    await kube.create(protected)


async def test_the_scope_cannot_change(kube: ApiClient):
    crd = await kube.get(*CRD, "widgets.example.com")
    crd["spec"]["scope"] = "Cluster"
    with pytest.raises(Invalid, match=r'spec.scope: Invalid value: "Cluster": field is immutable'):
        await kube.update(crd)


async def test_names_another_definition_uses_are_not_accepted(kube: ApiClient):
    other = widget_crd()
    other["metadata"]["name"] = "gizmos.example.com"
    other["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo", "shortNames": ["wd"]}
    crd = await kube.create(other)
    assert conditions(crd) == {
        "NamesAccepted": ("False", "ShortNamesConflict"),
        "Established": ("False", "NotAccepted"),
    }
    served = kube.transport.objects.crds
    assert served.resource("example.com", "v1", "gizmos") is None
    with pytest.raises(NotFound):
        await kube.create({**widget(), "kind": "Gizmo"})
    # once the conflict is gone, an update is accepted
    crd["spec"]["names"]["shortNames"] = ["gz"]
    crd = await kube.update(crd)
    assert conditions(crd)["Established"] == ("True", "InitialNamesAccepted")
    assert served.resource("example.com", "v1", "gizmos") is not None


async def test_a_cluster_scoped_resource(kube: ApiClient):
    crd = widget_crd(scope="Cluster")
    crd["metadata"]["name"] = "planets.example.com"
    crd["spec"]["names"] = {"plural": "planets", "kind": "Planet"}
    await kube.create(crd)
    planet = await kube.create(
        {"apiVersion": "example.com/v1", "kind": "Planet", "metadata": {"name": "mars"},
         "spec": {"color": "red"}}
    )  # fmt: skip
    assert "namespace" not in planet["metadata"]
    items, _ = await kube.list("example.com/v1", "Planet")
    assert [p["metadata"]["name"] for p in items] == ["mars"]


# -- custom objects -----------------------------------------------------------------------


async def test_crud_selectors_and_generation(kube: ApiClient):
    created = await kube.create({**widget("a"), "metadata": {"name": "a", "labels": {"x": "1"}}})
    await kube.create(widget("b"))
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"].isdigit()
    items, _ = await kube.list(*WIDGET, namespace="default", label_selector="x=1")
    assert [w["metadata"]["name"] for w in items] == ["a"]
    items, _ = await kube.list(*WIDGET, field_selector="metadata.name=b")
    assert [w["metadata"]["name"] for w in items] == ["b"]
    page = await kube.list_page(*WIDGET, namespace="default")
    assert page.resource_version.isdigit()
    created["metadata"]["labels"]["x"] = "2"
    relabelled = await kube.update(created)
    assert relabelled["metadata"]["generation"] == 1  # metadata is not the spec
    respec = await kube.patch(*WIDGET, "a", {"spec": {"color": "blue"}}, namespace="default")
    assert respec["metadata"]["generation"] == 2
    stale = copy.deepcopy(created)
    with pytest.raises(Exception, match="the object has been modified"):
        await kube.update(stale)
    await kube.delete(*WIDGET, "a", namespace="default")
    with pytest.raises(NotFound, match=r'widgets\.example\.com "a" not found'):
        await kube.get(*WIDGET, "a", namespace="default")


@pytest.mark.parametrize(
    ("spec", "causes"),
    [
        (
            {"replicas": "string"},
            [("spec.replicas", "FieldValueTypeInvalid",
              'Invalid value: "string": spec.replicas in body must be of type integer: "string"')],
        ),
        (
            {"replicas": 11, "color": "green"},
            [
                ("spec.color", "FieldValueNotSupported",
                 'Unsupported value: "green": supported values: "red", "blue"'),
                ("spec.replicas", "FieldValueInvalid",
                 "Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
            ],
        ),
        (
            {"replicas": -1},
            [("spec.replicas", "FieldValueInvalid",
              "Invalid value: -1: spec.replicas in body should be greater than or equal to 0")],
        ),
        (
            {"name": "x"},
            [("spec.name", "FieldValueInvalid",
              'Invalid value: "x": spec.name in body should be at least 2 chars long')],
        ),
        (
            {"name": "abcdefg"},
            [("spec.name", "FieldValueTooLong", "Too long: may not be longer than 5")],
        ),
        (
            {"name": "AB"},
            [("spec.name", "FieldValueInvalid",
              """Invalid value: "AB": spec.name in body should match '^[a-z]+$'""")],
        ),
        (
            {"tags": ["a", 1, "c"]},
            [
                ("spec.tags", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
                ("spec.tags[1]", "FieldValueTypeInvalid",
                 'Invalid value: "integer": spec.tags[1] in body must be of type string: '
                 '"integer"'),
            ],
        ),
        (
            {"labels": {"a": 1}, "port": True},
            [
                ("spec.labels.a", "FieldValueTypeInvalid",
                 'Invalid value: "integer": spec.labels.a in body must be of type string: '
                 '"integer"'),
                ("spec.port", "FieldValueTypeInvalid",
                 'Invalid value: "boolean": spec.port in body must be of type '
                 'integer,string: "boolean"'),
            ],
        ),
    ],
)  # fmt: skip
async def test_objects_are_validated_against_the_schema(kube: ApiClient, spec, causes):
    body = widget("bad", **spec)
    with pytest.raises(Invalid) as info:
        await kube.create(body)
    assert [(c.field, c.reason, c.message) for c in info.value.causes] == causes
    first = f"{causes[0][0]}: {causes[0][2]}"
    assert str(info.value).startswith('Widget.example.com "bad" is invalid: ')
    assert first in str(info.value)


async def test_a_required_field_and_the_object_metadata(kube: ApiClient):
    body = widget("Bad_Name")
    del body["spec"]["color"]
    with pytest.raises(Invalid) as info:
        await kube.create(body)
    fields = [(c.field, c.message.split(":")[0]) for c in info.value.causes]
    assert fields == [("metadata.name", "Invalid value"), ("spec.color", "Required value")]


async def test_unknown_fields_are_pruned_defaults_filled_and_nulls_handled(kube: ApiClient):
    body = widget("w", port="http", note=None, size=None, extra=1)
    body["spec"]["free"] = {"anything": {"goes": [1, 2]}}
    body["spec"]["labels"] = {"a": "b"}
    body["top"] = "level"
    body["metadata"]["bogus"] = True
    created = await kube.create(body)
    assert created["spec"] == {
        "color": "red",
        "port": "http",
        "note": None,  # nullable: kept
        "size": "M",  # null, not nullable, with a default: the default
        "free": {"anything": {"goes": [1, 2]}},  # x-kubernetes-preserve-unknown-fields
        "labels": {"a": "b"},
        "replicas": 1,
    }
    assert "top" not in created and "bogus" not in created["metadata"]
    assert created["apiVersion"] == "example.com/v1" and created["kind"] == "Widget"


async def test_strict_field_validation_names_unknown_fields(kube: ApiClient):
    objects = kube.transport.objects
    info = registry.by_kind(*WIDGET)
    with pytest.raises(Invalid) as err:
        await objects.create(info, "default", widget("s", extra=1), strict=True)
    assert 'strict decoding error: unknown field "spec.extra"' in str(err.value)


async def test_the_status_subresource_splits_spec_and_status(kube: ApiClient):
    created = await kube.create({**widget("s"), "status": {"replicas": 9}})
    assert "status" not in created  # a new object's status is its controllers'
    with_status = {**created, "status": {"replicas": 2, "selector": "app=s"}}
    updated = await kube.update_status({**with_status, "spec": {"color": "blue"}})
    assert updated["status"] == {"replicas": 2, "selector": "app=s"}
    assert updated["spec"]["color"] == "red" and updated["metadata"]["generation"] == 1
    main = await kube.update({**updated, "status": {"replicas": 5}, "spec": {"color": "blue"}})
    assert main["status"] == {"replicas": 2, "selector": "app=s"}
    assert main["spec"]["color"] == "blue" and main["metadata"]["generation"] == 2


async def test_patch_types(kube: ApiClient):
    await kube.create(widget("p", tags=["a"]))
    merged = await kube.patch(*WIDGET, "p", {"spec": {"tags": ["b"], "note": "n"}},
                              namespace="default")  # fmt: skip
    assert merged["spec"]["tags"] == ["b"]
    patched = await kube.patch(
        *WIDGET,
        "p",
        [{"op": "replace", "path": "/spec/color", "value": "blue"}],
        "json",
        namespace="default",
    )
    assert patched["spec"]["color"] == "blue"
    with pytest.raises(Exception) as err:
        await kube.patch(*WIDGET, "p", {"spec": {"color": "red"}}, "strategic", namespace="default")
    assert getattr(err.value, "code", None) == 415
    applied = await kube.patch(*WIDGET, "new", widget("new", replicas=3), "apply",
                               namespace="default")  # fmt: skip
    assert applied["spec"]["replicas"] == 3
    reapplied = await kube.patch(*WIDGET, "new", widget("new", replicas=4), "apply",
                                 namespace="default")  # fmt: skip
    assert reapplied["spec"]["replicas"] == 4


async def test_watch_sees_custom_objects(kube: ApiClient):
    seen: list[tuple[str, str]] = []

    async def watch():
        async for kind, obj in kube.watch(*WIDGET, namespace="default", timeout_seconds=5):
            seen.append((kind, obj["metadata"]["name"]))
            if kind == "DELETED":
                return

    task = asyncio.ensure_future(watch())
    await asyncio.sleep(0.1)
    await kube.create(widget("watched"))
    await kube.delete(*WIDGET, "watched", namespace="default")
    await asyncio.wait_for(task, 10)
    assert seen == [("ADDED", "watched"), ("DELETED", "watched")]


async def test_deleting_the_definition_deletes_its_objects_first(kube: ApiClient):
    await kube.create({**widget("held"), "metadata": {
        "name": "held", "namespace": "default", "finalizers": ["example.com/hold"]}})  # fmt: skip
    await kube.create(widget("free"))
    await kube.delete(*CRD, "widgets.example.com")
    crd = await eventually(lambda: _terminating(kube), timeout=10)  # waits for the held object
    assert "customresourcecleanup.apiextensions.k8s.io" in crd["metadata"]["finalizers"]
    with pytest.raises(NotSupported, match="custom resource definition is terminating"):
        await kube.create(widget("late"))
    held = await kube.get(*WIDGET, "held", namespace="default")
    assert held["metadata"]["deletionTimestamp"]
    held["metadata"]["finalizers"] = []
    await kube.update(held)

    async def gone():
        try:
            await kube.get(*CRD, "widgets.example.com")
        except NotFound:
            return True
        return False

    await eventually(gone)
    assert kube.transport.objects.crds.resource("example.com", "v1", "widgets") is None
    with pytest.raises(NotFound):
        await kube.get(*WIDGET, "free", namespace="default")


async def _terminating(kube: ApiClient):
    crd = await kube.get(*CRD, "widgets.example.com")
    reason = conditions(crd).get("Terminating", ("", ""))[1]
    return crd if reason == "InstanceDeletionInProgress" else None


async def test_definitions_are_served_again_after_a_restart(tmp_path):
    path = str(tmp_path / "store.db")
    store = SqliteStore(path)
    objects = ObjectStore(store)
    await bootstrap(objects)
    api = ApiClient(InProcessTransport(objects))
    await api.create(widget_crd())
    await api.create(widget("kept"))
    await api.close()
    await store.close()
    del api, objects

    store = SqliteStore(path)
    try:
        objects = ObjectStore(store)
        assert objects.crds.definitions() == []
        await objects.crds.load()
        api = ApiClient(InProcessTransport(objects))
        kept = await api.get(*WIDGET, "kept", namespace="default")
        assert kept["spec"]["replicas"] == 1
        await api.close()
    finally:
        await store.close()


async def test_a_client_may_know_a_kind_its_api_server_does_not_serve(kube: ApiClient):
    info = registry.CustomResourceInfo("example.org", "v1", "Gadget", "gadgets", "gadget", True)
    registry.register(info)
    try:
        assert registry.by_kind("example.org/v1", "Gadget") is info
        assert registry.resolve("gadgets.example.org") is info
        gadget = {"apiVersion": "example.org/v1", "kind": "Gadget", "metadata": {"name": "g"}}
        with pytest.raises(NotFound, match="could not find the requested resource"):
            await kube.create(gadget)
    finally:
        registry.unregister(info)
    assert registry.by_kind("example.org/v1", "Gadget") is None


def test_json_paths_and_version_priority():
    obj = {"status": {"conditions": [{"type": "A", "status": "x"}, {"type": "Ready", "status": "y"}]},
           "metadata": {"labels": {"app.kubernetes.io/name": "n"}}, "spec": {"v": [1, 2]}}  # fmt: skip
    assert find_json_path(
        obj, parse_json_path('.status.conditions[?(@.type=="Ready")].status')
    ) == ["y"]
    assert find_json_path(obj, parse_json_path(".metadata.labels['app.kubernetes.io/name']")) == [
        "n"
    ]
    assert find_json_path(obj, parse_json_path("{.spec.v[*]}")) == [1, 2]
    assert find_json_path(obj, parse_json_path(".spec.v[-1]")) == [2]
    assert find_json_path(obj, parse_json_path(".spec.missing")) == []
    versions = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v10beta1", "v1beta1"]
    assert sorted(versions, key=version_priority) == [
        "v2", "v1", "v10beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
    ]  # fmt: skip


# -- over HTTP ----------------------------------------------------------------------------


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_discovery_lists_the_new_resource_at_once(api):
    status, groups = await api.request("GET", "/apis")
    assert "example.com" not in [g["name"] for g in groups["groups"]]
    status, _ = await api.request("GET", "/apis/example.com/v1")
    assert status == 404
    two_versions = widget_crd()
    beta = copy.deepcopy(two_versions["spec"]["versions"][0])
    beta.update(name="v1beta1", storage=False)
    two_versions["spec"]["versions"].append(beta)
    status, _ = await api.request("POST", CRDS, two_versions)
    assert status == 201
    _, groups = await api.request("GET", "/apis")
    (group,) = [g for g in groups["groups"] if g["name"] == "example.com"]
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"] == {"groupVersion": "example.com/v1", "version": "v1"}
    status, one = await api.request("GET", "/apis/example.com")
    assert (status, one["kind"], one["name"]) == (200, "APIGroup", "example.com")
    status, resources = await api.request("GET", "/apis/example.com/v1")
    assert status == 200 and resources["groupVersion"] == "example.com/v1"
    assert resources["resources"] == [
        {"name": "widgets", "singularName": "widget", "namespaced": True, "kind": "Widget",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                   "watch"],
         "shortNames": ["wd"], "categories": ["all"]},
        {"name": "widgets/status", "singularName": "", "namespaced": True, "kind": "Widget",
         "verbs": ["get", "patch", "update"]},
        {"name": "widgets/scale", "singularName": "", "namespaced": True, "kind": "Scale",
         "verbs": ["get", "patch", "update"], "group": "autoscaling", "version": "v1"},
    ]  # fmt: skip
    _, crds = await api.request("GET", "/apis/apiextensions.k8s.io/v1")
    assert crds["resources"][0]["shortNames"] == ["crd", "crds"]
    # an object made through one version reads the same through the other
    beta_widget = {**widget(), "apiVersion": "example.com/v1beta1"}
    status, made = await api.request("POST", WIDGETS.replace("/v1/", "/v1beta1/"), beta_widget)
    assert (status, made["apiVersion"]) == (201, "example.com/v1beta1")
    _, read = await api.request("GET", WIDGETS + "/w1")
    assert read["apiVersion"] == "example.com/v1" and read["spec"] == made["spec"]
    _, listed = await api.request("GET", WIDGETS.replace("/v1/", "/v1beta1/"))
    assert listed["kind"] == "WidgetList" and listed["apiVersion"] == "example.com/v1beta1"
    assert [w["apiVersion"] for w in listed["items"]] == ["example.com/v1beta1"]


async def test_errors_over_http(api):
    await api.request("POST", CRDS, widget_crd())
    status, body = await api.request("POST", WIDGETS, widget(replicas="string"))
    assert status == 422
    assert body["message"] == (
        'Widget.example.com "w1" is invalid: spec.replicas: Invalid value: "string": '
        'spec.replicas in body must be of type integer: "string"'
    )
    assert body["details"] == {
        "name": "w1", "group": "example.com", "kind": "Widget",
        "causes": [{"reason": "FieldValueTypeInvalid", "field": "spec.replicas",
                    "message": 'Invalid value: "string": spec.replicas in body must be of '
                               'type integer: "string"'}],
    }  # fmt: skip
    await api.request("POST", WIDGETS, widget())
    status, body = await api.request(
        "PATCH",
        WIDGETS + "/w1",
        {"spec": {"color": "blue"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    status, body = await api.request("GET", "/apis/example.com/v1/namespaces/default/gadgets")
    assert status == 404
    status, body = await api.request(
        "POST", CRDS, {**widget_crd(), "metadata": {"name": "widgets.example.org"}}
    )
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.name"


async def test_printer_columns_in_tables(api):
    await api.request("POST", CRDS, widget_crd())
    body = widget(replicas=3)
    await api.request("POST", WIDGETS, body)
    await api.request(
        "PUT", WIDGETS + "/w1/status",
        {**body, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    )  # fmt: skip
    status, table = await api.request("GET", WIDGETS, headers={"Accept": TABLE})
    assert status == 200 and table["kind"] == "Table"
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0),
        ("Replicas", "integer", 0),
        ("Color", "string", 1),
        ("Ready", "string", 0),
        ("Age", "date", 0),
    ]
    (row,) = table["rows"]
    name, replicas, color, ready, age = row["cells"]
    assert (name, replicas, color, ready) == ("w1", 3, "red", "True")
    assert age.endswith("s")
    assert row["object"]["metadata"]["name"] == "w1"
    # with no printer columns: NAME and AGE
    crd = widget_crd()
    crd["metadata"]["name"] = "gizmos.example.com"
    crd["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo"}
    del crd["spec"]["versions"][0]["additionalPrinterColumns"]
    await api.request("POST", CRDS, crd)
    await api.request(
        "POST", WIDGETS.replace("widgets", "gizmos"), {**widget("g"), "kind": "Gizmo"}
    )
    _, table = await api.request(
        "GET", WIDGETS.replace("widgets", "gizmos"), headers={"Accept": TABLE}
    )
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]


async def test_the_scale_subresource(api):
    await api.request("POST", CRDS, widget_crd())
    body = widget(replicas=2)
    await api.request("POST", WIDGETS, body)
    await api.request("PUT", WIDGETS + "/w1/status", {**body, "status": {"replicas": 1,
                      "selector": "app=w1"}})  # fmt: skip
    status, scale = await api.request("GET", WIDGETS + "/w1/scale")
    assert status == 200
    assert (scale["kind"], scale["spec"], scale["status"]) == (
        "Scale",
        {"replicas": 2},
        {"replicas": 1, "selector": "app=w1"},
    )
    status, scale = await api.request(
        "PATCH", WIDGETS + "/w1/scale", {"spec": {"replicas": 5}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    assert (status, scale["spec"]["replicas"]) == (200, 5)
    _, obj = await api.request("GET", WIDGETS + "/w1")
    assert obj["spec"]["replicas"] == 5 and obj["metadata"]["generation"] == 2
    status, body = await api.request(
        "PATCH", WIDGETS + "/w1/scale", {"spec": {"replicas": 50}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    assert status == 422 and "should be less than or equal to 10" in body["message"]


# -- kubectl and the Python client against a daemon ------------------------------------------


@pytest.fixture(scope="module")
def api_daemon(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("kcore-crd"), node_agent=False)
    try:
        yield d
    finally:
        stop_daemon(d)


def ok(proc) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_kubectl_uses_a_new_definition_at_once(api_daemon):
    ok(api_daemon.kubectl("get", "pods"))  # fills kubectl's discovery cache
    ok(api_daemon.kubectl("apply", "-f", "-", input=yaml.safe_dump(widget_crd())))
    assert "No resources found" in api_daemon.kubectl("get", "widgets").stderr
    ok(api_daemon.kubectl("apply", "-f", "-", input=yaml.safe_dump(widget(replicas=2))))
    out = ok(api_daemon.kubectl("get", "wd"))
    assert out.split("\n")[0].split() == ["NAME", "REPLICAS", "READY", "AGE"]
    assert out.split("\n")[1].split()[:2] == ["w1", "2"]
    wide = ok(api_daemon.kubectl("get", "widget", "w1", "-o", "wide"))
    assert "COLOR" in wide and "red" in wide
    resources = ok(api_daemon.kubectl("api-resources", "--api-group=example.com"))
    assert resources.split("\n")[1].split() == ["widgets", "wd", "example.com/v1", "true", "Widget"]
    # apply again: a JSON merge patch (no strategic merge for custom resources)
    ok(api_daemon.kubectl("apply", "-f", "-", input=yaml.safe_dump(widget(replicas=4))))
    ok(api_daemon.kubectl("scale", "widget", "w1", "--replicas=3"))
    got = json.loads(ok(api_daemon.kubectl("get", "widgets.example.com", "w1", "-o", "json")))
    assert got["spec"]["replicas"] == 3
    bad = api_daemon.kubectl("patch", "wd", "w1", "--type=merge", "-p", '{"spec":{"replicas":"x"}}')
    assert bad.returncode != 0
    assert (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer'
        in bad.stderr
    )
    smp = api_daemon.kubectl("patch", "wd", "w1", "-p", '{"spec":{"replicas":1}}')
    assert smp.returncode != 0 and "application/strategic-merge-patch+json" in smp.stderr
    ok(api_daemon.kubectl("delete", "crd", "widgets.example.com", "--timeout=30s"))
    assert "widgets" not in ok(api_daemon.kubectl("api-resources", "--api-group=example.com"))


def test_the_python_client_custom_objects_api(api_daemon):
    k8s = config.new_client_from_config(config_file=str(api_daemon.kubeconfig))
    ext = client.ApiextensionsV1Api(k8s)
    crd = widget_crd()
    crd["metadata"]["name"] = "things.example.com"
    crd["spec"]["names"] = {"plural": "things", "kind": "Thing"}
    made = ext.create_custom_resource_definition(crd)
    assert made.status.accepted_names.kind == "Thing"
    objects = client.CustomObjectsApi(k8s)
    body = {**widget("t1"), "kind": "Thing"}
    created = objects.create_namespaced_custom_object(
        "example.com", "v1", "default", "things", body
    )
    assert created["spec"]["replicas"] == 1
    got = objects.get_namespaced_custom_object("example.com", "v1", "default", "things", "t1")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    listed = objects.list_namespaced_custom_object("example.com", "v1", "default", "things")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["t1"]
    patched = objects.patch_namespaced_custom_object(
        "example.com", "v1", "default", "things", "t1", {"spec": {"color": "blue"}}
    )
    assert patched["spec"]["color"] == "blue"
    with pytest.raises(ApiException) as err:
        objects.create_namespaced_custom_object(
            "example.com", "v1", "default", "things", {**body, "spec": {"color": "pink"}}
        )
    assert err.value.status == 422
    objects.delete_namespaced_custom_object("example.com", "v1", "default", "things", "t1")
    with pytest.raises(ApiException) as err:
        objects.get_namespaced_custom_object("example.com", "v1", "default", "things", "t1")
    assert err.value.status == 404
    ext.delete_custom_resource_definition("things.example.com")


def test_definitions_survive_a_restart_of_the_daemon(tmp_path):
    d = start_daemon(tmp_path, node_agent=False)
    try:
        ok(d.kubectl("apply", "-f", "-", input=yaml.safe_dump(widget_crd())))
        ok(d.kubectl("apply", "-f", "-", input=yaml.safe_dump(widget())))
    finally:
        stop_daemon(d)
    d = start_daemon(tmp_path, node_agent=False)
    try:
        assert ok(d.kubectl("get", "wd", "w1", "-o", "name")).strip() == "widget.example.com/w1"
    finally:
        stop_daemon(d)
