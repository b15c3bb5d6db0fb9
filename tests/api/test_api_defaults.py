"""Defaulting fills exactly Kubernetes' documented values and leaves given values alone."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kcore.api import (
    apply_defaults,
    clone,
    decode,
    decode_all_yaml,
    generate_job_selector,
    qos_class,
    to_dict,
)
from kcore.api.defaults import default_pull_policy, image_tag

MANIFESTS = Path(__file__).parent / "manifests"


def _load(name: str, index: int = 0):
    return decode_all_yaml((MANIFESTS / name).read_text())[index]


def _defaulted(doc: dict) -> dict:
    return to_dict(apply_defaults(decode(doc)))


def test_pod_defaults_are_exactly_kubernetes():
    out = _defaulted(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "livenessProbe": {"httpGet": {"port": 80}},
                        "readinessProbe": {"exec": {"command": ["true"]}},
                        "env": [
                            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                        ],
                    }
                ]
            },
        }
    )
    assert out["spec"] == {
        "containers": [
            {
                "name": "c",
                "image": "nginx",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "env": [
                    {
                        "name": "N",
                        "valueFrom": {
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
                        },
                    }
                ],
                "livenessProbe": {
                    "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                    "timeoutSeconds": 1,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "readinessProbe": {
                    "exec": {"command": ["true"]},
                    "timeoutSeconds": 1,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "Always",
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
    }


def test_pod_defaults_leave_given_values_alone():
    pod = _load("pod-env-volumes-probes.yaml")
    before = to_dict(pod)
    spec = apply_defaults(pod).spec
    assert spec.restart_policy == "OnFailure"
    assert spec.termination_grace_period_seconds == 60
    assert spec.scheduler_name == "my-scheduler"
    assert spec.service_account_name == "build-robot"
    assert spec.service_account == "build-robot"
    assert spec.security_context.run_as_user == 1000
    ctr = spec.containers[0]
    assert ctr.termination_message_path == "/tmp/my-log"
    assert ctr.termination_message_policy == "FallbackToLogsOnError"
    assert ctr.image_pull_policy == "Always"  # registry.k8s.io/busybox has no tag
    assert spec.containers[1].image_pull_policy == "IfNotPresent"
    assert ctr.liveness_probe.period_seconds == 3
    assert ctr.liveness_probe.initial_delay_seconds == 3
    assert ctr.startup_probe.failure_threshold == 30
    assert spec.volumes[3].secret.default_mode == 0o400
    assert spec.volumes[5].host_path.type == "Directory"
    # Whatever the manifest said is still there, unchanged.
    after = to_dict(pod)
    assert after["metadata"] == before["metadata"]
    assert after["spec"]["affinity"] == before["spec"]["affinity"]
    assert after["spec"]["containers"][0]["args"] == before["spec"]["containers"][0]["args"]


def test_pod_requests_default_to_limits_only_where_unset():
    pod = apply_defaults(_load("pod-env-volumes-probes.yaml"))
    res = pod.spec.containers[0].resources
    assert res.requests == {"memory": "64Mi", "cpu": "250m", "ephemeral-storage": "2Gi"}


def test_volume_defaults():
    pod = apply_defaults(_load("pod-env-volumes-probes.yaml"))
    vols = {v.name: v for v in pod.spec.volumes}
    assert vols["config"].config_map.default_mode == 0o644
    assert vols["podinfo"].downward_api.default_mode == 0o644
    assert vols["podinfo"].downward_api.items[0].field_ref.api_version == "v1"
    projected = apply_defaults(_load("pod-projected.yaml", 1)).spec.volumes[0].projected
    assert projected.default_mode == 0o644
    assert projected.sources[0].service_account_token.expiration_seconds == 3600
    bare = decode({"apiVersion": "v1", "kind": "Pod", "spec": {"volumes": [{"name": "scratch"}]}})
    assert to_dict(apply_defaults(bare))["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    host = decode(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {"volumes": [{"name": "h", "hostPath": {"path": "/x"}}]},
        }
    )
    assert to_dict(apply_defaults(host))["spec"]["volumes"][0]["hostPath"] == {
        "path": "/x",
        "type": "",
    }


def test_host_network_pods_default_host_ports():
    pod = decode(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {
                "hostNetwork": True,
                "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 53}]}],
            },
        }
    )
    assert apply_defaults(pod).spec.containers[0].ports[0].host_port == 53


@pytest.mark.parametrize(
    ("image", "tag", "policy"),
    [
        ("nginx", None, "Always"),
        ("nginx:latest", "latest", "Always"),
        ("nginx:1.25", "1.25", "IfNotPresent"),
        ("localhost:5000/app", None, "Always"),
        ("localhost:5000/app:v1", "v1", "IfNotPresent"),
        ("registry.k8s.io/pause@sha256:" + "a" * 64, None, "IfNotPresent"),
        ("docker.io/library/busybox:1.36@sha256:" + "b" * 64, "1.36", "IfNotPresent"),
    ],
)
def test_image_pull_policy_follows_the_tag(image, tag, policy):
    assert image_tag(image) == tag
    assert default_pull_policy(image) == policy


def test_service_defaults():
    svc = apply_defaults(_load("services.yaml", 0))
    spec = to_dict(svc)["spec"]
    assert spec == {
        "ports": [{"protocol": "TCP", "port": 80, "targetPort": 9376}],
        "selector": {"app.kubernetes.io/name": "MyApp"},
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }
    node_port = apply_defaults(_load("services.yaml", 2)).spec
    assert node_port.ports[0].protocol == "TCP"
    assert node_port.external_traffic_policy == "Cluster"
    named = apply_defaults(_load("services.yaml", 1)).spec
    assert named.ports[0].target_port == "http-web-svc"


def test_service_target_port_defaults_to_port():
    svc = decode({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 8080}]}})
    assert apply_defaults(svc).spec.ports[0].target_port == 8080


def test_client_ip_affinity_gets_the_default_timeout():
    svc = decode(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 1}]},
        }
    )
    assert apply_defaults(svc).spec.session_affinity_config == {
        "clientIP": {"timeoutSeconds": 10800}
    }


def test_deployment_defaults_are_exactly_kubernetes():
    dep = apply_defaults(_load("nginx-deployment.yaml"))
    spec = to_dict(dep)["spec"]
    assert spec["replicas"] == 3  # given
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    pod_spec = spec["template"]["spec"]
    assert {k: v for k, v in pod_spec.items() if k != "containers"} == {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod_spec["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert "serviceAccountName" not in pod_spec  # admission sets it on Pods, not templates


def test_deployment_replicas_default_to_one_and_recreate_gets_no_rolling_update():
    dep = apply_defaults(
        decode(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "spec": {"strategy": {"type": "Recreate"}},
            }
        )
    )
    assert dep.spec.replicas == 1
    assert to_dict(dep)["spec"]["strategy"] == {"type": "Recreate"}


def test_partial_rolling_update_keeps_the_given_half():
    dep = apply_defaults(
        decode(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "spec": {"strategy": {"rollingUpdate": {"maxSurge": 0}}},
            }
        )
    )
    assert to_dict(dep)["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0},
    }


def test_replica_set_defaults():
    rs = apply_defaults(
        decode({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": {"spec": {}}}})
    )
    assert rs.spec.replicas == 1
    assert rs.spec.template.spec.restart_policy == "Always"


def test_daemon_set_defaults():
    ds = apply_defaults(_load("daemonset-fluentd.yaml"))
    spec = to_dict(ds)["spec"]
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert spec["template"]["spec"]["volumes"][0]["hostPath"] == {"path": "/var/log", "type": ""}
    on_delete = apply_defaults(
        decode(
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "spec": {"updateStrategy": {"type": "OnDelete"}},
            }
        )
    )
    assert to_dict(on_delete)["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_job_defaults():
    job = apply_defaults(_load("job-pi.yaml"))
    spec = to_dict(job)["spec"]
    assert {k: v for k, v in spec.items() if k != "template"} == {
        "parallelism": 1,
        "completions": 1,
        "backoffLimit": 4,  # given
        "completionMode": "NonIndexed",
        "suspend": False,
        "podReplacementPolicy": "TerminatingOrFailed",
    }
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # given


def test_job_with_parallelism_only_keeps_completions_unset():
    job = apply_defaults(
        decode({"apiVersion": "batch/v1", "kind": "Job", "spec": {"parallelism": 3}})
    )
    assert (job.spec.parallelism, job.spec.completions, job.spec.backoff_limit) == (3, None, 6)
    job = apply_defaults(
        decode({"apiVersion": "batch/v1", "kind": "Job", "spec": {"completions": 5}})
    )
    assert (job.spec.parallelism, job.spec.completions) == (1, 5)


def test_job_copies_template_labels_when_it_has_none():
    job = apply_defaults(
        decode(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"metadata": {"labels": {"app": "pi"}}}},
            }
        )
    )
    assert job.metadata.labels == {"app": "pi"}
    labelled = apply_defaults(
        decode(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"labels": {"own": "x"}},
                "spec": {"template": {"metadata": {"labels": {"app": "pi"}}}},
            }
        )
    )
    assert labelled.metadata.labels == {"own": "x"}


def test_generate_job_selector_uses_the_uid():
    job = apply_defaults(_load("job-pi.yaml"))
    job.metadata.uid = "1234-abcd"
    generate_job_selector(job)
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": "1234-abcd"}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "pi"
    assert job.spec.selector.matches(job.spec.template.metadata.labels)


def test_cron_job_defaults():
    cj = apply_defaults(_load("cronjob-hello.yaml"))
    spec = to_dict(cj)["spec"]
    assert {k: v for k, v in spec.items() if k not in ("jobTemplate", "schedule")} == {
        "concurrencyPolicy": "Allow",
        "suspend": False,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
    }
    pod_spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "OnFailure"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert (
        "backoffLimit" not in spec["jobTemplate"]["spec"]
    )  # Kubernetes does not default job templates


def test_secret_defaults_type_and_folds_string_data_into_data():
    basic = apply_defaults(_load("secrets.yaml", 1))
    assert basic.type == "kubernetes.io/basic-auth"
    assert basic.string_data == {}
    assert {k: base64.b64decode(v) for k, v in basic.data.items()} == {
        "username": b"admin",
        "password": b"t0p-Secret",
    }
    opaque = apply_defaults(_load("secrets.yaml", 0))
    assert opaque.type == "Opaque"
    assert opaque.data == {".secret-file": "dmFsdWUtMg0KDQo="}


def test_namespace_defaults():
    ns = apply_defaults(_load("cluster.yaml", 0))
    assert ns.status.phase == "Active"
    assert ns.metadata.labels == {
        "name": "development",
        "kubernetes.io/metadata.name": "development",
    }


def test_node_allocatable_defaults_to_capacity():
    node = apply_defaults(
        decode(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "status": {"capacity": {"cpu": "4", "pods": "110"}},
            }
        )
    )
    assert node.status.allocatable == {"cpu": "4", "pods": "110"}


def test_kinds_without_defaults_are_untouched():
    for name, index in (("configmap-game-demo.yaml", 0), ("cluster.yaml", 1), ("cluster.yaml", 4)):
        obj = _load(name, index)
        assert to_dict(apply_defaults(clone(obj))) == to_dict(obj)


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("nginx-deployment.yaml", 0),
        ("job-pi.yaml", 0),
        ("cronjob-hello.yaml", 0),
        ("daemonset-fluentd.yaml", 0),
        ("pod-env-volumes-probes.yaml", 0),
        ("pod-from-server.yaml", 0),
        ("services.yaml", 2),
        ("secrets.yaml", 1),
    ],
)
def test_defaulting_is_idempotent(name, index):
    once = to_dict(apply_defaults(_load(name, index)))
    twice = to_dict(apply_defaults(decode(once)))
    assert twice == once


def test_a_server_returned_pod_is_already_fully_defaulted():
    pod = _load("pod-from-server.yaml")
    assert to_dict(apply_defaults(clone(pod))) == to_dict(pod)


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([None], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        (
            [
                {
                    "limits": {"cpu": "1", "memory": "1Gi"},
                    "requests": {"cpu": "1000m", "memory": "1024Mi"},
                }
            ],
            "Guaranteed",
        ),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, None], "Burstable"),
    ],
)
def test_qos_class(resources, expected):
    containers = [
        {"name": f"c{i}", "image": "i", **({"resources": r} if r else {})}
        for i, r in enumerate(resources)
    ]
    pod = decode({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": containers}})
    assert qos_class(pod.spec) == expected
