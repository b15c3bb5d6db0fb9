"""The pod worker end to end: an in-process API server, a real NodeAgent and runtime_sim
(containers without processes), checked against the kubelet's behaviour: pod status,
restarts and back-off, init containers, image pulls, config errors, volumes, deletion,
agent restarts, orphans, and status writes only on change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import kcore.plugins.runtime_sim
from kcore.apiserver.objects import ObjectStore
from kcore.client import ApiClient
from kcore.client.inprocess import InProcessTransport
from kcore.daemon import bootstrap
from kcore.errors import NotFound
from kcore.interfaces import CONTAINER_EXITED, CONTAINER_RUNNING, RuntimeBackend
from kcore.nodeagent import containers as cri
from kcore.nodeagent.agent import NodeAgent
from kcore.nodeagent.backoff import Backoff
from kcore.plugins.runtime_sim.sim import (
    EXIT_CODE,
    RUN_SECONDS,
    START_ERROR,
    SimRuntime,
    make_backend,
)
from kcore.plugins.store_sqlite.backend import SqliteStore
from kcore.plugins.volumes import volume_sources
from kcore.plugins.volumes.mounts import mount_at, unmount_all
from kcore.settings import Settings

NODE = "sim-node"
NS = "default"
IMAGE = "kcore.test/app:1.0"
MISSING_IMAGE = "kcore.test/doesnotexist:1.0"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
CONDITION_TYPES = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
]


# --------------------------------------------------------------------------------------
# the simulated node
# --------------------------------------------------------------------------------------


class ScriptedSim(SimRuntime):
    """runtime_sim, scripted per container through what the node agent hands the runtime.

    The sim reads its script from the *container config's* annotations, where the agent
    puts only its own (``containers.container_config``); the pod's annotations reach the
    runtime only in the sandbox config. So this copies ``sim.kcore.io/<key>`` (every
    container of the pod) and ``<container>.sim.kcore.io/<key>`` (one container) from the
    sandbox's annotations, and keeps each container config for the tests to read."""

    def __init__(self, images: Any) -> None:
        super().__init__(images)
        self.configs: dict[str, Mapping[str, Any]] = {}

    async def create_container(
        self, pod_sandbox_id: str, config: Mapping[str, Any], sandbox_config: Mapping[str, Any]
    ) -> str:
        sandbox = await self.pod_sandbox_status(pod_sandbox_id)
        pod_annotations = sandbox.get("annotations") or {}
        name = (config.get("metadata") or {}).get("name")
        script = {}
        for key in (RUN_SECONDS, EXIT_CODE, START_ERROR):
            for candidate in (key, f"{name}.{key}"):
                if candidate in pod_annotations:
                    script[key] = pod_annotations[candidate]
        config = {**config, "annotations": {**script, **(config.get("annotations") or {})}}
        container_id = await super().create_container(pod_sandbox_id, config, sandbox_config)
        self.configs[container_id] = config
        return container_id


@dataclass
class Cluster:
    api: ApiClient
    backend: RuntimeBackend
    data_dir: Path
    agents: list[NodeAgent] = field(default_factory=list)

    @property
    def runtime(self) -> Any:
        return self.backend.runtime

    async def start_agent(self, **options: Any) -> NodeAgent:
        agent = NodeAgent(
            self.api,
            self.backend,
            node_name=NODE,
            data_dir=self.data_dir,
            network=None,
            volume_sources=volume_sources(),
            heartbeat=5.0,
            **options,
        )
        agent.restart_backoff = Backoff(initial=0.2, maximum=1.0)
        agent.image_backoff = Backoff(initial=0.2, maximum=1.0)
        await agent.start()
        self.agents.append(agent)
        return agent

    async def stop_agent(self, agent: NodeAgent) -> None:
        self.agents.remove(agent)
        await agent.close()

    async def containers(self, uid: str) -> list[Mapping[str, Any]]:
        """The pod's containers in the runtime, oldest attempt first."""
        found = await self.runtime.list_containers({"label_selector": {cri.POD_UID: uid}})
        return sorted(found, key=lambda r: (r["metadata"].get("attempt", 0), r["created_at"]))

    async def sandboxes(self, uid: str) -> list[Mapping[str, Any]]:
        return list(await self.runtime.list_pod_sandbox({"label_selector": {cri.POD_UID: uid}}))


@contextlib.asynccontextmanager
async def cluster_on(backend: RuntimeBackend, data_dir: Path) -> AsyncIterator[Cluster]:
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    api = ApiClient(InProcessTransport(objects))
    cluster = Cluster(api, backend, data_dir)
    try:
        yield cluster
    finally:
        # the runtime first, so that no container event wakes a worker while its agent
        # stops it (see test_a_worker_woken_just_before_it_stops_still_stops)
        await backend.close()
        for agent in reversed(cluster.agents):
            await agent.close()
        await api.close()
        await store.close()
        unmount_all(data_dir)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster_on(make_backend(tmp_path, runtime_class=ScriptedSim), tmp_path) as c:
        yield c


@pytest.fixture
async def agent(cluster: Cluster) -> NodeAgent:
    return await cluster.start_agent()


# --------------------------------------------------------------------------------------
# pods and what to read off them
# --------------------------------------------------------------------------------------


def container(name: str = "app", image: str = IMAGE, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


def pod(
    name: str,
    containers: list[dict[str, Any]],
    *,
    init: list[dict[str, Any]] | None = None,
    policy: str | None = None,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    # no ServiceAccount token volume: the in-process API has no token issuer
    body: dict[str, Any] = {
        "nodeName": NODE,
        "automountServiceAccountToken": False,
        "containers": containers,
        **spec,
    }
    if init:
        body["initContainers"] = init
    if policy:
        body["restartPolicy"] = policy
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def script(run: float | None = None, code: int | None = None, *, of: str = "") -> dict:
    """Pod annotations that script the sim (``of``: one container, else all)."""
    prefix = f"{of}." if of else ""
    out = {}
    if run is not None:
        out[prefix + RUN_SECONDS] = str(run)
    if code is not None:
        out[prefix + EXIT_CODE] = str(code)
    return out


def phase(p: Mapping[str, Any]) -> str | None:
    return (p.get("status") or {}).get("phase")


def cstatus(p: Mapping[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in (p.get("status") or {}).get(key) or []:
        if status.get("name") == name:
            return status
    return {}


def waiting(p: Mapping[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    return (cstatus(p, name, init=init).get("state") or {}).get("waiting") or {}


def running(p: Mapping[str, Any], name: str, *, init: bool = False) -> bool:
    return "running" in (cstatus(p, name, init=init).get("state") or {})


def restarts(p: Mapping[str, Any], name: str = "app") -> int:
    return int(cstatus(p, name).get("restartCount") or 0)


def conditions(p: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (p.get("status") or {}).get("conditions") or []}


async def get_pod(api: ApiClient, name: str) -> dict[str, Any] | None:
    try:
        return await api.get("v1", "Pod", name, NS)
    except NotFound:
        return None


async def events(api: ApiClient, name: str) -> list[dict[str, Any]]:
    items, _ = await api.list("v1", "Event", NS)
    return [e for e in items if e["involvedObject"].get("name") == name]


async def describe(api: ApiClient, name: str, p: Mapping[str, Any] | None) -> str:
    lines = [
        f"  {e['type']} {e['reason']} [{e['involvedObject'].get('fieldPath', '')}] x{e['count']}:"
        f" {e['message']}"
        for e in await events(api, name)
    ]
    status = json.dumps((p or {}).get("status"), indent=1)
    return f"last status seen: {status}\nevents:\n" + "\n".join(lines)


async def wait_for(
    api: ApiClient,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = 8.0,
) -> dict[str, Any]:
    """Poll the pod until ``check`` holds; fail with the last status and the events."""
    deadline = time.monotonic() + timeout
    while True:
        p = await get_pod(api, name)
        if p is not None and check(p):
            return p
        if time.monotonic() > deadline:
            raise AssertionError(
                f"pod {name}: {what}: not reached in {timeout}s\n{await describe(api, name, p)}"
            )
        await asyncio.sleep(0.05)


async def wait_gone(api: ApiClient, name: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while (p := await get_pod(api, name)) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"pod {name} still exists after {timeout}s\n{await describe(api, name, p)}"
            )
        await asyncio.sleep(0.05)


async def wait_event(
    api: ApiClient,
    name: str,
    reason: str,
    message: str | re.Pattern[str],
    *,
    check: Callable[[dict[str, Any]], bool] = lambda e: True,
    timeout: float = 8.0,
) -> dict[str, Any]:
    """The pod's event with ``reason`` and ``message`` (a string: equal; a pattern: full
    match) once it is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        for e in await events(api, name):
            text = e["message"]
            same = message.fullmatch(text) if isinstance(message, re.Pattern) else text == message
            if e["reason"] == reason and same and check(e):
                return e
        if time.monotonic() > deadline:
            p = await get_pod(api, name)
            raise AssertionError(
                f"pod {name}: no {reason} event {message!r} in {timeout}s\n"
                f"{await describe(api, name, p)}"
            )
        await asyncio.sleep(0.05)


class PodHistory:
    """Every version of one pod the API served after ``resource_version``, from a watch:
    polling could miss a state that lasts a single sync."""

    def __init__(self, api: ApiClient, created: Mapping[str, Any]) -> None:
        self.name = created["metadata"]["name"]
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._task = asyncio.create_task(self._watch(api, created["metadata"]["resourceVersion"]))

    async def _watch(self, api: ApiClient, resource_version: str) -> None:
        async for kind, obj in api.watch("v1", "Pod", NS, resource_version=resource_version):
            if obj.get("metadata", {}).get("name") == self.name:
                self.seen.append((kind, obj))

    @property
    def versions(self) -> list[dict[str, Any]]:
        return [obj for kind, obj in self.seen if kind != "BOOKMARK"]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def histories() -> AsyncIterator[Callable[[ApiClient, Mapping[str, Any]], PodHistory]]:
    made: list[PodHistory] = []

    def watch(api: ApiClient, created: Mapping[str, Any]) -> PodHistory:
        made.append(PodHistory(api, created))
        return made[-1]

    yield watch
    for history in made:
        await history.close()


# --------------------------------------------------------------------------------------
# a running pod
# --------------------------------------------------------------------------------------


async def test_a_long_running_container_makes_the_pod_running(cluster, agent):
    api = cluster.api
    created = await api.create(pod("web", [container()]))
    uid = created["metadata"]["uid"]
    p = await wait_for(api, "web", lambda p: phase(p) == "Running", what="phase Running")

    status = p["status"]
    assert [c["type"] for c in status["conditions"]] == CONDITION_TYPES
    assert {c["type"]: c["status"] for c in status["conditions"]} == dict.fromkeys(
        CONDITION_TYPES, "True"
    )
    for cond in status["conditions"]:
        assert RFC3339.fullmatch(cond["lastTransitionTime"]), cond
    assert status["hostIP"] == agent.node_ip
    assert status["hostIPs"] == [{"ip": agent.node_ip}]
    assert RFC3339.fullmatch(status["startTime"])

    [record] = await cluster.containers(uid)
    assert record["state"] == CONTAINER_RUNNING
    cs = cstatus(p, "app")
    assert set(cs["state"]) == {"running"}
    assert RFC3339.fullmatch(cs["state"]["running"]["startedAt"])
    assert cs["lastState"] == {}
    assert cs["restartCount"] == 0
    assert cs["ready"] is True
    assert cs["started"] is True
    assert cs["image"] == IMAGE
    assert cs["imageID"]
    assert cs["containerID"] == f"kcore://{record['id']}"

    field = {"check": lambda e: e["involvedObject"].get("fieldPath") == "spec.containers{app}"}
    await wait_event(api, "web", "Pulling", f'Pulling image "{IMAGE}"', **field)
    pulled = re.compile(re.escape(f'Successfully pulled image "{IMAGE}" in ') + r".*")
    await wait_event(api, "web", "Pulled", pulled, **field)
    await wait_event(api, "web", "Created", "Created container: app", **field)
    started = await wait_event(api, "web", "Started", "Started container app", **field)
    assert started["type"] == "Normal"
    assert started["involvedObject"]["uid"] == uid
    assert started["involvedObject"]["kind"] == "Pod"
    assert started["source"] == {"component": "kubelet", "host": NODE}

    # the image is on the node now: the next pod's container finds it there
    await api.create(pod("web2", [container()]))
    await wait_for(api, "web2", lambda p: phase(p) == "Running", what="phase Running")
    await wait_event(
        api, "web2", "Pulled", f'Container image "{IMAGE}" already present on machine', **field
    )
    assert not [e for e in await events(api, "web2") if e["reason"] == "Pulling"]


async def test_the_pods_own_status_is_not_reposted_when_nothing_changed(cluster, monkeypatch):
    """Syncs keep happening (volume refresh every 0.2 s, the pod's own MODIFIED events) but
    a status that did not change is not written again, nor a volume whose content did not."""
    agent = await cluster.start_agent(sync_frequency=0.2)
    api = cluster.api
    await api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf"}, "data": {"k": "v"}},
        namespace=NS,
    )
    vol = {"name": "conf", "configMap": {"name": "conf"}}
    app = container(volumeMounts=[{"name": "conf", "mountPath": "/conf"}])
    created = await api.create(pod("quiet", [app], volumes=[vol]))
    uid = created["metadata"]["uid"]
    await wait_for(api, "quiet", lambda p: phase(p) == "Running", what="phase Running")
    await asyncio.sleep(0.3)

    writes: list[Any] = []
    patch = api.patch

    async def counting_patch(api_version, kind, name, body, *args, **kwargs):
        if kind == "Pod" and kwargs.get("subresource") == "status":
            writes.append(body)
        return await patch(api_version, kind, name, body, *args, **kwargs)

    syncs = 0
    pod_containers = agent.pod_containers

    async def counting_pod_containers(pod_uid):
        nonlocal syncs
        syncs += pod_uid == uid
        return await pod_containers(pod_uid)

    monkeypatch.setattr(api, "patch", counting_patch)
    monkeypatch.setattr(agent, "pod_containers", counting_pod_containers)
    data_link = cluster.data_dir / "pods" / uid / "volumes" / "kubernetes.io~configMap" / "conf"
    version = os.readlink(data_link / "..data")
    before = (await api.get("v1", "Pod", "quiet", NS))["metadata"]["resourceVersion"]

    await asyncio.sleep(1.5)

    assert syncs >= 5, "the worker did not sync during the quiet period"
    assert writes == []
    assert (await api.get("v1", "Pod", "quiet", NS))["metadata"]["resourceVersion"] == before
    assert os.readlink(data_link / "..data") == version


async def test_the_qos_class_follows_the_resources(cluster, agent):
    api = cluster.api
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    resources["limits"] = dict(resources["requests"])
    await api.create(pod("guaranteed", [container(resources=resources)]))
    await api.create(pod("burstable", [container(resources={"requests": {"cpu": "100m"}})]))
    await api.create(pod("besteffort", [container()]))
    for name, qos in (
        ("guaranteed", "Guaranteed"),
        ("burstable", "Burstable"),
        ("besteffort", "BestEffort"),
    ):
        p = await wait_for(api, name, lambda p: phase(p) == "Running", what="phase Running")
        assert p["status"].get("qosClass") == qos, name


# --------------------------------------------------------------------------------------
# exits and restarts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "code", "final", "reason", "ready_reason"),
    [
        ("Never", 1, "Failed", "Error", "PodFailed"),
        ("Never", 0, "Succeeded", "Completed", "PodCompleted"),
        ("OnFailure", 0, "Succeeded", "Completed", "PodCompleted"),
    ],
)
async def test_an_exit_the_policy_does_not_restart_ends_the_pod(
    cluster, agent, policy, code, final, reason, ready_reason
):
    api = cluster.api
    created = await api.create(
        pod("job", [container()], policy=policy, annotations=script(0.1, code))
    )
    uid = created["metadata"]["uid"]
    p = await wait_for(api, "job", lambda p: phase(p) in ("Succeeded", "Failed"), what="the end")
    assert phase(p) == final

    cs = cstatus(p, "app")
    terminated = cs["state"]["terminated"]
    assert terminated["exitCode"] == code
    assert terminated["reason"] == reason
    assert RFC3339.fullmatch(terminated["startedAt"])
    assert RFC3339.fullmatch(terminated["finishedAt"])
    assert terminated["containerID"] == cs["containerID"]
    assert cs["restartCount"] == 0
    assert cs["ready"] is False
    conds = conditions(p)
    assert conds["ContainersReady"]["status"] == "False"
    assert conds["ContainersReady"]["reason"] == ready_reason
    assert conds["Ready"]["reason"] == ready_reason

    await asyncio.sleep(0.5)  # a terminal pod stays as it is: nothing restarts
    p = await api.get("v1", "Pod", "job", NS)
    assert phase(p) == final
    assert restarts(p) == 0
    [record] = await cluster.containers(uid)
    assert record["state"] == CONTAINER_EXITED
    assert all(s["state"] == "SANDBOX_NOTREADY" for s in await cluster.sandboxes(uid))


async def test_on_failure_restarts_a_failed_container(cluster, agent, histories):
    api = cluster.api
    created = await api.create(
        pod("flaky", [container()], policy="OnFailure", annotations=script(0.1, 1))
    )
    history = histories(api, created)
    p = await wait_for(api, "flaky", lambda p: restarts(p) >= 2, what="two restarts")
    assert phase(p) == "Running"
    last = cstatus(p, "app")["lastState"]["terminated"]
    assert last["exitCode"] == 1
    assert last["reason"] == "Error"
    assert {phase(v) for v in history.versions} <= {"Pending", "Running"}


async def test_always_restarts_a_container_that_succeeded(cluster, agent, histories):
    api = cluster.api
    created = await api.create(pod("loop", [container()], annotations=script(0.1, 0)))
    history = histories(api, created)
    p = await wait_for(api, "loop", lambda p: restarts(p) >= 2, what="two restarts")
    assert phase(p) == "Running"
    last = cstatus(p, "app")["lastState"]["terminated"]
    assert last["exitCode"] == 0
    assert last["reason"] == "Completed"
    assert {phase(v) for v in history.versions} <= {"Pending", "Running"}


async def test_a_crashing_container_backs_off(cluster, agent):
    agent.restart_backoff = Backoff(initial=1.0, maximum=2.0)
    api = cluster.api
    created = await api.create(pod("crash", [container()], annotations=script(0.05, 1)))
    uid = created["metadata"]["uid"]
    full_name = f"crash_{NS}({uid})"

    p = await wait_for(
        api,
        "crash",
        lambda p: waiting(p, "app").get("reason") == "CrashLoopBackOff",
        what="back-off",
    )
    cs = cstatus(p, "app")
    assert cs["state"]["waiting"]["message"] == (
        f"back-off 1s restarting failed container=app pod={full_name}"
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 1
    assert cs["ready"] is False
    assert cs["started"] is False
    assert phase(p) == "Running"
    # the first restart came at once
    first, second = await cluster.containers(uid)
    assert (second["created_at"] - first["finished_at"]) / 1e9 < 0.5

    await wait_event(
        api,
        "crash",
        "BackOff",
        f"Back-off restarting failed container app in pod {full_name}",
        check=lambda e: (
            e["type"] == "Warning"
            and e["involvedObject"].get("fieldPath") == "spec.containers{app}"
        ),
    )

    # the second waited out the back-off, and the next one doubles
    p = await wait_for(
        api,
        "crash",
        lambda p: waiting(p, "app").get("message", "").startswith("back-off 2s "),
        what="the back-off doubled",
    )
    assert restarts(p) == 2
    previous, newest = await cluster.containers(uid)
    assert newest["metadata"]["attempt"] == 2
    assert (newest["created_at"] - previous["finished_at"]) / 1e9 >= 0.95


async def test_a_start_error_is_a_terminated_container_then_a_back_off(cluster, agent, histories):
    api = cluster.api
    error = 'exec: "/nope": stat /nope: no such file or directory'
    created = await api.create(pod("broken", [container()], annotations={START_ERROR: error}))
    history = histories(api, created)
    p = await wait_for(
        api,
        "broken",
        lambda p: waiting(p, "app").get("reason") == "CrashLoopBackOff",
        what="back-off",
    )
    last = cstatus(p, "app")["lastState"]["terminated"]
    assert last["exitCode"] == 128
    assert last["reason"] == "StartError"
    assert error in last["message"]
    first = [
        cstatus(v, "app")["state"]["terminated"]
        for v in history.versions
        if "terminated" in (cstatus(v, "app").get("state") or {})
    ]
    assert first, "the start error was never shown as a terminated container"
    assert first[0]["exitCode"] == 128
    assert first[0]["reason"] == "StartError"
    await wait_event(api, "broken", "Failed", re.compile(r"Error: .*" + re.escape(error)))
    assert not [e for e in await events(api, "broken") if e["reason"] == "Started"]


# --------------------------------------------------------------------------------------
# init containers
# --------------------------------------------------------------------------------------


async def test_init_containers_run_in_order_before_the_app(cluster, agent):
    api = cluster.api
    annotations = {**script(0.4, of="init1"), **script(0.4, of="init2")}
    created = await api.create(
        pod(
            "init",
            [container("app")],
            init=[container("init1"), container("init2")],
            annotations=annotations,
        )
    )
    uid = created["metadata"]["uid"]

    p = await wait_for(api, "init", lambda p: running(p, "init1", init=True), what="init1 runs")
    assert phase(p) == "Pending"
    initialized = conditions(p)["Initialized"]
    assert initialized["status"] == "False"
    assert initialized["reason"] == "ContainersNotInitialized"
    assert initialized["message"] == "containers with incomplete status: [init1 init2]"
    assert waiting(p, "init2", init=True)["reason"] == "PodInitializing"
    assert waiting(p, "app")["reason"] == "PodInitializing"
    assert conditions(p)["ContainersReady"]["message"] == "containers with unready status: [app]"

    p = await wait_for(api, "init", lambda p: running(p, "init2", init=True), what="init2 runs")
    assert phase(p) == "Pending"
    assert conditions(p)["Initialized"]["message"] == "containers with incomplete status: [init2]"
    done = cstatus(p, "init1", init=True)
    assert done["state"]["terminated"]["exitCode"] == 0
    assert done["state"]["terminated"]["reason"] == "Completed"
    assert done["ready"] is True
    assert waiting(p, "app")["reason"] == "PodInitializing"

    p = await wait_for(api, "init", lambda p: phase(p) == "Running", what="phase Running")
    assert conditions(p)["Initialized"]["status"] == "True"
    for name in ("init1", "init2"):
        cs = cstatus(p, name, init=True)
        assert cs["state"]["terminated"]["reason"] == "Completed", name
        assert cs["restartCount"] == 0
    by_name = {r["labels"][cri.CONTAINER_NAME]: r for r in await cluster.containers(uid)}
    assert by_name["init2"]["created_at"] >= by_name["init1"]["finished_at"]
    assert by_name["app"]["created_at"] >= by_name["init2"]["finished_at"]
    assert by_name["app"]["state"] == CONTAINER_RUNNING
    await wait_event(
        api,
        "init",
        "Started",
        "Started container init1",
        check=lambda e: e["involvedObject"].get("fieldPath") == "spec.initContainers{init1}",
    )


async def test_a_failed_init_container_fails_a_never_restarting_pod(cluster, agent):
    api = cluster.api
    created = await api.create(
        pod(
            "badinit",
            [container("app")],
            init=[container("init1"), container("init2")],
            policy="Never",
            annotations=script(0.1, 1, of="init1"),
        )
    )
    uid = created["metadata"]["uid"]
    p = await wait_for(api, "badinit", lambda p: phase(p) == "Failed", what="phase Failed")
    terminated = cstatus(p, "init1", init=True)["state"]["terminated"]
    assert terminated["exitCode"] == 1
    assert terminated["reason"] == "Error"
    assert waiting(p, "init2", init=True)["reason"] == "PodInitializing"
    assert waiting(p, "app")["reason"] == "PodInitializing"
    assert conditions(p)["Initialized"]["status"] == "False"
    await asyncio.sleep(0.3)
    names = [r["labels"][cri.CONTAINER_NAME] for r in await cluster.containers(uid)]
    assert names == ["init1"]


async def test_a_failed_init_container_is_restarted_and_holds_the_app_back(cluster, agent):
    api = cluster.api
    created = await api.create(
        pod(
            "retryinit",
            [container("app")],
            init=[container("init1")],
            annotations=script(0.05, 1, of="init1"),
        )
    )
    uid = created["metadata"]["uid"]
    p = await wait_for(
        api,
        "retryinit",
        lambda p: cstatus(p, "init1", init=True).get("restartCount", 0) >= 2,
        what="init1 restarted twice",
    )
    assert phase(p) == "Pending"
    assert waiting(p, "app")["reason"] == "PodInitializing"
    assert conditions(p)["Initialized"]["status"] == "False"
    names = {r["labels"][cri.CONTAINER_NAME] for r in await cluster.containers(uid)}
    assert names == {"init1"}


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------


async def test_an_image_that_cannot_be_pulled(cluster, agent, histories):
    api = cluster.api
    created = await api.create(pod("pull", [container(image=MISSING_IMAGE)]))
    history = histories(api, created)
    p = await wait_for(
        api,
        "pull",
        lambda p: waiting(p, "app").get("reason") == "ImagePullBackOff",
        what="ImagePullBackOff",
    )
    assert waiting(p, "app")["message"] == f'Back-off pulling image "{MISSING_IMAGE}"'
    assert phase(p) == "Pending"
    pull_errors = [
        waiting(v, "app")
        for v in history.versions
        if waiting(v, "app").get("reason") == "ErrImagePull"
    ]
    assert pull_errors, "ErrImagePull was never shown"
    assert pull_errors[0]["message"].startswith(f'Failed to pull image "{MISSING_IMAGE}": ')

    app = {"check": lambda e: e["involvedObject"].get("fieldPath") == "spec.containers{app}"}
    failed = await wait_event(
        api,
        "pull",
        "Failed",
        re.compile(re.escape(f'Failed to pull image "{MISSING_IMAGE}": ') + ".+"),
        **app,
    )
    assert failed["type"] == "Warning"
    await wait_event(api, "pull", "Failed", "Error: ErrImagePull", **app)
    await wait_event(api, "pull", "BackOff", f'Back-off pulling image "{MISSING_IMAGE}"', **app)
    # the pull is tried again once the back-off ends
    await wait_event(
        api,
        "pull",
        "Pulling",
        f'Pulling image "{MISSING_IMAGE}"',
        check=lambda e: e["count"] >= 2,
    )
    assert await cluster.containers(created["metadata"]["uid"]) == []


async def test_an_image_pull_back_off_is_recorded_as_a_failed_event(cluster, agent):
    """The kubelet records ``Failed`` ``Error: ImagePullBackOff`` beside ``BackOff``."""
    api = cluster.api
    await api.create(pod("pullbackoff", [container(image=MISSING_IMAGE)]))
    await wait_for(
        api,
        "pullbackoff",
        lambda p: waiting(p, "app").get("reason") == "ImagePullBackOff",
        what="ImagePullBackOff",
    )
    await wait_event(
        api,
        "pullbackoff",
        "Failed",
        "Error: ImagePullBackOff",
        check=lambda e: e["type"] == "Warning",
        timeout=2.0,
    )


async def test_pull_policy_never_with_a_missing_image(cluster, agent):
    api = cluster.api
    image = "kcore.test/absent:1.0"
    await api.create(pod("never", [container(image=image, imagePullPolicy="Never")]))
    p = await wait_for(
        api,
        "never",
        lambda p: waiting(p, "app").get("reason") == "ErrImageNeverPull",
        what="ErrImageNeverPull",
    )
    message = f'Container image "{image}" is not present with pull policy of Never'
    assert waiting(p, "app")["message"] == message
    assert phase(p) == "Pending"
    event = await wait_event(api, "never", "ErrImageNeverPull", message)
    assert event["type"] == "Warning"
    assert event["involvedObject"]["fieldPath"] == "spec.containers{app}"
    assert not [e for e in await events(api, "never") if e["reason"] == "Pulling"]
    assert await cluster.backend.images.image_status(image) is None


# --------------------------------------------------------------------------------------
# configuration the containers need
# --------------------------------------------------------------------------------------


async def test_a_missing_config_map_in_env_holds_the_container_until_it_appears(cluster, agent):
    api = cluster.api
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]
    created = await api.create(pod("envcm", [container(env=env)]))
    uid = created["metadata"]["uid"]

    def config_error(p):
        return waiting(p, "app").get("reason") == "CreateContainerConfigError"

    p = await wait_for(api, "envcm", config_error, what="CreateContainerConfigError")
    assert waiting(p, "app")["message"] == 'configmap "settings" not found'
    assert phase(p) == "Pending"
    await wait_event(
        api,
        "envcm",
        "Failed",
        'Error: configmap "settings" not found',
        check=lambda e: (
            e["type"] == "Warning"
            and e["involvedObject"].get("fieldPath") == "spec.containers{app}"
        ),
    )
    assert await cluster.containers(uid) == []

    await api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {}},
        namespace=NS,
    )
    p = await wait_for(
        api,
        "envcm",
        lambda p: (
            waiting(p, "app").get("message") == f"couldn't find key mode in ConfigMap {NS}/settings"
        ),
        what="the missing key",
    )
    await api.patch("v1", "ConfigMap", "settings", {"data": {"mode": "fast"}}, namespace=NS)
    await wait_for(api, "envcm", lambda p: phase(p) == "Running", what="phase Running")
    [record] = await cluster.containers(uid)
    envs = {e["key"]: e["value"] for e in cluster.runtime.configs[record["id"]]["envs"]}
    assert envs["MODE"] == "fast"


async def test_a_missing_config_map_volume_holds_the_pod_until_it_appears(cluster, agent):
    api = cluster.api
    volume = {"name": "conf", "configMap": {"name": "app-conf"}}
    app = container(volumeMounts=[{"name": "conf", "mountPath": "/etc/app"}])
    created = await api.create(pod("volcm", [app], volumes=[volume]))
    uid = created["metadata"]["uid"]

    event = await wait_event(
        api,
        "volcm",
        "FailedMount",
        'MountVolume.SetUp failed for volume "conf" : configmap "app-conf" not found',
    )
    assert event["type"] == "Warning"
    p = await api.get("v1", "Pod", "volcm", NS)
    assert phase(p) == "Pending"
    assert waiting(p, "app")["reason"] == "ContainerCreating"
    assert await cluster.containers(uid) == []

    await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-conf"},
            "data": {"app.conf": "debug = true\n"},
        },
        namespace=NS,
    )
    await wait_for(api, "volcm", lambda p: phase(p) == "Running", what="phase Running")
    target = cluster.data_dir / "pods" / uid / "volumes" / "kubernetes.io~configMap" / "conf"
    assert (target / "app.conf").read_text() == "debug = true\n"
    [record] = await cluster.containers(uid)
    mounts = {m["container_path"]: m for m in record["mounts"]}
    assert mounts["/etc/app"]["host_path"] == str(target)
    assert mounts["/etc/app"]["readonly"] is True  # API data is always read-only


@pytest.mark.skipif(os.geteuid() != 0, reason="secret volumes mount a tmpfs: needs root")
async def test_a_secret_volume_is_a_tmpfs_that_goes_with_the_pod(cluster, agent):
    api = cluster.api
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"password": "hunter2"},
        },
        namespace=NS,
    )
    volume = {"name": "creds", "secret": {"secretName": "creds"}}
    app = container(volumeMounts=[{"name": "creds", "mountPath": "/creds", "readOnly": True}])
    created = await api.create(pod("secret", [app], volumes=[volume]))
    uid = created["metadata"]["uid"]
    await wait_for(api, "secret", lambda p: phase(p) == "Running", what="phase Running")
    pod_dir = cluster.data_dir / "pods" / uid
    target = pod_dir / "volumes" / "kubernetes.io~secret" / "creds"
    assert (target / "password").read_text() == "hunter2"
    mount = mount_at(target)
    assert mount is not None and mount.fstype == "tmpfs"

    await api.delete("v1", "Pod", "secret", NS)
    await wait_gone(api, "secret")
    assert mount_at(target) is None
    assert not pod_dir.exists()


# --------------------------------------------------------------------------------------
# deletion
# --------------------------------------------------------------------------------------


async def test_deleting_a_running_pod_stops_it_and_removes_the_object(cluster, agent, histories):
    api = cluster.api
    created = await api.create(pod("bye", [container()]))
    uid = created["metadata"]["uid"]
    p = await wait_for(api, "bye", lambda p: phase(p) == "Running", what="phase Running")
    history = histories(api, p)

    await api.delete("v1", "Pod", "bye", NS)
    await wait_gone(api, "bye")
    killing = await wait_event(api, "bye", "Killing", "Stopping container app")
    assert killing["type"] == "Normal"
    assert killing["involvedObject"]["fieldPath"] == "spec.containers{app}"

    for _ in range(40):
        if history.seen and history.seen[-1][0] == "DELETED":
            break
        await asyncio.sleep(0.05)
    kinds = [kind for kind, _ in history.seen]
    assert kinds[-1] == "DELETED", kinds
    final = [obj for kind, obj in history.seen if kind == "MODIFIED"][-1]
    assert final["metadata"].get("deletionTimestamp")
    assert phase(final) == "Failed"  # SIGTERM: 143
    terminated = cstatus(final, "app")["state"]["terminated"]
    assert terminated["exitCode"] == 143
    assert await cluster.containers(uid) == []
    assert await cluster.sandboxes(uid) == []
    assert not (cluster.data_dir / "pods" / uid).exists()


async def test_deleting_with_no_grace_period_tears_the_pod_down(cluster, agent):
    api = cluster.api
    created = await api.create(pod("now", [container()]))
    uid = created["metadata"]["uid"]
    await wait_for(api, "now", lambda p: phase(p) == "Running", what="phase Running")

    await api.delete("v1", "Pod", "now", NS, grace_period_seconds=0)
    assert await get_pod(api, "now") is None
    deadline = time.monotonic() + 5
    while await cluster.containers(uid) or await cluster.sandboxes(uid):
        assert time.monotonic() < deadline, "the runtime still has the pod's containers"
        await asyncio.sleep(0.05)
    await wait_event(api, "now", "Killing", "Stopping container app")
    assert not (cluster.data_dir / "pods" / uid).exists()


# --------------------------------------------------------------------------------------
# agent restarts and orphans
# --------------------------------------------------------------------------------------


async def test_a_new_agent_adopts_the_running_pod(cluster, agent):
    api = cluster.api
    created = await api.create(pod("keep", [container()]))
    uid = created["metadata"]["uid"]
    before = await wait_for(api, "keep", lambda p: phase(p) == "Running", what="phase Running")
    await wait_event(api, "keep", "Started", "Started container app")
    [record] = await cluster.containers(uid)
    [sandbox] = await cluster.sandboxes(uid)

    await cluster.stop_agent(agent)
    new_agent = await cluster.start_agent()
    await asyncio.sleep(0.6)

    after = await api.get("v1", "Pod", "keep", NS)
    assert phase(after) == "Running"
    cs = cstatus(after, "app")
    assert cs["containerID"] == f"kcore://{record['id']}"
    assert cs["restartCount"] == 0
    assert cs["state"] == cstatus(before, "app")["state"]
    assert after["status"]["startTime"] == before["status"]["startTime"]
    assert [r["id"] for r in await cluster.containers(uid)] == [record["id"]]
    assert [s["id"] for s in await cluster.sandboxes(uid)] == [sandbox["id"]]
    reasons = [(e["reason"], e["count"]) for e in await events(api, "keep")]
    assert ("Started", 1) in reasons
    assert sum(count for reason, count in reasons if reason == "Started") == 1
    assert not {"Killing", "SandboxChanged"} & {reason for reason, _ in reasons}

    # the new agent runs the pod: the container it adopted is restarted when it dies
    await cluster.runtime.stop_container(record["id"], 0)
    p = await wait_for(
        api, "keep", lambda p: restarts(p) == 1 and running(p, "app"), what="restart"
    )
    assert cstatus(p, "app")["lastState"]["terminated"]["exitCode"] == 137
    assert uid in new_agent.workers


async def test_orphaned_sandboxes_are_removed_when_the_agent_starts(cluster, agent):
    api = cluster.api
    created = await api.create(pod("live", [container()]))
    live_uid = created["metadata"]["uid"]
    await wait_for(api, "live", lambda p: phase(p) == "Running", what="phase Running")
    await cluster.stop_agent(agent)

    ghost = {"metadata": {"name": "ghost", "namespace": NS, "uid": "ghost-uid"}, "spec": {}}
    runtime = cluster.runtime
    sandbox_config = cri.sandbox_config(
        ghost, attempt=0, log_directory=cluster.data_dir / "ghost-logs", dns=None
    )
    sandbox_id = await runtime.run_pod_sandbox(sandbox_config)
    container_config = {
        "metadata": {"name": "app", "attempt": 0},
        "image": {"image": IMAGE},
        "labels": {**sandbox_config["labels"], cri.CONTAINER_NAME: "app"},
    }
    container_id = await runtime.create_container(sandbox_id, container_config, sandbox_config)
    await runtime.start_container(container_id)
    ghost_dir = cluster.data_dir / "pods" / "ghost-uid"
    (ghost_dir / "containers" / "app").mkdir(parents=True)

    await cluster.start_agent()  # returns once orphans are gone

    assert await cluster.sandboxes("ghost-uid") == []
    assert await cluster.containers("ghost-uid") == []
    assert not ghost_dir.exists()
    [live] = await cluster.containers(live_uid)
    assert live["state"] == CONTAINER_RUNNING
    assert [s["state"] for s in await cluster.sandboxes(live_uid)] == ["SANDBOX_READY"]


async def test_a_worker_woken_just_before_it_stops_still_stops(cluster, agent):
    """A wake (a container event, a pod update) that lands as the agent stops a worker must
    not cancel the stop: ``agent.close()`` awaits every worker."""
    api = cluster.api
    created = await api.create(pod("idle", [container()]))
    uid = created["metadata"]["uid"]
    await wait_for(api, "idle", lambda p: phase(p) == "Running", what="phase Running")
    await asyncio.sleep(0.3)  # the worker waits for its next wake or deadline
    worker = agent.workers[uid]

    worker.wake()
    await asyncio.sleep(0)  # the wake is delivered, the worker has not run yet
    stopping = asyncio.create_task(worker.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2.0)
    if not done:  # let the worker go, so that the agent can close
        worker.done = True
        worker.wake()
        await stopping
    assert done, "PodWorker.stop() did not return: the worker swallowed its cancellation"


# --------------------------------------------------------------------------------------
# the plain simulator
# --------------------------------------------------------------------------------------


async def test_pod_annotations_script_the_containers_of_a_simulated_node(tmp_path):
    """The README: on runtime_sim, containers "run" for ``sim.kcore.io/run-seconds`` and
    exit with ``sim.kcore.io/exit-code``. Scale tests can only set those on the pod."""
    backend = kcore.plugins.runtime_sim.kcore_runtime(Settings(data_dir=tmp_path))
    async with cluster_on(backend, tmp_path) as plain:
        await plain.start_agent()
        await plain.api.create(
            pod("scripted", [container()], policy="Never", annotations=script(0.1, 3))
        )
        p = await wait_for(
            plain.api, "scripted", lambda p: phase(p) == "Failed", what="exit 3", timeout=3.0
        )
        assert cstatus(p, "app")["state"]["terminated"]["exitCode"] == 3
