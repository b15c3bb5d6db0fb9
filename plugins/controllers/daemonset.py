"""The DaemonSet controller: one pod of the template on every eligible node.

As Kubernetes' ``pkg/controller/daemon``:

* **Eligible nodes.** A node should run the daemon pod when it matches the template's
  ``nodeName`` (if set), ``nodeSelector`` and required node affinity, and has no taint with
  effect ``NoSchedule`` or ``NoExecute`` that the pod does not tolerate. A pod already
  running stays where only a ``NoSchedule`` taint is untolerated (it leaves for
  ``NoExecute`` ones).
* **Pods.** Each pod is the template with the tolerations every daemon pod gets (``Exists``,
  no seconds: ``node.kubernetes.io/not-ready`` and ``unreachable`` ``NoExecute``;
  ``disk-pressure``, ``memory-pressure``, ``pid-pressure``, ``unschedulable``
  ``NoSchedule``; ``network-unavailable`` ``NoSchedule`` for ``hostNetwork`` pods), the
  labels ``controller-revision-hash`` and ``pod-template-generation``, and required node
  affinity ``matchFields metadata.name In [node]`` in place of the template's required
  terms; the scheduler binds it. Names are ``<ds>-<5 random>``.
* **Per node**: a missing pod is created; failed pods are deleted (and replaced on the next
  sync); of several running pods the oldest stays (with ``maxSurge``, the oldest updated
  and the oldest old one); pods on nodes that should not run them are deleted, and so are
  unscheduled pods aimed at nodes that are gone. A pod being deleted is waited for.
* **Updates.** ``RollingUpdate`` (default ``maxUnavailable: 1``, ``maxSurge: 0``; both
  percentages of the desired number of nodes, **rounded up**; a step runs only once the
  per-node pass has nothing to create or delete): without surge, old pods are
  deleted while at most ``maxUnavailable`` nodes lack an available updated pod (old pods
  that are not available go first, at once); with surge, an updated pod starts next to the
  old one on at most ``maxSurge`` nodes, and the old one goes once the new one is
  available. ``OnDelete``: only pods deleted by someone else are replaced by updated ones.
  A pod is updated when its ``controller-revision-hash`` is the template's hash (FNV-32a
  of the template and ``collisionCount``, encoded as Kubernetes' ``SafeEncodeString``).
* **History.** Each template gets an ``apps/v1 ControllerRevision`` named
  ``<ds>-<hash>`` (controlled by the DaemonSet; labels: the template's plus
  ``controller-revision-hash``; the DaemonSet's annotations, so ``kubernetes.io/change-cause``
  shows in ``kubectl rollout history``) whose ``data`` is the strategic merge patch
  ``{"spec": {"template": {..., "$patch": "replace"}}}`` that ``kubectl rollout undo``
  applies; its ``revision`` is one above the highest, and a template that returns (an
  undo) gets its old revision renumbered to the top. A hash already taken by another
  template bumps ``status.collisionCount``. Beyond ``revisionHistoryLimit`` (10) the oldest
  revisions that no pod runs are deleted.
* **Status**: ``desiredNumberScheduled``, ``currentNumberScheduled``,
  ``numberMisscheduled``, ``numberReady``, ``updatedNumberScheduled``, ``numberAvailable``
  (ready for ``minReadySeconds``), ``numberUnavailable``, ``observedGeneration``; written
  only when it changed.
* Claiming (adoption and release by selector) and expectations work as for ReplicaSets;
  events ``SuccessfulCreate`` / ``SuccessfulDelete`` / ``FailedCreate`` /
  ``FailedDaemonPod``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
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
    from_label_selector_object,
    is_pod_available,
    is_pod_ready,
    make_key,
    namespace_terminating,
    owner_reference,
    parse_time,
    split_key,
)
from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    KcoreError,
    NotFound,
    PermanentError,
)
from kcore.plugins.controllers.nodelifecycle import (
    TAINT_DISK_PRESSURE,
    TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE,
    TAINT_NOT_READY,
    TAINT_PID_PRESSURE,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    tolerates,
)
from kcore.plugins.controllers.replicaset import slow_start_batch
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.daemonset")

DS = ("apps/v1", "DaemonSet")
POD = ("v1", "Pod")
NODE = ("v1", "Node")
REVISION = ("apps/v1", "ControllerRevision")
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
BURST_REPLICAS = 250
"""At most this many creates or deletes per sync (the DaemonSet controller's burst)."""

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


# -- what a daemon pod looks like ------------------------------------------------------------


def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """FNV-32a of the template (canonical JSON) and ``collisionCount``, as Kubernetes'
    ``SafeEncodeString`` of the decimal hash (no vowels, no look-alike characters)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in str(value))


def revision_data(ds: Mapping[str, Any]) -> dict[str, Any]:
    """A DaemonSet revision's ``data``: the strategic merge patch that puts this template
    back (what ``kubectl rollout undo`` sends)."""
    template = copy.deepcopy(_spec(ds).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def _daemon_tolerations(host_network: bool) -> list[dict[str, Any]]:
    keys = [
        (TAINT_NOT_READY, "NoExecute"),
        (TAINT_UNREACHABLE, "NoExecute"),
        (TAINT_DISK_PRESSURE, "NoSchedule"),
        (TAINT_MEMORY_PRESSURE, "NoSchedule"),
        (TAINT_PID_PRESSURE, "NoSchedule"),
        (TAINT_UNSCHEDULABLE, "NoSchedule"),
    ]
    if host_network:
        keys.append((TAINT_NETWORK_UNAVAILABLE, "NoSchedule"))
    return [{"key": k, "operator": "Exists", "effect": e} for k, e in keys]


def _same_toleration(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Kubernetes' ``Toleration.MatchToleration``: key, operator, value and effect."""
    return (
        (a.get("key") or "") == (b.get("key") or "")
        and (a.get("operator") or "Equal") == (b.get("operator") or "Equal")
        and (a.get("value") or "") == (b.get("value") or "")
        and (a.get("effect") or "") == (b.get("effect") or "")
    )


def add_daemon_tolerations(spec: dict[str, Any]) -> None:
    """Add (or replace, as ``AddOrUpdateTolerationInPodSpec``) the tolerations every
    daemon pod has."""
    tolerations = list(spec.get("tolerations") or ())
    for wanted in _daemon_tolerations(bool(spec.get("hostNetwork"))):
        for i, have in enumerate(tolerations):
            if _same_toleration(have, wanted):
                tolerations[i] = wanted
                break
        else:
            tolerations.append(wanted)
    spec["tolerations"] = tolerations


def node_name_affinity(affinity: Mapping[str, Any] | None, node: str) -> dict[str, Any]:
    """``affinity`` whose required node affinity is ``matchFields metadata.name In [node]``
    (Kubernetes' ``ReplaceDaemonSetPodNodeNameNodeAffinity``); the rest is kept."""
    out = copy.deepcopy(dict(affinity or {}))
    node_affinity = out.setdefault("nodeAffinity", {}) or {}
    out["nodeAffinity"] = node_affinity
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }
    return out


def target_node(pod: Mapping[str, Any]) -> str | None:
    """The node a daemon pod is for: ``spec.nodeName``, else the one name its required
    node affinity allows (Kubernetes' ``GetTargetNodeName``)."""
    spec = _spec(pod)
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for expr in term.get("matchFields") or ():
            values = expr.get("values") or ()
            if expr.get("key") == "metadata.name" and expr.get("operator") == "In":
                if len(values) == 1:
                    return values[0]
    return None


# -- which nodes ---------------------------------------------------------------------------


def _requirement_holds(expr: Mapping[str, Any], values_of: Mapping[str, str]) -> bool:
    key, op = expr.get("key"), expr.get("operator")
    values = list(expr.get("values") or ())
    if op == "In":
        return values_of.get(key) in values
    if op == "NotIn":
        return values_of.get(key) not in values
    if op == "Exists":
        return key in values_of
    if op == "DoesNotExist":
        return key not in values_of
    if op in ("Gt", "Lt") and len(values) == 1:
        try:
            have, bound = int(values_of[key]), int(values[0])
        except (KeyError, TypeError, ValueError):
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """A ``NodeSelectorTerm``: every ``matchExpressions`` (on labels) and ``matchFields``
    (``metadata.name``) requirement holds; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not exprs and not fields:
        return False
    labels = _meta(node).get("labels") or {}
    if not all(_requirement_holds(e, labels) for e in exprs):
        return False
    name_field = {"metadata.name": _meta(node).get("name", "")}
    return all(
        e.get("key") == "metadata.name"
        and e.get("operator") in ("In", "NotIn")
        and _requirement_holds(e, name_field)
        for e in fields
    )


def _fits(template_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Node name, nodeSelector and required node affinity of the template."""
    name = _meta(node).get("name")
    wanted = template_spec.get("nodeName")
    if wanted and wanted != name:
        return False
    labels = _meta(node).get("labels") or {}
    for key, value in (template_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((template_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if required and not any(node_selector_term_matches(t, node) for t in terms or ()):
        return False
    return True


def node_should_run(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(should run, should continue running)`` a daemon pod of ``pod_spec`` (the template
    with the daemon tolerations) on ``node`` (Kubernetes' ``NodeShouldRunDaemonPod``)."""
    if not _fits(pod_spec, node):
        return False, False
    tolerations = pod_spec.get("tolerations") or ()
    untolerated = [
        t
        for t in _spec(node).get("taints") or ()
        if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, t)
    ]
    if not untolerated:
        return True, True
    return False, not any(t.get("effect") == "NoExecute" for t in untolerated)


# -- the update strategy ---------------------------------------------------------------------


def scaled_value(value: Any, total: int, *, default: int) -> int:
    """An int-or-percent of ``total``, a percentage rounded **up** (as the DaemonSet
    controller does for both ``maxSurge`` and ``maxUnavailable``)."""
    if value is None:
        return default
    if isinstance(value, int):
        return max(value, 0)
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            return default
        return max(math.ceil(percent * total / 100), 0)
    try:
        return max(int(text), 0)
    except ValueError:
        return default


def _rolling(ds: Mapping[str, Any]) -> dict[str, Any] | None:
    strategy = _spec(ds).get("updateStrategy") or {}
    if (strategy.get("type") or "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def surge_and_unavailable(ds: Mapping[str, Any], desired: int) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` against ``desired`` nodes; at least one may be
    unavailable when neither is set."""
    rolling = _rolling(ds) or {}
    surge = scaled_value(rolling.get("maxSurge"), desired, default=0)
    unavailable = scaled_value(rolling.get("maxUnavailable"), desired, default=1)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _by_age(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first; pods that are running before pending ones of the same age."""

    def key(pod: Mapping[str, Any]) -> tuple[float, int, str]:
        created = parse_time(_meta(pod).get("creationTimestamp")) or 0.0
        phase = (pod.get("status") or {}).get("phase")
        return created, 0 if phase == "Running" else 1, _meta(pod).get("name", "")

    return sorted(pods, key=key)


class DaemonSetController(Reconciler):
    name = "daemonset-controller"
    kinds = (DS, POD, NODE, REVISION)
    burst_replicas = BURST_REPLICAS

    conformance = scenarios("daemonset_scenarios")

    async def setup(self) -> None:
        self.creations = Expectations()
        self.deletions = Expectations()

    @staticmethod
    def _key(ds: Mapping[str, Any]) -> str:
        return make_key(_meta(ds).get("namespace"), _meta(ds)["name"])

    def _all_keys(self) -> list[str]:
        return [self._key(ds) for ds in self.informers.list(*DS)]

    # -- events ---------------------------------------------------------------------------

    def observe(self, event: ResourceEvent) -> None:
        kind = (event.api_version, event.kind)
        if kind == DS:
            if event.type == DELETED:
                self.creations.forget(event.key)
                self.deletions.forget(event.key)
            return
        if kind != POD:
            return
        pod = event.obj
        ds = self.resolve_controller(pod)
        if ds is None:
            return
        key, uid = self._key(ds), _meta(pod).get("uid", "")
        if event.type == ADDED and not being_deleted(pod):
            self.creations.creation_observed(key)
        if event.type == DELETED or being_deleted(pod):
            self.deletions.deletion_observed(key, uid)
        min_ready = _spec(ds).get("minReadySeconds") or 0
        if (
            event.type == MODIFIED
            and min_ready
            and event.old is not None
            and not is_pod_ready(event.old)
            and is_pod_ready(pod)
        ):
            self.enqueue(key, after=min_ready + 1)

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        kind = (event.api_version, event.kind)
        if kind == DS:
            return [event.key]
        if kind == NODE:
            return self._keys_for_node(event)
        if kind == REVISION:
            return list(super().keys_for(event)) if event.type == DELETED else []
        pod, old = event.obj, event.old
        if event.type == MODIFIED and old is not None:
            if _meta(old).get("resourceVersion") == _meta(pod).get("resourceVersion"):
                return []
        keys = list(super().keys_for(event))
        if controller_ref(pod) is None and event.type != DELETED and not being_deleted(pod):
            labels_changed = old is not None and (_meta(old).get("labels") or {}) != (
                _meta(pod).get("labels") or {}
            )
            ref_dropped = old is not None and controller_ref(old) is not None
            if event.type == ADDED or labels_changed or ref_dropped:
                keys += [k for k in self.selecting(DS, pod) if k not in keys]
        return keys

    def _keys_for_node(self, event: ResourceEvent) -> list[str]:
        if event.type == MODIFIED and event.old is not None:
            old, new = event.old, event.obj
            if (
                (_meta(old).get("labels") or {}) == (_meta(new).get("labels") or {})
                and (_spec(old).get("taints") or []) == (_spec(new).get("taints") or [])
                and bool(_spec(old).get("unschedulable")) == bool(_spec(new).get("unschedulable"))
            ):
                return []
        return self._all_keys()

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        ds = self.cached(key)
        if ds is None:
            self.creations.forget(key)
            self.deletions.forget(key)
            return None
        ds = {**ds, "apiVersion": DS[0], "kind": DS[1]}
        namespace, _ = split_key(key)
        try:
            selector = from_label_selector_object(_spec(ds).get("selector"))
        except BadRequest as exc:
            raise PermanentError(f"invalid selector: {exc}") from exc
        if selector.empty:
            raise PermanentError("an empty selector would select every pod of the namespace")
        pods = await ControllerRefManager(self.api, ds, selector).claim(
            self.informers.list(*POD, namespace)
        )
        template = _spec(ds).get("template") or {}
        hash_ = template_hash(template, (ds.get("status") or {}).get("collisionCount"))
        nodes = self.informers.list(*NODE)
        by_node = self._pods_by_node(pods)
        error: BaseException | None = None
        if not being_deleted(ds):
            await self.construct_history(ds, hash_)
        if not being_deleted(ds) and self._satisfied(key):
            try:
                await self.manage(key, ds, nodes, by_node, hash_)
            except KcoreError as exc:
                error = exc
            await self.cleanup_history(ds, pods, hash_)
        status = self.calculate_status(ds, nodes, by_node, hash_)
        if self._status_changed(ds.get("status") or {}, status):
            await self.update_status(ds, status)
        if error is not None:
            raise error
        min_ready = _spec(ds).get("minReadySeconds") or 0
        if min_ready and status["numberReady"] != status["numberAvailable"]:
            return float(min_ready)
        return None

    # -- history --------------------------------------------------------------------------

    def revisions(self, ds: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The ControllerRevisions the DaemonSet controls, oldest revision first."""
        owned = self.informers.by_index(*REVISION, BY_CONTROLLER, _meta(ds).get("uid") or "")
        return sorted(owned, key=lambda r: (r.get("revision") or 0, _meta(r).get("name")))

    async def construct_history(self, ds: dict[str, Any], hash_: str) -> None:
        """Make sure the current template has the highest revision (see the module
        docstring)."""
        meta = _meta(ds)
        data = revision_data(ds)
        revisions = self.revisions(ds)
        highest = max((r.get("revision") or 0 for r in revisions), default=0)
        current = [r for r in revisions if r.get("data") == data]
        if current:
            newest = current[-1]
            if (newest.get("revision") or 0) < highest:
                await self.api.patch(
                    *REVISION,
                    _meta(newest)["name"],
                    {"revision": highest + 1},
                    "merge",
                    namespace=meta.get("namespace"),
                )
            return
        template = _spec(ds).get("template") or {}
        revision = {
            "apiVersion": REVISION[0],
            "kind": REVISION[1],
            "metadata": {
                "name": f"{meta['name']}-{hash_}",
                "namespace": meta.get("namespace"),
                "labels": {
                    **((template.get("metadata") or {}).get("labels") or {}),
                    HASH_LABEL: hash_,
                },
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [owner_reference(ds)],
            },
            "data": data,
            "revision": highest + 1,
        }
        try:
            await self.api.create(revision)
        except AlreadyExists:
            existing = await self.api.get(
                *REVISION, revision["metadata"]["name"], namespace=meta.get("namespace")
            )
            if existing.get("data") == data and controller_ref(existing) is not None:
                return  # ours; the cache had not seen it yet
            # Another template (or owner) holds this hash: count a collision and go again.
            count = ((ds.get("status") or {}).get("collisionCount") or 0) + 1
            await self.api.patch(
                *DS,
                meta["name"],
                {"status": {"collisionCount": count}},
                "merge",
                namespace=meta.get("namespace"),
                subresource="status",
            )
            raise Conflict(
                f"controller revision hash {hash_} collides; collisionCount {count}"
            ) from None

    async def cleanup_history(
        self, ds: dict[str, Any], pods: Sequence[Mapping[str, Any]], hash_: str
    ) -> None:
        """Delete the oldest revisions beyond ``revisionHistoryLimit`` that no pod runs."""
        limit = _spec(ds).get("revisionHistoryLimit")
        limit = 10 if limit is None else limit
        live = {(_meta(p).get("labels") or {}).get(HASH_LABEL) for p in pods}
        old = [
            r
            for r in self.revisions(ds)
            if (_meta(r).get("labels") or {}).get(HASH_LABEL) not in live | {hash_}
        ]
        for revision in old[: max(len(old) - limit, 0)]:
            with contextlib.suppress(NotFound):
                await self.api.delete(
                    *REVISION, _meta(revision)["name"], namespace=_meta(ds).get("namespace")
                )

    def _satisfied(self, key: str) -> bool:
        return self.creations.satisfied(key) and self.deletions.satisfied(key)

    @staticmethod
    def _pods_by_node(pods: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Claimed pods by target node, leaving out terminal pods being deleted (nothing
        more to do with those)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if being_deleted(pod) and phase in ("Succeeded", "Failed"):
                continue
            node = target_node(pod)
            if node is None:
                log.warning("daemon pod has no target node", pod=_meta(pod).get("name"))
                continue
            out.setdefault(node, []).append(pod)
        return out

    def pod_spec_for(self, ds: Mapping[str, Any]) -> dict[str, Any]:
        """The template's spec with the daemon tolerations (what eligibility is judged on)."""
        spec = copy.deepcopy(_spec(ds).get("template", {}).get("spec") or {})
        add_daemon_tolerations(spec)
        return spec

    async def manage(
        self,
        key: str,
        ds: dict[str, Any],
        nodes: Sequence[Mapping[str, Any]],
        by_node: dict[str, list[dict[str, Any]]],
        hash_: str,
    ) -> None:
        pod_spec = self.pod_spec_for(ds)
        surge, _ = surge_and_unavailable(ds, len(nodes))
        allow_surge = _rolling(ds) is not None and surge > 0
        create: list[str] = []
        delete: list[dict[str, Any]] = []
        names = set()
        for node in nodes:
            name = _meta(node)["name"]
            names.add(name)
            should_run, should_continue = node_should_run(pod_spec, node)
            pods = by_node.get(name, [])
            if should_run and not pods:
                create.append(name)
            elif should_continue:
                running = []
                for pod in pods:
                    if being_deleted(pod):
                        continue
                    if (pod.get("status") or {}).get("phase") == "Failed":
                        await self.recorder.event(
                            ds,
                            "Warning",
                            "FailedDaemonPod",
                            f"Found failed daemon pod {_meta(pod).get('namespace')}/"
                            f"{_meta(pod)['name']} on node {name}, will try to kill it",
                        )
                        delete.append(pod)
                    else:
                        running.append(pod)
                delete += self._extra_pods(running, hash_, allow_surge)
            else:
                delete += [p for p in pods if not being_deleted(p)]
        # Unscheduled pods aimed at nodes that are gone.
        for node_name, pods in by_node.items():
            if node_name not in names:
                delete += [p for p in pods if not _spec(p).get("nodeName") and not being_deleted(p)]
        await self.sync_nodes(key, ds, delete, create, hash_)
        if _rolling(ds) is not None and not create and not delete:
            old, new_nodes = self.rolling_update(ds, nodes, by_node, hash_, pod_spec)
            await self.sync_nodes(key, ds, old, new_nodes, hash_)

    @staticmethod
    def _extra_pods(
        running: list[dict[str, Any]], hash_: str, allow_surge: bool
    ) -> list[dict[str, Any]]:
        """Of several running pods on one node, those to delete: all but the oldest, or
        with surge all but the oldest updated and the oldest old one."""
        if len(running) <= 1:
            return []
        ordered = _by_age(running)
        if not allow_surge:
            return ordered[1:]
        extra, kept_new, kept_old = [], False, False
        for pod in ordered:
            updated = (_meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_
            if updated and not kept_new:
                kept_new = True
            elif not updated and not kept_old:
                kept_old = True
            else:
                extra.append(pod)
        return extra

    def rolling_update(
        self,
        ds: dict[str, Any],
        nodes: Sequence[Mapping[str, Any]],
        by_node: dict[str, list[dict[str, Any]]],
        hash_: str,
        pod_spec: Mapping[str, Any],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """``(old pods to delete, nodes to surge onto)`` for one step of a rolling update
        (Kubernetes' ``rollingUpdate``)."""
        node_by_name = {_meta(n)["name"]: n for n in nodes}
        by_node = dict(by_node)
        desired = 0
        for name, node in node_by_name.items():
            if node_should_run(pod_spec, node)[0]:
                desired += 1
                by_node.setdefault(name, [])  # no pod yet: unavailable
        max_surge, max_unavailable = surge_and_unavailable(ds, desired)
        min_ready = _spec(ds).get("minReadySeconds") or 0
        now = self.now()

        def available(pod: Mapping[str, Any]) -> bool:
            return is_pod_available(pod, min_ready, now)

        if max_surge == 0:
            unavailable = 0
            replace_now: list[dict[str, Any]] = []
            candidates: list[dict[str, Any]] = []
            for name in sorted(by_node):
                found = self._new_and_old(by_node[name], hash_)
                if found is None:
                    unavailable += 1
                    continue
                new, old = found
                if (new is None) == (old is None):
                    unavailable += 1
                elif new is not None:
                    if not available(new):
                        unavailable += 1
                elif not available(old):
                    replace_now.append(old)
                elif unavailable < max_unavailable:
                    candidates.append(old)
            room = max(0, min(max_unavailable - unavailable, len(candidates)))
            return replace_now + candidates[:room], []
        old_to_delete: list[dict[str, Any]] = []
        allowed_nodes: list[str] = []
        candidate_nodes: list[str] = []
        surging = 0
        for name in sorted(by_node):
            found = self._new_and_old(by_node[name], hash_)
            if found is None:
                surging += 1
                continue
            new, old = found
            node = node_by_name.get(name)
            if node is None or not node_should_run(pod_spec, node)[0]:
                if old is not None:
                    old_to_delete.append(old)
                continue
            if old is None:
                continue
            if new is None:
                if not available(old):
                    allowed_nodes.append(name)
                elif surging < max_surge:
                    candidate_nodes.append(name)
            elif not available(new):
                surging += 1
            else:
                old_to_delete.append(old)
        room = max(0, min(max_surge - surging, len(candidate_nodes)))
        return old_to_delete, allowed_nodes + candidate_nodes[:room]

    @staticmethod
    def _new_and_old(
        pods: Iterable[dict[str, Any]], hash_: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None] | None:
        """The one updated and the one old pod of a node (either may be ``None``); ``None``
        when there are several of a kind (the per-node pass cleans those up first)."""
        new = old = None
        for pod in pods:
            if being_deleted(pod):
                continue
            if (_meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_:
                if new is not None:
                    return None
                new = pod
            else:
                if old is not None:
                    return None
                old = pod
        return new, old

    # -- writes ---------------------------------------------------------------------------

    async def sync_nodes(
        self,
        key: str,
        ds: dict[str, Any],
        delete: list[dict[str, Any]],
        create: list[str],
        hash_: str,
    ) -> None:
        create = create[: self.burst_replicas]
        delete = delete[: self.burst_replicas]
        if not create and not delete:
            return
        self.creations.expect_creations(key, len(create))
        self.deletions.expect_deletions(key, [_meta(p).get("uid", "") for p in delete])
        log.debug("syncing daemon pods", daemon_set=key, creating=create, deleting=len(delete))
        pending = iter(create)
        template = self.pod_template(ds, hash_)

        async def create_next() -> None:
            await self._create_pod(ds, template, next(pending))

        successes, create_error = await slow_start_batch(len(create), 1, create_next)
        for _ in range(len(create) - successes):
            self.creations.creation_observed(key)
        results = await asyncio.gather(
            *(self._delete_pod(key, ds, p) for p in delete), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if create_error is not None and not namespace_terminating(create_error):
            raise create_error
        if errors:
            raise errors[0]

    def pod_template(self, ds: Mapping[str, Any], hash_: str) -> dict[str, Any]:
        """The pod every node gets, before its node affinity (Kubernetes'
        ``CreatePodTemplate``)."""
        template = copy.deepcopy(_spec(ds).get("template") or {})
        tmeta = template.get("metadata") or {}
        generation = (_meta(ds).get("annotations") or {}).get(
            TEMPLATE_GENERATION_ANNOTATION
        ) or str(_meta(ds).get("generation") or 1)
        labels = dict(tmeta.get("labels") or {})
        labels[GENERATION_LABEL] = str(generation)
        labels[HASH_LABEL] = hash_
        meta: dict[str, Any] = {
            "generateName": f"{_meta(ds)['name']}-",
            "namespace": _meta(ds).get("namespace"),
            "labels": labels,
            "ownerReferences": [owner_reference(ds)],
        }
        for field in ("annotations", "finalizers"):
            if tmeta.get(field):
                meta[field] = tmeta[field]
        spec = template.get("spec") or {}
        add_daemon_tolerations(spec)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    async def _create_pod(self, ds: dict[str, Any], template: Mapping[str, Any], node: str) -> None:
        pod = copy.deepcopy(dict(template))
        pod["spec"]["affinity"] = node_name_affinity(pod["spec"].get("affinity"), node)
        await self.create_pod(ds, pod)

    async def _delete_pod(self, key: str, ds: dict[str, Any], pod: Mapping[str, Any]) -> None:
        m = _meta(pod)
        try:
            await self.api.delete(
                "v1", "Pod", m["name"], m.get("namespace"), preconditions={"uid": m.get("uid")}
            )
        except KcoreError as exc:
            self.deletions.deletion_observed(key, m.get("uid", ""))
            if isinstance(exc, (NotFound, Conflict)):
                return  # gone, or replaced by another pod of that name
            await self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {exc}")
            raise
        await self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

    # -- status ---------------------------------------------------------------------------

    def calculate_status(
        self,
        ds: Mapping[str, Any],
        nodes: Sequence[Mapping[str, Any]],
        by_node: Mapping[str, list[dict[str, Any]]],
        hash_: str,
    ) -> dict[str, Any]:
        pod_spec = self.pod_spec_for(ds)
        min_ready = _spec(ds).get("minReadySeconds") or 0
        now = self.now()
        desired = current = misscheduled = ready = available = updated = 0
        for node in nodes:
            should_run, _ = node_should_run(pod_spec, node)
            pods = by_node.get(_meta(node)["name"]) or []
            if should_run:
                desired += 1
                if not pods:
                    continue
                current += 1
                pod = _by_age(pods)[0]
                if is_pod_ready(pod):
                    ready += 1
                    if is_pod_available(pod, min_ready, now):
                        available += 1
                if (_meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_:
                    updated += 1
            elif pods:
                misscheduled += 1
        status = copy.deepcopy(dict(ds.get("status") or {}))
        status.update(
            desiredNumberScheduled=desired,
            currentNumberScheduled=current,
            numberMisscheduled=misscheduled,
            numberReady=ready,
            updatedNumberScheduled=updated,
            numberAvailable=available,
            numberUnavailable=max(desired - available, 0),
        )
        generation = _meta(ds).get("generation")
        if generation is not None:
            status["observedGeneration"] = generation
        return status

    @staticmethod
    def _status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        fields = (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberMisscheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "observedGeneration",
        )
        return any(old.get(f) != new.get(f) for f in fields)

    async def update_status(self, ds: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write ``status``; on a conflict read the DaemonSet again and retry once."""
        try:
            return await self.api.update_status({**ds, "status": status})
        except Conflict:
            m = _meta(ds)
            fresh = await self.api.get(*DS, m["name"], namespace=m.get("namespace"))
            if _meta(fresh).get("uid") != m.get("uid"):
                raise
            return await self.api.update_status({**fresh, "status": status})


def controllers(settings: Any) -> list[Reconciler]:
    return [DaemonSetController()]


__all__ = [
    "BURST_REPLICAS",
    "HASH_LABEL",
    "DaemonSetController",
    "add_daemon_tolerations",
    "controllers",
    "node_name_affinity",
    "node_selector_term_matches",
    "node_should_run",
    "revision_data",
    "scaled_value",
    "surge_and_unavailable",
    "target_node",
    "template_hash",
]
