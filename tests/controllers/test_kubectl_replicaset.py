"""End to end: the real daemon (API and controllers, no node agent) and the real kubectl.
A ReplicaSet applied with kubectl gets its pods; ``kubectl scale`` moves them."""

from __future__ import annotations

import json
import time

import pytest
from daemon_process import start_daemon, stop_daemon

from .helpers import ok

pytestmark = pytest.mark.slow

MANIFEST = """\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
  labels: {app: guestbook}
spec:
  replicas: 3
  selector:
    matchLabels: {tier: frontend}
  template:
    metadata:
      labels: {tier: frontend}
    spec:
      containers:
      - name: php-redis
        image: us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("kcore-rs"), daemon_args=("--controllers",))
    try:
        yield d
    finally:
        stop_daemon(d)


def owned_pods(daemon, rs_uid: str) -> list[dict]:
    pods = json.loads(ok(daemon.kubectl("get", "pods", "-l", "tier=frontend", "-o", "json")))[
        "items"
    ]
    return [
        p
        for p in pods
        if any(
            r.get("uid") == rs_uid and r.get("controller")
            for r in p["metadata"].get("ownerReferences", [])
        )
        and not p["metadata"].get("deletionTimestamp")
    ]


def wait_for_pods(daemon, rs_uid: str, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        pods = owned_pods(daemon, rs_uid)
        if len(pods) == count:
            return pods
        assert time.monotonic() < deadline, f"{len(pods)} pods, expected {count}"
        time.sleep(0.2)


def test_kubectl_apply_and_scale_a_replica_set(daemon):
    assert "replicaset.apps/frontend created" in ok(
        daemon.kubectl("apply", "-f", "-", input=MANIFEST)
    )
    rs = json.loads(ok(daemon.kubectl("get", "rs", "frontend", "-o", "json")))
    uid = rs["metadata"]["uid"]
    pods = wait_for_pods(daemon, uid, 3)
    for pod in pods:
        assert pod["metadata"]["name"].startswith("frontend-")
        (ref,) = pod["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "frontend",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    assert "scaled" in ok(daemon.kubectl("scale", "rs", "frontend", "--replicas=5"))
    wait_for_pods(daemon, uid, 5)
    assert "scaled" in ok(daemon.kubectl("scale", "rs", "frontend", "--replicas=1"))
    wait_for_pods(daemon, uid, 1)

    deadline = time.monotonic() + 30
    while True:
        rs = json.loads(ok(daemon.kubectl("get", "rs", "frontend", "-o", "json")))
        if (
            rs.get("status", {}).get("replicas") == 1
            and rs["status"].get("observedGeneration") == 3
        ):
            break
        assert time.monotonic() < deadline, rs.get("status")
        time.sleep(0.2)
    events = ok(daemon.kubectl("get", "events", "--field-selector", "involvedObject.name=frontend"))
    assert "SuccessfulCreate" in events and "SuccessfulDelete" in events
    lease = json.loads(
        ok(
            daemon.kubectl(
                "get", "lease", "-n", "kube-system", "kcore-controller-manager", "-o", "json"
            )
        )
    )
    assert lease["spec"]["holderIdentity"]
    assert lease["spec"]["leaseDurationSeconds"] == 15


def test_no_controllers_runs_the_api_alone(tmp_path):
    d = start_daemon(tmp_path, daemon_args=("--no-controllers",))
    try:
        ok(d.kubectl("apply", "-f", "-", input=MANIFEST))
        time.sleep(1.0)
        assert json.loads(ok(d.kubectl("get", "pods", "-o", "json")))["items"] == []
        missing = d.kubectl("get", "lease", "-n", "kube-system", "kcore-controller-manager")
        assert missing.returncode != 0 and "NotFound" in missing.stderr
    finally:
        assert stop_daemon(d) == 0
