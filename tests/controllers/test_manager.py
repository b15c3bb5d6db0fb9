"""The controller manager and the reconcile runtime: error semantics, back-off, crashes."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from kcore.controllers import ControllerManager, Reconciler, split_key
from kcore.errors import PermanentError, TemporaryError
from kcore.interfaces import ControllerContext

from .helpers import eventually


def config_map(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
    }


class ConfigMapWatcher(Reconciler):
    """Records every reconcile of a ConfigMap; names decide what it does."""

    kinds = [("v1", "ConfigMap")]

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: dict[str, list[float]] = {}

    async def reconcile(self, key):
        _, name = split_key(key)
        self.calls.setdefault(name, []).append(time.monotonic())
        if self.cached(key) is None:
            return None
        if name.startswith("bug"):
            raise RuntimeError("a bug in the controller")
        if name.startswith("temporary") and len(self.calls[name]) == 1:
            raise TemporaryError("not yet", retry_after=0.3)
        if name.startswith("permanent"):
            raise PermanentError("this cannot work")
        if name.startswith("again") and len(self.calls[name]) < 3:
            return 0.05
        return None


class Crashing:
    """A Controller-protocol controller that crashes at once, every time."""

    name = "crashing"
    runs = 0

    async def run(self, ctx, stop):
        self.runs += 1
        raise RuntimeError("boom")


@pytest.fixture
async def manager(cluster):
    made = []

    def make(*controllers, **kwargs):
        m = ControllerManager(cluster.api, controllers, leader_election=None, **kwargs)
        m.start()
        made.append(m)
        return m

    yield make
    for m in made:
        await m.stop()


async def test_a_failing_key_backs_off_while_other_keys_and_controllers_go_on(cluster, manager):
    first, second = ConfigMapWatcher("first"), ConfigMapWatcher("second")
    m = manager(first, second)
    await cluster.api.create(config_map("bug"))
    for i in range(5):
        await cluster.api.create(config_map(f"ok-{i}"))
    await eventually(lambda: all(f"ok-{i}" in c.calls for i in range(5) for c in (first, second)))
    # Retried (5 ms, 10 ms, 20 ms ... doubling), not hot-looping.
    await eventually(lambda: len(first.calls["bug"]) >= 6, timeout=20)
    attempts = list(first.calls["bug"])
    elapsed = attempts[-1] - attempts[0]
    # n retries with doubling delays from 5 ms take at least 5 ms * (2**n - 1).
    assert elapsed >= 0.005 * (2 ** (len(attempts) - 1) - 1) * 0.9, (len(attempts), elapsed)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[-1] > 4 * gaps[0] and gaps[-1] >= 0.05, gaps
    assert all(len(first.calls[f"ok-{i}"]) == 1 for i in range(5))
    stats = m.runners["first"].stats
    assert stats.failures >= 4 and "a bug in the controller" in stats.last_error
    # Deleting the object ends the retries: the next reconcile finds it gone.
    await cluster.api.delete("v1", "ConfigMap", "bug", namespace="default")
    await asyncio.sleep(0.3)
    count = len(first.calls["bug"])
    await asyncio.sleep(0.5)
    assert len(first.calls["bug"]) == count


async def test_temporary_permanent_and_requeue_after(cluster, manager):
    watcher = ConfigMapWatcher("watcher")
    manager(watcher)
    for name in ("temporary", "permanent", "again"):
        await cluster.api.create(config_map(name))
    await eventually(lambda: len(watcher.calls.get("temporary", [])) == 2, timeout=3)
    t = watcher.calls["temporary"]
    assert t[1] - t[0] >= 0.28  # retried after its retry_after
    await eventually(lambda: len(watcher.calls.get("again", [])) == 3, timeout=3)
    await asyncio.sleep(0.3)
    assert len(watcher.calls["again"]) == 3
    assert len(watcher.calls["permanent"]) == 1  # no retry loop

    async def warning():
        events, _ = await cluster.api.list("v1", "Event", "default")
        return [e for e in events if e["reason"] == "ReconcileFailed"]

    (event,) = await eventually(warning)
    assert event["type"] == "Warning"
    assert event["involvedObject"]["name"] == "permanent"
    assert event["message"] == "this cannot work"
    assert event["source"]["component"] == "watcher"
    # A change to the object reconciles it again.
    await cluster.api.patch(
        "v1", "ConfigMap", "permanent", {"data": {"x": "y"}}, namespace="default"
    )
    await eventually(lambda: len(watcher.calls["permanent"]) == 2)


async def test_a_crashing_controller_is_restarted_with_back_off_and_others_keep_going(
    cluster, manager
):
    crashing, watcher = Crashing(), ConfigMapWatcher("watcher")
    m = manager(crashing, watcher, restart_backoff=(0.05, 0.2))
    await eventually(lambda: crashing.runs >= 4, timeout=3)
    await cluster.api.create(config_map("ok"))
    await eventually(lambda: "ok" in watcher.calls)
    assert m.restarts["crashing"] >= 3
    assert m.restarts["watcher"] == 0


def test_controller_names_must_be_unique(cluster):
    with pytest.raises(ValueError, match="unique"):
        ControllerManager(cluster.api, [ConfigMapWatcher("x"), ConfigMapWatcher("x")])


async def test_a_reconciler_runs_as_a_plain_controller_with_its_own_informers(cluster):
    watcher = ConfigMapWatcher("alone")
    stop = asyncio.Event()
    task = asyncio.ensure_future(watcher.run(ControllerContext(cluster.api, None), stop))
    try:
        await cluster.api.create(config_map("ok"))
        await eventually(lambda: "ok" in watcher.calls)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
