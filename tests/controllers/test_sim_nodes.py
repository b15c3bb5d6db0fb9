"""Simulated nodes (``kcore sim-nodes``, the runtime_sim plugin): in process on an
in-memory API, then end to end with the daemon (controllers and scheduler, no node agent),
kubectl, a DaemonSet, a Deployment and a node that stops heartbeating."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from daemon_process import clean_env, start_daemon, stop_daemon

from kcore.errors import BadRequest
from kcore.plugins.runtime_sim.nodes import SimNodes

from .helpers import eventually, ok

NS = "default"


def pod(name: str, node: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], **spec},
    }


# -- in process ----------------------------------------------------------------------------


@pytest.fixture
async def sim(cluster, tmp_path):
    nodes = SimNodes(cluster.api, tmp_path, count=2, heartbeat=0.2, labels={"zone": "z"})
    await nodes.start()
    try:
        yield nodes
    finally:
        await nodes.stop()


async def test_nodes_register_and_heartbeat(cluster, sim):
    api = cluster.api

    async def registered():
        nodes, _ = await api.list("v1", "Node")
        posted = [n for n in nodes if (n.get("status") or {}).get("conditions")]
        return posted if len(posted) == 2 else None

    nodes = sorted(await eventually(registered), key=lambda n: n["metadata"]["name"])
    first = nodes[0]
    assert first["metadata"]["name"] == "sim-0"
    assert first["metadata"]["labels"]["kubernetes.io/hostname"] == "sim-0"
    assert first["metadata"]["labels"]["zone"] == "z"
    assert first["spec"]["podCIDR"] == "10.128.0.0/24"
    assert nodes[1]["spec"]["podCIDR"] == "10.128.1.0/24"
    status = first["status"]
    assert status["allocatable"] == status["capacity"]
    assert {k: status["capacity"][k] for k in ("cpu", "memory", "pods")} == {
        "cpu": "8",
        "memory": "32Gi",
        "pods": "110",
    }
    assert [(c["type"], c["status"]) for c in status["conditions"]][-1] == ("Ready", "True")
    assert {"type": "InternalIP", "address": "172.16.0.1"} in status["addresses"]

    async def renewed(name: str, before: str | None) -> str | None:
        lease = await api.get("coordination.k8s.io/v1", "Lease", name, "kube-node-lease")
        assert lease["metadata"]["ownerReferences"][0]["name"] == name
        renew = lease["spec"]["renewTime"]
        return renew if renew != before else None

    seen = await eventually(lambda: renewed("sim-1", None))
    await eventually(lambda: renewed("sim-1", seen))

    sim.nodes["sim-1"].stop_heartbeat()  # a lost node: no more renewals
    await asyncio.sleep(0.3)
    stopped = await renewed("sim-1", None)
    await asyncio.sleep(0.5)
    assert await renewed("sim-1", stopped) is None
    sim.nodes["sim-1"].resume_heartbeat()
    await eventually(lambda: renewed("sim-1", stopped))


async def test_stop_heartbeat_after(cluster, tmp_path):
    with pytest.raises(BadRequest, match="unknown nodes: nope"):
        SimNodes(cluster.api, tmp_path, stop_heartbeat_after={"nope": 1})
    nodes = SimNodes(cluster.api, tmp_path, count=2, stop_heartbeat_after={"sim-1": 0.2})
    await nodes.start()
    try:
        await eventually(lambda: nodes.nodes["sim-1"].lost)
        assert not nodes.nodes["sim-0"].lost
        (tmp_path / "sim-nodes" / "sim-0.stop").touch()  # the control directory
        await eventually(lambda: nodes.nodes["sim-0"].lost)
        (tmp_path / "sim-nodes" / "sim-0.stop").unlink()
        await eventually(lambda: not nodes.nodes["sim-0"].lost)
    finally:
        await nodes.stop()


async def wait_pod(api, name: str, check: Callable[[dict], bool]) -> dict:
    async def get():
        p = await api.get("v1", "Pod", name, NS)
        return p if check(p) else None

    return await eventually(get)


def phase(p: dict) -> str | None:
    return (p.get("status") or {}).get("phase")


async def test_pods_run_as_scripted_and_are_deleted(cluster, sim):
    api = cluster.api
    await api.create(pod("web", "sim-0"))
    web = await wait_pod(api, "web", lambda p: phase(p) == "Running")
    status = web["status"]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network("10.128.0.0/24")
    assert status["hostIP"] == "172.16.0.1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    (cs,) = status["containerStatuses"]
    assert cs["ready"] and "running" in cs["state"] and cs["restartCount"] == 0

    await api.create(
        pod(
            "job",
            "sim-1",
            {"sim.kcore.io/run-seconds": "0.2", "c.sim.kcore.io/exit-code": "3"},
            restartPolicy="Never",
            initContainers=[{"name": "init", "image": "busybox"}],
        )
    )
    job = await wait_pod(api, "job", lambda p: phase(p) == "Failed")
    (cs,) = job["status"]["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 3
    assert job["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0

    await api.create(
        pod("crash", "sim-1", {"sim.kcore.io/run-seconds": "0.1", "sim.kcore.io/exit-code": "1"})
    )
    crash = await wait_pod(
        api,
        "crash",
        lambda p: (
            "waiting" in ((p["status"].get("containerStatuses") or [{}])[0].get("state") or {})
        ),
    )
    (cs,) = crash["status"]["containerStatuses"]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["restartCount"] == 1 and cs["lastState"]["terminated"]["exitCode"] == 1

    # Deletion: the containers stop, the pod gets its terminal phase and is removed.
    await api.delete("v1", "Pod", "web", NS)

    async def gone():
        pods, _ = await api.list("v1", "Pod", NS)
        return "web" not in {p["metadata"]["name"] for p in pods}

    await eventually(gone)
    assert sim.nodes["sim-0"].pods == {}

    # A lost node leaves its pods Terminating until it comes back.
    sim.nodes["sim-1"].stop_heartbeat()
    await api.delete("v1", "Pod", "crash", NS)
    await asyncio.sleep(0.5)
    assert (await api.get("v1", "Pod", "crash", NS))["metadata"]["deletionTimestamp"]
    sim.nodes["sim-1"].resume_heartbeat()
    await eventually(lambda: _missing(api, "crash"))


async def _missing(api, name: str) -> bool:
    pods, _ = await api.list("v1", "Pod", NS)
    return name not in {p["metadata"]["name"] for p in pods}


# -- end to end ----------------------------------------------------------------------------

MANIFESTS = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: example.com/agent:1}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""


def wide_rows(output: str) -> list[dict[str, str]]:
    """``kubectl get -o wide`` as rows of column -> value (columns cut at the header's
    offsets; a header like ``NOMINATED NODE`` is one column)."""
    lines = output.splitlines()
    if not lines:
        return []
    names = re.split(r"\s{2,}", lines[0].strip())
    starts, pos = [], 0
    for name in names:
        pos = lines[0].index(name, pos)
        starts.append(pos)
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def poll(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not within {timeout}s: {what}"
            return value
        time.sleep(0.3)


@pytest.fixture
def cluster_with_sim_nodes(tmp_path):
    (tmp_path / "d").mkdir()
    daemon = start_daemon(
        tmp_path / "d",
        "--plugins",
        "store_sqlite,runtime_sim,volumes,controllers,scheduler",
        "--node-monitor-grace-period",
        "3",
        "--pod-eviction-timeout",
        "2",
        daemon_args=("--controllers",),
    )
    sim_dir = tmp_path / "s"
    sim_dir.mkdir()
    proc = None
    try:
        with open(sim_dir / "sim-nodes.log", "w") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kcore",
                    "--log-format=json",
                    "--data-dir",
                    str(sim_dir),
                    "--plugins",
                    "runtime_sim",
                    "sim-nodes",
                    "--kubeconfig",
                    str(daemon.kubeconfig),
                    "--count",
                    "3",
                    "--heartbeat",
                    "0.5",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=clean_env(),
            )
        line = proc.stdout.readline()
        assert line.startswith("kcore sim-nodes: 3 nodes running"), (
            line + (sim_dir / "sim-nodes.log").read_text()
        )
        yield daemon, sim_dir / "sim-nodes"
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        stop_daemon(daemon)


@pytest.mark.slow
def test_daemon_set_deployment_and_a_lost_node(cluster_with_sim_nodes):
    daemon, control_dir = cluster_with_sim_nodes
    nodes = {"sim-0", "sim-1", "sim-2"}

    def ready_nodes() -> set[str]:
        return {
            r["NAME"]
            for r in wide_rows(ok(daemon.kubectl("get", "nodes")))
            if r["STATUS"] == "Ready"
        }

    poll(lambda: ready_nodes() == nodes, what="3 Ready nodes")
    ok(daemon.kubectl("apply", "-f", "-", input=MANIFESTS))

    def pods(prefix: str, status: str = "Running") -> list[dict[str, str]]:
        rows = wide_rows(ok(daemon.kubectl("get", "pods", "-o", "wide")))
        return [r for r in rows if r["NAME"].startswith(prefix) and r["STATUS"] == status]

    def agents_everywhere():
        running = pods("agent-")
        return running if sorted(r["NODE"] for r in running) == sorted(nodes) else None

    poll(agents_everywhere, what="one DaemonSet pod Running on each node")
    ds = ok(daemon.kubectl("get", "ds", "agent", "-o", "jsonpath={.status.numberReady}"))
    assert ds == "3"

    web = poll(lambda: (r := pods("web-")) and len(r) == 6 and r, what="6 web pods Running")
    assert {r["NODE"] for r in web} == nodes  # spread over every node
    lost = [r["NAME"] for r in web if r["NODE"] == "sim-1"]

    # sim-1 stops heartbeating: NotReady (Unknown), tainted, its web pods are evicted
    # (shown Unknown while they wait for the node) and replaced on the other nodes.
    (control_dir / "sim-1.stop").touch()
    poll(
        lambda: (
            "sim-1" not in ready_nodes()
            and "NotReady" in ok(daemon.kubectl("get", "node", "sim-1"))
        ),
        what="sim-1 NotReady",
    )
    ready = ok(
        daemon.kubectl(
            "get", "node", "sim-1", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        )
    )
    assert ready == "Unknown"
    taints = ok(daemon.kubectl("get", "node", "sim-1", "-o", "jsonpath={.spec.taints[*].key}"))
    assert taints.split() == ["node.kubernetes.io/unreachable"] * 2

    def replaced():
        running = [r for r in pods("web-") if r["NODE"] != "sim-1"]
        unknown = {r["NAME"] for r in pods("web-", "Unknown")}
        return len(running) == 6 and unknown == set(lost)

    poll(replaced, what="web pods of sim-1 Unknown and replaced elsewhere")
    assert [r["NODE"] for r in pods("agent-") if r["NODE"] == "sim-1"] == ["sim-1"]  # tolerated

    # sim-1 comes back: Ready, untainted, and the evicted pods finally go.
    os.unlink(control_dir / "sim-1.stop")
    poll(lambda: ready_nodes() == nodes, what="sim-1 Ready again")
    poll(lambda: not pods("web-", "Unknown"), what="evicted pods gone")
    assert ok(daemon.kubectl("get", "node", "sim-1", "-o", "jsonpath={.spec.taints}")) == ""
    assert len(pods("web-")) == 6
