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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# --------------------------------------------------------------------------------------
# Container runtime (CRI-like): the runtime service and the image service
# --------------------------------------------------------------------------------------


@runtime_checkable
class RuntimeService(Protocol):
    """Pod sandboxes and containers, as CRI's ``RuntimeService``.

    Stop and remove are idempotent: stopping or removing what is already gone succeeds.
    Labels and annotations given at creation come back unchanged in status and lists.
    """

    capabilities: frozenset[str]

    async def version(self) -> Mapping[str, str]:
        """``runtime_name``, ``runtime_version``, ``runtime_api_version``."""
        ...

    async def status(self) -> Mapping[str, Any]:
        """Conditions ``RuntimeReady`` and ``NetworkReady`` with reasons."""
        ...

    async def run_pod_sandbox(self, config: Mapping[str, Any]) -> str:
        """Create and start the sandbox (infra process and namespaces); return its id."""
        ...

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None: ...

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None: ...

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]: ...

    async def list_pod_sandbox(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]: ...

    async def create_container(
        self,
        pod_sandbox_id: str,
        config: Mapping[str, Any],
        sandbox_config: Mapping[str, Any],
    ) -> str:
        """Create (not start) a container in the sandbox; return its id."""
        ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        ...

    async def remove_container(self, container_id: str) -> None: ...

    async def container_status(self, container_id: str) -> Mapping[str, Any]: ...

    async def list_containers(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]: ...

    async def exec_sync(
        self, container_id: str, cmd: Sequence[str], timeout: float
    ) -> tuple[bytes, bytes, int]:
        """Run ``cmd`` inside the container; return stdout, stderr and the exit code."""
        ...


@runtime_checkable
class ImageService(Protocol):
    """Images on the node, as CRI's ``ImageService``."""

    async def pull_image(self, image: str, auth: Mapping[str, str] | None = None) -> str:
        """Make ``image`` present; return its image reference (digest)."""
        ...

    async def list_images(self) -> Sequence[Mapping[str, Any]]: ...

    async def image_status(self, image: str) -> Mapping[str, Any] | None:
        """The image's record, or ``None`` when it is not present."""
        ...

    async def remove_image(self, image: str) -> None: ...

    async def image_fs_info(self) -> Sequence[Mapping[str, Any]]: ...


@dataclass(frozen=True)
class RuntimeBackend:
    """What the runtime slot hook returns: both CRI services of one runtime."""

    runtime: RuntimeService
    images: ImageService
    close: Callable[[], Awaitable[None]] | None = None


# --------------------------------------------------------------------------------------
# Pod network (CNI-like)
# --------------------------------------------------------------------------------------


@runtime_checkable
class NetworkPlugin(Protocol):
    """Wires a pod sandbox's network namespace into the cluster network, as CNI's
    ADD/DEL/CHECK/STATUS. ``teardown_pod`` of an unknown pod succeeds."""

    capabilities: frozenset[str]

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Attach the namespace; return ``{"ips": [...], "interface": ..., "gateway": ...}``."""
        ...

    async def teardown_pod(self, pod_uid: str, netns_path: str | None) -> None: ...

    async def check_pod(self, pod_uid: str, netns_path: str) -> None:
        """Raise when the pod's wiring is broken."""
        ...

    async def status(self) -> Mapping[str, Any]:
        """Readiness of the network, reported as the node's ``NetworkReady`` condition."""
        ...


# --------------------------------------------------------------------------------------
# Volume sources
# --------------------------------------------------------------------------------------


@runtime_checkable
class VolumeSource(Protocol):
    """Materializes one volume type (the key under ``spec.volumes[i]``, e.g. ``configMap``)
    into a directory on the node, which the runtime bind-mounts into containers."""

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
    (``None`` off-node). ``clock`` returns seconds and is replaced in tests."""

    api: Any
    settings: Any
    node_name: str | None = None
    clock: Callable[[], float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    "Controller",
    "ControllerContext",
    "FilterStep",
    "ImageService",
    "NetworkPlugin",
    "RuntimeBackend",
    "RuntimeService",
    "ScoreStep",
    "VolumeSource",
]
