"""Recording Events, as Kubernetes components do.

A component says ``await recorder.event(obj, "Normal", "Scheduled", "Successfully assigned
...")``. Repeats of the same event (same object, type, reason and message from the same
source) are folded into one Event whose ``count`` and ``lastTimestamp`` move, as the
kubelet's event correlator does, so a crash-looping container writes one Event, not
thousands. ``kubectl describe`` shows them (it lists events by ``involvedObject``).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from kcore.api.meta import micro_now, now
from kcore.errors import AlreadyExists, NotFound

log = structlog.get_logger("kcore.events")

#: how many distinct events a recorder remembers for deduplication
CACHE_SIZE = 4096


class EventSink(Protocol):
    """The part of :class:`kcore.client.ApiClient` a recorder needs."""

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        patch_type: str = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]: ...


def _stamp() -> str:
    return now().strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: Mapping[str, Any], field_path: str | None = None) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "apiVersion": obj.get("apiVersion"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    if field_path:
        ref["fieldPath"] = field_path
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Writes core/v1 Events for one component (``source.component``), deduplicated."""

    def __init__(self, sink: EventSink, component: str, host: str | None = None) -> None:
        self.sink = sink
        self.component = component
        self.host = host
        self._seen: OrderedDict[tuple, tuple[str, str, int]] = OrderedDict()
        # one lock per distinct event, so that different events are written concurrently
        # and repeats of one event count up in order
        self._locks: weakref.WeakValueDictionary[tuple, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def event(
        self,
        obj: Mapping[str, Any],
        type: str,
        reason: str,
        message: str,
        *,
        field_path: str | None = None,
    ) -> dict[str, Any] | None:
        """Record one occurrence; returns the Event as stored, or ``None`` if the API
        refused it (recording must never break the component that records)."""
        ref = object_reference(obj, field_path)
        namespace = ref.get("namespace") or "default"
        key = (
            self.component,
            self.host,
            ref.get("kind"),
            namespace,
            ref.get("name"),
            ref.get("uid"),
            ref.get("fieldPath"),
            type,
            reason,
            message,
        )
        try:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = asyncio.Lock()
            async with lock:
                return await self._record(key, ref, namespace, type, reason, message)
        except Exception as exc:
            log.warning("could not record event", reason=reason, error=str(exc))
            return None

    async def _record(
        self, key: tuple, ref: dict[str, Any], namespace: str, type: str, reason: str, message: str
    ) -> dict[str, Any]:
        seen = self._seen.get(key)
        if seen is not None:
            name, ns, count = seen
            try:
                stored = await self.sink.patch(
                    "v1",
                    "Event",
                    name,
                    {"count": count + 1, "lastTimestamp": _stamp()},
                    "merge",
                    namespace=ns,
                )
            except NotFound:
                del self._seen[key]
            else:
                self._seen[key] = (name, ns, count + 1)
                self._seen.move_to_end(key)
                return stored
        stamp = _stamp()
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": micro_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingComponent": self.component,
            "reportingInstance": self.host or "",
            "source": {k: v for k, v in (("component", self.component), ("host", self.host)) if v},
        }
        try:
            stored = await self.sink.create(event)
        except AlreadyExists:
            stored = event
        self._seen[key] = (name, namespace, 1)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
        return stored
