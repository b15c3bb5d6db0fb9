"""Validation: bad manifests are rejected with every bad field named by its path."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcore.api import apply_defaults, decode, registry, validate, validate_update, validation_errors
from kcore.api.validation import (
    cron_schedule_error,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
)
from kcore.errors import Invalid

MANIFESTS = Path(__file__).parent / "manifests"
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def _ready(doc: dict[str, Any]):
    """Decode, default, and put a namespaced object in a namespace, as the API server does."""
    obj = apply_defaults(decode(doc))
    info = registry.by_kind(obj.api_version, obj.kind)
    if info is not None and info.namespaced and not obj.metadata.namespace:
        obj.metadata.namespace = "default"
    return obj


def _causes(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.field, c.message) for c in validation_errors(_ready(doc))]


def _fields(doc: dict[str, Any]) -> list[str]:
    return [field for field, _ in _causes(doc)]


ALL_DOCS = [
    (path.name, i, d)
    for path in sorted(MANIFESTS.glob("*.yaml"))
    for i, d in enumerate(_docs(path.name))
]


@pytest.mark.parametrize(
    ("name", "index", "doc"), ALL_DOCS, ids=[f"{n}[{i}]" for n, i, _ in ALL_DOCS]
)
def test_documentation_manifests_are_valid(name, index, doc):
    validate(_ready(doc))


# --------------------------------------------------------------------------- pods


def _pod() -> dict[str, Any]:
    return copy.deepcopy(_docs("pod-projected.yaml")[0])


def _deployment() -> dict[str, Any]:
    return copy.deepcopy(_docs("nginx-deployment.yaml")[0])


def test_a_missing_image_names_the_container():
    pod = _pod()
    del pod["spec"]["containers"][0]["image"]
    assert _causes(pod) == [("spec.containers[0].image", "Required value")]
    with pytest.raises(Invalid) as err:
        validate(_ready(pod))
    assert (
        str(err.value) == 'Pod "volume-test" is invalid: spec.containers[0].image: Required value'
    )
    assert err.value.causes[0].reason == "FieldValueRequired"


def test_a_missing_image_in_a_template_names_the_full_path():
    dep = _deployment()
    del dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert _fields(dep) == ["spec.template.spec.containers[0].image"]


def test_a_bad_object_name_uses_kubernetes_wording():
    pod = _pod()
    pod["metadata"]["name"] = "My_Pod"
    assert _causes(pod) == [("metadata.name", f'Invalid value: "My_Pod": {SUBDOMAIN_MSG}')]


def test_a_missing_name_is_required_unless_generate_name_is_set():
    pod = _pod()
    del pod["metadata"]["name"]
    assert _causes(pod) == [("metadata.name", "Required value: name or generateName is required")]
    pod["metadata"]["generateName"] = "web-"
    assert _causes(pod) == []
    pod["metadata"]["generateName"] = "Web-"
    assert _fields(pod) == ["metadata.generateName"]


def test_names_that_are_too_long():
    pod = _pod()
    pod["metadata"]["name"] = "a" * 254
    assert _causes(pod) == [
        ("metadata.name", f'Invalid value: "{"a" * 254}": must be no more than 253 characters')
    ]


def test_namespaces_and_services_need_labels_not_subdomains():
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team.a"}}
    assert _fields(ns) == ["metadata.name"]
    assert "RFC 1123 label" in _causes(ns)[0][1]
    svc = copy.deepcopy(_docs("services.yaml")[0])
    svc["metadata"]["name"] = "1-service"
    assert _fields(svc) == ["metadata.name"]
    assert "DNS-1035 label" in _causes(svc)[0][1]


def test_namespace_is_required_on_namespaced_kinds_and_forbidden_on_others():
    pod = apply_defaults(decode(_pod()))
    assert [(c.field, c.message) for c in validation_errors(pod)] == [
        ("metadata.namespace", "Required value")
    ]
    assert validation_errors(pod, require_namespace=False) == []
    node = decode(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "default"}}
    )
    assert [c.field for c in validation_errors(node)] == ["metadata.namespace"]


def test_bad_label_keys_and_values():
    pod = _pod()
    pod["metadata"]["labels"] = {
        "bad key": "ok",
        "good": "bad value!",
        "example.com/fine": "",
        "a/b/c": "x",
    }
    causes = _causes(pod)
    assert [f for f, _ in causes] == ["metadata.labels"] * 3
    messages = [m for _, m in causes]
    assert messages[0].startswith(
        'Invalid value: "bad key": name part must consist of alphanumeric characters'
    )
    assert messages[1].startswith(
        'Invalid value: "bad value!": a valid label must be an empty string or consist'
    )
    assert messages[2].startswith('Invalid value: "a/b/c": a qualified name must consist of')


def test_annotations_may_total_at_most_256_kib():
    pod = _pod()
    pod["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    assert _causes(pod) == [("metadata.annotations", "Too long: may not be more than 262144 bytes")]
    pod["metadata"]["annotations"] = {"big": "x" * (256 * 1024 - 3)}
    assert _causes(pod) == []


def test_dotdot_in_a_sub_path_is_rejected():
    pod = _pod()
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    mount["subPath"] = "data/../../etc"
    assert _causes(pod) == [
        (
            "spec.containers[0].volumeMounts[0].subPath",
            "Invalid value: \"data/../../etc\": must not contain '..'",
        )
    ]
    mount["subPath"] = "/etc"
    assert _causes(pod) == [
        (
            "spec.containers[0].volumeMounts[0].subPath",
            'Invalid value: "/etc": must be a relative path',
        )
    ]
    mount["subPath"] = "a..b/c"  # ".." inside a name is fine
    assert _causes(pod) == []


def test_item_paths_in_projected_secret_and_config_map_volumes_must_stay_inside():
    pod = _pod()
    sources = pod["spec"]["volumes"][0]["projected"]["sources"]
    sources[0]["secret"]["items"][0]["path"] = "../escape"
    sources[2]["configMap"]["items"][0]["path"] = "/abs"
    pod["spec"]["volumes"].append(
        {"name": "s", "secret": {"secretName": "x", "items": [{"key": "k", "path": "..hidden"}]}}
    )
    assert _causes(pod) == [
        (
            "spec.volumes[0].projected.sources[0].secret.items[0].path",
            "Invalid value: \"../escape\": must not contain '..'",
        ),
        (
            "spec.volumes[0].projected.sources[2].configMap.items[0].path",
            'Invalid value: "/abs": must be a relative path',
        ),
        (
            "spec.volumes[1].secret.items[0].path",
            "Invalid value: \"..hidden\": must not start with '..'",
        ),
    ]


def test_duplicate_container_names():
    pod = _pod()
    pod["spec"]["containers"].append(copy.deepcopy(pod["spec"]["containers"][0]))
    assert _causes(pod) == [("spec.containers[1].name", 'Duplicate value: "container-test"')]
    pod["spec"]["containers"].pop()
    pod["spec"]["initContainers"] = [{"name": "container-test", "image": "busybox"}]
    assert _fields(pod) == ["spec.containers[0].name"]


def test_volume_mounts_must_name_a_volume_and_volumes_must_be_unique():
    pod = _pod()
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "nowhere", "mountPath": "/x"})
    pod["spec"]["volumes"].append({"name": "all-in-one", "emptyDir": {}})
    assert _causes(pod) == [
        ("spec.volumes[1].name", 'Duplicate value: "all-in-one"'),
        ("spec.containers[0].volumeMounts[1].name", 'Not found: "nowhere"'),
    ]


def test_a_volume_with_two_sources_is_rejected():
    pod = _pod()
    pod["spec"]["volumes"][0]["emptyDir"] = {}
    assert _fields(pod) == ["spec.volumes[0].projected"]


def test_container_ports_must_be_in_range():
    pod = _pod()
    pod["spec"]["containers"][0]["ports"] = [
        {"containerPort": 70000},
        {"containerPort": 0, "hostPort": 80},
        {"containerPort": 53, "protocol": "ICMP"},
    ]
    assert _causes(pod) == [
        (
            "spec.containers[0].ports[0].containerPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        ("spec.containers[0].ports[1].containerPort", "Required value"),
        (
            "spec.containers[0].ports[2].protocol",
            'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
        ),
    ]


def test_pod_with_no_containers():
    pod = _pod()
    pod["spec"]["containers"] = []
    assert ("spec.containers", "Required value") in _causes(pod)


def test_every_error_is_collected_at_once():
    pod = _pod()
    pod["metadata"]["name"] = "Bad"
    pod["metadata"]["labels"] = {"ok": "not ok!"}
    pod["spec"]["restartPolicy"] = "Sometimes"
    ctr = pod["spec"]["containers"][0]
    del ctr["image"]
    ctr["name"] = "Container"
    ctr["volumeMounts"][0]["subPath"] = "../x"
    with pytest.raises(Invalid) as err:
        validate(_ready(pod))
    assert [c.field for c in err.value.causes] == [
        "metadata.name",
        "metadata.labels",
        "spec.containers[0].name",
        "spec.containers[0].image",
        "spec.containers[0].volumeMounts[0].subPath",
        "spec.restartPolicy",
    ]
    text = str(err.value)
    assert text.startswith('Pod "Bad" is invalid: [metadata.name: Invalid value: "Bad": ')
    assert "\n" not in text


def test_env_and_probes():
    pod = _pod()
    ctr = pod["spec"]["containers"][0]
    ctr["env"] = [
        {"name": "A=B", "value": "x"},
        {"name": "B", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}},
        {"name": "D", "valueFrom": {"secretKeyRef": {"name": "s"}}},
    ]
    ctr["livenessProbe"] = {"successThreshold": 2}
    assert _fields(pod) == [
        "spec.containers[0].env[0].name",
        "spec.containers[0].env[1].valueFrom",
        "spec.containers[0].env[2].valueFrom.fieldRef.fieldPath",
        "spec.containers[0].env[3].valueFrom.secretKeyRef.key",
        "spec.containers[0].livenessProbe",
        "spec.containers[0].livenessProbe.successThreshold",
    ]


def test_requests_may_not_exceed_limits_and_quantities_must_parse():
    pod = _pod()
    pod["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "1", "memory": "lots"},
        "requests": {"cpu": "1500m"},
    }
    assert _causes(pod) == [
        (
            "spec.containers[0].resources.limits[memory]",
            "Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "spec.containers[0].resources.requests[cpu]",
            'Invalid value: "1500m": must be less than or equal to cpu limit of 1',
        ),
        # Defaulting copied the bad memory limit into the requests, and it is checked there too.
        (
            "spec.containers[0].resources.requests[memory]",
            "Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    ]


def test_service_account_token_expiration_must_be_at_least_ten_minutes():
    doc = copy.deepcopy(_docs("pod-projected.yaml")[1])
    doc["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"][
        "expirationSeconds"
    ] = 60
    assert _causes(doc) == [
        (
            "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds",
            "Invalid value: 60: may not specify a duration less than 10 minutes",
        )
    ]


# --------------------------------------------------------------------------- workloads


def test_a_selector_that_does_not_match_the_template():
    dep = _deployment()
    dep["spec"]["selector"]["matchLabels"] = {"app": "apache"}
    assert _causes(dep) == [
        (
            "spec.template.metadata.labels",
            'Invalid value: map[string]string{"app":"nginx"}: `selector` does not match template `labels`',
        )
    ]


def test_workloads_need_a_selector():
    for name in ("nginx-deployment.yaml", "daemonset-fluentd.yaml"):
        doc = copy.deepcopy(_docs(name)[0])
        del doc["spec"]["selector"]
        assert _causes(doc) == [("spec.selector", "Required value")]
    dep = _deployment()
    dep["spec"]["selector"] = {}
    assert _causes(dep) == [
        (
            "spec.selector",
            "Invalid value: map[string]string{}: empty selector is invalid for deployment",
        )
    ]


def test_selector_expressions_are_checked():
    dep = _deployment()
    dep["spec"]["selector"]["matchExpressions"] = [
        {"key": "tier", "operator": "In"},
        {"key": "app", "operator": "Exists", "values": ["x"]},
        {"key": "app", "operator": "Near", "values": ["x"]},
    ]
    fields = _fields(dep)
    assert fields[:3] == [
        "spec.selector.matchExpressions[0].values",
        "spec.selector.matchExpressions[1].values",
        "spec.selector.matchExpressions[2].operator",
    ]


def test_deployment_numbers():
    dep = _deployment()
    dep["spec"]["replicas"] = -1
    dep["spec"]["strategy"] = {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}
    dep["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert _causes(dep) == [
        ("spec.replicas", "Invalid value: -1: must be greater than or equal to 0"),
        (
            "spec.template.spec.restartPolicy",
            'Unsupported value: "Never": supported values: "Always"',
        ),
        (
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: 0: may not be 0 when `maxSurge` is 0",
        ),
    ]
    dep["spec"]["replicas"] = 1
    dep["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    dep["spec"]["strategy"] = {"rollingUpdate": {"maxUnavailable": "110%", "maxSurge": "lots"}}
    assert _fields(dep) == [
        "spec.strategy.rollingUpdate.maxUnavailable",
        "spec.strategy.rollingUpdate.maxSurge",
    ]


def test_job_restart_policy_must_be_never_or_on_failure():
    job = copy.deepcopy(_docs("job-pi.yaml")[0])
    del job["spec"]["template"]["spec"]["restartPolicy"]
    assert _causes(job) == [
        (
            "spec.template.spec.restartPolicy",
            'Unsupported value: "Always": supported values: "OnFailure", "Never"',
        )
    ]


def test_indexed_jobs_need_completions():
    job = copy.deepcopy(_docs("job-pi.yaml")[0])
    job["spec"].update({"completionMode": "Indexed", "parallelism": 2})
    assert _causes(job) == [("spec.completions", "Required value: when completion mode is Indexed")]


def test_cron_job_schedule():
    cj = copy.deepcopy(_docs("cronjob-hello.yaml")[0])
    cj["spec"]["schedule"] = ""
    assert _causes(cj) == [("spec.schedule", "Required value")]
    cj["spec"]["schedule"] = "every minute"
    assert _fields(cj) == ["spec.schedule"]
    cj["spec"]["schedule"] = "@hourly"
    cj["spec"]["timeZone"] = "Mars/Olympus_Mons"
    assert _causes(cj) == [
        ("spec.timeZone", 'Invalid value: "Mars/Olympus_Mons": unknown time zone Mars/Olympus_Mons')
    ]
    cj["spec"]["timeZone"] = "Europe/Berlin"
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert _fields(cj) == ["spec.jobTemplate.spec.template.spec.restartPolicy"]


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        ("* * * * *", True),
        ("*/5 0-6 1,15 JAN-MAR mon-fri", True),
        ("0 0 * * 7", True),
        ("@daily", True),
        ("@every 1h30m", True),
        ("60 * * * *", False),
        ("* * * *", False),
        ("CRON_TZ=UTC 0 * * * *", False),
        ("@sometimes", False),
        ("*/x * * * *", False),
    ],
)
def test_cron_schedule_syntax(schedule, ok):
    assert (cron_schedule_error(schedule) is None) is ok


def test_cron_job_names_may_have_at_most_52_characters():
    cj = copy.deepcopy(_docs("cronjob-hello.yaml")[0])
    cj["metadata"]["name"] = "a" * 53
    assert _causes(cj) == [
        ("metadata.name", f'Invalid value: "{"a" * 53}": must be no more than 52 characters')
    ]


# --------------------------------------------------------------------------- services and config


def test_services_need_ports_unless_headless_or_external():
    svc = copy.deepcopy(_docs("services.yaml")[0])
    del svc["spec"]["ports"]
    assert _causes(svc) == [("spec.ports", "Required value")]
    svc["spec"]["clusterIP"] = "None"
    assert _causes(svc) == []
    external = copy.deepcopy(_docs("services.yaml")[3])
    assert _causes(external) == []
    del external["spec"]["externalName"]
    assert _causes(external) == [("spec.externalName", "Required value")]


def test_service_ports():
    svc = copy.deepcopy(_docs("services.yaml")[0])
    svc["spec"]["ports"] = [
        {"port": 80, "targetPort": 70000},
        {"name": "http", "port": 80, "nodePort": 30080},
        {"name": "http", "port": 0, "targetPort": "Not_A_Name"},
    ]
    assert _fields(svc) == [
        "spec.ports[0].name",
        "spec.ports[0].targetPort",
        "spec.ports[1]",
        "spec.ports[1].nodePort",
        "spec.ports[2].name",
        "spec.ports[2].port",
        "spec.ports[2].targetPort",
    ]


def test_config_map_keys():
    cm = copy.deepcopy(_docs("configmap-game-demo.yaml")[0])
    cm["data"]["bad key"] = "x"
    cm["data"][".."] = "x"
    assert _causes(cm) == [
        (
            "data[bad key]",
            "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
        ("data[..]", "Invalid value: \"..\": must not be '..'"),
    ]


def test_secret_data_must_be_base64_and_typed_secrets_need_their_keys():
    secret = copy.deepcopy(_docs("secrets.yaml")[2])
    secret["data"]["tls.crt"] = "not base64!"
    del secret["data"]["tls.key"]
    assert _causes(secret) == [
        ("data[tls.crt]", 'Invalid value: "<secret contents redacted>": must be valid base64'),
        ("data[tls.key]", "Required value"),
    ]


def test_docker_config_secrets_must_hold_json():
    def secret(kind, key, value, field="data"):
        encoded = base64.b64encode(value.encode()).decode() if field == "data" else value
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pull", "namespace": "default"},
            "type": kind,
            field: {key: encoded},
        }

    good = '{"auths": {"reg.example:5000": {"auth": "dTpw"}}}'
    assert _causes(secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", good)) == []
    assert _causes(secret("kubernetes.io/dockercfg", ".dockercfg", "{}", "stringData")) == []
    assert _causes(secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", "{nope")) == [
        (
            "data[.dockerconfigjson]",
            'Invalid value: "<secret contents redacted>": must be valid JSON',
        )
    ]


def test_node_taints():
    node = copy.deepcopy(_docs("cluster.yaml")[2])
    node["spec"]["taints"].append({"key": "x", "effect": "Sometimes"})
    node["spec"]["taints"].append(
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    )
    assert _fields(node) == ["spec.taints[1].effect", "spec.taints[2]"]


# --------------------------------------------------------------------------- updates


def test_workload_selectors_are_immutable():
    old = _ready(_deployment())
    new = _ready(_deployment())
    new.spec.selector.match_labels["tier"] = "web"
    new.spec.template.metadata.labels["tier"] = "web"
    with pytest.raises(Invalid) as err:
        validate_update(new, old)
    assert [c.field for c in err.value.causes] == ["spec.selector"]
    new = _ready(_deployment())
    new.spec.replicas = 10
    validate_update(new, old)


def test_pod_updates_may_only_change_images_and_a_few_fields():
    old = _ready(_pod())
    new = _ready(_pod())
    new.spec.containers[0].image = "busybox:1.36"
    new.spec.active_deadline_seconds = 60
    validate_update(new, old)
    new.spec.containers[0].command = ["sh"]
    with pytest.raises(Invalid) as err:
        validate_update(new, old)
    assert [c.field for c in err.value.causes] == ["spec"]


def test_immutable_config_maps_and_secrets():
    old = _ready(_docs("secrets.yaml")[2])
    new = _ready(_docs("secrets.yaml")[2])
    new.data["extra"] = "eA=="
    new.immutable = False
    with pytest.raises(Invalid) as err:
        validate_update(new, old)
    assert [c.field for c in err.value.causes] == ["immutable", "data"]


# --------------------------------------------------------------------------- string rules


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("a", True),
        ("A-b_c.d", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-a", False),
        ("a-", False),
        ("a b", False),
    ],
)
def test_label_values(value, ok):
    assert (is_valid_label_value(value) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("example.com/" + "a" * 63, True),
        ("example.com/" + "a" * 64, False),
        ("Example.com/name", False),
        ("/name", False),
        ("example.com/", False),
        ("a/b/c", False),
        ("", False),
    ],
)
def test_qualified_names(value, ok):
    assert (is_qualified_name(value) == []) is ok


def test_dns_names():
    assert is_dns1123_label("my-name") == []
    assert is_dns1123_label("123-abc") == []
    assert is_dns1123_label("my.name") != []
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1123_subdomain("example.com") == []
    assert is_dns1123_subdomain("Example.com") != []
    assert is_dns1123_subdomain("a." * 126 + "ab") == ["must be no more than 253 characters"]


def test_trailing_newline_is_not_a_valid_name_or_label():
    """Python's ``$`` matches before a final newline; Kubernetes' anchors do not."""
    from kcore.api import validation

    assert validation.is_valid_label_value("abc\n")
    assert validation.is_dns1123_subdomain("abc\n")
    assert validation.is_dns1123_label("abc\n")
    assert validation.is_qualified_name("app\n")
    assert not validation.is_valid_label_value("abc")


def test_config_map_size_counts_bytes_not_characters():
    """Kubernetes limits a ConfigMap to 1 MiB of data in bytes: 700,000 'é' are 1.4 MB."""
    from kcore.api import decode, validate
    from kcore.errors import Invalid

    cm = decode(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "big", "namespace": "d"},
            "data": {"a": "é" * 700_000},
        }
    )
    with pytest.raises(Invalid):
        validate(cm)
    cm.data["a"] = "é" * 500_000
    validate(cm)


@pytest.mark.parametrize(
    ("csi", "fields"),
    [
        ({"driver": "template.examples.kcore.io", "volumeAttributes": {"a": "1"}}, []),
        ({}, ["spec.volumes[1].csi.driver"]),
        ({"driver": "Not_A_Driver"}, ["spec.volumes[1].csi.driver"]),
        ({"driver": "d" * 64}, ["spec.volumes[1].csi.driver"]),
        (
            {"driver": "ok.io", "volumeAttributes": {"n": 1}},
            ["spec.volumes[1].csi.volumeAttributes[n]"],
        ),
    ],
)
def test_inline_csi_volumes_name_a_driver_and_carry_string_attributes(csi, fields):
    pod = _pod()
    pod["spec"]["volumes"].append({"name": "plugin", "csi": csi})
    assert _fields(pod) == fields
