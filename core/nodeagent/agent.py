"""The node agent: kcore's kubelet.

:class:`NodeAgent` registers the node and keeps its Lease and status fresh
(:mod:`.node_status`), watches the pods bound to the node, and gives each one a
:class:`~kcore.nodeagent.pod_worker.PodWorker`. It owns what the workers share: the
runtime and network slot backends, the volume sources, the prober, the back-off of
restarts and image pulls, the events it records. It also answers the API server's
``pods/log``, ``pods/exec`` and ``pods/attach`` (the
:class:`~kcore.apiserver.streaming.PodStreams` a node provides).

Layout under the data directory: ``pods/<uid>/`` (``pod.json``, the spec the volumes were
made from; ``volumes/kubernetes.io~<type>/<name>``; ``containers/<name>/<attempt>``, the
termination-message files) and ``pod-logs/<namespace>_<name>_<uid>/<container>/<n>.log``.

Pods keep running when the agent stops: a new agent finds their sandboxes and containers
through the runtime (by the pod uid label), wires nothing twice (the network slot answers
the same addresses again) and carries on. Sandboxes of pods that no longer exist are torn
down once the pod list is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from kcore.api.defaults import default_pull_policy
from kcore.client.informer import Informer
from kcore.errors import BadRequest, Invalid, KcoreError, NotFound
from kcore.events import EventRecorder
from kcore.interfaces import CONTAINER_RUNNING, NodeServiceContext, RuntimeBackend
from kcore.nodeagent import containers as cri
from kcore.nodeagent.backoff import Backoff
from kcore.nodeagent.credentials import image_credentials, pull_with_credentials
from kcore.nodeagent.image_gc import IMAGE_GC_PERIOD, ImageGC
from kcore.nodeagent.node_status import NodeStatusManager
from kcore.nodeagent.pod_worker import (
    FALLBACK_LOG_BYTES,
    FALLBACK_LOG_LINES,
    TERMINATION_MESSAGE_LIMIT,
    PodWorker,
    SyncError,
)

log = structlog.get_logger("kcore.nodeagent")

COMPONENT = "kubelet"
LOG_ROTATION_PERIOD = 10.0
SYNC_FREQUENCY = 10.0
"""Seconds between refreshes of a running pod's volumes (the kubelet's is 1 min)."""


class NodeAgent:
    """Runs the pods bound to ``node_name``; see the module docstring."""

    def __init__(
        self,
        api: Any,
        backend: RuntimeBackend,
        *,
        node_name: str,
        data_dir: Path | str,
        network: Any = None,
        volume_sources: Sequence[Any] = (),
        node_ip: str | None = None,
        pod_cidr: str | None = None,
        labels: Mapping[str, str] | None = None,
        sync_frequency: float = SYNC_FREQUENCY,
        node_allocatable: Mapping[str, str] | None = None,
        heartbeat: float = 10.0,
        docker_config: Path | str | None = None,
        image_gc_high_threshold: int = 85,
        image_gc_low_threshold: int = 80,
        image_minimum_gc_age: float = 120.0,
        image_gc_period: float = IMAGE_GC_PERIOD,
        node_services: Sequence[Any] = (),
        settings: Any = None,
    ) -> None:
        self.api = api
        self.runtime = backend.runtime
        self.images = backend.images
        self.network = network
        self.node_name = node_name
        self.data_dir = Path(data_dir)
        self.pods_dir = self.data_dir / "pods"
        self.log_root = self.data_dir / "pod-logs"
        self.sources: dict[str, Any] = {}
        for source in volume_sources:
            self.sources.setdefault(source.type_name, source)
        self.sync_frequency = sync_frequency
        self.log_max_size = 10 * 1024 * 1024
        self.log_max_files = 5
        self.node_allocatable = dict(node_allocatable or {})
        self.status_manager = NodeStatusManager(
            api,
            node_name,
            node_ip=node_ip,
            pod_cidr=pod_cidr,
            labels=labels,
            runtime=self.runtime,
            network=network,
            heartbeat=heartbeat,
        )
        self.node_ip = self.status_manager.node_ip
        self.node_services = list(node_services)
        self.service_context = NodeServiceContext(
            api=api, settings=settings, node_name=node_name, node_ip=self.node_ip, network=network
        )
        self.restart_backoff = Backoff()
        self.image_backoff = Backoff()
        self._pull_failed_at: dict[str, float] = {}
        self.container_owner: dict[str, str] = {}
        """Container id -> pod uid, to route runtime events to workers."""
        self.sandbox_configs: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, PodWorker] = {}
        self.recorder = EventRecorder(api, COMPONENT, node_name)
        self.prober: Any = None
        self._events: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self.informer: Informer | None = None
        self.docker_config = (
            Path(docker_config) if docker_config is not None else self.data_dir / "config.json"
        )
        """The node's registry credentials (the kubelet's /var/lib/kubelet/config.json)."""
        self.image_gc_period = image_gc_period
        self.image_gc = ImageGC(
            self.images,
            self.runtime,
            high_threshold=image_gc_high_threshold,
            low_threshold=image_gc_low_threshold,
            min_age=image_minimum_gc_age,
            on_event=self._node_event,
        )

    # -- running --------------------------------------------------------------------------

    async def start(self) -> None:
        """Register the node, start the pod watch and the workers; returns once the pods
        bound to the node are known and orphaned sandboxes are gone."""
        from kcore.nodeagent.probes import ProbeManager

        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.log_root.mkdir(parents=True, exist_ok=True)
        self.prober = ProbeManager(
            self.runtime, on_change=self._probe_changed, on_event=self._probe_event
        )
        await self.status_manager.register()
        self._tasks.append(asyncio.create_task(self.status_manager.run(self._stop)))
        await self._index_containers()
        self._tasks.append(asyncio.create_task(self._container_events()))
        self._tasks.append(asyncio.create_task(self._rotate_logs()))
        self._tasks.append(asyncio.create_task(self.image_gc.run(self._stop, self.image_gc_period)))
        for service in self.node_services:
            self._tasks.append(asyncio.create_task(self._run_node_service(service)))
        await asyncio.sleep(0)  # each service publishes its context fields before its first await
        informer = Informer(self.api, "v1", "Pod", field_selector=f"spec.nodeName={self.node_name}")
        informer.on_add(self._pod_added)
        informer.on_update(self._pod_updated)
        informer.on_delete(self._pod_deleted)
        self.informer = informer
        informer.start()
        await informer.wait_for_sync()
        await self.cleanup_orphans()
        log.info("node agent running", node=self.node_name, pods=len(self.workers))

    async def close(self) -> None:
        """Stop watching and syncing; the pods keep running."""
        self._stop.set()
        if self.informer is not None:
            await self.informer.stop()
        for worker in list(self.workers.values()):
            await worker.stop()
        if self.prober is not None:
            await self.prober.close()
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._events]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_node_service(self, service: Any) -> None:
        """Run one node service until the agent stops; a crash is logged and the service
        runs again after a back-off (1 s doubling to 60 s)."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                await service.run(self.service_context, self._stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node service failed", service=service.name, retry_in=delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            delay = min(delay * 2, 60.0)

    # -- the pod watch ----------------------------------------------------------------------

    def _pod_added(self, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if not uid:
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.start()
            worker.wake()
        else:
            worker.update(pod)

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._pod_added(new)

    def _pod_deleted(self, pod: dict[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        worker = self.workers.get(uid or "")
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.start()
        worker.deleted(pod)

    def forget_worker(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    def _wake(self, uid: str | None) -> None:
        worker = self.workers.get(uid or "")
        if worker is not None:
            worker.wake()

    def _node_event(self, type: str, reason: str, message: str) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "uid": self.node_name},
        }
        self.record(node, type, reason, message)

    def _probe_changed(self, uid: str) -> None:
        self._wake(uid)

    def _probe_event(
        self, pod: Mapping[str, Any], container: str, type: str, reason: str, message: str
    ) -> None:
        self.record(pod, type, reason, message, field_path=self._field_path(pod, container))

    @staticmethod
    def _field_path(pod: Mapping[str, Any], container: str) -> str:
        spec = pod.get("spec") or {}
        if any(c.get("name") == container for c in spec.get("initContainers") or []):
            return f"spec.initContainers{{{container}}}"
        return f"spec.containers{{{container}}}"

    async def _index_containers(self) -> None:
        for record in await self.runtime.list_containers():
            uid = (record.get("labels") or {}).get(cri.POD_UID)
            if uid:
                self.container_owner[record["id"]] = uid

    async def _container_events(self) -> None:
        events = self.runtime.container_events()
        try:
            async for event in events:
                self._wake(self.container_owner.get(event.get("container_id", "")))
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    async def _rotate_logs(self) -> None:
        """Every ``LOG_ROTATION_PERIOD`` seconds, rotate the logs of running containers past
        ``log_max_size`` (10 MiB, keeping 5 files, as the kubelet)."""
        from kcore.nodeagent.logs import LogRotator

        rotator = LogRotator()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), LOG_ROTATION_PERIOD)
            if self._stop.is_set():
                return
            try:
                running = await self.runtime.list_containers({"state": CONTAINER_RUNNING})
                await rotator.rotate(
                    self.runtime,
                    [(r["id"], Path(r["log_path"])) for r in running if r.get("log_path")],
                    max_size=self.log_max_size,
                    max_files=self.log_max_files,
                )
            except Exception as exc:
                log.warning("log rotation failed", error=str(exc))

    async def cleanup_orphans(self) -> None:
        """Tear down sandboxes and pod directories of pods that no longer exist."""
        live = set(self.workers)
        for sandbox in await self.runtime.list_pod_sandbox():
            uid = (sandbox.get("labels") or {}).get(cri.POD_UID)
            if not uid or uid in live:
                continue
            log.info("removing an orphaned pod sandbox", uid=uid, sandbox=sandbox["id"])
            if self.network is not None:
                with contextlib.suppress(KcoreError):
                    await self.network.teardown_pod(uid, sandbox.get("netns_path"))
            with contextlib.suppress(KcoreError):
                await self.runtime.stop_pod_sandbox(sandbox["id"])
                await self.runtime.remove_pod_sandbox(sandbox["id"])
        for directory in self.pods_dir.iterdir() if self.pods_dir.is_dir() else ():
            if directory.name not in live:
                pod = _read_json(directory / "pod.json")
                if pod is not None:
                    await self.teardown_volumes(pod)
                else:
                    shutil.rmtree(directory, ignore_errors=True)
        if self.network is not None:
            with contextlib.suppress(KcoreError):
                await self.network.gc(live)

    # -- what workers use -------------------------------------------------------------------

    def record(
        self,
        pod: Mapping[str, Any],
        type: str,
        reason: str,
        message: str,
        *,
        field_path: str | None = None,
    ) -> None:
        """Record an Event in the background (recording never slows a pod down)."""
        ref = dict(pod)
        ref.setdefault("apiVersion", "v1")
        ref.setdefault("kind", "Pod")
        task = asyncio.create_task(
            self.recorder.event(ref, type, reason, message, field_path=field_path)
        )
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def pod_containers(self, uid: str) -> list[Mapping[str, Any]]:
        return list(await self.runtime.list_containers({"label_selector": {cri.POD_UID: uid}}))

    async def find_sandbox(self, uid: str) -> Mapping[str, Any] | None:
        found = await self.runtime.list_pod_sandbox({"label_selector": {cri.POD_UID: uid}})
        ready = [s for s in found if s.get("state") == "SANDBOX_READY"]
        pool = ready or list(found)
        if not pool:
            return None
        return max(pool, key=lambda s: (s.get("metadata") or {}).get("attempt") or 0)

    def pod_log_dir(self, pod: Mapping[str, Any]) -> Path:
        meta = pod.get("metadata") or {}
        return self.log_root / f"{meta.get('namespace')}_{meta.get('name')}_{meta.get('uid')}"

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def dns_config(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """The pod's resolv.conf by ``dnsPolicy``, as the kubelet writes it: ``ClusterFirst``
        (the default; ``Default`` for ``hostNetwork`` pods) and ``ClusterFirstWithHostNet``
        name the cluster DNS a node service published, search ``<ns>.svc.<domain>
        svc.<domain> <domain>`` and then the node's domains, with ``ndots:5``; ``Default``
        is the node's resolv.conf; ``None`` only ``dnsConfig``. ``dnsConfig`` adds
        nameservers and searches and overrides options by name; at most 3 nameservers and
        32 search domains are kept. ``{}`` means the node's resolv.conf unchanged."""
        spec = pod.get("spec") or {}
        custom = spec.get("dnsConfig") or {}
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        if policy == "ClusterFirst" and spec.get("hostNetwork"):
            policy = "Default"
        ctx = self.service_context
        if policy == "None":
            base: dict[str, list[str]] = {"servers": [], "searches": [], "options": []}
        elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and ctx.cluster_dns:
            namespace = (pod.get("metadata") or {}).get("namespace") or "default"
            domain = ctx.cluster_domain
            host = _host_resolv()
            base = {
                "servers": list(ctx.cluster_dns),
                "searches": [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
                + [d for d in host["searches"] if d not in (f"svc.{domain}", domain)],
                "options": ["ndots:5"],
            }
        else:
            if not custom:
                return {}
            base = _host_resolv()
        base["servers"] += list(custom.get("nameservers") or [])
        base["searches"] += list(custom.get("searches") or [])
        options = {o.split(":", 1)[0]: o for o in base["options"]}
        for o in custom.get("options") or []:
            if o.get("name"):
                value = o.get("value")
                options[o["name"]] = f"{o['name']}:{value}" if value is not None else o["name"]
        base["options"] = list(options.values())
        base["servers"] = base["servers"][:3]
        base["searches"] = list(dict.fromkeys(base["searches"]))[:32]
        return base

    def volume_source(self, volume: Mapping[str, Any]) -> tuple[str | None, Any, str]:
        """The volume's type (its key other than ``name``), the source that materializes
        it, and why there is none. A ``csi`` volume goes to the source of type
        ``csi:<driver>`` (a plugin's volume type, used inline as Kubernetes' ephemeral CSI
        volumes are)."""
        kind = next((k for k in volume if k != "name"), None)
        if kind == "csi":
            driver = (volume.get("csi") or {}).get("driver") or ""
            key = f"csi:{driver}" if driver else ""
            missing = (
                f"volume driver {driver!r} is not installed on this node"
                if driver
                else "a csi volume needs a driver"
            )
        else:
            key, missing = kind or "", f"volume type {kind!r} is not supported on this node"
        return kind, self.sources.get(key), missing

    async def setup_volume(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], read_only: set[str]
    ) -> Path:
        """Materialize one volume; the node path containers mount. A source whose
        ``read_only`` is true, or a ``csi`` volume with ``readOnly: true``, adds the
        volume's name to ``read_only``."""
        kind, source, missing = self.volume_source(volume)
        name = volume.get("name") or ""
        if source is None:
            raise Invalid(missing)
        uid = (pod.get("metadata") or {}).get("uid") or ""
        pod_dir = self.pod_dir(uid)
        record = pod_dir / "pod.json"
        if not record.exists():
            pod_dir.mkdir(parents=True, exist_ok=True)
            tmp = pod_dir / "pod.json.tmp"
            tmp.write_text(json.dumps({"metadata": pod.get("metadata"), "spec": pod.get("spec")}))
            tmp.replace(record)
        target = pod_dir / "volumes" / f"kubernetes.io~{kind}" / name
        target.mkdir(parents=True, exist_ok=True)
        await source.setup(pod, volume, target, self.api)
        if getattr(source, "read_only", False) or (volume.get("csi") or {}).get("readOnly") is True:
            read_only.add(name)
        host_path = getattr(source, "host_path", None)
        if host_path is not None:
            return Path(host_path(pod, volume))
        return target

    async def teardown_volumes(self, pod: Mapping[str, Any]) -> None:
        uid = (pod.get("metadata") or {}).get("uid") or ""
        pod_dir = self.pod_dir(uid)
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            kind, source, _ = self.volume_source(volume)
            target = pod_dir / "volumes" / f"kubernetes.io~{kind}" / (volume.get("name") or "")
            if source is None or not target.exists():
                continue
            try:
                await source.teardown(pod, volume, target)
            except KcoreError as exc:
                log.warning("volume teardown failed", volume=volume.get("name"), error=str(exc))
        if _has_mounts_below(pod_dir):
            log.warning("pod directory still has mounts; left in place", path=str(pod_dir))
            return
        await asyncio.to_thread(shutil.rmtree, pod_dir, True)

    async def ensure_image(
        self, worker: PodWorker, container: Mapping[str, Any], field_path: str
    ) -> None:
        """Make the container's image present as its ``imagePullPolicy`` says."""
        image = container.get("image") or ""
        policy = container.get("imagePullPolicy") or default_pull_policy(image)
        if not image:
            raise SyncError("InvalidImageName", "the container has no image")
        present = await self.images.image_status(image)
        if policy == "Never":
            if present is None:
                message = f'Container image "{image}" is not present with pull policy of Never'
                worker.record_failure(field_path, "ErrImageNeverPull", message)
                raise SyncError("ErrImageNeverPull", message)
            return
        if policy != "Always" and present is not None:
            worker.agent.record(
                worker.pod,
                "Normal",
                "Pulled",
                f'Container image "{image}" already present on machine',
                field_path=field_path,
            )
            return
        key = f"{worker.uid}/{image}"
        now = time.time()
        wait = self.image_backoff.remaining(key, self._pull_failed_at.get(key, now), now)
        if wait > 0:
            self.record(
                worker.pod,
                "Normal",
                "BackOff",
                f'Back-off pulling image "{image}"',
                field_path=field_path,
            )
            self.record(
                worker.pod, "Warning", "Failed", "Error: ImagePullBackOff", field_path=field_path
            )
            worker.wake_in(wait + 0.05)
            raise SyncError("ImagePullBackOff", f'Back-off pulling image "{image}"')
        self.record(
            worker.pod, "Normal", "Pulling", f'Pulling image "{image}"', field_path=field_path
        )
        started = time.monotonic()
        try:
            credentials = await image_credentials(
                self.api,
                worker.pod,
                image,
                node_config=self.docker_config,
                warn=lambda reason, message: self.record(worker.pod, "Warning", reason, message),
            )
            await pull_with_credentials(self.images, image, credentials)
        except KcoreError as exc:
            self._pull_failed_at[key] = time.time()
            delay = self.image_backoff.next(key, self._pull_failed_at[key])
            message = f'Failed to pull image "{image}": {exc}'
            self.record(worker.pod, "Warning", "Failed", message, field_path=field_path)
            self.record(
                worker.pod, "Warning", "Failed", "Error: ErrImagePull", field_path=field_path
            )
            worker.wake_in(delay + 0.05)
            raise SyncError("ErrImagePull", message) from exc
        self._pull_failed_at.pop(key, None)
        took = time.monotonic() - started
        record = await self.images.image_status(image) or {}
        self.record(
            worker.pod,
            "Normal",
            "Pulled",
            f'Successfully pulled image "{image}" in {took:.3g}s ({took:.3g}s including '
            f"waiting). Image size: {int(record.get('size') or 0)} bytes.",
            field_path=field_path,
        )

    async def container_config(
        self, worker: PodWorker, container: Mapping[str, Any], kind: str, attempt: int
    ) -> dict[str, Any]:
        from kcore.pods.env import expand_args, resolve_env

        field_path = worker._field_path(container, kind)
        pod = worker.pod

        def warn(reason: str, message: str) -> None:
            self.record(pod, "Warning", reason, message, field_path=field_path)

        try:
            env = await resolve_env(
                pod,
                container,
                self.api,
                node_allocatable=self.node_allocatable or None,
                pod_ips=worker.pod_ips,
                host_ips=[self.node_ip],
                warn=warn,
            )
            mounts = cri.mounts(container, worker.volume_paths, worker.read_only_volumes)
        except KcoreError as exc:
            worker.record_failure(field_path, "CreateContainerConfigError", str(exc))
            worker.wake_in(2.0)
            raise SyncError("CreateContainerConfigError", str(exc)) from exc
        command = expand_args(container.get("command"), env)
        args = expand_args(container.get("args"), env)
        termination = self.pod_dir(worker.uid) / "containers" / container["name"] / str(attempt)
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.write_bytes(b"")
        return cri.container_config(
            pod,
            container,
            kind=kind,
            attempt=attempt,
            env=env,
            command=command,
            args=args,
            mounts=mounts,
            termination_log=termination,
        )

    def read_termination_message(
        self, worker: PodWorker, container: Mapping[str, Any], record: Mapping[str, Any]
    ) -> str | None:
        attempt = int((record.get("metadata") or {}).get("attempt") or 0)
        path = self.pod_dir(worker.uid) / "containers" / container["name"] / str(attempt)
        text = ""
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                text = f.read(TERMINATION_MESSAGE_LIMIT).decode("utf-8", "replace")
        if (
            not text
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            and int(record.get("exit_code") or 0) != 0
        ):
            text = _log_tail(record.get("log_path"), FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
        return text or None

    async def run_handler(
        self,
        worker: PodWorker,
        container: Mapping[str, Any],
        container_id: str,
        handler: Mapping[str, Any],
        timeout: float,
    ) -> str | None:
        from kcore.nodeagent.probes import run_handler

        return await run_handler(
            handler,
            runtime=self.runtime,
            container_id=container_id,
            pod_ip=(worker.pod_ips or [self.node_ip])[0],
            container=container,
            timeout=timeout,
            pod=worker.pod,
        )

    def sync_probes(self, worker: PodWorker, records: Sequence[Mapping[str, Any]]) -> None:
        from kcore.nodeagent.probes import ContainerProbeState

        if self.prober is None:
            return
        by_name = worker._by_name(list(records))
        offset = time.monotonic() - time.time()
        states = {}
        for container in worker.spec.get("containers") or []:
            history = by_name.get(container["name"]) or []
            current = history[-1] if history else None
            running = bool(current and current.get("state") == CONTAINER_RUNNING)
            started = (current or {}).get("started_at") or 0
            states[container["name"]] = ContainerProbeState(
                container_id=(current or {}).get("id"),
                running=running,
                started_at=started / 1e9 + offset if started else 0.0,
                pod_ip=(worker.pod_ips or [self.node_ip])[0],
            )
        self.prober.sync_pod(worker.pod, states)

    # -- pods/log, pods/exec, pods/attach (the PodStreams a node provides) -----------------

    async def _container_record(
        self, pod: Mapping[str, Any], container: str, *, previous: bool = False
    ) -> Mapping[str, Any]:
        uid = (pod.get("metadata") or {}).get("uid") or ""
        name = (pod.get("metadata") or {}).get("name")
        records = [
            r
            for r in await self.pod_containers(uid)
            if (r.get("labels") or {}).get(cri.CONTAINER_NAME) == container
        ]
        records.sort(
            key=lambda r: ((r.get("metadata") or {}).get("attempt", 0), r.get("created_at", 0))
        )
        if previous:
            if len(records) < 2:
                raise BadRequest(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            return records[-2]
        if not records:
            reason = "ContainerCreating"
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if status.get("name") == container:
                    waiting = (status.get("state") or {}).get("waiting") or {}
                    reason = waiting.get("reason") or reason
            raise BadRequest(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        return records[-1]

    async def logs(
        self, pod: Mapping[str, Any], container: str, options: Any
    ) -> AsyncIterator[bytes]:
        from datetime import datetime

        from kcore.nodeagent.logs import read_container_log

        record = await self._container_record(pod, container, previous=options.previous)
        path = record.get("log_path")
        if not path:
            raise NotFound(f'container "{container}" has no log')
        cid = record["id"]
        since = None
        if options.since_time:
            since = datetime.fromisoformat(options.since_time.replace("Z", "+00:00"))
        elif options.since_seconds:
            from datetime import UTC, timedelta

            since = datetime.now(UTC) - timedelta(seconds=options.since_seconds)

        async def running() -> bool:
            try:
                status = await self.runtime.container_status(cid)
            except NotFound:
                return False
            return status.get("state") == CONTAINER_RUNNING

        return read_container_log(
            Path(path),
            follow=bool(options.follow) and not options.previous,
            tail_lines=options.tail_lines,
            timestamps=bool(options.timestamps),
            since_time=since,
            limit_bytes=options.limit_bytes,
            is_running=running,
            poll_interval=0.2,
        )

    async def _running_container(self, pod: Mapping[str, Any], container: str) -> str:
        record = await self._container_record(pod, container)
        if record.get("state") != CONTAINER_RUNNING:
            raise BadRequest(f"unable to upgrade connection: container {container} is not running")
        return record["id"]

    async def exec(
        self,
        pod: Mapping[str, Any],
        container: str,
        command: Sequence[str],
        *,
        stdin: bool,
        tty: bool,
    ) -> Any:
        cid = await self._running_container(pod, container)
        return await self.runtime.exec(cid, list(command), tty=tty, stdin=stdin)

    async def attach(
        self, pod: Mapping[str, Any], container: str, *, stdin: bool, tty: bool
    ) -> Any:
        cid = await self._running_container(pod, container)
        return await self.runtime.attach(cid, stdin=stdin, tty=tty)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _host_resolv() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"servers": [], "searches": [], "options": []}
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            words = line.split()
            if not words or words[0].startswith(("#", ";")):
                continue
            if words[0] == "nameserver" and len(words) > 1:
                out["servers"].append(words[1])
            elif words[0] in ("search", "domain"):
                out["searches"] = words[1:]
            elif words[0] == "options":
                out["options"] += words[1:]
    return out


def _has_mounts_below(path: Path) -> bool:
    top = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == top or point.startswith(top + "/"):
                    return True
    except OSError:
        return False
    return False


def _log_tail(path: str | None, lines: int, limit: int) -> str:
    """The last ``lines`` lines (at most ``limit`` bytes) of a CRI log's content."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            raw = f.read()
    except OSError:
        return ""
    out: list[bytes] = []
    partial = b""
    for line in raw.splitlines():
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        content = parts[3] if len(parts) > 3 else b""
        if parts[2] == b"P":
            partial += content
            continue
        out.append(partial + content)
        partial = b""
    text = b"\n".join(out[-lines:])
    return text[-limit:].decode("utf-8", "replace")


def default_node_name() -> str:
    return socket.gethostname().lower()


__all__ = ["COMPONENT", "SYNC_FREQUENCY", "NodeAgent", "default_node_name"]
