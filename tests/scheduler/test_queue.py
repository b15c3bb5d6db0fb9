"""The scheduling queue: order, back-off, the unschedulable set and its moves."""

from __future__ import annotations

import asyncio

from kcore.plugins.scheduler import PodInfo, SchedulingQueue

from .helpers import pod


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def info(name, priority=0, created="2026-01-01T00:00:00Z"):
    obj = pod(name, spec={"priority": priority})
    obj["metadata"]["creationTimestamp"] = created
    return PodInfo(obj)


async def test_active_queue_pops_by_priority_then_creation():
    queue = SchedulingQueue()
    queue.add(info("late", created="2026-01-01T00:00:09Z"))
    queue.add(info("early", created="2026-01-01T00:00:01Z"))
    queue.add(info("urgent", priority=1000, created="2026-01-01T00:00:20Z"))
    order = [(await queue.pop()).pod_info.name for _ in range(3)]
    assert order == ["urgent", "early", "late"]
    assert queue.scheduling_cycle == 3


async def test_back_off_doubles_from_one_second_to_ten():
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    queue.add(info("p"))
    durations = []
    for _ in range(6):
        qpi = await queue.pop()
        durations.append(queue.backoff_duration(qpi))
        queue.add_backoff(qpi)
        assert queue.where("default/p") == "backoff"
        clock.now += queue.backoff_duration(qpi)
    assert durations == [1, 2, 4, 8, 10, 10]


async def test_unschedulable_pods_wait_for_a_cluster_event():
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    queue.add(info("p"))
    qpi = await queue.pop()
    queue.add_unschedulable(qpi, queue.scheduling_cycle)
    assert queue.where("default/p") == "unschedulable"
    # An event within the back-off moves it to the back-off queue, later to the active one.
    assert queue.move_all() == 1
    assert queue.where("default/p") == "backoff"
    clock.now += 1.0
    assert (await asyncio.wait_for(queue.pop(), 1)).key == "default/p"
    queue.add_unschedulable(qpi, queue.scheduling_cycle)
    clock.now += 30
    queue.move_all()
    assert queue.where("default/p") == "active"


async def test_an_event_during_the_attempt_is_not_lost():
    queue = SchedulingQueue()
    queue.add(info("p"))
    qpi = await queue.pop()
    cycle = queue.scheduling_cycle
    queue.move_all()  # e.g. a node was added while the pod was being scheduled
    queue.add_unschedulable(qpi, cycle)
    assert queue.where("default/p") == "backoff"


async def test_leftover_unschedulable_pods_are_flushed_after_five_minutes():
    clock = Clock()
    queue = SchedulingQueue(clock=clock)
    queue.add(info("p"))
    qpi = await queue.pop()
    queue.add_unschedulable(qpi, queue.scheduling_cycle)
    clock.now += 299
    assert queue.flush_unschedulable() == 0
    clock.now += 1
    assert queue.flush_unschedulable() == 1
    assert queue.where("default/p") == "active"


async def test_updates_move_unschedulable_pods_only_when_relevant_and_deletes_remove():
    queue = SchedulingQueue()
    queue.add(info("p"))
    qpi = await queue.pop()
    queue.add_unschedulable(qpi, queue.scheduling_cycle)
    queue.update(info("p"), relevant=False)
    assert queue.where("default/p") == "unschedulable"
    queue.update(info("p"), relevant=True)
    assert queue.where("default/p") in ("active", "backoff")
    queue.delete("default/p")
    assert len(queue) == 0


async def test_pop_waits_for_a_pod():
    queue = SchedulingQueue(initial_backoff=0.05)
    waiter = asyncio.ensure_future(queue.pop())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add(info("p"))
    qpi = await asyncio.wait_for(waiter, 1)
    queue.add_backoff(qpi)
    # A backing-off pod comes back by itself once its back-off ends.
    assert (await asyncio.wait_for(queue.pop(), 1)).key == "default/p"
