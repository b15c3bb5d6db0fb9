"""Shared informers: one list+watch per kind for every controller, with indexed caches.

:class:`SharedInformers` keeps one :class:`~kcore.client.Informer` per ``(apiVersion,
kind)``, created on first use and started with the rest (or at once, once the set is
running). Each keeps indexes of its cache, updated before any handler sees an event, so a
handler or a reconcile that reads an index sees the same state as the cache:

* ``namespace`` (:data:`BY_NAMESPACE`): every kind;
* ``controller`` (:data:`BY_CONTROLLER`): the uid of the object's controller reference;
* ``owner`` (:data:`BY_OWNER`): the uid of each of its owner references;
* ``node`` (:data:`BY_NODE`): ``spec.nodeName``, for pods;
* any index a controller adds with :meth:`SharedInformers.add_index`.

Handlers take one :class:`ResourceEvent`. A handler registered on an informer that has
already listed is first given an ``ADDED`` event for each cached object, as client-go does.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from kcore.client.informer import Informer, object_key

log = structlog.get_logger("kcore.controllers.informers")

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], Iterable[str]]
EventHandler = Callable[["ResourceEvent"], Awaitable[None] | None]

BY_NAMESPACE = "namespace"
BY_CONTROLLER = "controller"
BY_OWNER = "owner"
BY_NODE = "node"

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@dataclass(frozen=True)
class ResourceEvent:
    """One change an informer saw: ``type`` is ``ADDED``, ``MODIFIED`` or ``DELETED``;
    ``obj`` is the new state (the last state for ``DELETED``), ``old`` the previous one
    (``MODIFIED`` only; the same object on a resync)."""

    type: str
    api_version: str
    kind: str
    obj: Obj
    old: Obj | None = None

    @property
    def key(self) -> str:
        """``namespace/name`` (``name`` when cluster-scoped): the work-queue key."""
        return object_key(self.obj)

    @property
    def namespace(self) -> str | None:
        return (self.obj.get("metadata") or {}).get("namespace")

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name", "")


def _namespace_index(obj: Obj) -> Iterable[str]:
    return [(obj.get("metadata") or {}).get("namespace") or ""]


def _controller_index(obj: Obj) -> Iterable[str]:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("uid"):
            return [ref["uid"]]
    return []


def _owner_index(obj: Obj) -> Iterable[str]:
    return [
        r["uid"] for r in (obj.get("metadata") or {}).get("ownerReferences") or () if r.get("uid")
    ]


def _node_index(obj: Obj) -> Iterable[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


class SharedInformer:
    """One kind's informer, its indexes and its handlers (made by :class:`SharedInformers`)."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.api_version = informer.api_version
        self.kind = informer.kind
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._values: dict[str, dict[str, tuple[str, ...]]] = {}  # index -> key -> values
        self._handlers: list[EventHandler] = []
        self._pending: set[asyncio.Task[None]] = set()
        # Registered first and synchronous: indexes move with the cache, before any handler.
        informer.on_add(self._on_add)
        informer.on_update(self._on_update)
        informer.on_delete(self._on_delete)

    # -- reading --------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self.informer.has_synced

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.informer.get(name, namespace)

    def get_by_key(self, key: str) -> Obj | None:
        return self.informer.cache.get(key)

    def list(self, namespace: str | None = None) -> list[Obj]:
        """Every cached object, or those of one namespace."""
        if namespace is None:
            return self.informer.list()
        return self.by_index(BY_NAMESPACE, namespace)

    def by_index(self, index: str, value: str) -> list[Obj]:
        """The cached objects whose index function gave ``value``."""
        if index not in self._index_funcs:
            raise KeyError(
                f"{self.kind} has no index {index!r}; known: {sorted(self._index_funcs)}"
            )
        cache = self.informer.cache
        keys = self._indexes[index].get(value, ())
        return [cache[k] for k in sorted(keys) if k in cache]

    def index_keys(self, index: str, value: str) -> set[str]:
        return set(self._indexes[index].get(value, ()))

    # -- indexes --------------------------------------------------------------------------

    def add_index(self, name: str, func: IndexFunc) -> None:
        """Index the cache by ``func(obj)`` (the values it returns); built at once from what
        is cached. Adding the same name again with the same function is a no-op."""
        if name in self._index_funcs:
            if self._index_funcs[name] is func:
                return
            raise ValueError(f"{self.kind} already has a different index {name!r}")
        self._index_funcs[name] = func
        self._indexes[name] = {}
        self._values[name] = {}
        for key, obj in self.informer.cache.items():
            self._index_one(name, key, obj)

    def _index_one(self, name: str, key: str, obj: Obj | None) -> None:
        index, values = self._indexes[name], self._values[name]
        for value in values.pop(key, ()):
            keys = index.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[value]
        if obj is None:
            return
        try:
            new = tuple(dict.fromkeys(self._index_funcs[name](obj)))
        except Exception:
            log.exception("index function failed", kind=self.kind, index=name)
            return
        if new:
            values[key] = new
            for value in new:
                index.setdefault(value, set()).add(key)

    def _reindex(self, key: str, obj: Obj | None) -> None:
        for name in self._index_funcs:
            self._index_one(name, key, obj)

    # -- handlers -------------------------------------------------------------------------

    def add_handler(self, handler: EventHandler) -> None:
        """Call ``handler(event)`` for each change from now on; if the informer has listed,
        first with an ``ADDED`` event per cached object."""
        self._handlers.append(handler)
        if self.has_synced:
            for obj in list(self.informer.cache.values()):
                self._call_one(handler, ResourceEvent(ADDED, self.api_version, self.kind, obj))

    def remove_handler(self, handler: EventHandler) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def _on_add(self, obj: Obj) -> None:
        self._reindex(object_key(obj), obj)
        self._dispatch(ResourceEvent(ADDED, self.api_version, self.kind, obj))

    def _on_update(self, old: Obj, new: Obj) -> None:
        self._reindex(object_key(new), new)
        self._dispatch(ResourceEvent(MODIFIED, self.api_version, self.kind, new, old))

    def _on_delete(self, obj: Obj) -> None:
        key = object_key(obj)
        self._reindex(key, self.informer.cache.get(key))
        self._dispatch(ResourceEvent(DELETED, self.api_version, self.kind, obj))

    def _dispatch(self, event: ResourceEvent) -> None:
        for handler in list(self._handlers):
            self._call_one(handler, event)

    def _call_one(self, handler: EventHandler, event: ResourceEvent) -> None:
        try:
            result = handler(event)
        except Exception:
            log.exception("event handler failed", kind=self.kind, handler=_name(handler))
            return
        if inspect.isawaitable(result):
            # The informer must not wait on one slow handler: run it on the side.
            task = asyncio.ensure_future(result)
            self._pending.add(task)
            task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event handler failed", kind=self.kind, error=repr(task.exception()))

    async def stop(self) -> None:
        await self.informer.stop()
        for task in list(self._pending):
            task.cancel()


class SharedInformers:
    """The informers of one controller manager, one per ``(apiVersion, kind)``.

    ``api`` is an :class:`~kcore.client.ApiClient`. Informers are made on first use by
    :meth:`informer` and run from :meth:`start` (or at once, when already started) until
    :meth:`stop`. ``resync_period`` is handed to each informer (``None``: no resync; the
    controller runtime requeues its own objects instead).
    """

    def __init__(
        self,
        api: Any,
        *,
        resync_period: float | None = None,
        watch_timeout: int | None = None,
    ) -> None:
        self.api = api
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self._informers: dict[tuple[str, str], SharedInformer] = {}
        self._started = False

    def informer(self, api_version: str, kind: str) -> SharedInformer:
        """The shared informer of ``kind`` (made, and started if the set runs, on first use).
        An unknown kind raises ``NotFound``."""
        found = self._informers.get((api_version, kind))
        if found is not None:
            return found
        shared = SharedInformer(
            Informer(
                self.api,
                api_version,
                kind,
                resync_period=self.resync_period,
                watch_timeout=self.watch_timeout,
            )
        )
        shared.add_index(BY_NAMESPACE, _namespace_index)
        shared.add_index(BY_CONTROLLER, _controller_index)
        shared.add_index(BY_OWNER, _owner_index)
        if kind == "Pod" and api_version == "v1":
            shared.add_index(BY_NODE, _node_index)
        self._informers[(api_version, kind)] = shared
        if self._started:
            shared.informer.start()
        return shared

    def __contains__(self, kind: tuple[str, str]) -> bool:
        return kind in self._informers

    def kinds(self) -> list[tuple[str, str]]:
        return list(self._informers)

    # -- shortcuts ------------------------------------------------------------------------

    def add_index(self, api_version: str, kind: str, name: str, func: IndexFunc) -> None:
        self.informer(api_version, kind).add_index(name, func)

    def add_handler(self, api_version: str, kind: str, handler: EventHandler) -> None:
        self.informer(api_version, kind).add_handler(handler)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        return self.informer(api_version, kind).get(name, namespace)

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        return self.informer(api_version, kind).list(namespace)

    def by_index(self, api_version: str, kind: str, index: str, value: str) -> list[Obj]:
        return self.informer(api_version, kind).by_index(index, value)

    # -- running --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Start every informer made so far; later ones start when they are made."""
        self._started = True
        for shared in self._informers.values():
            shared.informer.start()

    async def wait_for_sync(self, *kinds: tuple[str, str], timeout: float | None = None) -> bool:
        """Wait until the informers of ``kinds`` (default: all made so far) have listed;
        ``False`` if ``timeout`` passed first."""
        targets = [self.informer(*k) for k in kinds] if kinds else list(self._informers.values())
        waits = [s.informer.wait_for_sync() for s in targets]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def has_synced(self) -> bool:
        return all(s.has_synced for s in self._informers.values())

    async def stop(self) -> None:
        self._started = False
        for shared in self._informers.values():
            await shared.stop()


def _name(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


__all__ = [
    "ADDED",
    "BY_CONTROLLER",
    "BY_NAMESPACE",
    "BY_NODE",
    "BY_OWNER",
    "DELETED",
    "MODIFIED",
    "EventHandler",
    "IndexFunc",
    "ResourceEvent",
    "SharedInformer",
    "SharedInformers",
]
