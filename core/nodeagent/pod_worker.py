"""One pod's worker: the level-triggered sync of one pod on this node.

Each pod bound to the node has a worker, an asyncio task that wakes when the pod changes,
when one of its containers changes state (runtime events), when a probe result flips, or
when a timer it set runs out (a back-off ending, the periodic volume refresh). Each wake
runs :meth:`PodWorker.sync` on the newest pod object, which compares what should run with
what runs and does the next steps, in the kubelet's order:

1. the sandbox (the pod's infra process and namespaces), then its network;
2. the volumes, again at each refresh so that ConfigMap and Secret changes land;
3. init containers, one at a time, each to a successful exit;
4. the app containers: pull by ``imagePullPolicy``, create, start, ``postStart``; restart
   by ``restartPolicy`` with back-off (``CrashLoopBackOff``), kill on a liveness failure;
5. the status: containers, phase, conditions, IPs, posted when it changed.

A pod being deleted is shut down gracefully (``preStop``, the stop signal, the grace
period, then SIGKILL), torn down, and its object deleted. Nothing here holds a retry
loop: a failed step records why (a waiting reason, an event) and the next wake tries
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from kcore.errors import KcoreError, NotFound
from kcore.interfaces import CONTAINER_CREATED, CONTAINER_EXITED, CONTAINER_RUNNING
from kcore.nodeagent import containers as cri
from kcore.nodeagent.backoff import Backoff
from kcore.nodeagent.status import (
    TERMINAL_PHASES,
    ContainerView,
    comparable,
    container_status,
    pod_conditions,
    pod_phase,
    rfc3339,
)

if TYPE_CHECKING:
    from kcore.nodeagent.agent import NodeAgent

log = structlog.get_logger("kcore.nodeagent")

VOLUME_RETRY = (1.0, 30.0)
MIN_GRACE = 2
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


class SyncError(Exception):
    """A step failed in a way the pod's status shows: ``reason`` and ``message`` become the
    container's waiting state (``container`` ``None``: every not-yet-created container)."""

    def __init__(self, reason: str, message: str, container: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.container = container


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def pod_full_name(pod: Mapping[str, Any]) -> str:
    meta = _meta(pod)
    return f"{meta.get('name')}_{meta.get('namespace')}({meta.get('uid')})"


class PodWorker:
    def __init__(self, agent: NodeAgent, pod: Mapping[str, Any]) -> None:
        self.agent = agent
        self.pod: dict[str, Any] = dict(pod)
        self.uid: str = _meta(pod).get("uid") or ""
        self.gone = False
        """The pod object no longer exists in the API."""
        self.done = False
        self._wake = asyncio.Event()
        self._deadline: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sandbox_id: str | None = None
        self.sandbox_attempt = -1
        self.netns_path: str | None = None
        self.pod_ips: list[str] = []
        self.network_ready = False
        self.volume_paths: dict[str, Path] = {}
        self.read_only_volumes: set[str] = set()
        self.volumes_ready = False
        self._volumes_at = 0.0
        self._volume_backoff = VOLUME_RETRY[0]
        self.waiting: dict[str, tuple[str, str]] = {}
        self.attempts: dict[str, int] = {}
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")
        self._posted: Any = None
        self._messages: dict[str, str] = {}
        self._log = log.bind(pod=f"{_meta(pod).get('namespace')}/{_meta(pod).get('name')}")

    # -- driving --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-worker-{self.uid}")

    def update(self, pod: Mapping[str, Any]) -> None:
        self.pod = dict(pod)
        self.wake()

    def deleted(self, pod: Mapping[str, Any]) -> None:
        self.pod = dict(pod)
        self.gone = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def wake_in(self, seconds: float) -> None:
        at = time.monotonic() + max(0.0, seconds)
        if self._deadline is None or at < self._deadline:
            self._deadline = at

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_done(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while not self.done and not self._stopping:
            timeout = None
            if self._deadline is not None:
                timeout = max(0.0, self._deadline - time.monotonic())
            if not self._wake.is_set():
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that arrives as the event fires, and stop() would hang
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            if self._stopping:
                break
            self._wake.clear()
            self._deadline = None
            try:
                await self.sync()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self._log.exception("pod sync failed")
                self.wake_in(min(30.0, 0.5 * 2**failures))
        self.agent.forget_worker(self)

    # -- the sync -------------------------------------------------------------------------

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.pod.get("spec") or {}

    def terminating(self) -> bool:
        return self.gone or bool(_meta(self.pod).get("deletionTimestamp"))

    async def sync(self) -> None:
        if self.terminating():
            await self.terminate()
            return
        if self.start_time is None:
            self.start_time = rfc3339(time.time())
        records = await self.agent.pod_containers(self.uid)
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES:
            await self._wind_down(records)
            return
        if (
            records
            and (self.spec.get("restartPolicy") or "Always") == "Never"
            and not await self._sandbox_ready()
        ):
            # The kubelet never re-creates the sandbox of a pod that ran and must not
            # restart: what ran is reported (a vanished container as unknown, 137).
            await self.post_status(records)
            return
        try:
            await self._ensure_sandbox(records)
            records = await self.agent.pod_containers(self.uid)
            await self._ensure_volumes()
        except SyncError as exc:
            self.waiting["*"] = (exc.reason, exc.message)
            await self.post_status(records)
            return
        self.waiting.pop("*", None)
        initialized = await self._sync_init_containers(records)
        if initialized:
            await self._sync_app_containers(records)
        records = await self.agent.pod_containers(self.uid)
        self.agent.sync_probes(self, records)
        status = await self.post_status(records)
        if status.get("phase") in TERMINAL_PHASES:
            await self._wind_down(records)

    # -- sandbox and network --------------------------------------------------------------

    async def _sandbox_ready(self) -> bool:
        found = await self.agent.find_sandbox(self.uid)
        return found is not None and found.get("state") == "SANDBOX_READY"

    async def _ensure_sandbox(self, records: list[Mapping[str, Any]]) -> None:
        runtime = self.agent.runtime
        if self.sandbox_id is None:
            found = await self.agent.find_sandbox(self.uid)
            if found is not None:
                self.sandbox_id = found["id"]
                self.sandbox_attempt = int((found.get("metadata") or {}).get("attempt") or 0)
                self.netns_path = found.get("netns_path")
        ready = False
        if self.sandbox_id is not None:
            try:
                status = await runtime.pod_sandbox_status(self.sandbox_id)
                ready = status.get("state") == "SANDBOX_READY"
                self.netns_path = status.get("netns_path")
            except NotFound:
                ready = False
            if not ready:
                await self.event(
                    "Normal",
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.",
                )
                await self._remove_sandbox()
        if self.sandbox_id is None:
            await self._create_sandbox()
        if not self.network_ready:
            await self._setup_network()

    async def _create_sandbox(self) -> None:
        attempt = self.sandbox_attempt + 1
        meta = _meta(self.pod)
        log_dir = self.agent.pod_log_dir(self.pod)
        log_dir.mkdir(parents=True, exist_ok=True)
        config = cri.sandbox_config(
            self.pod, attempt=attempt, log_directory=log_dir, dns=self.agent.dns_config(self.pod)
        )
        try:
            sandbox_id = await self.agent.runtime.run_pod_sandbox(config)
        except KcoreError as exc:
            await self.event(
                "Warning",
                "FailedCreatePodSandBox",
                f"Failed to create pod sandbox: {exc}",
            )
            self.wake_in(self._volume_retry())
            raise SyncError("ContainerCreating", "") from exc
        self.sandbox_id = sandbox_id
        self.sandbox_attempt = attempt
        self.agent.sandbox_configs[sandbox_id] = config
        status = await self.agent.runtime.pod_sandbox_status(sandbox_id)
        self.netns_path = status.get("netns_path")
        self.network_ready = False
        self._log.debug("sandbox created", sandbox=sandbox_id, uid=meta.get("uid"))

    async def _setup_network(self) -> None:
        if self.spec.get("hostNetwork") or self.agent.network is None:
            self.pod_ips = [self.agent.node_ip]
            self.network_ready = True
            return
        if not self.netns_path:
            raise SyncError("ContainerCreating", "")
        config = {
            "name": _meta(self.pod).get("name"),
            "namespace": _meta(self.pod).get("namespace"),
            "port_mappings": self.agent.sandbox_configs.get(self.sandbox_id or "", {}).get(
                "port_mappings"
            )
            or cri.sandbox_config(self.pod, attempt=0, log_directory=Path("/"), dns=None)[
                "port_mappings"
            ],
        }
        try:
            answer = await self.agent.network.setup_pod(self.uid, self.netns_path, config)
        except KcoreError as exc:
            await self.event(
                "Warning",
                "FailedCreatePodSandBox",
                f"Failed to create pod sandbox: failed to set up the pod's network: {exc}",
            )
            await self._remove_sandbox()
            self.wake_in(self._volume_retry())
            raise SyncError("ContainerCreating", "") from exc
        self.pod_ips = list(answer.get("ips") or [])
        self.network_ready = True

    async def _remove_sandbox(self) -> None:
        if self.sandbox_id is None:
            return
        runtime = self.agent.runtime
        if self.agent.network is not None and not self.spec.get("hostNetwork"):
            with contextlib.suppress(KcoreError):
                await self.agent.network.teardown_pod(self.uid, self.netns_path)
        with contextlib.suppress(NotFound):
            await runtime.stop_pod_sandbox(self.sandbox_id)
        with contextlib.suppress(NotFound):
            await runtime.remove_pod_sandbox(self.sandbox_id)
        self.agent.sandbox_configs.pop(self.sandbox_id, None)
        self.sandbox_id = None
        self.netns_path = None
        self.network_ready = False

    def _volume_retry(self) -> float:
        wait = self._volume_backoff
        self._volume_backoff = min(self._volume_backoff * 2, VOLUME_RETRY[1])
        return wait

    # -- volumes ----------------------------------------------------------------------------

    async def _ensure_volumes(self) -> None:
        now = time.monotonic()
        if self.volumes_ready and now - self._volumes_at < self.agent.sync_frequency:
            self.wake_in(self.agent.sync_frequency - (now - self._volumes_at))
            return
        failed = None
        for volume in self.spec.get("volumes") or []:
            name = volume.get("name") or ""
            try:
                self.volume_paths[name] = await self.agent.setup_volume(
                    self.pod, volume, self.read_only_volumes
                )
            except KcoreError as exc:
                failed = f'MountVolume.SetUp failed for volume "{name}" : {exc}'
                break
        if failed is not None:
            await self.event("Warning", "FailedMount", failed)
            if not self.volumes_ready:
                self.wake_in(self._volume_retry())
                raise SyncError("ContainerCreating", "")
            self.wake_in(self.agent.sync_frequency)
            return
        self._volume_backoff = VOLUME_RETRY[0]
        self.volumes_ready = True
        self._volumes_at = now
        self.wake_in(self.agent.sync_frequency)

    # -- containers -------------------------------------------------------------------------

    @staticmethod
    def _by_name(records: list[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
        out: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            name = (record.get("labels") or {}).get(cri.CONTAINER_NAME) or (
                record.get("metadata") or {}
            ).get("name")
            out.setdefault(name, []).append(record)
        for items in out.values():
            items.sort(
                key=lambda r: ((r.get("metadata") or {}).get("attempt", 0), r.get("created_at", 0))
            )
        return out

    def _in_sandbox(self, record: Mapping[str, Any] | None) -> bool:
        return record is not None and record.get("pod_sandbox_id") == self.sandbox_id

    async def _sync_init_containers(self, records: list[Mapping[str, Any]]) -> bool:
        """Run init containers in order; True once all have exited 0."""
        by_name = self._by_name(records)
        policy = self.spec.get("restartPolicy") or "Always"
        for container in self.spec.get("initContainers") or []:
            name = container["name"]
            history = by_name.get(name) or []
            current = history[-1] if history else None
            if not self._in_sandbox(current):
                await self.start_container(container, "init", history)
                return False
            assert current is not None
            state = current.get("state")
            if state == CONTAINER_RUNNING:
                return False
            if state == CONTAINER_CREATED:
                await self._start_created(container, current)
                return False
            if int(current.get("exit_code") or 0) == 0 and state == CONTAINER_EXITED:
                self.waiting.pop(name, None)
                continue
            if policy == "Never":
                return False
            await self._restart(container, "init", current, history)
            return False
        return True

    async def _sync_app_containers(self, records: list[Mapping[str, Any]]) -> None:
        by_name = self._by_name(records)
        policy = self.spec.get("restartPolicy") or "Always"
        prober = self.agent.prober
        for container in self.spec.get("containers") or []:
            name = container["name"]
            history = by_name.get(name) or []
            current = history[-1] if history else None
            if not self._in_sandbox(current):
                if current is not None and current.get("state") != CONTAINER_EXITED:
                    await self.agent.runtime.stop_container(current["id"], 0)
                succeeded = (
                    current is not None
                    and current.get("state") == CONTAINER_EXITED
                    and not current.get("exit_code")
                )
                if not (succeeded and policy == "OnFailure"):  # as the kubelet on a new sandbox
                    await self.start_container(container, "app", history)
                continue
            assert current is not None
            state = current.get("state")
            if state == CONTAINER_CREATED:
                await self._start_created(container, current)
                continue
            if state == CONTAINER_RUNNING:
                wanted = cri.container_hash(container)
                have = (current.get("annotations") or {}).get(cri.CONTAINER_HASH)
                why = None
                if have and have != wanted:
                    why = f"Container {name} definition changed, will be restarted"
                elif prober is not None:
                    failed = prober.liveness_failed(self.uid, name, current["id"])
                    if failed:
                        why = failed + (", will be restarted" if policy != "Never" else "")
                if why is None:
                    continue
                await self.kill_container(current, container, why, self._grace())
                current = await self.agent.runtime.container_status(current["id"])
                history = [*history[:-1], current]
            code = int(current.get("exit_code") or 0)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                continue
            await self._restart(container, "app", current, history)

    async def _restart(
        self,
        container: Mapping[str, Any],
        kind: str,
        current: Mapping[str, Any],
        history: list[Mapping[str, Any]],
    ) -> None:
        name = container["name"]
        key = f"{self.uid}/{name}/{cri.container_hash(container)}"
        finished = (current.get("finished_at") or 0) / 1e9 or time.time()
        backoff: Backoff = self.agent.restart_backoff
        wait = backoff.remaining(key, finished, time.time())
        if wait > 0:
            delay = backoff.delay(key)
            self.waiting[name] = (
                "CrashLoopBackOff",
                f"back-off {_duration(delay)} restarting failed container={name} "
                f"pod={pod_full_name(self.pod)}",
            )
            await self.event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {name} in pod {pod_full_name(self.pod)}",
                field_path=self._field_path(container, kind),
            )
            self.wake_in(wait + 0.05)
            return
        backoff.next(key, finished)
        await self.start_container(container, kind, history)

    def _field_path(self, container: Mapping[str, Any], kind: str) -> str:
        group = "initContainers" if kind == "init" else "containers"
        return f"spec.{group}{{{container['name']}}}"

    async def start_container(
        self, container: Mapping[str, Any], kind: str, history: list[Mapping[str, Any]]
    ) -> None:
        """Pull, create and start one container (a new instance); failures become its
        waiting reason and an event."""
        name = container["name"]
        field_path = self._field_path(container, kind)
        try:
            await self.agent.ensure_image(self, container, field_path)
            attempt = (
                max(
                    [self.attempts.get(name, -1)]
                    + [int((r.get("metadata") or {}).get("attempt") or 0) for r in history]
                )
                + 1
            )
            config = await self.agent.container_config(self, container, kind, attempt)
        except SyncError as exc:
            self.waiting[name] = (exc.reason, exc.message)
            return
        try:
            container_id = await self.agent.runtime.create_container(
                self.sandbox_id, config, self.agent.sandbox_configs.get(self.sandbox_id or "", {})
            )
        except KcoreError as exc:
            self.waiting[name] = ("CreateContainerError", str(exc))
            await self.event("Warning", "Failed", f"Error: {exc}", field_path=field_path)
            self.wake_in(self._volume_retry())
            return
        self.attempts[name] = attempt
        self.agent.container_owner[container_id] = self.uid
        await self.event("Normal", "Created", f"Created container: {name}", field_path=field_path)
        # older instances go, the one before stays for ``lastState`` and ``--previous``
        for old in history[:-1]:
            with contextlib.suppress(KcoreError):
                await self.agent.runtime.remove_container(old["id"])
        await self._start_created(container, {"id": container_id}, kind=kind)

    async def _start_created(
        self, container: Mapping[str, Any], record: Mapping[str, Any], kind: str = "app"
    ) -> None:
        name = container["name"]
        field_path = self._field_path(container, kind)
        try:
            await self.agent.runtime.start_container(record["id"])
        except KcoreError as exc:
            self.waiting.pop(name, None)
            await self.event("Warning", "Failed", f"Error: {exc}", field_path=field_path)
            return
        self.waiting.pop(name, None)
        await self.event("Normal", "Started", f"Started container {name}", field_path=field_path)
        handler = (container.get("lifecycle") or {}).get("postStart")
        if handler:
            error = await self.agent.run_handler(self, container, record["id"], handler, 30.0)
            if error is not None:
                await self.event(
                    "Warning",
                    "FailedPostStartHook",
                    f"PostStartHook failed: {error}",
                    field_path=field_path,
                )
                status = await self.agent.runtime.container_status(record["id"])
                await self.kill_container(status, container, None, self._grace())
                self.waiting[name] = ("PostStartHookError", error)

    def _grace(self) -> int:
        meta = _meta(self.pod)
        if meta.get("deletionGracePeriodSeconds") is not None:
            return int(meta["deletionGracePeriodSeconds"])
        grace = self.spec.get("terminationGracePeriodSeconds")
        return 30 if grace is None else int(grace)

    async def kill_container(
        self,
        record: Mapping[str, Any],
        container: Mapping[str, Any] | None,
        reason: str | None,
        grace: int,
    ) -> None:
        """Stop one container as the kubelet's ``killContainer``: an event, ``preStop``
        within the grace period, then the stop signal and SIGKILL when the rest runs out."""
        if record.get("state") not in (CONTAINER_RUNNING, CONTAINER_CREATED):
            return
        name = (record.get("labels") or {}).get(cri.CONTAINER_NAME) or "?"
        kind = (record.get("labels") or {}).get(cri.CONTAINER_KIND) or "app"
        field_path = f"spec.{'initContainers' if kind == 'init' else 'containers'}{{{name}}}"
        await self.event(
            "Normal", "Killing", reason or f"Stopping container {name}", field_path=field_path
        )
        started = time.monotonic()
        handler = ((container or {}).get("lifecycle") or {}).get("preStop")
        if handler and grace > 0 and record.get("state") == CONTAINER_RUNNING:
            error = await self.agent.run_handler(
                self, container or {}, record["id"], handler, grace
            )
            if error is not None:
                await self.event(
                    "Warning",
                    "FailedPreStopHook",
                    f"PreStopHook failed: {error}",
                    field_path=field_path,
                )
        remaining = max(MIN_GRACE, int(grace - (time.monotonic() - started)))
        with contextlib.suppress(NotFound):
            await self.agent.runtime.stop_container(record["id"], remaining)

    # -- winding down and terminating -------------------------------------------------------

    async def _wind_down(self, records: list[Mapping[str, Any]]) -> None:
        """A pod in a terminal phase: nothing runs any more, its network is released."""
        for record in records:
            if record.get("state") in (CONTAINER_RUNNING, CONTAINER_CREATED):
                await self.agent.runtime.stop_container(record["id"], 0)
        if self.agent.prober is not None:
            self.agent.prober.remove_pod(self.uid)
        if self.sandbox_id is None:
            found = await self.agent.find_sandbox(self.uid)
            self.sandbox_id = found["id"] if found else None
        if self.sandbox_id is not None:
            if self.agent.network is not None and not self.spec.get("hostNetwork"):
                with contextlib.suppress(KcoreError):
                    await self.agent.network.teardown_pod(self.uid, self.netns_path)
            with contextlib.suppress(NotFound):
                await self.agent.runtime.stop_pod_sandbox(self.sandbox_id)
        self.network_ready = False

    async def terminate(self) -> None:
        """Shut the pod down for good and, once everything is gone, delete its object."""
        records = await self.agent.pod_containers(self.uid)
        grace = self._grace() if not self.gone else 0
        specs = {
            c["name"]: c
            for c in [
                *(self.spec.get("initContainers") or []),
                *(self.spec.get("containers") or []),
            ]
        }
        await asyncio.gather(
            *(
                self.kill_container(
                    r, specs.get((r.get("labels") or {}).get(cri.CONTAINER_NAME, "")), None, grace
                )
                for r in records
                if r.get("state") in (CONTAINER_RUNNING, CONTAINER_CREATED)
            )
        )
        if self.agent.prober is not None:
            self.agent.prober.remove_pod(self.uid)
        records = await self.agent.pod_containers(self.uid)
        if not self.gone:
            await self.post_status(records, terminal=True)
        if self.sandbox_id is None:
            found = await self.agent.find_sandbox(self.uid)
            self.sandbox_id = found["id"] if found else None
        await self._remove_sandbox()
        for record in records:
            with contextlib.suppress(KcoreError):
                await self.agent.runtime.remove_container(record["id"])
            self.agent.container_owner.pop(record.get("id"), None)
        await self.agent.teardown_volumes(self.pod)
        self.agent.restart_backoff.forget(f"{self.uid}/")
        if not self.gone:
            meta = _meta(self.pod)
            with contextlib.suppress(NotFound, KcoreError):
                await self.agent.api.delete(
                    "v1",
                    "Pod",
                    meta["name"],
                    meta.get("namespace"),
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
        self.done = True

    # -- status -----------------------------------------------------------------------------

    async def _termination_message(
        self, container: Mapping[str, Any], record: Mapping[str, Any] | None
    ) -> str | None:
        if record is None or record.get("state") != CONTAINER_EXITED:
            return None
        cid = record["id"]
        if cid in self._messages:
            return self._messages[cid] or None
        text = self.agent.read_termination_message(self, container, record)
        self._messages[cid] = text or ""
        return text or None

    async def _views(
        self, specs: list[Mapping[str, Any]], by_name: dict[str, list[Mapping[str, Any]]], kind: str
    ) -> list[dict[str, Any]]:
        prober = self.agent.prober
        out = []
        for container in specs:
            name = container["name"]
            history = by_name.get(name) or []
            current = history[-1] if history else None
            previous = history[-2] if len(history) > 1 else None
            running = current is not None and current.get("state") == CONTAINER_RUNNING
            if kind == "init":
                started = running
                ready = bool(
                    current
                    and current.get("state") == CONTAINER_EXITED
                    and not current.get("exit_code")
                )
            else:
                started = running and (prober is None or prober.started(self.uid, name))
                ready = started and (prober is None or prober.readiness(self.uid, name))
            waiting = self.waiting.get(name) or (self.waiting.get("*") if current is None else None)
            view = ContainerView(
                name=name,
                image=container.get("image") or "",
                current=current,
                previous=previous,
                waiting=waiting,
                ready=ready,
                started=started,
                restart_count=int(((current or {}).get("metadata") or {}).get("attempt") or 0),
                termination_message=await self._termination_message(container, current),
                previous_message=await self._termination_message(container, previous),
            )
            default = (
                "PodInitializing"
                if kind == "app" and self.spec.get("initContainers")
                else "ContainerCreating"
            )
            if kind == "init" and current is None and name != self._next_init(by_name):
                default = "PodInitializing"
            status = container_status(view, default_waiting=default)
            if kind == "init" and status.get("ready") is False and ready:
                status["ready"] = True
            out.append(status)
        return out

    def _next_init(self, by_name: dict[str, list[Mapping[str, Any]]]) -> str | None:
        for container in self.spec.get("initContainers") or []:
            history = by_name.get(container["name"]) or []
            if (
                not history
                or history[-1].get("exit_code")
                or history[-1].get("state") != CONTAINER_EXITED
            ):
                return container["name"]
        return None

    async def post_status(
        self, records: list[Mapping[str, Any]], *, terminal: bool = False
    ) -> dict[str, Any]:
        by_name = self._by_name(records)
        spec = self.spec
        init_statuses = await self._views(list(spec.get("initContainers") or []), by_name, "init")
        statuses = await self._views(list(spec.get("containers") or []), by_name, "app")
        old = self.pod.get("status") or {}
        phase = pod_phase(spec, init_statuses, statuses, terminal=terminal)
        if old.get("phase") in TERMINAL_PHASES:
            phase = old["phase"]  # a terminal phase never changes
        elif terminal and phase not in TERMINAL_PHASES:
            phase = "Failed"
        conditions = pod_conditions(
            spec,
            phase,
            init_statuses,
            statuses,
            sandbox_ready=self.sandbox_id is not None and self.network_ready and not terminal,
            previous=old.get("conditions") or [],
            now=time.time(),
        )
        host_ip = self.agent.node_ip
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass") or "BestEffort",
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        ips = self.pod_ips or [ip.get("ip") for ip in old.get("podIPs") or [] if ip.get("ip")]
        if ips:
            status["podIP"] = ips[0]
            status["podIPs"] = [{"ip": ip} for ip in ips]
        key = comparable(status)
        if key != self._posted:
            meta = _meta(self.pod)
            try:
                answer = await self.agent.api.patch(
                    "v1",
                    "Pod",
                    meta["name"],
                    {"status": status},
                    "merge",
                    namespace=meta.get("namespace"),
                    subresource="status",
                )
            except NotFound:
                self.gone = True
                self.wake()
            else:
                self._posted = key
                if (_meta(answer).get("uid")) == self.uid:
                    self.pod["status"] = answer.get("status") or status
        return status

    # -- events ---------------------------------------------------------------------------

    def record_failure(self, field_path: str, reason: str, message: str) -> None:
        """The kubelet's event for a container that could not be started."""
        if reason == "ErrImageNeverPull":
            self.agent.record(self.pod, "Warning", reason, message, field_path=field_path)
        else:
            self.agent.record(
                self.pod, "Warning", "Failed", f"Error: {message}", field_path=field_path
            )

    async def event(
        self, type: str, reason: str, message: str, *, field_path: str | None = None
    ) -> None:
        self.agent.record(self.pod, type, reason, message, field_path=field_path)


def _duration(seconds: float) -> str:
    """Go's duration text: ``200ms``, ``40s``, ``1m20s``, ``5m0s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:g}s"
    return f"{whole // 60}m{whole % 60}s"


__all__ = ["PodWorker", "SyncError", "pod_full_name"]
