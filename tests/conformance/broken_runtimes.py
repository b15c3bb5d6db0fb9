"""Runtimes for testing the runtime conformance suite itself.

Each class here is the simulated runtime (``runtime_sim``, which passes the suite) with
exactly one promise of the contract in ``kcore.interfaces`` broken, so that
``test_suite_catches_broken_runtimes.py`` can show the suite notices.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kcore.errors import Conflict, NotFound
from kcore.interfaces import CONTAINER_EXITED, CONTAINER_UNKNOWN, SANDBOX_NOTREADY, RuntimeBackend
from kcore.plugins.runtime_sim.sim import SimImages, SimRuntime, _Container, make_backend


class StopNotIdempotentRuntime(SimRuntime):
    """Stopping a container that is not running, or unknown, is an error."""

    async def stop_container(self, container_id: str, timeout: int) -> None:
        c = self._container(container_id)
        if c.state == CONTAINER_EXITED:
            raise Conflict(f"container {container_id} is not running")
        await super().stop_container(container_id, timeout)


class StopReturnsEarlyRuntime(SimRuntime):
    """``stop_container`` returns at once; the container exits a moment later."""

    async def stop_container(self, container_id: str, timeout: int) -> None:
        c = self._containers.get(container_id)
        if c is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(0.5, self._kill, c, 143 if timeout > 0 else 137)


class LabelsAlteredRuntime(SimRuntime):
    """Status adds a label of its own and drops every annotation after the first."""

    @staticmethod
    def _alter(status: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(status)
        out["labels"] = {**status["labels"], "io.kcore.sim/touched": "true"}
        out["annotations"] = dict(list(status["annotations"].items())[:1])
        return out

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        return self._alter(await super().pod_sandbox_status(pod_sandbox_id))

    async def container_status(self, container_id: str) -> Mapping[str, Any]:
        return self._alter(await super().container_status(container_id))


class SecondsTimestampsRuntime(SimRuntime):
    """``created_at`` in seconds, not nanoseconds."""

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        status = dict(await super().pod_sandbox_status(pod_sandbox_id))
        status["created_at"] //= 10**9
        return status

    async def container_status(self, container_id: str) -> Mapping[str, Any]:
        status = dict(await super().container_status(container_id))
        status["created_at"] //= 10**9
        return status


class StatusOfUnknownReturnsRuntime(SimRuntime):
    """Status of an unknown id returns a placeholder instead of raising NotFound."""

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        try:
            return await super().pod_sandbox_status(pod_sandbox_id)
        except NotFound:
            return {"id": pod_sandbox_id, "state": SANDBOX_NOTREADY, "labels": {}}

    async def container_status(self, container_id: str) -> Mapping[str, Any]:
        try:
            return await super().container_status(container_id)
        except NotFound:
            return {"id": container_id, "state": CONTAINER_UNKNOWN, "labels": {}}


class ListFilterIgnoredRuntime(SimRuntime):
    """Lists ignore ``label_selector``."""

    @staticmethod
    def _without_labels(filter: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (filter or {}).items() if k != "label_selector"}

    async def list_pod_sandbox(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        return await super().list_pod_sandbox(self._without_labels(filter))

    async def list_containers(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        return await super().list_containers(self._without_labels(filter))


class RemoveLeavesListedRuntime(SimRuntime):
    """``remove_container`` kills the container but keeps it listed."""

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.get(container_id)
        if c is not None:
            self._kill(c, 137)


class SandboxRemoveKeepsContainersRuntime(SimRuntime):
    """``remove_pod_sandbox`` forgets the sandbox and leaves its containers behind."""

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        self._sandboxes.pop(pod_sandbox_id, None)


class FailedCreateLeavesContainerRuntime(SimRuntime):
    """A create that fails for a missing image leaves a container record behind."""

    async def create_container(
        self, pod_sandbox_id: str, config: Mapping[str, Any], sandbox_config: Mapping[str, Any]
    ) -> str:
        try:
            return await super().create_container(pod_sandbox_id, config, sandbox_config)
        except NotFound:
            sandbox = self._sandbox(pod_sandbox_id)
            placeholder = {"id": "sha256:" + "0" * 64}
            c = _Container(sandbox, config, placeholder)
            self._containers[c.id] = c
            sandbox.containers[c.id] = None
            raise


class LazyEventsRuntime(SimRuntime):
    """``container_events`` is an async generator: it subscribes at its first read, so
    the events in between are lost."""

    async def _lazy(self) -> AsyncIterator[Mapping[str, Any]]:
        stream = super().container_events()
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    def container_events(self) -> Any:
        return self._lazy()


class EventsInSecondsRuntime(SimRuntime):
    """Events carry ``created_at`` in seconds."""

    def _publish(self, event_type: str, c: Any) -> None:
        for queue in self._subscribers:
            queue.put_nowait(
                {
                    "container_id": c.id,
                    "container_event_type": event_type,
                    "created_at": time.time_ns() // 10**9,
                    "pod_sandbox_id": c.pod_sandbox_id,
                }
            )


class ClaimsExecRuntime(SimRuntime):
    """Declares the ``exec`` capability it does not have."""

    capabilities = frozenset({"exec"})


class AbsentImageRaisesImages(SimImages):
    """``image_status`` of an absent image raises NotFound instead of returning None."""

    async def image_status(self, image: str) -> Mapping[str, Any] | None:
        record = await super().image_status(image)
        if record is None:
            raise NotFound(f"image {image} not found")
        return record


class RemoveImageNotIdempotentImages(SimImages):
    """Removing an absent image raises NotFound."""

    async def remove_image(self, image: str) -> None:
        if await self.image_status(image) is None:
            raise NotFound(f"image {image} not found")
        await super().remove_image(image)


BROKEN_RUNTIMES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StopNotIdempotentRuntime,
        StopReturnsEarlyRuntime,
        LabelsAlteredRuntime,
        SecondsTimestampsRuntime,
        StatusOfUnknownReturnsRuntime,
        ListFilterIgnoredRuntime,
        RemoveLeavesListedRuntime,
        SandboxRemoveKeepsContainersRuntime,
        FailedCreateLeavesContainerRuntime,
        LazyEventsRuntime,
        EventsInSecondsRuntime,
        ClaimsExecRuntime,
        AbsentImageRaisesImages,
        RemoveImageNotIdempotentImages,
    )
}
"""Every broken runtime or image service, by class name."""


def make(name: str, data_dir: Path) -> RuntimeBackend:
    """A backend with the named broken part (``"SimRuntime"`` for the honest one)."""
    cls = BROKEN_RUNTIMES.get(name)
    if cls is None:
        return make_backend(data_dir)
    if issubclass(cls, SimImages):
        return make_backend(data_dir, images_class=cls)
    return make_backend(data_dir, runtime_class=cls)
