"""Owner references and the claim rules: adopt matching orphans, release what stopped
matching, never touch another controller's objects, never adopt for a deleted owner."""

from __future__ import annotations

import pytest

from kcore.controllers import (
    ControllerRefManager,
    controller_ref,
    from_label_selector_object,
    is_controlled_by,
    owner_reference,
    with_owner,
)
from kcore.errors import Conflict

from .helpers import pod, replica_set


async def _claim(api, rs, pods, **kwargs):
    selector = from_label_selector_object(rs["spec"]["selector"])
    manager = ControllerRefManager(api, rs, selector, **kwargs)
    return manager, await manager.claim(pods)


def test_owner_reference_and_controller_ref():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "uid": "u1"}}
    ref = owner_reference(rs)
    assert ref == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web",
        "uid": "u1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u2"}
    obj = with_owner({"metadata": {"ownerReferences": [other]}}, rs)
    assert obj["metadata"]["ownerReferences"] == [other, ref]
    assert controller_ref(obj) == ref
    assert is_controlled_by(obj, rs)
    assert controller_ref({"metadata": {}}) is None
    with pytest.raises(ValueError):
        owner_reference({"metadata": {"name": "x"}})


async def test_claim_adopts_orphans_keeps_own_releases_strays_and_ignores_others(cluster):
    api = cluster.api
    rs = await api.create(replica_set("web"))
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "x",
        "uid": "other",
        "controller": True,
    }
    orphan = await api.create(pod("orphan", {"app": "web"}))
    mine = await api.create(pod("mine", {"app": "web"}, owner=owner_reference(rs)))
    stray = await api.create(pod("stray", {"app": "db"}, owner=owner_reference(rs)))
    theirs = await api.create(pod("theirs", {"app": "web"}, owner=foreign))
    unrelated = await api.create(pod("unrelated", {"app": "db"}))

    manager, claimed = await _claim(api, rs, [orphan, mine, stray, theirs, unrelated])
    assert sorted(p["metadata"]["name"] for p in claimed) == ["mine", "orphan"]
    assert manager.adopted == ["orphan"] and manager.released == ["stray"]

    adopted = await api.get("v1", "Pod", "orphan", "default")
    assert adopted["metadata"]["ownerReferences"] == [owner_reference(rs)]
    released = await api.get("v1", "Pod", "stray", "default")
    assert not released["metadata"].get("ownerReferences")
    untouched = await api.get("v1", "Pod", "theirs", "default")
    assert untouched["metadata"]["ownerReferences"] == [foreign]
    assert untouched["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]


async def test_no_adoption_when_a_fresh_read_shows_the_owner_deleted_or_replaced(cluster):
    api = cluster.api
    rs = await api.create(replica_set("web"))
    orphan = await api.create(pod("orphan", {"app": "web"}))
    stale = {**rs, "metadata": {**rs["metadata"], "uid": "an-older-uid"}}
    with pytest.raises(Conflict):
        await _claim(api, stale, [orphan])
    assert not (await api.get("v1", "Pod", "orphan", "default"))["metadata"].get("ownerReferences")

    # An owner being deleted (as the cache says) neither adopts nor releases.
    deleting = {**rs, "metadata": {**rs["metadata"], "deletionTimestamp": "2024-01-01T00:00:00Z"}}
    stray = await api.create(pod("stray", {"app": "db"}, owner=owner_reference(rs)))
    manager, claimed = await _claim(api, deleting, [orphan, stray])
    assert claimed == [] and manager.adopted == [] and manager.released == []
