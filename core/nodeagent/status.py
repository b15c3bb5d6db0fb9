"""A pod's status as the kubelet computes it: container statuses from the runtime's
records, the phase, and the conditions.

Pure functions over plain data, so that the pod worker stays about *doing* things and the
rules here can be tested one by one. The rules are the kubelet's (``getPhase`` and
``generate.go`` in ``pkg/kubelet``); each function says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kcore.interfaces import CONTAINER_CREATED, CONTAINER_EXITED, CONTAINER_RUNNING

TERMINAL_PHASES = ("Succeeded", "Failed")

# The pod's condition types the node agent owns, in the kubelet's order.
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ns_time(value: int | None) -> str | None:
    """A CRI timestamp (ns since the epoch, 0 = never) as RFC 3339 seconds."""
    if not value:
        return None
    return rfc3339(value / 1e9)


@dataclass
class ContainerView:
    """What the pod worker knows about one container of the spec."""

    name: str
    image: str
    current: Mapping[str, Any] | None = None
    """The runtime's status of the newest instance, if any."""
    previous: Mapping[str, Any] | None = None
    """The instance before it (its end is ``lastState``)."""
    waiting: tuple[str, str] | None = None
    """The last sync's error for this container as (reason, message), e.g. back-off."""
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    termination_message: str | None = None
    """The message read from ``terminationMessagePath`` of the current instance."""
    previous_message: str | None = None


def _terminated(
    record: Mapping[str, Any], message: str | None = None, *, unknown: bool = False
) -> dict[str, Any]:
    if unknown:
        return {
            "exitCode": 137,
            "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated",
        }
    out: dict[str, Any] = {
        "exitCode": int(record.get("exit_code") or 0),
        "reason": record.get("reason") or ("Completed" if not record.get("exit_code") else "Error"),
        "startedAt": ns_time(record.get("started_at")),
        "finishedAt": ns_time(record.get("finished_at")),
        "containerID": container_id_of(record),
    }
    text = message if message else record.get("message")
    if text:
        out["message"] = text
    return {k: v for k, v in out.items() if v is not None}


def container_id_of(record: Mapping[str, Any] | None) -> str | None:
    if not record or not record.get("id"):
        return None
    return f"{RUNTIME_SCHEME}://{record['id']}"


RUNTIME_SCHEME = "kcore"
"""The scheme of ``containerID`` values (containerd says ``containerd://``)."""


def container_status(view: ContainerView, *, default_waiting: str) -> dict[str, Any]:
    """One entry of ``containerStatuses`` (kubelet ``convertToAPIContainerStatuses``)."""
    cur = view.current
    state: dict[str, Any]
    last: dict[str, Any] = {}
    if view.previous is not None:
        last = {"terminated": _terminated(view.previous, view.previous_message)}
    if cur is None:
        reason, message = view.waiting or (default_waiting, "")
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    elif cur.get("state") == CONTAINER_RUNNING:
        state = {"running": {"startedAt": ns_time(cur.get("started_at"))}}
    elif cur.get("state") == CONTAINER_EXITED:
        if view.waiting is not None:
            reason, message = view.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            last = {"terminated": _terminated(cur, view.termination_message)}
        else:
            state = {"terminated": _terminated(cur, view.termination_message)}
    elif cur.get("state") == CONTAINER_CREATED:
        reason, message = view.waiting or ("ContainerCreating", "")
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    else:
        state = {"terminated": _terminated(cur, unknown=True)}
    status: dict[str, Any] = {
        "name": view.name,
        "state": state,
        "lastState": last,
        "ready": bool(view.ready and "running" in state),
        "restartCount": view.restart_count,
        "image": view.image,
        "imageID": (cur or {}).get("image_ref") or "",
        "started": bool(view.started and "running" in state),
    }
    cid = container_id_of(cur)
    if cid:
        status["containerID"] = cid
    return status


def _terminated_of(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (status.get("state") or {}).get("terminated")


def pod_phase(
    spec: Mapping[str, Any],
    init_statuses: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    *,
    terminal: bool = False,
) -> str:
    """The kubelet's ``getPhase``; ``terminal``: the pod is being shut down for good (its
    containers have all stopped and will not restart)."""
    by_name = {s["name"]: s for s in init_statuses}
    pending_init = failed_init = 0
    for container in spec.get("initContainers") or []:
        if container.get("restartPolicy") == "Always":  # a sidecar
            continue
        cs = by_name.get(container.get("name"))
        if cs is None:
            pending_init += 1
            continue
        state = cs.get("state") or {}
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode") != 0:
                failed_init += 1
        elif "waiting" in state:
            last = (cs.get("lastState") or {}).get("terminated")
            if last is not None:
                if last.get("exitCode") != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    by_name = {s["name"]: s for s in statuses}
    unknown = running = waiting = stopped = succeeded = 0
    for container in spec.get("containers") or []:
        cs = by_name.get(container.get("name"))
        if cs is None:
            unknown += 1
            continue
        state = cs.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if (cs.get("lastState") or {}).get("terminated") is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    policy = spec.get("restartPolicy") or "Always"
    if failed_init > 0 and policy == "Never":
        return "Failed"
    if pending_init > 0 or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if not ok and reason:
        out["reason"] = reason
    if not ok and message:
        out["message"] = message
    return out


def pod_conditions(
    spec: Mapping[str, Any],
    phase: str,
    init_statuses: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    *,
    sandbox_ready: bool,
    previous: Sequence[Mapping[str, Any]],
    now: float,
) -> list[dict[str, Any]]:
    """The node agent's conditions (kubelet ``status/generate.go``) merged with the
    conditions others own (``PodScheduled``, readiness gates), ``lastTransitionTime``
    moving only when a status flips."""
    conditions: list[dict[str, Any]] = [_condition("PodReadyToStartContainers", sandbox_ready)]
    # Initialized
    inits = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") != "Always"]
    by_name = {s["name"]: s for s in init_statuses}
    incomplete = []
    for container in inits:
        term = _terminated_of(by_name.get(container["name"]) or {})
        if term is None or term.get("exitCode") != 0:
            incomplete.append(container["name"])
    app_started = any(
        "running" in (s.get("state") or {}) or _terminated_of(s) is not None for s in statuses
    ) or any((s.get("lastState") or {}).get("terminated") for s in statuses)
    if not incomplete or app_started or phase == "Succeeded":
        conditions.append(_condition("Initialized", True))
    else:
        conditions.append(
            _condition(
                "Initialized",
                False,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            )
        )
    # ContainersReady and Ready
    if phase == "Succeeded":
        ready = _condition("ContainersReady", False, "PodCompleted")
    elif phase == "Failed":
        ready = _condition("ContainersReady", False, "PodFailed")
    else:
        by_name = {s["name"]: s for s in statuses}
        unready = [
            c["name"]
            for c in spec.get("containers") or []
            if not (by_name.get(c["name"]) or {}).get("ready")
        ]
        if unready:
            ready = _condition(
                "ContainersReady",
                False,
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(unready)}]",
            )
        else:
            ready = _condition("ContainersReady", True)
    pod_ready = dict(ready, type="Ready")
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    if pod_ready["status"] == "True" and gates:
        others = {c.get("type"): c.get("status") for c in previous}
        missing = [g for g in gates if others.get(g) != "True"]
        if missing:
            pod_ready = _condition(
                "Ready",
                False,
                "ReadinessGatesNotReady",
                f'corresponding condition of pod readiness gate "{missing[0]}" does not exist.',
            )
    conditions.append(pod_ready)
    conditions.append(ready)
    stamp = rfc3339(now)
    old = {c.get("type"): c for c in previous}
    for cond in conditions:
        before = old.get(cond["type"])
        if before is not None and before.get("status") == cond["status"]:
            cond["lastTransitionTime"] = before.get("lastTransitionTime") or stamp
        else:
            cond["lastTransitionTime"] = stamp
        cond["lastProbeTime"] = None
    foreign = [c for c in previous if c.get("type") not in OWN_CONDITIONS]
    scheduled = [c for c in foreign if c.get("type") == "PodScheduled"]
    rest = [c for c in foreign if c.get("type") != "PodScheduled"]
    if not scheduled:
        scheduled = [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }
        ]
    return conditions + scheduled + rest


def comparable(status: Mapping[str, Any]) -> Any:
    """``status`` without what changes on its own, to tell a real change from none."""
    return {k: v for k, v in status.items() if k != "conditions"}, [
        {k: v for k, v in c.items() if k not in ("lastTransitionTime", "lastProbeTime")}
        for c in status.get("conditions") or []
    ]


__all__ = [
    "OWN_CONDITIONS",
    "RUNTIME_SCHEME",
    "TERMINAL_PHASES",
    "ContainerView",
    "comparable",
    "container_id_of",
    "container_status",
    "ns_time",
    "pod_conditions",
    "pod_phase",
    "rfc3339",
]
