"""Shared informers: one per kind, indexes that follow the cache, late handlers replayed."""

from __future__ import annotations

from kcore.controllers import (
    ADDED,
    BY_CONTROLLER,
    BY_NAMESPACE,
    BY_NODE,
    BY_OWNER,
    DELETED,
    MODIFIED,
    SharedInformers,
)

from .helpers import eventually, pod

OWNER = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "rs",
    "uid": "u-1",
    "controller": True,
}
OTHER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u-2"}


def names(objs):
    return sorted(o["metadata"]["name"] for o in objs)


async def test_one_informer_per_kind_and_indexes_follow_changes(cluster):
    api = cluster.api
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    await api.create(pod("a", {"app": "x"}, owner=OWNER))
    informers = SharedInformers(api)
    pods = informers.informer("v1", "Pod")
    assert informers.informer("v1", "Pod") is pods
    informers.add_index(
        "v1", "Pod", "by-app", lambda o: [o["metadata"].get("labels", {}).get("app", "")]
    )
    informers.start()
    try:
        assert await informers.wait_for_sync(timeout=5)
        assert names(pods.by_index(BY_CONTROLLER, "u-1")) == ["a"]
        await api.create(
            {
                **pod("b", {"app": "y"}, namespace="other"),
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            }
        )
        await api.create(pod("c", {"app": "x"}, owner={**OTHER}))
        await eventually(lambda: len(pods.list()) == 3)
        assert names(informers.list("v1", "Pod", "other")) == ["b"]
        assert names(pods.by_index(BY_NAMESPACE, "default")) == ["a", "c"]
        assert names(pods.by_index(BY_NODE, "n1")) == ["b"]
        assert names(pods.by_index(BY_OWNER, "u-2")) == ["c"]
        assert names(pods.by_index(BY_CONTROLLER, "u-2")) == []  # not a controller ref
        assert names(pods.by_index("by-app", "x")) == ["a", "c"]

        # A label change moves the object in the custom index; a delete drops it everywhere.
        await api.patch(
            "v1", "Pod", "a", {"metadata": {"labels": {"app": "y"}}}, namespace="default"
        )
        await eventually(lambda: names(pods.by_index("by-app", "y")) == ["a", "b"])
        assert names(pods.by_index("by-app", "x")) == ["c"]
        await api.delete("v1", "Pod", "a", namespace="default")
        await eventually(lambda: names(pods.by_index("by-app", "y")) == ["b"])
        assert pods.by_index(BY_CONTROLLER, "u-1") == []
        # An index added late is built from the cache.
        pods.add_index("by-name", lambda o: [o["metadata"]["name"]])
        assert names(pods.by_index("by-name", "c")) == ["c"]
    finally:
        await informers.stop()


async def test_handlers_get_events_and_a_late_handler_gets_the_cache_replayed(cluster):
    api = cluster.api
    await api.create(pod("a", {"app": "x"}))
    informers = SharedInformers(api)
    early: list[tuple[str, str]] = []
    informers.add_handler("v1", "Pod", lambda e: early.append((e.type, e.name)))
    informers.start()
    try:
        await informers.wait_for_sync(timeout=5)
        late: list[tuple[str, str]] = []
        informers.add_handler("v1", "Pod", lambda e: late.append((e.type, e.name)))
        assert late == [(ADDED, "a")]
        await api.patch(
            "v1", "Pod", "a", {"metadata": {"labels": {"app": "z"}}}, namespace="default"
        )
        await api.delete("v1", "Pod", "a", namespace="default")
        await eventually(lambda: (DELETED, "a") in early and (DELETED, "a") in late)
        assert early == [(ADDED, "a"), (MODIFIED, "a"), (DELETED, "a")]
        # An informer made after start starts at once.
        cms = informers.informer("v1", "ConfigMap")
        assert await informers.wait_for_sync(("v1", "ConfigMap"), timeout=5)
        assert cms.has_synced
    finally:
        await informers.stop()
