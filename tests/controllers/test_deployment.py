"""The Deployment controller (with the ReplicaSet controller) against an in-process API.

There is no node agent: pods are objects, made Running and Ready by patching their status,
either one at a time (to check each step of a rollout) or by :func:`auto_ready`."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kcore.controllers import ControllerManager, controller_ref
from kcore.plugins.controllers import kcore_controllers
from kcore.plugins.controllers.deployment import (
    DeploymentController,
    compute_hash,
    equal_ignore_hash,
    fnv32a,
    max_surge,
    max_unavailable,
    resolve_fenceposts,
    safe_encode_string,
)
from kcore.plugins.controllers.replicaset import ReplicaSetController
from kcore.settings import Settings

from .helpers import eventually

NS = "default"
DEPLOY = ("apps/v1", "Deployment")
RS = ("apps/v1", "ReplicaSet")
REVISION = "deployment.kubernetes.io/revision"


def deployment(
    name: str = "web",
    replicas: int = 3,
    image: str = "nginx:1.0",
    *,
    strategy: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        },
        **spec,
    }
    if strategy is not None:
        body["strategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }


def rolling(surge: Any, unavailable: Any) -> dict[str, Any]:
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }


@contextlib.asynccontextmanager
async def running(
    api, *, clock: Callable[[], float] | None = None, resync: float | None = None
) -> AsyncIterator[ControllerManager]:
    dc = DeploymentController()
    dc.resync_period = resync
    manager = ControllerManager(
        api, [ReplicaSetController(), dc], leader_election=None, clock=clock
    )
    manager.start()
    await eventually(lambda: len(manager.runners) == 2)
    try:
        yield manager
    finally:
        await manager.stop()


@pytest.fixture
async def manager(cluster):
    async with running(cluster.api) as m:
        yield m


async def set_image(api, image: str, name: str = "web") -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}
    await api.patch(*DEPLOY, name, patch, "strategic", namespace=NS)


async def scale(api, replicas: int, name: str = "web") -> None:
    await api.patch(*DEPLOY, name, {"spec": {"replicas": replicas}}, namespace=NS)


async def replica_sets(api, name: str = "web") -> list[dict]:
    """The Deployment's ReplicaSets, oldest revision first."""
    d = await api.get(*DEPLOY, name, NS)
    items, _ = await api.list(*RS, NS)
    mine = [rs for rs in items if (controller_ref(rs) or {}).get("uid") == d["metadata"]["uid"]]
    return sorted(mine, key=lambda rs: int(rs["metadata"]["annotations"].get(REVISION, 0)))


async def live_pods(api) -> list[dict]:
    pods, _ = await api.list("v1", "Pod", NS)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def make_ready(api, name: str) -> None:
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    await api.patch("v1", "Pod", name, {"status": status}, namespace=NS, subresource="status")


def is_ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


@contextlib.asynccontextmanager
async def auto_ready(api) -> AsyncIterator[None]:
    """Make every pod Ready soon after it appears (a stand-in for a node agent)."""

    async def loop() -> None:
        while True:
            for pod in await live_pods(api):
                if not is_ready(pod):
                    with contextlib.suppress(Exception):
                        await make_ready(api, pod["metadata"]["name"])
            await asyncio.sleep(0.02)

    task = asyncio.ensure_future(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def status_of(api, name: str = "web") -> dict:
    return (await api.get(*DEPLOY, name, NS)).get("status") or {}


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or () if c["type"] == type_), {})


async def wait_status(api, name: str = "web", timeout: float = 10.0, **want: Any) -> dict:
    async def check():
        d = await api.get(*DEPLOY, name, NS)
        st = d.get("status") or {}
        got = {k: st.get(k) or 0 for k in want}
        if got == {k: v or 0 for k, v in want.items()}:
            return d
        return None

    return await eventually(check, timeout=timeout)


async def wait_complete(api, name: str = "web", timeout: float = 10.0) -> dict:
    """Until the rollout is done as ``kubectl rollout status`` sees it."""

    async def check():
        d = await api.get(*DEPLOY, name, NS)
        st, replicas = d.get("status") or {}, d["spec"]["replicas"]
        if (
            (st.get("observedGeneration") or 0) >= d["metadata"]["generation"]
            and (st.get("updatedReplicas") or 0) == replicas
            and (st.get("replicas") or 0) == replicas
            and (st.get("availableReplicas") or 0) == replicas
            and condition(st, "Progressing").get("reason") == "NewReplicaSetAvailable"
        ):
            return d
        return None

    return await eventually(check, timeout=timeout)


async def messages(api, reason: str) -> list[str]:
    items, _ = await api.list("v1", "Event", NS)
    return [e["message"] for e in items if e["reason"] == reason]


# -- pure functions --------------------------------------------------------------------------


def test_the_plugin_contributes_the_deployment_controller():
    assert "deployment-controller" in [c.name for c in kcore_controllers(Settings())]


def test_hash_is_fnv32a_spelled_with_safe_encode_string():
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C  # the FNV-1a test vector
    # '0' is 48, 48 % 27 = 21: the 22nd of "bcdfghjklmnpqrstvwxz2456789"
    assert safe_encode_string("0123456789") == "456789bcdf"
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    h = compute_hash(template)
    assert re.fullmatch(r"[456789bcdf]{1,10}", h)  # as in "web-7c5ddbdf54"
    assert compute_hash(copy.deepcopy(template)) == h
    assert compute_hash(template, 0) != h != compute_hash(template, 1)
    other = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    assert compute_hash(other) != h


def test_equal_ignore_hash():
    a = {"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}}, "spec": {"a": 1}}
    b = {"metadata": {"labels": {"app": "x"}}, "spec": {"a": 1}}
    assert equal_ignore_hash(a, b)
    assert not equal_ignore_hash(a, {"metadata": {"labels": {"app": "y"}}, "spec": {"a": 1}})
    assert equal_ignore_hash(
        {"metadata": {"labels": {"pod-template-hash": "z"}, "annotations": {}}, "spec": {}},
        {"metadata": {}, "spec": {}},
    )


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", "25%", 3, (1, 0)),  # surge rounds up, unavailable down
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 10, (3, 2)),
        (0, 0, 5, (0, 1)),  # both 0: one may be unavailable
        ("0%", "0%", 5, (0, 1)),
        (2, "50%", 5, (2, 2)),
        ("10%", 0, 1, (1, 0)),
    ],
)
def test_fenceposts(surge, unavailable, replicas, expected):
    assert resolve_fenceposts(surge, unavailable, replicas) == expected
    d = deployment(replicas=replicas, strategy=rolling(surge, unavailable))
    assert (max_surge(d), max_unavailable(d)) == expected
    assert max_unavailable(deployment(replicas=2, strategy=rolling(0, 5))) == 2  # capped
    assert max_surge(deployment(strategy={"type": "Recreate"})) == 0


# -- against the API ---------------------------------------------------------------------------


async def test_create_makes_a_replica_set_named_by_the_template_hash(cluster, manager):
    api = cluster.api
    d = await api.create(deployment("web", 3))
    (rs,) = await eventually(lambda: replica_sets(api))
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": h}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["replicas"] == 3
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": d["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    annotations = rs["metadata"]["annotations"]
    assert annotations[REVISION] == "1"
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "4"  # 3 + 25% rounded up
    template = (await api.get(*DEPLOY, "web", NS))["spec"]["template"]
    assert h == compute_hash(template)

    pods = await eventually(lambda: _n(live_pods(api), 3))
    for p in pods:
        assert p["metadata"]["name"].startswith(f"web-{h}-")
        assert p["metadata"]["labels"]["pod-template-hash"] == h
    st = (await wait_status(api, replicas=3, updatedReplicas=3, availableReplicas=0))["status"]
    assert st["unavailableReplicas"] == 3
    assert condition(st, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert condition(st, "Progressing")["status"] == "True"

    for p in pods:
        await make_ready(api, p["metadata"]["name"])
    d = await wait_complete(api)
    st = d["status"]
    assert (st["readyReplicas"], st["availableReplicas"], st.get("unavailableReplicas") or 0) == (
        3,
        3,
        0,
    )
    assert st["observedGeneration"] == 1
    assert condition(st, "Available") | {"lastUpdateTime": 0, "lastTransitionTime": 0} == {
        "type": "Available",
        "status": "True",
        "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
        "lastUpdateTime": 0,
        "lastTransitionTime": 0,
    }
    progressing = condition(st, "Progressing")
    assert progressing["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
    assert d["metadata"]["annotations"][REVISION] == "1"
    assert await messages(api, "ScalingReplicaSet") == [
        f"Scaled up replica set web-{h} from 0 to 3"
    ]


async def _n(coro, count: int):
    items = await coro
    return items if len(items) == count else None


async def test_scale_up_and_down(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 2))
    async with auto_ready(api):
        await wait_complete(api)
        await scale(api, 5)
        await wait_complete(api)
        (rs,) = await replica_sets(api)
        assert rs["spec"]["replicas"] == 5
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "7"
        await scale(api, 1)
        await wait_complete(api)
        await eventually(lambda: _n(live_pods(api), 1))
    name = rs["metadata"]["name"]
    assert await messages(api, "ScalingReplicaSet") == [
        f"Scaled up replica set {name} from 0 to 2",
        f"Scaled up replica set {name} from 2 to 5",
        f"Scaled down replica set {name} from 5 to 1",
    ]
    assert (await status_of(api))["observedGeneration"] == 3


class Trace:
    """Every ReplicaSet and pod change, in resourceVersion order, from two watches."""

    def __init__(self, api) -> None:
        self.api = api
        self.events: list[tuple[int, str, str, dict]] = []
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        _, rv = await self.api.list("v1", "Pod", NS)
        for kind in (("v1", "Pod"), RS):
            self._tasks.append(asyncio.ensure_future(self._watch(kind, rv)))

    async def _watch(self, kind, rv) -> None:
        async for type_, obj in self.api.watch(*kind, NS, resource_version=rv):
            if type_ in ("ADDED", "MODIFIED", "DELETED"):
                self.events.append((int(obj["metadata"]["resourceVersion"]), kind[1], type_, obj))

    async def stop(self) -> None:
        """Once the watches have caught up with the current ReplicaSets and pods."""
        pods, _ = await self.api.list("v1", "Pod", NS)
        rss, _ = await self.api.list(*RS, NS)
        latest = max(int(o["metadata"]["resourceVersion"]) for o in [*pods, *rss])
        await eventually(lambda: any(rv >= latest for rv, *_ in self.events))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def states(self, rss: dict[str, dict], pods: dict[str, dict]):
        """Yield ``(replica sets, pods)`` after each change, starting from the given ones."""
        rss, pods = dict(rss), dict(pods)
        for _, kind, type_, obj in sorted(self.events, key=lambda e: e[0]):
            table = pods if kind == "Pod" else rss
            name = obj["metadata"]["name"]
            if type_ == "DELETED" or obj["metadata"].get("deletionTimestamp"):
                table.pop(name, None)
            else:
                table[name] = obj
            yield rss, pods


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [(4, 1, 0), (4, 0, 1), (5, "25%", "25%")],  # the last: surge 2, unavailable 1
)
async def test_rolling_update_stays_within_max_surge_and_max_unavailable(
    cluster, manager, replicas, surge, unavailable
):
    api = cluster.api
    d = deployment("web", replicas, strategy=rolling(surge, unavailable))
    max_pods, unavailable_n = replicas + max_surge(d), max_unavailable(d)
    await api.create(d)
    async with auto_ready(api):
        await wait_complete(api)
    rss = {rs["metadata"]["name"]: rs for rs in await replica_sets(api)}
    pods = {p["metadata"]["name"]: p for p in await live_pods(api)}
    trace = Trace(api)
    await trace.start()
    await set_image(api, "nginx:2.0")

    async def not_ready_new_pod():
        for p in await live_pods(api):
            image = p["spec"]["containers"][0]["image"]
            if image == "nginx:2.0" and not is_ready(p):
                return p
        return None

    for _ in range(replicas):  # new pods turn Ready one at a time; the controllers act between
        pod = await eventually(not_ready_new_pod)
        await make_ready(api, pod["metadata"]["name"])
    d = await wait_complete(api)
    await trace.stop()
    totals, readies = [], []
    for rs_state, pod_state in trace.states(rss, pods):
        total = sum(rs["spec"]["replicas"] for rs in rs_state.values())
        assert total <= max_pods, f"{total} replicas wanted, at most {max_pods} allowed"
        ready = sum(1 for p in pod_state.values() if is_ready(p))
        assert ready >= replicas - unavailable_n, f"only {ready} pods ready"
        assert len(pod_state) <= max_pods
        totals.append(total)
        readies.append(ready)
    assert len(totals) > 2 * replicas
    assert max(totals) == max_pods  # the surge is used at once
    if max_pods == replicas:  # no surge: only going below the wanted availability moves on
        assert min(readies) == replicas - unavailable_n
    old, new = await replica_sets(api)
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == replicas
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert d["metadata"]["annotations"][REVISION] == "2"
    assert condition(d["status"], "Available")["status"] == "True"


async def test_recreate_removes_every_old_pod_before_creating_new_ones(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 3, strategy={"type": "Recreate"}))
    async with auto_ready(api):
        await wait_complete(api)
    (old,) = await replica_sets(api)
    rss = {old["metadata"]["name"]: old}
    pods = {p["metadata"]["name"]: p for p in await live_pods(api)}
    trace = Trace(api)
    await trace.start()
    await set_image(api, "nginx:2.0")
    async with auto_ready(api):
        await wait_complete(api)
    await trace.stop()
    old_prefix = old["metadata"]["name"] + "-"
    new_seen = False
    for rs_state, pod_state in trace.states(rss, pods):
        old_pods = [n for n in pod_state if n.startswith(old_prefix)]
        new_pods = [n for n in pod_state if not n.startswith(old_prefix)]
        if len(rs_state) > 1:
            assert not old_pods, "the new ReplicaSet came while old pods were there"
            new_seen = True
        assert not (old_pods and new_pods)
    assert new_seen
    old, new = await replica_sets(api)
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 3)
    assert await messages(api, "ScalingReplicaSet") == [
        f"Scaled up replica set {old['metadata']['name']} from 0 to 3",
        f"Scaled down replica set {old['metadata']['name']} from 3 to 0",
        f"Scaled up replica set {new['metadata']['name']} from 0 to 3",
    ]


async def watch_conditions(api, out: list[str]) -> None:
    _, rv = await api.list(*DEPLOY, NS)
    async for _, obj in api.watch(*DEPLOY, NS, resource_version=rv):
        reason = condition(obj.get("status") or {}, "Progressing").get("reason")
        if reason and (not out or out[-1] != reason):
            out.append(reason)


async def test_pause_holds_the_template_but_not_scaling_and_resume_rolls_out(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 2))
    async with auto_ready(api):
        await wait_complete(api)
        reasons: list[str] = []
        watcher = asyncio.ensure_future(watch_conditions(api, reasons))
        await asyncio.sleep(0.05)
        await api.patch(*DEPLOY, "web", {"spec": {"paused": True}}, namespace=NS)
        st = await eventually(
            lambda: _where(
                status_of(api),
                lambda s: condition(s, "Progressing")["reason"] == "DeploymentPaused",
            )
        )
        assert condition(st, "Progressing")["status"] == "Unknown"
        assert condition(st, "Progressing")["message"] == "Deployment is paused"
        await set_image(api, "nginx:2.0")
        await scale(api, 4)  # scaling still works while paused
        await wait_status(api, replicas=4, availableReplicas=4, observedGeneration=4)
        (rs,) = await replica_sets(api)  # no new ReplicaSet
        assert rs["spec"]["replicas"] == 4
        assert rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.0"

        await api.patch(*DEPLOY, "web", {"spec": {"paused": False}}, namespace=NS)
        d = await wait_complete(api)
        await eventually(lambda: reasons[-1] == "NewReplicaSetAvailable")  # the watch caught up
        watcher.cancel()
    old, new = await replica_sets(api)
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2.0"
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 4)
    assert d["metadata"]["annotations"][REVISION] == "2"
    paused, resumed = reasons.index("DeploymentPaused"), reasons.index("DeploymentResumed")
    assert paused < resumed < len(reasons) - 1


async def _where(coro, predicate):
    value = await coro
    return value if predicate(value) else None


async def rollback(api, to_revision: int | None = None, name: str = "web") -> None:
    """What ``kubectl rollout undo`` (1.32) does: a JSON patch of the old ReplicaSet's
    template (without the hash label) and annotations into the Deployment."""
    d = await api.get(*DEPLOY, name, NS)
    rss = await replica_sets(api, name)
    if to_revision is None:
        target = rss[-2]
    else:
        (target,) = [
            rs for rs in rss if rs["metadata"]["annotations"][REVISION] == str(to_revision)
        ]
    template = copy.deepcopy(target["spec"]["template"])
    del template["metadata"]["labels"]["pod-template-hash"]
    skip = {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
    annotations = {k: v for k, v in d["metadata"]["annotations"].items() if k in skip}
    annotations |= {k: v for k, v in target["metadata"]["annotations"].items() if k not in skip}
    ops = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    await api.patch(*DEPLOY, name, ops, "json", namespace=NS)


async def test_rollback_reuses_the_old_replica_set_with_the_next_revision(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 2))
    async with auto_ready(api):
        await wait_complete(api)
        await set_image(api, "nginx:2.0")
        await wait_complete(api)
        first, second = await replica_sets(api)
        await rollback(api)
        d = await wait_complete(api)
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.0"
        rss = await replica_sets(api)
        assert [rs["metadata"]["name"] for rs in rss] == [
            second["metadata"]["name"],
            first["metadata"]["name"],
        ]  # no third ReplicaSet: the first is back, as revision 3
        reused = rss[-1]
        assert reused["metadata"]["annotations"][REVISION] == "3"
        assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
        assert reused["spec"]["replicas"] == 2 and rss[0]["spec"]["replicas"] == 0
        assert d["metadata"]["annotations"][REVISION] == "3"
        for p in await eventually(lambda: _n(live_pods(api), 2)):
            assert p["spec"]["containers"][0]["image"] == "nginx:1.0"

        await rollback(api, to_revision=2)  # and forward again
        d = await wait_complete(api)
        assert d["metadata"]["annotations"][REVISION] == "4"
        rs = (await replica_sets(api))[-1]
        assert rs["metadata"]["name"] == second["metadata"]["name"]
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"


async def test_revision_history_limit_deletes_the_oldest_idle_replica_sets(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 1, revisionHistoryLimit=1))
    async with auto_ready(api):
        await wait_complete(api)
        for version in ("2", "3", "4"):
            await set_image(api, f"nginx:{version}.0")
            await wait_complete(api)

        async def two_left():
            rss = await replica_sets(api)
            return rss if len(rss) == 2 else None

        old, new = await eventually(two_left)
    assert old["metadata"]["annotations"][REVISION] == "3"
    assert new["metadata"]["annotations"][REVISION] == "4"
    assert old["spec"]["replicas"] == 0


async def test_progress_deadline_exceeded_with_a_controlled_clock(cluster):
    api = cluster.api
    now = [1_800_000_000.0]
    async with running(api, clock=lambda: now[0]) as m:
        await api.create(deployment("web", 2, progressDeadlineSeconds=30))
        await wait_status(api, replicas=2, updatedReplicas=2)
        st = await status_of(api)
        rs_name = (await replica_sets(api))[0]["metadata"]["name"]
        assert condition(st, "Progressing")["lastUpdateTime"] == "2027-01-15T08:00:00Z"
        runner = m.runners["deployment-controller"]

        now[0] += 29  # not yet
        runner.queue.add(f"{NS}/web")
        await asyncio.sleep(0.2)
        assert condition(await status_of(api), "Progressing")["status"] == "True"

        now[0] += 2
        runner.queue.add(f"{NS}/web")
        st = await eventually(
            lambda: _where(
                status_of(api), lambda s: condition(s, "Progressing")["status"] == "False"
            )
        )
        cond = condition(st, "Progressing")
        assert cond["reason"] == "ProgressDeadlineExceeded"
        assert cond["message"] == f'ReplicaSet "{rs_name}" has timed out progressing.'
        assert cond["lastTransitionTime"] == "2027-01-15T08:00:31Z"
        assert condition(st, "Available")["status"] == "False"

        pods = await live_pods(api)  # progress after the deadline counts again
        for p in pods:
            await make_ready(api, p["metadata"]["name"])
        d = await wait_complete(api)
        assert condition(d["status"], "Progressing")["status"] == "True"


async def test_adopts_a_matching_orphan_replica_set_and_ignores_others(cluster, manager):
    api = cluster.api
    orphan = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-old", "namespace": NS, "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:0.9"}]},
            },
        },
    }
    foreign = copy.deepcopy(orphan)
    foreign["metadata"]["name"] = "web-foreign"
    foreign["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "x",
            "uid": "u-x",
            "controller": True,
        }
    ]
    foreign["spec"]["replicas"] = 0
    await api.create(orphan)
    theirs = await api.create(foreign)
    d = await api.create(deployment("web", 2, strategy=rolling(1, 0)))
    async with auto_ready(api):
        await wait_complete(api)
    adopted = await api.get(*RS, "web-old", NS)
    assert controller_ref(adopted)["uid"] == d["metadata"]["uid"]
    assert adopted["spec"]["replicas"] == 0  # an old ReplicaSet, rolled over
    still = await api.get(*RS, "web-foreign", NS)
    for field in ("ownerReferences", "annotations", "labels"):  # its status is the RS controller's
        assert still["metadata"].get(field) == theirs["metadata"].get(field)
    assert still["spec"] == theirs["spec"]
    old, new = await replica_sets(api)
    assert old["metadata"]["name"] == "web-old"
    assert new["metadata"]["annotations"][REVISION] == "1"

    await api.patch(*RS, "web-old", {"metadata": {"labels": {"app": "gone"}}}, namespace=NS)

    async def released():
        rs = await api.get(*RS, "web-old", NS)
        return not rs["metadata"].get("ownerReferences") and rs

    await eventually(released)  # it no longer matches: let go, not deleted
    assert [rs["metadata"]["name"] for rs in await replica_sets(api)] == [new["metadata"]["name"]]


async def test_a_hash_collision_bumps_collision_count(cluster, manager):
    api = cluster.api
    d = await api.create(deployment("web", 1, paused=True))  # paused: no ReplicaSet yet
    taken = f"web-{compute_hash(d['spec']['template'])}"
    squatter = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": taken, "namespace": NS, "labels": {"app": "other"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "other"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await api.create(squatter)
    await api.patch(*DEPLOY, "web", {"spec": {"paused": False}}, namespace=NS)
    (rs,) = await eventually(lambda: replica_sets(api))
    assert (await status_of(api))["collisionCount"] == 1
    assert rs["metadata"]["name"] == f"web-{compute_hash(d['spec']['template'], 1)}" != taken
    assert (await api.get(*RS, taken, NS))["spec"]["template"]["metadata"]["labels"] == {
        "app": "other"
    }


async def test_scaling_mid_rollout_is_proportional(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 10, strategy=rolling(3, 2)))
    async with auto_ready(api):
        await wait_complete(api)
    await set_image(api, "nginx:broken")  # its pods never become Ready

    async def sizes(want):
        rss = await replica_sets(api)
        got = [rs["spec"]["replicas"] for rs in rss]
        return rss if got == want else None

    await eventually(lambda: sizes([8, 5]))  # 10 + 3 surge; 10 - 2 unavailable stay
    await scale(api, 15)
    old, new = await eventually(lambda: sizes([11, 7]))  # 13 -> 18, in proportion
    for rs in (old, new):
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "15"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "18"
    await scale(api, 5)
    # 18 -> 8 (5 + 3 surge): 11 * 8/18 rounds to 5, 7 * 8/18 to 3; then the rollout goes
    # on: with 5 available old pods, 2 may go (5 - 2 unavailable = 3 must stay).
    await eventually(lambda: sizes([3, 5]))
    scaled = await messages(api, "ScalingReplicaSet")
    assert f"Scaled down replica set {old['metadata']['name']} from 11 to 5" in scaled
    assert f"Scaled down replica set {new['metadata']['name']} from 7 to 3" in scaled


async def test_converged_deployments_get_no_writes_on_resync(cluster):
    api = cluster.api
    async with running(api, resync=0.1) as m, auto_ready(api):
        await api.create(deployment("web", 3))
        await api.create(deployment("re", 2, strategy={"type": "Recreate"}))
        await api.create(deployment("held", 2))
        for name in ("web", "re", "held"):
            await wait_complete(api, name)
        await set_image(api, "nginx:2.0")
        await set_image(api, "nginx:2.0", "re")
        await api.patch(*DEPLOY, "held", {"spec": {"paused": True}}, namespace=NS)
        await set_image(api, "nginx:2.0", "held")
        await wait_complete(api)
        await wait_complete(api, "re")
        await wait_status(api, "held", observedGeneration=3)
        await asyncio.sleep(0.3)
        runner = m.runners["deployment-controller"]
        writes, reconciles = runner.stats.writes, runner.stats.reconciles
        revision = await cluster.store.current_revision()
        await asyncio.sleep(0.6)
        assert runner.stats.reconciles >= reconciles + 3
        assert runner.stats.writes == writes
        assert await cluster.store.current_revision() == revision


async def test_restart_annotation_rolls_out_a_new_replica_set(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 2))
    async with auto_ready(api):
        await wait_complete(api)
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}
                    }
                }
            }
        }
        await api.patch(*DEPLOY, "web", patch, "strategic", namespace=NS)
        await wait_complete(api)
    old, new = await replica_sets(api)
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 2
    assert "kubectl.kubernetes.io/restartedAt" in new["spec"]["template"]["metadata"]["annotations"]


async def test_change_cause_is_copied_to_the_new_replica_set(cluster, manager):
    api = cluster.api
    d = deployment("web", 1)
    d["metadata"]["annotations"] = {
        "kubernetes.io/change-cause": "first",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    await api.create(d)
    (rs,) = await eventually(lambda: replica_sets(api))
    annotations = rs["metadata"]["annotations"]
    assert annotations["kubernetes.io/change-cause"] == "first"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations


async def test_min_ready_seconds_goes_to_the_replica_set_without_a_new_revision(cluster, manager):
    api = cluster.api
    await api.create(deployment("web", 1, minReadySeconds=5))
    (rs,) = await eventually(lambda: replica_sets(api))
    assert rs["spec"]["minReadySeconds"] == 5
    async with auto_ready(api):
        st = (await wait_status(api, readyReplicas=1, availableReplicas=0))["status"]
        assert condition(st, "Available")["status"] == "False"  # ready, not yet for 5 s
        await api.patch(*DEPLOY, "web", {"spec": {"minReadySeconds": 0}}, namespace=NS)
        await wait_complete(api)
    (same,) = await replica_sets(api)
    assert same["metadata"]["name"] == rs["metadata"]["name"]
    assert (same["spec"].get("minReadySeconds") or 0) == 0
    assert same["metadata"]["annotations"][REVISION] == "1"
