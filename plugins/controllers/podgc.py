"""Pod garbage collection, as Kubernetes' ``pkg/controller/podgc`` (``pod-garbage-collector``).

* **Orphaned pods**: a pod bound to a Node that no longer exists is, after a quarantine of
  40 s (the Node may be on its way back) and a fresh read confirming the Node is gone,
  marked ``Failed`` with the ``DisruptionTarget`` condition (reason ``DeletionByPodGC``)
  unless it already finished, and deleted at once (grace period 0): no node agent is
  left to finish it.
* **Unscheduled terminating pods**: a pod being deleted that was never bound is deleted
  at once (nothing runs it).
* **Out of service**: a terminating pod on a Node that is not Ready and carries the
  ``node.kubernetes.io/out-of-service`` ``NoExecute`` taint is deleted at once (an
  operator declared the node dead).
* **Terminated pods** (``Succeeded``/``Failed``) above ``--terminated-pod-gc-threshold``
  (12,500) are deleted, oldest first, until the threshold holds again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kcore.controllers import (
    BY_NODE,
    DELETED,
    Reconciler,
    ResourceEvent,
    being_deleted,
    make_key,
)
from kcore.errors import Conflict, NotFound
from kcore.plugins.controllers.scenarios import scenarios

NODE = ("v1", "Node")
POD = ("v1", "Pod")
QUARANTINE = 40.0
TERMINATED_POD_GC_THRESHOLD = 12500
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
TERMINATED_KEY = "\x00terminated"
"""The work-queue key of the terminated-pods count (no pod has this key)."""


class PodGCController(Reconciler):
    """See the module docstring."""

    name = "pod-garbage-collector"
    kinds = [POD, NODE]
    workers = 1

    conformance = scenarios("podgc_scenarios")

    def __init__(self, terminated_threshold: int = TERMINATED_POD_GC_THRESHOLD) -> None:
        super().__init__()
        self.terminated_threshold = terminated_threshold

    async def setup(self) -> None:
        self._orphaned_since: dict[str, float] = {}

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == NODE:
            if event.type == DELETED or _out_of_service(event.obj):
                return [
                    make_key(p["metadata"].get("namespace"), p["metadata"]["name"])
                    for p in self.informers.by_index(*POD, BY_NODE, event.name)
                ]
            return []
        if event.type == DELETED:
            self._orphaned_since.pop(event.key, None)
            return []
        keys = [event.key]
        if self.terminated_threshold > 0 and _terminal(event.obj):
            keys.append(TERMINATED_KEY)
        return keys

    async def reconcile(self, key: str) -> float | None:
        if key == TERMINATED_KEY:
            await self._collect_terminated()
            return None
        pod = self.cached(key, POD)
        if pod is None:
            self._orphaned_since.pop(key, None)
            return None
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            self._orphaned_since.pop(key, None)
            if being_deleted(pod):
                await self._force_delete(pod)
            return None
        node = self.informers.get(*NODE, node_name)
        if node is not None:
            self._orphaned_since.pop(key, None)
            if being_deleted(pod) and _out_of_service(node):
                await self._force_delete(pod)
            return None
        # Bound to a Node the cache does not know: wait out the quarantine, then ask the API.
        now = self.now()
        since = self._orphaned_since.setdefault(key, now)
        if now - since < QUARANTINE:
            return QUARANTINE - (now - since)
        try:
            await self.api.get(*NODE, node_name)
        except NotFound:
            pass
        else:
            self._orphaned_since.pop(key, None)
            return None
        self._orphaned_since.pop(key, None)
        if not _terminal(pod):
            await self._mark_failed(pod, "PodGC: node no longer exists")
        await self._force_delete(pod)
        return None

    async def _mark_failed(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]
        conditions = [
            c
            for c in (pod.get("status") or {}).get("conditions") or ()
            if c.get("type") != "DisruptionTarget"
        ]
        conditions.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": message,
                "lastTransitionTime": _rfc3339(self.now()),
            }
        )
        try:
            await self.api.patch(
                *POD,
                meta["name"],
                {"status": {"phase": "Failed", "conditions": conditions}},
                "merge",
                namespace=meta.get("namespace"),
                subresource="status",
            )
        except (NotFound, Conflict):
            pass

    async def _force_delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            await self.api.delete(
                *POD,
                meta["name"],
                namespace=meta.get("namespace"),
                grace_period_seconds=0,
                preconditions={"uid": meta.get("uid")},
            )
        except (NotFound, Conflict):
            pass

    async def _collect_terminated(self) -> None:
        terminated = [p for p in self.informers.list(*POD) if _terminal(p) and not being_deleted(p)]
        excess = len(terminated) - self.terminated_threshold
        if excess <= 0:
            return
        terminated.sort(
            key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"])
        )
        for pod in terminated[:excess]:
            await self._force_delete(pod)


def _terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _out_of_service(node: dict[str, Any]) -> bool:
    taints = (node.get("spec") or {}).get("taints") or ()
    if not any(
        t.get("key") == OUT_OF_SERVICE_TAINT and t.get("effect") == "NoExecute" for t in taints
    ):
        return False
    ready = next(
        (c for c in (node.get("status") or {}).get("conditions") or () if c.get("type") == "Ready"),
        None,
    )
    return ready is None or ready.get("status") != "True"


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def controllers(settings: Any) -> list[Reconciler]:
    option = getattr(settings, "option", None)
    threshold = (
        int(option("terminated_pod_gc_threshold", TERMINATED_POD_GC_THRESHOLD))
        if option is not None
        else TERMINATED_POD_GC_THRESHOLD
    )
    return [PodGCController(terminated_threshold=threshold)]


__all__ = ["PodGCController", "controllers"]
