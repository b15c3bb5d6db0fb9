"""The official Python `kubernetes` client against a running daemon."""

from __future__ import annotations

import threading
import time

import pytest
from daemon_process import start_daemon, stop_daemon
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def k8s(daemon):
    return config.new_client_from_config(config_file=str(daemon.kubeconfig))


def test_configmap_crud_and_conflict(k8s):
    v1 = client.CoreV1Api(k8s)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"a": "1"})
    created = v1.create_namespaced_config_map("default", body)
    assert isinstance(created.metadata.resource_version, str)
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_config_map("default", body)
    assert err.value.status == 409
    got = v1.read_namespaced_config_map("py-cm", "default")
    got.data["a"] = "2"
    updated = v1.replace_namespaced_config_map("py-cm", "default", got)
    assert updated.data == {"a": "2"}
    got.data["a"] = "3"
    with pytest.raises(ApiException) as err:
        v1.replace_namespaced_config_map("py-cm", "default", got)
    assert err.value.status == 409
    patched = v1.patch_namespaced_config_map("py-cm", "default", {"data": {"b": "x"}})
    assert patched.data == {"a": "2", "b": "x"}
    listed = v1.list_namespaced_config_map("default", label_selector="")
    assert "py-cm" in [c.metadata.name for c in listed.items]
    v1.delete_namespaced_config_map("py-cm", "default")
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_config_map("py-cm", "default")
    assert err.value.status == 404


def test_pod_service_secret_namespace(k8s):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py-ns")))
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    created = v1.create_namespaced_pod("py-ns", pod)
    assert created.status.phase == "Pending"
    assert created.spec.containers[0].image_pull_policy == "Always"
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="py-svc"),
        spec=client.V1ServiceSpec(selector={"app": "py"}, ports=[client.V1ServicePort(port=80)]),
    )
    created_svc = v1.create_namespaced_service("py-ns", svc)
    assert created_svc.spec.ports[0].target_port == 80
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="py-secret"), string_data={"k": "v"})
    created_secret = v1.create_namespaced_secret("py-ns", secret)
    assert created_secret.data == {"k": "dg=="} and created_secret.type == "Opaque"
    deleted = v1.delete_namespaced_pod("py-pod", "py-ns")
    assert deleted.metadata.name == "py-pod"
    deleted_svc = v1.delete_namespaced_service("py-svc", "py-ns")
    assert deleted_svc.metadata.name == "py-svc"
    v1.delete_namespaced_secret("py-secret", "py-ns")
    v1.delete_namespace("py-ns")


def test_deployment_scale_subresource(k8s):
    apps = client.AppsV1Api(k8s)
    labels = {"app": "py-web"}
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
            ),
        ),
    )
    apps.create_namespaced_deployment("default", dep)
    scale = apps.read_namespaced_deployment_scale("py-web", "default")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=py-web"
    apps.patch_namespaced_deployment_scale("py-web", "default", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("py-web", "default").spec.replicas == 3
    apps.delete_namespaced_deployment("py-web", "default")


def test_watch_stream_and_resume(k8s):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w-0"))
    )
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def writer():
        for i in range(1, 4):
            v1.create_namespaced_config_map(
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"w-{i}"))
            )

    thread = None
    for event in w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=20):
        name = event["object"].metadata.name
        if not name.startswith("w-"):
            continue
        seen.append((event["type"], name))
        if thread is None:
            thread = threading.Thread(target=writer)
            thread.start()
        if len(seen) == 4:
            w.stop()
    thread.join()
    assert seen == [("ADDED", f"w-{i}") for i in range(4)]
    # resume: from the last resourceVersion only later events arrive
    last = w.resource_version
    v1.delete_namespaced_config_map("w-0", "default")
    events = []
    for event in watch.Watch().stream(
        v1.list_namespaced_config_map, "default", resource_version=last, timeout_seconds=5
    ):
        events.append((event["type"], event["object"].metadata.name))
        break
    assert events == [("DELETED", "w-0")]
    for i in range(1, 4):
        v1.delete_namespaced_config_map(f"w-{i}", "default")


@pytest.mark.timeout(60)
def test_watch_410_raises_after_one_retry(tmp_path):
    """A daemon that compacts every second: a watch from an old revision gets a 410 ERROR
    event, which the client retries once and then raises."""
    d = start_daemon(tmp_path, daemon_args=("--compaction-interval", "0.5"))
    try:
        v1 = client.CoreV1Api(config.new_client_from_config(config_file=str(d.kubeconfig)))
        for i in range(3):
            v1.create_namespaced_config_map(
                "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}"))
            )
        time.sleep(1.5)
        with pytest.raises(ApiException) as err:
            # No timeout_seconds: with one, the client ends quietly instead of retrying.
            for _ in watch.Watch().stream(
                v1.list_namespaced_config_map, "default", resource_version="1"
            ):
                pass
        assert err.value.status == 410
    finally:
        assert stop_daemon(d) == 0
