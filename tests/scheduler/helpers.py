"""Node and Pod objects for the scheduler's tests, and a way to run one step by hand."""

from __future__ import annotations

from typing import Any

from kcore.plugins.scheduler import SKIP, CycleState, PodInfo, SchedulerCache


def node(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    unschedulable: bool = False,
    images: list[dict[str, Any]] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    status: dict[str, Any] = {
        "allocatable": allocatable,
        "capacity": dict(allocatable),
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }
    if images:
        status["images"] = images
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": status,
    }


def pod(
    name: str,
    cpu: str | None = None,
    memory: str | None = None,
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    owner: str | None = None,
    spec: dict[str, Any] | None = None,
    image: str = "busybox",
) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: dict[str, Any] = {"name": "c", "image": image}
    if requests:
        container["resources"] = {"requests": requests}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner,
                "uid": f"uid-{owner}",
                "controller": True,
            }
        ]
    body: dict[str, Any] = {"containers": [container], **(spec or {})}
    if node_name:
        body["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def attempt(
    incoming: dict[str, Any], nodes: list[dict[str, Any]], placed: list[dict[str, Any]] = ()
) -> tuple[SchedulerCache, CycleState]:
    """A cache holding ``nodes`` with the ``placed`` pods (each with ``spec.nodeName``),
    and the state of an attempt for ``incoming``."""
    cache = SchedulerCache()
    for obj in nodes:
        cache.set_node(obj)
    for obj in placed:
        cache.add_pod(PodInfo(obj))
    state = CycleState(PodInfo(incoming), cache)
    state.feasible = cache.nodes
    return cache, state


def run_filter(step, incoming, nodes, placed=()) -> dict[str, Any]:
    """``{node name: reason or None}`` for one filter step."""
    cache, state = attempt(incoming, nodes, placed)
    prepare = getattr(step, "prepare", None)
    if prepare is not None:
        outcome = prepare(incoming, state)
        if outcome == SKIP:
            return {info.name: None for info in cache.nodes}
        assert outcome is None, outcome
    return {info.name: step.filter(incoming, info, state) for info in cache.nodes}


def run_score(step, incoming, nodes, placed=()) -> dict[str, int] | None:
    """``{node name: score}`` for one score step (normalized), or None when it skips."""
    cache, state = attempt(incoming, nodes, placed)
    prepare = getattr(step, "prepare", None)
    if prepare is not None and prepare(incoming, state) == SKIP:
        return None
    values = [step.score(incoming, info, state) for info in cache.nodes]
    normalize = getattr(step, "normalize", None)
    if normalize is not None:
        normalize(incoming, values, state)
    return {info.name: v for info, v in zip(cache.nodes, values, strict=True)}
