"""kcore.patch: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

The RFC cases are the RFCs' own examples (RFC 6902 appendix A, RFC 7386 section 3 and
appendix A). The strategic merge patch cases come from Kubernetes' documented behaviour:
kubernetes/community ``strategic-merge-patch.md`` and the preserve-order proposal, the
kubectl patch task on kubernetes.io, the patch ``kubectl apply`` sends (k8s-api.md), and the
test cases of apimachinery's ``strategicpatch`` package.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcore.errors import BadRequest, Invalid, KcoreError
from kcore.patch import (
    STRATEGIC_MERGE_RULES,
    FieldRule,
    MalformedPatch,
    PatchNotApplicable,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    strategy_for,
)


def dollar_keys(value: Any) -> list[str]:
    """Every object key starting with "$", anywhere in ``value``."""
    if isinstance(value, dict):
        found = [k for k in value if k.startswith("$")]
        for v in value.values():
            found += dollar_keys(v)
        return found
    if isinstance(value, list):
        return [k for v in value for k in dollar_keys(v)]
    return []


def containers_of(value: Any) -> list[int]:
    """The ids of every dict and list in ``value``, itself included."""
    if isinstance(value, dict):
        return [id(value), *(i for v in value.values() for i in containers_of(v))]
    if isinstance(value, list):
        return [id(value), *(i for v in value for i in containers_of(v))]
    return []


def names(items: list[dict[str, Any]], key: str = "name") -> list[Any]:
    return [item[key] for item in items]


# ============================================================================================
# JSON Patch, RFC 6902


RFC6902_EXAMPLES = [
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
        id="A.1 adding an object member",
    ),
    pytest.param(
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
        id="A.2 adding an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
        id="A.3 removing an object member",
    ),
    pytest.param(
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
        id="A.4 removing an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
        id="A.5 replacing a value",
    ),
    pytest.param(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        id="A.6 moving a value",
    ),
    pytest.param(
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
        id="A.7 moving an array element",
    ),
    pytest.param(
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
        id="A.8 testing a value: success",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
        id="A.10 adding a nested member object",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
        id="A.11 ignoring unrecognized elements",
    ),
    pytest.param(
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
        id="A.14 ~ escape ordering",
    ),
    pytest.param(
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
        id="A.16 adding an array value",
    ),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC6902_EXAMPLES)
def test_rfc6902_appendix_examples(doc, patch, expected):
    before = copy.deepcopy(doc)
    assert apply_json_patch(doc, patch) == expected
    assert doc == before


@pytest.mark.parametrize(
    ("doc", "patch"),
    [
        pytest.param(
            {"baz": "qux"},
            [{"op": "test", "path": "/baz", "value": "bar"}],
            id="A.9 testing a value: error",
        ),
        pytest.param(
            {"foo": "bar"},
            [{"op": "add", "path": "/baz/bat", "value": "qux"}],
            id="A.12 adding to a nonexistent target",
        ),
        pytest.param(
            {"/": 9, "~1": 10},
            [{"op": "test", "path": "/~01", "value": "10"}],
            id="A.15 comparing strings and numbers",
        ),
    ],
)
def test_rfc6902_appendix_errors_do_not_apply(doc, patch):
    with pytest.raises(PatchNotApplicable) as raised:
        apply_json_patch(doc, patch)
    assert isinstance(raised.value, Invalid)
    assert raised.value.code == 422


def test_json_patch_test_failure_says_what_it_found():
    with pytest.raises(PatchNotApplicable, match=r'"qux".*"bar"'):
        apply_json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])


def test_json_patch_pointer_escapes():
    doc = {"a/b": 1, "m~n": 2}
    patch = [
        {"op": "replace", "path": "/a~1b", "value": 10},
        {"op": "add", "path": "/m~0n", "value": 20},
        {"op": "add", "path": "/x~1y~0z", "value": 3},
    ]
    assert apply_json_patch(doc, patch) == {"a/b": 10, "m~n": 20, "x/y~z": 3}


def test_json_patch_add_replaces_an_existing_member_and_appends_with_dash():
    doc = {"a": 1, "list": [1, 2]}
    patch = [
        {"op": "add", "path": "/a", "value": 2},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "add", "path": "/list/3", "value": 4},  # index == length appends too
    ]
    assert apply_json_patch(doc, patch) == {"a": 2, "list": [1, 2, 3, 4]}


def test_json_patch_whole_document():
    assert apply_json_patch({"a": 1}, [{"op": "add", "path": "", "value": [1]}]) == [1]
    assert apply_json_patch({"a": 1}, [{"op": "replace", "path": "", "value": "x"}]) == "x"
    assert apply_json_patch([1], [{"op": "test", "path": "", "value": [1]}]) == [1]
    with pytest.raises(PatchNotApplicable):
        apply_json_patch({"a": 1}, [{"op": "remove", "path": ""}])


def test_json_patch_copy_is_deep():
    result = apply_json_patch({"a": {"b": [1]}}, [{"op": "copy", "from": "/a", "path": "/c"}])
    assert result == {"a": {"b": [1]}, "c": {"b": [1]}}
    result["c"]["b"].append(2)
    assert result["a"] == {"b": [1]}


def test_json_patch_move_to_the_same_place_changes_nothing():
    doc = {"a": {"b": 1}}
    assert apply_json_patch(doc, [{"op": "move", "from": "/a", "path": "/a"}]) == doc


def test_json_patch_test_compares_as_json():
    doc = {"n": 1, "f": 1.0, "t": True, "o": {"x": 1, "y": [1, {"z": None}]}}
    ok = [
        {"op": "test", "path": "/n", "value": 1.0},
        {"op": "test", "path": "/f", "value": 1},
        {"op": "test", "path": "/o", "value": {"y": [1, {"z": None}], "x": 1}},
    ]
    assert apply_json_patch(doc, ok) == doc
    for path, value in [("/t", 1), ("/n", True), ("/o/y", [{"z": None}, 1]), ("/n", "1")]:
        with pytest.raises(PatchNotApplicable):
            apply_json_patch(doc, [{"op": "test", "path": path, "value": value}])


@pytest.mark.parametrize(
    ("doc", "op"),
    [
        pytest.param({"a": [1, 2]}, {"op": "replace", "path": "/a/2", "value": 0}, id="index"),
        pytest.param({"a": [1, 2]}, {"op": "add", "path": "/a/3", "value": 0}, id="add past end"),
        pytest.param({"a": [1, 2]}, {"op": "remove", "path": "/a/-"}, id="dash outside add"),
        pytest.param({"a": [1, 2]}, {"op": "remove", "path": "/a/01"}, id="leading zero"),
        pytest.param({"a": [1, 2]}, {"op": "remove", "path": "/a/x"}, id="not an index"),
        pytest.param({"a": 1}, {"op": "remove", "path": "/b"}, id="missing member"),
        pytest.param({"a": 1}, {"op": "replace", "path": "/b", "value": 2}, id="replace missing"),
        pytest.param({"a": 1}, {"op": "add", "path": "/a/b", "value": 2}, id="into a scalar"),
        pytest.param({"a": 1}, {"op": "copy", "from": "/b", "path": "/c"}, id="copy missing"),
        pytest.param({"a": {"b": 1}}, {"op": "move", "from": "/a", "path": "/a/b/c"}, id="cycle"),
    ],
)
def test_json_patch_that_does_not_apply_is_invalid(doc, op):
    before = copy.deepcopy(doc)
    with pytest.raises(PatchNotApplicable) as raised:
        apply_json_patch(doc, [op])
    assert raised.value.code == 422
    assert raised.value.causes
    assert doc == before


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param({"op": "add", "path": "/a", "value": 1}, id="not a list"),
        pytest.param(None, id="null"),
        pytest.param(["add"], id="op not an object"),
        pytest.param([{"path": "/a", "value": 1}], id="no op"),
        pytest.param([{"op": "frobnicate", "path": "/a"}], id="unknown op"),
        pytest.param([{"op": "add", "value": 1}], id="no path"),
        pytest.param([{"op": "add", "path": "/a"}], id="add without value"),
        pytest.param([{"op": "test", "path": "/a"}], id="test without value"),
        pytest.param([{"op": "move", "path": "/a"}], id="move without from"),
        pytest.param([{"op": "add", "path": "a", "value": 1}], id="pointer without slash"),
        pytest.param([{"op": "add", "path": "/a~2", "value": 1}], id="bad escape"),
        pytest.param([{"op": "remove", "path": 3}], id="pointer not a string"),
    ],
)
def test_malformed_json_patch_is_a_bad_request(patch):
    with pytest.raises(MalformedPatch) as raised:
        apply_json_patch({"a": 1}, patch)
    assert isinstance(raised.value, BadRequest)
    assert raised.value.code == 400


def test_json_patch_is_all_or_nothing():
    doc = {"a": 1}
    patch = [
        {"op": "add", "path": "/b", "value": 2},
        {"op": "test", "path": "/a", "value": 2},
    ]
    with pytest.raises(PatchNotApplicable, match="operation 1"):
        apply_json_patch(doc, patch)
    assert doc == {"a": 1}


def test_json_patch_result_shares_nothing_with_its_inputs():
    value = {"deep": [1]}
    doc = {"keep": {"x": [1]}}
    result = apply_json_patch(doc, [{"op": "add", "path": "/v", "value": value}])
    result["v"]["deep"].append(2)
    result["keep"]["x"].append(2)
    assert value == {"deep": [1]}
    assert doc == {"keep": {"x": [1]}}


# ============================================================================================
# JSON Merge Patch, RFC 7386


RFC7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC7386_EXAMPLES)
def test_rfc7386_appendix_examples(doc, patch, expected):
    before = copy.deepcopy(doc)
    assert apply_merge_patch(doc, patch) == expected
    assert doc == before


def test_rfc7386_section3_example():
    doc = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert apply_merge_patch(doc, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_merge_patch_replaces_lists_of_containers():
    # What `kubectl patch --type merge` does to a Deployment's containers (kubernetes.io).
    doc = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}}}
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "hello"}]}}}}
    result = apply_merge_patch(doc, patch)
    assert result["spec"]["template"]["spec"]["containers"] == [{"name": "b", "image": "hello"}]


# ============================================================================================
# Strategic merge patch: the rules table


@pytest.mark.parametrize(
    ("kind", "path", "rule"),
    [
        ("Pod", "spec.containers", ("merge", "name")),
        ("Pod", "spec.initContainers", ("merge", "name")),
        ("Pod", "spec.ephemeralContainers", ("merge", "name")),
        ("Pod", "spec.containers.env", ("merge", "name")),
        ("Pod", "spec.initContainers.env", ("merge", "name")),
        ("Pod", "spec.containers.ports", ("merge", "containerPort")),
        ("Pod", "spec.containers.volumeMounts", ("merge", "mountPath")),
        ("Pod", "spec.containers.envFrom", ("replace", None)),
        ("Pod", "spec.volumes", ("merge,retainKeys", "name")),
        ("Pod", "spec.imagePullSecrets", ("merge", "name")),
        ("Pod", "spec.tolerations", ("replace", None)),
        ("Pod", "spec.hostAliases", ("merge", "ip")),
        ("Pod", "metadata.ownerReferences", ("merge", "uid")),
        ("Pod", "metadata.finalizers", ("merge", None)),
        ("Pod", "status.conditions", ("merge", "type")),
        ("Node", "status.conditions", ("merge", "type")),
        ("Node", "status.addresses", ("merge", "type")),
        ("Service", "spec.ports", ("merge", "port")),
        ("Endpoints", "subsets", ("replace", None)),
        ("Deployment", "status.conditions", ("merge", "type")),
        ("Deployment", "spec.strategy", ("retainKeys", None)),
        ("Deployment", "spec.template.spec.containers", ("merge", "name")),
        ("Deployment", "spec.template.spec.containers.env", ("merge", "name")),
        ("Deployment", "spec.template.spec.volumes", ("merge,retainKeys", "name")),
        ("Deployment", "spec.template.metadata.finalizers", ("merge", None)),
        ("ReplicaSet", "spec.template.spec.containers", ("merge", "name")),
        ("DaemonSet", "spec.template.spec.containers", ("merge", "name")),
        ("StatefulSet", "spec.template.spec.containers", ("merge", "name")),
        ("Job", "spec.template.spec.initContainers", ("merge", "name")),
        ("CronJob", "spec.jobTemplate.spec.template.spec.containers", ("merge", "name")),
        (
            "CronJob",
            "spec.jobTemplate.spec.template.spec.containers.ports",
            ("merge", "containerPort"),
        ),
        ("ConfigMap", "metadata.finalizers", ("merge", None)),
        ("SomethingNew", "metadata.ownerReferences", ("merge", "uid")),
    ],
)
def test_strategy_for_finds_each_rule_at_its_nested_path(kind, path, rule):
    assert strategy_for(kind, path) == FieldRule(*rule)
    assert strategy_for(kind, tuple(path.split("."))) == FieldRule(*rule)


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", "spec.template.spec.containers"),  # a Pod has no template
        ("Deployment", "spec.containers"),  # a Deployment's containers are in its template
        ("CronJob", "spec.template.spec.containers"),  # a CronJob's are under jobTemplate
        ("Service", "spec.containers"),
        ("ConfigMap", "spec.containers"),
        ("Pod", "spec.containers.args"),
        ("Pod", "spec"),
        (None, "spec.containers"),
    ],
)
def test_strategy_for_has_no_rule_elsewhere(kind, path):
    rule = strategy_for(kind, path)
    assert rule == FieldRule("", None)
    assert not rule.merges


def test_rules_table_lists_every_rule_by_kind_and_path():
    deployment = STRATEGIC_MERGE_RULES["Deployment"]
    assert deployment[("spec", "template", "spec", "containers")] == FieldRule("merge", "name")
    assert ("spec", "containers") not in deployment
    for kind, table in STRATEGIC_MERGE_RULES.items():
        for path, rule in table.items():
            assert strategy_for(None if kind == "*" else kind, path) == rule


# ============================================================================================
# Strategic merge patch: kubectl apply


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1", "namespace": "default", "resourceVersion": "7"},
        "spec": spec,
    }


def test_kubectl_apply_patch_keeps_the_image_and_stores_no_directive():
    # The exact patch shape kubectl 1.20 `apply` sends for an existing pod (k8s-api.md).
    live = pod(containers=[{"name": "c", "image": "busybox", "imagePullPolicy": "Always"}])
    last_applied = '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1"}}'
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}
        },
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"command": ["sleep", "3600"], "name": "c"}],
        },
    }
    before = copy.deepcopy(live)
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"] == [
        {
            "name": "c",
            "image": "busybox",
            "imagePullPolicy": "Always",
            "command": ["sleep", "3600"],
        }
    ]
    assert result["metadata"] == {
        "name": "p1",
        "namespace": "default",
        "resourceVersion": "7",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
    }
    assert dollar_keys(result) == []
    assert live == before


def test_kubectl_apply_adding_a_container_follows_set_element_order():
    live = pod(containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "new"}, {"name": "b"}],
            "containers": [{"name": "new", "image": "z"}],
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert names(result["spec"]["containers"]) == ["a", "new", "b"]
    assert result["spec"]["containers"][1] == {"name": "new", "image": "z"}


def test_env_merges_by_name():
    live = pod(
        containers=[
            {
                "name": "c",
                "image": "x",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ]
    )
    patch = {
        "spec": {
            "containers": [
                {"name": "c", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}
            ]
        }
    }
    (container,) = apply_strategic_merge_patch(live, patch)["spec"]["containers"]
    assert container["image"] == "x"
    assert sorted(container["env"], key=lambda e: e["name"]) == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]


def test_env_value_from_replaced_by_value_with_null():
    live = pod(
        containers=[
            {
                "name": "c",
                "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
            }
        ]
    )
    patch = {
        "spec": {
            "containers": [{"name": "c", "env": [{"name": "A", "valueFrom": None, "value": "v"}]}]
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"][0]["env"] == [{"name": "A", "value": "v"}]


def test_delete_a_container_with_patch_delete():
    # strategic-merge-patch.md, "delete directive", list of maps.
    live = pod(containers=[{"name": "nginx", "image": "nginx-1.0"}, {"name": "log-tailer"}])
    patch = {"spec": {"containers": [{"name": "log-tailer", "$patch": "delete"}]}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"] == [{"name": "nginx", "image": "nginx-1.0"}]


def test_patch_delete_removes_every_entry_with_that_key():
    # apimachinery: "delete all duplicate entries in a merging list".
    live = pod(
        containers=[{"name": "1"}, {"name": "1"}, {"name": "2", "image": "a"}, {"name": "3"}]
    )
    patch = {
        "spec": {
            "containers": [{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"] == [{"name": "2", "image": "a"}]


def test_deleting_a_missing_element_changes_nothing():
    live = pod(containers=[{"name": "a"}])
    patch = {"spec": {"containers": [{"name": "zz", "$patch": "delete"}]}}
    assert apply_strategic_merge_patch(live, patch) == live


def test_replace_a_list_with_patch_replace():
    # strategic-merge-patch.md, "replace directive", list of maps.
    live = pod(containers=[{"name": "nginx", "image": "nginx-0.9"}, {"name": "sidecar"}])
    patch = {
        "spec": {"containers": [{"name": "nginx", "image": "nginx-1.0"}, {"$patch": "replace"}]}
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"] == [{"name": "nginx", "image": "nginx-1.0"}]


def test_patch_replace_alone_empties_the_list():
    # apimachinery: "delete all items from merging list".
    live = pod(containers=[{"name": "a"}, {"name": "b"}])
    result = apply_strategic_merge_patch(live, {"spec": {"containers": [{"$patch": "replace"}]}})
    assert result["spec"]["containers"] == []


def test_replace_a_map_with_patch_replace():
    live = pod(nodeSelector={"disk": "ssd", "zone": "a"}, containers=[{"name": "c"}])
    patch = {"spec": {"nodeSelector": {"$patch": "replace", "zone": "b"}}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["nodeSelector"] == {"zone": "b"}
    assert result["spec"]["containers"] == [{"name": "c"}]


def test_patch_replace_at_the_root_replaces_the_object():
    # apimachinery: "add key and delete all keys from map".
    assert apply_strategic_merge_patch(
        {"name": 1, "value": 1}, {"other": "a", "$patch": "replace"}, {}
    ) == {"other": "a"}


def test_delete_a_map_with_patch_delete_or_null():
    # strategic-merge-patch.md: `rollingUpdate: {$patch: delete}` equals `rollingUpdate: null`.
    live = {
        "kind": "Deployment",
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
    }
    for patch in (
        {"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}},
        {"spec": {"strategy": {"rollingUpdate": None}}},
    ):
        result = apply_strategic_merge_patch(live, patch)
        assert result["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_patch_merge_on_a_map_is_the_default():
    live = {"kind": "ConfigMap", "data": {"a": "1"}}
    result = apply_strategic_merge_patch(live, {"data": {"$patch": "merge", "b": "2"}})
    assert result == {"kind": "ConfigMap", "data": {"a": "1", "b": "2"}}


def test_null_deletes_a_key_and_a_null_for_a_missing_key_is_dropped():
    live = pod(containers=[{"name": "c", "image": "x", "workingDir": "/w"}])
    patch = {
        "metadata": {"labels": None},
        "spec": {"containers": [{"name": "c", "workingDir": None}]},
    }
    result = apply_strategic_merge_patch(live, patch)
    assert "labels" not in result["metadata"]
    assert result["spec"]["containers"] == [{"name": "c", "image": "x"}]


def test_retain_keys_clears_the_other_members_of_a_union():
    # The retainKeys exercise of the kubectl patch task on kubernetes.io.
    live = {
        "kind": "Deployment",
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%"}},
        },
    }
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"] == {"replicas": 1, "strategy": {"type": "Recreate"}}


def test_retain_keys_in_a_volume_of_a_merging_list():
    live = pod(
        containers=[{"name": "c"}],
        volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}],
    )
    patch = {
        "spec": {
            "volumes": [
                {"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "v"}
            ]
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["volumes"] == [
        {"name": "v", "configMap": {"name": "cm"}},
        {"name": "w", "emptyDir": {}},
    ]


def test_retain_keys_must_name_every_field_the_patch_sets():
    live = {"kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate"}}}
    patch = {
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}
    }
    with pytest.raises(MalformedPatch, match="retainKeys"):
        apply_strategic_merge_patch(live, patch)


def test_delete_from_primitive_list_finalizers():
    # strategic-merge-patch.md, "deleteFromPrimitiveList directive".
    live = {"kind": "Pod", "metadata": {"name": "p", "finalizers": ["a", "b", "c"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "c"]}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["metadata"] == {"name": "p", "finalizers": ["a"]}


def test_delete_from_primitive_list_of_missing_items_or_list_changes_nothing():
    # apimachinery: deleting a nonexistent item neither adds it nor creates the list.
    live = {"kind": "Pod", "metadata": {"name": "p", "finalizers": ["a"]}}
    patch = {
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["zz"],
            "$deleteFromPrimitiveList/nothing": ["zz"],
        }
    }
    assert apply_strategic_merge_patch(live, patch) == live


def test_finalizers_merge_as_a_set():
    live = {"kind": "Pod", "metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"finalizers": ["b", "c"]}}
    result = apply_strategic_merge_patch(live, patch)
    assert sorted(result["metadata"]["finalizers"]) == ["a", "b", "c"]


def test_set_element_order_of_a_primitive_list():
    # strategic-merge-patch.md, "setElementOrder directive", list of primitives.
    live = {"kind": "Pod", "metadata": {"finalizers": ["a", "b", "c"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"]}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["metadata"] == {"finalizers": ["b", "c", "a"]}


def test_set_element_order_of_a_list_of_maps():
    # strategic-merge-patch.md, "setElementOrder directive", list of maps.
    live = pod(containers=[{"name": "a", "image": "1"}, {"name": "b"}, {"name": "c"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "c"}, {"name": "a"}]}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"] == [
        {"name": "b"},
        {"name": "c"},
        {"name": "a", "image": "1"},
    ]


def test_set_element_order_with_set_delete_and_add_of_primitives():
    # apimachinery: "add and delete items in lists of scalars" / "delete items in lists of
    # scalars", three-way patches against a live list with a server-added item.
    live = {"kind": "Pod", "metadata": {"finalizers": ["1", "2", "3", "4"]}}
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": ["1", "2"],
            "$deleteFromPrimitiveList/finalizers": ["3"],
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["metadata"]["finalizers"] == ["1", "2", "4"]


def test_set_element_order_may_name_missing_elements():
    # apimachinery: "$setElementOrder contains item that is not present in the list".
    live = {"kind": "Pod", "metadata": {"ownerReferences": [{"uid": "1"}, {"uid": "3"}]}}
    patch = {
        "metadata": {
            "$setElementOrder/ownerReferences": [{"uid": "3"}, {"uid": "2"}, {"uid": "1"}],
            "ownerReferences": [{"uid": "3", "name": "c"}, {"uid": "1", "name": "a"}],
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["metadata"]["ownerReferences"] == [
        {"uid": "3", "name": "c"},
        {"uid": "1", "name": "a"},
    ]


def test_set_element_order_must_agree_with_the_patch_list():
    # apimachinery: "should check if order in $setElementOrder and patch list match".
    live = pod(containers=[{"name": "1"}, {"name": "3"}, {"name": "2"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3", "image": "x"}, {"name": "1", "image": "y"}],
        }
    }
    with pytest.raises(MalformedPatch, match="setElementOrder"):
        apply_strategic_merge_patch(live, patch)


def test_server_only_items_keep_their_place_with_set_element_order():
    # apimachinery: "add field to map in merging list with conflict" (three-way result).
    live = pod(containers=[{"name": "1", "other": "a"}, {"name": "3", "value": "2"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}],
            "containers": [{"name": "1", "value": "1"}, {"name": "2", "value": "2"}],
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["containers"] == [
        {"name": "1", "other": "a", "value": "1"},
        {"name": "2", "value": "2"},
        {"name": "3", "value": "2"},
    ]


def test_order_without_set_element_order_follows_the_patch():
    # apimachinery: "preserve the order from the patch in a merging list" (1 and 2).
    live = pod(containers=[{"name": "1"}, {"name": "2", "value": "b"}, {"name": "3"}])
    whole = {
        "spec": {
            "containers": [
                {"name": "3", "value": "c"},
                {"name": "1", "value": "a"},
                {"name": "2", "other": "x"},
            ]
        }
    }
    result = apply_strategic_merge_patch(live, whole)
    assert result["spec"]["containers"] == [
        {"name": "3", "value": "c"},
        {"name": "1", "value": "a"},
        {"name": "2", "value": "b", "other": "x"},
    ]
    part = {"spec": {"containers": [{"name": "3", "value": "c"}, {"name": "1", "value": "a"}]}}
    result = apply_strategic_merge_patch(live, part)
    assert names(result["spec"]["containers"]) == ["2", "3", "1"]


def test_order_of_a_primitive_set_follows_the_patch():
    # apimachinery: "preserve the order from the patch in a merging int list".
    live = {"kind": "Node", "spec": {"podCIDRs": ["1", "2", "3"]}}
    result = apply_strategic_merge_patch(live, {"spec": {"podCIDRs": ["3", "1"]}})
    assert result["spec"]["podCIDRs"] == ["2", "3", "1"]


def test_a_new_element_goes_before_the_stored_ones():
    # The kubectl patch task on kubernetes.io: patching in container patch-demo-ctr-2 gives
    # `containers: [patch-demo-ctr-2 (redis), patch-demo-ctr (nginx)]`.
    live = {
        "kind": "Deployment",
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "patch-demo-ctr", "image": "nginx"}]}},
        },
    }
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"]["template"]["spec"]["containers"] == [
        {"name": "patch-demo-ctr-2", "image": "redis"},
        {"name": "patch-demo-ctr", "image": "nginx"},
    ]
    assert result["spec"]["replicas"] == 2


def test_tolerations_have_no_merge_key_and_are_replaced():
    # The kubectl patch task on kubernetes.io: tolerations were replaced, not merged.
    live = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "c"}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "t"}],
                }
            }
        },
    }
    new = [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]
    result = apply_strategic_merge_patch(
        live, {"spec": {"template": {"spec": {"tolerations": new}}}}
    )
    assert result["spec"]["template"]["spec"]["tolerations"] == new


@pytest.mark.parametrize(
    ("live", "patch", "where", "expected"),
    [
        pytest.param(
            pod(containers=[{"name": "c", "args": ["a", "b"]}]),
            {"spec": {"containers": [{"name": "c", "args": ["z"]}]}},
            lambda r: r["spec"]["containers"][0]["args"],
            ["z"],
            id="container args",
        ),
        pytest.param(
            pod(containers=[{"name": "c", "envFrom": [{"configMapRef": {"name": "a"}}]}]),
            {"spec": {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]}},
            lambda r: r["spec"]["containers"][0]["envFrom"],
            [{"secretRef": {"name": "s"}}],
            id="envFrom",
        ),
        pytest.param(
            {"kind": "Endpoints", "subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]},
            {"subsets": [{"addresses": [{"ip": "2.2.2.2"}], "ports": [{"port": 80}]}]},
            lambda r: r["subsets"],
            [{"addresses": [{"ip": "2.2.2.2"}], "ports": [{"port": 80}]}],
            id="Endpoints subsets",
        ),
        pytest.param(
            {"kind": "ConfigMap", "spec": {"containers": [{"name": "a"}]}},
            {"spec": {"containers": [{"name": "b"}]}},
            lambda r: r["spec"]["containers"],
            [{"name": "b"}],
            id="a kind without that rule",
        ),
    ],
)
def test_lists_without_a_merge_key_are_replaced(live, patch, where, expected):
    assert where(apply_strategic_merge_patch(live, patch)) == expected


def test_deployment_template_containers_merge_at_the_nested_path():
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "env": [{"name": "A", "value": "1"}],
                            "ports": [{"containerPort": 80, "name": "http"}],
                        },
                        {"name": "sidecar", "image": "side:1"},
                    ]
                },
            },
        },
    }
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:2",
                            "env": [{"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        }
                    ]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    app, sidecar = result["spec"]["template"]["spec"]["containers"]
    assert sidecar == {"name": "sidecar", "image": "side:1"}
    assert app["image"] == "app:2"
    assert sorted(names(app["env"])) == ["A", "B"]
    assert app["ports"] == [{"containerPort": 80, "name": "http", "protocol": "TCP"}]
    assert result["spec"]["template"]["metadata"] == {"labels": {"app": "d"}}
    # The same patch with the rules of another kind replaces the list.
    as_pod = apply_strategic_merge_patch(live, patch, "Pod")
    assert names(as_pod["spec"]["template"]["spec"]["containers"]) == ["app"]


def test_cronjob_containers_merge_under_the_job_template():
    live = {
        "kind": "CronJob",
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}
            },
        },
    }
    patch = {
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "c", "args": ["go"]}]}}}
            }
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    containers = result["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "c", "image": "x", "args": ["go"]}]


def test_service_ports_merge_by_port():
    live = {
        "kind": "Service",
        "spec": {
            "selector": {"app": "x"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
            ],
        },
    }
    patch = {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}}
    result = apply_strategic_merge_patch(live, patch)
    by_port = {p["port"]: p for p in result["spec"]["ports"]}
    assert by_port == {
        80: {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
        443: {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
        53: {"port": 53, "protocol": "UDP"},
    }


def test_container_ports_and_volume_mounts_merge_by_their_keys():
    live = pod(
        containers=[
            {
                "name": "c",
                "ports": [{"containerPort": 80}, {"containerPort": 81}],
                "volumeMounts": [{"mountPath": "/a", "name": "v"}],
            }
        ]
    )
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "ports": [{"containerPort": 81, "name": "metrics"}],
                    "volumeMounts": [{"mountPath": "/b", "name": "w"}],
                }
            ]
        }
    }
    (container,) = apply_strategic_merge_patch(live, patch)["spec"]["containers"]
    assert {p["containerPort"]: p.get("name") for p in container["ports"]} == {
        80: None,
        81: "metrics",
    }
    assert sorted(m["mountPath"] for m in container["volumeMounts"]) == ["/a", "/b"]


def test_status_conditions_merge_by_type():
    live = {
        "kind": "Pod",
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False"},
            ],
        },
    }
    patch = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    result = apply_strategic_merge_patch(live, patch)
    assert result["status"] == {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    }


def test_node_addresses_and_conditions_merge_by_type():
    live = {
        "kind": "Node",
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "False"}],
        },
    }
    patch = {
        "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    result = apply_strategic_merge_patch(live, patch)
    assert {a["type"]: a["address"] for a in result["status"]["addresses"]} == {
        "InternalIP": "10.0.0.1",
        "Hostname": "n1",
    }
    assert result["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_deployment_status_conditions_merge_by_type():
    live = {
        "kind": "Deployment",
        "status": {"conditions": [{"type": "Available", "status": "False"}]},
    }
    patch = {"status": {"conditions": [{"type": "Progressing", "status": "True"}]}}
    result = apply_strategic_merge_patch(live, patch)
    assert sorted(c["type"] for c in result["status"]["conditions"]) == ["Available", "Progressing"]


def test_owner_references_merge_by_uid():
    live = {"kind": "ReplicaSet", "metadata": {"ownerReferences": [{"uid": "u1", "name": "a"}]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}, {"uid": "u2"}]}}
    result = apply_strategic_merge_patch(live, patch)
    assert {r["uid"]: r for r in result["metadata"]["ownerReferences"]} == {
        "u1": {"uid": "u1", "name": "a", "controller": True},
        "u2": {"uid": "u2"},
    }


def test_an_empty_patch_list_leaves_a_merging_list_alone():
    live = pod(containers=[{"name": "a"}])
    assert apply_strategic_merge_patch(live, {"spec": {"containers": []}}) == live


def test_a_new_list_is_stored_without_directives_or_nulls():
    live = {"kind": "Pod", "metadata": {"name": "p"}}
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "b", "image": None},
                {
                    "name": "a",
                    "$setElementOrder/env": [{"name": "X"}],
                    "env": [{"name": "X", "value": "1"}, {"name": "gone", "$patch": "delete"}],
                },
                {"name": "c", "$patch": "delete"},
            ],
            "nodeSelector": {"$patch": "replace", "k": "v", "n": None},
        }
    }
    with pytest.raises(MalformedPatch):  # b comes before a in the patch but after it in order
        apply_strategic_merge_patch(live, patch)
    patch["spec"]["containers"][:2] = patch["spec"]["containers"][1::-1]
    result = apply_strategic_merge_patch(live, patch)
    assert result["spec"] == {
        "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}],
        "nodeSelector": {"k": "v"},
    }
    assert dollar_keys(result) == []


def test_unknown_dollar_keys_are_ignored_not_stored():
    live = {"kind": "ConfigMap", "data": {"a": "1"}}
    result = apply_strategic_merge_patch(live, {"$future/x": [1], "data": {"$other": 1, "b": "2"}})
    assert result == {"kind": "ConfigMap", "data": {"a": "1", "b": "2"}}


def test_kind_path_rules_given_as_a_mapping_or_callable():
    doc = {"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}
    patch = {"items": [{"id": 2, "v": "B"}]}
    by_mapping = apply_strategic_merge_patch(doc, patch, {("items",): ("merge", "id")})
    by_dotted = apply_strategic_merge_patch(doc, patch, {"items": FieldRule("merge", "id")})
    by_callable = apply_strategic_merge_patch(
        doc, patch, lambda path: ("merge", "id") if path == ("items",) else ("", None)
    )
    merged = {"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "B"}]}
    assert by_mapping == by_dotted == by_callable == merged
    assert apply_strategic_merge_patch(doc, patch, {}) == patch


def test_kind_comes_from_the_document_or_the_argument():
    live = {"kind": "Service", "spec": {"ports": [{"port": 80}]}}
    patch = {"spec": {"ports": [{"port": 81}]}}
    assert len(apply_strategic_merge_patch(live, patch)["spec"]["ports"]) == 2
    assert len(apply_strategic_merge_patch(live, patch, "ConfigMap")["spec"]["ports"]) == 1
    no_kind = {"spec": {"ports": [{"port": 80}]}}
    assert len(apply_strategic_merge_patch(no_kind, patch)["spec"]["ports"]) == 1
    assert len(apply_strategic_merge_patch(no_kind, patch, "Service")["spec"]["ports"]) == 2


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param({"spec": {"containers": [{"image": "x"}]}}, id="element without merge key"),
        pytest.param({"spec": {"containers": ["c"]}}, id="element not an object"),
        pytest.param({"spec": {"containers": [{"$patch": "delete"}]}}, id="delete without key"),
        pytest.param({"spec": {"$patch": "explode"}}, id="unknown map directive"),
        pytest.param(
            {"spec": {"containers": [{"$patch": "explode"}]}}, id="unknown list directive"
        ),
        pytest.param({"spec": {"$retainKeys": "containers"}}, id="retainKeys not a list"),
        pytest.param({"spec": {"$setElementOrder/containers": {"name": "a"}}}, id="order not list"),
        pytest.param({"spec": {"$setElementOrder/containers": ["a"]}}, id="order entry no key"),
        pytest.param({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, id="delete list"),
        pytest.param({"metadata": {"finalizers": [{"name": "a"}]}}, id="object in a set"),
        pytest.param({"metadata": {"finalizers": [["a"]]}}, id="list of lists"),
        pytest.param([{"op": "add"}], id="a list body"),
        pytest.param("spec", id="a string body"),
    ],
)
def test_malformed_strategic_merge_patch_is_a_bad_request(patch):
    live = pod(containers=[{"name": "a"}])
    live["metadata"]["finalizers"] = ["a"]
    with pytest.raises(MalformedPatch) as raised:
        apply_strategic_merge_patch(live, patch)
    assert raised.value.code == 400


def test_strategic_merge_patch_on_a_non_object_does_not_apply():
    with pytest.raises(PatchNotApplicable):
        apply_strategic_merge_patch([1], {"a": 1})
    assert apply_strategic_merge_patch(None, {"a": 1}) == {"a": 1}


# ============================================================================================
# Properties

KEYS = st.text(alphabet="ab~/", max_size=3)
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(alphabet="xyz", max_size=3)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
# Documents a merge patch can produce: no null object members (null means "delete").
NO_NULL_MEMBERS = st.recursive(
    st.booleans() | st.integers(-5, 5) | st.text(alphabet="xyz", max_size=3),
    lambda inner: (
        st.lists(inner | st.none(), max_size=4) | st.dictionaries(KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)


def same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def merge_diff(source: Any, target: Any) -> Any:
    """A JSON merge patch that turns ``source`` into ``target``."""
    if not (isinstance(source, dict) and isinstance(target, dict)):
        return copy.deepcopy(target)
    patch = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            patch[key] = copy.deepcopy(value)
        elif not same_json(source[key], value):
            patch[key] = merge_diff(source[key], value)
    return patch


@given(source=JSON_VALUES, target=NO_NULL_MEMBERS)
def test_merge_patch_of_a_diff_reproduces_the_target(source, target):
    assert same_json(apply_merge_patch(source, merge_diff(source, target)), target)


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@given(doc=st.dictionaries(KEYS, JSON_VALUES, max_size=4), key=KEYS, value=JSON_VALUES)
def test_json_patch_test_after_add_succeeds(doc, key, value):
    pointer = "/" + escape(key)
    ops = [
        {"op": "add", "path": pointer, "value": value},
        {"op": "test", "path": pointer, "value": value},
    ]
    result = apply_json_patch(doc, ops)
    assert same_json(result[key], value)
    assert {k: v for k, v in result.items() if k != key} == {
        k: v for k, v in doc.items() if k != key
    }


@given(items=st.lists(JSON_VALUES, max_size=5), data=st.data(), value=JSON_VALUES)
def test_json_patch_add_into_an_array_then_remove_restores_it(items, data, value):
    index = data.draw(st.integers(0, len(items)))
    added = apply_json_patch({"l": items}, [{"op": "add", "path": f"/l/{index}", "value": value}])
    assert same_json(added["l"][index], value)
    assert len(added["l"]) == len(items) + 1
    removed = apply_json_patch(added, [{"op": "remove", "path": f"/l/{index}"}])
    assert same_json(removed, {"l": items})


SMP_KEYS = st.sampled_from(["spec", "containers", "name", "env", "value", "finalizers", "a", "b"])
SMP_DIRECTIVES = st.sampled_from(
    [
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$unknown",
    ]
)
SMP_DOCS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SMP_KEYS, inner, max_size=4),
    max_leaves=15,
)
SMP_PATCH_VALUES = st.recursive(
    SCALARS | st.sampled_from(["replace", "merge", "delete"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(SMP_KEYS | SMP_DIRECTIVES, inner, max_size=4)
    ),
    max_leaves=15,
)
SMP_RULES = {
    "containers": ("merge", "name"),
    "spec.containers": ("merge", "name"),
    "spec.containers.env": ("merge", "name"),
    "finalizers": ("merge", None),
    "spec.finalizers": ("merge", None),
}


@given(
    doc=JSON_VALUES,
    patch=JSON_VALUES,
    smp_doc=st.dictionaries(SMP_KEYS, SMP_DOCS, max_size=4),
    smp_patch=st.dictionaries(SMP_KEYS | SMP_DIRECTIVES, SMP_PATCH_VALUES, max_size=4),
)
def test_inputs_are_never_changed_nor_shared(doc, patch, smp_doc, smp_patch):
    snapshots = copy.deepcopy((doc, patch, smp_doc, smp_patch))
    inputs = set(containers_of((doc, patch, smp_doc, smp_patch)))
    results = [apply_merge_patch(doc, patch)]
    for call in (
        lambda: apply_json_patch(doc, patch),
        lambda: apply_json_patch(doc, [{"op": "add", "path": "", "value": patch}]),
        lambda: apply_strategic_merge_patch(smp_doc, smp_patch, SMP_RULES),
    ):
        try:
            results.append(call())
        except KcoreError:
            pass
    assert (doc, patch, smp_doc, smp_patch) == snapshots
    for result in results:
        assert inputs.isdisjoint(containers_of(result))


@given(
    doc=st.dictionaries(SMP_KEYS, SMP_DOCS, max_size=4),
    patch=st.dictionaries(SMP_KEYS | SMP_DIRECTIVES, SMP_PATCH_VALUES, max_size=4),
)
def test_strategic_merge_patch_never_stores_a_directive(doc, patch):
    try:
        result = apply_strategic_merge_patch(doc, patch, SMP_RULES)
    except KcoreError as error:
        assert error.code in (400, 422)
        return
    assert dollar_keys(result) == []


LIST_FREE = st.recursive(
    SCALARS,
    lambda inner: st.dictionaries(st.text(alphabet="abc", max_size=2), inner, max_size=4),
    max_leaves=15,
)


@given(
    doc=st.dictionaries(st.text(alphabet="abc", max_size=2), LIST_FREE, max_size=4),
    patch=st.dictionaries(st.text(alphabet="abc", max_size=2), LIST_FREE, max_size=4),
)
def test_strategic_merge_patch_without_lists_is_a_merge_patch(doc, patch):
    assert apply_strategic_merge_patch(doc, patch, {}) == apply_merge_patch(doc, patch)


ENV = st.dictionaries(st.sampled_from("ABCDEF"), st.text(alphabet="xyz", max_size=2), max_size=5)


@given(stored=ENV, patched=ENV)
def test_env_merge_by_name_keeps_stored_and_takes_patched_values(stored, patched):
    live = pod(
        containers=[{"name": "c", "env": [{"name": n, "value": v} for n, v in stored.items()]}]
    )
    patch = {
        "spec": {
            "containers": [
                {"name": "c", "env": [{"name": n, "value": v} for n, v in patched.items()]}
            ]
        }
    }
    env = apply_strategic_merge_patch(live, patch)["spec"]["containers"][0]["env"]
    assert len(env) == len({e["name"] for e in env})
    assert {e["name"]: e["value"] for e in env} == {**stored, **patched}
    # The patch's variables keep the patch's order.
    assert [e["name"] for e in env if e["name"] in patched] == list(patched)
