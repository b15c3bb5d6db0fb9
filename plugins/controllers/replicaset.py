"""The ReplicaSet controller: keep ``spec.replicas`` pods matching the selector alive.

As Kubernetes' ``pkg/controller/replicaset``:

* **Claiming.** Active pods of the namespace (not Succeeded/Failed, not being deleted) are
  claimed: those this ReplicaSet controls and that match stay; matching orphans are adopted
  (controller ownerReference with ``blockOwnerDeletion``, after an uncached GET shows the
  ReplicaSet is not being deleted); controlled pods that stopped matching are released;
  pods of other controllers are left alone.
* **Expectations.** Creates and deletes are recorded before they are made and counted down
  by pod events; until they are all seen (or 5 minutes pass) a ReplicaSet is not scaled
  again, so a slow cache never causes double creates.
* **Scaling up** creates pods from the template (labels, annotations, finalizers, spec;
  ``generateName: <rs>-``, so names are ``<rs>-<5 random>``) in batches of 1, 2, 4, ...,
  at most 500 per sync, stopping at the first batch with an error. Event
  ``SuccessfulCreate`` "Created pod: X" (``FailedCreate`` on errors).
* **Scaling down** deletes the pods that sort first by :func:`deletion_order`
  (unscheduled, Pending, not ready, lower deletion cost, more related pods on the node,
  ready for less time, more restarts, newer), at most 500 per sync. Event
  ``SuccessfulDelete`` "Deleted pod: X".
* **Status**: ``replicas``, ``fullyLabeledReplicas`` (pods carrying every template label),
  ``readyReplicas``, ``availableReplicas`` (ready for ``minReadySeconds``),
  ``observedGeneration`` and the ``ReplicaFailure`` condition; written only when it
  changed, so a converged ReplicaSet costs no writes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from kcore.controllers import (
    ADDED,
    BY_CONTROLLER,
    DELETED,
    MODIFIED,
    ControllerRefManager,
    Expectations,
    Reconciler,
    ResourceEvent,
    being_deleted,
    controller_ref,
    deletion_order,
    from_label_selector_object,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    label_selector_from_set,
    make_key,
    namespace_terminating,
    owner_reference,
    split_key,
)
from kcore.errors import BadRequest, Conflict, KcoreError, NotFound, PermanentError
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.replicaset")

RS = ("apps/v1", "ReplicaSet")
POD = ("v1", "Pod")
BURST_REPLICAS = 500
"""At most this many creates or deletes per sync (Kubernetes' ``BurstReplicas``)."""
FAILURE_CONDITION = "ReplicaFailure"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _labels_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    return old is not None and (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {})


async def slow_start_batch(
    count: int, initial: int, fn: Callable[[], Awaitable[Any]]
) -> tuple[int, BaseException | None]:
    """Call ``fn`` ``count`` times in batches of ``initial``, then double, stopping after the
    first batch with a failure; returns the successes and the first error."""
    successes, remaining = 0, count
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        if errors:
            for err in errors:
                if isinstance(err, asyncio.CancelledError):
                    raise err
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


class ReplicaSetController(Reconciler):
    name = "replicaset-controller"
    kinds = (RS, POD)
    burst_replicas = BURST_REPLICAS

    conformance = scenarios("replicaset_scenarios")

    async def setup(self) -> None:
        self.expectations = Expectations()

    # -- events ---------------------------------------------------------------------------

    def observe(self, event: ResourceEvent) -> None:
        if (event.api_version, event.kind) == RS:
            if event.type == DELETED:
                self.expectations.forget(event.key)
            return
        pod = event.obj
        uid = _meta(pod).get("uid", "")
        rs = self.resolve_controller(pod)
        if rs is None:
            return
        key = self._key(rs)
        if event.type == ADDED:
            if being_deleted(pod):
                self.expectations.deletion_observed(key, uid)
            else:
                self.expectations.creation_observed(key)
        elif event.type == MODIFIED:
            if being_deleted(pod):
                self.expectations.deletion_observed(key, uid)
            min_ready = (rs.get("spec") or {}).get("minReadySeconds") or 0
            if (
                min_ready
                and event.old is not None
                and not is_pod_ready(event.old)
                and is_pod_ready(pod)
            ):
                self.enqueue(key, after=min_ready + 1)
        elif event.type == DELETED:
            self.expectations.deletion_observed(key, uid)

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == RS:
            return [event.key]
        pod, old = event.obj, event.old
        if event.type == MODIFIED and old is not None:
            if _meta(old).get("resourceVersion") == _meta(pod).get("resourceVersion"):
                return []  # a resync: nothing changed
        keys = list(super().keys_for(event))
        if controller_ref(pod) is None and event.type != DELETED and not being_deleted(pod):
            ref_changed = old is not None and controller_ref(old) is not None
            if event.type == ADDED or _labels_changed(old, pod) or ref_changed:
                keys += [k for k in self.selecting(RS, pod) if k not in keys]
        return keys

    @staticmethod
    def _key(rs: dict[str, Any]) -> str:
        return make_key(_meta(rs).get("namespace"), _meta(rs)["name"])

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        rs = self.cached(key)
        if rs is None:
            self.expectations.forget(key)
            return None
        rs = {**rs, "apiVersion": RS[0], "kind": RS[1]}
        namespace, _ = split_key(key)
        spec = rs.get("spec") or {}
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = from_label_selector_object(spec.get("selector"))
        except BadRequest as exc:
            raise PermanentError(f"invalid selector: {exc}") from exc
        active = [p for p in self.informers.list(*POD, namespace) if is_pod_active(p)]
        pods = await ControllerRefManager(self.api, rs, selector).claim(active)
        manage_error: BaseException | None = None
        if needs_sync and not being_deleted(rs):
            try:
                await self.manage_replicas(key, rs, pods)
            except KcoreError as exc:
                manage_error = exc
        status = self.calculate_status(rs, pods, manage_error)
        if self._status_changed(rs.get("status") or {}, status):
            await self.update_status(rs, status)
        if manage_error is not None:
            raise manage_error
        replicas = self._replicas(rs)
        min_ready = spec.get("minReadySeconds") or 0
        if (
            min_ready
            and status["readyReplicas"] == replicas
            and status["availableReplicas"] != replicas
        ):
            return float(min_ready)
        return None

    @staticmethod
    def _replicas(rs: dict[str, Any]) -> int:
        replicas = (rs.get("spec") or {}).get("replicas")
        return 1 if replicas is None else int(replicas)

    async def manage_replicas(
        self, key: str, rs: dict[str, Any], pods: list[dict[str, Any]]
    ) -> None:
        """Create or delete pods so that ``len(pods)`` reaches ``spec.replicas``."""
        diff = len(pods) - self._replicas(rs)
        if diff < 0:
            count = min(-diff, self.burst_replicas)
            self.expectations.expect_creations(key, count)
            log.debug("too few replicas", replica_set=key, need=self._replicas(rs), creating=count)
            successes, error = await slow_start_batch(count, 1, lambda: self._create_pod(rs))
            for _ in range(count - successes):
                self.expectations.creation_observed(key)  # never coming
            if error is not None and not namespace_terminating(error):
                raise error
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            victims = self.pods_to_delete(pods, self.related_pods(rs), count)
            self.expectations.expect_deletions(key, [_meta(p).get("uid", "") for p in victims])
            log.debug("too many replicas", replica_set=key, need=self._replicas(rs), deleting=count)
            results = await asyncio.gather(
                *(self._delete_pod(key, rs, p) for p in victims), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]

    def pod_from_template(self, rs: dict[str, Any]) -> dict[str, Any]:
        template = (rs.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        meta: dict[str, Any] = {
            "generateName": f"{_meta(rs)['name']}-",
            "namespace": _meta(rs).get("namespace"),
        }
        for field in ("labels", "annotations", "finalizers"):
            if tmeta.get(field):
                meta[field] = copy.deepcopy(tmeta[field])
        meta["ownerReferences"] = [owner_reference(rs)]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }

    async def _create_pod(self, rs: dict[str, Any]) -> None:
        await self.create_pod(rs, self.pod_from_template(rs))

    async def _delete_pod(self, key: str, rs: dict[str, Any], pod: dict[str, Any]) -> None:
        m = _meta(pod)
        try:
            await self.api.delete("v1", "Pod", m["name"], m.get("namespace"))
        except KcoreError as exc:
            self.expectations.deletion_observed(key, m.get("uid", ""))  # not coming
            if isinstance(exc, NotFound):
                return
            await self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {exc}")
            raise
        await self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

    def related_pods(self, rs: dict[str, Any]) -> list[dict[str, Any]]:
        """Pods of every ReplicaSet with the same controller as ``rs`` (a Deployment's), or
        of ``rs`` alone; they rank pods that share a node for deletion."""
        namespace = _meta(rs).get("namespace")
        ref = controller_ref(rs)
        siblings = [rs]
        if ref is not None:
            siblings = [
                s
                for s in self.informers.by_index(*RS, BY_CONTROLLER, ref.get("uid", ""))
                if _meta(s).get("namespace") == namespace
            ] or [rs]
        seen: set[str] = set()
        related = []
        pods = self.informers.list(*POD, namespace)
        for sibling in siblings:
            try:
                selector = from_label_selector_object((sibling.get("spec") or {}).get("selector"))
            except BadRequest:
                continue
            for pod in pods:
                uid = _meta(pod).get("uid", "")
                if uid not in seen and selector.matches_object(pod):
                    seen.add(uid)
                    related.append(pod)
        return related

    def pods_to_delete(
        self, pods: list[dict[str, Any]], related: list[dict[str, Any]], count: int
    ) -> list[dict[str, Any]]:
        if count >= len(pods):
            return pods[:count]
        on_node: dict[str, int] = {}
        for pod in related:
            if is_pod_active(pod):
                node = (pod.get("spec") or {}).get("nodeName") or ""
                on_node[node] = on_node.get(node, 0) + 1
        ranks = [on_node.get((p.get("spec") or {}).get("nodeName") or "", 0) for p in pods]
        return list(deletion_order(pods, ranks, self.now()))[:count]  # type: ignore[arg-type]

    # -- status ---------------------------------------------------------------------------

    def calculate_status(
        self, rs: dict[str, Any], pods: list[dict[str, Any]], manage_error: BaseException | None
    ) -> dict[str, Any]:
        spec = rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        fully = label_selector_from_set(template_labels)
        min_ready = spec.get("minReadySeconds") or 0
        now = self.now()
        status = copy.deepcopy(rs.get("status") or {})
        status.update(
            replicas=len(pods),
            fullyLabeledReplicas=sum(1 for p in pods if fully.matches_object(p)),
            readyReplicas=sum(1 for p in pods if is_pod_ready(p)),
            availableReplicas=sum(1 for p in pods if is_pod_available(p, min_ready, now)),
            observedGeneration=_meta(rs).get("generation"),
        )
        conditions = [
            c for c in status.get("conditions") or () if c.get("type") != FAILURE_CONDITION
        ]
        failure = next(
            (c for c in status.get("conditions") or () if c.get("type") == FAILURE_CONDITION), None
        )
        if manage_error is not None:
            if failure is None:
                diff = len(pods) - self._replicas(rs)
                reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
                failure = {
                    "type": FAILURE_CONDITION,
                    "status": "True",
                    "lastTransitionTime": _rfc3339(now),
                    "reason": reason,
                    "message": str(manage_error),
                }
            conditions.append(failure)
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        if status.get("observedGeneration") is None:
            status.pop("observedGeneration", None)
        return status

    async def update_status(self, rs: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write ``status``; on a conflict (the cache was behind) read the ReplicaSet again
        and retry once, as Kubernetes does."""
        try:
            return await self.api.update_status({**rs, "status": status})
        except Conflict:
            m = _meta(rs)
            fresh = await self.api.get(*RS, m["name"], namespace=m.get("namespace"))
            if _meta(fresh).get("uid") != m.get("uid"):
                raise
            return await self.api.update_status({**fresh, "status": status})

    @staticmethod
    def _status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
        fields = (
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        )
        if any((old.get(f) or 0) != (new.get(f) or 0) for f in fields):
            return True
        return (old.get("conditions") or []) != (new.get("conditions") or [])


def _rfc3339(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def controllers(settings: Any) -> list[Reconciler]:
    return [ReplicaSetController()]


__all__ = ["BURST_REPLICAS", "ReplicaSetController", "controllers", "slow_start_batch"]
