"""Node registration, status and Lease heartbeat against an in-process API server."""

from __future__ import annotations

import asyncio

import pytest
from inprocess_api import in_process_api

from kcore.nodeagent.node_status import LEASE_NAMESPACE, NodeStatusManager, machine_facts


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRuntime:
    def __init__(self):
        self.ready = True

    async def status(self):
        return {"conditions": [{"type": "RuntimeReady", "status": self.ready, "message": "down"}]}

    async def version(self):
        return {"runtime_name": "kcore-runtime-linux", "runtime_version": "0.1.0"}


class FakeNetwork:
    def __init__(self):
        self.ready = True

    async def status(self):
        return {"ready": self.ready, "reason": "NoBridge", "message": "bridge missing"}


@pytest.fixture
async def api():
    async with in_process_api() as (client, _store, _objects):
        yield client


def manager(api, clock, **kw) -> NodeStatusManager:
    return NodeStatusManager(
        api, "node-a", node_ip="10.0.0.5", pod_cidr="10.244.0.0/24", clock=clock, **kw
    )


def conditions(node) -> dict:
    return {c["type"]: c for c in node["status"]["conditions"]}


async def test_register_posts_a_full_node(api):
    clock = Clock()
    nsm = manager(api, clock, runtime=FakeRuntime(), network=FakeNetwork())
    await nsm.register()
    node = await api.get("v1", "Node", "node-a")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node-a"
    assert labels["kubernetes.io/os"] == "linux"
    assert node["spec"]["podCIDR"] == "10.244.0.0/24"
    status = node["status"]
    assert status["capacity"]["pods"] == "110"
    assert status["capacity"]["memory"].endswith("Ki")
    assert status["allocatable"]["cpu"] == status["capacity"]["cpu"]
    assert {"type": "InternalIP", "address": "10.0.0.5"} in status["addresses"]
    assert status["nodeInfo"]["containerRuntimeVersion"] == "kcore-runtime-linux://0.1.0"
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    ready = conditions(node)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert conditions(node)["NetworkUnavailable"]["status"] == "False"
    assert conditions(node)["MemoryPressure"]["reason"] == "KubeletHasSufficientMemory"


async def test_lease_is_created_then_renewed(api):
    clock = Clock()
    nsm = manager(api, clock)
    await nsm.register()
    lease = await nsm.renew_lease()
    assert lease["spec"]["holderIdentity"] == "node-a"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["namespace"] == LEASE_NAMESPACE
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    first = lease["spec"]["renewTime"]
    clock.now += 10.5
    renewed = await nsm.renew_lease()
    assert renewed["spec"]["renewTime"] > first
    assert renewed["metadata"]["uid"] == lease["metadata"]["uid"]


async def test_network_not_ready_makes_the_node_not_ready_until_it_recovers(api):
    clock = Clock()
    network = FakeNetwork()
    network.ready = False
    nsm = manager(api, clock, runtime=FakeRuntime(), network=network)
    await nsm.register()
    node = await api.get("v1", "Node", "node-a")
    ready = conditions(node)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "KubeletNotReady")
    assert "NetworkReady=false" in ready["message"]
    assert conditions(node)["NetworkUnavailable"]["status"] == "True"
    clock.now += 30
    network.ready = True
    assert await nsm.sync_status()
    node = await api.get("v1", "Node", "node-a")
    ready = conditions(node)["Ready"]
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] > conditions(node)["MemoryPressure"]["lastTransitionTime"]


async def test_runtime_down_is_reported(api):
    runtime = FakeRuntime()
    runtime.ready = False
    nsm = manager(api, Clock(), runtime=runtime)
    await nsm.register()
    ready = conditions(await api.get("v1", "Node", "node-a"))["Ready"]
    assert ready["status"] == "False" and "container runtime is down" in ready["message"]


async def test_status_is_posted_on_change_or_when_due(api):
    clock = Clock()
    nsm = manager(api, clock, report_every=300)
    await nsm.register()
    rv = (await api.get("v1", "Node", "node-a"))["metadata"]["resourceVersion"]
    clock.now += 10
    assert not await nsm.sync_status()
    assert (await api.get("v1", "Node", "node-a"))["metadata"]["resourceVersion"] == rv
    clock.now += 300
    assert await nsm.sync_status()
    assert (await api.get("v1", "Node", "node-a"))["metadata"]["resourceVersion"] != rv


async def test_a_node_marked_unknown_by_the_controller_is_reported_ready_again(api):
    clock = Clock()
    nsm = manager(api, clock, report_every=300)
    await nsm.register()
    node = await api.get("v1", "Node", "node-a")
    for condition in node["status"]["conditions"]:
        condition["status"] = "Unknown"
    await api.update_status(node)  # what the node lifecycle controller does to a silent node
    clock.now += 10
    assert await nsm.sync_status()  # not due for 5 minutes, but the server's view is wrong
    assert conditions(await api.get("v1", "Node", "node-a"))["Ready"]["status"] == "True"
    clock.now += 10
    assert not await nsm.sync_status()


async def test_a_restarted_agent_adopts_its_node(api):
    first = manager(api, Clock())
    node = await first.register()
    second = manager(api, Clock(), labels={"extra": "yes"})
    again = await second.register()
    assert again["metadata"]["uid"] == node["metadata"]["uid"]
    assert again["metadata"]["labels"]["extra"] == "yes"


async def test_run_heartbeats_until_stopped(api):
    nsm = NodeStatusManager(api, "node-b", node_ip="10.0.0.6", heartbeat=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(nsm.run(stop))
    renew_times = set()
    for _ in range(100):
        await asyncio.sleep(0.02)
        try:
            lease = await api.get(
                "coordination.k8s.io/v1", "Lease", "node-b", namespace=LEASE_NAMESPACE
            )
        except Exception:
            continue
        renew_times.add(lease["spec"]["renewTime"])
        if len(renew_times) >= 3:
            break
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(renew_times) >= 3


def test_machine_facts_describe_this_machine(tmp_path):
    facts = machine_facts(tmp_path)
    assert int(facts["capacity"]["cpu"]) >= 1
    assert facts["nodeInfo"]["kernelVersion"]
    assert (
        facts["nodeInfo"]["architecture"] in ("amd64", "arm64") or facts["nodeInfo"]["architecture"]
    )
