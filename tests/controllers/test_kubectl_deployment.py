"""End to end: Deployments with the real kubectl against the daemon (API, controllers,
scheduler, a node agent on runtime_sim): apply, scale, ``set image`` and ``rollout
status|history|undo|pause|resume|restart``, and ``delete --cascade``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from .helpers import ok, wait_for

pytestmark = pytest.mark.slow

REVISION = "deployment.kubernetes.io/revision"


def manifest(name: str, replicas: int = 3, image: str = "nginx:1.25") -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "web", "image": image}],
                    },
                },
            },
        }
    )


@pytest.fixture(scope="module")
def daemon(sim_daemon):
    yield sim_daemon
    sim_daemon.kubectl("delete", "deployments,replicasets", "--all", "--wait=false")
    wait_for(lambda: not get(sim_daemon, "pods")["items"], what="every pod to go")


def get(daemon, *what: str) -> Any:
    return json.loads(ok(daemon.kubectl("get", *what, "-o", "json")))


def live_pods(daemon, app: str) -> list[dict]:
    pods = get(daemon, "pods", "-l", f"app={app}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def running_pods(daemon, app: str) -> list[dict]:
    return [p for p in live_pods(daemon, app) if p.get("status", {}).get("phase") == "Running"]


def replica_sets(daemon, app: str) -> list[dict]:
    items = get(daemon, "rs", "-l", f"app={app}")["items"]
    return sorted(items, key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, 0)))


def rollout_status(daemon, name: str) -> str:
    out = ok(daemon.kubectl("rollout", "status", f"deployment/{name}", "--timeout=60s", timeout=90))
    assert f'deployment "{name}" successfully rolled out' in out
    return out


def images(pods: list[dict]) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in pods}


def test_apply_then_scale_up_and_down(daemon):
    assert "deployment.apps/web created" in ok(
        daemon.kubectl("apply", "-f", "-", input=manifest("web", 3))
    )
    pods = wait_for(lambda: _count(running_pods(daemon, "web"), 3), what="3 running pods")
    (rs,) = replica_sets(daemon, "web")
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{h}-")
    rollout_status(daemon, "web")

    assert "deployment.apps/web scaled" in ok(daemon.kubectl("scale", "deploy/web", "--replicas=5"))
    wait_for(lambda: _count(running_pods(daemon, "web"), 5), what="5 running pods")
    rollout_status(daemon, "web")
    ok(daemon.kubectl("scale", "deployment", "web", "--replicas=2"))
    wait_for(lambda: _count(live_pods(daemon, "web"), 2), what="2 pods")
    rollout_status(daemon, "web")
    d = get(daemon, "deploy", "web")
    st = d["status"]
    assert (
        st["replicas"],
        st["updatedReplicas"],
        st["readyReplicas"],
        st["availableReplicas"],
    ) == (
        2,
        2,
        2,
        2,
    )
    assert st["observedGeneration"] == d["metadata"]["generation"] == 3
    table = ok(daemon.kubectl("get", "deploy", "web"))
    assert "2/2" in table.splitlines()[1]
    events = ok(daemon.kubectl("get", "events", "--field-selector", "involvedObject.name=web"))
    assert f"Scaled up replica set web-{h} from 0 to 3" in events
    assert f"Scaled down replica set web-{h} from 5 to 2" in events


def _count(items: list, n: int) -> list | None:
    return items if len(items) == n else None


def test_set_image_rolls_out_and_undo_goes_back(daemon):
    ok(daemon.kubectl("apply", "-f", "-", input=manifest("roll", 3)))
    rollout_status(daemon, "roll")
    out = ok(daemon.kubectl("set", "image", "deployment/roll", "web=nginx:1.26"))
    assert "deployment.apps/roll image updated" in out
    rollout_status(daemon, "roll")
    pods = wait_for(lambda: _count(live_pods(daemon, "roll"), 3), what="3 pods")
    assert images(pods) == {"nginx:1.26"}
    ok(daemon.kubectl("annotate", "deployment/roll", "kubernetes.io/change-cause=to 1.26"))
    old, new = wait_for(
        lambda: _with_cause(replica_sets(daemon, "roll")), what="the change-cause on the new RS"
    )
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 3
    history = ok(daemon.kubectl("rollout", "history", "deployment/roll"))
    lines = [line.split(None, 1) for line in history.splitlines()[2:] if line.strip()]
    assert lines == [["1", "<none>"], ["2", "to 1.26"]]
    detail = ok(daemon.kubectl("rollout", "history", "deployment/roll", "--revision=1"))
    assert "nginx:1.25" in detail

    assert "rolled back" in ok(daemon.kubectl("rollout", "undo", "deployment/roll"))
    rollout_status(daemon, "roll")
    pods = wait_for(
        lambda: _where(live_pods(daemon, "roll"), lambda ps: images(ps) == {"nginx:1.25"}),
        what="pods of the old image",
    )
    assert len(pods) == 3
    d = get(daemon, "deploy", "roll")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert d["metadata"]["annotations"][REVISION] == "3"
    rss = replica_sets(daemon, "roll")
    assert [rs["metadata"]["name"] for rs in rss] == [
        new["metadata"]["name"],
        old["metadata"]["name"],
    ]
    assert rss[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    history = ok(daemon.kubectl("rollout", "history", "deployment/roll"))
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


def _with_cause(rss: list[dict]) -> list[dict] | None:
    if len(rss) == 2 and rss[1]["metadata"]["annotations"].get("kubernetes.io/change-cause"):
        return rss
    return None


def _where(value: Any, predicate: Callable[[Any], bool]) -> Any:
    return value if predicate(value) else None


def test_pause_resume_and_restart(daemon):
    ok(daemon.kubectl("apply", "-f", "-", input=manifest("pz", 2)))
    rollout_status(daemon, "pz")
    assert "deployment.apps/pz paused" in ok(daemon.kubectl("rollout", "pause", "deployment/pz"))

    def paused_condition():
        d = get(daemon, "deploy", "pz")
        conds = {c["type"]: c for c in d["status"].get("conditions", [])}
        return conds["Progressing"]["reason"] == "DeploymentPaused" and conds["Progressing"]

    cond = wait_for(paused_condition, what="the DeploymentPaused condition")
    assert cond["status"] == "Unknown"
    ok(daemon.kubectl("set", "image", "deployment/pz", "web=nginx:1.26"))
    ok(daemon.kubectl("scale", "deployment/pz", "--replicas=3"))  # scaling works while paused
    wait_for(lambda: _count(running_pods(daemon, "pz"), 3), what="3 running pods")
    assert len(replica_sets(daemon, "pz")) == 1  # the template waits
    assert images(live_pods(daemon, "pz")) == {"nginx:1.25"}

    assert "deployment.apps/pz resumed" in ok(daemon.kubectl("rollout", "resume", "deployment/pz"))
    rollout_status(daemon, "pz")
    wait_for(
        lambda: _where(live_pods(daemon, "pz"), lambda ps: images(ps) == {"nginx:1.26"}),
        what="pods of the new image",
    )
    assert len(replica_sets(daemon, "pz")) == 2
    ok(daemon.kubectl("rollout", "pause", "deployment/pz"))
    refused = daemon.kubectl("rollout", "undo", "deployment/pz")
    assert refused.returncode != 0 and "cannot rollback a paused deployment" in refused.stderr
    ok(daemon.kubectl("rollout", "resume", "deployment/pz"))

    assert "deployment.apps/pz restarted" in ok(
        daemon.kubectl("rollout", "restart", "deployment/pz")
    )
    rollout_status(daemon, "pz")
    rss = replica_sets(daemon, "pz")
    assert len(rss) == 3
    newest = rss[-1]
    assert newest["spec"]["replicas"] == 3
    assert (
        "kubectl.kubernetes.io/restartedAt" in newest["spec"]["template"]["metadata"]["annotations"]
    )
    wait_for(lambda: _count(live_pods(daemon, "pz"), 3), what="3 pods")
    for pod in live_pods(daemon, "pz"):
        assert (
            pod["metadata"]["labels"]["pod-template-hash"]
            == (newest["metadata"]["labels"]["pod-template-hash"])
        )


@pytest.mark.parametrize("cascade", ["background", "foreground", "orphan"])
def test_delete_with_each_propagation_policy(daemon, cascade):
    name = f"del-{cascade}"
    ok(daemon.kubectl("apply", "-f", "-", input=manifest(name, 2)))
    rollout_status(daemon, name)
    (rs,) = replica_sets(daemon, name)
    pod_names = {p["metadata"]["name"] for p in live_pods(daemon, name)}
    out = ok(daemon.kubectl("delete", "deployment", name, f"--cascade={cascade}", timeout=90))
    assert f'deployment.apps "{name}" deleted' in out
    gone = daemon.kubectl("get", "deployment", name)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    if cascade == "orphan":
        (left,) = replica_sets(daemon, name)
        assert left["metadata"]["uid"] == rs["metadata"]["uid"]
        assert not left["metadata"].get("ownerReferences")
        time.sleep(1.0)
        pods = live_pods(daemon, name)
        assert {p["metadata"]["name"] for p in pods} == pod_names  # still the RS's
        ok(daemon.kubectl("delete", "rs", left["metadata"]["name"]))
    elif cascade == "foreground":
        # kubectl returned once the Deployment was gone: its ReplicaSet went first.
        assert not [
            r for r in replica_sets(daemon, name) if r["metadata"]["uid"] == rs["metadata"]["uid"]
        ]
    wait_for(lambda: not replica_sets(daemon, name), what="the ReplicaSet to go")
    wait_for(lambda: not get(daemon, "pods", "-l", f"app={name}")["items"], what="pods to go")
