"""Informers: a local cache of one kind kept current by list and watch, with handlers.

An informer lists, then watches from the list's resourceVersion. Every event updates the
cache first and then calls the handlers, one event at a time, in order. When the server ends
the stream (its watch timeout) or the connection breaks, the informer watches again from the
last resourceVersion it saw (bookmarks keep that fresh on a quiet stream). When that
revision is gone (``Expired``), it lists again and turns the difference between the new list
and its cache into adds, updates and deletes, so that handlers see every change once the
informer is back. Nothing polls: besides the watch there is only the optional resync, which
hands every cached object to ``on_update`` again so that controllers repair drift.

Handlers are coroutines (plain functions work too): ``on_add(obj)``,
``on_update(old, new)``, ``on_delete(obj)``. A handler that raises is logged and does not
stop the informer. Register handlers before :meth:`Informer.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from kcore.client.api_client import ApiClient
from kcore.errors import Expired

log = structlog.get_logger("kcore.client.informer")

Handler = Callable[..., Awaitable[None] | None]
LIST_PAGE_SIZE = 500


def object_key(obj: dict[str, Any]) -> str:
    """The cache key: ``namespace/name``, or ``name`` for a cluster-scoped object."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    """Watch one kind (optionally one namespace, one selector) into :attr:`cache`."""

    def __init__(
        self,
        client: ApiClient,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        resync_period: float | None = None,
        *,
        field_selector: str | None = None,
        watch_timeout: int | None = None,
        backoff: tuple[float, float] = (0.2, 30.0),
    ) -> None:
        client.resource(api_version, kind)  # an unknown kind fails here, not in the task
        self.client = client
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        """``timeoutSeconds`` of each watch request (``None``: the server's default)."""
        self.backoff = backoff
        self.cache: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        """The newest revision the informer has seen; a resumed watch starts after it."""
        self.lists = 0
        """How many times the informer has listed (1 plus one per ``Expired``)."""
        self._adds: list[Handler] = []
        self._updates: list[Handler] = []
        self._deletes: list[Handler] = []
        self._synced = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._log = log.bind(kind=kind, namespace=namespace)

    # -- handlers ---------------------------------------------------------------------------

    def on_add(self, handler: Handler) -> Handler:
        """Call ``handler(obj)`` for each new object (usable as a decorator)."""
        self._adds.append(handler)
        return handler

    def on_update(self, handler: Handler) -> Handler:
        """Call ``handler(old, new)`` for each change, and ``(obj, obj)`` on resync."""
        self._updates.append(handler)
        return handler

    def on_delete(self, handler: Handler) -> Handler:
        """Call ``handler(obj)`` with the last state of each deleted object."""
        self._deletes.append(handler)
        return handler

    # -- the cache --------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the cache and its adds have been handled."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[dict[str, Any]]:
        return list(self.cache.values())

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run in background tasks of the running event loop until :meth:`stop`."""
        if self._tasks:
            return
        self._tasks.append(asyncio.ensure_future(self.run()))
        if self.resync_period:
            self._tasks.append(asyncio.ensure_future(self._resync_forever(self.resync_period)))

    async def stop(self) -> None:
        """Stop watching (closing the watch) and resyncing; the cache stays as it is."""
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> Informer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """List, then watch and resume, forever (until cancelled)."""
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
                # The stream ended at once with nothing in it: do not hammer the server.
                await asyncio.sleep(delay)
                delay = min(delay * 2, high)
            except Expired as exc:
                self._log.info("resource version expired, listing again", error=str(exc))
                must_list = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning(
                    "list failed" if must_list else "watch failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, high)

    async def _list(self) -> None:
        items, rv = await self.client.list(
            self.api_version,
            self.kind,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=LIST_PAGE_SIZE,
        )
        self.lists += 1
        async with self._lock:
            old = self.cache
            self.cache = {object_key(obj): obj for obj in items}
            self.resource_version = rv
            for key, prev in old.items():
                if key not in self.cache:
                    await self._call(self._deletes, prev)
            for key, obj in self.cache.items():
                prev = old.get(key)
                if prev is None:
                    await self._call(self._adds, obj)
                elif _rv(prev) != _rv(obj):
                    await self._call(self._updates, prev, obj)
            self._synced.set()

    async def _watch(self) -> int:
        """Watch from :attr:`resource_version` until the stream ends; return how many
        events (bookmarks included) it brought."""
        events = self.client.watch(
            self.api_version,
            self.kind,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=self.watch_timeout,
            allow_bookmarks=True,
        )
        seen = 0
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for kind, obj in events:
                seen += 1
                await self._handle(kind, obj)
        return seen

    async def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        rv = _rv(obj)
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        key = object_key(obj)
        async with self._lock:
            prev = self.cache.get(key)
            if kind in ("ADDED", "MODIFIED"):
                if prev is not None and rv is not None and _rv(prev) == rv:
                    return  # a replay of what the cache holds
                self.cache[key] = obj
                self.resource_version = rv or self.resource_version
                if prev is None:
                    await self._call(self._adds, obj)
                else:
                    await self._call(self._updates, prev, obj)
            elif kind == "DELETED":
                self.cache.pop(key, None)
                self.resource_version = rv or self.resource_version
                if prev is not None:
                    await self._call(self._deletes, obj)
            else:
                self._log.warning("unknown watch event type", type=kind)

    async def _resync_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if not self.has_synced:
                continue
            async with self._lock:
                for obj in list(self.cache.values()):
                    await self._call(self._updates, obj, obj)

    async def _call(self, handlers: list[Handler], *args: Any) -> None:
        for handler in handlers:
            try:
                result = handler(*args)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("informer handler failed", handler=_name(handler))


def _rv(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


__all__ = ["Handler", "Informer", "object_key"]
