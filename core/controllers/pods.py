"""What controllers ask of pods: active, ready, available, and which to delete first.

Plain functions on pods as the API serves them (dicts), following Kubernetes'
``pkg/api/v1/pod/util.go`` and ``pkg/controller/controller_utils.go``. Times are seconds
since the epoch (``now`` defaults to the wall clock).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def parse_time(value: str | None) -> float | None:
    """An RFC 3339 time (``Time`` or ``MicroTime``) as epoch seconds; ``None`` if unset or
    unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Not Succeeded, not Failed, not being deleted: a pod a controller counts."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (pod.get("metadata") or {}).get(
        "deletionTimestamp"
    )


def is_pod_terminating(pod: Mapping[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and bool(
        (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def pod_condition(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_ready_time(pod: Mapping[str, Any]) -> float | None:
    """When the pod last became Ready (its Ready condition's lastTransitionTime), if ready."""
    cond = pod_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def is_pod_available(
    pod: Mapping[str, Any], min_ready_seconds: int | None, now: float | None = None
) -> bool:
    """Ready for at least ``min_ready_seconds`` (ready is enough when that is 0)."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = pod_ready_time(pod)
    now = time.time() if now is None else now
    return since is not None and since + min_ready_seconds < now


def pod_deletion_cost(pod: Mapping[str, Any]) -> int:
    """The ``controller.kubernetes.io/pod-deletion-cost`` annotation (0 if unset or bad)."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        cost = int(str(value).strip())
    except (TypeError, ValueError):
        return 0
    return cost if -(2**31) <= cost < 2**31 else 0


def _max_restarts(pod: Mapping[str, Any]) -> tuple[int, int]:
    status = pod.get("status") or {}
    regular = max(
        (c.get("restartCount") or 0 for c in status.get("containerStatuses") or ()), default=0
    )
    init = max(
        (c.get("restartCount") or 0 for c in status.get("initContainerStatuses") or ()), default=0
    )
    return regular, init


def _log_rank(t: float, now: float) -> int:
    d = (now - t) * 1e9  # Kubernetes buckets durations in nanoseconds
    return int(math.log2(d)) if d > 0 else -1


def _after_or_zero(t1: float | None, t2: float | None) -> bool:
    """Kubernetes' ``afterOrZero``: unset first, then the later time first."""
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _compare_times(t1: float | None, t2: float | None, uid1: str, uid2: str, now: float) -> int:
    """-1 when the first pod goes first, by log2 age buckets, then uid (LogarithmicScaleDown)."""
    if t1 is None or t2 is None:
        return -1 if _after_or_zero(t1, t2) else 1
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return -1 if uid1 < uid2 else (1 if uid1 > uid2 else 0)
    return -1 if diff < 0 else 1


def deletion_order(
    pods: Sequence[Mapping[str, Any]],
    ranks: Sequence[int] | None = None,
    now: float | None = None,
) -> list[Mapping[str, Any]]:
    """``pods`` sorted so that the ones to delete first come first (Kubernetes'
    ``ActivePodsWithRanks`` with LogarithmicScaleDown): unscheduled; Pending < Unknown <
    Running; not ready; lower pod-deletion-cost; higher rank (``ranks[i]``: related pods on
    the same node); ready for less time; more restarts; newer."""
    now = time.time() if now is None else now
    ranked = list(zip(pods, ranks if ranks is not None else [0] * len(pods), strict=True))

    def compare(a: tuple[Mapping[str, Any], int], b: tuple[Mapping[str, Any], int]) -> int:
        pi, ri = a
        pj, rj = b
        ni, nj = (pi.get("spec") or {}).get("nodeName"), (pj.get("spec") or {}).get("nodeName")
        if bool(ni) != bool(nj):
            return -1 if not ni else 1
        oi = _PHASE_ORDINAL.get((pi.get("status") or {}).get("phase"), 0)
        oj = _PHASE_ORDINAL.get((pj.get("status") or {}).get("phase"), 0)
        if oi != oj:
            return -1 if oi < oj else 1
        ready_i, ready_j = is_pod_ready(pi), is_pod_ready(pj)
        if ready_i != ready_j:
            return -1 if not ready_i else 1
        ci, cj = pod_deletion_cost(pi), pod_deletion_cost(pj)
        if ci != cj:
            return -1 if ci < cj else 1
        if ri != rj:
            return -1 if ri > rj else 1
        uid_i = (pi.get("metadata") or {}).get("uid") or ""
        uid_j = (pj.get("metadata") or {}).get("uid") or ""
        if ready_i and ready_j:
            ti, tj = pod_ready_time(pi), pod_ready_time(pj)
            if ti != tj:
                result = _compare_times(ti, tj, uid_i, uid_j, now)
                if result:
                    return result
        restarts_i, restarts_j = _max_restarts(pi), _max_restarts(pj)
        if restarts_i[0] != restarts_j[0]:
            return -1 if restarts_i[0] > restarts_j[0] else 1
        if restarts_i[1] != restarts_j[1]:
            return -1 if restarts_i[1] > restarts_j[1] else 1
        ti = parse_time((pi.get("metadata") or {}).get("creationTimestamp"))
        tj = parse_time((pj.get("metadata") or {}).get("creationTimestamp"))
        if ti != tj:
            return _compare_times(ti, tj, uid_i, uid_j, now)
        return 0

    return [pod for pod, _ in sorted(ranked, key=functools.cmp_to_key(compare))]


__all__ = [
    "POD_DELETION_COST",
    "deletion_order",
    "is_pod_active",
    "is_pod_available",
    "is_pod_ready",
    "is_pod_terminating",
    "parse_time",
    "pod_condition",
    "pod_deletion_cost",
    "pod_ready_time",
]
