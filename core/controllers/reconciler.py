"""Level-triggered reconcilers and the runtime that drives them.

A controller subclasses :class:`Reconciler`: it names the kinds it watches (the first is the
one it reconciles), maps each change of a watched object to the keys to reconcile
(:meth:`Reconciler.keys_for`), and reconciles one key at a time from the current state in
the shared informers' caches (:meth:`Reconciler.reconcile`). It holds no retry loops:

* return ``None``: done; a number: reconcile this key again after that many seconds;
* raise :class:`~kcore.errors.TemporaryError`: retry after its ``retry_after``;
* raise :class:`~kcore.errors.PermanentError`: logged, a Warning event ``ReconcileFailed``
  on the object, no retry until the object (or something mapped to it) changes;
* raise anything else (a ``Conflict``, a lost connection, a bug): retried with per-key
  exponential back-off, 5 ms doubling to 1000 s; other keys and controllers go on.

:class:`ReconcilerRunner` runs one reconciler: ``workers`` tasks (2 by default) pull keys
from a :class:`~kcore.controllers.WorkQueue`, which never hands one key to two workers at
once. The runner counts the reconciler's API writes (creates, updates, patches, deletes,
events included) in :attr:`ReconcilerRunner.stats`, which makes quiescence testable: a
converged object gets no writes when it is reconciled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from kcore.client.api_client import ApiClient
from kcore.controllers.informers import ResourceEvent, SharedInformers
from kcore.controllers.owners import controller_ref, ref_matches_kind
from kcore.controllers.workqueue import WorkQueue
from kcore.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    KcoreError,
    PermanentError,
    TemporaryError,
)
from kcore.events import EventRecorder
from kcore.interfaces import ControllerContext
from kcore.selectors import from_label_selector_object

log = structlog.get_logger("kcore.controllers")

Kind = tuple[str, str]

WRITE_METHODS = frozenset(
    {"create", "update", "update_status", "patch", "delete", "bind", "create_token"}
)


def split_key(key: str) -> tuple[str | None, str]:
    """``"ns/name"`` -> ``("ns", "name")``; ``"name"`` -> ``(None, "name")``."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)


def namespace_terminating(exc: BaseException) -> bool:
    """Whether a create failed because its namespace is being deleted."""
    return isinstance(exc, Forbidden) and "terminat" in str(exc).lower()


def make_key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


@dataclass
class ReconcilerStats:
    reconciles: int = 0
    """Reconciles that returned or raised."""
    failures: int = 0
    """Reconciles that raised."""
    writes: int = 0
    """API writes the reconciler made (events included)."""
    last_error: str | None = None


class CountingApi:
    """An API client that counts writes into ``stats`` and passes everything through."""

    def __init__(self, api: Any, stats: ReconcilerStats) -> None:
        self._api = api
        self._stats = stats

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if name not in WRITE_METHODS:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._stats.writes += 1
            return await attr(*args, **kwargs)

        return counted


class Reconciler:
    """Base class of a level-triggered controller (see the module docstring).

    Set as class or instance attributes:

    * ``name``: unique among controllers; also the Events' ``source.component``;
    * ``kinds``: the ``(apiVersion, kind)`` pairs to watch; the first is the reconciled kind,
      whose keys are ``namespace/name`` (``name`` when cluster-scoped);
    * ``workers``: how many keys are reconciled at once (default 2);
    * ``resync_period``: seconds between requeueing every reconciled object (``None``: only
      on changes).

    Before :meth:`setup` the runtime sets ``ctx`` (the :class:`ControllerContext`), ``api``
    (its client, counting writes), ``informers``, ``recorder`` (an
    :class:`~kcore.events.EventRecorder`) and ``queue``. ``setup`` runs at the start of each
    leadership term, so it resets any state the previous term left.
    """

    name: str = ""
    kinds: Sequence[Kind] = ()
    workers: int = 2
    resync_period: float | None = None

    ctx: ControllerContext
    api: Any
    informers: SharedInformers
    recorder: EventRecorder
    queue: WorkQueue

    @property
    def primary(self) -> Kind:
        """The reconciled kind: the first of :attr:`kinds`."""
        if not self.kinds:
            raise ValueError(f"controller {self.name!r} names no kinds")
        api_version, kind = self.kinds[0]
        return api_version, kind

    async def setup(self) -> None:
        """Called once per leadership term before the informers start: add indexes,
        reset state."""

    def observe(self, event: ResourceEvent) -> None:
        """Called for each event of a watched kind, in order, before :meth:`keys_for`
        (to count expectations down, for example)."""

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        """The keys to reconcile after ``event``. By default: the object's own key for the
        reconciled kind; for other kinds, the key of the object's controller (new and old
        state) when it is of the reconciled kind and in the cache with that uid."""
        if (event.api_version, event.kind) == self.primary:
            return [event.key]
        keys: list[str] = []
        for obj in (event.obj, event.old):
            owner = self.resolve_controller(obj) if obj is not None else None
            if owner is not None:
                key = make_key(
                    (owner.get("metadata") or {}).get("namespace"), owner["metadata"]["name"]
                )
                if key not in keys:
                    keys.append(key)
        return keys

    async def reconcile(self, key: str) -> float | None:
        """Make the world match the object of ``key`` (which may be gone). Return ``None``,
        or seconds after which to reconcile again."""
        raise NotImplementedError

    async def run(self, ctx: ControllerContext, stop: asyncio.Event) -> None:
        """The :class:`~kcore.interfaces.Controller` protocol: run until ``stop`` on
        ``ctx.informers`` (informers of its own when that is ``None``)."""
        own = None
        if ctx.informers is None:
            own = SharedInformers(ctx.api)
            ctx = dataclasses.replace(ctx, informers=own)
        try:
            await ReconcilerRunner(self, ctx).run(stop)
        finally:
            if own is not None:
                await own.stop()

    # -- helpers for subclasses -----------------------------------------------------------

    async def create_pod(self, owner: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
        """Create ``pod`` for ``owner`` with the events controllers write:
        ``SuccessfulCreate`` ``Created pod: <name>``, or ``FailedCreate`` (not when the
        namespace is being terminated: that is expected). Errors propagate."""
        try:
            created = await self.api.create(pod)
        except KcoreError as exc:
            if not namespace_terminating(exc):
                await self.recorder.event(
                    owner, "Warning", "FailedCreate", f"Error creating: {exc}"
                )
            raise
        name = (created.get("metadata") or {}).get("name")
        await self.recorder.event(owner, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return created

    def selecting(self, kind: Kind, obj: dict[str, Any]) -> list[str]:
        """Keys of the cached objects of ``kind`` in ``obj``'s namespace whose
        ``spec.selector`` matches ``obj``'s labels: who may adopt ``obj`` when it is an
        orphan. An empty or unreadable selector selects nothing."""
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        keys = []
        for candidate in self.informers.list(*kind, meta.get("namespace")):
            try:
                selector = from_label_selector_object((candidate.get("spec") or {}).get("selector"))
            except BadRequest:
                continue
            if not selector.empty and selector.matches(labels):
                cmeta = candidate.get("metadata") or {}
                keys.append(make_key(cmeta.get("namespace"), cmeta.get("name", "")))
        return keys

    def resolve_controller(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The cached object of the reconciled kind that controls ``obj`` (same uid), if any."""
        ref = controller_ref(obj)
        if ref is None or not ref_matches_kind(ref, *self.primary):
            return None
        namespace = (obj.get("metadata") or {}).get("namespace")
        if not ApiClient.resource(*self.primary).namespaced:
            namespace = None
        owner = self.informers.get(*self.primary, ref.get("name", ""), namespace)
        if owner is None or (owner.get("metadata") or {}).get("uid") != ref.get("uid"):
            return None
        return owner

    def cached(self, key: str, kind: Kind | None = None) -> dict[str, Any] | None:
        """The cached object of ``key`` (of the reconciled kind unless ``kind``)."""
        api_version, k = kind or self.primary
        return self.informers.informer(api_version, k).get_by_key(key)

    def enqueue(self, key: str, after: float | None = None) -> None:
        if after:
            self.queue.add_after(key, after)
        else:
            self.queue.add(key)

    def now(self) -> float:
        """Wall-clock seconds (the context's clock when it has one)."""
        clock = getattr(self, "ctx", None) and self.ctx.clock
        return clock() if clock else time.time()


class ReconcilerRunner:
    """Runs one :class:`Reconciler` in a :class:`ControllerContext` until stopped."""

    def __init__(self, reconciler: Reconciler, ctx: ControllerContext) -> None:
        if ctx.informers is None:
            raise ValueError("a reconciler needs ctx.informers (a SharedInformers)")
        self.reconciler = reconciler
        self.ctx = ctx
        self.stats = ReconcilerStats()
        self.queue = WorkQueue(reconciler.name)
        self._log = log.bind(controller=reconciler.name)

    async def run(self, stop: asyncio.Event) -> None:
        r = self.reconciler
        informers: SharedInformers = self.ctx.informers
        r.ctx = self.ctx
        r.api = CountingApi(self.ctx.api, self.stats)
        r.informers = informers
        r.recorder = EventRecorder(r.api, r.name)
        r.queue = self.queue
        await r.setup()
        handlers = []
        for api_version, kind in r.kinds:
            shared = informers.informer(api_version, kind)
            shared.add_handler(self._on_event)
            handlers.append(shared)
        tasks: list[asyncio.Task[None]] = []
        try:
            informers.start()
            synced = asyncio.ensure_future(informers.wait_for_sync(*r.kinds))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({synced, stopped}, return_when=asyncio.FIRST_COMPLETED)
            synced.cancel()
            stopped.cancel()
            if stop.is_set():
                return
            self._log.info("controller started", workers=r.workers)
            tasks = [asyncio.ensure_future(self._worker()) for _ in range(max(1, r.workers))]
            if r.resync_period:
                tasks.append(asyncio.ensure_future(self._resync(r.resync_period)))
            await stop.wait()
        finally:
            self.queue.shutdown()
            for shared in handlers:
                shared.remove_handler(self._on_event)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _on_event(self, event: ResourceEvent) -> None:
        r = self.reconciler
        try:
            r.observe(event)
            for key in r.keys_for(event):
                self.queue.add(key)
        except Exception:
            self._log.exception("mapping an event to keys failed", kind=event.kind, key=event.key)

    async def _resync(self, period: float) -> None:
        r = self.reconciler
        while True:
            await asyncio.sleep(period)
            for obj in r.informers.list(*r.primary):
                self.queue.add(
                    make_key((obj.get("metadata") or {}).get("namespace"), obj["metadata"]["name"])
                )

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self._process(str(key))
            finally:
                self.queue.done(key)

    async def _process(self, key: str) -> None:
        r = self.reconciler
        with structlog.contextvars.bound_contextvars(controller=r.name, key=key):
            try:
                result = await r.reconcile(key)
            except asyncio.CancelledError:
                raise
            except TemporaryError as exc:
                self._failed(exc)
                self.queue.add_after(key, exc.retry_after)
                self._log.info(
                    "reconcile will be retried", key=key, error=str(exc), retry_in=exc.retry_after
                )
                return
            except PermanentError as exc:
                self._failed(exc)
                self.queue.forget(key)
                self._log.error("reconcile failed for good", key=key, error=str(exc))
                obj = r.cached(key)
                if obj is not None:
                    await r.recorder.event(obj, "Warning", "ReconcileFailed", str(exc))
                return
            except Exception as exc:
                self._failed(exc)
                delay = self.queue.add_rate_limited(key)
                if isinstance(exc, Conflict):
                    self._log.debug("reconcile conflicted", key=key, error=str(exc), retry_in=delay)
                elif isinstance(exc, (KcoreError, OSError)):
                    self._log.warning("reconcile failed", key=key, error=str(exc), retry_in=delay)
                else:
                    self._log.exception("reconcile raised", key=key, retry_in=delay)
                return
            finally:
                self.stats.reconciles += 1
            self.queue.forget(key)
            if result is not None:
                self.queue.add_after(key, float(result))

    def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"


__all__ = [
    "CountingApi",
    "Kind",
    "Reconciler",
    "ReconcilerRunner",
    "ReconcilerStats",
    "make_key",
    "split_key",
]
