"""The scheduler controller: watches nodes and pods, schedules one pending pod at a time,
and binds it in the background.

Per pod (upstream's ``scheduleOne``): pop the next pod from the
:class:`~kcore.plugins.scheduler.queue.SchedulingQueue`, run the filter and score steps over
the :class:`~kcore.plugins.scheduler.cache.SchedulerCache` (no awaits: the cache cannot
change under an attempt), then either

- *assume* the pod on the chosen node and bind it in a background task (``pods/binding``,
  then a Normal ``Scheduled`` event ``Successfully assigned <ns>/<pod> to <node>``); a
  failed binding forgets the assumption and retries the pod after its back-off; or
- put it in the unschedulable set, set its ``PodScheduled`` condition to ``False`` with
  reason ``Unschedulable`` and upstream's message, and record a Warning
  ``FailedScheduling`` event with the same message. A node added or changed, or a pod
  deleted or finished, moves it back.

Only pods of this scheduler (``spec.schedulerName``, ``default-scheduler`` by default)
without ``spec.nodeName`` are scheduled; pods being deleted or finished are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from kcore import Conflict, ControllerContext, NotFound, PluginError
from kcore.api.meta import micro_now, now
from kcore.client import Informer
from kcore.plugins.scheduler.algorithm import Profile, ScheduleResult
from kcore.plugins.scheduler.cache import SchedulerCache
from kcore.plugins.scheduler.filters import default_filters
from kcore.plugins.scheduler.framework import PodInfo
from kcore.plugins.scheduler.queue import (
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_UNSCHEDULABLE,
    QueuedPodInfo,
    SchedulingQueue,
)
from kcore.plugins.scheduler.scores import default_scores

log = structlog.get_logger("kcore.plugins.scheduler")

DEFAULT_SCHEDULER_NAME = "default-scheduler"
FILTERS_KEY = "scheduler_filters"
SCORES_KEY = "scheduler_scores"
FLUSH_PERIOD = 30.0
"""Seconds between checks for pods unschedulable for too long (upstream: 30 s)."""
_FINISHED = ("Succeeded", "Failed")
_EVENT_CACHE_SIZE = 4096


@dataclass
class SchedulerMetrics:
    """Counters and the duration of recent attempts (the filter and score work of one
    pod, without the binding), for benchmarks and debugging."""

    attempts: int = 0
    scheduled: int = 0
    unschedulable: int = 0
    errors: int = 0
    attempt_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))


class Scheduler:
    """The ``scheduler`` controller (see the module docstring and the package's for how it
    gets its steps)."""

    name = "scheduler"

    def conformance(self) -> list[Any]:
        """Scenarios for the controller conformance suite (:mod:`kcore.conformance`)."""
        from kcore.plugins.scheduler.conformance import scheduler_scenarios

        return scheduler_scenarios()

    def __init__(
        self,
        settings: Any = None,
        *,
        filters: Sequence[Any] | None = None,
        scores: Sequence[Any] | None = None,
        scheduler_name: str = DEFAULT_SCHEDULER_NAME,
        percentage_of_nodes_to_score: int = 0,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_unschedulable: float = DEFAULT_MAX_UNSCHEDULABLE,
        flush_period: float = FLUSH_PERIOD,
        binds_in_flight: int = 32,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.filters = list(filters) if filters is not None else None
        self.scores = list(scores) if scores is not None else None
        self.scheduler_name = scheduler_name
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self.flush_period = flush_period
        self.binds_in_flight = binds_in_flight
        self.rng = random.Random(seed)
        self.metrics = SchedulerMetrics()
        self.queue = self._new_queue()
        self.cache = SchedulerCache()
        self.profile: Profile | None = None
        self.synced = asyncio.Event()
        """Set once the first lists of nodes and pods are in the cache."""
        self._api: Any = None
        self._events: _EventWriter | None = None
        self._pods: Informer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots: asyncio.Semaphore | None = None

    def _new_queue(self) -> SchedulingQueue:
        return SchedulingQueue(
            initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff,
            max_unschedulable=self.max_unschedulable,
        )

    # -- the steps ---------------------------------------------------------------------------

    def steps(self, ctx: ControllerContext | None = None) -> tuple[list[Any], list[Any]]:
        """The filter and score steps to run: those given to the constructor, else those
        the controller manager passes in ``ctx.extra["scheduler_filters"]`` /
        ``["scheduler_scores"]`` (every loaded plugin's), else the built-in ones."""
        extra = (ctx.extra if ctx is not None else None) or {}
        filters = self.filters
        if filters is None:
            filters = extra.get(FILTERS_KEY)
        if filters is None:
            filters = default_filters()
        scores = self.scores
        if scores is None:
            scores = extra.get(SCORES_KEY)
        if scores is None:
            scores = default_scores()
        _check_steps(filters, "filter")
        _check_steps(scores, "score")
        return list(filters), list(scores)

    # -- running -----------------------------------------------------------------------------

    async def run(self, ctx: ControllerContext, stop: Any) -> None:
        """Schedule until ``stop`` (an ``asyncio.Event``) is set."""
        filters, scores = self.steps(ctx)
        self.profile = Profile(
            filters,
            scores,
            percentage_of_nodes_to_score=self.percentage_of_nodes_to_score,
            rng=self.rng,
        )
        self._api = ctx.api
        self._events = _EventWriter(ctx.api, DEFAULT_SCHEDULER_NAME)
        self.queue = self._new_queue()
        self.cache = SchedulerCache()
        self.synced.clear()
        self._slots = asyncio.Semaphore(self.binds_in_flight)
        nodes = Informer(ctx.api, "v1", "Node")
        nodes.on_add(self._node_added)
        nodes.on_update(self._node_updated)
        nodes.on_delete(self._node_deleted)
        self._pods = pods = Informer(ctx.api, "v1", "Pod")
        pods.on_add(self._pod_added)
        pods.on_update(self._pod_updated)
        pods.on_delete(self._pod_deleted)
        background = [asyncio.ensure_future(nodes.run()), asyncio.ensure_future(pods.run())]
        stopping = asyncio.ensure_future(stop.wait())
        try:
            synced = asyncio.gather(nodes.wait_for_sync(), pods.wait_for_sync())
            await asyncio.wait({synced, stopping}, return_when=asyncio.FIRST_COMPLETED)
            synced.cancel()
            if stopping.done():
                return
            self.synced.set()
            log.info(
                "scheduler running",
                nodes=len(self.cache),
                pending=len(self.queue),
                filters=[s.name for s in filters],
                scores=[f"{s.name}={s.weight}" for s in scores],
            )
            background.append(asyncio.ensure_future(self._schedule_forever()))
            background.append(asyncio.ensure_future(self._flush_forever()))
            await stopping
        finally:
            stopping.cancel()
            tasks = background + list(self._tasks)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()

    async def _schedule_forever(self) -> None:
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            try:
                qpi = await self.queue.pop()
                binding = self.schedule_one(qpi)
            except BaseException:
                self._slots.release()
                raise
            if not binding:
                self._slots.release()
            await asyncio.sleep(0)  # let the watches and bindings run between pods

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_period)
            moved = self.queue.flush_unschedulable()
            if moved:
                log.debug("flushed unschedulable pods", pods=moved)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- one pod -----------------------------------------------------------------------------

    def schedule_one(self, qpi: QueuedPodInfo) -> bool:
        """One attempt for a popped pod; True when a binding was started (it then owns a
        binding slot)."""
        info = qpi.pod_info
        current = self._pods.cache.get(info.key) if self._pods is not None else info.pod
        if current is None or not self._pending(current):
            return False  # deleted, bound or finished since it was queued
        cycle = self.queue.scheduling_cycle
        assert self.profile is not None
        self.metrics.attempts += 1
        started = time.perf_counter()
        try:
            result: ScheduleResult = self.profile.schedule(info, self.cache)
        except Exception as exc:
            self.metrics.errors += 1
            log.exception("scheduling attempt failed", pod=info.key)
            self.queue.add_backoff(qpi)
            self._spawn(self._report_failure(info.key, str(exc), "SchedulerError"))
            return False
        finally:
            self.metrics.attempt_seconds.append(time.perf_counter() - started)
        if result.node is None:
            self.metrics.unschedulable += 1
            self.queue.add_unschedulable(qpi, cycle)
            self._spawn(self._report_failure(info.key, result.message or "", "Unschedulable"))
            return False
        node_name = result.node.name
        self.cache.assume(info, node_name)
        self._spawn(self._bind(qpi, node_name))
        return True

    async def _bind(self, qpi: QueuedPodInfo, node_name: str) -> None:
        info = qpi.pod_info
        try:
            try:
                await self._api.bind(info.name, node_name, namespace=info.namespace)
            except (Conflict, NotFound):
                self.cache.forget(info.key)  # bound elsewhere meanwhile, or gone
                return
            except Exception as exc:
                self.cache.forget(info.key)
                self.metrics.errors += 1
                log.warning("binding failed", pod=info.key, node=node_name, error=str(exc))
                current = self._pods.cache.get(info.key) if self._pods else None
                if current is not None and self._pending(current):
                    if current is not info.pod:
                        qpi.pod_info = PodInfo(current)
                    self.queue.add_backoff(qpi)
                    await self._report_failure(
                        info.key, f"Binding rejected: {exc}", "SchedulerError"
                    )
                return
            self.metrics.scheduled += 1  # the binding itself sets PodScheduled=True
            assert self._events is not None
            await self._events.event(
                info.pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {info.namespace}/{info.name} to {node_name}",
                fold=False,
            )
        finally:
            assert self._slots is not None
            self._slots.release()

    async def _report_failure(self, key: str, message: str, reason: str) -> None:
        """The Warning ``FailedScheduling`` event and the ``PodScheduled=False`` condition
        (written only when it changes)."""
        pod = self._pods.cache.get(key) if self._pods is not None else None
        if pod is None:
            return
        assert self._events is not None
        await self._events.event(pod, "Warning", "FailedScheduling", message)
        conditions = (pod.get("status") or {}).get("conditions") or ()
        old = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        if (
            old is not None
            and old.get("status") == "False"
            and old.get("reason") == reason
            and old.get("message") == message
        ):
            return
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        if old is not None and old.get("status") == "False" and old.get("lastTransitionTime"):
            stamp = old["lastTransitionTime"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": stamp,
        }
        meta = pod.get("metadata") or {}
        try:
            await self._api.patch(
                "v1",
                "Pod",
                meta.get("name"),
                {"status": {"conditions": [condition]}},
                "strategic",
                namespace=meta.get("namespace"),
                subresource="status",
            )
        except NotFound:
            pass
        except Exception as exc:
            log.warning("could not set the PodScheduled condition", pod=key, error=str(exc))

    # -- watch handlers ----------------------------------------------------------------------

    def _pending(self, pod: Mapping[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) == self.scheduler_name
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in _FINISHED
        )

    def _node_added(self, node: dict[str, Any]) -> None:
        self.cache.set_node(node)
        self.queue.move_all()

    def _node_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.cache.set_node(new)
        if _node_scheduling_changed(old, new):
            self.queue.move_all()

    def _node_deleted(self, node: dict[str, Any]) -> None:
        self.cache.remove_node((node.get("metadata") or {}).get("name") or "")

    def _pod_added(self, pod: dict[str, Any]) -> None:
        self._pod_changed(None, pod)

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._pod_changed(old, new)

    def _pod_deleted(self, pod: dict[str, Any]) -> None:
        key = _key(pod)
        self.queue.delete(key)
        if self.cache.pod(key) is not None:
            self.cache.remove_pod(key)
            self.queue.move_all()

    def _pod_changed(self, old: dict[str, Any] | None, pod: dict[str, Any]) -> None:
        key = _key(pod)
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            self.queue.delete(key)
            placed = self.cache.pod(key)
            if (pod.get("status") or {}).get("phase") in _FINISHED:
                if placed is not None:
                    self.cache.remove_pod(key)
                    self.queue.move_all()
                return
            if old is not None and not _scheduling_changed_beyond_binding(old, pod):
                if self.cache.confirm(key, pod, spec["nodeName"]):
                    return  # our binding, as assumed
                if placed is not None and not self.cache.is_assumed(key):
                    placed[0].pod = pod  # a status change: the parsed pod still holds
                    return
            self.cache.add_pod(PodInfo(pod))
            if (
                old is not None
                and (old.get("spec") or {}).get("nodeName")
                and _labels(old) != _labels(pod)
            ):
                self.queue.move_all()  # pod (anti-)affinity may see it differently now
            return
        if not self._pending(pod):
            self.queue.delete(key)
            return
        if self.cache.is_assumed(key):
            return  # its binding is in flight
        queued = self.queue.get(key)
        if old is not None and queued is not None and not _scheduling_changed(old, pod):
            queued.pod_info.pod = pod  # a status change (ours, say): nothing to reconsider
            return
        self.queue.update(PodInfo(pod))


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _labels(obj: Mapping[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("labels")


_META_FIELDS = ("labels", "annotations", "ownerReferences", "deletionTimestamp")


def _scheduling_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a pod changed in more than its status (upstream's ``isPodUpdated``)."""
    if old.get("spec") != new.get("spec"):
        return True
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return any(old_meta.get(f) != new_meta.get(f) for f in _META_FIELDS)


def _scheduling_changed_beyond_binding(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Like :func:`_scheduling_changed`, but a ``spec.nodeName`` set by a binding does not
    count."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec.get("nodeName") != new_spec.get("nodeName"):
        old_spec = {**old_spec, "nodeName": new_spec.get("nodeName")}
    if old_spec != new_spec:
        return True
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return any(old_meta.get(f) != new_meta.get(f) for f in _META_FIELDS)


def _node_scheduling_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a node changed in a way that can make a pod fit (not a heartbeat)."""
    if old.get("spec") != new.get("spec") or _labels(old) != _labels(new):
        return True
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return old_status.get("allocatable") != new_status.get("allocatable") or old_status.get(
        "images"
    ) != new_status.get("images")


def _check_steps(steps: Any, kind: str) -> None:
    if not isinstance(steps, list | tuple):
        raise PluginError(f"scheduler {kind} steps must be a list, not {type(steps).__name__}")
    for step in steps:
        if not getattr(step, "name", None) or not callable(getattr(step, kind, None)):
            raise PluginError(
                f"scheduler {kind} step {step!r} needs a name and a {kind}(pod, node, state) method"
            )
        if kind == "score":
            weight = getattr(step, "weight", None)
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise PluginError(
                    f"scheduler score step {step.name!r} needs an integer weight >= 0, "
                    f"not {weight!r}"
                )


class _EventWriter:
    """Core/v1 Events from the scheduler. Repeats of an event for one pod (same type,
    reason and message) fold into one Event whose ``count`` moves, as the Kubernetes event
    correlator does, so a pod that stays unschedulable writes one Event."""

    def __init__(self, api: Any, component: str) -> None:
        self.api = api
        self.component = component
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()

    async def event(
        self, pod: Mapping[str, Any], type_: str, reason: str, message: str, *, fold: bool = True
    ) -> None:
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        key = (namespace, meta.get("name") or "", meta.get("uid") or "", type_, reason, message)
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            seen = self._seen.get(key) if fold else None
            if seen is not None:
                name, ns, count = seen
                try:
                    await self.api.patch(
                        "v1",
                        "Event",
                        name,
                        {"count": count + 1, "lastTimestamp": stamp},
                        "merge",
                        namespace=ns,
                    )
                    self._seen[key] = (name, ns, count + 1)
                    self._seen.move_to_end(key)
                    return
                except NotFound:
                    del self._seen[key]
            name = f"{meta.get('name')}.{time.time_ns():x}"
            ref = {
                "kind": "Pod",
                "namespace": namespace,
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "apiVersion": "v1",
                "resourceVersion": meta.get("resourceVersion"),
            }
            await self.api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {k: v for k, v in ref.items() if v},
                    "reason": reason,
                    "message": message,
                    "type": type_,
                    "count": 1,
                    "firstTimestamp": stamp,
                    "lastTimestamp": stamp,
                    "eventTime": micro_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "reportingComponent": self.component,
                    "reportingInstance": "",
                    "source": {"component": self.component},
                }
            )
            if fold:
                self._seen[key] = (name, namespace, 1)
                if len(self._seen) > _EVENT_CACHE_SIZE:
                    self._seen.popitem(last=False)
        except Exception as exc:
            log.warning("could not record event", reason=reason, error=str(exc))


__all__ = ["DEFAULT_SCHEDULER_NAME", "FILTERS_KEY", "SCORES_KEY", "Scheduler", "SchedulerMetrics"]
