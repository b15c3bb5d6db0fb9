"""Simulated nodes: many kubelets in one process, running their pods on runtime_sim (as
kwok and kubemark do), for DaemonSets, scheduling and node-lifecycle tests and benchmarks.

``kcore --plugins runtime_sim sim-nodes --kubeconfig K --count N [--prefix sim-]
[--heartbeat 10]`` registers the Nodes ``<prefix>0`` ... ``<prefix>N-1`` and keeps them
alive until SIGTERM or SIGINT:

* **Node**: labels ``kubernetes.io/hostname``, ``kubernetes.io/os``, ``kubernetes.io/arch``
  (and ``beta.`` ones), ``type: kcore-sim`` and any ``--label``; ``podCIDR`` (node *i*:
  ``10.128.0.0/9``'s *i*-th ``/24``), InternalIP (``172.16.0.1`` + *i*); capacity =
  allocatable ``--cpu`` (8), ``--memory`` (32Gi), 100Gi ephemeral storage, ``--max-pods``
  (110); conditions MemoryPressure/DiskPressure/PIDPressure False and Ready True
  (``KubeletReady``). The status is posted when it differs from the Node's (the node
  lifecycle controller set it Unknown, say) or every 5 minutes, as the kubelet does.
* **Heartbeat**: the Lease ``kube-node-lease/<node>`` (owner: the Node, 40 s duration) is
  renewed every ``--heartbeat`` seconds (10, as the kubelet; the first renewals are spread
  over one period).
* **Pods** bound to a node run on one :class:`~kcore.plugins.runtime_sim.sim.SimRuntime`
  shared by the process, scripted by the ``sim.kcore.io/*`` annotations (``run-seconds``,
  ``exit-code``, ``start-error``; per container with ``<container>.sim.kcore.io/<key>``):
  a sandbox, then the init containers one by one (an unscripted init container exits 0 at
  once), then the containers; ``restartPolicy`` decides restarts, with the kubelet's
  back-off (10 s doubling to 5 min: ``CrashLoopBackOff``); images "pull" at once (names
  with ``doesnotexist`` fail: ``ErrImagePull``/``ImagePullBackOff``). The status has the
  kubelet's phase, conditions (foreign ones kept), container statuses, ``hostIP`` and a
  ``podIP`` from the node's CIDR (the node's address with ``hostNetwork``). A container is
  ready as soon as it runs (probes are not simulated). A pod being deleted has its
  containers stopped (143), gets its terminal phase, and is deleted for good (grace 0,
  uid precondition); a pod removed from the API is torn down.
* **A lost node**: ``touch <control-dir>/<node>.stop`` (``--control-dir``, default
  ``<data-dir>/sim-nodes``) or ``--stop-heartbeat-after NODE=SECONDS`` stops everything
  the node writes (Lease, status, pod updates and deletions), as a partition would; its
  containers keep "running". Removing the file brings it back: it posts its status and
  catches up with its pods.

How it scales: two shared watches (pods and nodes, :class:`kcore.controllers.
SharedInformers`) demultiplexed by ``spec.nodeName``; a heartbeat task per node and a
task per pod; nothing per node beyond a few records. No volumes, networks, probes, logs,
exec or events (the node agent does those; see ``kcore.nodeagent``). Nothing outlives the
process: containers are gone when it stops, and pods found Running on start are started
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import signal
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import structlog

import kcore
from kcore.client import ApiClient
from kcore.controllers import (
    BY_NODE,
    DELETED,
    ResourceEvent,
    SharedInformers,
    being_deleted,
)
from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    KcoreError,
    NotFound,
    PermanentError,
)
from kcore.interfaces import CONTAINER_EXITED, CONTAINER_RUNNING
from kcore.plugins.runtime_sim.sim import RUN_SECONDS, SimRuntime, make_backend

log = structlog.get_logger("kcore.plugins.runtime_sim.nodes")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
REPORT_EVERY = 300.0
KUBELET_VERSION = "v1.32.0-kcore-sim"
NODE_IP_BASE = ipaddress.IPv4Address("172.16.0.1")
POD_CIDR_BASE = ipaddress.IPv4Address("10.128.0.0")
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
RETRY = (0.2, 7.0)
"""Back-off of a failed heartbeat or pod write, as the kubelet's lease controller."""

NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)  # fmt: skip
OWN_POD_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


# -- the API, from a kubeconfig ----------------------------------------------------------------


# -- pods ----------------------------------------------------------------------------------


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Until ``event`` is set or ``timeout`` passes. (Not ``asyncio.wait_for``: before
    Python 3.12 it can swallow a cancellation that comes as the event is set.)"""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


class _Container:
    """What a pod worker knows of one container of the spec."""

    __slots__ = (
        "backoff",
        "current",
        "id",
        "image_error",
        "not_before",
        "previous",
        "pull_failures",
        "restarts",
    )

    def __init__(self) -> None:
        self.id: str | None = None
        self.current: Mapping[str, Any] | None = None
        """The runtime's status of the newest instance."""
        self.previous: Mapping[str, Any] | None = None
        self.restarts = 0
        self.backoff = 0.0
        self.not_before = 0.0
        """No (re)start before this time (back-off)."""
        self.image_error: str | None = None
        self.pull_failures = 0


def _ns_time(value: int | None) -> str | None:
    return rfc3339(value / 1e9) if value else None


def _terminated(record: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "exitCode": int(record.get("exit_code") or 0),
        "reason": record.get("reason") or "Error",
        "startedAt": _ns_time(record.get("started_at")),
        "finishedAt": _ns_time(record.get("finished_at")),
        "containerID": f"kcore-sim://{record['id']}",
    }
    if record.get("message"):
        out["message"] = record["message"]
    return {k: v for k, v in out.items() if v is not None}


class PodWorker:
    """Runs one pod of one simulated node (see the module docstring) in its own task."""

    def __init__(self, node: SimNode, pod: dict[str, Any]) -> None:
        self.node = node
        self.pod = pod
        self.uid = _meta(pod).get("uid", "")
        self.removed = False
        self.sandbox: str | None = None
        self.pod_ip: str | None = None
        self.started_at: float | None = None
        self.init: dict[str, _Container] = {}
        self.app: dict[str, _Container] = {}
        self.terminal = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return f"{_meta(self.pod).get('namespace')}/{_meta(self.pod).get('name')}"

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        retry = RETRY[0]
        while True:
            await self.node.reachable.wait()
            try:
                if await self.sync():
                    break
                retry = RETRY[0]
                timeout = self._next_timer()
            except (KcoreError, OSError) as exc:
                log.info("pod sync failed", pod=self.key, node=self.node.name, error=str(exc))
                timeout, retry = retry, min(retry * 2, RETRY[1])
            except Exception:
                log.exception("pod sync raised", pod=self.key, node=self.node.name)
                timeout, retry = retry, min(retry * 2, RETRY[1])
            await _wait(self._wake, timeout)
            self._wake.clear()
        self.node.forget(self)

    def _next_timer(self) -> float | None:
        now = time.time()
        due = [
            c.not_before - now
            for c in (*self.init.values(), *self.app.values())
            if c.not_before > now
        ]
        return max(min(due), 0.0) + 0.01 if due else None

    # -- doing -------------------------------------------------------------------------------

    async def sync(self) -> bool:
        """One pass; ``True`` when the pod is done with (gone from the API)."""
        runtime = self.node.runtime
        if self.removed:
            await self._teardown()
            return True
        if being_deleted(self.pod):
            await self._stop_all(grace=True)
            await self.post_status(terminal=True)
            m = _meta(self.pod)
            with contextlib.suppress(NotFound, Conflict):
                await self.node.api.delete(
                    "v1",
                    "Pod",
                    m["name"],
                    m.get("namespace"),
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
            await self._teardown()
            return True
        if self.terminal:
            await self.post_status()
            return False
        await self._refresh()
        if self.sandbox is None:
            self.sandbox = await runtime.run_pod_sandbox(self._sandbox_config())
            self.started_at = self.started_at or time.time()
        spec = _spec(self.pod)
        policy = spec.get("restartPolicy") or "Always"
        initialized = True
        for c in spec.get("initContainers") or ():
            state = self.init.setdefault(c["name"], _Container())
            cur = state.current
            if cur is not None and cur.get("state") == CONTAINER_EXITED:
                if cur.get("exit_code") == 0:
                    continue
                if policy == "Never":
                    self.terminal = True
                    initialized = False
                    break
            if cur is None or cur.get("state") == CONTAINER_EXITED:
                await self._start(c, state, init=True)
            initialized = False
            break
        if initialized and not self.terminal:
            for c in spec.get("containers") or ():
                state = self.app.setdefault(c["name"], _Container())
                cur = state.current
                if cur is None:
                    await self._start(c, state, init=False)
                elif cur.get("state") == CONTAINER_EXITED:
                    code = cur.get("exit_code")
                    if policy == "Always" or (policy == "OnFailure" and code != 0):
                        await self._start(c, state, init=False)
            await self._refresh()
            if policy != "Always" and self._phase() in ("Succeeded", "Failed"):
                self.terminal = True
        if self.terminal:
            await self._stop_all(grace=False)
        await self.post_status()
        return False

    def _sandbox_config(self) -> dict[str, Any]:
        m = _meta(self.pod)
        return {
            "metadata": {
                "name": m.get("name"),
                "namespace": m.get("namespace"),
                "uid": self.uid,
                "attempt": 0,
            },
            "labels": dict(m.get("labels") or {}),
            "annotations": dict(m.get("annotations") or {}),
        }

    async def _start(self, container: Mapping[str, Any], state: _Container, *, init: bool) -> None:
        now = time.time()
        if now < state.not_before:
            return
        images = self.node.images
        image = container.get("image") or ""
        try:
            await images.pull_image(image)
        except KcoreError as exc:
            state.image_error = str(exc)
            state.pull_failures += 1
            self._back_off(state, now)
            return
        if state.image_error is not None:
            state.image_error, state.backoff, state.not_before = None, 0.0, 0.0
        own: dict[str, str] = {}
        annotations = _meta(self.pod).get("annotations") or {}
        scripted = RUN_SECONDS in annotations or (
            f"{container['name']}.{RUN_SECONDS}" in annotations
        )
        if init and not scripted:
            own[RUN_SECONDS] = "0"  # an init container that nobody scripted just succeeds
        attempt = state.restarts + (1 if state.current is not None else 0)
        config = {
            "metadata": {"name": container["name"], "attempt": attempt},
            "image": {"image": image},
            "command": list(container.get("command") or ()),
            "args": list(container.get("args") or ()),
            "annotations": own,
            "labels": {"io.kubernetes.pod.uid": self.uid},
        }
        runtime = self.node.runtime
        if state.id is not None:
            with contextlib.suppress(KcoreError):
                await runtime.remove_container(state.id)
            self.node.containers.pop(state.id, None)
        if state.current is not None:
            state.previous, state.restarts = state.current, attempt
            self._back_off(state, now)
        state.id = await runtime.create_container(self.sandbox, config, self._sandbox_config())
        self.node.containers[state.id] = self
        with contextlib.suppress(PermanentError):  # a scripted start error: it exited
            await runtime.start_container(state.id)
        state.current = await runtime.container_status(state.id)

    @staticmethod
    def _back_off(state: _Container, now: float) -> None:
        state.backoff = min(state.backoff * 2, BACKOFF_MAX) if state.backoff else BACKOFF_INITIAL
        state.not_before = now + state.backoff

    async def _refresh(self) -> None:
        for state in (*self.init.values(), *self.app.values()):
            if state.id is not None:
                with contextlib.suppress(NotFound):
                    state.current = await self.node.runtime.container_status(state.id)
                if (
                    state.current is not None
                    and state.current.get("state") == CONTAINER_RUNNING
                    and state.backoff
                    and time.time() - state.current.get("started_at", 0) / 1e9 > 600
                ):
                    state.backoff = 0.0  # ran for 10 minutes: the back-off starts over

    async def _stop_all(self, *, grace: bool) -> None:
        runtime = self.node.runtime
        for state in (*self.init.values(), *self.app.values()):
            if state.id is not None:
                await runtime.stop_container(state.id, 30 if grace else 0)
        if self.sandbox is not None:
            await runtime.stop_pod_sandbox(self.sandbox)
        await self._refresh()

    async def _teardown(self) -> None:
        for state in (*self.init.values(), *self.app.values()):
            if state.id is not None:
                self.node.containers.pop(state.id, None)
        if self.sandbox is not None:
            await self.node.runtime.remove_pod_sandbox(self.sandbox)
            self.sandbox = None
        self.node.release_ip(self.pod_ip)

    # -- status ---------------------------------------------------------------------------

    def _container_status(self, c: Mapping[str, Any], state: _Container, waiting: str):
        cur = state.current
        last: dict[str, Any] = {}
        if state.previous is not None:
            last = {"terminated": _terminated(state.previous)}
        if state.image_error is not None:
            reason = "ErrImagePull" if state.pull_failures == 1 else "ImagePullBackOff"
            st: dict[str, Any] = {"waiting": {"reason": reason, "message": state.image_error}}
        elif cur is None:
            st = {"waiting": {"reason": waiting}}
        elif cur.get("state") == CONTAINER_RUNNING:
            st = {"running": {"startedAt": _ns_time(cur.get("started_at"))}}
        elif cur.get("state") == CONTAINER_EXITED and state.not_before > time.time():
            m = _meta(self.pod)
            message = (
                f"back-off {int(state.backoff)}s restarting failed container={c['name']} "
                f"pod={m.get('name')}_{m.get('namespace')}({self.uid})"
            )
            st = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            last = {"terminated": _terminated(cur)}
        elif cur.get("state") == CONTAINER_EXITED:
            st = {"terminated": _terminated(cur)}
        else:
            st = {"waiting": {"reason": "ContainerCreating"}}
        running = "running" in st
        out = {
            "name": c["name"],
            "state": st,
            "lastState": last,
            "ready": running,
            "restartCount": state.restarts,
            "image": c.get("image") or "",
            "imageID": (cur or {}).get("image_ref") or "",
            "started": running,
        }
        if cur is not None:
            out["containerID"] = f"kcore-sim://{cur['id']}"
        return out

    def _statuses(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        spec = _spec(self.pod)
        inits = spec.get("initContainers") or ()
        init_statuses = []
        for c in inits:
            state = self.init.get(c["name"]) or _Container()
            cs = self._container_status(c, state, "PodInitializing")
            cs["ready"] = "terminated" in cs["state"] and cs["state"]["terminated"]["exitCode"] == 0
            init_statuses.append(cs)
        pending = any(not s["ready"] for s in init_statuses)
        statuses = [
            self._container_status(
                c,
                self.app.get(c["name"]) or _Container(),
                "PodInitializing" if pending else "ContainerCreating",
            )
            for c in spec.get("containers") or ()
        ]
        return init_statuses, statuses

    def _phase(self, *, terminal: bool = False) -> str:
        """The kubelet's ``getPhase``."""
        spec = _spec(self.pod)
        init_statuses, statuses = self._statuses()
        policy = spec.get("restartPolicy") or "Always"
        failed_init = pending_init = 0
        for cs in init_statuses:
            term = cs["state"].get("terminated") or (cs["lastState"] or {}).get("terminated")
            if term is not None and term.get("exitCode") != 0:
                failed_init += 1
            elif not cs["ready"]:
                pending_init += 1
        if failed_init and policy == "Never":
            return "Failed"
        running = waiting = stopped = succeeded = 0
        for cs in statuses:
            state = cs["state"]
            if "running" in state:
                running += 1
            elif "terminated" in state:
                stopped += 1
                succeeded += state["terminated"].get("exitCode") == 0
            elif (cs["lastState"] or {}).get("terminated") is not None:
                stopped += 1
            else:
                waiting += 1
        if pending_init or waiting:
            return "Failed" if terminal and not running else "Pending"
        if running:
            return "Running"
        if stopped:
            if terminal:
                return "Succeeded" if stopped == succeeded else "Failed"
            if policy == "Always":
                return "Running"
            if stopped == succeeded:
                return "Succeeded"
            return "Failed" if policy == "Never" else "Running"
        return "Pending"

    def desired_status(self, *, terminal: bool = False) -> dict[str, Any]:
        now = time.time()
        spec = _spec(self.pod)
        current = self.pod.get("status") or {}
        phase = current.get("phase")
        if phase not in ("Succeeded", "Failed"):  # a terminal phase never changes
            phase = self._phase(terminal=terminal)
        init_statuses, statuses = self._statuses()
        unready = [s["name"] for s in statuses if not s["ready"]]
        incomplete = [s["name"] for s in init_statuses if not s["ready"]]
        started = any("running" in s["state"] or "terminated" in s["state"] for s in statuses)

        def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
            if not ok and reason:
                out["reason"] = reason
            if not ok and message:
                out["message"] = message
            return out

        if phase == "Succeeded":
            ready = cond("ContainersReady", False, "PodCompleted")
        elif phase == "Failed":
            ready = cond("ContainersReady", False, "PodFailed")
        elif unready:
            ready = cond(
                "ContainersReady",
                False,
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(unready)}]",
            )
        else:
            ready = cond("ContainersReady", True)
        conditions = [
            cond("PodReadyToStartContainers", self.sandbox is not None and not self.terminal),
            cond(
                "Initialized",
                not incomplete or started,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            ),
            dict(ready, type="Ready"),
            ready,
        ]
        previous = {c.get("type"): c for c in current.get("conditions") or ()}
        for c in conditions:
            before = previous.get(c["type"])
            same = before is not None and before.get("status") == c["status"]
            c["lastTransitionTime"] = (before or {}).get("lastTransitionTime") if same else None
            c["lastTransitionTime"] = c["lastTransitionTime"] or rfc3339(now)
            c["lastProbeTime"] = None
        conditions += [
            c for c in current.get("conditions") or () if c.get("type") not in OWN_POD_CONDITIONS
        ]
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.node.ip,
            "hostIPs": [{"ip": self.node.ip}],
            "containerStatuses": statuses,
            "qosClass": _qos(spec),
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if self.sandbox is not None or current.get("podIP"):
            if self.pod_ip is None:
                self.pod_ip = current.get("podIP") or (
                    self.node.ip if spec.get("hostNetwork") else self.node.allocate_ip()
                )
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.started_at is not None:
            status["startTime"] = current.get("startTime") or rfc3339(self.started_at)
        return status

    async def post_status(self, *, terminal: bool = False) -> None:
        status = self.desired_status(terminal=terminal)
        current = self.pod.get("status") or {}
        if _comparable(status) == _comparable({k: current.get(k) for k in status}):
            return
        m = _meta(self.pod)
        with contextlib.suppress(NotFound):
            self.pod = await self.node.api.patch(
                "v1",
                "Pod",
                m["name"],
                {"status": status},
                namespace=m.get("namespace"),
                subresource="status",
            )


def _comparable(status: Mapping[str, Any]) -> Any:
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
        for c in status.get("conditions") or ()
    ]
    return out


def _qos(spec: Mapping[str, Any]) -> str:
    """Kubernetes' QoS class from cpu and memory requests and limits."""
    requests = limits = 0
    guaranteed = True
    for c in (*(spec.get("initContainers") or ()), *(spec.get("containers") or ())):
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests += len(req)
        limits += len(lim)
        if set(lim) != {"cpu", "memory"} or any(req.get(k, lim[k]) != lim[k] for k in lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# -- nodes ---------------------------------------------------------------------------------


class SimNode:
    """One simulated node: its Node, its Lease and its pods (see the module docstring)."""

    def __init__(self, sim: SimNodes, name: str, index: int) -> None:
        self.sim = sim
        self.api = sim.api
        self.runtime: SimRuntime = sim.runtime
        self.images = sim.images
        self.containers = sim.containers
        self.name = name
        self.index = index
        self.ip = str(NODE_IP_BASE + index)
        network = ipaddress.IPv4Network(f"{POD_CIDR_BASE + 256 * index}/24")
        self.pod_cidr = str(network)
        self._free_ips = [str(ip) for ip in list(network.hosts())[1:]]
        self.pods: dict[str, PodWorker] = {}
        self.reachable = asyncio.Event()
        self.reachable.set()
        self.uid: str | None = None
        self._lease: dict[str, Any] | None = None
        self._posted_at = 0.0
        self._wake = asyncio.Event()

    # -- the Node and its Lease -----------------------------------------------------------

    @property
    def lost(self) -> bool:
        return not self.reachable.is_set()

    def stop_heartbeat(self) -> None:
        if not self.lost:
            log.info("node heartbeat stopped", node=self.name)
            self.reachable.clear()

    def resume_heartbeat(self) -> None:
        if self.lost:
            log.info("node heartbeat resumed", node=self.name)
            self.reachable.set()
            self._wake.set()
            for worker in self.pods.values():
                worker.wake()

    def _labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            "type": "kcore-sim",
            **self.sim.labels,
        }

    async def register(self) -> None:
        spec = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
        try:
            node = await self.api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.name, "labels": self._labels()},
                    "spec": spec,
                }
            )
        except AlreadyExists:
            node = await self.api.patch(
                "v1", "Node", self.name, {"metadata": {"labels": self._labels()}, "spec": spec}
            )
        self.uid = _meta(node)["uid"]
        await self.sync_status(force=True)

    def desired_status(self, current: Mapping[str, Any] | None) -> dict[str, Any]:
        now = time.time()
        before = {
            c.get("type"): c for c in ((current or {}).get("status") or {}).get("conditions") or ()
        }
        conditions = []
        for kind, status, reason, message in NODE_CONDITIONS:
            old = before.get(kind) or {}
            conditions.append(
                {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": rfc3339(now),
                    "lastTransitionTime": old.get("lastTransitionTime")
                    if old.get("status") == status
                    else rfc3339(now),
                }
            )
        capacity = dict(self.sim.capacity)
        return {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": f"sim-{self.index}",
                "systemUUID": f"sim-{self.index}",
                "bootID": self.sim.boot_id,
                "kernelVersion": os.uname().release,
                "osImage": "kcore simulated node",
                "containerRuntimeVersion": f"kcore-sim://{kcore.__version__}",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def sync_status(self, *, force: bool = False) -> None:
        """Post the status if the Node's differs (times aside) or it is due."""
        current = self.sim.informers.get("v1", "Node", self.name) if self.sim.informers else None
        status = self.desired_status(current)
        have = (current or {}).get("status") or {}

        def comparable(s: Mapping[str, Any]) -> Any:
            return (
                [
                    (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                    for c in s.get("conditions") or ()
                ],
                s.get("capacity"),
                s.get("allocatable"),
                s.get("addresses"),
                s.get("nodeInfo"),
            )

        due = time.time() - self._posted_at >= REPORT_EVERY
        if not (force or due or current is None or comparable(status) != comparable(have)):
            return
        await self.api.patch("v1", "Node", self.name, {"status": status}, subresource="status")
        self._posted_at = time.time()

    async def renew_lease(self) -> None:
        now = micro_time(time.time())
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now,
        }
        if self._lease is None:
            try:
                self._lease = await self.api.get(
                    "coordination.k8s.io/v1", "Lease", self.name, LEASE_NAMESPACE
                )
            except NotFound:
                owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
                self._lease = await self.api.create(
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {
                            "name": self.name,
                            "namespace": LEASE_NAMESPACE,
                            "ownerReferences": [owner] if self.uid else [],
                        },
                        "spec": spec,
                    }
                )
                return
        lease = {**self._lease, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease"}
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        try:
            self._lease = await self.api.update(lease)
        except (Conflict, NotFound):
            self._lease = None
            raise

    async def heartbeat(self) -> None:
        """Register, then renew and post until cancelled; pauses while the node is lost."""
        registered = False
        retry = RETRY[0]
        spread = True
        while True:
            await self.reachable.wait()
            try:
                if not registered:
                    await self.register()
                    registered = True
                await self.renew_lease()
                await self.sync_status()
                wait, retry = self.sim.heartbeat, RETRY[0]
                if spread:  # renewals of many nodes spread over one period
                    wait, spread = random.uniform(0.1, 1.0) * wait, False
            except (KcoreError, OSError) as exc:
                log.info("heartbeat failed", node=self.name, error=str(exc))
                wait, retry = retry, min(retry * 2, RETRY[1])
                if isinstance(exc, NotFound):
                    registered = False  # the Node was deleted: register it again
            await _wait(self._wake, wait)
            self._wake.clear()

    def node_changed(self, node: Mapping[str, Any]) -> None:
        """The Node changed in the API: heartbeat at once if its conditions are not ours
        (the node lifecycle controller set them Unknown, say)."""
        have = [
            (c.get("type"), c.get("status"), c.get("reason"))
            for c in (node.get("status") or {}).get("conditions") or ()
        ]
        if have != [(t, s, r) for t, s, r, _ in NODE_CONDITIONS]:
            self._wake.set()

    # -- pods ---------------------------------------------------------------------------------

    def pod_event(self, event: ResourceEvent) -> None:
        uid = _meta(event.obj).get("uid", "")
        worker = self.pods.get(uid)
        if event.type == DELETED:
            if worker is not None:
                worker.removed = True
                worker.wake()
            return
        if worker is not None:
            worker.update(event.obj)
            return
        phase = (event.obj.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not being_deleted(event.obj):
            return  # finished before we came: nothing to run
        worker = PodWorker(self, event.obj)
        self.pods[uid] = worker
        worker.start()

    def forget(self, worker: PodWorker) -> None:
        if self.pods.get(worker.uid) is worker:
            del self.pods[worker.uid]

    def allocate_ip(self) -> str:
        return self._free_ips.pop(0) if self._free_ips else self.ip

    def release_ip(self, ip: str | None) -> None:
        if ip and ip != self.ip and ip not in self._free_ips:
            self._free_ips.append(ip)


class SimNodes:
    """``count`` simulated nodes named ``<prefix><i>`` on ``api`` (an API client: kcore's
    ``ApiClient``, in-process or from a kubeconfig); see the module docstring."""

    def __init__(
        self,
        api: Any,
        data_dir: str | os.PathLike[str],
        *,
        count: int = 3,
        prefix: str = "sim-",
        heartbeat: float = 10.0,
        cpu: str = "8",
        memory: str = "32Gi",
        max_pods: int = 110,
        labels: Mapping[str, str] | None = None,
        control_dir: str | os.PathLike[str] | None = None,
        stop_heartbeat_after: Mapping[str, float] | None = None,
    ) -> None:
        self.api = api
        backend = make_backend(Path(data_dir))
        self.runtime: SimRuntime = backend.runtime  # type: ignore[assignment]
        self.images = backend.images
        self.heartbeat = heartbeat
        self.capacity = {
            "cpu": cpu,
            "memory": memory,
            "ephemeral-storage": "100Gi",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "pods": str(max_pods),
        }
        self.labels = dict(labels or {})
        self.control_dir = Path(control_dir or Path(data_dir) / "sim-nodes")
        self.stop_heartbeat_after = dict(stop_heartbeat_after or {})
        self.boot_id = os.urandom(8).hex()
        self.containers: dict[str, PodWorker] = {}
        self.informers: SharedInformers | None = None
        self.nodes = {f"{prefix}{i}": SimNode(self, f"{prefix}{i}", i) for i in range(count)}
        unknown = set(self.stop_heartbeat_after) - set(self.nodes)
        if unknown:
            raise BadRequest(
                f"--stop-heartbeat-after names unknown nodes: {', '.join(sorted(unknown))}"
            )
        self._tasks: list[asyncio.Task[Any]] = []

    def _on_pod(self, event: ResourceEvent) -> None:
        node_name = _spec(event.obj).get("nodeName")
        node = self.nodes.get(node_name) if node_name else None
        if node is not None:
            node.pod_event(event)

    def _on_node(self, event: ResourceEvent) -> None:
        node = self.nodes.get(event.name)
        if node is not None and event.type != DELETED:
            node.node_changed(event.obj)

    async def _container_events(self) -> None:
        async for event in self.runtime.container_events():
            worker = self.containers.get(event.get("container_id", ""))
            if worker is not None:
                worker.wake()

    async def _watch_control_dir(self) -> None:
        """A ``<node>.stop`` file that appears stops that node's heartbeat; once it is
        removed the node resumes."""
        self.control_dir.mkdir(parents=True, exist_ok=True)
        before: set[str] = set()
        while True:
            try:
                files = os.listdir(self.control_dir)
            except OSError:
                files = []
            now = {f.removesuffix(".stop") for f in files if f.endswith(".stop")}
            for name in now - before:
                if name in self.nodes:
                    self.nodes[name].stop_heartbeat()
            for name in before - now:
                if name in self.nodes:
                    self.nodes[name].resume_heartbeat()
            before = now
            await asyncio.sleep(0.5)

    async def start(self) -> None:
        """Watch pods and nodes, register the nodes and start their heartbeats."""
        self.informers = SharedInformers(self.api)
        self.informers.add_handler("v1", "Node", self._on_node)
        self.informers.add_handler("v1", "Pod", self._on_pod)
        self.informers.start()
        await self.informers.wait_for_sync()
        loop = asyncio.get_running_loop()
        for name, seconds in self.stop_heartbeat_after.items():
            loop.call_later(seconds, self.nodes[name].stop_heartbeat)
        self._tasks = [asyncio.ensure_future(n.heartbeat()) for n in self.nodes.values()]
        self._tasks.append(asyncio.ensure_future(self._container_events()))
        self._tasks.append(asyncio.ensure_future(self._watch_control_dir()))

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        """The pods bound to ``node`` (from the shared watch)."""
        assert self.informers is not None
        return self.informers.by_index("v1", "Pod", BY_NODE, node)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for node in self.nodes.values():
            for worker in list(node.pods.values()):
                await worker.cancel()
        if self.informers is not None:
            await self.informers.stop()
        await self.runtime.close()


# -- the command -------------------------------------------------------------------------------


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: expected {what}")
        out[key] = val
    return out


async def serve(sim: SimNodes) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
        names = list(sim.nodes)
        print(
            f"kcore sim-nodes: {len(names)} nodes running ({names[0]} .. {names[-1]}); "
            f"stop one's heartbeat: touch {sim.control_dir}/<node>.stop",
            flush=True,
        )
        await stop.wait()
    finally:
        await sim.stop()
        await sim.api.close()


@click.command("sim-nodes")
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The API server to register with.",
)
@click.option("--count", default=3, show_default=True, type=click.IntRange(1, 32768))
@click.option("--prefix", default="sim-", show_default=True, help="Nodes are PREFIX0, PREFIX1, ...")
@click.option(
    "--heartbeat",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between Lease renewals.",
)
@click.option("--cpu", default="8", show_default=True, help="Each node's cpu capacity.")
@click.option("--memory", default="32Gi", show_default=True, help="Each node's memory capacity.")
@click.option("--max-pods", default=110, show_default=True, type=click.IntRange(1))
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Another node label (repeatable)."
)
@click.option(
    "--stop-heartbeat-after",
    multiple=True,
    metavar="NODE=SECONDS",
    help="Lose NODE (no heartbeats, no pod updates) this long after start (repeatable).",
)
@click.option(
    "--control-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where <node>.stop files lose nodes (default <data-dir>/sim-nodes).",
)
@click.pass_context
def sim_nodes_command(
    ctx: click.Context,
    kubeconfig: Path,
    count: int,
    prefix: str,
    heartbeat: float,
    cpu: str,
    memory: str,
    max_pods: int,
    labels: tuple[str, ...],
    stop_heartbeat_after: tuple[str, ...],
    control_dir: Path | None,
) -> None:
    """Run COUNT simulated nodes (runtime_sim) against an API server until SIGTERM."""
    after = {}
    for name, seconds in _pairs(stop_heartbeat_after, "NODE=SECONDS").items():
        try:
            after[name] = float(seconds)
        except ValueError:
            raise click.BadParameter(f"{seconds!r} is not a number of seconds") from None
    data_dir = Path(getattr(ctx.obj, "data_dir", None) or ".")
    sim = SimNodes(
        ApiClient.from_kubeconfig(kubeconfig),
        data_dir,
        count=count,
        prefix=prefix,
        heartbeat=heartbeat,
        cpu=cpu,
        memory=memory,
        max_pods=max_pods,
        labels=_pairs(labels, "KEY=VALUE"),
        control_dir=control_dir,
        stop_heartbeat_after=after,
    )
    asyncio.run(serve(sim))


__all__ = ["PodWorker", "SimNode", "SimNodes", "sim_nodes_command"]
