"""The work queue controllers pull keys from, as client-go's rate-limited delaying queue.

* A key waiting in the queue is there once, however often it is added (**dedupe**).
* A key being processed (handed out by :meth:`WorkQueue.get`, not yet :meth:`~WorkQueue.done`)
  is never handed out again meanwhile; added again while in flight, it is queued once more
  when ``done`` is called, so the change that re-added it is not lost.
* :meth:`~WorkQueue.add_after` queues a key after a delay; :meth:`~WorkQueue.add_rate_limited`
  after a per-key exponential back-off (:class:`ExponentialBackoff`: 5 ms doubling to
  1000 s, client-go's default for controllers) that :meth:`~WorkQueue.forget` resets.
* :meth:`~WorkQueue.shutdown` wakes every waiting worker; ``get`` then answers ``None``.

The clock is injectable (seconds, monotonic) so tests can check timings without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Callable, Hashable

Clock = Callable[[], float]

BASE_DELAY = 0.005
MAX_DELAY = 1000.0


class ExponentialBackoff:
    """Per-key failure back-off: ``base * 2**failures``, at most ``cap`` seconds
    (client-go's ``ItemExponentialFailureRateLimiter``)."""

    def __init__(self, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def when(self, key: Hashable) -> float:
        """The delay before the next retry of ``key``; counts one more failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:  # 2**64 * base is far beyond any cap
            return self.cap
        return min(self.base * (2**failures), self.cap)

    def retries(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """A deduplicating, rate-limited, delaying queue of keys for N async workers."""

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: ExponentialBackoff | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.rate_limiter = rate_limiter or ExponentialBackoff()
        self.clock = clock
        self._queue: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._waiting: list[tuple[float, int, Hashable]] = []  # (due, seq, key) heap
        self._due: dict[Hashable, float] = {}  # the earliest due time of each waiting key
        self._seq = 0
        self._changed = asyncio.Event()
        self._shutting_down = False

    # -- adding ---------------------------------------------------------------------------

    def add(self, key: Hashable) -> None:
        """Queue ``key`` now (a no-op if it is already queued)."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._changed.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed; of several delays for one key
        the earliest wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self.clock() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._waiting, (due, self._seq, key))
        self._changed.set()

    def add_rate_limited(self, key: Hashable) -> float:
        """Queue ``key`` after its back-off; returns the delay."""
        delay = self.rate_limiter.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        """``key`` succeeded: its next failure backs off from the start again."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return self.rate_limiter.retries(key)

    # -- taking ---------------------------------------------------------------------------

    async def get(self) -> Hashable | None:
        """The next key (mark it :meth:`done` when finished), or ``None`` once shut down."""
        while True:
            if self._shutting_down:
                return None
            self._promote()
            if self._queue:
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                return key
            self._changed.clear()
            timeout = None
            if self._waiting:
                timeout = max(self._waiting[0][0] - self.clock(), 0.0) + 0.0005
            try:  # asyncio.timeout: wait_for can swallow a cancellation on 3.11
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def done(self, key: Hashable) -> None:
        """Processing of ``key`` ended; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._changed.set()

    def shutdown(self) -> None:
        """Stop handing out keys; waiting workers get ``None``."""
        self._shutting_down = True
        self._changed.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # -- looking --------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many keys are ready to be handed out now (delays that have passed count)."""
        self._promote()
        return len(self._queue)

    def waiting(self) -> int:
        """How many keys wait for a delay to pass."""
        return len(self._due)

    def processing(self) -> frozenset[Hashable]:
        return frozenset(self._processing)

    def _promote(self) -> None:
        now = self.clock()
        while self._waiting and self._waiting[0][0] <= now:
            due, _, key = heapq.heappop(self._waiting)
            if self._due.get(key) != due:
                continue  # superseded by an earlier delay
            del self._due[key]
            self.add(key)


__all__ = ["BASE_DELAY", "MAX_DELAY", "ExponentialBackoff", "WorkQueue"]
