"""The protocols that slot backends and contributions implement.

The store's contract lives in :mod:`kcore.store`; the others are here. Slot backends
(runtime, network) are single, active implementations; contributions (volume sources,
controllers, scheduler steps, admission checks) come from any number of plugins.

All methods are coroutines: blocking work belongs in threads or helper processes, never
on the event loop. Messages follow the CRI and CNI shapes with Python names
(``pod_sandbox_id``, ``run_pod_sandbox``); where a message is still a plain mapping here,
its keys are the CRI field names in snake case.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# --------------------------------------------------------------------------------------
# Container runtime (CRI-like): the runtime service and the image service
# --------------------------------------------------------------------------------------

SANDBOX_READY = "SANDBOX_READY"
SANDBOX_NOTREADY = "SANDBOX_NOTREADY"
CONTAINER_CREATED = "CONTAINER_CREATED"
CONTAINER_RUNNING = "CONTAINER_RUNNING"
CONTAINER_EXITED = "CONTAINER_EXITED"
CONTAINER_UNKNOWN = "CONTAINER_UNKNOWN"

#: Container event types, as CRI's ``ContainerEventType``.
CONTAINER_CREATED_EVENT = "CONTAINER_CREATED_EVENT"
CONTAINER_STARTED_EVENT = "CONTAINER_STARTED_EVENT"
CONTAINER_STOPPED_EVENT = "CONTAINER_STOPPED_EVENT"
CONTAINER_DELETED_EVENT = "CONTAINER_DELETED_EVENT"

#: What a runtime may declare in ``capabilities``; the runtime conformance suite skips the
#: checks of a capability a runtime lacks, saying so.
RUNTIME_CAPABILITIES = frozenset(
    {
        "processes",  # containers are real processes (their output and effects are real)
        "isolation",  # own PID and mount namespaces, pod network/IPC/UTS namespaces
        "exec",  # exec_sync and streaming exec
        "attach",  # streaming attach to a container's stdio
        "logs",  # container output written to log_path in the CRI log format
        "mounts",  # bind mounts from host paths, read-only and propagation
        "oom",  # memory limits enforced; a limit kill is reported as OOMKilled, 137
        "stats",  # container and sandbox stats from cgroups
        "survives_restart",  # containers outlive the runtime object that started them
    }
)


@runtime_checkable
class StreamSession(Protocol):
    """A streaming exec or attach: the process's output, its stdin and its exit.

    With ``tty`` the output is one stream, reported as ``stdout``.
    """

    tty: bool

    async def read(self) -> tuple[str, bytes] | None:
        """The next piece of output as ``("stdout" | "stderr", data)``; ``None`` once every
        output stream is closed."""
        ...

    async def write_stdin(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, width: int, height: int) -> None:
        """Set the terminal size (columns, rows); ignored without a tty."""
        ...

    async def wait(self) -> int:
        """The exit code: of the exec'd process, or of the container for an attach."""
        ...

    async def close(self) -> None:
        """End the session: an exec'd process is killed, an attach detaches."""
        ...


class ContainerEventStream:
    """A ready-made ``container_events`` iterator for runtimes: one subscriber's events,
    every event put on its queue after it was made (not after its first read).

    A runtime keeps a set of queues, puts each event on every queue in it, and ``None`` to
    end the streams when it closes."""

    def __init__(self, subscribers: set[asyncio.Queue[Any]]) -> None:
        self._subscribers = subscribers
        self._queue: asyncio.Queue[Any] | None = asyncio.Queue()
        subscribers.add(self._queue)

    def __aiter__(self) -> ContainerEventStream:
        return self

    async def __anext__(self) -> Mapping[str, Any]:
        if self._queue is None:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._detach()
            raise StopAsyncIteration
        return event

    def _detach(self) -> None:
        if self._queue is not None:
            self._subscribers.discard(self._queue)
            self._queue = None

    async def aclose(self) -> None:
        self._detach()


@runtime_checkable
class RuntimeService(Protocol):
    """Pod sandboxes and containers, as CRI's ``RuntimeService``, with CRI's field names in
    snake case.

    Messages are plain mappings:

    * sandbox config: ``metadata`` {``name``, ``uid``, ``namespace``, ``attempt``},
      ``hostname``, ``log_directory``, ``dns_config`` {``servers``, ``searches``,
      ``options``}, ``port_mappings``, ``labels``, ``annotations``, ``linux``
      {``cgroup_parent``, ``security_context`` {``namespace_options`` {``network``,
      ``pid``, ``ipc``: ``POD`` | ``CONTAINER`` | ``NODE``}}, ``sysctls``}.
    * container config: ``metadata`` {``name``, ``attempt``}, ``image`` {``image``},
      ``command``, ``args``, ``working_dir``, ``envs`` [{``key``, ``value``}], ``mounts``
      [{``container_path``, ``host_path``, ``readonly``, ``propagation``:
      ``PROPAGATION_PRIVATE`` | ``PROPAGATION_HOST_TO_CONTAINER`` |
      ``PROPAGATION_BIDIRECTIONAL``}], ``labels``, ``annotations``, ``log_path`` (relative
      to the sandbox's ``log_directory``), ``stdin``, ``stdin_once``, ``tty``, ``linux``
      {``resources`` {``cpu_period``, ``cpu_quota``, ``cpu_shares``,
      ``memory_limit_in_bytes``, ``pids_limit``, ``unified``}, ``security_context``
      {``run_as_user`` {``value``}, ``run_as_group`` {``value``}, ``run_as_username``,
      ``readonly_rootfs``, ``privileged``, ``capabilities`` {``add_capabilities``,
      ``drop_capabilities``}, ``no_new_privs``, ``masked_paths``, ``readonly_paths``,
      ``namespace_options``}}, ``stop_signal``.
    * sandbox status: ``id``, ``metadata``, ``state`` (:data:`SANDBOX_READY` |
      :data:`SANDBOX_NOTREADY`), ``created_at`` (ns), ``network`` {``ip``}, ``labels``,
      ``annotations``, ``runtime_handler``, and kcore's ``netns_path`` (where the network
      slot wires the pod; ``None`` for host network) and ``pid`` (the sandbox's infra
      process on the host while it is READY, for a runtime that has processes; absent or
      ``None`` otherwise).
    * container status: ``id``, ``pod_sandbox_id``, ``metadata``, ``state``
      (``CONTAINER_*``), ``created_at``, ``started_at``, ``finished_at`` (ns; 0 = not
      yet), ``exit_code``, ``image``, ``image_ref``, ``image_id``, ``reason`` (``Completed``,
      ``Error``, ``OOMKilled``, ``StartError``), ``message``, ``labels``, ``annotations``,
      ``mounts``, ``log_path``, ``pid``.

    Stop and remove are idempotent: stopping or removing what is already gone succeeds.
    Unknown ids in status and start raise :class:`kcore.NotFound`; bad configs raise
    :class:`kcore.Invalid` or :class:`kcore.BadRequest` and leave nothing behind.
    """

    capabilities: frozenset[str]

    async def version(self) -> Mapping[str, str]:
        """``version``, ``runtime_name``, ``runtime_version``, ``runtime_api_version``."""
        ...

    async def status(self) -> Mapping[str, Any]:
        """``{"conditions": [{"type", "status", "reason", "message"}]}`` with
        ``RuntimeReady`` and ``NetworkReady``."""
        ...

    async def run_pod_sandbox(self, config: Mapping[str, Any], runtime_handler: str = "") -> str:
        """Create and start the sandbox (infra process and namespaces); return its id.
        The sandbox is ready when this returns."""
        ...

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None:
        """Kill every container of the sandbox and its infra process."""
        ...

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        """Stop if needed, then remove the sandbox and all its containers."""
        ...

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]: ...

    async def list_pod_sandbox(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """Filter keys: ``id``, ``state``, ``label_selector`` (exact label matches)."""
        ...

    async def create_container(
        self,
        pod_sandbox_id: str,
        config: Mapping[str, Any],
        sandbox_config: Mapping[str, Any],
    ) -> str:
        """Create (not start) a container in the sandbox; return its id."""
        ...

    async def start_container(self, container_id: str) -> None:
        """Start a created container. A command that cannot be executed raises and
        leaves the container exited with reason ``StartError``."""
        ...

    async def stop_container(self, container_id: str, timeout: int) -> None:
        """The stop signal (SIGTERM unless the config or image says otherwise), then
        SIGKILL after ``timeout`` seconds (0: at once). Returns once it has exited."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Remove the container, killing it first if it runs."""
        ...

    async def container_status(self, container_id: str) -> Mapping[str, Any]: ...

    async def list_containers(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """Filter keys: ``id``, ``pod_sandbox_id``, ``state``, ``label_selector``."""
        ...

    async def update_container_resources(self, container_id: str, linux: Mapping[str, Any]) -> None:
        """Apply new ``linux.resources`` values to a created or running container."""
        ...

    async def reopen_container_log(self, container_id: str) -> None:
        """Reopen the log file at the container's ``log_path`` (after the caller renamed
        it for rotation). Raises, creating nothing, when that is impossible."""
        ...

    async def exec_sync(
        self, container_id: str, cmd: Sequence[str], timeout: float = 0
    ) -> tuple[bytes, bytes, int]:
        """Run ``cmd`` inside the container; return stdout, stderr (each capped at 16
        MiB) and the exit code. A non-zero exit is data. On ``timeout`` seconds (0 = no
        limit) the process is killed and :class:`kcore.TemporaryError` raised."""
        ...

    async def exec(
        self, container_id: str, cmd: Sequence[str], *, tty: bool = False, stdin: bool = False
    ) -> StreamSession:
        """Start ``cmd`` inside the container and stream its stdio."""
        ...

    async def attach(
        self, container_id: str, *, stdin: bool = False, tty: bool = False
    ) -> StreamSession:
        """Stream a running container's output from now on and, with ``stdin``, feed its
        standard input."""
        ...

    async def container_stats(self, container_id: str) -> Mapping[str, Any]:
        """``attributes`` {``id``, ``metadata``, ``labels``, ``annotations``}, ``cpu``
        {``timestamp``, ``usage_core_nano_seconds``}, ``memory`` {``timestamp``,
        ``working_set_bytes``, ``usage_bytes``, ``rss_bytes``}, ``writable_layer``
        {``used_bytes``, ``inodes_used``}."""
        ...

    async def list_container_stats(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]: ...

    async def pod_sandbox_stats(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        """``attributes`` and ``linux`` {``cpu``, ``memory``, ``process`` {``process_count``},
        ``containers``: [container stats]}."""
        ...

    def container_events(self) -> AsyncIterator[Mapping[str, Any]]:
        """Container lifecycle events from now on: ``container_id``,
        ``container_event_type`` (``CONTAINER_*_EVENT``), ``created_at`` (ns),
        ``pod_sandbox_id``. Each iterator gets every event once."""
        ...


@runtime_checkable
class ImageService(Protocol):
    """Images on the node, as CRI's ``ImageService``. An image record has CRI's ``Image``
    fields: ``id``, ``repo_tags``, ``repo_digests``, ``size``, ``uid``, ``username``,
    ``pinned``, and kcore's ``config`` (the image config's ``config`` object)."""

    async def pull_image(self, image: str, auth: Mapping[str, str] | None = None) -> str:
        """Make ``image`` present; return its image reference (the image id)."""
        ...

    async def import_image(
        self, path: Path, tags: Sequence[str] = ()
    ) -> Sequence[Mapping[str, Any]]:
        """Import an OCI image layout directory, OCI archive or docker-archive tarball;
        return the records of the images in it. (kcore's addition to CRI.)"""
        ...

    async def list_images(self) -> Sequence[Mapping[str, Any]]: ...

    async def image_status(self, image: str) -> Mapping[str, Any] | None:
        """The image's record (by tag, id or digest), or ``None`` when it is not present."""
        ...

    async def remove_image(self, image: str) -> None:
        """Remove the image and every tag of it; absent is fine."""
        ...

    async def image_fs_info(self) -> Sequence[Mapping[str, Any]]:
        """``[{"timestamp", "fs_id": {"mountpoint"}, "used_bytes", "inodes_used"}]``."""
        ...


@dataclass(frozen=True)
class RuntimeBackend:
    """What the runtime slot hook returns: both CRI services of one runtime. ``close``
    releases the runtime's connections; containers keep running where the runtime has
    the ``survives_restart`` capability."""

    runtime: RuntimeService
    images: ImageService
    close: Callable[[], Awaitable[None]] | None = None


# --------------------------------------------------------------------------------------
# Pod network (CNI-like)
# --------------------------------------------------------------------------------------


#: What a network plugin may declare in ``capabilities``; the network conformance suite
#: skips the checks of a capability a plugin lacks, saying so.
NETWORK_CAPABILITIES = frozenset(
    {
        "pod_addresses",  # each pod gets an address of its own, in its own namespace
        "pod_to_pod",  # pods reach each other's addresses
        "host_to_pod",  # the node reaches pod addresses
        "host_ports",  # port_mappings with a host_port reach the pod
        "survives_restart",  # a new plugin object on the same data dir knows every pod
        # addresses go round the range in a fixed order, each set-up taking the first
        # free one after the one handed out last (as CNI host-local): a freed address
        # comes back only after the free ones ahead of it, never-used ones first, so a
        # gone pod's stale endpoints, conntrack entries and ARP caches do not reach a new
        # pod at once; the order survives a restart on the same data dir
        "address_rotation",
    }
)


@runtime_checkable
class NetworkPlugin(Protocol):
    """Wires a pod sandbox's network namespace into the cluster network, as CNI's ADD, DEL,
    CHECK, STATUS and GC.

    ``config`` of :meth:`setup_pod`: ``name`` and ``namespace`` of the pod, and
    ``port_mappings`` as CRI's [{``protocol`` (``TCP`` | ``UDP`` | ``SCTP``),
    ``container_port``, ``host_port`` (0 = none), ``host_ip``}]. The answer:
    ``{"ips": ["10.244.0.5"], "interface": "eth0", "gateway": "10.244.0.1", "routes":
    [{"dst": "0.0.0.0/0", "gateway": "10.244.0.1"}], "dns": {"servers": [], "searches":
    [], "options": []}}``.

    ``teardown_pod`` is idempotent: tearing down a pod that is gone, or whose namespace is
    gone, succeeds and releases what the plugin held for it. Errors are kcore errors:
    :class:`kcore.NotFound` for a namespace path that does not exist,
    :class:`kcore.Conflict` for a host port already taken, :class:`kcore.TemporaryError`
    when the pod range is exhausted; a failed set-up leaves nothing behind.
    """

    capabilities: frozenset[str]

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Attach the namespace (idempotent for the same pod: the same answer again)."""
        ...

    async def teardown_pod(self, pod_uid: str, netns_path: str | None) -> None: ...

    async def check_pod(self, pod_uid: str, netns_path: str) -> None:
        """Raise (:class:`kcore.NotFound` or :class:`kcore.PermanentError`) when the pod's
        wiring is missing or broken."""
        ...

    async def status(self) -> Mapping[str, Any]:
        """``{"ready": bool, "reason": str, "message": str}``: the node's
        ``NetworkReady`` condition."""
        ...

    async def gc(self, live_pod_uids: Collection[str]) -> Sequence[str]:
        """Release everything held for pods not in ``live_pod_uids``; return their uids."""
        ...

    async def close(self) -> None:
        """Release the plugin's own resources; pods stay wired."""
        ...


# --------------------------------------------------------------------------------------
# Volume sources
# --------------------------------------------------------------------------------------


@runtime_checkable
class VolumeSource(Protocol):
    """Materializes one volume type (the key under ``spec.volumes[i]``, e.g. ``configMap``)
    into a directory on the node, which the runtime bind-mounts into containers.

    Optional attributes the node agent reads: ``read_only = True`` mounts the volume
    read-only in every container whatever its ``volumeMounts`` say (as Kubernetes does for
    API data: configMap, secret, downwardAPI, projected); a ``host_path(pod, volume)``
    method names a node path to mount instead of the target (hostPath).

    A plugin's own volume type is used from a Pod as Kubernetes uses a third-party volume
    driver, as an inline ephemeral CSI volume: the source's ``type_name`` is
    ``csi:<driver>`` (e.g. ``csi:template.examples.kcore.io``) and it materializes the
    volumes ``{"name": ..., "csi": {"driver": "<driver>", "volumeAttributes": {...}}}``
    (``volumeAttributes`` map strings to strings, the driver's settings; ``readOnly: true``
    mounts the volume read-only in every container; ``fsType`` may be set).
    The API server keeps only Kubernetes' volume keys, so a source of another new key is
    reachable from the node agent but not from a Pod. A ``csi`` volume whose driver no
    source provides fails to mount (``FailedMount``), as a type no source provides does."""

    type_name: str

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        """Fill ``target`` (an existing, empty directory) for ``pod``; called again on
        updates, so it must be idempotent. Item paths with ``..`` are refused."""
        ...

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None: ...


# --------------------------------------------------------------------------------------
# Controllers and scheduler steps
# --------------------------------------------------------------------------------------


@dataclass
class ControllerContext:
    """What a running controller gets: the API client, the settings and the node name
    (``None`` off-node). ``clock`` returns seconds and is replaced in tests.

    ``informers`` is the controller manager's :class:`kcore.controllers.SharedInformers`:
    one list+watch per kind shared by every controller, with indexed caches (read objects
    there rather than listing them from the API). ``None`` outside a controller manager."""

    api: Any
    settings: Any
    node_name: str | None = None
    clock: Callable[[], float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    informers: Any = None


@runtime_checkable
class Controller(Protocol):
    """A reconcile loop. ``run`` returns when ``stop`` is set."""

    name: str

    async def run(self, ctx: ControllerContext, stop: Any) -> None: ...


@runtime_checkable
class FilterStep(Protocol):
    """A scheduler filter: may this pod go to this node? Return ``None`` for yes, or the
    reason for no (shown in the pod's ``FailedScheduling`` event)."""

    name: str

    def filter(self, pod: Mapping[str, Any], node: Mapping[str, Any], state: Any) -> str | None: ...


@runtime_checkable
class ScoreStep(Protocol):
    """A scheduler score in 0..100 for a node that passed every filter; ``weight``
    multiplies it."""

    name: str
    weight: int

    def score(self, pod: Mapping[str, Any], node: Mapping[str, Any], state: Any) -> int: ...


# --------------------------------------------------------------------------------------
# Node services: what runs on every node next to the node agent
# --------------------------------------------------------------------------------------


@dataclass
class NodeServiceContext:
    """What a running node service gets.

    ``api`` is the node's API client (in the daemon in-process, on a joined node over
    HTTPS), ``network`` the node's network backend (``None`` without one), ``node_name``
    the node's name and ``node_ip`` its address.

    Two fields a DNS service fills in, *before its first* ``await``, for the node agent to
    read when it writes a ``dnsPolicy: ClusterFirst`` pod's resolv.conf (as the kubelet's
    ``--cluster-dns`` and ``--cluster-domain``): ``cluster_dns``, the nameserver addresses,
    and ``cluster_domain``. With ``cluster_dns`` empty, pods get the node's resolv.conf."""

    api: Any
    settings: Any
    node_name: str
    node_ip: str | None = None
    network: Any = None
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"


@runtime_checkable
class NodeService(Protocol):
    """A long-running part of every node (the service proxy, node-local DNS). ``run``
    returns when ``stop`` (an :class:`asyncio.Event`) is set; if it raises, the node agent
    logs it and runs it again after a back-off."""

    name: str

    async def run(self, ctx: NodeServiceContext, stop: Any) -> None: ...


# --------------------------------------------------------------------------------------
# Admission
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdmissionRequest:
    """One write on its way into the store, after defaulting and validation."""

    operation: str
    """``CREATE``, ``UPDATE`` or ``DELETE``."""
    group: str
    version: str
    resource: str
    namespace: str | None
    name: str
    obj: Mapping[str, Any] | None
    old: Mapping[str, Any] | None
    user: str | None = None
    subresource: str | None = None
    dry_run: bool = False


@runtime_checkable
class AdmissionCheck(Protocol):
    """Inspects, and may change, a write. Raise ``kcore.Invalid`` (or another
    ``KcoreError``) to refuse it; return a changed object to mutate it, or ``None``."""

    name: str

    async def admit(self, request: AdmissionRequest) -> Mapping[str, Any] | None: ...


__all__ = [
    "AdmissionCheck",
    "AdmissionRequest",
    "ContainerEventStream",
    "Controller",
    "ControllerContext",
    "FilterStep",
    "ImageService",
    "NetworkPlugin",
    "NodeService",
    "NodeServiceContext",
    "RuntimeBackend",
    "RuntimeService",
    "ScoreStep",
    "StreamSession",
    "VolumeSource",
]
