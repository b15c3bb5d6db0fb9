"""The scheduling queue, as upstream's ``PriorityQueue`` (``pkg/scheduler/backend/queue``).

Three places a pending pod can be:

- the **active queue**, popped in order of priority (higher first), then creation time;
- the **back-off queue**: pods whose last attempt failed wait ``1 s * 2^(attempts - 1)``,
  at most 10 s, after that attempt before they are active again;
- the **unschedulable set**: pods no node fitted. They stay until a cluster event that may
  make them fit (a node added or changed, a pod deleted ...) moves them all back (to the
  back-off queue if still backing off, else to the active queue), or until they have waited
  5 minutes (the leftover flush).

A cluster event during an attempt is remembered (``move_request_cycle``): a pod whose
attempt started before it goes to the back-off queue instead of the unschedulable set, so
the event is not lost on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable

from kcore.plugins.scheduler.framework import PodInfo

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 10.0
DEFAULT_MAX_UNSCHEDULABLE = 300.0
"""Seconds a pod stays in the unschedulable set without a cluster event (upstream's
``podMaxInUnschedulablePodsDuration``)."""


class QueuedPodInfo:
    """A pending pod with its queueing history."""

    __slots__ = ("attempts", "key", "last_attempt", "pod_info", "seq", "unschedulable_since")

    def __init__(self, pod_info: PodInfo):
        self.pod_info = pod_info
        self.key = pod_info.key
        self.attempts = 0
        self.last_attempt: float | None = None
        self.unschedulable_since = 0.0
        self.seq = 0

    def __repr__(self) -> str:
        return f"QueuedPodInfo({self.key}, attempts={self.attempts})"


class SchedulingQueue:
    """Active queue, back-off queue and unschedulable set (see the module docstring)."""

    def __init__(
        self,
        *,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_unschedulable: float = DEFAULT_MAX_UNSCHEDULABLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self.clock = clock
        self._seq = itertools.count(1)
        self._active: dict[str, QueuedPodInfo] = {}
        self._active_heap: list[tuple[int, str, int, str]] = []
        self._backoff: dict[str, QueuedPodInfo] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._wakeup = asyncio.Event()
        self.scheduling_cycle = 0
        """Counts the pops; an attempt is known by the cycle it was popped in."""
        self.move_request_cycle = -1
        """The cycle during which the last cluster event moved the unschedulable pods."""

    # -- sizes -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._active) + len(self._backoff) + len(self._unschedulable)

    def __contains__(self, key: str) -> bool:
        return key in self._active or key in self._backoff or key in self._unschedulable

    @property
    def counts(self) -> dict[str, int]:
        return {
            "active": len(self._active),
            "backoff": len(self._backoff),
            "unschedulable": len(self._unschedulable),
        }

    def get(self, key: str) -> QueuedPodInfo | None:
        return self._active.get(key) or self._backoff.get(key) or self._unschedulable.get(key)

    def where(self, key: str) -> str | None:
        """``active``, ``backoff``, ``unschedulable`` or ``None``."""
        for name, place in (
            ("active", self._active),
            ("backoff", self._backoff),
            ("unschedulable", self._unschedulable),
        ):
            if key in place:
                return name
        return None

    # -- adding, updating, deleting ---------------------------------------------------------

    def add(self, pod_info: PodInfo) -> None:
        """A new pending pod: straight to the active queue."""
        qpi = self._take(pod_info.key) or QueuedPodInfo(pod_info)
        qpi.pod_info = pod_info
        self._to_active(qpi)

    def update(self, pod_info: PodInfo, *, relevant: bool = True) -> None:
        """A newer version of a pending pod. An unschedulable pod moves back only when the
        change is ``relevant`` (not just its status); a pod not in the queue is added."""
        key = pod_info.key
        for place in (self._active, self._backoff):
            qpi = place.get(key)
            if qpi is not None:
                qpi.pod_info = pod_info
                return
        qpi = self._unschedulable.get(key)
        if qpi is None:
            self.add(pod_info)
            return
        qpi.pod_info = pod_info
        if relevant:
            del self._unschedulable[key]
            self._requeue(qpi, self.clock())

    def delete(self, key: str) -> None:
        self._take(key)

    def _take(self, key: str) -> QueuedPodInfo | None:
        for place in (self._active, self._backoff, self._unschedulable):
            qpi = place.pop(key, None)
            if qpi is not None:
                return qpi  # stale heap entries are skipped when popped
        return None

    # -- after an attempt --------------------------------------------------------------------

    def add_unschedulable(self, qpi: QueuedPodInfo, cycle: int) -> None:
        """No node fitted the pod in attempt ``cycle``: wait for a cluster event (or back
        off at once, if an event came during the attempt)."""
        if qpi.key in self:
            return
        if self.move_request_cycle >= cycle:
            self._to_backoff(qpi)
            return
        qpi.unschedulable_since = self.clock()
        self._unschedulable[qpi.key] = qpi

    def add_backoff(self, qpi: QueuedPodInfo) -> None:
        """The attempt failed on an error (e.g. the binding): retry after the back-off."""
        if qpi.key not in self:
            self._to_backoff(qpi)

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        if qpi.attempts <= 0:
            return 0.0
        return min(self.initial_backoff * (2 ** (qpi.attempts - 1)), self.max_backoff)

    def backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        if qpi.last_attempt is None:
            return 0.0
        return qpi.last_attempt + self.backoff_duration(qpi)

    # -- cluster events ----------------------------------------------------------------------

    def move_all(self) -> int:
        """A cluster event: every unschedulable pod to the back-off or active queue.
        Returns how many moved."""
        self.move_request_cycle = self.scheduling_cycle
        moved = list(self._unschedulable.values())
        self._unschedulable.clear()
        now = self.clock()
        for qpi in moved:
            self._requeue(qpi, now)
        return len(moved)

    def flush_unschedulable(self) -> int:
        """Move the pods that have been unschedulable for ``max_unschedulable`` seconds."""
        now = self.clock()
        old = [
            qpi
            for qpi in self._unschedulable.values()
            if now - qpi.unschedulable_since >= self.max_unschedulable
        ]
        for qpi in old:
            del self._unschedulable[qpi.key]
            self._requeue(qpi, now)
        return len(old)

    def _requeue(self, qpi: QueuedPodInfo, now: float) -> None:
        if self.backoff_expiry(qpi) > now:
            self._to_backoff(qpi)
        else:
            self._to_active(qpi)

    # -- popping -----------------------------------------------------------------------------

    async def pop(self) -> QueuedPodInfo:
        """The next pod to schedule, waiting for one; counts the attempt."""
        while True:
            now = self.clock()
            self._flush_backoff(now)
            heap = self._active_heap
            while heap:
                _, _, seq, key = heapq.heappop(heap)
                qpi = self._active.get(key)
                if qpi is not None and qpi.seq == seq:
                    del self._active[key]
                    self.scheduling_cycle += 1
                    qpi.attempts += 1
                    qpi.last_attempt = now
                    return qpi
            timeout = None
            if self._backoff_heap:
                timeout = max(0.0, self._backoff_heap[0][0] - now)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):  # not wait_for: see the worker's note
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    def _flush_backoff(self, now: float) -> None:
        heap = self._backoff_heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            qpi = self._backoff.get(key)
            if qpi is not None and qpi.seq == seq:
                del self._backoff[key]
                self._to_active(qpi)

    def _to_active(self, qpi: QueuedPodInfo) -> None:
        qpi.seq = next(self._seq)
        self._active[qpi.key] = qpi
        info = qpi.pod_info
        heapq.heappush(self._active_heap, (-info.priority, info.creation, qpi.seq, qpi.key))
        self._wakeup.set()

    def _to_backoff(self, qpi: QueuedPodInfo) -> None:
        qpi.seq = next(self._seq)
        self._backoff[qpi.key] = qpi
        heapq.heappush(self._backoff_heap, (self.backoff_expiry(qpi), qpi.seq, qpi.key))
        self._wakeup.set()


__all__ = ["QueuedPodInfo", "SchedulingQueue"]
