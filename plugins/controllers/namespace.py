"""The namespace controller: a deleted namespace is emptied, then finalized.

As Kubernetes' ``pkg/controller/namespace``: the API server answers a namespace DELETE by
setting ``deletionTimestamp`` and ``status.phase: Terminating`` and refuses new content
(403, cause ``NamespaceTerminating``); the namespace keeps its ``spec.finalizers:
["kubernetes"]``. This controller then deletes everything in it, every namespaced kind the
server serves (propagation Background; pods get their graceful termination), and once
nothing is left removes the ``kubernetes`` finalizer through ``namespaces/<name>/finalize``,
upon which the API server deletes the namespace (one without that finalizer, from before
namespaces had it, is deleted again instead).

While content remains, the namespace's status carries upstream's conditions
(``NamespaceContentRemaining``, ``NamespaceFinalizersRemaining``,
``NamespaceDeletionContentFailure`` ...), which ``kubectl describe namespace`` shows, and
the namespace is looked at again: at once when one of its pods goes, otherwise after a
delay that grows from 0.5 to 5 seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from kcore.api import registry
from kcore.api.registry import by_kind
from kcore.controllers import DELETED, Reconciler, ResourceEvent, being_deleted
from kcore.errors import NotFound
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.namespace")

NAMESPACE = ("v1", "Namespace")
POD = ("v1", "Pod")
FINALIZER = "kubernetes"
REQUEUE_MIN, REQUEUE_MAX = 0.5, 5.0

CONDITION_TYPES = (
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def content_kinds() -> list[tuple[str, str]]:
    """Every namespaced kind that can be listed and deleted: what a namespace holds,
    custom resources included (one version of each)."""
    kinds, seen = [], set()
    for r in registry.served():
        if r.namespaced and {"list", "delete"} <= set(r.verbs) and (r.group, r.plural) not in seen:
            seen.add((r.group, r.plural))
            kinds.append((r.api_version, r.kind))
    return kinds


class NamespaceController(Reconciler):
    name = "namespace-controller"
    kinds = (NAMESPACE, POD)
    workers = 2

    conformance = scenarios("namespace_scenarios")

    async def setup(self) -> None:
        self._attempts: dict[str, int] = {}

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == NAMESPACE:
            return [event.key] if being_deleted(event.obj) else []
        if event.type != DELETED or not event.namespace:
            return []
        ns = self.informers.get(*NAMESPACE, event.namespace)
        return [event.namespace] if ns is not None and being_deleted(ns) else []

    async def reconcile(self, key: str) -> float | None:
        cached = self.cached(key)
        if cached is None or not being_deleted(cached):
            self._attempts.pop(key, None)
            return None
        try:
            ns = await self.api.get(*NAMESPACE, key)
        except NotFound:
            self._attempts.pop(key, None)
            return None
        spec_finalizers = (ns.get("spec") or {}).get("finalizers") or ()
        if not being_deleted(ns) or (spec_finalizers and FINALIZER not in spec_finalizers):
            self._attempts.pop(key, None)
            return None  # gone, or waiting for another party's finalizer
        remaining, finalizers, failures = await self.delete_content(key)
        ns = await self.update_conditions(ns, remaining, finalizers, failures)
        if remaining or failures:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            return min(REQUEUE_MIN * 2**attempt, REQUEUE_MAX)
        self._attempts.pop(key, None)
        if spec_finalizers:
            await self.finalize(ns)
        else:
            await self.delete_finalized(ns)
        return None

    async def delete_content(
        self, namespace: str
    ) -> tuple[dict[str, int], dict[str, int], list[str]]:
        """Delete what the namespace holds; return what is left (by ``plural.group``), the
        finalizers that hold it, and the errors."""
        remaining: dict[str, int] = {}
        finalizers: Counter[str] = Counter()
        failures: list[str] = []
        for api_version, kind in content_kinds():
            info = by_kind(api_version, kind)
            assert info is not None
            try:
                items, _ = await self.api.list(api_version, kind, namespace=namespace)
                for item in items:
                    if not being_deleted(item):
                        await self._delete(api_version, kind, namespace, item)
                if items:
                    items, _ = await self.api.list(api_version, kind, namespace=namespace)
            except Exception as exc:
                failures.append(f"{info.plural}.{info.group}: {exc}")
                continue
            if items:
                remaining[f"{info.plural}.{info.group}"] = len(items)
                for item in items:
                    finalizers.update(_meta(item).get("finalizers") or ())
        return remaining, dict(finalizers), failures

    async def _delete(self, api_version: str, kind: str, namespace: str, item: dict) -> None:
        m = _meta(item)
        try:
            await self.api.delete(
                api_version,
                kind,
                m["name"],
                namespace,
                propagation_policy="Background",
                preconditions={"uid": m["uid"]} if m.get("uid") else None,
            )
        except NotFound:
            pass

    async def update_conditions(
        self,
        ns: dict[str, Any],
        remaining: dict[str, int],
        finalizers: dict[str, int],
        failures: list[str],
    ) -> dict[str, Any]:
        """Write the Terminating phase and upstream's deletion conditions when they
        changed; the namespace as it is now."""
        status = dict(ns.get("status") or {})
        old = {c.get("type"): c for c in status.get("conditions") or ()}
        wanted = {
            "NamespaceDeletionDiscoveryFailure": (
                "False",
                "ResourcesDiscovered",
                "All resources successfully discovered",
            ),
            "NamespaceDeletionGroupVersionParsingFailure": (
                "False",
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed",
            ),
            "NamespaceDeletionContentFailure": (
                ("True", "ContentDeletionFailed", _failed_message(failures))
                if failures
                else (
                    "False",
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                )
            ),
            "NamespaceContentRemaining": (
                (
                    "True",
                    "SomeResourcesRemain",
                    "Some resources are remaining: "
                    + ", ".join(
                        f"{r} has {n} resource instances" for r, n in sorted(remaining.items())
                    ),
                )
                if remaining
                else ("False", "ContentRemoved", "All content successfully removed")
            ),
            "NamespaceFinalizersRemaining": (
                (
                    "True",
                    "SomeFinalizersRemain",
                    "Some content in the namespace has finalizers remaining: "
                    + ", ".join(
                        f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())
                    ),
                )
                if finalizers
                else (
                    "False",
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished",
                )
            ),
        }
        stamp = datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [c for c in status.get("conditions") or () if c.get("type") not in wanted]
        for ctype in CONDITION_TYPES:
            state, reason, message = wanted[ctype]
            before = old.get(ctype) or {}
            conditions.append(
                {
                    "type": ctype,
                    "status": state,
                    "lastTransitionTime": (
                        before.get("lastTransitionTime") if before.get("status") == state else stamp
                    ),
                    "reason": reason,
                    "message": message,
                }
            )
        new_status = {**status, "phase": "Terminating", "conditions": conditions}
        if _same_conditions(status, new_status):
            return ns
        try:
            return await self.api.update_status({**ns, "status": new_status})
        except NotFound:
            return ns

    async def finalize(self, ns: dict[str, Any]) -> None:
        """PUT ``namespaces/<name>/finalize`` without the ``kubernetes`` finalizer: the API
        server then deletes the namespace."""
        m = _meta(ns)
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": m["name"], "resourceVersion": m.get("resourceVersion")},
            "spec": {
                "finalizers": [
                    f for f in (ns.get("spec") or {}).get("finalizers") or () if f != FINALIZER
                ]
            },
        }
        info = by_kind(*NAMESPACE)
        log.info("namespace is empty; finalizing it", namespace=m["name"])
        try:
            # ApiClient has no call for namespaces/finalize: through its transport.
            await self.api.transport.update(
                info, None, m["name"], body, subresource="finalize", dry_run=False
            )
        except NotFound:
            pass

    async def delete_finalized(self, ns: dict[str, Any]) -> None:
        """A namespace without the finalizer (made before namespaces had it) goes by a
        second DELETE once it is empty, as Kubernetes' controller did before ``/finalize``
        deleted namespaces."""
        m = _meta(ns)
        log.info("namespace is empty; deleting it", namespace=m["name"])
        try:
            await self.api.delete(*NAMESPACE, m["name"], preconditions={"uid": m["uid"]})
        except NotFound:
            pass


def _failed_message(failures: list[str]) -> str:
    errors = failures[0] if len(failures) == 1 else "[" + ", ".join(failures) + "]"
    return f"Failed to delete all resource types, {len(failures)} remaining: {errors}"


def _same_conditions(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(status: dict[str, Any]) -> Any:
        return (
            status.get("phase"),
            sorted(
                (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                for c in status.get("conditions") or ()
            ),
        )

    return strip(old) == strip(new)


def controllers(settings: Any) -> list[Reconciler]:
    return [NamespaceController()]


__all__ = ["FINALIZER", "NamespaceController", "content_kinds", "controllers"]
