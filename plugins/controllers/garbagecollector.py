"""The garbage collector: dependents go when their owners go, as the delete asked.

As Kubernetes' ``pkg/controller/garbagecollector``, on the shared informers of every kind
that can be listed, watched and deleted (Events excepted, as upstream's default ignored
resources). The dependency graph is the informers' owner index (owner uid -> dependents)
plus a uid index of each kind (uid -> object):

* **Background.** When an object is gone, each of its dependents is looked at: its owner
  references are classified *solid* (the owner exists), *dangling* (an uncached GET finds
  no owner with that uid: a stale cache never condemns a dependent) or *waiting* (the owner
  is being deleted in the foreground). A dependent with a solid owner only loses its
  dangling and waiting references; one without is deleted (with the uid as precondition),
  in the foreground when an owner waits for it and it has dependents of its own. A
  dependent created with a reference to an owner that never existed is collected too.
* **Foreground.** An owner with ``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer gets its dependents deleted; the finalizer is removed (and the owner goes) once
  no dependent with ``blockOwnerDeletion`` is left.
* **Orphan.** An owner with ``deletionTimestamp`` and the ``orphan`` finalizer: the
  references to it are removed from its dependents, then the finalizer.

The API server sets those finalizers from the DELETE's ``propagationPolicy`` (kubectl's
``--cascade=background|foreground|orphan``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import structlog

from kcore.api import registry
from kcore.api.registry import ResourceInfo
from kcore.controllers import (
    BY_OWNER,
    DELETED,
    Kind,
    Reconciler,
    ResourceEvent,
    being_deleted,
    group_of,
    make_key,
)
from kcore.errors import BadRequest, Conflict, NotFound
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.garbagecollector")

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
BY_UID = "uid"
IGNORED: frozenset[Kind] = frozenset({("v1", "Event"), ("events.k8s.io/v1", "Event")})
"""Kinds not watched (Kubernetes' ``DefaultIgnoredResources``): many, and never owned."""
CRD: Kind = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
ABSENT_CACHE_SIZE = 10_000

SOLID, DANGLING, WAITING = "solid", "dangling", "waiting"

Obj = dict[str, Any]


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _uid_index(obj: Obj) -> Iterable[str]:
    uid = _meta(obj).get("uid")
    return [uid] if uid else []


def _refs(obj: Obj) -> list[dict[str, Any]]:
    return [r for r in _meta(obj).get("ownerReferences") or () if r.get("uid")]


def _ref_to(obj: Obj, uid: str) -> dict[str, Any] | None:
    return next((r for r in _refs(obj) if r["uid"] == uid), None)


def deleting_dependents(obj: Obj) -> bool:
    """Being deleted in the foreground: waits for its blocking dependents."""
    return being_deleted(obj) and FOREGROUND in (_meta(obj).get("finalizers") or ())


def collectable_kinds() -> list[Kind]:
    """What the collector watches: every kind that can be listed, watched and deleted,
    custom resources included (the ones served now)."""
    return [
        (r.api_version, r.kind)
        for r in registry.served()
        if {"list", "watch", "delete"} <= set(r.verbs) and (r.api_version, r.kind) not in IGNORED
    ]


def resource_for_ref(ref: dict[str, Any]) -> ResourceInfo | None:
    """The served resource an owner reference points at (its group's version, if another)."""
    api_version, kind = ref.get("apiVersion"), ref.get("kind")
    fallback = None
    for info in registry.served():
        if info.kind != kind or info.group != group_of(api_version):
            continue
        if info.api_version == api_version:
            return info
        fallback = fallback or info
    return fallback


class GarbageCollector(Reconciler):
    """Keys are ``<apiVersion>|<kind>|<namespace>/<name>``: one queue for every kind."""

    name = "garbage-collector"
    workers = 4

    conformance = scenarios("garbage_collector_scenarios")

    def __init__(self, kinds: Iterable[Kind] | None = None) -> None:
        self._follow = kinds is None
        """Without a fixed list, watch every collectable kind, custom resources as their
        definitions come (as upstream's collector follows discovery)."""
        self.kinds = list(kinds if kinds is not None else collectable_kinds())
        self._absent: OrderedDict[str, None] = OrderedDict()

    async def setup(self) -> None:
        self._absent = OrderedDict()
        if self._follow:
            self.kinds = collectable_kinds()
        for api_version, kind in self.kinds:
            self.informers.add_index(api_version, kind, BY_UID, _uid_index)

    def observe(self, event: ResourceEvent) -> None:
        if self._follow and (event.api_version, event.kind) == CRD:
            self.follow_new_kinds()

    def follow_new_kinds(self) -> None:
        """Watch the kinds served since this term began (a new CustomResourceDefinition's)."""
        for api_version, kind in collectable_kinds():
            if (api_version, kind) in self.kinds:
                continue
            self.kinds.append((api_version, kind))
            self.informers.add_index(api_version, kind, BY_UID, _uid_index)
            self.informers.add_handler(api_version, kind, self._on_new_kind_event)

    def _on_new_kind_event(self, event: ResourceEvent) -> None:
        """What the runner does for the kinds it started with."""
        for key in self.keys_for(event):
            self.queue.add(key)

    # -- keys and the graph ---------------------------------------------------------------

    @staticmethod
    def key_of(api_version: str, kind: str, obj: Obj) -> str:
        m = _meta(obj)
        return f"{api_version}|{kind}|{make_key(m.get('namespace'), m.get('name', ''))}"

    @staticmethod
    def split(key: str) -> tuple[str, str, str]:
        api_version, kind, rest = key.split("|", 2)
        return api_version, kind, rest

    def cached(self, key: str, kind: Kind | None = None) -> dict[str, Any] | None:
        if kind is None and "|" in key:
            api_version, k, key = self.split(key)
            kind = (api_version, k)
        return super().cached(key, kind)

    def by_uid(self, uid: str) -> tuple[str, str, Obj] | None:
        """The cached object with ``uid`` (of any watched kind)."""
        for api_version, kind in self.kinds:
            found = self.informers.by_index(api_version, kind, BY_UID, uid)
            if found:
                return api_version, kind, found[0]
        return None

    def dependents(self, uid: str) -> list[tuple[str, str, Obj]]:
        """The cached objects with an owner reference to ``uid``."""
        return [
            (api_version, kind, obj)
            for api_version, kind in self.kinds
            for obj in self.informers.by_index(api_version, kind, BY_OWNER, uid)
        ]

    def cached_owner(self, ref: dict[str, Any], dependent: Obj) -> tuple[str, str, Obj] | None:
        """The cached owner ``ref`` names, if it is where a reference can point: the
        dependent's namespace, or cluster scope."""
        found = self.by_uid(ref["uid"])
        if found is None:
            return None
        owner_ns = _meta(found[2]).get("namespace")
        if owner_ns and owner_ns != _meta(dependent).get("namespace"):
            return None
        return found

    def _remember_absent(self, uid: str) -> None:
        """uids are never reused: an owner once absent stays absent."""
        self._absent[uid] = None
        self._absent.move_to_end(uid)
        while len(self._absent) > ABSENT_CACHE_SIZE:
            self._absent.popitem(last=False)

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        obj, old = event.obj, event.old
        if old is not None and _meta(old).get("resourceVersion") == _meta(obj).get(
            "resourceVersion"
        ):
            return []  # a resync: nothing changed
        own = self.key_of(event.api_version, event.kind, obj)
        uid = _meta(obj).get("uid", "")
        keys: list[str] = []
        if event.type == DELETED:
            if uid:
                self._remember_absent(uid)
                keys += [self.key_of(av, k, d) for av, k, d in self.dependents(uid)]
            for ref in _refs(obj):  # an owner deleting in the foreground may be free now
                owner = self.by_uid(ref["uid"])
                if owner is not None and deleting_dependents(owner[2]):
                    keys.append(self.key_of(*owner))
            return list(dict.fromkeys(keys))
        fins = _meta(obj).get("finalizers") or ()
        if being_deleted(obj) and (ORPHAN in fins or FOREGROUND in fins):
            keys.append(own)
        for ref in _refs(obj):
            owner = self.cached_owner(ref, obj)
            if owner is None or deleting_dependents(owner[2]):
                keys.append(own)  # possibly dangling, or an owner waits for it to go
                break
        if old is not None:
            new_refs = {r["uid"]: r for r in _refs(obj)}
            for ref in _refs(old):
                if new_refs.get(ref["uid"]) == ref:
                    continue
                owner = self.by_uid(ref["uid"])  # a reference went or changed: unblocked?
                if owner is not None and deleting_dependents(owner[2]):
                    keys.append(self.key_of(*owner))
        return list(dict.fromkeys(keys))

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        api_version, kind, object_key = self.split(key)
        obj = self.informers.informer(api_version, kind).get_by_key(object_key)
        if obj is None:
            return None  # gone: its DELETED event queued its dependents
        obj = {**obj, "apiVersion": api_version, "kind": kind}
        if being_deleted(obj):
            finalizers = _meta(obj).get("finalizers") or ()
            if ORPHAN in finalizers:
                await self.orphan_dependents(obj)
            elif FOREGROUND in finalizers:
                await self.delete_dependents(obj)
            return None
        if _refs(obj):
            await self.attempt_to_delete(obj)
        return None

    async def classify(self, obj: Obj) -> dict[str, list[dict[str, Any]]]:
        """``obj``'s owner references by the state of their owner: solid, dangling,
        waiting. Owners missing from the caches are read from the API."""
        out: dict[str, list[dict[str, Any]]] = {SOLID: [], DANGLING: [], WAITING: []}
        for ref in _refs(obj):
            owner = self.cached_owner(ref, obj)
            if owner is not None:
                state = WAITING if deleting_dependents(owner[2]) else SOLID
            else:
                state = await self.owner_state(ref, obj)
            out[state].append(ref)
        return out

    async def owner_state(self, ref: dict[str, Any], dependent: Obj) -> str:
        """An uncached look at the owner of ``ref``, as upstream's ``isDangling``."""
        uid = ref["uid"]
        if uid in self._absent:
            return DANGLING
        info = resource_for_ref(ref)
        if info is None:
            return SOLID  # a kind this server does not serve: never collect on it
        namespace = _meta(dependent).get("namespace")
        if info.namespaced and not namespace:
            await self._invalid_namespace(dependent, ref)
            return DANGLING
        try:
            owner = await self.api.get(
                info.api_version,
                info.kind,
                ref.get("name") or "",
                namespace=namespace if info.namespaced else None,
            )
        except (NotFound, BadRequest):
            owner = None
        if owner is not None and _meta(owner).get("uid") == uid:
            return WAITING if deleting_dependents(owner) else SOLID
        # Gone, or the name now belongs to another object. An owner of that uid that lives
        # in another namespace is not gone: only out of this dependent's reach.
        elsewhere = self.by_uid(uid)
        if elsewhere is None:
            self._remember_absent(uid)
        elif _meta(elsewhere[2]).get("namespace") != namespace:
            await self._invalid_namespace(dependent, ref)
        return DANGLING

    async def _invalid_namespace(self, dependent: Obj, ref: dict[str, Any]) -> None:
        namespace = _meta(dependent).get("namespace") or ""
        await self.recorder.event(
            dependent,
            "Warning",
            "OwnerRefInvalidNamespace",
            f"ownerRef [{ref.get('apiVersion')}/{ref.get('kind')}, namespace: {namespace}, "
            f"name: {ref.get('name')}, uid: {ref['uid']}] does not exist in namespace "
            f'"{namespace}"',
        )

    async def fresh(self, obj: Obj) -> Obj | None:
        """``obj`` read from the API: ``None`` when it is gone or was replaced."""
        m = _meta(obj)
        try:
            latest = await self.api.get(
                obj["apiVersion"], obj["kind"], m["name"], namespace=m.get("namespace")
            )
        except NotFound:
            return None
        if _meta(latest).get("uid") != m.get("uid"):
            return None
        return {**latest, "apiVersion": obj["apiVersion"], "kind": obj["kind"]}

    async def attempt_to_delete(self, obj: Obj) -> None:
        """Upstream's ``attemptToDeleteItem`` for a dependent that is not being deleted."""
        states = await self.classify(obj)
        if not states[DANGLING] and not states[WAITING]:
            return
        latest = await self.fresh(obj)
        if latest is None or being_deleted(latest):
            return
        states = await self.classify(latest)
        solid, dangling, waiting = states[SOLID], states[DANGLING], states[WAITING]
        if solid:
            if dangling or waiting:
                # Another owner keeps it: only the references to the others go.
                await self.remove_references(latest, [r["uid"] for r in dangling + waiting])
            return
        own_dependents = self.dependents(_meta(latest)["uid"]) if waiting else []
        if own_dependents:
            if any(deleting_dependents(d) for _, _, d in own_dependents):
                # Its dependents wait in the foreground too: a cycle would block for ever.
                await self.unblock(latest, [r["uid"] for r in waiting])
            await self.delete(latest, "Foreground")
            return
        if not dangling and not waiting:
            return
        finalizers = _meta(latest).get("finalizers") or ()
        policy = (
            "Orphan"
            if ORPHAN in finalizers
            else "Foreground"
            if FOREGROUND in finalizers
            else "Background"
        )
        await self.delete(latest, policy)

    async def delete(self, obj: Obj, policy: str) -> None:
        m = _meta(obj)
        log.debug(
            "deleting a dependent",
            kind=obj["kind"],
            name=m["name"],
            namespace=m.get("namespace"),
            propagation=policy,
        )
        try:
            await self.api.delete(
                obj["apiVersion"],
                obj["kind"],
                m["name"],
                m.get("namespace"),
                propagation_policy=policy,
                preconditions={"uid": m["uid"]},
            )
        except (NotFound, Conflict):
            pass  # gone already, or replaced by another object of that name

    async def remove_references(self, obj: Obj, uids: list[str]) -> None:
        """Remove the owner references to ``uids`` (a strategic merge patch by uid: other
        references, and the object if it was replaced, are left alone)."""
        m = _meta(obj)
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": u} for u in uids]}}
        try:
            await self.api.patch(
                obj["apiVersion"], obj["kind"], m["name"], patch, "strategic", m.get("namespace")
            )
        except NotFound:
            pass

    async def unblock(self, obj: Obj, uids: list[str]) -> None:
        refs = [{**r, "blockOwnerDeletion": False} if r["uid"] in uids else r for r in _refs(obj)]
        m = _meta(obj)
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": m["resourceVersion"]}}
        await self.api.patch(
            obj["apiVersion"], obj["kind"], m["name"], patch, "merge", m.get("namespace")
        )

    async def delete_dependents(self, owner: Obj) -> None:
        """Foreground: delete the dependents; drop the finalizer once no blocking one is left."""
        uid = _meta(owner)["uid"]
        dependents = self.dependents(uid)
        blocking = 0
        for api_version, kind, dep in dependents:
            ref = _ref_to(dep, uid) or {}
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not being_deleted(dep):
                self.enqueue(self.key_of(api_version, kind, dep))
        if blocking:
            return
        await self.remove_finalizer(owner, FOREGROUND)

    async def orphan_dependents(self, owner: Obj) -> None:
        """Orphan: strip the references to ``owner`` from its dependents, then the finalizer."""
        uid = _meta(owner)["uid"]
        errors: list[BaseException] = []
        for api_version, kind, dep in self.dependents(uid):
            try:
                await self.remove_references(
                    {**dep, "apiVersion": api_version, "kind": kind}, [uid]
                )
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        await self.remove_finalizer(owner, ORPHAN)

    async def remove_finalizer(self, obj: Obj, finalizer: str) -> None:
        """Remove ``finalizer`` from the object as it is now (a Conflict retries)."""
        latest = await self.fresh(obj)
        if latest is None:
            return
        finalizers = list(_meta(latest).get("finalizers") or ())
        if finalizer not in finalizers:
            return
        m = _meta(latest)
        patch = {
            "metadata": {
                "finalizers": [f for f in finalizers if f != finalizer],
                "resourceVersion": m["resourceVersion"],
            }
        }
        try:
            await self.api.patch(
                obj["apiVersion"], obj["kind"], m["name"], patch, "merge", m.get("namespace")
            )
        except NotFound:
            return
        log.info(
            "removed a finalizer",
            finalizer=finalizer,
            kind=obj["kind"],
            name=m["name"],
            namespace=m.get("namespace"),
        )


def controllers(settings: Any) -> list[Reconciler]:
    return [GarbageCollector()]


__all__ = [
    "FOREGROUND",
    "ORPHAN",
    "GarbageCollector",
    "collectable_kinds",
    "controllers",
    "deleting_dependents",
    "resource_for_ref",
]
