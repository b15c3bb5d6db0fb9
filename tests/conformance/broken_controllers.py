"""Controllers for testing the controller conformance suite itself.

:class:`FleetController` is a small, correct controller with a scenario: a *fleet* is a
ConfigMap labelled ``fleet.kcore.test/fleet`` whose ``data.replicas`` says how many Secrets
``<fleet>-<i>`` it wants (each controlled by the fleet, ``data.index`` = ``i``); it
records how many it has in the annotation ``fleet.kcore.test/ready``. Every other class
here breaks one promise the suite checks, so that ``test_suite_catches_broken_controllers``
can show the suite notices.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from kcore.conformance.suites.controllers import OwnerDeletion, Scenario, ScenarioEnv
from kcore.controllers import (
    BY_CONTROLLER,
    DELETED,
    MODIFIED,
    Reconciler,
    ResourceEvent,
    being_deleted,
    controller_ref,
    owner_reference,
)
from kcore.errors import AlreadyExists, KcoreError, NotFound
from kcore.plugins.controllers.garbagecollector import GarbageCollector

CM = ("v1", "ConfigMap")
SECRET = ("v1", "Secret")
FLEET_LABEL = "fleet.kcore.test/fleet"
NAME_LABEL = "fleet.kcore.test/name"
READY = "fleet.kcore.test/ready"
FLEET = "fleet"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def replicas_of(fleet: dict[str, Any]) -> int:
    return int((fleet.get("data") or {}).get("replicas") or 0)


def child(fleet: dict[str, Any], index: int) -> dict[str, Any]:
    m = _meta(fleet)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{m['name']}-{index}",
            "namespace": m.get("namespace"),
            "labels": {NAME_LABEL: m["name"]},
            "ownerReferences": [
                owner_reference({**fleet, "apiVersion": "v1", "kind": "ConfigMap"})
            ],
        },
        "type": "Opaque",
        "data": {"index": b64(str(index))},
    }


class FleetController(Reconciler):
    """The honest one."""

    name = "fleet-controller"
    kinds = (CM, SECRET)

    def conformance(self) -> Scenario:
        return fleet_scenario()

    def is_fleet(self, obj: dict[str, Any] | None) -> bool:
        return obj is not None and (_meta(obj).get("labels") or {}).get(FLEET_LABEL) == "true"

    def children(self, fleet: dict[str, Any]) -> list[dict[str, Any]]:
        return self.informers.by_index(*SECRET, BY_CONTROLLER, _meta(fleet).get("uid", ""))

    async def reconcile(self, key: str) -> float | None:
        fleet = self.cached(key)
        if not self.is_fleet(fleet) or being_deleted(fleet):
            return None
        assert fleet is not None
        fleet = {**fleet, "apiVersion": "v1", "kind": "ConfigMap"}
        want = {f"{_meta(fleet)['name']}-{i}": child(fleet, i) for i in range(replicas_of(fleet))}
        have = {_meta(c)["name"]: c for c in self.children(fleet) if not being_deleted(c)}
        await self.sync_children(fleet, want, have)
        await self.write_status(fleet, len(want))
        return None

    async def sync_children(
        self, fleet: dict[str, Any], want: dict[str, Any], have: dict[str, Any]
    ) -> None:
        namespace = _meta(fleet).get("namespace")
        for name, obj in want.items():
            if name not in have:
                try:
                    await self.api.create(obj)
                except AlreadyExists:
                    pass
            elif (have[name].get("data") or {}) != obj["data"]:
                await self.api.update({**have[name], "data": obj["data"]})
        for name in have:
            if name not in want:
                try:
                    await self.api.delete("v1", "Secret", name, namespace)
                except NotFound:
                    pass

    async def write_status(self, fleet: dict[str, Any], ready: int) -> None:
        if (_meta(fleet).get("annotations") or {}).get(READY) != str(ready):
            m = _meta(fleet)
            await self.api.patch(
                "v1",
                "ConfigMap",
                m["name"],
                {"metadata": {"annotations": {READY: str(ready)}}},
                namespace=m.get("namespace"),
            )


# -- the scenario ------------------------------------------------------------------------------


def fleet_object(env: ScenarioEnv, replicas: int, name: str = FLEET) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": env.namespace, "labels": {FLEET_LABEL: "true"}},
        "data": {"replicas": str(replicas)},
    }


async def seed(env: ScenarioEnv) -> None:
    env.data["fleet"] = await env.api.create(fleet_object(env, 3))


async def fleet_children(env: ScenarioEnv) -> list[dict[str, Any]]:
    fleet = await env.get(*CM, FLEET)
    if fleet is None:
        return []
    uid = fleet["metadata"]["uid"]
    return [s for s in await env.list(*SECRET) if (controller_ref(s) or {}).get("uid") == uid]


async def check(env: ScenarioEnv) -> list[str]:
    fleet = await env.get(*CM, FLEET)
    if fleet is None:
        return ["the fleet is gone"]
    replicas = replicas_of(fleet)
    problems = []
    children = {c["metadata"]["name"]: c for c in await fleet_children(env)}
    want = {f"{FLEET}-{i}": b64(str(i)) for i in range(replicas)}
    if sorted(children) != sorted(want):
        problems.append(f"children {sorted(children)}, want {sorted(want)}")
    for name, index in want.items():
        got = children.get(name)
        if got is not None and (got.get("data") or {}).get("index") != index:
            problems.append(f"{name} has data {got.get('data')}")
        if got is not None and got["metadata"].get("deletionTimestamp"):
            problems.append(f"{name} is being deleted")
    ready = (fleet["metadata"].get("annotations") or {}).get(READY)
    if ready != str(replicas):
        problems.append(f"annotation {READY}={ready!r}, want {replicas}")
    return problems


async def _fleet(env: ScenarioEnv) -> dict[str, Any]:
    fleet = await env.get(*CM, FLEET)
    assert fleet is not None
    return fleet


async def start_missing(env: ScenarioEnv) -> None:
    await env.api.create(child(await _fleet(env), 1))


async def start_extra(env: ScenarioEnv) -> None:
    fleet = await _fleet(env)
    for i in range(6):
        await env.api.create(child(fleet, i))


async def start_half_updated(env: ScenarioEnv) -> None:
    fleet = await _fleet(env)
    for i in range(2):
        obj = child(fleet, i)
        obj["data"] = {"index": b64("stale")}
        await env.api.create(obj)


async def delete_a_child(env: ScenarioEnv) -> None:
    await env.api.delete(*SECRET, f"{FLEET}-1", env.namespace)


async def change_a_child(env: ScenarioEnv) -> None:
    patch = {"data": {"index": b64("changed")}}
    await env.api.patch(*SECRET, f"{FLEET}-2", patch, namespace=env.namespace)


async def foreign(env: ScenarioEnv) -> list[dict[str, Any]]:
    other = await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "someone-else", "namespace": env.namespace},
        }
    )
    obj = child(other, 7)
    obj["metadata"]["name"] = f"{FLEET}-7"
    obj["metadata"]["labels"] = {NAME_LABEL: FLEET}
    return [await env.api.create(obj)]


async def flip(env: ScenarioEnv, i: int) -> None:
    replicas = "4" if i % 2 == 0 else "3"
    await env.api.patch(*CM, FLEET, {"data": {"replicas": replicas}}, namespace=env.namespace)


async def owner(env: ScenarioEnv) -> dict[str, Any]:
    return await _fleet(env)


async def dependents(env: ScenarioEnv) -> list[dict[str, Any]]:
    uid = env.data["fleet"]["metadata"]["uid"]
    return [
        s
        for s in await env.list(*SECRET)
        if any(r.get("uid") == uid for r in s["metadata"].get("ownerReferences") or ())
    ]


async def summary(env: ScenarioEnv) -> Any:
    fleet = await _fleet(env)
    children = sorted(
        (c["metadata"]["name"], c["data"]["index"]) for c in await fleet_children(env)
    )
    return children, (fleet["metadata"].get("annotations") or {}).get(READY)


def fleet_scenario() -> Scenario:
    return Scenario(
        name="fleet",
        seed=seed,
        check=check,
        starts={
            "missing": start_missing,
            "extra": start_extra,
            "half-updated": start_half_updated,
        },
        perturbations={"delete-a-child": delete_a_child, "change-a-child": change_a_child},
        foreign=foreign,
        flip=flip,
        flip_cost=4,
        owner=OwnerDeletion(owner=owner, dependents=dependents),
        summary=summary,
        companions=lambda: [GarbageCollector()],
    )


# -- the broken ones -------------------------------------------------------------------------


class ChattyFleet(FleetController):
    """Writes on every reconcile (a "synced" Event), converged or not."""

    async def reconcile(self, key: str) -> float | None:
        result = await super().reconcile(key)
        fleet = self.cached(key)
        if self.is_fleet(fleet):
            assert fleet is not None
            await self.recorder.event(
                {**fleet, "apiVersion": "v1", "kind": "ConfigMap"}, "Normal", "Synced", "in sync"
            )
        return result


class GrabbyFleet(FleetController):
    """Takes over Secrets that carry its fleet's name, whoever controls them."""

    def children(self, fleet: dict[str, Any]) -> list[dict[str, Any]]:
        name = _meta(fleet)["name"]
        return [
            s
            for s in self.informers.list(*SECRET, _meta(fleet).get("namespace"))
            if (_meta(s).get("labels") or {}).get(NAME_LABEL) == name
        ]


class ForgetfulFleet(FleetController):
    """Creates each child once per term: one deleted under it never comes back."""

    async def setup(self) -> None:
        self.made: set[str] = set()

    async def sync_children(
        self, fleet: dict[str, Any], want: dict[str, Any], have: dict[str, Any]
    ) -> None:
        want = {k: v for k, v in want.items() if k in have or k not in self.made}
        await super().sync_children(fleet, want, have)
        self.made.update(want)


class ImpatientFleet(FleetController):
    """Retries a failed write at once, in a loop, instead of backing off."""

    async def sync_children(
        self, fleet: dict[str, Any], want: dict[str, Any], have: dict[str, Any]
    ) -> None:
        for _ in range(1000):
            try:
                return await super().sync_children(fleet, want, have)
            except KcoreError:
                continue


class FixedRetryFleet(FleetController):
    """Swallows a failed write and comes back after one second, every time."""

    async def reconcile(self, key: str) -> float | None:
        try:
            return await super().reconcile(key)
        except KcoreError:
            return 1.0


class RestoringFleet(FleetController):
    """Puts back a deleted child that its fleet wanted when last seen, without asking
    whether the fleet still exists."""

    async def setup(self) -> None:
        self.wanted: dict[str, int] = {}
        self.deleted: dict[str, dict[str, Any]] = {}

    def observe(self, event: ResourceEvent) -> None:
        if (event.api_version, event.kind) == CM and self.is_fleet(event.obj):
            self.wanted[event.key] = replicas_of(event.obj)
        elif event.type == DELETED and (event.api_version, event.kind) == SECRET:
            ref = controller_ref(event.obj)
            index = base64.b64decode((event.obj.get("data") or {}).get("index", "")).decode()
            fleet = f"{event.namespace}/{(ref or {}).get('name')}"
            if ref is not None and index.isdigit() and int(index) < self.wanted.get(fleet, 0):
                self.queue.add(f"restore/{event.name}")
                self.deleted[event.name] = event.obj

    async def reconcile(self, key: str) -> float | None:
        if key.startswith("restore/"):
            obj = self.deleted.pop(key.removeprefix("restore/"), None)
            if obj is None:
                return None
            keep = ("name", "namespace", "labels", "ownerReferences")
            meta = {k: v for k, v in obj["metadata"].items() if k in keep}
            try:
                await self.api.create(
                    {**obj, "apiVersion": "v1", "kind": "Secret", "metadata": meta}
                )
            except AlreadyExists:
                pass
            return None
        return await super().reconcile(key)


class AmnesiacFleet(FleetController):
    """Marks a fleet done before its writes and keeps the marks across terms: a restart
    in the middle leaves the fleet half made."""

    def __init__(self) -> None:
        self.done: set[str] = set()  # not reset by setup(): that is the fault

    def observe(self, event: ResourceEvent) -> None:
        if event.type in (MODIFIED, DELETED):
            obj = event.obj
            if (event.api_version, event.kind) == CM:
                self.done.discard(event.key)
            else:
                ref = controller_ref(obj)
                if ref is not None:
                    self.done.discard(f"{_meta(obj).get('namespace')}/{ref.get('name')}")

    async def reconcile(self, key: str) -> float | None:
        if key in self.done:
            return None
        self.done.add(key)
        try:
            return await super().reconcile(key)
        except Exception:
            self.done.discard(key)
            raise


class StampingFleet(FleetController):
    """Stamps its own identity on the fleet: two copies take turns for ever."""

    def __init__(self) -> None:
        self.identity = uuid.uuid4().hex

    async def write_status(self, fleet: dict[str, Any], ready: int) -> None:
        await super().write_status(fleet, ready)
        m = _meta(fleet)
        if (m.get("annotations") or {}).get("fleet.kcore.test/by") != self.identity:
            await self.api.patch(
                "v1",
                "ConfigMap",
                m["name"],
                {"metadata": {"annotations": {"fleet.kcore.test/by": self.identity}}},
                namespace=m.get("namespace"),
            )


class RebuildingFleet(FleetController):
    """Deletes and recreates every child whenever the wanted number changes."""

    async def sync_children(
        self, fleet: dict[str, Any], want: dict[str, Any], have: dict[str, Any]
    ) -> None:
        stamp = str(replicas_of(fleet))
        for obj in want.values():
            obj["metadata"].setdefault("annotations", {})["fleet.kcore.test/for"] = stamp
        stale = [
            n
            for n, c in have.items()
            if (_meta(c).get("annotations") or {}).get("fleet.kcore.test/for") not in (None, stamp)
        ]
        namespace = _meta(fleet).get("namespace")
        if stale:
            for name in have:
                try:
                    await self.api.delete("v1", "Secret", name, namespace)
                except NotFound:
                    pass
            have = {}
        await super().sync_children(fleet, want, have)


BROKEN_CONTROLLERS = {
    cls.__name__: cls
    for cls in (
        ChattyFleet,
        GrabbyFleet,
        ForgetfulFleet,
        ImpatientFleet,
        FixedRetryFleet,
        RestoringFleet,
        AmnesiacFleet,
        StampingFleet,
        RebuildingFleet,
    )
}
