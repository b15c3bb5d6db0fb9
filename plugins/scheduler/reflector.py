"""List, then watch, one kind into a dict, calling plain (synchronous) handlers.

The scheduler keeps its own cache of nodes and pods, so all it needs from the API is the
stream of changes: a list, then a watch from the list's resourceVersion, resumed from the
last revision seen when the stream ends, and a fresh list (turned into adds, updates and
deletes against what was known) when that revision is gone (``Expired``). Handlers are
synchronous so that a burst of events costs no task switches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog

from kcore import Expired

log = structlog.get_logger("kcore.plugins.scheduler")

PAGE_SIZE = 500


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def _rv(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


class Reflector:
    """Keep :attr:`objects` (by ``namespace/name``) current and report every change to
    ``on_add(obj)``, ``on_update(old, new)`` and ``on_delete(obj)``."""

    def __init__(
        self,
        api: Any,
        api_version: str,
        kind: str,
        *,
        on_add: Callable[[dict[str, Any]], None],
        on_update: Callable[[dict[str, Any], dict[str, Any]], None],
        on_delete: Callable[[dict[str, Any]], None],
        backoff: tuple[float, float] = (0.2, 30.0),
    ) -> None:
        self.api = api
        self.api_version = api_version
        self.kind = kind
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete
        self.backoff = backoff
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self._log = log.bind(kind=kind)

    async def run(self) -> None:
        """List and watch until cancelled."""
        low, high = self.backoff
        delay = low
        must_list = True
        loop = asyncio.get_running_loop()
        while True:
            try:
                if must_list:
                    await self._list()
                    must_list = False
                started = loop.time()
                seen = await self._watch()
                if seen or loop.time() - started > 1.0:
                    delay = low
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, high)
            except Expired as exc:
                self._log.info("resource version expired, listing again", error=str(exc))
                must_list = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("list or watch failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, high)

    async def _list(self) -> None:
        items, rv = await self.api.list(self.api_version, self.kind, limit=PAGE_SIZE)
        old, self.objects = self.objects, {object_key(obj): obj for obj in items}
        self.resource_version = rv
        for key, prev in old.items():
            if key not in self.objects:
                self._call(self.on_delete, prev)
        for key, obj in self.objects.items():
            prev = old.get(key)
            if prev is None:
                self._call(self.on_add, obj)
            elif _rv(prev) != _rv(obj):
                self._call(self.on_update, prev, obj)
        self.synced.set()

    async def _watch(self) -> int:
        events = self.api.watch(
            self.api_version,
            self.kind,
            resource_version=self.resource_version,
            allow_bookmarks=True,
        )
        seen = 0
        async with contextlib.aclosing(events):
            async for kind, obj in events:
                seen += 1
                self._handle(kind, obj)
        return seen

    def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        rv = _rv(obj)
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        key = object_key(obj)
        prev = self.objects.get(key)
        self.resource_version = rv or self.resource_version
        if kind in ("ADDED", "MODIFIED"):
            if prev is not None and rv is not None and _rv(prev) == rv:
                return
            self.objects[key] = obj
            if prev is None:
                self._call(self.on_add, obj)
            else:
                self._call(self.on_update, prev, obj)
        elif kind == "DELETED":
            if self.objects.pop(key, None) is not None:
                self._call(self.on_delete, obj)

    def _call(self, handler: Callable[..., None], *args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            self._log.exception("handler failed", handler=getattr(handler, "__name__", handler))


__all__ = ["Reflector", "object_key"]
