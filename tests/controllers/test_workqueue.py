"""The work queue: dedupe, one worker per key, back-off and delays on an injected clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from kcore.controllers import ExponentialBackoff, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_a_key_added_twice_is_handed_out_once():
    q = WorkQueue()
    q.add("a")
    q.add("b")
    q.add("a")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert len(q) == 0


async def test_a_key_in_flight_is_not_handed_out_again_until_done():
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed again while a worker has it
    assert len(q) == 0
    assert "a" in q.processing()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.05)
    q.done(key)
    assert len(q) == 1  # queued once more, so the second change is not lost
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_a_re_add_does_not_requeue():
    q = WorkQueue()
    q.add("a")
    q.done(await q.get())
    assert len(q) == 0


def test_exponential_backoff_doubles_from_5ms_to_1000s_per_key():
    limiter = ExponentialBackoff()
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1000.0
    assert all(b == min(a * 2, 1000.0) for a, b in itertools.pairwise(delays))
    assert limiter.when("b") == 0.005  # per key
    assert limiter.retries("a") == 20
    limiter.forget("a")
    assert limiter.when("a") == 0.005


async def test_rate_limited_adds_wait_for_their_back_off_on_the_clock():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    assert q.add_rate_limited("a") == 0.005
    assert len(q) == 0 and q.waiting() == 1
    clock.advance(0.005)
    assert len(q) == 1
    q.done(await q.get())
    assert q.add_rate_limited("a") == 0.01  # the second failure waits twice as long
    clock.advance(0.009)
    assert len(q) == 0
    clock.advance(0.001)
    assert len(q) == 1
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_add_after_keeps_the_earliest_delay_and_dedupes():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 5)
    q.add_after("a", 20)
    assert q.waiting() == 1
    clock.advance(5)
    assert len(q) == 1
    clock.advance(20)
    assert len(q) == 1  # the superseded delays do not add it again
    q.add_after("b", 0)  # no delay: now
    assert len(q) == 2


async def test_get_wakes_when_a_delay_passes_in_real_time():
    q = WorkQueue()
    q.add_after("a", 0.05)
    assert await asyncio.wait_for(q.get(), 2) == "a"


async def test_shutdown_wakes_waiting_workers_and_stops_adds():
    q = WorkQueue()
    waiters = [asyncio.ensure_future(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shutdown()
    assert await asyncio.gather(*waiters) == [None, None, None]
    q.add("a")
    assert len(q) == 0
    assert await q.get() is None
