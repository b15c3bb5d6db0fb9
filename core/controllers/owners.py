"""Owner references: who controls an object, and adopting or releasing objects by selector.

The rules are Kubernetes' (``pkg/controller/controller_ref_manager.go``):

* an object has at most one *controller* reference; an object controlled by someone else is
  never touched;
* an object we control that no longer matches our selector is *released* (our reference is
  removed), unless we are being deleted or it is;
* an *orphan* (no controller reference) that matches our selector is *adopted* (our
  controller reference is added, with ``blockOwnerDeletion``), unless we are being deleted or
  it is, and only after an uncached GET of ourselves shows we still exist with the same uid
  and no ``deletionTimestamp`` (a stale cache must not adopt for a deleted owner).

Adopt and release are strategic merge patches of ``metadata.ownerReferences`` (merged by
``uid``) that name the object's uid, so they never clobber other owners' references.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kcore.errors import Conflict, NotFound

Obj = dict[str, Any]


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The owner reference with ``controller: true``, if any."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owner_reference(
    owner: Mapping[str, Any], *, controller: bool = True, block_owner_deletion: bool = True
) -> dict[str, Any]:
    """A reference to ``owner`` (which needs ``apiVersion``, ``kind``, name and uid)."""
    m = meta(owner)
    if not owner.get("apiVersion") or not owner.get("kind") or not m.get("uid"):
        raise ValueError("an owner needs apiVersion, kind and metadata.uid")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": m["name"],
        "uid": m["uid"],
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == meta(owner).get("uid")


def group_of(api_version: str | None) -> str:
    """``apps/v1`` -> ``apps``; ``v1`` -> ``""``."""
    return api_version.split("/", 1)[0] if api_version and "/" in api_version else ""


def ref_matches_kind(ref: Mapping[str, Any], api_version: str, kind: str) -> bool:
    """Whether ``ref`` points at ``kind`` of ``api_version``'s group (any version)."""
    return ref.get("kind") == kind and group_of(ref.get("apiVersion")) == group_of(api_version)


def being_deleted(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def with_owner(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> Obj:
    """A copy of ``obj`` whose controller reference points at ``owner`` (for creating)."""
    out = copy.deepcopy(dict(obj))
    m = out.setdefault("metadata", {})
    refs = [r for r in m.get("ownerReferences") or () if not r.get("controller")]
    m["ownerReferences"] = [*refs, owner_reference(owner)]
    return out


async def adopt(api: Any, obj: Mapping[str, Any], owner: Mapping[str, Any]) -> Obj:
    """Add ``owner``'s controller reference to ``obj`` (a strategic merge patch)."""
    m = meta(obj)
    patch = {"metadata": {"ownerReferences": [owner_reference(owner)], "uid": m.get("uid")}}
    return await api.patch(
        obj["apiVersion"], obj["kind"], m["name"], patch, "strategic", namespace=m.get("namespace")
    )


async def release(api: Any, obj: Mapping[str, Any], owner: Mapping[str, Any]) -> Obj:
    """Remove ``owner``'s reference from ``obj`` (a strategic merge patch)."""
    m = meta(obj)
    patch = {
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": meta(owner).get("uid")}],
            "uid": m.get("uid"),
        }
    }
    return await api.patch(
        obj["apiVersion"], obj["kind"], m["name"], patch, "strategic", namespace=m.get("namespace")
    )


def fresh_owner_check(api: Any, owner: Mapping[str, Any]) -> Callable[[], Awaitable[None]]:
    """The usual ``can_adopt`` of :class:`ControllerRefManager`: an uncached GET of
    ``owner`` that raises :class:`~kcore.errors.Conflict` when it is gone, replaced (another
    uid) or being deleted, so the caller retries once its cache has caught up. Only the
    first call reads; later calls repeat its answer."""
    answer: list[BaseException | None] = []

    async def check() -> None:
        if not answer:
            m = meta(owner)
            try:
                fresh = await api.get(
                    owner["apiVersion"], owner["kind"], m["name"], namespace=m.get("namespace")
                )
            except NotFound:
                answer.append(Conflict(f"{owner['kind']} {m['name']} is gone; not adopting"))
            else:
                if meta(fresh).get("uid") != m.get("uid"):
                    answer.append(
                        Conflict(
                            f"{owner['kind']} {m['name']} was replaced (uid "
                            f"{meta(fresh).get('uid')}, expected {m.get('uid')}); not adopting"
                        )
                    )
                elif being_deleted(fresh):
                    answer.append(
                        Conflict(f"{owner['kind']} {m['name']} is being deleted; not adopting")
                    )
                else:
                    answer.append(None)
        if answer[0] is not None:
            raise answer[0]

    return check


class ControllerRefManager:
    """Claims objects for one ``owner``: keeps those it controls and that match, adopts
    matching orphans, releases those it controls that no longer match.

    ``selector`` is anything with ``matches_object(obj)`` (a
    :class:`kcore.controllers.LabelSelector`) or a predicate ``obj -> bool``.
    ``can_adopt`` is awaited once before the first adoption and raises to forbid it
    (default: :func:`fresh_owner_check`).
    """

    def __init__(
        self,
        api: Any,
        owner: Mapping[str, Any],
        selector: Any,
        *,
        can_adopt: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        self.owner = owner
        self._matches: Callable[[Mapping[str, Any]], bool] = (
            selector.matches_object if hasattr(selector, "matches_object") else selector
        )
        self._can_adopt = can_adopt or fresh_owner_check(api, owner)
        self.adopted: list[str] = []
        self.released: list[str] = []

    async def claim(self, objects: Iterable[Mapping[str, Any]]) -> list[Obj]:
        """The objects that belong to the owner after adopting and releasing. An error
        from an API write (other than the object being gone) is raised after trying the
        rest, so the caller retries; objects it could not claim are left out."""
        claimed: list[Obj] = []
        errors: list[BaseException] = []
        for obj in objects:
            try:
                mine = await self.claim_one(obj)
            except NotFound:
                continue  # gone meanwhile: nothing to claim
            except Exception as exc:
                errors.append(exc)
                continue
            if mine is not None:
                claimed.append(mine)
        if errors:
            raise errors[0]
        return claimed

    async def claim_one(self, obj: Mapping[str, Any]) -> Obj | None:
        """``obj`` (as adopted, when it was an orphan) if it belongs to the owner, else
        ``None``."""
        owner_uid = meta(self.owner).get("uid")
        ref = controller_ref(obj)
        matches = self._matches(obj)
        if ref is not None:
            if ref.get("uid") != owner_uid:
                return None  # someone else's
            if matches:
                return dict(obj)
            if being_deleted(self.owner) or being_deleted(obj):
                return None  # let deletion take its course; keep the reference
            await release(self.api, obj, self.owner)
            self.released.append(meta(obj).get("name", ""))
            return None
        if being_deleted(self.owner) or not matches or being_deleted(obj):
            return None
        await self._can_adopt()
        adopted = await adopt(self.api, obj, self.owner)
        self.adopted.append(meta(obj).get("name", ""))
        return adopted


__all__ = [
    "ControllerRefManager",
    "adopt",
    "being_deleted",
    "controller_ref",
    "fresh_owner_check",
    "group_of",
    "is_controlled_by",
    "owner_reference",
    "ref_matches_kind",
    "release",
    "with_owner",
]
