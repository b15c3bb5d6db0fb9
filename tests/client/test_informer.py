"""Informers over both transports: sync, handlers, resuming, re-listing, resync."""

from __future__ import annotations

import asyncio

from kcore.client import ApiClient, ConnectionFailed, Informer


def configmap(name, data=None, labels=None, namespace=None):
    meta = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


class Recorder:
    """Handlers that record ``(event, name)`` and let a test wait for a number of them."""

    def __init__(self, informer: Informer) -> None:
        self.events: list[tuple[str, str]] = []
        self.objects: list[tuple] = []
        self.changed = asyncio.Condition()
        informer.on_add(self.add)
        informer.on_update(self.update)
        informer.on_delete(self.delete)

    async def _record(self, event, name, *objs):
        async with self.changed:
            self.events.append((event, name))
            self.objects.append((event, *objs))
            self.changed.notify_all()

    async def add(self, obj):
        await self._record("add", obj["metadata"]["name"], obj)

    async def update(self, old, new):
        await self._record("update", new["metadata"]["name"], old, new)

    async def delete(self, obj):
        await self._record("delete", obj["metadata"]["name"], obj)

    async def wait_for(self, count, timeout=10.0):
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: len(self.events) >= count), timeout
            )
        return self.events[:count]


class GatedClient(ApiClient):
    """An ApiClient whose watches can be held at a gate, or made to fail once; it records
    the resourceVersion each watch starts from."""

    def __init__(self, inner: ApiClient) -> None:
        super().__init__(inner.transport, namespace=inner.namespace)
        self.starts: asyncio.Queue[str | None] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next: Exception | None = None

    async def watch(self, *args, **kwargs):
        await self.starts.put(kwargs.get("resource_version"))
        await self.gate.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        async for event in super().watch(*args, **kwargs):
            yield event


async def test_initial_sync_fills_the_cache(api):
    c = api.client
    await c.create(configmap("a"))
    await c.create(configmap("b", namespace="kube-system"))
    informer = Informer(c, "v1", "ConfigMap")
    rec = Recorder(informer)
    assert not informer.has_synced
    async with informer:
        assert await informer.wait_for_sync(5)
        assert informer.has_synced
        assert sorted(rec.events) == [("add", "a"), ("add", "b")]
        assert set(informer.cache) == {"default/a", "kube-system/b"}
        assert informer.get("b", "kube-system")["metadata"]["namespace"] == "kube-system"
        assert informer.resource_version == (await c.list("v1", "ConfigMap"))[1]

    namespaces = Informer(c, "v1", "Namespace")
    async with namespaces:
        assert await namespaces.wait_for_sync(5)
        assert "default" in namespaces.cache and "kube-system" in namespaces.cache


async def test_handlers_see_adds_updates_and_deletes(api):
    c = api.client
    informer = Informer(c, "v1", "ConfigMap", namespace="default", label_selector="app=x")
    rec = Recorder(informer)
    async with informer:
        assert await informer.wait_for_sync(5)
        await c.create(configmap("one", {"v": "1"}, {"app": "x"}))
        await c.create(configmap("ignored", labels={"app": "y"}))
        await c.create(configmap("elsewhere", labels={"app": "x"}, namespace="kube-system"))
        await c.patch("v1", "ConfigMap", "one", {"data": {"v": "2"}})
        await c.delete("v1", "ConfigMap", "one")
        assert await rec.wait_for(3) == [("add", "one"), ("update", "one"), ("delete", "one")]
        _, old, new = rec.objects[1]
        assert old["data"] == {"v": "1"} and new["data"] == {"v": "2"}
        assert informer.cache == {}
    await asyncio.sleep(0.2)
    assert len(rec.events) == 3


async def test_resumes_from_the_last_version_when_the_stream_ends(api):
    client = GatedClient(api.client)
    informer = Informer(client, "v1", "ConfigMap", namespace="default", watch_timeout=1)
    rec = Recorder(informer)
    async with informer:
        assert await informer.wait_for_sync(5)
        assert await asyncio.wait_for(client.starts.get(), 5) == informer.resource_version
        created = await client.create(configmap("during-first"))
        await rec.wait_for(1)
        # The server ends the stream after one second; the informer watches again from
        # the last version it saw, without listing again.
        resumed_from = await asyncio.wait_for(client.starts.get(), 5)
        assert resumed_from == created["metadata"]["resourceVersion"]
        await asyncio.sleep(0.1)
        await client.create(configmap("during-second"))
        assert await rec.wait_for(2) == [("add", "during-first"), ("add", "during-second")]
        assert informer.lists == 1


async def test_retries_a_broken_watch_from_the_same_version(api):
    client = GatedClient(api.client)
    informer = Informer(client, "v1", "ConfigMap", namespace="default", backoff=(0.05, 0.1))
    client.fail_next = ConnectionFailed("the connection broke")
    rec = Recorder(informer)
    async with informer:
        assert await informer.wait_for_sync(5)
        first = await asyncio.wait_for(client.starts.get(), 5)
        second = await asyncio.wait_for(client.starts.get(), 5)
        assert first == second == informer.resource_version
        await client.create(configmap("after"))
        assert await rec.wait_for(1) == [("add", "after")]
        assert informer.lists == 1


async def test_lists_again_when_its_version_expired(api):
    c = api.client
    client = GatedClient(c)
    await c.create(configmap("kept", {"v": "1"}, {"app": "a"}))
    await c.create(configmap("changed", {"v": "1"}, {"app": "a"}))
    await c.create(configmap("removed", {"v": "1"}, {"app": "a"}))
    informer = Informer(client, "v1", "ConfigMap", label_selector="app=a", watch_timeout=1)
    rec = Recorder(informer)
    async with informer:
        assert await informer.wait_for_sync(5)
        assert len(await rec.wait_for(3)) == 3
        await asyncio.wait_for(client.starts.get(), 5)
        client.gate.clear()
        # The first watch ends after a second; the informer is then held at the gate
        # while the world changes behind its back and the history goes away.
        await asyncio.wait_for(client.starts.get(), 5)
        await c.patch("v1", "ConfigMap", "changed", {"data": {"v": "2"}})
        await c.delete("v1", "ConfigMap", "removed")
        await c.create(configmap("new", labels={"app": "a"}))
        await c.create(configmap("other", labels={"app": "b"}))
        await api.store.compact(await api.store.current_revision())
        client.gate.set()

        events = await rec.wait_for(6)
        assert sorted(events[3:]) == [("add", "new"), ("delete", "removed"), ("update", "changed")]
        assert informer.lists == 2
        assert set(informer.cache) == {"default/kept", "default/changed", "default/new"}
        update = next(o for o in rec.objects[3:] if o[0] == "update")
        assert update[1]["data"] == {"v": "1"} and update[2]["data"] == {"v": "2"}

        # and it is watching again from the new list
        await c.patch("v1", "ConfigMap", "kept", {"data": {"v": "3"}})
        assert (await rec.wait_for(7))[6] == ("update", "kept")


async def test_resync_hands_every_object_to_on_update(api):
    c = api.client
    await c.create(configmap("a"))
    await c.create(configmap("b"))
    informer = Informer(c, "v1", "ConfigMap", namespace="default", resync_period=0.2)
    rec = Recorder(informer)
    async with informer:
        assert await informer.wait_for_sync(5)
        events = await rec.wait_for(6)
    updates = rec.objects[2:6]
    assert sorted(events[2:6]) == [
        ("update", "a"),
        ("update", "a"),
        ("update", "b"),
        ("update", "b"),
    ]
    assert all(kind == "update" and old is new for kind, old, new in updates)


async def test_a_failing_handler_does_not_stop_the_informer(api):
    c = api.client
    informer = Informer(c, "v1", "ConfigMap", namespace="default")
    seen = []

    @informer.on_add
    def broken(obj):
        raise RuntimeError("handler bug")

    @informer.on_add
    def plain(obj):
        seen.append(obj["metadata"]["name"])

    async with informer:
        assert await informer.wait_for_sync(5)
        await c.create(configmap("x"))
        await c.create(configmap("y"))
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.05)
    assert seen == ["x", "y"]


async def test_stop_ends_the_watch(api):
    c = api.client
    informer = Informer(c, "v1", "ConfigMap", namespace="default")
    rec = Recorder(informer)
    informer.start()
    assert await informer.wait_for_sync(5)
    await informer.stop()
    await c.create(configmap("late"))
    await asyncio.sleep(0.3)
    assert rec.events == []
    assert informer.has_synced
