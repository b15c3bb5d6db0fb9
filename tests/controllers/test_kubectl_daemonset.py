"""End to end: a DaemonSet's history with the real kubectl against the daemon (one node on
runtime_sim): ``set image``, ``rollout status|history|undo``, ``get controllerrevisions``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .helpers import ok, wait_for

pytestmark = pytest.mark.slow

MANIFEST = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "agent"},
    "spec": {
        "selector": {"matchLabels": {"app": "agent"}},
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "a", "image": "agent:1"}],
            },
        },
    },
}


@pytest.fixture(scope="module")
def daemon(sim_daemon):
    yield sim_daemon
    sim_daemon.kubectl("delete", "daemonsets", "--all", "--wait=false")


def get(daemon, *what: str) -> Any:
    return json.loads(ok(daemon.kubectl("get", *what, "-o", "json")))


def rolled_out(daemon) -> None:
    out = ok(daemon.kubectl("rollout", "status", "daemonset/agent", "--timeout=60s", timeout=90))
    assert "successfully rolled out" in out


def pod_images(daemon) -> set[str]:
    pods = get(daemon, "pods", "-l", "app=agent")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return {p["spec"]["containers"][0]["image"] for p in live}


def test_history_and_undo(daemon):
    ok(daemon.kubectl("apply", "-f", "-", input=json.dumps(MANIFEST)))
    rolled_out(daemon)
    # The revision copies the DaemonSet's annotations when it is made.
    ok(daemon.kubectl("annotate", "daemonset/agent", "kubernetes.io/change-cause=to 2"))
    ok(daemon.kubectl("set", "image", "daemonset/agent", "a=agent:2"))
    rolled_out(daemon)
    wait_for(lambda: pod_images(daemon) == {"agent:2"}, what="the pod of agent:2")

    table = ok(daemon.kubectl("get", "controllerrevisions"))
    assert table.split("\n")[0].split() == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert "daemonset.apps/agent" in table
    history = ok(daemon.kubectl("rollout", "history", "daemonset/agent"))
    lines = [line.split(None, 1) for line in history.splitlines()[2:] if line.strip()]
    assert lines == [["1", "<none>"], ["2", "to 2"]]
    assert "agent:1" in ok(daemon.kubectl("rollout", "history", "daemonset/agent", "--revision=1"))

    assert "rolled back" in ok(daemon.kubectl("rollout", "undo", "daemonset/agent"))
    rolled_out(daemon)
    wait_for(lambda: pod_images(daemon) == {"agent:1"}, what="the pod of agent:1 again")
    ds = get(daemon, "ds", "agent")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:1"
    revisions = sorted(r["revision"] for r in get(daemon, "controllerrevisions")["items"])
    assert revisions == [2, 3]
