"""Decoding and encoding: real manifests survive a round trip, and bad input says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.api import (
    ConfigMap,
    Deployment,
    Job,
    Lease,
    ObjectList,
    ObjectMeta,
    Pod,
    Service,
    Status,
    clone,
    decode,
    decode_all_yaml,
    encode_json,
    encode_yaml,
    registry,
    to_dict,
)
from kcore.api.batch_v1 import JobSpec
from kcore.api.codec import load_yaml
from kcore.api.core_v1 import Container, PodSpec, PodTemplateSpec
from kcore.api.meta import now
from kcore.errors import BadRequest, Invalid

MANIFESTS = Path(__file__).parent / "manifests"


def _documents() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                out.append((path.name, i, doc))
    return out


DOCUMENTS = _documents()


def _lost_or_changed(given: Any, out: Any, path: str = "") -> list[str]:
    """What ``out`` lost or changed from ``given``; an added empty object is not a change.

    A ``null`` in the input means "unset" and may be left out of the output.
    """
    if isinstance(given, dict):
        if not isinstance(out, dict):
            return [f"{path}: {given!r} became {out!r}"]
        problems = []
        for key, value in given.items():
            if value is None:
                if out.get(key) is not None:
                    problems.append(f"{path}.{key}: null became {out[key]!r}")
            elif key not in out:
                problems.append(f"{path}.{key}: lost")
            else:
                problems += _lost_or_changed(value, out[key], f"{path}.{key}")
        problems += [
            f"{path}.{k}: added {v!r}" for k, v in out.items() if k not in given and v != {}
        ]
        return problems
    if isinstance(given, list):
        if not isinstance(out, list) or len(out) != len(given):
            return [f"{path}: {given!r} became {out!r}"]
        return [
            p
            for i, (a, b) in enumerate(zip(given, out, strict=True))
            for p in _lost_or_changed(a, b, f"{path}[{i}]")
        ]
    if given != out or type(given) is not type(out):
        return [f"{path}: {given!r} became {out!r}"]
    return []


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """The manifest as JSON would carry it (YAML may have parsed timestamps as dates)."""
    return json.loads(json.dumps(doc, default=lambda d: d.isoformat().replace("+00:00", "Z")))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("name", "index", "doc"), DOCUMENTS, ids=[f"{n}[{i}]" for n, i, _ in DOCUMENTS]
)
def test_documentation_manifests_round_trip_without_loss(name, index, doc):
    obj = decode(doc)
    assert type(obj) is registry.type_for(doc["apiVersion"], doc["kind"])
    assert _lost_or_changed(_plain(doc), to_dict(obj)) == []


@pytest.mark.parametrize(
    ("name", "index", "doc"), DOCUMENTS, ids=[f"{n}[{i}]" for n, i, _ in DOCUMENTS]
)
def test_json_and_yaml_encodings_decode_to_the_same_object(name, index, doc):
    obj = decode(doc)
    from_json = decode(encode_json(obj))
    from_yaml = decode(encode_yaml(obj), fmt="yaml")
    assert from_json == obj
    assert from_yaml == obj


def test_decode_all_yaml_reads_every_document_in_order():
    objs = decode_all_yaml((MANIFESTS / "services.yaml").read_text())
    assert [o.metadata.name for o in objs] == [
        "my-service",
        "nginx-service",
        "my-nodeport-service",
        "my-database",
    ]
    assert all(isinstance(o, Service) for o in objs)
    assert objs[1].spec.ports[0].target_port == "http-web-svc"
    assert objs[0].spec.ports[0].target_port == 9376


def test_decode_all_yaml_skips_empty_documents_and_expands_lists():
    text = """
---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
"""
    objs = decode_all_yaml(text)
    assert [(type(o), o.metadata.name) for o in objs] == [
        (ConfigMap, "a"),
        (Deployment, "b"),
        (ConfigMap, "c"),
    ]


def test_decode_all_yaml_names_the_document_with_the_error():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nspec: {replicas: many}\n"
    with pytest.raises(Invalid) as err:
        decode_all_yaml(text)
    assert str(err.value).startswith("document 2: ")
    assert [c.field for c in err.value.causes] == ["spec.replicas"]


def test_configmap_multiline_values_survive_yaml_and_json():
    cm = decode((MANIFESTS / "configmap-game-demo.yaml").read_text(), fmt="yaml")
    assert cm.data["game.properties"] == "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"
    assert cm.data["player_initial_lives"] == "3"
    text = encode_yaml(cm)
    assert "game.properties: |" in text
    assert decode(text, fmt="yaml").data == cm.data


def test_typed_lists_decode_with_typed_items():
    body = {
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": "104"},
        "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
    }
    pods = decode(body)
    assert isinstance(pods, ObjectList)
    assert [type(p) for p in pods.items] == [Pod, Pod]
    assert [p.kind for p in pods.items] == ["Pod", "Pod"]
    assert pods.metadata.resource_version == "104"


def test_an_empty_list_still_carries_items():
    out = json.loads(encode_json(ObjectList[Pod](kind="PodList")))
    assert out == {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}


def test_clone_is_a_deep_copy():
    pod = decode((MANIFESTS / "pod-projected.yaml").read_text().split("---")[0], fmt="yaml")
    copy = clone(pod)
    copy.spec.containers[0].command.append("extra")
    copy.metadata.labels["new"] = "x"
    assert copy != pod
    assert pod.spec.containers[0].command == ["sleep", "3600"]
    assert pod.metadata.labels == {}


# --------------------------------------------------------------------------- type meta


@pytest.mark.parametrize("info", registry.RESOURCES, ids=lambda i: f"{i.api_version}/{i.kind}")
def test_every_kind_encodes_api_version_and_kind_even_when_empty(info):
    out = json.loads(encode_json(info.type()))
    assert out["apiVersion"] == info.api_version
    assert out["kind"] == info.kind
    assert out["metadata"] == {}


def test_status_always_encodes_its_type_meta():
    out = json.loads(encode_json(Status(status="Failure", code=404, reason="NotFound")))
    assert out == {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "reason": "NotFound",
        "code": 404,
    }


def test_a_body_may_leave_out_type_meta_when_the_type_is_known():
    dep = decode(b'{"metadata": {"name": "web"}, "spec": {"replicas": 2}}', into=Deployment)
    assert (dep.api_version, dep.kind, dep.spec.replicas) == ("apps/v1", "Deployment", 2)


def test_a_body_naming_another_kind_than_expected_is_rejected():
    with pytest.raises(BadRequest, match=r"kind in the data \(Service\)"):
        decode(b'{"apiVersion": "v1", "kind": "Service"}', into=Pod)
    with pytest.raises(BadRequest, match=r"API version in the data \(v1\)"):
        decode({"apiVersion": "v1", "kind": "Deployment"}, into=Deployment)


def test_optional_scalars_that_are_set_round_trip_even_when_false_or_zero():
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "generation": 0},
        "spec": {
            "containers": [{"name": "c", "image": "i", "stdin": False, "tty": False}],
            "hostNetwork": False,
            "priority": 0,
        },
        "status": {},
    }
    assert to_dict(decode(body)) == body


# --------------------------------------------------------------------------- scalars


def test_timestamps_encode_in_utc_at_second_precision_with_z():
    meta = decode(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "x",
                "creationTimestamp": "2026-01-02T05:04:05.987654+02:00",
                "deletionTimestamp": "2026-01-02T03:04:05Z",
            },
        }
    ).metadata
    assert meta.creation_timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert meta.creation_timestamp.tzinfo is UTC
    assert to_dict(meta)["creationTimestamp"] == "2026-01-02T03:04:05Z"
    assert to_dict(meta)["deletionTimestamp"] == "2026-01-02T03:04:05Z"


def test_timestamps_set_in_code_are_normalized_too():
    plus_two = timezone(timedelta(hours=2))
    meta = ObjectMeta(creation_timestamp=datetime(2026, 1, 2, 5, 4, 5, 123, tzinfo=plus_two))
    assert encode_json(meta) == b'{"creationTimestamp":"2026-01-02T03:04:05Z"}'
    stamp = now()
    assert stamp.microsecond == 0 and stamp.tzinfo is UTC


def test_micro_time_keeps_microseconds():
    lease = decode(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "spec": {"renewTime": "2026-01-02T05:04:05.123456+02:00"},
        }
    )
    assert isinstance(lease, Lease)
    assert to_dict(lease)["spec"]["renewTime"] == "2026-01-02T03:04:05.123456Z"


def test_a_timestamp_without_a_zone_names_the_field():
    with pytest.raises(Invalid) as err:
        decode(
            b'{"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":"2026-01-02T03:04:05"}}'
        )
    assert [c.field for c in err.value.causes] == ["metadata.creationTimestamp"]
    assert "RFC 3339" in str(err.value)


def test_an_unquoted_yaml_date_stays_a_string():
    cm = decode("apiVersion: v1\nkind: ConfigMap\ndata:\n  released: 2026-01-02\n", fmt="yaml")
    assert cm.data == {"released": "2026-01-02"}
    assert load_yaml("when: 2026-01-02T03:04:05Z") == {"when": "2026-01-02T03:04:05Z"}


def test_resource_version_stays_a_string():
    pod = decode(b'{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":"104"}}')
    assert pod.metadata.resource_version == "104"
    assert json.loads(encode_json(pod))["metadata"]["resourceVersion"] == "104"


def test_an_integer_resource_version_is_rejected_by_path():
    with pytest.raises(Invalid) as err:
        decode(b'{"apiVersion":"v1","kind":"Pod","metadata":{"resourceVersion":104}}')
    assert [c.field for c in err.value.causes] == ["metadata.resourceVersion"]


def test_quantities_are_kept_as_written():
    pod = decode(
        """
apiVersion: v1
kind: Pod
spec:
  containers:
  - name: c
    image: i
    resources:
      limits: {cpu: 1, memory: 128Mi, example.com/foo: 0.5}
      requests: {cpu: "250m"}
""",
        fmt="yaml",
    )
    res = pod.spec.containers[0].resources
    assert res.limits == {"cpu": 1, "memory": "128Mi", "example.com/foo": 0.5}
    assert res.requests == {"cpu": "250m"}
    assert to_dict(pod)["spec"]["containers"][0]["resources"]["limits"]["cpu"] == 1


def test_null_collections_read_as_empty_as_kubernetes_does():
    for body in (
        b'{"apiVersion":"v1","kind":"Pod","metadata":{"labels":null},"spec":{"containers":null}}',
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\nspec:\n  containers:\n",
    ):
        pod = decode(body, fmt="json" if isinstance(body, bytes) else "yaml")
        assert pod.metadata.labels == {}
        assert pod.spec.containers == []


# --------------------------------------------------------------------------- bad input


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(
    ("data", "fmt", "expected"),
    [
        (b'{"apiVersion": "v1", "kind": "Pod",', "json", "malformed JSON"),
        (b'{"apiVersion": "v1", "kind": "Pod",}', "json", "malformed JSON"),
        ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n spec: {}\n", "yaml", "malformed YAML"),
        ("apiVersion: v1\nkind: [Pod\n", "yaml", "malformed YAML"),
        (b'{"apiVersion": "v1"}', "json", "Object 'Kind' is missing"),
        ("kind: Pod\n", "yaml", "Object 'apiVersion' is missing"),
        (
            b'{"apiVersion": "v1", "kind": "Teapot"}',
            "json",
            'no kind "Teapot" is registered for version "v1"',
        ),
        (b'{"apiVersion": "v1", "kind": "Deployment"}', "json", "served as apps/v1"),
        (b"[1, 2]", "json", "expected an object, got an array"),
        ("- a\n- b\n", "yaml", "expected an object, got an array"),
    ],
)
def test_unreadable_input_is_a_bad_request_with_one_clear_line(data, fmt, expected):
    with pytest.raises(BadRequest) as err:
        decode(data, fmt=fmt)
    assert expected in _one_line(err.value)


def test_malformed_yaml_says_where():
    with pytest.raises(BadRequest) as err:
        decode("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n spec: {}\n", fmt="yaml")
    assert "line 5" in _one_line(err.value)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_wrong_type_names_the_field_in_one_line(fmt):
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": "three"},
    }
    data = json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc)
    with pytest.raises(Invalid) as err:
        decode(data, fmt=fmt)
    assert [(c.field, c.reason) for c in err.value.causes] == [
        ("spec.replicas", "FieldValueTypeInvalid")
    ]
    assert _one_line(err.value) == (
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: "three": expected integer, got string'
    )


def test_a_wrong_type_deep_in_a_template_names_the_full_path():
    doc = yaml.safe_load((MANIFESTS / "nginx-deployment.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "80"
    with pytest.raises(Invalid) as err:
        decode(encode_json(doc))
    assert [c.field for c in err.value.causes] == [
        "spec.template.spec.containers[0].ports[0].containerPort"
    ]


def test_a_wrong_type_in_a_map_names_the_key():
    with pytest.raises(Invalid) as err:
        decode(b'{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"ok":"yes","tier":3}}}')
    assert [c.field for c in err.value.causes] == ["metadata.labels[tier]"]


def test_a_wrong_type_for_a_whole_section_names_it():
    with pytest.raises(Invalid) as err:
        decode({"apiVersion": "v1", "kind": "Pod", "spec": ["not", "an", "object"]})
    assert [c.field for c in err.value.causes] == ["spec"]
    assert "expected object, got array" in str(err.value)


def test_strict_decoding_names_every_unknown_field():
    doc = yaml.safe_load((MANIFESTS / "nginx-deployment.yaml").read_text())
    doc["metadata"]["labelz"] = {"a": "b"}
    doc["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    with pytest.raises(Invalid) as err:
        decode(doc, strict=True)
    assert [c.field for c in err.value.causes] == [
        "metadata.labelz",
        "spec.template.spec.containers[0].imagee",
    ]
    assert 'unknown field "spec.template.spec.containers[0].imagee"' in _one_line(err.value)
    # The same document decodes leniently, without the unknown fields.
    dep = decode(doc)
    assert "imagee" not in json.dumps(to_dict(dep))
    assert dep.spec.template.spec.containers[0].image == "nginx:1.14.2"


@pytest.mark.parametrize(
    ("name", "index", "doc"), DOCUMENTS, ids=[f"{n}[{i}]" for n, i, _ in DOCUMENTS]
)
def test_strict_decoding_accepts_every_documentation_manifest(name, index, doc):
    decode(_plain(doc), strict=True)
    decode(json.dumps(_plain(doc)), strict=True)


def test_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown format"):
        decode("{}", fmt="toml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

_label_name = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
_label_key = st.one_of(
    _label_name,
    st.builds(
        lambda p, n: f"{p}/{n}",
        st.from_regex(r"[a-z0-9]{1,10}\.(io|com)", fullmatch=True),
        _label_name,
    ),
)
_timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True),
    labels=st.dictionaries(_label_key, st.one_of(st.just(""), _label_name), max_size=6),
    annotations=st.dictionaries(_label_key, st.text(max_size=40), max_size=4),
    resource_version=st.integers(min_value=0, max_value=2**63).map(str),
    created=st.one_of(st.none(), _timestamps),
    finalizers=st.lists(_label_key, max_size=3),
)
def test_object_meta_round_trips(name, labels, annotations, resource_version, created, finalizers):
    meta = ObjectMeta(
        name=name,
        labels=labels,
        annotations=annotations,
        resource_version=resource_version,
        creation_timestamp=created,
        finalizers=finalizers,
    )
    cm = ConfigMap(metadata=meta, data=dict(annotations))
    back = decode(encode_json(cm))
    assert back == cm
    assert back.metadata.labels == labels
    assert back.metadata.resource_version == resource_version
    assert isinstance(back.metadata.resource_version, str)
    if created is not None:
        assert back.metadata.creation_timestamp == created.replace(microsecond=0)
        assert to_dict(back)["metadata"]["creationTimestamp"].endswith("Z")
    assert decode(encode_yaml(cm), fmt="yaml") == cm


@settings(max_examples=50, deadline=None)
@given(
    parallelism=st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
    images=st.lists(
        st.from_regex(r"[a-z]{1,8}(:[a-z0-9.]{1,6})?", fullmatch=True), min_size=1, max_size=4
    ),
)
def test_built_objects_round_trip_through_json_and_dicts(parallelism, images):
    containers = [Container(name=f"c{i}", image=img) for i, img in enumerate(images)]
    job = Job(
        metadata=ObjectMeta(name="j"),
        spec=JobSpec(
            parallelism=parallelism, template=PodTemplateSpec(spec=PodSpec(containers=containers))
        ),
    )
    assert decode(encode_json(job)) == job
    assert decode(to_dict(job)) == job
    out = to_dict(job)["spec"]
    assert ("parallelism" in out) is (parallelism is not None)
    assert [c["image"] for c in out["template"]["spec"]["containers"]] == images
