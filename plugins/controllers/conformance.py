"""Conformance scenarios of the built-in controllers (see
:mod:`kcore.conformance.suites.controllers` for what a scenario is and what the suite
checks with it).

Each controller's ``conformance()`` imports its scenarios from here, so that only the
suite loads this module. The scenarios run without a node agent; where a world needs
pods to run, :class:`ConformanceKubelet` stands in for the node agents: it binds daemon
pods to the node their affinity names, makes pods Running and Ready (or Succeeded /
Failed, when their template says so with :data:`EXIT_ANNOTATION`; not Ready with
:data:`READY_ANNOTATION`) and finishes the deletion of bound pods.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kcore.conformance.suites.controllers import (
    HERE,
    POLICIES,
    OwnerDeletion,
    Scenario,
    ScenarioEnv,
    condition,
    flip_between,
    ready_node,
)
from kcore.controllers import (
    Reconciler,
    being_deleted,
    controller_ref,
    from_label_selector_object,
    is_pod_active,
    is_pod_ready,
    owner_reference,
    parse_time,
    pod_condition,
)
from kcore.errors import Conflict, NotFound
from kcore.pki import create_ca

POD = ("v1", "Pod")
NODE = ("v1", "Node")
CONFIGMAP = ("v1", "ConfigMap")
SECRET = ("v1", "Secret")
NAMESPACE = ("v1", "Namespace")
LEASE = ("coordination.k8s.io/v1", "Lease")
RS = ("apps/v1", "ReplicaSet")
DEPLOYMENT = ("apps/v1", "Deployment")
DS = ("apps/v1", "DaemonSet")
JOB = ("batch/v1", "Job")
CRONJOB = ("batch/v1", "CronJob")

EXIT_ANNOTATION = "conformance.kcore.io/exit-code"
"""On a pod (template): the stand-in kubelet ends it with this exit code."""
READY_ANNOTATION = "conformance.kcore.io/ready"
"""On a pod: ``"false"`` keeps it Running but not Ready (a failing readiness probe)."""
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

Obj = dict[str, Any]


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _uid(obj: Obj) -> str:
    return str(_meta(obj).get("uid") or "")


def _name(obj: Obj) -> str:
    return str(_meta(obj).get("name") or "")


def _annotation(obj: Obj, key: str) -> str | None:
    return (_meta(obj).get("annotations") or {}).get(key)


def controlled_by(objs: Iterable[Obj], uid: str) -> list[Obj]:
    return [o for o in objs if (controller_ref(o) or {}).get("uid") == uid]


def refers_to(objs: Iterable[Obj], uid: str) -> list[Obj]:
    return [
        o for o in objs if any(r.get("uid") == uid for r in _meta(o).get("ownerReferences") or ())
    ]


def compare(problems: list[str], what: str, got: Any, want: Any) -> None:
    if (got or 0) != (want or 0):
        problems.append(f"{what} is {got!r}, want {want!r}")


def compare_generation(problems: list[str], obj: Obj) -> None:
    """The status must say the controller saw the object's latest spec."""
    got = (obj.get("status") or {}).get("observedGeneration")
    compare(problems, "status.observedGeneration", got, _meta(obj).get("generation"))


# -- shared pieces ------------------------------------------------------------------------------


def pod_template(
    labels: dict[str, str],
    *,
    annotations: dict[str, str] | None = None,
    image: str = "busybox",
    restart_policy: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": image}]}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    meta: dict[str, Any] = {"labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": spec}


async def someone_else(env: ScenarioEnv) -> dict[str, Any]:
    """A controller reference to a ConfigMap of the test's: objects carrying it belong to
    someone else (and are not garbage: their owner exists)."""
    owner = env.data.get("someone-else")
    if owner is None:
        owner = await env.api.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "someone-else", "namespace": env.namespace},
            }
        )
        env.data["someone-else"] = owner
    return owner_reference(owner)


async def create_foreign(env: ScenarioEnv, obj: Obj) -> Obj:
    """Creates ``obj`` in the scenario's namespace, controlled by :func:`someone_else`."""
    meta = {**obj["metadata"], "namespace": env.namespace}
    meta["ownerReferences"] = [await someone_else(env)]
    return await env.api.create({**obj, "metadata": meta})


async def foreign_pod(env: ScenarioEnv, name: str, labels: dict[str, str], **spec: Any) -> Obj:
    return await create_foreign(
        env,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
        },
    )


def garbage_collector(*kinds: tuple[str, str]) -> Any:
    from kcore.plugins.controllers.garbagecollector import GarbageCollector

    return GarbageCollector(kinds=[CONFIGMAP, *kinds])


async def set_pod_status(env: ScenarioEnv, pod: Obj, status: dict[str, Any]) -> None:
    m = _meta(pod)
    await env.api.patch(
        *POD, m["name"], {"status": status}, namespace=m.get("namespace"), subresource="status"
    )


def ready_status(env: ScenarioEnv) -> dict[str, Any]:
    now = env.stamp()
    return {
        "phase": "Running",
        "startTime": now,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        ],
    }


def affinity_node(pod: Obj) -> str | None:
    """The one node a pod's required node affinity names by ``metadata.name`` (daemon
    pods), if any."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                values = field.get("values") or []
                if len(values) == 1:
                    return str(values[0])
    return None


class ConformanceKubelet(Reconciler):
    """The node agents of a scenario, reduced to what controllers see of them."""

    name = "conformance-kubelet"
    kinds = (POD,)

    async def reconcile(self, key: str) -> float | None:
        pod = self.cached(key)
        if pod is None:
            return None
        m, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
        namespace = m.get("namespace")
        try:
            if being_deleted(pod):
                if spec.get("nodeName"):  # the node agent confirms the deletion
                    await self.api.delete(
                        *POD,
                        m["name"],
                        namespace,
                        grace_period_seconds=0,
                        preconditions={"uid": m["uid"]},
                    )
                return None
            if status.get("phase") in ("Succeeded", "Failed"):
                return None
            if not spec.get("nodeName"):
                node = affinity_node(pod)
                if node is not None:
                    await self.api.bind(m["name"], node, namespace=namespace)
                    return None
            code = (m.get("annotations") or {}).get(EXIT_ANNOTATION)
            ready = (m.get("annotations") or {}).get(READY_ANNOTATION) != "false"
            stamp = _rfc3339(self.now())
            if code is not None:
                phase = "Succeeded" if code == "0" else "Failed"
                new = {
                    "phase": phase,
                    "startTime": status.get("startTime") or stamp,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "PodCompleted",
                            "lastTransitionTime": stamp,
                        }
                    ],
                    "containerStatuses": [
                        {
                            "name": "c",
                            "ready": False,
                            "restartCount": 0,
                            "image": "busybox",
                            "imageID": "",
                            "state": {
                                "terminated": {
                                    "exitCode": int(code),
                                    "reason": "Completed" if code == "0" else "Error",
                                    "startedAt": stamp,
                                    "finishedAt": stamp,
                                }
                            },
                        }
                    ],
                }
            elif status.get("phase") != "Running" or is_pod_ready(pod) != ready:
                new = {
                    "phase": "Running",
                    "startTime": status.get("startTime") or stamp,
                    "conditions": [
                        {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                        *(
                            {"type": t, "status": str(ready), "lastTransitionTime": stamp}
                            for t in ("Ready", "ContainersReady")
                        ),
                    ],
                    "containerStatuses": [
                        {
                            "name": "c",
                            "ready": ready,
                            "started": True,
                            "restartCount": 0,
                            "image": "busybox",
                            "imageID": "",
                            "state": {"running": {"startedAt": stamp}},
                        }
                    ],
                }
            else:
                return None
            await self.api.patch(
                *POD, m["name"], {"status": new}, namespace=namespace, subresource="status"
            )
        except (NotFound, Conflict):
            pass
        return None


def _rfc3339(seconds: float, micro: bool = False) -> str:
    from datetime import UTC, datetime

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.fromtimestamp(seconds, UTC).strftime(fmt)


def selector_matches(owner: Obj, pod: Obj) -> bool:
    selector = from_label_selector_object((owner.get("spec") or {}).get("selector"))
    return not selector.empty and selector.matches(_meta(pod).get("labels") or {})


async def owner_named(env: ScenarioEnv, kind: tuple[str, str], name: str) -> Obj:
    obj = await env.get(*kind, name)
    assert obj is not None, f"{kind[1]} {name} is gone"
    return obj


async def create_owner(env: ScenarioEnv, obj: Obj) -> Obj:
    """Creates the scenario's owner, keeping its uid for :func:`owned`."""
    created = await env.api.create(obj)
    env.data["owner"] = _uid(created)
    return created


def owned(
    kind: tuple[str, str],
    name: str,
    dependents: tuple[str, str],
    *,
    namespace: str | None = None,
    policies: Sequence[str] = POLICIES,
) -> OwnerDeletion:
    """Deleting the ``kind`` object ``name``, whose uid the seed kept in
    ``env.data["owner"]``; its dependents are the ``dependents`` objects (in ``namespace``,
    or the scenario's) referring to that uid."""

    async def of_owner(env: ScenarioEnv) -> list[Obj]:
        if namespace is None:
            items = await env.list(*dependents)
        else:
            items = await env.list(*dependents, namespace)
        return refers_to(items, env.data["owner"])

    return OwnerDeletion(
        owner=lambda env: owner_named(env, kind, name), dependents=of_owner, policies=policies
    )


async def active_pods_of(env: ScenarioEnv, kind: tuple[str, str], name: str) -> list[Obj]:
    owner = await owner_named(env, kind, name)
    return [p for p in controlled_by(await env.list(*POD), _uid(owner)) if is_pod_active(p)]


async def delete_first_pod(env: ScenarioEnv, pods: Iterable[Obj]) -> None:
    """Deletes the first of ``pods`` by name."""
    await env.api.delete(*POD, _name(sorted(pods, key=_name)[0]), env.namespace)


def flip_label(kind: tuple[str, str], name: str, *, namespace: Any = HERE) -> Any:
    """A ``flip`` that sets the label ``flip`` of the object to 0 and 1 in turn
    (``namespace=None``: cluster-scoped)."""
    return flip_between(
        kind,
        name,
        {"metadata": {"labels": {"flip": "0"}}},
        {"metadata": {"labels": {"flip": "1"}}},
        namespace=namespace,
    )


def flip_spec(
    kind: tuple[str, str], name: str, field: str, even: Any, odd: Any, *, namespace: Any = HERE
) -> Any:
    """A ``flip`` that sets ``spec.<field>`` of the object to ``even`` and ``odd`` in turn
    (``namespace=None``: cluster-scoped)."""
    return flip_between(
        kind, name, {"spec": {field: even}}, {"spec": {field: odd}}, namespace=namespace
    )


# -- ReplicaSet --------------------------------------------------------------------------------

WEB = {"app": "web"}
FAILURE = "ReplicaFailure"


def workload(kind: tuple[str, str], name: str, template: Obj, replicas: int, **meta: Any) -> Obj:
    """A ReplicaSet or Deployment of ``replicas`` pods selected by :data:`WEB`."""
    return {
        "apiVersion": kind[0],
        "kind": kind[1],
        "metadata": {"name": name, **meta},
        "spec": {"replicas": replicas, "selector": {"matchLabels": WEB}, "template": template},
    }


async def rs_seed(env: ScenarioEnv) -> None:
    template = pod_template({**WEB, "tier": "front"})
    await create_owner(env, workload(RS, "web", template, 3, namespace=env.namespace))


def loose_pod(env: ScenarioEnv, name: str, labels: dict[str, str], owner: Obj | None = None) -> Obj:
    meta: dict[str, Any] = {"name": name, "namespace": env.namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Kubernetes' ``IsPodAvailable``: Ready, and (with ``minReadySeconds``) Ready since
    more than that many seconds before ``now``."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds < now


async def rs_events(env: ScenarioEnv, rs: str, reason: str) -> list[Obj]:
    """The Events of the ReplicaSet ``rs`` with ``reason``."""
    return [
        e
        for e in await env.list("v1", "Event")
        if (e.get("involvedObject") or {}).get("name") == rs
        and (e.get("involvedObject") or {}).get("kind") == "ReplicaSet"
        and e.get("reason") == reason
    ]


async def rs_problems(env: ScenarioEnv, name: str, *, pods: int | None = None) -> list[str]:
    """What is wrong with the ReplicaSet ``name``: its active pods (``spec.replicas`` of
    them, or ``pods`` while the scenario makes the API refuse creates or deletes), matching
    orphans not adopted, and its status against its pods: ``replicas`` (the active pods),
    ``fullyLabeledReplicas`` (those carrying every template label), ``readyReplicas``,
    ``availableReplicas`` (ready for more than ``minReadySeconds``, on the scenario's
    clock), ``observedGeneration``. Converged also means settled: every pod is available
    (but those kept not ready with :data:`READY_ANNOTATION`)."""
    rs = await env.get(*RS, name)
    if rs is None:
        return [f"the ReplicaSet {name} is gone"]
    spec = rs["spec"]
    labels = spec["template"]["metadata"]["labels"]
    min_ready = spec.get("minReadySeconds") or 0
    all_pods = await env.list(*POD)
    mine = [p for p in controlled_by(all_pods, _uid(rs)) if is_pod_active(p)]
    problems: list[str] = []
    want = spec["replicas"] if pods is None else pods
    compare(problems, f"the number of active pods of {name}", len(mine), want)
    orphans = [
        p
        for p in all_pods
        if controller_ref(p) is None and is_pod_active(p) and selector_matches(rs, p)
    ]
    if orphans:
        problems.append(f"matching orphans not adopted: {sorted(map(_name, orphans))}")
    status = rs.get("status") or {}
    now = env.clock()
    expected = {
        "replicas": len(mine),
        "fullyLabeledReplicas": sum(
            1 for p in mine if labels.items() <= (_meta(p).get("labels") or {}).items()
        ),
        "readyReplicas": sum(1 for p in mine if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in mine if is_available(p, min_ready, now)),
    }
    for field, value in expected.items():
        compare(problems, f"{name}'s status.{field}", status.get(field), value)
    # converged means settled: every pod the stand-in kubelet keeps ready has been ready
    # for minReadySeconds
    settled = [p for p in mine if _annotation(p, READY_ANNOTATION) != "false"]
    late = [_name(p) for p in settled if not is_available(p, min_ready, now)]
    if late:
        problems.append(f"pods of {name} not available yet: {sorted(late)}")
    compare_generation(problems, rs)
    return problems


async def rs_check(env: ScenarioEnv) -> list[str]:
    """The ReplicaSet converged; while the scenario makes the API refuse pod creates or
    deletes, it reports the condition ``ReplicaFailure`` (reason ``FailedCreate`` or
    ``FailedDelete``, the error as message, a lastTransitionTime that stays while the
    failure goes on) and a Warning Event of that reason; once they work again the
    condition is gone and each pod it deleted has its ``SuccessfulDelete`` Event."""
    failing = env.data.get("rs-failing")
    problems = await rs_problems(env, "web", pods=env.data.get("rs-pods"))
    rs = await env.get(*RS, "web")
    if rs is None:
        return problems
    failure = condition(rs, FAILURE)
    if failing is None and failure:
        problems.append(f"condition {FAILURE} is still there: {failure}")
    if failing is not None:
        since = failure.get("lastTransitionTime")
        if failure.get("status") != "True" or failure.get("reason") != failing:
            problems.append(f"condition {FAILURE} is {failure or None}, want reason {failing}")
        elif not failure.get("message") or parse_time(since) is None:
            problems.append(f"condition {FAILURE} lacks a message or lastTransitionTime")
        elif env.data.setdefault("rs-failing-since", since) != since:
            problems.append(
                f"condition {FAILURE} moved its lastTransitionTime while the failure went on"
            )
        if not await rs_events(env, "web", failing):
            problems.append(f"no Warning Event {failing} for the ReplicaSet")
    doomed = env.data.get("rs-doomed") or ()
    if doomed:
        active = {_name(p) for p in await rs_pods(env)}
        messages = {e.get("message") for e in await rs_events(env, "web", "SuccessfulDelete")}
        missing = [n for n in doomed if n not in active and f"Deleted pod: {n}" not in messages]
        if missing:
            problems.append(f"no SuccessfulDelete Event for the deleted pods {missing}")
    return problems


async def rs_pods(env: ScenarioEnv) -> list[Obj]:
    return await active_pods_of(env, RS, "web")


async def rs_start_missing(env: ScenarioEnv) -> None:
    rs = await owner_named(env, RS, "web")
    await env.api.create(loose_pod(env, "web-made-before", {**WEB, "tier": "front"}, rs))


async def rs_start_extra(env: ScenarioEnv) -> None:
    for i in range(5):
        await env.api.create(loose_pod(env, f"web-orphan-{i}", {**WEB, "tier": "front"}))


async def rs_start_half_updated(env: ScenarioEnv) -> None:
    rs = await owner_named(env, RS, "web")
    await env.api.create(loose_pod(env, "web-stray", {"app": "elsewhere"}, rs))
    await env.api.create(loose_pod(env, "web-half", {**WEB}, rs))
    await env.api.patch(
        *RS,
        "web",
        {"status": {"replicas": 7, "readyReplicas": 2, "observedGeneration": 9}},
        namespace=env.namespace,
        subresource="status",
    )


async def rs_delete_a_pod(env: ScenarioEnv) -> None:
    await delete_first_pod(env, await rs_pods(env))


async def rs_relabel_a_pod(env: ScenarioEnv) -> None:
    pod = (await rs_pods(env))[0]
    await env.api.patch(
        *POD, _name(pod), {"metadata": {"labels": {"app": "moved"}}}, namespace=env.namespace
    )


async def rs_mangle_status(env: ScenarioEnv) -> None:
    await env.api.patch(
        *RS,
        "web",
        {"status": {"replicas": 9, "fullyLabeledReplicas": 1}},
        namespace=env.namespace,
        subresource="status",
    )


async def rs_orphan_starts_matching(env: ScenarioEnv) -> None:
    """A running orphan without labels gets the ReplicaSet's: it is adopted (and one pod
    too many goes). Only the label change can tell the controller (no other update of the
    pod follows it)."""
    pod = await env.api.create(loose_pod(env, "web-late", {}))
    await set_pod_status(env, pod, ready_status(env))
    await asyncio.sleep(0.3)  # the stand-in kubelet has seen it running: it writes no more
    await env.api.patch(
        *POD,
        "web-late",
        {"metadata": {"labels": {**WEB, "tier": "front"}}},
        namespace=env.namespace,
    )


def rs_scale(replicas: int) -> Any:
    async def scale(env: ScenarioEnv) -> None:
        await env.api.patch(*RS, "web", {"spec": {"replicas": replicas}}, namespace=env.namespace)

    return scale


async def rs_creation_fails(env: ScenarioEnv) -> None:
    """The API refuses the controller's pod creates (a quota, a webhook), and a pod goes."""
    pods = await rs_pods(env)
    env.reject_writes("create", "Pod")
    env.data.update({"rs-failing": "FailedCreate", "rs-pods": len(pods) - 1})
    await delete_first_pod(env, pods)


async def rs_creation_keeps_failing(env: ScenarioEnv) -> None:
    """Time passes (the controller tries again) while creates still fail."""
    env.clock.advance(30)


async def rs_creation_works_again(env: ScenarioEnv) -> None:
    env.accept_writes()
    for key in ("rs-failing", "rs-pods", "rs-failing-since"):
        env.data.pop(key, None)


async def rs_deletion_fails(env: ScenarioEnv) -> None:
    """The API refuses the controller's pod deletes, and the ReplicaSet is scaled down."""
    pods = await rs_pods(env)
    env.reject_writes("delete", "Pod")
    env.data.update({"rs-failing": "FailedDelete", "rs-pods": len(pods)})
    await rs_scale(len(pods) - 1)(env)


async def rs_deletion_works_again(env: ScenarioEnv) -> None:
    env.data["rs-doomed"] = sorted(_name(p) for p in await rs_pods(env))
    await rs_creation_works_again(env)


HOLD = "conformance.kcore.io/hold"
"""A finalizer of the test's: a deleted pod that carries it stays, being deleted."""


async def rs_deleted_pods_linger(env: ScenarioEnv) -> None:
    """Every pod gets a finalizer, so that a deleted pod stays (with deletionTimestamp,
    no longer counted) until it is removed; then the ReplicaSet is scaled down."""
    for pod in await rs_pods(env):
        await env.api.patch(
            *POD, _name(pod), {"metadata": {"finalizers": [HOLD]}}, namespace=env.namespace
        )
    await rs_scale(2)(env)


async def rs_delete_a_lingering_pod(env: ScenarioEnv) -> None:
    """Another pod is deleted and lingers: the ReplicaSet must replace it at once (the
    deletion it made itself counts as seen once the pod has its deletionTimestamp)."""
    await delete_first_pod(env, await rs_pods(env))


async def rs_lingering_pods_go(env: ScenarioEnv) -> None:
    for pod in await env.list(*POD):
        if HOLD in (_meta(pod).get("finalizers") or ()):
            await env.api.patch(
                *POD, _name(pod), {"metadata": {"finalizers": []}}, namespace=env.namespace
            )
    await rs_scale(3)(env)


async def rs_stale_failure(env: ScenarioEnv) -> None:
    """Someone writes a ReplicaFailure condition into a healthy ReplicaSet's status: the
    controller's next sync succeeds and removes it."""
    stale = {
        "type": FAILURE,
        "status": "True",
        "reason": "FailedCreate",
        "message": "stale",
        "lastTransitionTime": env.stamp(),
    }
    await env.api.patch(
        *RS,
        "web",
        {"status": {"conditions": [stale]}},
        namespace=env.namespace,
        subresource="status",
    )


async def rs_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await foreign_pod(env, "web-foreign", {**WEB, "tier": "front"})]


async def rs_summary(env: ScenarioEnv) -> Any:
    rs = await owner_named(env, RS, "web")
    pods = await rs_pods(env)
    status = rs.get("status") or {}
    return (
        len(pods),
        sorted(sorted((_meta(p).get("labels") or {}).items()) for p in pods),
        status.get("replicas"),
        status.get("fullyLabeledReplicas"),
        status.get("availableReplicas"),
    )


# A rollout half-way, as a Deployment leaves it: roll-old and roll-new, both controlled by
# the Deployment roll (which no controller runs here), on two nodes. roll-new has one pod
# too many; Kubernetes deletes first the pod on the node with the most pods related to it
# (the pods of every ReplicaSet of the same controller, each counted once, whoever owns
# them), and only then the pod ready for less time. n1 has the three roll-old pods and
# roll-new-z (4 related), n2 has roll-new-b, -c, -d and three unrelated pods (3 related):
# roll-new-z goes, though it has been ready longest. roll-old's selector also matches
# roll-new's pods, so counting a pod once per selector, counting unrelated pods, or
# leaving roll-old's pods out picks a pod on n2 (roll-new-d, ready for 2 s) instead.
# minReadySeconds is 10: roll-new-d becomes available 8 s after the controller starts (the
# ReplicaSet is queued again minReadySeconds after a sync that found every pod ready but
# not all available). Later a pod stops being ready and another is replaced: the new
# pod is available minReadySeconds + 1 s after it became ready (Kubernetes queues the
# ReplicaSet again then, when it sees a pod become ready). Last, a pod of roll-new gets
# roll-old's labels: released by roll-new, it must be adopted by roll-old.

ROLL = {"app": "roll"}
ROLL_MIN_READY = 10
ROLL_DOOMED = "roll-new-z"


def roll_rs(name: str, hash_: str, selector: dict[str, str], owner: Obj, **labels: str) -> Obj:
    template = pod_template({**ROLL, "pod-template-hash": hash_, **labels})
    rs = workload(RS, name, template, 3)
    rs["metadata"].update(
        namespace=_meta(owner).get("namespace"),
        ownerReferences=[owner_reference(owner)],
        labels=dict(ROLL),
    )
    rs["spec"].update(selector={"matchLabels": selector}, minReadySeconds=ROLL_MIN_READY)
    return rs


async def roll_pod(
    env: ScenarioEnv,
    name: str,
    node: str,
    labels: dict[str, str],
    ready_for: float,
    owner: Obj | None,
) -> None:
    pod = loose_pod(env, name, labels, owner)
    pod["spec"]["nodeName"] = node
    await env.api.create(pod)
    status = ready_status(env)
    for c in status["conditions"]:
        c["lastTransitionTime"] = env.stamp(-ready_for)
    await set_pod_status(env, pod, status)


async def roll_seed(env: ScenarioEnv) -> None:
    deployment = workload(DEPLOYMENT, "roll", pod_template(ROLL), 3, namespace=env.namespace)
    deployment["spec"]["selector"] = {"matchLabels": ROLL}
    deployment = await env.api.create(deployment)
    # roll-old's template has a label its pods lack: fullyLabeledReplicas is 0
    old = await env.api.create(roll_rs("roll-old", "old", ROLL, deployment, track="stable"))
    new = await create_owner(
        env, roll_rs("roll-new", "new", {**ROLL, "pod-template-hash": "new"}, deployment)
    )
    old_labels = {**ROLL, "pod-template-hash": "old"}
    new_labels = {**ROLL, "pod-template-hash": "new"}
    for i in range(3):
        await roll_pod(env, f"roll-old-{i}", "n1", old_labels, 1000, old)
        await roll_pod(env, f"roll-other-{i}", "n2", {"app": "other"}, 1000, None)
    for suffix, ready_for in (("b", 100), ("c", 100), ("d", 2)):
        await roll_pod(env, f"roll-new-{suffix}", "n2", new_labels, ready_for, new)
    await roll_pod(env, ROLL_DOOMED, "n1", new_labels, 2000, new)


async def roll_check(env: ScenarioEnv) -> list[str]:
    problems = await rs_problems(env, "roll-new") + await rs_problems(env, "roll-old")
    doomed = await env.get(*POD, ROLL_DOOMED)
    if doomed is not None and is_pod_active(doomed):
        problems.append(
            f"{ROLL_DOOMED} (on the node with the most related pods) was not the one deleted"
        )
    return problems


async def roll_readiness_fails(env: ScenarioEnv) -> None:
    await env.api.patch(
        *POD,
        "roll-new-c",
        {"metadata": {"annotations": {READY_ANNOTATION: "false"}}},
        namespace=env.namespace,
    )


async def roll_delete_a_pod(env: ScenarioEnv) -> None:
    await env.api.delete(*POD, "roll-new-b", env.namespace)


async def roll_pod_moves_to_old(env: ScenarioEnv) -> None:
    """roll-new-d gets roll-old's template hash: roll-new releases it, and roll-old (whose
    selector matches it) adopts it once it is an orphan; each scales to its replicas."""
    await env.api.patch(
        *POD,
        "roll-new-d",
        {"metadata": {"labels": {"pod-template-hash": "old"}}},
        namespace=env.namespace,
    )


async def roll_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await foreign_pod(env, "roll-foreign", {**ROLL, "pod-template-hash": "new"})]


async def roll_summary(env: ScenarioEnv) -> Any:
    result = []
    for name in ("roll-new", "roll-old"):
        rs = await owner_named(env, RS, name)
        status = rs.get("status") or {}
        pods = await active_pods_of(env, RS, name)
        seeded = sorted(_name(p) for p in pods if _name(p).startswith("roll-"))
        result.append((name, len(pods), seeded, status.get("availableReplicas")))
    return result


def replicaset_scenarios() -> list[Scenario]:
    def companions() -> list[Any]:
        return [garbage_collector(DEPLOYMENT, RS, POD), ConformanceKubelet()]

    return [
        Scenario(
            name="web",
            seed=rs_seed,
            check=rs_check,
            starts={
                "missing": rs_start_missing,
                "extra": rs_start_extra,
                "half-updated": rs_start_half_updated,
            },
            perturbations={
                "delete-a-pod": rs_delete_a_pod,
                "relabel-a-pod": rs_relabel_a_pod,
                "mangle-status": rs_mangle_status,
                "orphan-starts-matching": rs_orphan_starts_matching,
                "pod-creation-fails": rs_creation_fails,
                "pod-creation-keeps-failing": rs_creation_keeps_failing,
                "pod-creation-works-again": rs_creation_works_again,
                "pod-deletion-fails": rs_deletion_fails,
                "pod-deletion-works-again": rs_deletion_works_again,
                "scale-to-zero": rs_scale(0),
                "scale-up-again": rs_scale(3),
                "deleted-pods-linger": rs_deleted_pods_linger,
                "delete-a-lingering-pod": rs_delete_a_lingering_pod,
                "lingering-pods-go": rs_lingering_pods_go,
                "stale-failure-condition": rs_stale_failure,
            },
            foreign=rs_foreign,
            flip=flip_spec(RS, "web", "replicas", 4, 3),
            flip_cost=9,
            owner=owned(RS, "web", POD),
            summary=rs_summary,
            companions=companions,
            time_to_converge=20.0,
        ),
        Scenario(
            name="rollout",
            seed=roll_seed,
            check=roll_check,
            perturbations={
                "a-pod-stops-being-ready": roll_readiness_fails,
                "delete-a-ready-pod": roll_delete_a_pod,
                "a-pod-moves-to-the-old-replicaset": roll_pod_moves_to_old,
            },
            foreign=roll_foreign,
            flip=flip_spec(RS, "roll-new", "replicas", 4, 3),
            flip_cost=9,
            owner=owned(RS, "roll-new", POD),
            summary=roll_summary,
            companions=companions,
            # a pod is available minReadySeconds + 1 s after it is ready; 2 s more for
            # the stand-in kubelet to start it
            time_to_converge=ROLL_MIN_READY + 3,
        ),
    ]


# -- Deployment --------------------------------------------------------------------------------


async def deploy_seed(env: ScenarioEnv) -> None:
    await create_owner(
        env, workload(DEPLOYMENT, "web", pod_template(WEB), 3, namespace=env.namespace)
    )


def _containers(template: Obj) -> Any:
    return (template.get("spec") or {}).get("containers")


async def deploy_check(env: ScenarioEnv) -> list[str]:
    d = await env.get(*DEPLOYMENT, "web")
    if d is None:
        return ["the Deployment is gone"]
    replicas = d["spec"]["replicas"]
    rss = controlled_by(await env.list(*RS), _uid(d))
    problems: list[str] = []
    current = [
        rs
        for rs in rss
        if _containers(rs["spec"]["template"]) == _containers(d["spec"]["template"])
    ]
    if len(current) != 1:
        problems.append(f"{len(current)} ReplicaSets of the current template, want 1")
    for rs in rss:
        want = replicas if rs in current else 0
        compare(problems, f"ReplicaSet {_name(rs)}'s replicas", rs["spec"].get("replicas"), want)
    pods = [p for p in await env.list(*POD) if is_pod_active(p)]
    for rs in current:
        mine = controlled_by(pods, _uid(rs))
        compare(problems, f"the active pods of {_name(rs)}", len(mine), replicas)
    status = d.get("status") or {}
    compare_generation(problems, d)
    for f in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        compare(problems, f"status.{f}", status.get(f), replicas)
    compare(problems, "status.unavailableReplicas", status.get("unavailableReplicas"), 0)
    if condition(d, "Available").get("status") != "True":
        problems.append("condition Available is not True")
    progressing = condition(d, "Progressing")
    if progressing.get("reason") != "NewReplicaSetAvailable":
        problems.append(f"condition Progressing has reason {progressing.get('reason')!r}")
    return problems


async def deploy_current_rs(env: ScenarioEnv) -> Obj:
    d = await owner_named(env, DEPLOYMENT, "web")
    for rs in controlled_by(await env.list(*RS), _uid(d)):
        if (rs["spec"].get("replicas") or 0) > 0:
            return rs
    raise AssertionError("the Deployment has no scaled-up ReplicaSet")


async def deploy_delete_rs(env: ScenarioEnv) -> None:
    rs = await deploy_current_rs(env)
    await env.api.delete(*RS, _name(rs), env.namespace)


async def deploy_scale_rs(env: ScenarioEnv) -> None:
    rs = await deploy_current_rs(env)
    await env.api.patch(*RS, _name(rs), {"spec": {"replicas": 5}}, namespace=env.namespace)


async def deploy_new_image(env: ScenarioEnv) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}
    await env.api.patch(*DEPLOYMENT, "web", patch, namespace=env.namespace)


async def deploy_start_extra(env: ScenarioEnv) -> None:
    """A matching orphan ReplicaSet of an older template, scaled up."""
    template = pod_template(WEB, image="busybox:0")
    await env.api.create(workload(RS, "web-old", template, 2, namespace=env.namespace, labels=WEB))


async def deploy_foreign(env: ScenarioEnv) -> list[Obj]:
    template = pod_template(WEB, image="busybox:foreign")
    return [await create_foreign(env, workload(RS, "web-foreign", template, 0, labels=WEB))]


async def deploy_summary(env: ScenarioEnv) -> Any:
    d = await owner_named(env, DEPLOYMENT, "web")
    rss = controlled_by(await env.list(*RS), _uid(d))
    status = d.get("status") or {}
    return (
        sorted((_name(rs), rs["spec"].get("replicas")) for rs in rss),
        status.get("replicas"),
        status.get("availableReplicas"),
        (_meta(d).get("annotations") or {}).get("deployment.kubernetes.io/revision"),
    )


def deployment_scenarios() -> list[Scenario]:
    from kcore.plugins.controllers.replicaset import ReplicaSetController

    return [
        Scenario(
            name="web",
            seed=deploy_seed,
            check=deploy_check,
            starts={"extra": deploy_start_extra},
            perturbations={
                "delete-the-replicaset": deploy_delete_rs,
                "scale-the-replicaset": deploy_scale_rs,
                "new-image": deploy_new_image,
            },
            foreign=deploy_foreign,
            flip=flip_spec(DEPLOYMENT, "web", "replicas", 4, 3),
            flip_cost=8,
            owner=owned(DEPLOYMENT, "web", RS),
            summary=deploy_summary,
            companions=lambda: [
                ReplicaSetController(),
                ConformanceKubelet(),
                garbage_collector(DEPLOYMENT, RS, POD),
            ],
        )
    ]


# -- DaemonSet ---------------------------------------------------------------------------------

AGENT = {"app": "agent"}
DAEMON_LABEL = "conformance.kcore.io/daemon"


def node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
    }


async def ds_seed(env: ScenarioEnv) -> None:
    for name in ("n1", "n2", "n3"):
        await ready_node(env, name, {DAEMON_LABEL: "yes"})
    template = pod_template(AGENT)
    template["spec"]["nodeSelector"] = {DAEMON_LABEL: "yes"}
    await create_owner(
        env,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": env.namespace},
            "spec": {"selector": {"matchLabels": AGENT}, "template": template},
        },
    )


def pod_node(pod: Obj) -> str | None:
    return (pod.get("spec") or {}).get("nodeName") or affinity_node(pod)


async def ds_check(env: ScenarioEnv) -> list[str]:
    ds = await env.get(*DS, "agent")
    if ds is None:
        return ["the DaemonSet is gone"]
    nodes = await env.list(*NODE, None)
    eligible = sorted(
        _name(n) for n in nodes if (_meta(n).get("labels") or {}).get(DAEMON_LABEL) == "yes"
    )
    pods = [p for p in controlled_by(await env.list(*POD), _uid(ds)) if is_pod_active(p)]
    problems: list[str] = []
    by_node: dict[str, list[str]] = {}
    for p in pods:
        by_node.setdefault(pod_node(p) or "", []).append(_name(p))
    for name in eligible:
        if len(by_node.get(name, [])) != 1:
            problems.append(f"node {name} has daemon pods {by_node.get(name, [])}, want one")
    extra = sorted(set(by_node) - set(eligible))
    if extra:
        problems.append(f"daemon pods on nodes that should have none: {extra}")
    template = ds["spec"]["template"]["spec"]["containers"]
    for p in pods:
        if (p.get("spec") or {}).get("containers", [{}])[0].get("image") != template[0]["image"]:
            problems.append(f"pod {_name(p)} runs an old template")
    status = ds.get("status") or {}
    want = len(eligible)
    for f in (
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
    ):
        compare(problems, f"status.{f}", status.get(f), want)
    compare(problems, "status.numberMisscheduled", status.get("numberMisscheduled"), 0)
    compare_generation(problems, ds)
    return problems


async def ds_pods(env: ScenarioEnv) -> list[Obj]:
    return await active_pods_of(env, DS, "agent")


async def ds_delete_a_pod(env: ScenarioEnv) -> None:
    await delete_first_pod(env, await ds_pods(env))


async def ds_add_a_node(env: ScenarioEnv) -> None:
    await ready_node(env, "n4", {DAEMON_LABEL: "yes"})


async def ds_new_image(env: ScenarioEnv) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}
    await env.api.patch(*DS, "agent", patch, namespace=env.namespace)


async def ds_start_extra(env: ScenarioEnv) -> None:
    """Two pods of the DaemonSet on one node, and one on a node that should have none."""
    ds = await owner_named(env, DS, "agent")
    await ready_node(env, "n0", {DAEMON_LABEL: "no"})
    for i, where in enumerate(("n1", "n1", "n0")):
        pod = loose_pod(env, f"agent-extra-{i}", AGENT, ds)
        pod["spec"]["nodeName"] = where
        await env.api.create(pod)


async def ds_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await foreign_pod(env, "agent-foreign", AGENT, nodeName="n1")]


async def ds_summary(env: ScenarioEnv) -> Any:
    ds = await owner_named(env, DS, "agent")
    status = ds.get("status") or {}
    return (
        sorted(pod_node(p) or "" for p in await ds_pods(env)),
        status.get("desiredNumberScheduled"),
        status.get("numberReady"),
    )


def daemonset_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="agent",
            seed=ds_seed,
            check=ds_check,
            starts={"extra": ds_start_extra},
            perturbations={
                "delete-a-pod": ds_delete_a_pod,
                "add-a-node": ds_add_a_node,
                "new-image": ds_new_image,
            },
            foreign=ds_foreign,
            flip=flip_between(
                NODE,
                "n3",
                {"metadata": {"labels": {DAEMON_LABEL: "no"}}},
                {"metadata": {"labels": {DAEMON_LABEL: "yes"}}},
                namespace=None,
            ),
            flip_cost=12,
            owner=owned(DS, "agent", POD),
            summary=ds_summary,
            companions=lambda: [ConformanceKubelet(), garbage_collector(DS, POD)],
        )
    ]


# -- Job ---------------------------------------------------------------------------------------


def job(
    env: ScenarioEnv, name: str, completions: int, parallelism: int, exit_code: str | None = None
) -> Obj:
    annotations = {EXIT_ANNOTATION: exit_code} if exit_code is not None else None
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": env.namespace},
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": 100,
            "template": pod_template(
                {"run": name}, annotations=annotations, restart_policy="Never"
            ),
        },
    }


async def job_running_seed(env: ScenarioEnv) -> None:
    await create_owner(env, job(env, "work", completions=6, parallelism=2))


async def job_pods(env: ScenarioEnv, name: str) -> list[Obj]:
    j = await owner_named(env, JOB, name)
    return controlled_by(await env.list(*POD), _uid(j))


async def job_running_check(env: ScenarioEnv) -> list[str]:
    j = await env.get(*JOB, "work")
    if j is None:
        return ["the Job is gone"]
    parallelism = j["spec"]["parallelism"]
    pods = await job_pods(env, "work")
    active = [p for p in pods if is_pod_active(p)]
    problems: list[str] = []
    compare(problems, "the number of active pods", len(active), parallelism)
    status = j.get("status") or {}
    compare(problems, "status.active", status.get("active"), parallelism)
    compare(
        problems, "status.ready", status.get("ready"), sum(1 for p in active if is_pod_ready(p))
    )
    if not status.get("startTime"):
        problems.append("status.startTime is not set")
    uncounted = status.get("uncountedTerminatedPods") or {}
    if any(uncounted.values()):
        problems.append(f"pods not counted yet: {uncounted}")
    ended = [
        p
        for p in pods
        if not is_pod_active(p)
        and "batch.kubernetes.io/job-tracking" in (_meta(p).get("finalizers") or ())
    ]
    if ended:
        problems.append(f"ended pods keep the tracking finalizer: {sorted(map(_name, ended))}")
    for c in ("Complete", "Failed"):
        if condition(j, c).get("status") == "True":
            problems.append(f"the Job is {c}")
    return problems


async def job_delete_a_pod(env: ScenarioEnv) -> None:
    await delete_first_pod(env, await active_pods_of(env, JOB, "work"))


async def job_running_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await foreign_pod(env, "work-foreign", {"run": "work"})]


async def job_running_summary(env: ScenarioEnv) -> Any:
    j = await owner_named(env, JOB, "work")
    status = j.get("status") or {}
    return (
        len([p for p in await job_pods(env, "work") if is_pod_active(p)]),
        status.get("active"),
        status.get("succeeded"),
    )


async def job_complete_seed(env: ScenarioEnv) -> None:
    await create_owner(env, job(env, "batch", completions=3, parallelism=2, exit_code="0"))


async def job_complete_check(env: ScenarioEnv) -> list[str]:
    j = await env.get(*JOB, "batch")
    if j is None:
        return ["the Job is gone"]
    problems: list[str] = []
    status = j.get("status") or {}
    if condition(j, "Complete").get("status") != "True":
        problems.append("the Job is not Complete")
    if (status.get("succeeded") or 0) < 3:  # more when two copies overlapped, as upstream
        problems.append(f"status.succeeded is {status.get('succeeded')!r}, want 3 or more")
    compare(problems, "status.active", status.get("active"), 0)
    compare(problems, "status.failed", status.get("failed"), 0)
    if not status.get("completionTime"):
        problems.append("status.completionTime is not set")
    pods = await job_pods(env, "batch")
    held = [
        p for p in pods if "batch.kubernetes.io/job-tracking" in (_meta(p).get("finalizers") or ())
    ]
    if held:
        problems.append(f"pods keep the tracking finalizer: {sorted(map(_name, held))}")
    if any(is_pod_active(p) for p in pods):
        problems.append("a pod of the complete Job is active")
    return problems


async def job_complete_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await foreign_pod(env, "batch-foreign", {"run": "batch"})]


async def job_delete_a_finished_pod(env: ScenarioEnv) -> None:
    await delete_first_pod(env, await job_pods(env, "batch"))


async def job_complete_summary(env: ScenarioEnv) -> Any:
    j = await owner_named(env, JOB, "batch")
    status = j.get("status") or {}
    return (
        status.get("succeeded"),
        status.get("failed"),
        condition(j, "Complete").get("status"),
        len(await job_pods(env, "batch")),
    )


def job_scenarios() -> list[Scenario]:
    companions = lambda: [ConformanceKubelet(), garbage_collector(JOB, POD)]  # noqa: E731
    return [
        Scenario(
            name="running",
            seed=job_running_seed,
            check=job_running_check,
            perturbations={"delete-a-pod": job_delete_a_pod},
            foreign=job_running_foreign,
            flip=flip_spec(JOB, "work", "parallelism", 3, 2),
            flip_cost=8,
            owner=owned(JOB, "work", POD),
            summary=job_running_summary,
            companions=companions,
        ),
        Scenario(
            name="complete",
            seed=job_complete_seed,
            check=job_complete_check,
            perturbations={"delete-a-finished-pod": job_delete_a_finished_pod},
            foreign=job_complete_foreign,
            owner=owned(JOB, "batch", POD),
            summary=job_complete_summary,
            companions=companions,
        ),
    ]


# -- CronJob -----------------------------------------------------------------------------------

EVERY = 600
"""The CronJob scenario's schedule: every ten minutes."""


async def cron_seed(env: ScenarioEnv) -> None:
    await create_owner(
        env,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": env.namespace},
            "spec": {
                "schedule": "*/10 * * * *",
                "timeZone": "UTC",
                "jobTemplate": {
                    "spec": {"template": pod_template({"run": "tick"}, restart_policy="Never")}
                },
            },
        },
    )
    # To 30 seconds past the next ten-minute mark: one run is due.
    now = env.clock()
    env.clock.advance(math.floor(now / EVERY) * EVERY + EVERY + 30 - now)
    env.data["due"] = math.floor(env.clock() / EVERY) * EVERY


async def cron_jobs(env: ScenarioEnv) -> list[Obj]:
    cj = await owner_named(env, CRONJOB, "tick")
    return controlled_by(await env.list(*JOB), _uid(cj))


async def cron_check(env: ScenarioEnv) -> list[str]:
    cj = await env.get(*CRONJOB, "tick")
    if cj is None:
        return ["the CronJob is gone"]
    problems: list[str] = []
    due = int(env.data["due"])
    status = cj.get("status") or {}
    if parse_time(status.get("lastScheduleTime")) != due:
        problems.append(
            f"status.lastScheduleTime is {status.get('lastScheduleTime')!r}, want {_rfc3339(due)}"
        )
    jobs = await cron_jobs(env)
    names = sorted(map(_name, jobs))
    want = [] if env.data.get("job-deleted") else [f"tick-{due // 60}"]
    if names != want:
        problems.append(f"Jobs {names}, want {want}")
    active = sorted(r.get("uid") for r in status.get("active") or ())
    running = sorted(
        _uid(j)
        for j in jobs
        if not any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in (j.get("status") or {}).get("conditions") or ()
        )
    )
    if active != running:
        problems.append(f"status.active lists {len(active)} Jobs, {len(running)} run")
    return problems


async def cron_delete_the_job(env: ScenarioEnv) -> None:
    env.data["job-deleted"] = True
    for j in await cron_jobs(env):
        await env.api.delete(*JOB, _name(j), env.namespace)


async def cron_foreign(env: ScenarioEnv) -> list[Obj]:
    template = pod_template({"run": "tick"}, restart_policy="Never")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "tick-foreign"}}
    return [await create_foreign(env, {**job, "spec": {"template": template}})]


async def cron_summary(env: ScenarioEnv) -> Any:
    cj = await owner_named(env, CRONJOB, "tick")
    status = cj.get("status") or {}
    return (
        len(await cron_jobs(env)),
        len(status.get("active") or ()),
        parse_time(status.get("lastScheduleTime")) == env.data["due"],
    )


def cronjob_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="tick",
            seed=cron_seed,
            check=cron_check,
            perturbations={"delete-the-job": cron_delete_the_job},
            foreign=cron_foreign,
            flip=flip_spec(CRONJOB, "tick", "suspend", True, False),
            flip_cost=3,
            owner=owned(CRONJOB, "tick", JOB),
            summary=cron_summary,
            companions=lambda: [garbage_collector(CRONJOB, JOB)],
            quiet_for=300.0,
        )
    ]


# -- garbage collector -------------------------------------------------------------------------

GHOST_UID = "00000000-0000-4000-8000-00000000dead"


def ghost_ref(name: str = "ghost") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": GHOST_UID}


def configmap(env: ScenarioEnv, name: str, *refs: dict[str, Any]) -> Obj:
    meta: dict[str, Any] = {"name": name, "namespace": env.namespace}
    if refs:
        meta["ownerReferences"] = list(refs)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


async def gc_seed(env: ScenarioEnv) -> None:
    owner = await create_owner(env, configmap(env, "owner"))
    ref = {**owner_reference(owner), "controller": False}
    for i in range(3):
        await env.api.create(configmap(env, f"dep-{i}", ref))
    for i in range(2):
        await env.api.create(configmap(env, f"garbage-{i}", ghost_ref()))
    await env.api.create(configmap(env, "two-owners", ref, ghost_ref()))


async def gc_check(env: ScenarioEnv) -> list[str]:
    objs = await env.list(*CONFIGMAP) + await env.list(*SECRET)
    uids = {_uid(o) for o in objs}
    problems: list[str] = []
    for o in objs:
        dangling = [
            r.get("name") for r in _meta(o).get("ownerReferences") or () if r.get("uid") not in uids
        ]
        if dangling:
            problems.append(f"{o['kind']} {_name(o)} still refers to absent owners {dangling}")
    names = {_name(o) for o in objs}
    for name in ("owner", "dep-0", "dep-1", "dep-2", "two-owners"):
        if name not in names:
            problems.append(f"{name}, whose owner exists, was deleted")
    return problems


async def gc_new_garbage(env: ScenarioEnv) -> None:
    await env.api.create(configmap(env, "garbage-late", ghost_ref()))


async def gc_owner_goes(env: ScenarioEnv) -> None:
    owner = await env.api.create(configmap(env, "short-lived"))
    await env.api.create(configmap(env, "short-lived-dep", owner_reference(owner)))
    await env.api.delete(*CONFIGMAP, "short-lived", env.namespace)


async def gc_foreign(env: ScenarioEnv) -> list[Obj]:
    owner = await owner_named(env, CONFIGMAP, "owner")
    return [
        await env.api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "held",
                    "namespace": env.namespace,
                    "ownerReferences": [owner_reference(owner)],
                },
                "type": "Opaque",
            }
        )
    ]


async def gc_summary(env: ScenarioEnv) -> Any:
    objs = await env.list(*CONFIGMAP)
    return sorted((_name(o), len(_meta(o).get("ownerReferences") or ())) for o in objs)


def garbage_collector_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="owners",
            seed=gc_seed,
            check=gc_check,
            perturbations={"new-garbage": gc_new_garbage, "an-owner-goes": gc_owner_goes},
            foreign=gc_foreign,
            flip=flip_label(CONFIGMAP, "owner"),
            flip_cost=1,
            owner=owned(CONFIGMAP, "owner", CONFIGMAP),
            summary=gc_summary,
        )
    ]


# -- namespace ---------------------------------------------------------------------------------


async def fill_namespace(env: ScenarioEnv, namespace: str) -> None:
    await env.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    await env.api.create(
        {**configmap(env, "settings"), "metadata": {"name": "settings", "namespace": namespace}}
    )
    await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "token", "namespace": namespace},
            "type": "Opaque",
        }
    )
    pod = loose_pod(env, "app", {"app": "app"})
    pod["metadata"]["namespace"] = namespace
    await env.api.create(pod)


async def doom(env: ScenarioEnv, namespace: str) -> None:
    await fill_namespace(env, namespace)
    env.data.setdefault("doomed", []).append(namespace)
    await env.api.delete(*NAMESPACE, namespace)


async def ns_seed(env: ScenarioEnv) -> None:
    await doom(env, "conformance-doomed")
    await fill_namespace(env, "conformance-kept")
    kept = await owner_named(env, NAMESPACE, "conformance-kept")
    env.data["owner"] = _uid(kept)


async def ns_check(env: ScenarioEnv) -> list[str]:
    problems = []
    for namespace in env.data.get("doomed", ()):
        ns = await env.get(*NAMESPACE, namespace, None)
        if ns is not None:
            left = []
            for kind in (CONFIGMAP, SECRET, POD):
                left += [f"{kind[1]} {_name(o)}" for o in await env.list(*kind, namespace)]
            problems.append(f"namespace {namespace} is still there, holding {left}")
    if await env.get(*CONFIGMAP, "settings", "conformance-kept") is None:
        problems.append("the content of a live namespace was deleted")
    return problems


async def ns_another(env: ScenarioEnv) -> None:
    await doom(env, "conformance-doomed-2")


async def ns_foreign(env: ScenarioEnv) -> list[Obj]:
    return [
        await env.api.create(
            {
                **configmap(env, "precious"),
                "metadata": {"name": "precious", "namespace": "conformance-kept"},
            }
        )
    ]


async def ns_dependents(env: ScenarioEnv) -> list[Obj]:
    if await env.get(*NAMESPACE, "conformance-kept", None) is None:
        return []
    out = []
    for kind in (CONFIGMAP, SECRET, POD):
        out += await env.list(*kind, "conformance-kept")
    return out


async def ns_summary(env: ScenarioEnv) -> Any:
    return sorted(_name(n) for n in await env.list(*NAMESPACE, None))


def namespace_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="doomed",
            seed=ns_seed,
            check=ns_check,
            perturbations={"another-namespace-deleted": ns_another},
            foreign=ns_foreign,
            flip=flip_label(NAMESPACE, "conformance-kept", namespace=None),
            flip_cost=1,
            owner=OwnerDeletion(
                owner=lambda env: owner_named(env, NAMESPACE, "conformance-kept"),
                dependents=ns_dependents,
            ),
            summary=ns_summary,
            companions=lambda: [garbage_collector(NAMESPACE, POD, SECRET)],
        )
    ]


# -- node lifecycle ----------------------------------------------------------------------------

LEASE_NS = "kube-node-lease"


async def heartbeating_node(env: ScenarioEnv, name: str, **spec: Any) -> None:
    n = await ready_node(env, name, **spec)
    await env.api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": LEASE_NS,
                "ownerReferences": [owner_reference(n)],
            },
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 40,
                "renewTime": env.stamp(micro=True),
            },
        }
    )
    env.data.setdefault("alive", []).append(name)


async def renew_leases(env: ScenarioEnv) -> None:
    for name in env.data.get("alive", ()):
        try:
            await env.api.patch(
                *LEASE, name, {"spec": {"renewTime": env.stamp(micro=True)}}, namespace=LEASE_NS
            )
        except NotFound:
            pass


async def bound_pod(
    env: ScenarioEnv, name: str, node_name: str, *, ready: bool = True, **spec: Any
) -> Obj:
    """A pod on ``node_name``; ``ready``: Running and Ready, as its kubelet said once
    (a status written after a controller acted on the pod would overwrite what it did)."""
    pod = loose_pod(env, name, {"app": name})
    pod["spec"].update(nodeName=node_name, **spec)
    created = await env.api.create(pod)
    if ready:
        await set_pod_status(env, created, ready_status(env))
    return created


async def nl_seed(env: ScenarioEnv) -> None:
    for name in ("n1", "n2", "n3"):
        await heartbeating_node(env, name)
    env.data["alive"].remove("n3")  # its node agent stops here
    n3 = await owner_named(env, NODE, "n3")
    env.data["owner"] = _uid(n3)
    await bound_pod(env, "on-n1", "n1")
    await bound_pod(env, "on-n3", "n3")


def _taints(n: Obj) -> set[tuple[str, str]]:
    return {(t.get("key"), t.get("effect")) for t in (n.get("spec") or {}).get("taints") or ()}


async def nl_check(env: ScenarioEnv) -> list[str]:
    problems: list[str] = []
    for n in await env.list(*NODE, None):
        name = _name(n)
        ready = condition(n, "Ready").get("status")
        taints = {t for t in _taints(n) if t[0].startswith("node.kubernetes.io/")}
        if name in env.data["alive"]:
            want = {(UNSCHEDULABLE, "NoSchedule")} if n["spec"].get("unschedulable") else set()
            if ready != "True":
                problems.append(f"live node {name} is Ready {ready!r}")
        else:
            want = {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
            if ready != "Unknown":
                problems.append(f"silent node {name} is Ready {ready!r}, want Unknown")
        if taints != want:
            problems.append(f"node {name} has taints {sorted(taints)}, want {sorted(want)}")
    for p in await env.list(*POD):
        node_name = (p.get("spec") or {}).get("nodeName")
        if node_name and node_name not in env.data["alive"] and is_pod_ready(p):
            problems.append(f"pod {_name(p)} on a silent node is still Ready")
    return problems


async def nl_untaint(env: ScenarioEnv) -> None:
    await env.api.patch(*NODE, "n3", {"spec": {"taints": []}})


async def nl_pod_ready_again(env: ScenarioEnv) -> None:
    """A stale status write: Ready since before the node went silent (a later one would
    be its kubelet's, which wins)."""
    pod = await owner_named(env, POD, "on-n3")
    status = ready_status(env)
    for c in status["conditions"]:
        c["lastTransitionTime"] = env.stamp(-3600)
    await set_pod_status(env, pod, status)


async def nl_foreign(env: ScenarioEnv) -> list[Obj]:
    await heartbeating_node(
        env, "n4", taints=[{"key": "example.com/dedicated", "value": "db", "effect": "NoSchedule"}]
    )
    return [await owner_named(env, NODE, "n4"), await owner_named(env, POD, "on-n1")]


async def nl_summary(env: ScenarioEnv) -> Any:
    nodes = await env.list(*NODE, None)
    return sorted(
        (_name(n), condition(n, "Ready").get("status"), sorted(_taints(n))) for n in nodes
    )


def node_lifecycle_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="silent-node",
            seed=nl_seed,
            check=nl_check,
            perturbations={
                "untaint-the-silent-node": nl_untaint,
                "its-pod-ready-again": nl_pod_ready_again,
            },
            foreign=nl_foreign,
            flip=flip_spec(NODE, "n1", "unschedulable", True, False, namespace=None),
            flip_cost=4,
            owner=owned(NODE, "n3", LEASE, namespace=LEASE_NS),
            summary=nl_summary,
            companions=lambda: [garbage_collector(NODE, LEASE)],
            on_advance=renew_leases,
            tick=10.0,
            time_to_converge=120.0,
            quiet_for=60.0,
        )
    ]


async def te_seed(env: ScenarioEnv) -> None:
    await heartbeating_node(env, "n1")
    await ready_node(
        env,
        "n3",
        taints=[
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": env.stamp()},
            {"key": UNREACHABLE, "effect": "NoSchedule"},
        ],
    )
    await bound_pod(env, "intolerant", "n3")
    await bound_pod(
        env,
        "brief",
        "n3",
        tolerations=[
            {
                "key": UNREACHABLE,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 30,
            }
        ],
    )
    await bound_pod(
        env,
        "tolerant",
        "n3",
        tolerations=[{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}],
    )
    await bound_pod(env, "elsewhere", "n1")
    env.data["evicted"] = ["intolerant", "brief"]


async def te_check(env: ScenarioEnv) -> list[str]:
    problems: list[str] = []
    pods = {_name(p): p for p in await env.list(*POD)}
    for name in env.data["evicted"]:
        p = pods.get(name)
        if p is None:
            continue
        if not being_deleted(p):
            problems.append(f"pod {name} is not evicted")
        elif (pod_condition(p, "DisruptionTarget") or {}).get("status") != "True":
            problems.append(f"evicted pod {name} has no DisruptionTarget condition")
    for name in ("tolerant", "elsewhere"):
        p = pods.get(name)
        if p is None or being_deleted(p):
            problems.append(f"pod {name}, which tolerates its node, was evicted")
    return problems


async def te_new_pod(env: ScenarioEnv) -> None:
    await bound_pod(env, "latecomer", "n3", ready=False)
    env.data["evicted"].append("latecomer")


async def te_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await bound_pod(env, "bystander", "n1")]


async def te_summary(env: ScenarioEnv) -> Any:
    return sorted((_name(p), being_deleted(p)) for p in await env.list(*POD))


FLAP_TAINT = {"key": "example.com/flap", "effect": "NoSchedule"}


def taint_eviction_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="unreachable-node",
            seed=te_seed,
            check=te_check,
            perturbations={"a-new-intolerant-pod": te_new_pod},
            foreign=te_foreign,
            flip=flip_spec(NODE, "n1", "taints", [FLAP_TAINT], [], namespace=None),
            flip_cost=2,
            summary=te_summary,
            on_advance=renew_leases,
            tick=60.0,
            time_to_converge=420.0,
            quiet_for=60.0,
            missing={
                "owner_deletion": "taint eviction owns nothing: it deletes pods, "
                "whose own controllers replace them"
            },
        )
    ]


__all__ = [
    "EXIT_ANNOTATION",
    "ConformanceKubelet",
    "cronjob_scenarios",
    "daemonset_scenarios",
    "deployment_scenarios",
    "garbage_collector_scenarios",
    "job_scenarios",
    "namespace_scenarios",
    "node_lifecycle_scenarios",
    "replicaset_scenarios",
    "taint_eviction_scenarios",
]


# -- Endpoints and EndpointSlices --------------------------------------------------------------

SERVICE = ("v1", "Service")
ENDPOINTS = ("v1", "Endpoints")
SLICE = ("discovery.k8s.io/v1", "EndpointSlice")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


async def service_pod(
    env: ScenarioEnv,
    name: str,
    ip: str,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    owner: Any = None,
) -> Obj:
    meta: dict[str, Any] = {"name": name, "namespace": env.namespace, "labels": labels or dict(WEB)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    pod = await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": "n1",
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox",
                        "ports": [{"name": "http", "containerPort": 8080}],
                    }
                ],
            },
        }
    )
    await set_pod_status(
        env,
        pod,
        {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    )
    return pod


SERVICES = ("web", "api")
"""The scenario's Services: two selecting the same pods."""


async def service_seed(env: ScenarioEnv) -> None:
    for name in SERVICES:
        svc = await env.api.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": env.namespace, "labels": {"tier": "front"}},
                "spec": {
                    "selector": WEB,
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            }
        )
        env.data.setdefault("owner", _uid(svc))
    await service_pod(env, "web-a", "10.250.9.1")
    await service_pod(env, "web-b", "10.250.9.2")
    await service_pod(env, "web-c", "10.250.9.3", ready=False)
    await service_pod(env, "other", "10.250.9.9", labels={"app": "other"})


async def wanted_endpoints(env: ScenarioEnv, name: str = "web") -> tuple[set[str], set[str]]:
    """The ready and not-ready IPs of the Service's pods."""
    svc = await owner_named(env, SERVICE, name)
    ready, unready = set(), set()
    for p in await env.list(*POD):
        ip = (p.get("status") or {}).get("podIP")
        if (
            not ip
            or not is_pod_active(p)
            or not selector_matches(
                {"spec": {"selector": {"matchLabels": svc["spec"]["selector"]}}}, p
            )
        ):
            continue
        (ready if is_pod_ready(p) else unready).add(ip)
    return ready, unready


async def endpoints_check(env: ScenarioEnv) -> list[str]:
    problems: list[str] = []
    for name in SERVICES:
        problems += await endpoints_check_one(env, name)
    return problems


async def endpoints_check_one(env: ScenarioEnv, name: str) -> list[str]:
    if await env.get(*SERVICE, name) is None:
        return [f"the Service {name} is gone"]
    ep = await env.get(*ENDPOINTS, name)
    if ep is None:
        return [f"no Endpoints {name}"]
    ready, unready = await wanted_endpoints(env, name)
    got_ready, got_unready, ports = set(), set(), []
    for subset in ep.get("subsets") or ():
        got_ready |= {a["ip"] for a in subset.get("addresses") or ()}
        got_unready |= {a["ip"] for a in subset.get("notReadyAddresses") or ()}
        ports += [(p.get("name"), p.get("port")) for p in subset.get("ports") or ()]
    problems: list[str] = []
    if (got_ready, got_unready) != (ready, unready):
        problems.append(
            f"{name}: addresses {sorted(got_ready)} / not ready "
            f"{sorted(got_unready)}, want {sorted(ready)} / {sorted(unready)}"
        )
    if set(ports) != ({("http", 8080)} if ready | unready else set()):
        problems.append(f"{name}: ports {sorted(ports)}, want http 8080")
    if (_meta(ep).get("labels") or {}).get("tier") != "front":
        problems.append(f"{name}: the Endpoints lack the Service's labels")
    return problems


async def ep_delete(env: ScenarioEnv) -> None:
    await env.api.delete(*ENDPOINTS, "web", env.namespace)


async def ep_mangle(env: ScenarioEnv) -> None:
    await env.api.patch(
        *ENDPOINTS,
        "web",
        {"subsets": [{"addresses": [{"ip": "10.250.9.99"}], "ports": [{"port": 1}]}]},
        namespace=env.namespace,
    )


async def pod_unready(env: ScenarioEnv) -> None:
    pod = await owner_named(env, POD, "web-a")
    await set_pod_status(env, pod, {"conditions": [{"type": "Ready", "status": "False"}]})


async def pod_added(env: ScenarioEnv) -> None:
    await service_pod(env, "web-d", "10.250.9.4")


async def pod_deleted(env: ScenarioEnv) -> None:
    await env.api.delete(*POD, "web-b", env.namespace, grace_period_seconds=0)


async def ep_foreign(env: ScenarioEnv) -> list[Obj]:
    await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "manual", "namespace": env.namespace},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    return [
        await env.api.create(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "manual", "namespace": env.namespace},
                "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}],
            }
        )
    ]


async def readiness_flip(env: ScenarioEnv, i: int) -> None:
    pod = await owner_named(env, POD, "web-c")
    ready = "True" if i % 2 == 0 else "False"
    await set_pod_status(env, pod, {"conditions": [{"type": "Ready", "status": ready}]})


async def endpoints_summary(env: ScenarioEnv) -> Any:
    out = []
    for name in SERVICES:
        ep = await env.get(*ENDPOINTS, name)
        out.append(
            sorted(
                (
                    sorted(a["ip"] for a in s.get("addresses") or ()),
                    sorted(a["ip"] for a in s.get("notReadyAddresses") or ()),
                )
                for s in (ep or {}).get("subsets") or ()
            )
        )
    return out


async def endpoints_dependents(env: ScenarioEnv) -> list[Obj]:
    ep = await env.get(*ENDPOINTS, "web")
    return [ep] if ep is not None else []


def endpoints_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="web",
            seed=service_seed,
            check=endpoints_check,
            perturbations={
                "delete-the-endpoints": ep_delete,
                "mangle-the-endpoints": ep_mangle,
                "a-pod-unready": pod_unready,
                "a-pod-added": pod_added,
                "a-pod-deleted": pod_deleted,
            },
            foreign=ep_foreign,
            flip=readiness_flip,
            flip_cost=3,
            owner=OwnerDeletion(
                owner=lambda env: owner_named(env, SERVICE, "web"),
                dependents=endpoints_dependents,
                policies=("Background", "Foreground"),
            ),
            summary=endpoints_summary,
            companions=lambda: [garbage_collector(SERVICE, ENDPOINTS)],
        )
    ]


async def service_slices(env: ScenarioEnv, name: str = "web") -> list[Obj]:
    return await env.list(*SLICE, label_selector=f"{SERVICE_NAME_LABEL}={name}")


async def slices_check(env: ScenarioEnv) -> list[str]:
    problems: list[str] = []
    for name in SERVICES:
        problems += await slices_check_one(env, name)
    return problems


async def slices_check_one(env: ScenarioEnv, name: str) -> list[str]:
    svc = await env.get(*SERVICE, name)
    if svc is None:
        return [f"the Service {name} is gone"]
    slices = await service_slices(env, name)
    problems: list[str] = []
    mine = controlled_by(slices, _uid(svc))
    if len(mine) != 1 or len(slices) != 1:
        problems.append(
            f"{name}: {len(slices)} slices, {len(mine)} controlled by the Service; want 1"
        )
    ready, unready = await wanted_endpoints(env, name)
    got_ready, got_unready, ports = set(), set(), set()
    for s in mine:
        for e in s.get("endpoints") or ():
            target = got_ready if (e.get("conditions") or {}).get("ready") else got_unready
            target |= set(e.get("addresses") or ())
        ports |= {(p.get("name"), p.get("port")) for p in s.get("ports") or ()}
        labels = _meta(s).get("labels") or {}
        if (
            labels.get("endpointslice.kubernetes.io/managed-by")
            != "endpointslice-controller.k8s.io"
        ):
            problems.append(f"slice {_name(s)} lacks the managed-by label")
    if (got_ready, got_unready) != (ready, unready):
        problems.append(
            f"{name}: ready {sorted(got_ready)} / not ready {sorted(got_unready)}, "
            f"want {sorted(ready)} / {sorted(unready)}"
        )
    if ready | unready and ports != {("http", 8080)}:
        problems.append(f"{name}: ports {sorted(ports)}, want http 8080")
    return problems


async def slice_delete(env: ScenarioEnv) -> None:
    for s in await service_slices(env):
        await env.api.delete(*SLICE, _name(s), env.namespace)


async def slice_mangle(env: ScenarioEnv) -> None:
    for s in await service_slices(env):
        await env.api.patch(
            *SLICE,
            _name(s),
            {"endpoints": [{"addresses": ["10.250.9.99"], "conditions": {"ready": True}}]},
            namespace=env.namespace,
        )


async def slice_start_extra(env: ScenarioEnv) -> None:
    """Two slices of the Service already, one of them stale."""
    svc = await owner_named(env, SERVICE, "web")
    for i, ips in enumerate((["10.250.9.1"], ["10.250.9.77"])):
        await env.api.create(
            {
                "apiVersion": SLICE[0],
                "kind": SLICE[1],
                "metadata": {
                    "name": f"web-old-{i}",
                    "namespace": env.namespace,
                    "labels": {
                        SERVICE_NAME_LABEL: "web",
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                    "ownerReferences": [owner_reference(svc)],
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ips, "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )


async def slice_foreign(env: ScenarioEnv) -> list[Obj]:
    return [
        await env.api.create(
            {
                "apiVersion": SLICE[0],
                "kind": SLICE[1],
                "metadata": {
                    "name": "web-by-hand",
                    "namespace": env.namespace,
                    "labels": {
                        SERVICE_NAME_LABEL: "web-by-hand",
                        "endpointslice.kubernetes.io/managed-by": "someone-else",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["192.0.2.10"]}],
            }
        )
    ]


async def slices_summary(env: ScenarioEnv) -> Any:
    return [
        sorted(
            sorted(
                (tuple(e.get("addresses") or ()), (e.get("conditions") or {}).get("ready"))
                for e in s.get("endpoints") or ()
            )
            for s in await service_slices(env, name)
        )
        for name in SERVICES
    ]


def endpointslice_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="web",
            seed=service_seed,
            check=slices_check,
            starts={"extra": slice_start_extra},
            perturbations={
                "delete-the-slice": slice_delete,
                "mangle-the-slice": slice_mangle,
                "a-pod-unready": pod_unready,
                "a-pod-added": pod_added,
                "a-pod-deleted": pod_deleted,
            },
            foreign=slice_foreign,
            flip=readiness_flip,
            flip_cost=3,
            owner=owned(SERVICE, "web", SLICE),
            summary=slices_summary,
            companions=lambda: [garbage_collector(SERVICE, SLICE)],
        )
    ]


# -- certificate signing requests --------------------------------------------------------------

CSR = ("certificates.k8s.io/v1", "CertificateSigningRequest")
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
BOOTSTRAPPER = {
    "username": "system:bootstrap:abcdef",
    "groups": ["system:bootstrappers", "system:authenticated"],
}


def certificate_request(
    name: str,
    cn: str,
    orgs: Sequence[str] = ("system:nodes",),
    *,
    signer: str = KUBELET_SIGNER,
    **spec: Any,
) -> Obj:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    return {
        "apiVersion": CSR[0],
        "kind": CSR[1],
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(pem).decode(),
            "signerName": signer,
            "usages": ["digital signature", "client auth"],
            **spec,
        },
    }


def _conditions(obj: Obj) -> list[str]:
    return [c.get("type") for c in (obj.get("status") or {}).get("conditions") or ()]


async def csr_approving_seed(env: ScenarioEnv) -> None:
    for node_name in ("n1", "n2"):
        await env.api.create(
            certificate_request(f"node-csr-{node_name}", f"system:node:{node_name}", **BOOTSTRAPPER)
        )
    await env.api.create(
        certificate_request(
            "alice", "alice", (), signer=CLIENT_SIGNER, username="alice", groups=["developers"]
        )
    )


async def csr_approving_check(env: ScenarioEnv) -> list[str]:
    problems = []
    for obj in await env.list(*CSR, None):
        conditions = _conditions(obj)
        if _name(obj).startswith("node-csr-"):
            approved = condition(obj, "Approved")
            if conditions != ["Approved"] or approved.get("reason") != "AutoApproved":
                problems.append(f"{_name(obj)} has conditions {conditions}, want AutoApproved")
        elif conditions:
            problems.append(f"{_name(obj)}, which needs a human, has conditions {conditions}")
    return problems


async def csr_another_node(env: ScenarioEnv) -> None:
    await env.api.create(certificate_request("node-csr-n3", "system:node:n3", **BOOTSTRAPPER))


async def csr_foreign(env: ScenarioEnv) -> list[Obj]:
    return [
        await env.api.create(
            certificate_request(
                "impostor", "system:node:n9", username="mallory", groups=["system:authenticated"]
            )
        )
    ]


async def csr_summary(env: ScenarioEnv) -> Any:
    return sorted(
        (_name(o), _conditions(o), bool((o.get("status") or {}).get("certificate")))
        for o in await env.list(*CSR, None)
    )


async def approve(env: ScenarioEnv, name: str) -> None:
    obj = await owner_named(env, CSR, name)
    stamp = env.stamp()
    obj.setdefault("status", {})["conditions"] = [
        {
            "type": "Approved",
            "status": "True",
            "reason": "ByHand",
            "message": "ok",
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
        }
    ]
    info = env.api.resource(*CSR)
    await env.api.transport.update(info, None, name, obj, subresource="approval", dry_run=False)


async def csr_signing_seed(env: ScenarioEnv) -> None:
    assert env.settings is not None
    pki = Path(env.settings.data_dir) / "pki"
    if not (pki / "ca.key").exists():
        pki.mkdir(parents=True, exist_ok=True)
        create_ca(pki / "ca.crt", pki / "ca.key")
    await env.api.create(certificate_request("node-csr-n1", "system:node:n1", **BOOTSTRAPPER))
    await env.api.create(
        certificate_request(
            "alice", "alice", (), signer=CLIENT_SIGNER, username="alice", groups=["developers"]
        )
    )
    await env.api.create(certificate_request("bad-node", "not-a-node", (), **BOOTSTRAPPER))
    await env.api.create(
        certificate_request("pending", "bob", (), signer=CLIENT_SIGNER, username="bob")
    )
    for name in ("node-csr-n1", "alice", "bad-node"):
        await approve(env, name)


async def csr_signing_check(env: ScenarioEnv) -> list[str]:
    import base64

    from cryptography import x509

    assert env.settings is not None
    ca = x509.load_pem_x509_certificate((env.settings.data_dir / "pki" / "ca.crt").read_bytes())
    problems = []
    for obj in await env.list(*CSR, None):
        name, status = _name(obj), obj.get("status") or {}
        if (obj.get("spec") or {}).get("signerName") not in (KUBELET_SIGNER, CLIENT_SIGNER):
            if status.get("certificate") or "Failed" in _conditions(obj):
                problems.append(f"{name}, for another signer, was signed or failed")
        elif name == "bad-node":
            if "Failed" not in _conditions(obj) or status.get("certificate"):
                problems.append(f"{name} is not Failed ({_conditions(obj)})")
        elif "Approved" in _conditions(obj):
            if not status.get("certificate"):
                problems.append(f"approved {name} has no certificate")
                continue
            cert = x509.load_pem_x509_certificate(base64.b64decode(status["certificate"]))
            try:
                cert.verify_directly_issued_by(ca)
            except Exception as exc:
                problems.append(f"{name}'s certificate is not the CA's: {exc}")
        elif status.get("certificate") or "Failed" in _conditions(obj):
            problems.append(f"{name}, not approved, was signed or failed")
    return problems


async def csr_late_approval(env: ScenarioEnv) -> None:
    await approve(env, "pending")


async def csr_signing_foreign(env: ScenarioEnv) -> list[Obj]:
    await env.api.create(
        certificate_request("elsewhere", "carol", (), signer="example.com/other", username="carol")
    )
    await approve(env, "elsewhere")
    return [await owner_named(env, CSR, "elsewhere")]


def csr_approving_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="bootstrap",
            seed=csr_approving_seed,
            check=csr_approving_check,
            perturbations={"another-node-asks": csr_another_node},
            foreign=csr_foreign,
            flip=flip_label(CSR, "alice", namespace=None),
            flip_cost=1,
            summary=csr_summary,
            missing={"owner_deletion": "certificate signing requests have no owner"},
        )
    ]


def csr_signing_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="approved",
            seed=csr_signing_seed,
            check=csr_signing_check,
            perturbations={"a-late-approval": csr_late_approval},
            foreign=csr_signing_foreign,
            flip=flip_label(CSR, "alice", namespace=None),
            flip_cost=1,
            summary=csr_summary,
            missing={"owner_deletion": "certificate signing requests have no owner"},
        )
    ]


# -- pod garbage collection --------------------------------------------------------------------


async def podgc_seed(env: ScenarioEnv) -> None:
    await ready_node(env, "n1")
    await bound_pod(env, "stays", "n1")
    await bound_pod(env, "lost-1", "gone")
    await bound_pod(env, "lost-2", "gone")


async def podgc_check(env: ScenarioEnv) -> list[str]:
    nodes = {_name(n) for n in await env.list(*NODE, None)}
    problems = []
    for p in await env.list(*POD):
        node_name = (p.get("spec") or {}).get("nodeName")
        if node_name and node_name not in nodes:
            problems.append(f"pod {_name(p)} of the absent node {node_name} is still there")
    if await env.get(*POD, "stays") is None:
        problems.append("pod stays, whose node exists, was collected")
    return problems


async def podgc_another(env: ScenarioEnv) -> None:
    await bound_pod(env, "lost-3", "gone")


async def podgc_node_goes(env: ScenarioEnv) -> None:
    await ready_node(env, "n2")
    await bound_pod(env, "on-n2", "n2")
    await env.api.delete(*NODE, "n2")


async def podgc_foreign(env: ScenarioEnv) -> list[Obj]:
    return [await bound_pod(env, "bystander", "n1")]


async def podgc_summary(env: ScenarioEnv) -> Any:
    return sorted(_name(p) for p in await env.list(*POD))


def podgc_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="lost-pods",
            seed=podgc_seed,
            check=podgc_check,
            perturbations={"another-lost-pod": podgc_another, "a-node-goes": podgc_node_goes},
            foreign=podgc_foreign,
            flip=flip_label(NODE, "n1", namespace=None),
            flip_cost=1,
            summary=podgc_summary,
            tick=20.0,
            time_to_converge=120.0,
            missing={"owner_deletion": "the pod garbage collector owns nothing"},
        )
    ]


# -- node IPAM ---------------------------------------------------------------------------------


async def ipam_seed(env: ScenarioEnv) -> None:
    for name in ("n1", "n2", "n3"):
        await env.api.create(node(name))


async def ipam_check(env: ScenarioEnv) -> list[str]:
    from ipaddress import ip_network

    problems, seen = [], {}
    for n in await env.list(*NODE, None):
        spec = n.get("spec") or {}
        cidr = spec.get("podCIDR")
        if not cidr:
            problems.append(f"node {_name(n)} has no podCIDR")
            continue
        if spec.get("podCIDRs") != [cidr]:
            problems.append(f"node {_name(n)}: podCIDRs {spec.get('podCIDRs')} != [{cidr}]")
        net = ip_network(cidr)
        for other, taken in seen.items():
            if net.overlaps(taken):
                problems.append(f"nodes {_name(n)} and {other} share {cidr}")
        seen[_name(n)] = net
    return problems


async def ipam_add_node(env: ScenarioEnv) -> None:
    await env.api.create(node("n4"))


async def ipam_foreign(env: ScenarioEnv) -> list[Obj]:
    return [
        await env.api.create(
            {
                **node("by-hand"),
                "spec": {"podCIDR": "10.244.200.0/24", "podCIDRs": ["10.244.200.0/24"]},
            }
        )
    ]


async def ipam_summary(env: ScenarioEnv) -> Any:
    return sorted(bool((n.get("spec") or {}).get("podCIDR")) for n in await env.list(*NODE, None))


def nodeipam_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="nodes",
            seed=ipam_seed,
            check=ipam_check,
            perturbations={"a-node-joins": ipam_add_node},
            foreign=ipam_foreign,
            flip=flip_label(NODE, "n1", namespace=None),
            flip_cost=1,
            summary=ipam_summary,
            missing={"owner_deletion": "node IPAM owns nothing: a podCIDR is part of its Node"},
        )
    ]
