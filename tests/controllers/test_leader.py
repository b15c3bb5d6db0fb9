"""Leader election: two managers on one API never both lead; a leader that stops renewing
steps down, and the other takes over once the Lease has expired."""

from __future__ import annotations

import asyncio
import time

import pytest

from kcore.controllers import ControllerManager, LeaderElectionConfig, LeaderElector

from .helpers import eventually

FAST = dict(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)


class Breakable:
    """An API client that fails every call while ``broken`` (a leader cut off from the API)."""

    def __init__(self, api) -> None:
        self._api = api
        self.broken = False

    def __getattr__(self, name):
        attr = getattr(self._api, name)
        if not callable(attr) or name == "watch":
            return attr

        async def call(*args, **kwargs):
            if self.broken:
                raise OSError("connection refused")
            return await attr(*args, **kwargs)

        return call


class Recorder:
    """A Controller-protocol controller that records when it runs."""

    name = "recorder"

    def __init__(self) -> None:
        self.spans: list[list[float]] = []

    @property
    def running(self) -> bool:
        return bool(self.spans) and len(self.spans[-1]) == 1

    async def run(self, ctx, stop) -> None:
        self.spans.append([time.monotonic()])
        try:
            await stop.wait()
        finally:
            self.spans[-1].append(time.monotonic())


def test_timings_default_to_kube_controller_manager():
    cfg = LeaderElectionConfig()
    assert (cfg.name, cfg.namespace) == ("kcore-controller-manager", "kube-system")
    assert (cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == (15.0, 10.0, 2.0)
    with pytest.raises(ValueError):
        LeaderElectionConfig(lease_duration=1, renew_deadline=2, retry_period=0.5)


async def test_a_held_lease_is_not_taken_until_it_expires(cluster):
    a = LeaderElector(cluster.api, LeaderElectionConfig(identity="a", **FAST))
    b = LeaderElector(cluster.client(), LeaderElectionConfig(identity="b", **FAST))
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert await a.try_acquire_or_renew()  # renewing our own lease
    lease = await cluster.api.get(
        "coordination.k8s.io/v1", "Lease", "kcore-controller-manager", "kube-system"
    )
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 1
    assert not await b.try_acquire_or_renew()  # a renewal restarts b's wait
    await asyncio.sleep(1.1)  # b has seen the same record for a whole lease duration
    assert await b.try_acquire_or_renew()
    lease = await cluster.api.get(
        "coordination.k8s.io/v1", "Lease", "kcore-controller-manager", "kube-system"
    )
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_only_one_manager_leads_and_the_other_takes_over_when_it_stops_renewing(cluster):
    api_a = Breakable(cluster.client())
    rec_a, rec_b = Recorder(), Recorder()
    a = ControllerManager(
        api_a, [rec_a], leader_election=LeaderElectionConfig(identity="a", **FAST)
    )
    b = ControllerManager(
        cluster.client(), [rec_b], leader_election=LeaderElectionConfig(identity="b", **FAST)
    )
    a.start()
    await eventually(lambda: a.is_leader and rec_a.running)
    b.start()
    try:
        for _ in range(10):  # b keeps campaigning, in vain
            await asyncio.sleep(0.05)
            assert a.is_leader and not b.is_leader and not rec_b.running

        api_a.broken = True  # a can no longer renew
        await eventually(lambda: not rec_a.running, timeout=3)
        await eventually(lambda: b.is_leader and rec_b.running, timeout=5)
        assert not a.is_leader
        # Never both: a stopped (renew deadline) before b started (lease expiry).
        assert rec_a.spans[0][1] < rec_b.spans[0][0]
        assert rec_b.spans[0][0] - rec_a.spans[0][1] > 0.2
    finally:
        await b.stop()
        await a.stop()


async def test_a_cleanly_stopped_leader_releases_the_lease_for_a_quick_takeover(cluster):
    rec_a, rec_b = Recorder(), Recorder()
    slow = dict(lease_duration=10.0, renew_deadline=5.0, retry_period=0.1)
    a = ControllerManager(
        cluster.client(), [rec_a], leader_election=LeaderElectionConfig(identity="a", **slow)
    )
    b = ControllerManager(
        cluster.client(), [rec_b], leader_election=LeaderElectionConfig(identity="b", **slow)
    )
    a.start()
    await eventually(lambda: rec_a.running)
    b.start()
    try:
        await asyncio.sleep(0.3)
        assert not b.is_leader
        started = time.monotonic()
        await a.stop()
        await eventually(lambda: rec_b.running, timeout=3)
        assert time.monotonic() - started < 3  # far less than the 10 s lease
    finally:
        await b.stop()
