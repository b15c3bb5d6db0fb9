"""Conformance scenarios of the scheduler (see :mod:`kcore.conformance.suites.controllers`
for what a scenario is and what the suite checks with it).

The scheduler's objects are bindings: a bound pod stays bound, so what "converged" means
here is that every pending pod of this scheduler that fits somewhere is bound to a node
it fits, within the node's allocatable resources, and that a pod that fits nowhere says
so in its ``PodScheduled`` condition.
"""

from __future__ import annotations

from typing import Any

from kcore.conformance.suites.controllers import (
    Scenario,
    ScenarioEnv,
    condition,
    flip_between,
    ready_node,
)

POD = ("v1", "Pod")
NODE = ("v1", "Node")
CPU_PER_POD = "500m"

Obj = dict[str, Any]


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _millicpu(value: str) -> int:
    return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)


async def make_node(env: ScenarioEnv, name: str, cpu: str = "2", **labels: str) -> None:
    await ready_node(env, name, labels, cpu=cpu, memory="4Gi")


def pod(env: ScenarioEnv, name: str, cpu: str = CPU_PER_POD, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": env.namespace, "labels": {"app": "sched"}},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
            ],
            **spec,
        },
    }


async def seed(env: ScenarioEnv) -> None:
    await make_node(env, "n1")
    await make_node(env, "n2", disk="ssd")
    for i in range(4):
        await env.api.create(pod(env, f"p{i}"))
    await env.api.create(pod(env, "wants-ssd", nodeSelector={"disk": "ssd"}))


def _mine(p: Obj) -> bool:
    return (p.get("spec") or {}).get("schedulerName", "default-scheduler") == "default-scheduler"


async def check(env: ScenarioEnv) -> list[str]:
    nodes = {_name(n): n for n in await env.list(*NODE, None)}
    used: dict[str, int] = {}
    problems = []
    for p in await env.list(*POD):
        spec = p.get("spec") or {}
        bound = spec.get("nodeName")
        cpu = sum(
            _millicpu(((c.get("resources") or {}).get("requests") or {}).get("cpu", "0"))
            for c in spec.get("containers") or ()
        )
        if bound:
            used[bound] = used.get(bound, 0) + cpu
            node = nodes.get(bound)
            labels = ((node or {}).get("metadata") or {}).get("labels") or {}
            wanted = spec.get("nodeSelector") or {}
            if node is not None and not wanted.items() <= labels.items():
                problems.append(f"pod {_name(p)} is on {bound}, which its nodeSelector refuses")
            continue
        if not _mine(p) or (p.get("metadata") or {}).get("deletionTimestamp"):
            continue
        scheduled = condition(p, "PodScheduled")
        if _name(p) in env.data.get("fits-nowhere", ()):
            if (scheduled.get("status"), scheduled.get("reason")) != ("False", "Unschedulable"):
                problems.append(
                    f"pod {_name(p)}, which fits nowhere, has PodScheduled "
                    f"{scheduled.get('status')!r}/{scheduled.get('reason')!r}"
                )
        else:
            problems.append(f"pod {_name(p)} is not bound")
    for name, milli in used.items():
        node = nodes.get(name)
        if node is None:
            continue
        allocatable = _millicpu(node["status"]["allocatable"]["cpu"])
        if milli > allocatable:
            problems.append(f"node {name} holds {milli}m of cpu, more than its {allocatable}m")
    return problems


async def a_new_pod(env: ScenarioEnv) -> None:
    await env.api.create(pod(env, "late"))


async def room_appears(env: ScenarioEnv) -> None:
    """A pod that needs a node that is not there yet, then the node."""
    await env.api.create(pod(env, "wants-gpu", nodeSelector={"gpu": "yes"}))
    await make_node(env, "n3", gpu="yes")


async def foreign(env: ScenarioEnv) -> list[Obj]:
    return [
        await env.api.create(pod(env, "other-scheduler", schedulerName="someone-else")),
        await env.api.create(pod(env, "bound-by-hand", nodeName="n1", cpu="0")),
    ]


async def summary(env: ScenarioEnv) -> Any:
    pods = await env.list(*POD)
    return sorted((_name(p), bool((p.get("spec") or {}).get("nodeName"))) for p in pods)


async def seed_too_big(env: ScenarioEnv) -> None:
    await seed(env)
    await env.api.create(pod(env, "huge", cpu="64"))
    env.data["fits-nowhere"] = ["huge"]


async def a_big_node(env: ScenarioEnv) -> None:
    env.data["fits-nowhere"] = []
    await make_node(env, "big", cpu="128")


def scheduler_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="pending-pods",
            seed=seed,
            check=check,
            perturbations={"a-new-pod": a_new_pod, "room-appears": room_appears},
            foreign=foreign,
            flip=flip_between(
                NODE,
                "n2",
                {"spec": {"unschedulable": True}},
                {"spec": {"unschedulable": False}},
                namespace=None,
            ),
            flip_cost=2,
            summary=summary,
            missing={"owner_deletion": "the scheduler owns no objects: it binds pods"},
        ),
        Scenario(
            name="too-big",
            seed=seed_too_big,
            check=check,
            perturbations={"a-big-node": a_big_node},
            summary=summary,
            missing={
                "owner_deletion": "the scheduler owns no objects: it binds pods",
                "quiescent": "every attempt at a pod that fits nowhere is reported in a "
                "FailedScheduling event (upstream too), and a fresh scheduler attempts it",
                "restart": "a restarted scheduler reports the pod that fits nowhere again",
                "backoff": "a pod that fits nowhere and whose failure could not be recorded "
                "is tried again after 5 minutes of the scheduler's own (real) clock",
            },
        ),
    ]


__all__ = ["scheduler_scenarios"]
