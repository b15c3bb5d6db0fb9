"""The stand-in scheduler of a one-node daemon: every pod without a node is bound to the
daemon's own node, with the ``Scheduled`` event the Kubernetes scheduler writes.

The real scheduler (filters, scores, several nodes) replaces it; until then a pod created
with ``spec.nodeName`` unset still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from kcore.client.informer import Informer
from kcore.errors import Conflict, KcoreError, NotFound
from kcore.events import EventRecorder

log = structlog.get_logger("kcore.scheduler")

COMPONENT = "default-scheduler"


class PlaceholderScheduler:
    """Binds unscheduled pods to ``node_name``."""

    def __init__(self, api: Any, node_name: str) -> None:
        self.api = api
        self.node_name = node_name
        self.recorder = EventRecorder(api, COMPONENT)
        self.informer = Informer(api, "v1", "Pod", field_selector="spec.nodeName=")
        self.informer.on_add(self._bind)
        self.informer.on_update(lambda old, new: self._bind(new))
        self._pending: set[asyncio.Task[None]] = set()

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
            return
        if (pod.get("spec") or {}).get("schedulerName", "default-scheduler") != COMPONENT:
            return
        task = asyncio.create_task(self._bind_one(pod))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _bind_one(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        try:
            await self.api.bind(meta["name"], self.node_name, namespace=meta.get("namespace"))
        except (Conflict, NotFound):
            return  # bound by someone else meanwhile, or gone
        except KcoreError as exc:
            log.warning("binding failed", pod=meta.get("name"), error=str(exc))
            return
        await self.recorder.event(
            {**pod, "apiVersion": "v1", "kind": "Pod"},
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta.get('namespace')}/{meta.get('name')} to {self.node_name}",
        )

    async def start(self) -> None:
        self.informer.start()
        await self.informer.wait_for_sync()

    async def close(self) -> None:
        await self.informer.stop()
        for task in list(self._pending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["PlaceholderScheduler"]
