"""Label and field selectors behave as the Kubernetes API server's do."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.errors import BadRequest
from kcore.selectors import (
    SUPPORTED_FIELDS,
    FieldRequirement,
    FieldSelector,
    LabelSelector,
    Operator,
    Requirement,
    escape_field_value,
    field_value,
    from_label_selector_object,
    label_selector_from_set,
    parse_field_selector,
    parse_label_selector,
    selector_requirements_for_fast_paths,
    supported_fields,
    unescape_field_value,
)


def sel(text: str) -> LabelSelector:
    return parse_label_selector(text)


# ---------------------------------------------------------------------------
# Label selectors: operators and matching
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app=web", {}, False),
        ("app==web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {"app": "web"}, False),
        ("env in (prod,staging)", {"env": "prod"}, True),
        ("env in (prod,staging)", {"env": "staging"}, True),
        ("env in (prod,staging)", {"env": "dev"}, False),
        ("env in (prod,staging)", {}, False),
        ("env notin (prod,staging)", {"env": "dev"}, True),
        ("env notin (prod,staging)", {"env": "prod"}, False),
        ("app", {"app": ""}, True),
        ("app", {"other": "x"}, False),
        ("!app", {"other": "x"}, True),
        ("!app", {"app": "web"}, False),
        ("replicas>3", {"replicas": "4"}, True),
        ("replicas>3", {"replicas": "3"}, False),
        ("replicas<3", {"replicas": "2"}, True),
        ("replicas<3", {"replicas": "x"}, False),
        ("replicas<3", {}, False),
    ],
)
def test_each_operator_matches_as_kubernetes(text, labels, expected):
    assert sel(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["app!=web", "env notin (prod)"])
def test_negative_operators_match_objects_without_the_label(text):
    assert sel(text).matches({}) is True
    assert sel(text).matches(None) is True
    assert sel(text).matches({"unrelated": "x"}) is True


def test_positive_operators_never_match_a_missing_label():
    for text in ("app=web", "app==web", "app in (web)", "app", "n>1", "n<1"):
        assert sel(text).matches(None) is False


def test_comma_is_and():
    s = sel("app=web,tier in (fe,be),!canary,env!=prod")
    assert s.matches({"app": "web", "tier": "fe", "env": "dev"})
    assert not s.matches({"app": "web", "tier": "fe", "canary": "1"})
    assert not s.matches({"app": "web", "tier": "db"})
    assert not s.matches({"app": "web", "tier": "fe", "env": "prod"})
    assert s.matches({"app": "web", "tier": "be"})


def test_empty_selector_matches_everything():
    for s in (sel(""), sel("   "), parse_label_selector(None), LabelSelector()):
        assert s.empty
        assert s.matches({}) and s.matches(None) and s.matches({"a": "b"})
        assert str(s) == ""


def test_whitespace_is_tolerated_around_every_token():
    s = sel("  app =  web ,\ttier  in  ( fe , be ) ,  ! canary \n")
    assert s == sel("app=web,tier in (fe,be),!canary")
    assert str(s) == "app=web,!canary,tier in (be,fe)"


def test_empty_values_are_allowed_and_select_the_empty_label():
    # Kubernetes accepts "a=" / "a==" / "a!=" as comparisons with "".
    for text in ("a=", "a=="):
        s = sel(text)
        assert s.matches({"a": ""})
        assert not s.matches({"a": "x"})
        assert not s.matches({})
    assert sel("a!=").matches({"a": "x"})
    assert not sel("a!=").matches({"a": ""})
    assert sel("a in (,x)").matches({"a": ""})
    assert sel("a in ()").matches({"a": ""})
    assert not sel("a in ()").matches({"a": "x"})


def test_keywords_are_identifiers_where_no_operator_is_expected():
    s = sel("in in (in,notin)")
    assert s.matches({"in": "notin"})
    assert not s.matches({"in": "x"})
    assert sel("notin=in").matches({"notin": "in"})
    assert sel("in").matches({"in": "x"})


def test_prefixed_keys():
    s = sel("app.kubernetes.io/name=web,!example.com/x")
    assert s.matches({"app.kubernetes.io/name": "web"})
    assert not s.matches({"app.kubernetes.io/name": "web", "example.com/x": ""})


def test_matches_object_reads_metadata_labels():
    s = sel("app=web")
    assert s.matches_object({"metadata": {"labels": {"app": "web"}}})
    assert not s.matches_object({"metadata": {}})
    assert sel("!app").matches_object({"metadata": {"labels": None}})


# ---------------------------------------------------------------------------
# Label selectors: canonical text
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("b=1,a=2", "a=2,b=1"),
        ("a in (z,y,y,x)", "a in (x,y,z)"),
        ("a notin ( b )", "a notin (b)"),
        (" ! a ", "!a"),
        ("a==b", "a==b"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("n > 10", "n>10"),
        ("a", "a"),
    ],
)
def test_str_is_canonical(text, canonical):
    assert str(sel(text)) == canonical
    assert sel(canonical) == sel(text)


def test_requirements_are_exposed():
    s = sel("env in (b,a),app")
    assert s.requirements == (
        Requirement("app", Operator.EXISTS),
        Requirement("env", Operator.IN, ("a", "b")),
    )


def test_requires_exact_match():
    assert sel("app=web,x").requires_exact_match("app") == "web"
    assert sel("app==web").requires_exact_match("app") == "web"
    assert sel("app in (web)").requires_exact_match("app") == "web"
    assert sel("app in (web,db)").requires_exact_match("app") is None
    assert sel("app!=web").requires_exact_match("app") is None
    assert sel("x=1").requires_exact_match("app") is None


# ---------------------------------------------------------------------------
# Label selectors: malformed input is a 400 with Kubernetes' wording
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("=x", "found '=', expected: !, identifier, or 'end of string'"),
        ("a===", "unable to parse requirement: found '=', expected: identifier"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in", "unable to parse requirement: found '' expected: '('"),
        ("a,", "found '', expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
    ],
)
def test_malformed_label_selectors_are_bad_requests(text, message):
    with pytest.raises(BadRequest) as err:
        parse_label_selector(text)
    assert err.value.code == 400
    assert err.value.reason == "BadRequest"
    assert str(err.value) == message


@pytest.mark.parametrize(
    "key",
    [
        "-a",
        "a-",
        "app:x",
        "a/b/c",
        "/a",
        "a/",
        "Example.com/a",
        "a" * 64,
        ("x" * 254) + "/a",
        "a b/c",
        "a*",
    ],
)
def test_invalid_keys_are_rejected(key):
    with pytest.raises(BadRequest) as err:
        parse_label_selector(f"{key}=v")
    assert str(err.value).startswith("unable to parse requirement: ")


def test_invalid_key_message_is_kubernetes():
    with pytest.raises(BadRequest) as err:
        parse_label_selector("app:monolith")
    assert str(err.value) == (
        'unable to parse requirement: <nil>: Invalid value: "app:monolith": name part must '
        "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
        "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_longest_valid_key_and_value_are_accepted():
    key = "example.com/" + "k" * 63
    value = "v" * 63
    assert sel(f"{key}={value}").matches({key: value})


@pytest.mark.parametrize("text", ["a=-x", "a=x-", "a=" + "v" * 64, "a in (ok,b@d)", "a=x*"])
def test_invalid_values_are_rejected(text):
    with pytest.raises(BadRequest) as err:
        parse_label_selector(text)
    assert "unable to parse requirement: values[" in str(err.value)
    assert "[a]: Invalid value" in str(err.value)


@pytest.mark.parametrize("text", ["a>", "a<b", "a>1.5"])
def test_numeric_operators_need_an_integer(text):
    with pytest.raises(BadRequest, match="the value must be an integer"):
        parse_label_selector(text)


def test_non_string_selector_is_a_bad_request():
    with pytest.raises(BadRequest):
        parse_label_selector(3)  # type: ignore[arg-type]


def test_requirement_validates_like_new_requirement():
    with pytest.raises(BadRequest, match="values set can't be empty"):
        Requirement("a", Operator.IN, ())
    with pytest.raises(BadRequest, match="exact-match compatibility requires one single value"):
        Requirement("a", Operator.EQUALS, ("x", "y"))
    with pytest.raises(BadRequest, match="values set must be empty"):
        Requirement("a", Operator.EXISTS, ("x",))
    with pytest.raises(BadRequest, match="not a valid label selector operator"):
        Requirement("a", "In", ("x",))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Label selectors: the object form
# ---------------------------------------------------------------------------


def test_match_labels_become_equality():
    s = from_label_selector_object({"matchLabels": {"app": "x"}})
    assert s.to_text() == "app=x"
    assert s.matches({"app": "x", "other": "y"})
    assert not s.matches({"app": "y"})
    assert not s.matches({})


def test_match_expressions_convert_every_operator():
    s = from_label_selector_object(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist", "values": []},
            ],
        }
    )
    assert s.to_text() == "app=web,!canary,env notin (prod),team,tier in (be,fe)"
    assert s == sel("app=web,!canary,env notin (prod),team,tier in (be,fe)")
    base = {"app": "web", "tier": "fe", "team": "a"}
    assert s.matches(base)
    assert s.matches({**base, "env": "dev"})
    assert not s.matches({**base, "env": "prod"})
    assert not s.matches({**base, "canary": "true"})
    assert not s.matches({k: v for k, v in base.items() if k != "team"})
    assert not s.matches({**base, "tier": "db"})


def test_exists_and_does_not_exist_alone():
    exists = from_label_selector_object(
        {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    )
    absent = from_label_selector_object(
        {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}
    )
    assert exists.matches({"gpu": ""}) and not exists.matches({})
    assert absent.matches({}) and not absent.matches({"gpu": "1"})
    assert exists.to_text() == "gpu"
    assert absent.to_text() == "!gpu"


def test_empty_object_matches_everything_but_null_matches_nothing():
    for everything in (
        {},
        {"matchLabels": {}},
        {"matchLabels": None, "matchExpressions": []},
    ):
        s = from_label_selector_object(everything)
        assert s.empty
        assert s.matches({}) and s.matches({"a": "b"})
        assert s == LabelSelector.everything()
    nothing = from_label_selector_object(None)
    assert nothing == LabelSelector.nothing()
    assert not nothing.empty
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert not nothing.matches_object({"metadata": {"labels": {"a": "b"}}})
    assert nothing != LabelSelector.everything()
    # Both render as "" (what a Scale reports), as in Kubernetes.
    assert nothing.to_text() == "" and from_label_selector_object({}).to_text() == ""


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, "is not a valid label"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "empty"),
        ({"matchLabels": {"bad key": "x"}}, "Invalid value"),
        ({"matchLabels": {"a": "bad value"}}, "Invalid value"),
        ({"matchLabels": {"a": 1}}, "string"),
        ({"matchLabels": ["a"]}, "matchLabels"),
        ("app=x", "object"),
    ],
)
def test_bad_object_selectors_are_bad_requests(obj, message):
    with pytest.raises(BadRequest, match=message):
        from_label_selector_object(obj)


def test_label_selector_from_set():
    s = label_selector_from_set({"b": "2", "a": "1"})
    assert str(s) == "a=1,b=2"
    assert s.matches({"a": "1", "b": "2", "c": "3"})
    assert not s.matches({"a": "1"})
    assert label_selector_from_set(None).empty
    assert label_selector_from_set({}).matches({"x": "y"})


# ---------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------


def pod(name="p1", ns="default", node=None, phase="Pending", **spec_extra):
    spec = {"containers": [{"name": "c", "image": "busybox"}], **spec_extra}
    if node is not None:
        spec["nodeName"] = node
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": spec,
        "status": {"phase": phase},
    }


def test_field_selector_on_name_as_kubectl_delete_sends_it():
    s = parse_field_selector("metadata.name=p1").check_supported("Pod")
    assert s.matches(pod("p1"))
    assert not s.matches(pod("p2"))


def test_empty_node_name_selects_unscheduled_pods():
    s = parse_field_selector("spec.nodeName=").check_supported("Pod")
    assert s.matches(pod(node=None))
    assert s.matches(pod(node=""))
    assert not s.matches(pod(node="n1"))
    on_n1 = parse_field_selector("spec.nodeName=n1")
    assert on_n1.matches(pod(node="n1")) and not on_n1.matches(pod(node=None))


def test_phase_not_equal():
    s = parse_field_selector("status.phase!=Running").check_supported("Pod")
    assert s.matches(pod(phase="Pending"))
    assert s.matches(pod(phase="Succeeded"))
    assert not s.matches(pod(phase="Running"))
    missing = pod()
    del missing["status"]
    assert s.matches(missing)  # "" != "Running"


def test_double_equals_is_equals_and_comma_is_and():
    s = parse_field_selector("metadata.namespace==default,status.phase!=Failed,spec.nodeName=n1")
    assert s.matches(pod(node="n1"))
    assert not s.matches(pod(node="n1", ns="kube-system"))
    assert not s.matches(pod(node="n1", phase="Failed"))
    assert not s.matches(pod(node="n2"))
    assert str(s) == "metadata.namespace=default,spec.nodeName=n1,status.phase!=Failed"


def test_event_selector_as_kubectl_describe_sends_it():
    event = {
        "kind": "Event",
        "metadata": {"name": "p1.17a", "namespace": "default"},
        "involvedObject": {
            "kind": "Pod",
            "name": "p1",
            "namespace": "default",
            "uid": "1234-abcd",
            "apiVersion": "v1",
        },
        "reason": "Scheduled",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
    }
    text = "involvedObject.uid=1234-abcd,involvedObject.name=p1,involvedObject.namespace=default"
    s = parse_field_selector(text).check_supported("Event")
    assert s.matches(event)
    assert not s.matches({**event, "involvedObject": {**event["involvedObject"], "uid": "other"}})
    assert parse_field_selector("involvedObject.kind=Pod,type=Normal").matches(event)
    assert parse_field_selector("involvedObject.kind=Deployment").matches(event) is False
    assert parse_field_selector("source=default-scheduler,reason=Scheduled").matches(event)
    assert parse_field_selector("involvedObject.fieldPath=").matches(event)


def test_event_source_falls_back_to_reporting_component():
    event = {"kind": "Event", "metadata": {"name": "e"}, "reportingComponent": "kubelet"}
    assert field_value("Event", event, "source") == "kubelet"
    assert field_value("Event", event, "reportingComponent") == "kubelet"


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("Pod", "spec.foo=x"),
        ("Pod", "metadata.labels=x"),
        ("Event", "message=x"),
        ("ConfigMap", "data.x=y"),
        ("Deployment", "spec.replicas=1"),
        ("Secret", "metadata.uid=x"),
        ("Pod", "=x"),
    ],
)
def test_unsupported_fields_are_bad_requests(kind, text):
    s = parse_field_selector(text)
    with pytest.raises(BadRequest) as err:
        s.check_supported(kind)
    assert err.value.code == 400
    assert str(err.value) == f"field label not supported: {s.requirements[0].field}"


def test_message_names_the_offending_field():
    with pytest.raises(BadRequest, match=r"^field label not supported: spec\.foo$"):
        parse_field_selector("metadata.name=x,spec.foo=y").check_supported("Pod")


def test_every_kind_supports_name_and_namespace():
    kinds = {
        "Pod",
        "Event",
        "Secret",
        "Namespace",
        "Node",
        "ReplicaSet",
        "Job",
        "Service",
        "ConfigMap",
        "Endpoints",
        "ServiceAccount",
        "Deployment",
        "DaemonSet",
        "CronJob",
        "Lease",
    }
    assert kinds <= set(SUPPORTED_FIELDS)
    for kind in kinds:
        assert {"metadata.name", "metadata.namespace"} <= SUPPORTED_FIELDS[kind]
        parse_field_selector("metadata.name=a,metadata.namespace=b").check_supported(kind)
    # Kinds kcore does not know get what Kubernetes gives custom resources.
    assert supported_fields("Widget") == {"metadata.name", "metadata.namespace"}


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (
            "Pod",
            {
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            },
        ),
        ("Secret", {"type"}),
        ("Namespace", {"status.phase"}),
        ("Node", {"spec.unschedulable"}),
        ("ReplicaSet", {"status.replicas"}),
        ("Job", {"status.successful"}),
    ],
)
def test_kind_specific_fields(kind, fields):
    assert fields <= SUPPORTED_FIELDS[kind]
    for f in fields:
        parse_field_selector(f"{f}=x").check_supported(kind)
    with pytest.raises(BadRequest):
        parse_field_selector("status.phase=x,spec.nodeName=y,type=z").check_supported("ConfigMap")


def test_kind_lookup_accepts_resource_names():
    parse_field_selector("spec.nodeName=n").check_supported("pods")
    parse_field_selector("spec.nodeName=n").check_supported("pod")
    with pytest.raises(BadRequest):
        parse_field_selector("spec.nodeName=n").check_supported("services")


def test_pod_spec_host_is_the_old_name_of_node_name():
    s = parse_field_selector("spec.host=n1")
    checked = s.check_supported("Pod")
    assert str(checked) == "spec.nodeName=n1"
    assert checked.matches(pod(node="n1"))
    assert s.matches(pod(node="n1"))


def test_field_values_are_stringified_as_kubernetes_does():
    p = pod(node="n1", hostNetwork=True, restartPolicy="Never")
    assert field_value("Pod", p, "spec.hostNetwork") == "true"
    assert field_value("Pod", pod(), "spec.hostNetwork") == "false"
    assert field_value("Pod", p, "spec.restartPolicy") == "Never"
    assert field_value("Pod", pod(), "spec.restartPolicy") == ""
    assert field_value("Pod", p, "metadata.namespace") == "default"
    assert parse_field_selector("spec.hostNetwork=true").matches(p)
    assert parse_field_selector("spec.hostNetwork=false").matches(pod())

    ips = {"kind": "Pod", "status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}}
    assert field_value("Pod", ips, "status.podIP") == "10.0.0.1"
    assert field_value("Pod", {"status": {"podIP": "10.0.0.2"}}, "status.podIP") == "10.0.0.2"

    node = {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert field_value("Node", node, "spec.unschedulable") == "true"
    assert field_value("Node", {"metadata": {"name": "n2"}}, "spec.unschedulable") == "false"
    assert field_value("Node", node, "metadata.namespace") == ""

    rs = {"kind": "ReplicaSet", "status": {"replicas": 3}}
    assert field_value("ReplicaSet", rs, "status.replicas") == "3"
    assert field_value("ReplicaSet", {}, "status.replicas") == "0"
    assert parse_field_selector("status.replicas=0").matches({"kind": "ReplicaSet"})

    job = {"kind": "Job", "status": {"succeeded": 2}}
    assert field_value("Job", job, "status.successful") == "2"
    assert field_value("Job", {}, "status.successful") == "0"

    secret = {"kind": "Secret", "type": "kubernetes.io/service-account-token"}
    assert parse_field_selector("type=kubernetes.io/service-account-token").matches(secret)
    ns = {"kind": "Namespace", "metadata": {"name": "x"}, "status": {"phase": "Terminating"}}
    assert parse_field_selector("status.phase=Terminating").matches(ns)


def test_matches_takes_the_kind_from_the_object_or_the_argument():
    rs = {"metadata": {"name": "r"}, "status": {}}
    s = parse_field_selector("status.replicas=0")
    assert s.matches(rs, kind="ReplicaSet")
    assert not s.matches(rs)  # without a kind, status.replicas is read as is: ""


def test_empty_field_selector_matches_everything():
    for s in (parse_field_selector(""), parse_field_selector(None), parse_field_selector(",")):
        assert s.empty
        assert s.matches(pod())
        assert str(s) == ""
        s.check_supported("Pod")


# -- escaping ---------------------------------------------------------------------------------


def test_escaped_values():
    s = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert s.requirements == (FieldRequirement("metadata.name", "=", "a,b=c\\d"),)
    assert s.matches(pod(name="a,b=c\\d"))
    assert str(s) == r"metadata.name=a\,b\=c\\d"
    assert escape_field_value("a,b=c\\d") == r"a\,b\=c\\d"
    assert unescape_field_value(r"a\,b\=c\\d") == "a,b=c\\d"


def test_an_escaped_comma_does_not_split_terms():
    s = parse_field_selector(r"metadata.name=x\,y\=z,metadata.namespace=ns")
    assert s.requirements == (
        FieldRequirement("metadata.name", "=", "x,y=z"),
        FieldRequirement("metadata.namespace", "=", "ns"),
    )
    # The escaped comma keeps the rest in the same value, where a bare "=" is an error.
    with pytest.raises(BadRequest, match="unescaped character in value: ="):
        parse_field_selector(r"metadata.name=x\,metadata.namespace=y")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"metadata.name=a\x", r"invalid field selector: invalid escape sequence: \x"),
        ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
        ("metadata.name=a=b", "invalid field selector: unescaped character in value: ="),
        ("metadata.name===b", "invalid field selector: unescaped character in value: ="),
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=1,b", "invalid selector: 'a=1,b'; can't understand 'b'"),
        ("metadata.name=x,y", "invalid selector: 'metadata.name=x,y'; can't understand 'y'"),
    ],
)
def test_malformed_field_selectors_are_bad_requests(text, message):
    with pytest.raises(BadRequest) as err:
        parse_field_selector(text)
    assert err.value.code == 400
    assert str(err.value) == message


def test_field_requirement_rejects_other_operators():
    with pytest.raises(BadRequest):
        FieldRequirement("metadata.name", "in", "x")


# -- fast paths ---------------------------------------------------------------------------------


def test_fast_path_requirements():
    assert selector_requirements_for_fast_paths(
        "metadata.name=p1,metadata.namespace=default,status.phase!=Running"
    ) == {"metadata.name": "p1", "metadata.namespace": "default"}
    assert selector_requirements_for_fast_paths(parse_field_selector("spec.nodeName==n1")) == {
        "spec.nodeName": "n1"
    }
    assert selector_requirements_for_fast_paths(None) == {}
    assert selector_requirements_for_fast_paths("") == {}
    assert selector_requirements_for_fast_paths("metadata.name!=x") == {}
    s = parse_field_selector("metadata.name=p1")
    assert s.requires_exact_match("metadata.name") == "p1"
    assert s.requires_exact_match("metadata.namespace") is None


# ---------------------------------------------------------------------------
# Round trips (Hypothesis)
# ---------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits
_alnum = st.sampled_from(_ALNUM)
_name = st.one_of(
    _alnum,
    st.builds(lambda a, mid, b: a + mid + b, _alnum, st.text(_ALNUM + "-_.", max_size=20), _alnum),
)
_dns_label = st.builds(
    lambda a, mid, b: a + mid + b,
    st.sampled_from(string.ascii_lowercase + string.digits),
    st.text(string.ascii_lowercase + string.digits + "-", max_size=8),
    st.sampled_from(string.ascii_lowercase + string.digits),
)
_prefix = st.lists(_dns_label, min_size=1, max_size=3).map(".".join)
_keys = st.one_of(
    _name,
    st.builds(lambda p, n: f"{p}/{n}", _prefix, _name),
    st.sampled_from(["in", "notin", "app", "a"]),
)
_values = st.one_of(st.just(""), _name, st.sampled_from(["in", "notin", "x"]))
_ints = st.integers(min_value=0, max_value=2**63 - 1).map(str)


@st.composite
def requirements(draw):
    key = draw(_keys)
    op = draw(st.sampled_from(list(Operator)))
    if op in (Operator.IN, Operator.NOT_IN):
        values = tuple(draw(st.lists(_values, min_size=1, max_size=4)))
    elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        values = ()
    elif op in (Operator.GREATER_THAN, Operator.LESS_THAN):
        values = (draw(_ints),)
    else:
        values = (draw(_values),)
    return Requirement(key, op, values)


label_selectors = st.lists(requirements(), max_size=5).map(lambda rs: LabelSelector(tuple(rs)))


@settings(max_examples=300)
@given(label_selectors)
def test_label_selector_round_trip(s):
    assert parse_label_selector(str(s)) == s
    assert str(parse_label_selector(str(s))) == str(s)


@settings(max_examples=200)
@given(
    label_selectors,
    st.dictionaries(st.sampled_from(["in", "notin", "app", "a", "b"]), _values, max_size=4),
)
def test_parsed_text_selects_the_same_objects(s, labels):
    assert parse_label_selector(str(s)).matches(labels) == s.matches(labels)


@settings(max_examples=200)
@given(
    st.lists(
        st.builds(
            FieldRequirement,
            st.sampled_from(sorted(SUPPORTED_FIELDS["Pod"] | SUPPORTED_FIELDS["Event"])),
            st.sampled_from(["=", "==", "!="]),
            st.text(max_size=12),
        ),
        max_size=5,
    )
)
def test_field_selector_round_trip(reqs):
    s = FieldSelector(tuple(reqs))
    assert parse_field_selector(str(s)) == s


@given(st.text(max_size=30))
def test_escape_round_trip(value):
    assert unescape_field_value(escape_field_value(value)) == value
    s = parse_field_selector("metadata.name=" + escape_field_value(value))
    assert s.requirements[0].value == value
