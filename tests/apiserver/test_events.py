"""Events: recorded once, repeats folded into a count, found the way kubectl describe looks."""

from __future__ import annotations

from kcore.api.registry import by_kind
from kcore.apiserver.objects import ListOptions, ObjectStore
from kcore.daemon import bootstrap
from kcore.events import EventRecorder
from kcore.plugins.store_sqlite.backend import SqliteStore
from kcore.selectors import parse_field_selector

EVENTS = by_kind("v1", "Event")
PODS = by_kind("v1", "Pod")


class Sink:
    """The two calls a recorder makes, straight onto the object store."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.writes = 0

    async def create(self, obj):
        self.writes += 1
        return await self.objects.create(EVENTS, obj["metadata"]["namespace"], obj)

    async def patch(
        self, api_version, kind, name, patch, patch_type="merge", namespace=None, subresource=None
    ):
        self.writes += 1
        return await self.objects.patch(
            EVENTS, namespace, name, "application/merge-patch+json", patch
        )


async def test_repeats_fold_into_one_event_found_by_involved_object():
    store = SqliteStore(":memory:")
    try:
        objects = ObjectStore(store)
        await bootstrap(objects)
        pod = await objects.create(
            PODS,
            "default",
            {
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
        sink = Sink(objects)
        recorder = EventRecorder(sink, "kubelet", host="node-1")
        for _ in range(5):
            await recorder.event(pod, "Warning", "BackOff", "Back-off restarting failed container")
        await recorder.event(pod, "Normal", "Pulled", "Container image already present")
        assert sink.writes == 6
        uid = pod["metadata"]["uid"]
        selector = parse_field_selector(
            f"involvedObject.uid={uid},involvedObject.name=p,involvedObject.namespace=default"
        ).check_supported("Event")
        items, _, _ = await objects.list(EVENTS, "default", ListOptions(field_selector=selector))
        by_reason = {e["reason"]: e for e in items}
        assert set(by_reason) == {"BackOff", "Pulled"}
        backoff = by_reason["BackOff"]
        assert backoff["count"] == 5 and backoff["type"] == "Warning"
        assert backoff["involvedObject"]["kind"] == "Pod"
        assert backoff["source"] == {"component": "kubelet", "host": "node-1"}
        assert backoff["firstTimestamp"] <= backoff["lastTimestamp"]
        assert by_reason["Pulled"]["count"] == 1
    finally:
        await store.close()


async def test_a_refused_event_never_raises():
    class Broken:
        async def create(self, obj):
            raise RuntimeError("api down")

        async def patch(self, *args, **kwargs):
            raise RuntimeError("api down")

    recorder = EventRecorder(Broken(), "test")
    assert (
        await recorder.event({"kind": "Pod", "metadata": {"name": "x"}}, "Normal", "R", "m") is None
    )
