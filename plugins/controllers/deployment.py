"""The Deployment controller: roll a pod template out through ReplicaSets.

As Kubernetes' ``pkg/controller/deployment`` (the function names below are upstream's):

* **ReplicaSets.** A Deployment claims the ReplicaSets of its namespace as a ReplicaSet
  claims pods (:class:`~kcore.controllers.ControllerRefManager`: adopt matching orphans,
  release those that stop matching, leave other controllers' alone). The *new* ReplicaSet
  is the oldest one whose template equals the Deployment's, ignoring the
  ``pod-template-hash`` label; all others are *old*. A new one is named
  ``<deployment>-<hash>``, where the hash is FNV-32a of the template (canonical JSON here;
  Go's object dump upstream) and ``status.collisionCount``, spelled with Kubernetes'
  ``SafeEncodeString``; the hash is added to its labels, selector and template labels.
* **Annotations** (``deployment.kubernetes.io/``): ``revision`` (the highest old revision
  plus one; also written to the Deployment), ``revision-history`` (the revisions a reused
  ReplicaSet had, when a rollback brings it back), ``desired-replicas`` and
  ``max-replicas`` (replicas and replicas + surge when the ReplicaSet was last scaled);
  the Deployment's own annotations are copied to its new ReplicaSet (not
  ``last-applied-configuration``), so ``kubernetes.io/change-cause`` reaches
  ``kubectl rollout history``.
* **RollingUpdate.** ``maxSurge`` rounds up, ``maxUnavailable`` down, and when both come
  to 0 one pod may be unavailable. The new ReplicaSet grows while the ReplicaSets' replicas
  sum to less than replicas + surge; old ReplicaSets shrink (oldest first, their unhealthy
  pods first) while the available pods stay at least replicas - unavailable. A ReplicaSet
  counts as many available pods as its status says, but never more than its replicas, so
  a status that lags a scale-down cannot over-count.
* **Recreate.** Old ReplicaSets go to 0; once none of their pods exist (or all ended) the
  new ReplicaSet is created at full size.
* **Scaling** (``spec.replicas`` differs from a ReplicaSet's ``desired-replicas``, or the
  Deployment is paused): one active ReplicaSet takes the new size; several share it in
  proportion to their sizes (``max-replicas`` before, replicas + surge now), leftovers to
  the largest. Event ``ScalingReplicaSet`` "Scaled up replica set X from 0 to 3".
* **Paused**: scaling works, the template waits; condition Progressing Unknown
  ``DeploymentPaused`` / ``DeploymentResumed``. **Rollback** is what ``kubectl rollout
  undo`` does client-side: it patches an old ReplicaSet's template into the Deployment,
  which makes that ReplicaSet the new one again, with the next revision.
* **History**: beyond ``revisionHistoryLimit`` (10), old ReplicaSets scaled to 0 and
  settled are deleted, lowest revision first, once a rollout completes (or while paused).
* **Status**: ``observedGeneration``, ``replicas`` (pods of all ReplicaSets),
  ``updatedReplicas`` (of the new one), ``readyReplicas``, ``availableReplicas``,
  ``unavailableReplicas`` (replicas wanted minus available), ``collisionCount``;
  conditions Available (``MinimumReplicasAvailable``/``MinimumReplicasUnavailable``),
  Progressing (``NewReplicaSetCreated``, ``FoundNewReplicaSet``, ``ReplicaSetUpdated``,
  ``NewReplicaSetAvailable``; False ``ProgressDeadlineExceeded`` once
  ``progressDeadlineSeconds`` pass without progress, checked again by requeueing at the
  deadline) and ReplicaFailure (copied from the ReplicaSets). Written only when it changed,
  so a converged Deployment costs no writes. All times come from the controller's clock.

Unlike upstream, where a status write may carry annotations, kcore's status subresource
keeps metadata as it is: the ``revision`` annotation is a separate metadata patch
(conditional on the resourceVersion).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from kcore.controllers import (
    DELETED,
    MODIFIED,
    ControllerRefManager,
    LabelSelector,
    Reconciler,
    ResourceEvent,
    being_deleted,
    controller_ref,
    from_label_selector_object,
    is_controlled_by,
    make_key,
    owner_reference,
    parse_time,
    ref_matches_kind,
)
from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    KcoreError,
    NotFound,
    PermanentError,
)
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.deployment")

DEPLOYMENT = ("apps/v1", "Deployment")
RS = ("apps/v1", "ReplicaSet")
POD = ("v1", "Pod")

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ANNOTATIONS_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
"""Deployment annotations that are not copied to its ReplicaSets (upstream's
``annotationsToSkip``)."""
MAX_REVISION_HISTORY_CHARS = 2000
MAX_INT32 = 2**31 - 1
"""``progressDeadlineSeconds`` or ``revisionHistoryLimit`` of this much mean "none"."""

# Condition types and reasons (upstream's deploymentutil constants).
AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"

Obj = dict[str, Any]


# -- pure helpers (upstream's deployment_util.go) ------------------------------------------


def safe_encode_string(s: str) -> str:
    """Kubernetes' ``rand.SafeEncodeString``: each character mapped into an alphabet with
    no vowels (no bad words) and no look-alikes."""
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in s)


def fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Any, collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of ``template``: FNV-32a of its canonical JSON, then of
    ``collision_count`` (8 bytes, little-endian uint32) when set, as ``SafeEncodeString`` of
    the decimal value."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    h = fnv32a(data.encode())
    if collision_count is not None:
        h = fnv32a((int(collision_count) & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode_string(str(h))


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """``GetScaledValueFromIntOrPercent``: an int as is, ``"N%"`` of ``total`` rounded up
    or down."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise PermanentError(f"invalid int or percentage: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError:
            raise PermanentError(f"invalid percentage: {value!r}") from None
        return -(-percent * total // 100) if round_up else percent * total // 100
    if text.isdigit():
        return int(text)
    raise PermanentError(f"invalid int or percentage: {value!r}")


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """``(surge, unavailable)``: surge rounds up, unavailable down; both 0 means 1
    unavailable, so a rollout can always move."""
    surge = scaled_value(max_surge if max_surge is not None else 0, desired, True)
    unavailable = scaled_value(
        max_unavailable if max_unavailable is not None else 0, desired, False
    )
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _meta(obj: Obj) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _annotations(obj: Obj) -> dict[str, str]:
    return _meta(obj).get("annotations") or {}


def replicas_of(obj: Obj) -> int:
    replicas = _spec(obj).get("replicas")
    return 1 if replicas is None else int(replicas)


def _status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def is_rolling_update(d: Obj) -> bool:
    return ((_spec(d).get("strategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"


def _rolling(d: Obj) -> dict[str, Any]:
    return (_spec(d).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    rolling = _rolling(d)
    return resolve_fenceposts(
        rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"), replicas_of(d)
    )[0]


def max_unavailable(d: Obj) -> int:
    replicas = replicas_of(d)
    if not is_rolling_update(d) or replicas == 0:
        return 0
    rolling = _rolling(d)
    _, unavailable = resolve_fenceposts(
        rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"), replicas
    )
    return min(unavailable, replicas)


def has_progress_deadline(d: Obj) -> bool:
    deadline = _spec(d).get("progressDeadlineSeconds")
    return deadline is not None and deadline != MAX_INT32


def has_revision_history_limit(d: Obj) -> bool:
    limit = _spec(d).get("revisionHistoryLimit")
    return limit is not None and limit != MAX_INT32


def revision_of(rs: Obj) -> int:
    try:
        return int(_annotations(rs).get(REVISION, "0") or 0)
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision_of(rs) for rs in rss), default=0)


def _prune(value: Any) -> Any:
    """``value`` without empty maps, lists and nulls (nil and empty are equal in Go)."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def template_without_hash(template: Any) -> dict[str, Any]:
    out = copy.deepcopy(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
    return _prune(out)


def equal_ignore_hash(t1: Any, t2: Any) -> bool:
    """Templates equal but for the ``pod-template-hash`` label (``EqualIgnoreHash``)."""
    return template_without_hash(t1) == template_without_hash(t2)


def _created(obj: Obj) -> float:
    return parse_time(_meta(obj).get("creationTimestamp")) or 0.0


def by_creation(rss: Iterable[Obj]) -> list[Obj]:
    """Oldest first, then by name (``ReplicaSetsByCreationTimestamp``)."""
    return sorted(rss, key=lambda rs: (_created(rs), _meta(rs).get("name", "")))


def by_revision(rss: Iterable[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda rs: (revision_of(rs), _created(rs), _meta(rs).get("name", "")))


def by_size(rss: Iterable[Obj], newer_first: bool) -> list[Obj]:
    """Largest first; equal sizes newer first (scaling up) or older first (scaling down)."""
    ordered = by_creation(rss)
    if newer_first:
        ordered.reverse()
    return sorted(ordered, key=lambda rs: -replicas_of(rs))  # stable: keeps the tie order


def active(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas_of(rs) > 0]


def replica_count(rss: Iterable[Obj | None]) -> int:
    """Σ ``spec.replicas``."""
    return sum(replicas_of(rs) for rs in rss if rs is not None)


def status_count(rss: Iterable[Obj | None], field: str) -> int:
    return sum(_status_int(rs, field) for rs in rss if rs is not None)


def available_for_decisions(rs: Obj | None) -> int:
    """The pods of ``rs`` a scale-down may rely on: its status' available pods, but never
    more than it is meant to have (its status may not have caught up with a scale-down)."""
    if rs is None:
        return 0
    return max(0, min(_status_int(rs, "availableReplicas"), replicas_of(rs)))


def find_new_replica_set(d: Obj, rss: Iterable[Obj]) -> Obj | None:
    template = _spec(d).get("template")
    for rs in by_creation(rss):
        if equal_ignore_hash(_spec(rs).get("template"), template):
            return rs
    return None


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now (``NewRSNewReplicas``)."""
    if not is_rolling_update(d):
        return replicas_of(d)
    replicas = replicas_of(d)
    surge = scaled_value(_rolling(d).get("maxSurge", "25%"), replicas, True)
    current = replica_count(all_rss)
    max_total = replicas + surge
    if current >= max_total:
        return replicas_of(new_rs)
    scale_up = min(max_total - current, replicas - replicas_of(new_rs))
    return replicas_of(new_rs) + scale_up


def _int_annotation(rs: Obj, name: str) -> int | None:
    value = _annotations(rs).get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = _int_annotation(rs, DESIRED_REPLICAS)
    replicas = replicas_of(d)
    return (
        desired == replicas
        and replicas_of(rs) == replicas
        and _status_int(rs, "availableReplicas") == replicas
    )


def replica_set_fraction(rs: Obj, d: Obj) -> int:
    """What ``rs`` gets of a resize, before capping (``getReplicaSetFraction``)."""
    replicas = replicas_of(d)
    if replicas == 0:
        return -replicas_of(rs)
    new_max = replicas + max_surge(d)
    old_max = _int_annotation(rs, MAX_REPLICAS)
    if not old_max:
        old_max = _status_int(d, "replicas")
        if old_max == 0:
            return 0
    size = replicas_of(rs) * new_max / old_max
    rounded = math.floor(size + 0.5) if size >= 0 else -math.floor(-size + 0.5)  # Go's Round
    return rounded - replicas_of(rs)


def replica_set_proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if replicas_of(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == type_:
            return cond
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> Obj:
    stamp = _rfc3339(now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def set_condition(status: dict[str, Any], condition: Obj) -> None:
    """``SetDeploymentCondition``: same status and reason changes nothing; same status
    keeps the transition time."""
    current = get_condition(status, condition["type"])
    if (
        current is not None
        and current.get("status") == condition["status"]
        and current.get("reason") == condition["reason"]
    ):
        return
    if current is not None and current.get("status") == condition["status"]:
        condition["lastTransitionTime"] = current.get("lastTransitionTime")
    remove_condition(status, condition["type"])
    status.setdefault("conditions", []).append(condition)


def remove_condition(status: dict[str, Any], type_: str) -> None:
    conditions = [c for c in status.get("conditions") or () if c.get("type") != type_]
    status["conditions"] = conditions


def deployment_complete(d: Obj, status: dict[str, Any]) -> bool:
    replicas = replicas_of(d)
    return (
        int(status.get("updatedReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas
        and int(status.get("availableReplicas") or 0) == replicas
        and int(status.get("observedGeneration") or 0) >= int(_meta(d).get("generation") or 0)
    )


def deployment_progressing(d: Obj, status: dict[str, Any]) -> bool:
    old = d.get("status") or {}

    def get(s: dict[str, Any], field: str) -> int:
        return int(s.get(field) or 0)

    old_old = get(old, "replicas") - get(old, "updatedReplicas")
    new_old = get(status, "replicas") - get(status, "updatedReplicas")
    return (
        get(status, "updatedReplicas") > get(old, "updatedReplicas")
        or new_old < old_old
        or get(status, "readyReplicas") > get(old, "readyReplicas")
        or get(status, "availableReplicas") > get(old, "availableReplicas")
    )


_STATUS_INTS = (
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
)


def _normal_status(status: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in status.items() if v not in (None, [], {})}
    for field in _STATUS_INTS:
        if not out.get(field):
            out.pop(field, None)
    return out


def _status_equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return _normal_status(a or {}) == _normal_status(b or {})


# -- the controller ------------------------------------------------------------------------


class DeploymentController(Reconciler):
    name = "deployment-controller"
    kinds = (DEPLOYMENT, RS, POD)

    conformance = scenarios("deployment_scenarios")

    _superseded: dict[str, set[str]]
    """Per key, resourceVersions of the Deployment that our own writes replaced: while the
    cache holds one of them, a sync could only conflict, and the event of our write is on
    its way (it requeues the key)."""

    async def setup(self) -> None:
        self._superseded = {}

    # -- events ---------------------------------------------------------------------------

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        kind = (event.api_version, event.kind)
        if kind == DEPLOYMENT:
            return [event.key]
        obj, old = event.obj, event.old
        if event.type == MODIFIED and old is not None:
            if _meta(old).get("resourceVersion") == _meta(obj).get("resourceVersion"):
                return []  # a resync: nothing changed
        if kind == POD:
            return self._keys_for_pod(event)
        keys = list(super().keys_for(event))
        if controller_ref(obj) is None and event.type != DELETED and not being_deleted(obj):
            labels_changed = old is not None and (_meta(old).get("labels") or {}) != (
                _meta(obj).get("labels") or {}
            )
            ref_dropped = old is not None and controller_ref(old) is not None
            if old is None or labels_changed or ref_dropped:
                keys += [k for k in self.selecting(DEPLOYMENT, obj) if k not in keys]
        return keys

    def _keys_for_pod(self, event: ResourceEvent) -> list[str]:
        """A Recreate rollout waits for the old pods to go: their end wakes it up."""
        pod = event.obj
        phase = (pod.get("status") or {}).get("phase")
        ended = event.type == DELETED or (
            phase in ("Succeeded", "Failed")
            and ((event.old or {}).get("status") or {}).get("phase") != phase
        )
        if not ended:
            return []
        ref = controller_ref(pod)
        if ref is None or not ref_matches_kind(ref, *RS):
            return []
        rs = self.informers.get(*RS, ref.get("name", ""), _meta(pod).get("namespace"))
        if rs is None or _meta(rs).get("uid") != ref.get("uid"):
            return []
        d = self.resolve_controller(rs)
        if d is None or is_rolling_update(d):
            return []
        return [make_key(_meta(d).get("namespace"), _meta(d)["name"])]

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        cached = self.cached(key)
        if cached is None:
            self._superseded.pop(key, None)
            return None
        superseded = self._superseded.get(key)
        if superseded is not None:
            if _meta(cached).get("resourceVersion") in superseded:
                return None
            del self._superseded[key]
        d = copy.deepcopy(cached)
        d["apiVersion"], d["kind"] = DEPLOYMENT
        d.setdefault("status", {})
        selector_obj = _spec(d).get("selector")
        if not selector_obj or not (
            selector_obj.get("matchLabels") or selector_obj.get("matchExpressions")
        ):
            await self.recorder.event(
                d,
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            generation = int(_meta(d).get("generation") or 0)
            if _status_int(d, "observedGeneration") < generation:
                d["status"]["observedGeneration"] = generation
                await self._write_status(d)
            return None
        try:
            selector = from_label_selector_object(selector_obj)
        except BadRequest as exc:
            raise PermanentError(f"invalid selector: {exc}") from exc
        rss = await self._claim_replica_sets(d, selector)
        if being_deleted(d):
            new_rs, old_rss = await self._all_replica_sets(d, rss, create=False)
            await self._sync_status_only([*old_rss, new_rs], new_rs, d)
            return None
        await self._check_paused_conditions(d)
        if _spec(d).get("paused"):
            return await self._sync(d, rss)
        if await self._is_scaling_event(d, rss):
            return await self._sync(d, rss)
        if not is_rolling_update(d):
            return await self._rollout_recreate(d, rss, self._pod_map(d, selector, rss))
        return await self._rollout_rolling(d, rss)

    async def _claim_replica_sets(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        candidates = [
            {**rs, "apiVersion": RS[0], "kind": RS[1]}
            for rs in self.informers.list(*RS, _meta(d).get("namespace"))
        ]
        claimed = await ControllerRefManager(self.api, d, selector).claim(candidates)
        return [copy.deepcopy({**rs, "apiVersion": RS[0], "kind": RS[1]}) for rs in claimed]

    def _pod_map(self, d: Obj, selector: LabelSelector, rss: list[Obj]) -> dict[str, list[Obj]]:
        """The Deployment's pods by the uid of their ReplicaSet (``getPodMapForDeployment``)."""
        pods: dict[str, list[Obj]] = {_meta(rs).get("uid", ""): [] for rs in rss}
        for pod in self.informers.list(*POD, _meta(d).get("namespace")):
            ref = controller_ref(pod)
            if ref is not None and ref.get("uid") in pods and selector.matches_object(pod):
                pods[ref["uid"]].append(pod)
        return pods

    # -- writes ---------------------------------------------------------------------------

    async def _write_status(self, d: Obj) -> None:
        stored = await self.api.update_status(d)
        self._wrote(d, stored)

    def _wrote(self, d: Obj, stored: Obj) -> None:
        """Note that ``stored`` replaced ``d`` (see ``_superseded``); ``d`` takes its
        resourceVersion."""
        before, after = _meta(d).get("resourceVersion"), _meta(stored).get("resourceVersion")
        if before and after != before:
            key = make_key(_meta(d).get("namespace"), _meta(d)["name"])
            self._superseded.setdefault(key, set()).add(before)
        d["metadata"]["resourceVersion"] = after

    async def _set_deployment_revision(self, d: Obj, revision: str) -> None:
        """Write the ``revision`` annotation if it differs (``SetDeploymentRevision``)."""
        if _annotations(d).get(REVISION) == revision:
            return
        patch = {
            "metadata": {
                "resourceVersion": _meta(d).get("resourceVersion"),
                "annotations": {REVISION: revision},
            }
        }
        stored = await self.api.patch(
            *DEPLOYMENT, _meta(d)["name"], patch, "merge", namespace=_meta(d).get("namespace")
        )
        d["metadata"]["annotations"] = _meta(stored).get("annotations") or {}
        self._wrote(d, stored)

    async def _scale_replica_set(
        self, rs: Obj, new_scale: int, d: Obj, operation: str | None = None
    ) -> bool:
        """Set ``rs``'s replicas (and its replica annotations); ``rs`` is updated in place.
        Returns whether its size changed (``scaleReplicaSet``)."""
        size_changes = replicas_of(rs) != new_scale
        desired, most = replicas_of(d), replicas_of(d) + max_surge(d)
        annotations_change = _replicas_annotations_need_update(rs, desired, most)
        if not (size_changes or annotations_change):
            return False
        old_scale = replicas_of(rs)
        updated = copy.deepcopy(rs)
        updated.setdefault("spec", {})["replicas"] = new_scale
        _set_replicas_annotations(updated, desired, most)
        stored = await self.api.update(updated)
        rs.clear()
        rs.update(copy.deepcopy({**stored, "apiVersion": RS[0], "kind": RS[1]}))
        if size_changes:
            operation = operation or ("up" if old_scale < new_scale else "down")
            await self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {operation} replica set {_meta(rs)['name']} from {old_scale} "
                f"to {new_scale}",
            )
        return size_changes

    async def _scale_and_record(self, rs: Obj, new_scale: int, d: Obj) -> bool:
        """``scaleReplicaSetAndRecordEvent``: nothing to do when the size is right."""
        if replicas_of(rs) == new_scale:
            return False
        return await self._scale_replica_set(rs, new_scale, d)

    # -- the new ReplicaSet and revisions -------------------------------------------------

    async def _all_replica_sets(
        self, d: Obj, rss: list[Obj], create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """``getAllReplicaSetsAndSyncRevision``: the new ReplicaSet (created when
        ``create`` and missing) and the old ones."""
        existing = find_new_replica_set(d, rss)
        old_rss = [rs for rs in rss if existing is None or rs is not existing]
        new_rs = await self._new_replica_set(d, existing, old_rss, create)
        return new_rs, old_rss

    async def _new_replica_set(
        self, d: Obj, existing: Obj | None, old_rss: list[Obj], create: bool
    ) -> Obj | None:
        new_revision = str(max_revision(old_rss) + 1)
        now = self.now()
        if existing is not None:
            updated = copy.deepcopy(existing)
            annotations_changed = _set_new_rs_annotations(d, updated, new_revision, exists=True)
            min_ready = _spec(d).get("minReadySeconds") or 0
            if annotations_changed or (_spec(existing).get("minReadySeconds") or 0) != min_ready:
                updated["spec"]["minReadySeconds"] = min_ready
                stored = await self.api.update(updated)
                existing.clear()
                existing.update(copy.deepcopy({**stored, "apiVersion": RS[0], "kind": RS[1]}))
            revision = _annotations(existing).get(REVISION)
            if revision:
                await self._set_deployment_revision(d, revision)
            if has_progress_deadline(d) and get_condition(d["status"], PROGRESSING) is None:
                set_condition(
                    d["status"],
                    new_condition(
                        PROGRESSING,
                        "True",
                        FOUND_NEW_RS,
                        f'Found new replica set "{_meta(existing)["name"]}"',
                        now,
                    ),
                )
                await self._write_status(d)
            return existing
        if not create:
            return None

        namespace = _meta(d).get("namespace")
        template = copy.deepcopy(_spec(d).get("template") or {})
        collision_count = (d.get("status") or {}).get("collisionCount")
        template_hash = compute_hash(_spec(d).get("template") or {}, collision_count)
        labels = {**((template.get("metadata") or {}).get("labels") or {})}
        labels[POD_TEMPLATE_HASH] = template_hash
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(_spec(d).get("selector") or {})
        selector["matchLabels"] = {
            **(selector.get("matchLabels") or {}),
            POD_TEMPLATE_HASH: template_hash,
        }
        name = f"{_meta(d)['name']}-{template_hash}"
        new_rs: Obj = {
            "apiVersion": RS[0],
            "kind": RS[1],
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": _spec(d).get("minReadySeconds") or 0,
                "selector": selector,
                "template": template,
            },
        }
        new_rs["spec"]["replicas"] = new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        _set_new_rs_annotations(d, new_rs, new_revision, exists=False)
        already_exists = False
        try:
            created = await self.api.create(new_rs)
        except AlreadyExists:
            already_exists = True
            created = await self.api.get(*RS, name, namespace=namespace)
            if not (
                is_controlled_by(created, d)
                and equal_ignore_hash(_spec(d).get("template"), _spec(created).get("template"))
            ):
                # A hash collision: try the next name on the next sync.
                d["status"]["collisionCount"] = int(collision_count or 0) + 1
                await self._write_status(d)
                raise Conflict(
                    f"replica set {name} exists with another template; collisionCount is now "
                    f"{d['status']['collisionCount']}"
                ) from None
        except KcoreError as exc:
            if isinstance(exc, Forbidden) and "terminat" in str(exc).lower():
                raise
            message = f'Failed to create new replica set "{name}": {exc}'
            if has_progress_deadline(d):
                set_condition(
                    d["status"],
                    new_condition(PROGRESSING, "False", FAILED_RS_CREATE, message, now),
                )
                try:
                    await self._write_status(d)
                except KcoreError:
                    pass  # the bigger problem is reported below
            await self.recorder.event(d, "Warning", FAILED_RS_CREATE, message)
            raise
        created = copy.deepcopy({**created, "apiVersion": RS[0], "kind": RS[1]})
        if not already_exists and replicas_of(created) > 0:
            await self.recorder.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {replicas_of(created)}",
            )
        await self._set_deployment_revision(d, new_revision)
        if not already_exists and has_progress_deadline(d):
            set_condition(
                d["status"],
                new_condition(
                    PROGRESSING, "True", NEW_RS_CREATED, f'Created new replica set "{name}"', now
                ),
            )
            await self._write_status(d)
        return created

    # -- paused and scaling ---------------------------------------------------------------

    async def _check_paused_conditions(self, d: Obj) -> None:
        if not has_progress_deadline(d):
            return
        cond = get_condition(d["status"], PROGRESSING)
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused_cond = cond is not None and cond.get("reason") == PAUSED
        paused = bool(_spec(d).get("paused"))
        now = self.now()
        if paused and not paused_cond:
            condition = new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now)
        elif not paused and paused_cond:
            condition = new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", now)
        else:
            return
        set_condition(d["status"], condition)
        await self._write_status(d)

    async def _is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        new_rs, old_rss = await self._all_replica_sets(d, rss, create=False)
        for rs in active([*old_rss, new_rs]):
            desired = _int_annotation(rs, DESIRED_REPLICAS)
            if desired is not None and desired != replicas_of(d):
                return True
        return False

    async def _sync(self, d: Obj, rss: list[Obj]) -> float | None:
        """Scale (a scaling event, or a paused Deployment) without rolling out."""
        new_rs, old_rss = await self._all_replica_sets(d, rss, create=False)
        await self._scale(d, new_rs, old_rss)
        if _spec(d).get("paused"):
            await self._cleanup(d, old_rss)
        return await self._sync_status_only([*old_rss, new_rs], new_rs, d)

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        replicas = replicas_of(d)
        target = _find_active_or_latest(new_rs, old_rss)
        if target is not None:
            # Upstream stops when the size is right; also refreshing stale replica
            # annotations keeps a lone ReplicaSet from looking like a scaling event forever.
            await self._scale_replica_set(target, replicas, d)
            return
        if is_saturated(d, new_rs):
            for old in active(old_rss):
                await self._scale_and_record(old, 0, d)
            return
        if not is_rolling_update(d):
            return
        all_rss = active([*old_rss, new_rs])
        allowed = replicas + max_surge(d) if replicas > 0 else 0
        to_add = allowed - replica_count(all_rss)
        operation = None
        if to_add > 0:
            all_rss = by_size(all_rss, newer_first=True)
            operation = "up"
        elif to_add < 0:
            all_rss = by_size(all_rss, newer_first=False)
            operation = "down"
        added = 0
        sizes: list[int] = []
        for rs in all_rss:
            if to_add != 0:
                proportion = replica_set_proportion(rs, d, to_add, added)
                sizes.append(replicas_of(rs) + proportion)
                added += proportion
            else:
                sizes.append(replicas_of(rs))
        for i, rs in enumerate(all_rss):
            size = sizes[i]
            if i == 0 and to_add != 0:
                size = max(0, size + to_add - added)
            await self._scale_replica_set(rs, size, d, operation)

    # -- rolling update -------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rss: list[Obj]) -> float | None:
        new_rs, old_rss = await self._all_replica_sets(d, rss, create=True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        if await self._reconcile_new_replica_set(all_rss, new_rs, d):
            return await self._sync_rollout_status(all_rss, new_rs, d)
        if await self._reconcile_old_replica_sets(all_rss, active(old_rss), new_rs, d):
            return await self._sync_rollout_status(all_rss, new_rs, d)
        if deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(all_rss, new_rs, d)

    async def _reconcile_new_replica_set(self, all_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        replicas = replicas_of(d)
        if replicas_of(new_rs) == replicas:
            return False
        if replicas_of(new_rs) > replicas:
            return await self._scale_and_record(new_rs, replicas, d)
        return await self._scale_and_record(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    async def _reconcile_old_replica_sets(
        self, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj, d: Obj
    ) -> bool:
        if replica_count(old_rss) == 0:
            return False
        min_available = replicas_of(d) - max_unavailable(d)
        new_unavailable = replicas_of(new_rs) - available_for_decisions(new_rs)
        max_scaled_down = replica_count(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self._cleanup_unhealthy_replicas(old_rss, d, max_scaled_down)
        scaled = await self._scale_down_old_replica_sets(
            [*old_rss, new_rs], old_rss, d, min_available
        )
        return cleaned + scaled > 0

    async def _cleanup_unhealthy_replicas(self, old_rss: list[Obj], d: Obj, most: int) -> int:
        """Shrink old ReplicaSets by their unavailable pods first: they cost no
        availability, and they would block the rollout otherwise."""
        total = 0
        for rs in by_creation(old_rss):
            if total >= most:
                break
            replicas, available = replicas_of(rs), available_for_decisions(rs)
            if replicas == 0 or replicas == available:
                continue
            count = min(most - total, replicas - available)
            await self._scale_and_record(rs, replicas - count, d)
            total += count
        return total

    async def _scale_down_old_replica_sets(
        self, all_rss: list[Obj], old_rss: list[Obj], d: Obj, min_available: int
    ) -> int:
        available = sum(available_for_decisions(rs) for rs in all_rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in by_creation(old_rss):
            if total >= to_scale_down:
                break
            if replicas_of(rs) == 0:
                continue
            count = min(replicas_of(rs), to_scale_down - total)
            await self._scale_and_record(rs, replicas_of(rs) - count, d)
            total += count
        return total

    # -- recreate -------------------------------------------------------------------------

    async def _rollout_recreate(
        self, d: Obj, rss: list[Obj], pod_map: dict[str, list[Obj]]
    ) -> float | None:
        new_rs, old_rss = await self._all_replica_sets(d, rss, create=False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled_down = False
        for rs in active(old_rss):
            scaled_down = await self._scale_and_record(rs, 0, d) or scaled_down
        if scaled_down or _old_pods_running(new_rs, old_rss, pod_map):
            return await self._sync_rollout_status(all_rss, new_rs, d)
        if new_rs is None:
            new_rs, old_rss = await self._all_replica_sets(d, rss, create=True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_and_record(new_rs, replicas_of(d), d)
        if deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(all_rss, new_rs, d)

    # -- history --------------------------------------------------------------------------

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest revisions beyond ``revisionHistoryLimit`` that are scaled to 0
        and settled (``cleanupDeployment``)."""
        if not has_revision_history_limit(d):
            return
        alive = [rs for rs in old_rss if not being_deleted(rs)]
        diff = len(alive) - int(_spec(d)["revisionHistoryLimit"])
        if diff <= 0:
            return
        for rs in by_revision(alive)[:diff]:
            if (
                _status_int(rs, "replicas") != 0
                or replicas_of(rs) != 0
                or int(_meta(rs).get("generation") or 0) > _status_int(rs, "observedGeneration")
            ):
                continue
            log.debug("deleting old replica set", replica_set=_meta(rs)["name"])
            try:
                await self.api.delete(
                    *RS,
                    _meta(rs)["name"],
                    _meta(rs).get("namespace"),
                    preconditions={"uid": _meta(rs).get("uid", "")},
                )
            except NotFound:
                pass

    # -- status ---------------------------------------------------------------------------

    def _calculate_status(
        self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj
    ) -> dict[str, Any]:
        available = status_count(all_rss, "availableReplicas")
        old = d.get("status") or {}
        status: dict[str, Any] = {
            "observedGeneration": _meta(d).get("generation"),
            "replicas": status_count(all_rss, "replicas"),
            "updatedReplicas": status_count([new_rs], "replicas"),
            "readyReplicas": status_count(all_rss, "readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(0, replica_count(all_rss) - available),
        }
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        status["conditions"] = copy.deepcopy(old.get("conditions") or [])
        now = self.now()
        if available >= replicas_of(d) - max_unavailable(d):
            condition = new_condition(
                AVAILABLE,
                "True",
                MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.",
                now,
            )
        else:
            condition = new_condition(
                AVAILABLE,
                "False",
                MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.",
                now,
            )
        set_condition(status, condition)
        return status

    async def _sync_status_only(
        self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj
    ) -> None:
        status = self._calculate_status(all_rss, new_rs, d)
        if not _status_equal(d.get("status"), status):
            d["status"] = status
            await self._write_status(d)

    async def _sync_rollout_status(
        self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj
    ) -> float | None:
        status = self._calculate_status(all_rss, new_rs, d)
        now = self.now()
        if not has_progress_deadline(d):
            remove_condition(status, PROGRESSING)
        current = get_condition(d["status"], PROGRESSING)
        complete_before = (
            status.get("replicas") == status.get("updatedReplicas")
            and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE
        )
        if has_progress_deadline(d) and not complete_before:
            rs_name = _meta(new_rs)["name"] if new_rs is not None else None
            if deployment_complete(d, status):
                message = (
                    f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if rs_name
                    else f'Deployment "{_meta(d)["name"]}" has successfully progressed.'
                )
                set_condition(
                    status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now)
                )
            elif deployment_progressing(d, status):
                message = (
                    f'ReplicaSet "{rs_name}" is progressing.'
                    if rs_name
                    else f'Deployment "{_meta(d)["name"]}" is progressing.'
                )
                condition = new_condition(PROGRESSING, "True", RS_UPDATED, message, now)
                if current is not None:
                    if current.get("status") == "True":
                        condition["lastTransitionTime"] = current.get("lastTransitionTime")
                    remove_condition(status, PROGRESSING)
                set_condition(status, condition)
            elif self._timed_out(d, status, now):
                message = (
                    f'ReplicaSet "{rs_name}" has timed out progressing.'
                    if rs_name
                    else f'Deployment "{_meta(d)["name"]}" has timed out progressing.'
                )
                set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT, message, now))
        failures = _replica_failures(all_rss, new_rs)
        if failures:
            set_condition(status, failures[0])
        else:
            remove_condition(status, REPLICA_FAILURE)
        if _status_equal(d["status"], status):
            return self._requeue_stuck(d, status, now)
        d["status"] = status
        await self._write_status(d)
        return None

    @staticmethod
    def _timed_out(d: Obj, status: dict[str, Any], now: float) -> bool:
        if not has_progress_deadline(d):
            return False
        cond = get_condition(status, PROGRESSING)
        if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        if cond.get("reason") == TIMED_OUT:
            return True
        since = parse_time(cond.get("lastUpdateTime"))
        return since is not None and since + int(_spec(d)["progressDeadlineSeconds"]) < now

    @staticmethod
    def _requeue_stuck(d: Obj, status: dict[str, Any], now: float) -> float | None:
        """Seconds until the progress deadline could pass (plus one), so the timeout is
        noticed even if nothing else happens (``requeueStuckDeployment``)."""
        current = get_condition(d["status"], PROGRESSING)
        if not has_progress_deadline(d) or current is None:
            return None
        if deployment_complete(d, status) or current.get("reason") == TIMED_OUT:
            return None
        since = parse_time(current.get("lastUpdateTime"))
        if since is None:
            return None
        after = since + int(_spec(d)["progressDeadlineSeconds"]) - now
        return 1.0 if after < 1 else after + 1


# -- helpers that need no controller ---------------------------------------------------------


def _replicas_annotations_need_update(rs: Obj, desired: int, most: int) -> bool:
    annotations = _annotations(rs)
    return annotations.get(DESIRED_REPLICAS) != str(desired) or annotations.get(
        MAX_REPLICAS
    ) != str(most)


def _set_replicas_annotations(rs: Obj, desired: int, most: int) -> bool:
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for name, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(most))):
        if annotations.get(name) != value:
            annotations[name] = value
            changed = True
    return changed


def _set_new_rs_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """``SetNewReplicaSetAnnotations``: copy the Deployment's annotations, raise the
    revision (keeping the ones it had in ``revision-history``), and on creation set the
    replica annotations."""
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for name, value in _annotations(d).items():
        if name in ANNOTATIONS_NOT_COPIED or annotations.get(name) == value:
            continue
        annotations[name] = value
        changed = True
    old_revision = annotations.get(REVISION)
    try:
        old = int(old_revision) if old_revision else 0
    except ValueError:
        return changed
    new = int(new_revision)
    if old < new:
        annotations[REVISION] = new_revision
        changed = True
        if old_revision:
            history = annotations.get(REVISION_HISTORY, "")
            revisions = history.split(",") if history else []
            total = len(history) + len(old_revision) + 1
            start = 0
            while total > MAX_REVISION_HISTORY_CHARS and start < len(revisions):
                total -= len(revisions[start]) + 1
                start += 1
            if total <= MAX_REVISION_HISTORY_CHARS:
                annotations[REVISION_HISTORY] = ",".join([*revisions[start:], old_revision])
    if not exists:
        replicas = replicas_of(d)
        if _set_replicas_annotations(rs, replicas, replicas + max_surge(d)):
            changed = True
    return changed


def _find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The one ReplicaSet with replicas, or the newest when none has any (``None`` when
    several have replicas)."""
    if new_rs is None and not old_rss:
        return None
    newest_first = list(reversed(by_creation(old_rss)))
    all_active = active([*newest_first, new_rs])
    if not all_active:
        return new_rs if new_rs is not None else newest_first[0]
    if len(all_active) == 1:
        return all_active[0]
    return None


def _old_pods_running(
    new_rs: Obj | None, old_rss: list[Obj], pod_map: dict[str, list[Obj]]
) -> bool:
    if status_count(old_rss, "replicas") > 0:
        return True
    new_uid = _meta(new_rs).get("uid") if new_rs is not None else None
    for uid, pods in pod_map.items():
        if uid == new_uid:
            continue
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return True
    return False


def _replica_failures(all_rss: list[Obj | None], new_rs: Obj | None) -> list[Obj]:
    """The ReplicaFailure conditions of the ReplicaSets (the new one's first), as
    Deployment conditions."""
    ordered = [new_rs, *(rs for rs in all_rss if rs is not new_rs)]
    out = []
    for rs in ordered:
        if rs is None:
            continue
        for cond in (rs.get("status") or {}).get("conditions") or ():
            if cond.get("type") == REPLICA_FAILURE:
                out.append(
                    {
                        "type": REPLICA_FAILURE,
                        "status": cond.get("status"),
                        "lastUpdateTime": cond.get("lastTransitionTime"),
                        "lastTransitionTime": cond.get("lastTransitionTime"),
                        "reason": cond.get("reason"),
                        "message": cond.get("message"),
                    }
                )
    return out


def controllers(settings: Any) -> list[Reconciler]:
    return [DeploymentController()]


__all__ = [
    "DeploymentController",
    "compute_hash",
    "controllers",
    "equal_ignore_hash",
    "fnv32a",
    "max_surge",
    "max_unavailable",
    "resolve_fenceposts",
    "safe_encode_string",
]
