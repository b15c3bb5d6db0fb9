"""End to end: ``kubectl delete --cascade=background|foreground|orphan`` and ``kubectl
delete namespace`` against the daemon (API, controllers, scheduler, a node agent on
runtime_sim), as Kubernetes does them."""

from __future__ import annotations

import json
import time

import pytest

from .helpers import ok, wait_for

pytestmark = pytest.mark.slow


def replica_set(name: str, namespace: str = "default") -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "busybox"}],
                    },
                },
            },
        }
    )


@pytest.fixture(scope="module")
def daemon(sim_daemon):
    return sim_daemon


def pods_of(daemon, app: str, namespace: str = "default") -> list[dict]:
    out = ok(daemon.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json"))
    return json.loads(out)["items"]


def running_pods(daemon, app: str, namespace: str = "default") -> list[dict]:
    def two_running():
        pods = pods_of(daemon, app, namespace)
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return len(running) == 2 and running

    return wait_for(two_running, what=f"2 running pods of {app}")


def test_cascade_background(daemon):
    ok(daemon.kubectl("apply", "-f", "-", input=replica_set("bg")))
    running_pods(daemon, "bg")
    assert 'replicaset.apps "bg" deleted' in ok(
        daemon.kubectl("delete", "rs", "bg", "--cascade=background")
    )
    wait_for(lambda: pods_of(daemon, "bg") == [], what="the pods to go")


def test_cascade_foreground(daemon):
    ok(daemon.kubectl("apply", "-f", "-", input=replica_set("fg")))
    running_pods(daemon, "fg")
    # kubectl waits until the ReplicaSet is gone, which is after its pods.
    assert 'replicaset.apps "fg" deleted' in ok(
        daemon.kubectl("delete", "rs", "fg", "--cascade=foreground")
    )
    assert pods_of(daemon, "fg") == []


def test_cascade_orphan(daemon):
    ok(daemon.kubectl("apply", "-f", "-", input=replica_set("or")))
    pods = running_pods(daemon, "or")
    ok(daemon.kubectl("delete", "rs", "or", "--cascade=orphan"))
    assert "NotFound" in daemon.kubectl("get", "rs", "or").stderr
    time.sleep(1)  # the collector has had its chance: nothing more happens
    left = pods_of(daemon, "or")
    assert sorted(p["metadata"]["uid"] for p in left) == sorted(p["metadata"]["uid"] for p in pods)
    assert all(not p["metadata"].get("ownerReferences") for p in left)
    assert all(not p["metadata"].get("deletionTimestamp") for p in left)
    ok(daemon.kubectl("delete", "pods", "-l", "app=or"))


@pytest.mark.parametrize("cascade", ["foreground", "orphan"])
def test_deleting_a_deployment(daemon, cascade):
    name = f"dep-{cascade}"
    manifest = json.loads(replica_set(name))
    manifest["kind"] = "Deployment"
    ok(daemon.kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    pods = running_pods(daemon, name)
    ok(daemon.kubectl("delete", "deployment", name, f"--cascade={cascade}"))
    rs = json.loads(ok(daemon.kubectl("get", "rs", "-l", f"app={name}", "-o", "json")))["items"]
    if cascade == "foreground":
        assert rs == [] and pods_of(daemon, name) == []
        return
    (kept,) = rs
    assert not kept["metadata"].get("ownerReferences")
    time.sleep(1)
    left = pods_of(daemon, name)
    assert sorted(p["metadata"]["uid"] for p in left) == sorted(p["metadata"]["uid"] for p in pods)
    ok(daemon.kubectl("delete", "rs", "-l", f"app={name}"))
    wait_for(lambda: pods_of(daemon, name) == [], what="the orphaned pods to go with their RS")


def test_delete_namespace_removes_everything_in_it(daemon):
    ok(daemon.kubectl("create", "namespace", "doomed"))
    ok(daemon.kubectl("apply", "-f", "-", input=replica_set("web", namespace="doomed")))
    ok(daemon.kubectl("create", "configmap", "settings", "-n", "doomed", "--from-literal=a=b"))
    running_pods(daemon, "web", "doomed")
    ns = json.loads(ok(daemon.kubectl("get", "namespace", "doomed", "-o", "json")))
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert 'namespace "doomed" deleted' in ok(
        daemon.kubectl("delete", "namespace", "doomed", timeout=90)
    )
    assert "NotFound" in daemon.kubectl("get", "namespace", "doomed").stderr
    for kind in ("pods", "replicasets", "configmaps", "serviceaccounts"):
        out = ok(daemon.kubectl("get", kind, "-n", "doomed", "-o", "json"))
        assert json.loads(out)["items"] == [], kind


def test_creating_in_a_terminating_namespace_is_refused(daemon):
    ok(daemon.kubectl("create", "namespace", "closing"))
    held = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "held", "namespace": "closing", "finalizers": ["example.com/x"]},
        }
    )
    ok(daemon.kubectl("apply", "-f", "-", input=held))
    ok(daemon.kubectl("delete", "namespace", "closing", "--wait=false"))
    phase = ok(daemon.kubectl("get", "namespace", "closing", "-o", "jsonpath={.status.phase}"))
    assert phase == "Terminating"
    refused = daemon.kubectl("create", "configmap", "late", "-n", "closing")
    assert refused.returncode != 0
    assert (
        'configmaps "late" is forbidden: unable to create new content in namespace closing '
        "because it is being terminated"
    ) in refused.stderr
    ok(daemon.kubectl("patch", "configmap", "held", "-n", "closing", "--type=merge", "-p",
                      '{"metadata":{"finalizers":null}}'))  # fmt: skip
    wait_for(
        lambda: daemon.kubectl("get", "namespace", "closing").returncode != 0,
        what="the namespace to go",
    )


def test_system_namespaces_cannot_be_deleted(daemon):
    refused = daemon.kubectl("delete", "namespace", "kube-system")
    assert refused.returncode != 0
    assert (
        'Error from server (Forbidden): namespaces "kube-system" is forbidden: this namespace '
        "may not be deleted"
    ) in refused.stderr
