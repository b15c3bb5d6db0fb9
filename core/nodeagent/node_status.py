"""The node's registration, status and heartbeat, as the kubelet's node status manager.

:class:`NodeStatusManager` registers the Node object (labels, capacity, allocatable,
addresses, pod CIDR, conditions, node info), renews the node's Lease in
``kube-node-lease`` every ``heartbeat`` seconds (10, as the kubelet), and posts the status
when it changes or every ``report_every`` seconds (5 minutes, as the kubelet). ``Ready``
follows the container runtime's ``RuntimeReady`` and the network's readiness;
``NetworkUnavailable`` follows the network alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kcore.errors import Conflict, KcoreError, NotFound
from kcore.netinfo import primary_address

KUBELET_VERSION = "v1.32.0-kcore"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
DEFAULT_MAX_PODS = 110

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}
_ARCH.update({"s390x": "s390x", "riscv64": "riscv64"})

_CONDITIONS = (
    # type, status when healthy, reason when healthy, message when healthy
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip('"')
    return "Linux"


def machine_facts(data_dir: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Capacity and node info of this machine."""
    memory_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    try:
        stat = os.statvfs(data_dir)
        storage = stat.f_blocks * stat.f_frsize
    except OSError:
        storage = 0
    uname = os.uname()
    machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    return {
        "capacity": {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory_kib}Ki",
            "ephemeral-storage": f"{storage // 1024}Ki",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "pods": str(DEFAULT_MAX_PODS),
        },
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": _read("/sys/class/dmi/id/product_uuid") or machine_id,
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.release,
            "osImage": _os_image(),
            "containerRuntimeVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _ARCH.get(uname.machine, uname.machine),
        },
    }


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeStatusManager:
    """Registers the node and keeps its status and Lease fresh (see the module docstring).

    ``runtime`` and ``network`` are the slot backends (their ``status()`` feeds the
    conditions); either may be ``None``. ``clock`` returns seconds since the epoch."""

    def __init__(
        self,
        api: Any,
        node_name: str,
        *,
        facts: Mapping[str, Any] | None = None,
        node_ip: str | None = None,
        pod_cidr: str | None = None,
        labels: Mapping[str, str] | None = None,
        runtime: Any = None,
        network: Any = None,
        clock: Callable[[], float] = time.time,
        heartbeat: float = 10.0,
        report_every: float = 300.0,
    ):
        self.api = api
        self.node_name = node_name
        self.facts = dict(facts or machine_facts())
        self.node_ip = node_ip or primary_address()[1]
        self.pod_cidr = pod_cidr
        self.labels = dict(labels or {})
        self.runtime = runtime
        self.network = network
        self.clock = clock
        self.heartbeat = heartbeat
        self.report_every = report_every
        self.node_uid: str | None = None
        self._posted: dict[str, Any] | None = None
        self._posted_at = 0.0
        self._transitions: dict[str, tuple[str, str]] = {}

    # -- what the status says -------------------------------------------------------------

    async def _readiness(self) -> tuple[bool, str, bool, str]:
        """(runtime ready, why not, network ready, why not)."""
        runtime_ok, runtime_why = True, ""
        if self.runtime is not None:
            try:
                conditions = (await self.runtime.status()).get("conditions", ())
                ready = {c.get("type"): c for c in conditions}.get("RuntimeReady") or {}
                runtime_ok = ready.get("status") is True
                if not runtime_ok:
                    runtime_why = f"container runtime is down: {ready.get('message') or ready.get('reason') or 'not ready'}"
            except Exception as exc:  # a runtime that cannot answer is not ready
                runtime_ok, runtime_why = False, f"container runtime status check failed: {exc}"
        network_ok, network_why = True, ""
        if self.network is not None:
            try:
                status = await self.network.status()
                network_ok = bool(status.get("ready"))
                if not network_ok:
                    network_why = (
                        "container runtime network not ready: NetworkReady=false "
                        f"reason:{status.get('reason', '')} message:{status.get('message', '')}"
                    )
            except Exception as exc:
                network_ok, network_why = False, f"network status check failed: {exc}"
        return runtime_ok, runtime_why, network_ok, network_why

    async def _conditions(self, now: float) -> list[dict[str, Any]]:
        runtime_ok, runtime_why, network_ok, network_why = await self._readiness()
        wanted = [(t, s, r, m) for t, s, r, m in _CONDITIONS]
        if runtime_ok and network_ok:
            ready = ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        else:
            ready = ("Ready", "False", "KubeletNotReady", runtime_why or network_why)
        wanted.append(ready)
        if network_ok:
            wanted.append(
                ("NetworkUnavailable", "False", "NetworkReady", "the pod network is ready")
            )
        else:
            wanted.append(("NetworkUnavailable", "True", "NetworkNotReady", network_why))
        out = []
        for kind, status, reason, message in wanted:
            previous = self._transitions.get(kind)
            if previous is None or previous[0] != status:
                self._transitions[kind] = (status, _time(now))
            out.append(
                {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": _time(now),
                    "lastTransitionTime": self._transitions[kind][1],
                }
            )
        return out

    async def desired_status(self) -> dict[str, Any]:
        now = self.clock()
        node_info = dict(self.facts.get("nodeInfo") or {})
        if self.runtime is not None and not node_info.get("containerRuntimeVersion"):
            with contextlib.suppress(Exception):
                version = await self.runtime.version()
                node_info["containerRuntimeVersion"] = (
                    f"{version['runtime_name']}://{version['runtime_version']}"
                )
        capacity = dict(self.facts.get("capacity") or {})
        return {
            "capacity": capacity,
            "allocatable": dict(self.facts.get("allocatable") or capacity),
            "conditions": await self._conditions(now),
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": node_info,
        }

    # -- writing it -------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        arch = (self.facts.get("nodeInfo") or {}).get("architecture", "amd64")
        return {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            **self.labels,
        }

    async def register(self) -> dict[str, Any]:
        """Create the Node, or adopt an existing one of this name (a restart), then post
        its status."""
        try:
            node = await self.api.get("v1", "Node", self.node_name)
            patch: dict[str, Any] = {"metadata": {"labels": self._labels()}}
            if self.pod_cidr and not (node.get("spec") or {}).get("podCIDR"):
                patch["spec"] = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
            node = await self.api.patch("v1", "Node", self.node_name, patch)
        except NotFound:
            spec = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]} if self.pod_cidr else {}
            node = await self.api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": self._labels()},
                    "spec": spec,
                }
            )
        self.node_uid = node["metadata"]["uid"]
        await self.sync_status(force=True)
        return node

    @staticmethod
    def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
        """The status without heartbeat times: what counts as a change."""
        out = dict(status)
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
            for c in status.get("conditions", ())
        ]
        return out

    async def sync_status(self, *, force: bool = False) -> bool:
        """Post the status if it changed or is due; return whether it was posted."""
        status = await self.desired_status()
        now = self.clock()
        changed = self._posted is None or self._comparable(status) != self._comparable(self._posted)
        if not (force or changed):
            # as the kubelet: compare with the Node the server has, which the node lifecycle
            # controller may have marked Unknown while this agent was stalled
            changed = await self._server_differs(status)
        if not (force or changed or now - self._posted_at >= self.report_every):
            return False
        await self.api.patch("v1", "Node", self.node_name, {"status": status}, subresource="status")
        self._posted, self._posted_at = status, now
        return True

    async def _server_differs(self, status: Mapping[str, Any]) -> bool:
        try:
            node = await self.api.get("v1", "Node", self.node_name)
        except NotFound:
            return True
        server = {
            c.get("type"): c.get("status")
            for c in (node.get("status") or {}).get("conditions") or []
        }
        return server != {c["type"]: c["status"] for c in status.get("conditions", ())}

    async def renew_lease(self) -> dict[str, Any]:
        now = _micro_time(self.clock())
        try:
            lease = await self.api.get(
                "coordination.k8s.io/v1", "Lease", self.node_name, namespace=LEASE_NAMESPACE
            )
        except NotFound:
            owner = []
            if self.node_uid:
                owner = [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": self.node_name,
                        "uid": self.node_uid,
                    }
                ]
            return await self.api.create(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.node_name,
                        "namespace": LEASE_NAMESPACE,
                        "ownerReferences": owner,
                    },
                    "spec": {
                        "holderIdentity": self.node_name,
                        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                        "renewTime": now,
                    },
                }
            )
        lease["spec"] = {
            **(lease.get("spec") or {}),
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now,
        }
        return await self.api.update(lease)

    async def run(self, stop: asyncio.Event) -> None:
        """Register, then heartbeat until ``stop`` is set. Failures back off from 200 ms to
        7 s, as the kubelet's lease controller does, and never end the loop."""
        backoff = 0.2
        registered = False
        while not stop.is_set():
            try:
                if not registered:
                    await self.register()
                    registered = True
                await self.renew_lease()
                await self.sync_status()
                backoff, wait = 0.2, self.heartbeat
            except (KcoreError, OSError) as exc:
                if isinstance(exc, Conflict):
                    wait = 0.0
                else:
                    wait, backoff = backoff, min(backoff * 2, 7.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
