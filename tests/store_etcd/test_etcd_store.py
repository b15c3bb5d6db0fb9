"""store_etcd beyond the shared suite: the key prefix scheme, compaction shifted by one and
compaction by a timer, TLS client certificates, endpoints and failover, error mapping, and
the plugin's hooks and options."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aetcd
import pytest
from aetcd import rpc
from etcd_servers import free_ports, make_tls_files

from kcore import Expired, Invalid, NotFound, PermanentError, Settings, TemporaryError
from kcore.plugin_host import PluginHost
from kcore.plugins.store_etcd.backend import EtcdStore, _Interrupted, _WatchFeed, parse_endpoints

TIMEOUT = 10.0


def raw_client(url: str) -> aetcd.Client:
    parts = urlsplit(url)
    return aetcd.Client(host=parts.hostname, port=parts.port)


def store_on(endpoints, prefix: str = "/kcore-test-*", **kwargs) -> EtcdStore:
    kwargs.setdefault("compaction_interval", 0)
    return EtcdStore(endpoints, prefix=prefix, **kwargs)


# -- keys and prefixes ---------------------------------------------------------------------------


async def test_prefix_template_gives_each_store_a_fresh_keyspace(etcd_server):
    first, second = store_on(etcd_server.endpoints), store_on(etcd_server.endpoints)
    try:
        assert first.prefix != second.prefix
        assert first.prefix.startswith("/kcore-test-") and "*" not in first.prefix
        await first.create("/a", b"1")
        assert (await second.list("")).items == []
        with pytest.raises(NotFound):
            await second.get("/a")
        await second.create("/a", b"2")
        assert bytes((await first.get("/a")).value) == b"1"
    finally:
        await first.close()
        await second.close()


async def test_keys_live_under_the_prefix_in_etcd(etcd_server):
    store = store_on(etcd_server.endpoints)
    raw = raw_client(etcd_server.members[0].client_url)
    try:
        kv = await store.create("/registry/core/pods/default/web", b"pod")
        got = await raw.get(f"{store.prefix}/registry/core/pods/default/web".encode())
        assert got is not None and got.value == b"pod"
        assert (got.mod_revision, got.create_revision) == (kv.revision, kv.create_revision)
    finally:
        await raw.close()
        await store.close()


async def test_neighbouring_prefixes_do_not_see_each_other(etcd_server):
    """``/x`` and ``/x2`` share the etcd key prefix ``/x``, not a single store key."""
    base = store_on(etcd_server.endpoints).prefix
    one, two = store_on(etcd_server.endpoints, base), store_on(etcd_server.endpoints, base + "2")
    try:
        start = await one.current_revision()
        watch = one.watch("", after_revision=start)
        await two.create("/a", b"two")
        mine = await one.create("/b", b"one")
        assert [kv.key for kv in (await one.list("")).items] == ["/b"]
        event = await asyncio.wait_for(anext(watch), TIMEOUT)
        assert (event.kv.key, event.kv.revision) == ("/b", mine.revision)
        await watch.aclose()
    finally:
        await one.close()
        await two.close()


async def test_keys_must_begin_with_a_slash(etcd_server):
    store = store_on(etcd_server.endpoints)
    try:
        for call in (
            lambda: store.create("a", b""),
            lambda: store.get(""),
            lambda: store.update("a", b""),
            lambda: store.delete("a"),
            lambda: store.create(b"/a", b""),
            lambda: store.create("/\udc80", b""),
            lambda: store.create("/a", "text"),
        ):
            with pytest.raises(Invalid):
                await call()
        kv = await store.create("/a", b"")
        # A prefix that is not "" and does not begin with "/" matches no key of the store.
        assert (await store.list("a")).items == []
        assert (await store.list("/", start_after="a")).items == []
        assert [kv.key for kv in (await store.list("/", start_after="")).items] == ["/a"]
        watch = store.watch("a", after_revision=kv.revision - 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(watch), 0.3)
    finally:
        await store.close()


async def test_list_limit_zero_returns_nothing_but_says_more(etcd_server):
    store = store_on(etcd_server.endpoints)
    try:
        kv = await store.create("/a", b"")
        page = await store.list("/", limit=0)
        assert (page.items, page.more) == ([], True)
        page = await store.list("/", limit=0, revision=kv.revision - 1)
        assert (page.items, page.more) == ([], False)
    finally:
        await store.close()


# -- compaction ----------------------------------------------------------------------------------


async def test_etcd_compaction_by_someone_else_is_the_stores_compaction_plus_one(etcd_server):
    """etcd's ``compact(C)`` (etcdctl, kube-apiserver) is the store's ``compact(C + 1)``."""
    store = store_on(etcd_server.endpoints)
    raw = raw_client(etcd_server.members[0].client_url)
    try:
        a1 = await store.create("/a", b"1")
        a2 = await store.update("/a", b"2")
        a3 = await store.update("/a", b"3")
        await raw.compact(a2.revision)
        with pytest.raises(Expired):
            await store.list("/", revision=a2.revision)
        [listed] = (await store.list("/", revision=a3.revision)).items
        assert listed == a3
        with pytest.raises(Expired):
            await anext(store.watch("/", after_revision=a1.revision))
        watch = store.watch("/", after_revision=a2.revision)
        event = await asyncio.wait_for(anext(watch), TIMEOUT)
        assert (event.kv, event.prev) == (a3, a2), "the first event kept its previous value"
        await watch.aclose()
        await store.compact(a3.revision)  # where etcd is already: nothing to do
        with pytest.raises(Expired):
            await store.compact(a2.revision)
        with pytest.raises(Invalid):
            await store.compact(a3.revision + 10_000)
    finally:
        await raw.close()
        await store.close()


async def test_store_compaction_leaves_etcd_readable_one_revision_below(etcd_server):
    store = store_on(etcd_server.endpoints)
    raw = raw_client(etcd_server.members[0].client_url)
    try:
        await store.create("/a", b"1")
        a2 = await store.update("/a", b"2")
        await store.compact(a2.revision)
        with pytest.raises(aetcd.ClientError, match="compacted"):
            await raw.compact(a2.revision - 1)  # etcd compacted at R - 1 already
        await raw.compact(a2.revision)  # but not at R
    finally:
        await raw.close()
        await store.close()


async def test_periodic_compaction_keeps_recent_history(etcd_factory):
    """Every ``compaction_interval`` one store claims the round on ``compact_rev_key`` and
    compacts at the revision of the round before."""
    cluster = etcd_factory()
    store = store_on(cluster.endpoints, compaction_interval=0.2)
    raw = raw_client(cluster.members[0].client_url)
    try:
        first = await store.create("/a", b"0")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        i = 0
        while True:
            i += 1
            latest = await store.update("/a", str(i).encode())
            try:
                await store.list("/", revision=first.revision)
            except Expired:
                break
            assert loop.time() < deadline, "the old revision was never compacted"
            await asyncio.sleep(0.02)
        recent = (await store.list("/", revision=latest.revision)).items
        assert recent == [latest], "the last interval of history is kept"
        assert await store.get("/a") == latest
        clock = await raw.get(b"compact_rev_key")
        assert clock is not None and clock.version >= 2
    finally:
        await raw.close()
        await store.close()


# -- TLS, endpoints, errors ----------------------------------------------------------------------


async def test_tls_with_a_client_certificate(etcd_factory, tmp_path):
    tls = make_tls_files(tmp_path / "pki")
    cluster = etcd_factory(tls=tls)
    assert cluster.endpoints.startswith("https://")
    store = store_on(
        cluster.endpoints, cacert=str(tls.ca), cert=str(tls.client_cert), key=str(tls.client_key)
    )
    try:
        base = await store.current_revision()
        watch = store.watch("/", after_revision=base)
        kv = await store.create("/secure", b"yes")
        assert (await asyncio.wait_for(anext(watch), TIMEOUT)).kv == kv
        await watch.aclose()
    finally:
        await store.close()
    # Without a client certificate etcd (--client-cert-auth) refuses the connection.
    anonymous = store_on(cluster.endpoints, cacert=str(tls.ca), retry_timeout=0.5)
    try:
        with pytest.raises(TemporaryError):
            await anonymous.get("/secure")
    finally:
        await anonymous.close()
    with pytest.raises(Invalid):
        store_on(cluster.endpoints, cert=str(tls.client_cert))  # no key


async def test_unreachable_etcd_raises_temporary_error_and_watches_wait():
    [port] = free_ports(1)
    store = store_on(f"http://127.0.0.1:{port}", retry_timeout=0.5)
    try:
        for call in (
            store.current_revision,
            lambda: store.get("/a"),
            lambda: store.create("/a", b""),
            lambda: store.list("/"),
        ):
            with pytest.raises(TemporaryError):
                await call()
        watch = store.watch("/", after_revision=0)
        pending = asyncio.ensure_future(anext(watch))
        done, _ = await asyncio.wait([pending], timeout=0.5)
        assert not done, "a watch gave up on an unreachable etcd instead of retrying"
    finally:
        await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, TIMEOUT)


async def test_calls_fail_over_to_a_live_endpoint(etcd_server):
    [port] = free_ports(1)
    store = store_on(f"http://127.0.0.1:{port},{etcd_server.endpoints}")
    try:
        kv = await store.create("/a", b"x")
        assert await store.get("/a") == kv
        assert str(store.current_endpoint) == etcd_server.endpoints
    finally:
        await store.close()


async def test_value_larger_than_etcd_accepts_is_invalid(etcd_server):
    store = store_on(etcd_server.endpoints)
    try:
        with pytest.raises(Invalid):
            await store.create("/big", b"x" * (2 * 1024 * 1024))
        with pytest.raises(NotFound):
            await store.get("/big")
    finally:
        await store.close()


async def test_calls_after_close_raise_and_watches_end(etcd_server):
    store = store_on(etcd_server.endpoints)
    await store.current_revision()
    await store.close()
    await store.close()
    with pytest.raises(Exception, match="closed"):
        await store.get("/a")
    with pytest.raises(StopAsyncIteration):
        await anext(store.watch("/", after_revision=0))


def test_endpoints_are_parsed():
    parsed = parse_endpoints("127.0.0.1:1, https://etcd-0:2,http://[::1]:3/,etcd-1")
    assert [(e.target, e.secure) for e in parsed] == [
        ("127.0.0.1:1", False),
        ("etcd-0:2", True),
        ("[::1]:3", False),
        ("etcd-1:2379", False),
    ]
    assert [e.secure for e in parse_endpoints(["a:1", "http://b:2"], tls=True)] == [True, False]
    for bad in ("", " , ", "ftp://a:1", "http://a:1/path", "https://"):
        with pytest.raises(Invalid):
            parse_endpoints(bad)


def test_prefix_star_only_at_the_end():
    with pytest.raises(Invalid):
        EtcdStore(prefix="/a*b")
    assert EtcdStore(prefix="/kcore/").prefix == "/kcore"
    assert EtcdStore(prefix="").prefix == ""


# -- the plugin ----------------------------------------------------------------------------------


async def test_plugin_builds_the_store_from_its_options(etcd_server, tmp_path):
    host = PluginHost(["store_etcd"])
    options = {opt.name: opt for opt in host.options()}
    assert {
        "etcd_endpoints",
        "etcd_cacert",
        "etcd_cert",
        "etcd_key",
        "etcd_prefix",
        "etcd_compaction_interval",
    } <= set(options)
    assert options["etcd_endpoints"].envvar == "KCORE_ETCD_ENDPOINTS"
    # As ``kcore conformance`` passes them on: strings.
    options = {
        "etcd_endpoints": etcd_server.endpoints,
        "etcd_prefix": "/kcore-plugin-*",
        "etcd_compaction_interval": "0",
    }
    settings = Settings(data_dir=tmp_path / "a", options=options)
    store = await host.store(settings)
    try:
        assert isinstance(store, EtcdStore)
        assert store.prefix.startswith("/kcore-plugin-") and store.compaction_interval == 0
        kv = await store.create("/a", b"x")
        assert await store.get("/a") == kv
    finally:
        await store.close()
    # The template's keyspace is chosen once per data directory: a restart finds it again,
    # another data directory gets its own.
    again = await host.store(settings)
    other = await host.store(Settings(data_dir=tmp_path / "b", options=options))
    try:
        assert again.prefix == store.prefix and await again.get("/a") == kv
        assert other.prefix.startswith("/kcore-plugin-") and other.prefix != store.prefix
    finally:
        await again.close()
        await other.close()
    defaults = await host.store(Settings())
    assert str(defaults.endpoints[0]) == "http://127.0.0.1:2379"
    assert (defaults.prefix, defaults.compaction_interval) == ("/kcore", 300.0)
    await defaults.close()
    with pytest.raises(Invalid):
        await host.store(Settings(options={"etcd_compaction_interval": "soon"}))


async def test_watch_feed_resumes_after_the_last_response_and_maps_etcd_answers():
    """The watch task's handling of etcd's responses, without a server: events up to the
    resume point are not repeated, a missing previous value or a compacted start is
    ``Expired``, and a member without leader means: resume elsewhere."""
    store = EtcdStore(prefix="/p")
    feed = _WatchFeed(store, b"/p/", b"/p0", after=5)

    def kv(rev: int, create: int, value: bytes = b"v") -> rpc.KeyValue:
        return rpc.KeyValue(key=b"/p/a", mod_revision=rev, create_revision=create, value=value)

    put, delete = rpc.Event.PUT, rpc.Event.DELETE
    response = rpc.WatchResponse(
        events=[
            rpc.Event(type=put, kv=kv(5, 5, b"1")),
            rpc.Event(type=put, kv=kv(6, 5, b"2"), prev_kv=kv(5, 5, b"1")),
            rpc.Event(type=delete, kv=rpc.KeyValue(key=b"/p/a", mod_revision=7), prev_kv=kv(6, 5)),
        ]
    )
    await feed._handle(response)
    batch = feed.queue.get_nowait()
    assert [(str(e.type), e.kv.key, e.revision) for e in batch] == [
        ("MODIFIED", "/a", 6),
        ("DELETED", "/a", 7),
    ]
    assert (bytes(batch[0].prev.value), bytes(batch[1].kv.value), feed.last) == (b"1", b"v", 7)
    await feed._handle(response)  # the same history again, as after a resume
    assert feed.queue.empty() and feed.last == 7

    lost_prev = rpc.WatchResponse(
        events=[rpc.Event(type=put, kv=kv(8, 8)), rpc.Event(type=put, kv=kv(9, 8))]
    )
    with pytest.raises(Expired):
        await feed._handle(lost_prev)
    assert [e.revision for e in feed.queue.get_nowait()] == [8]
    with pytest.raises(Expired):
        await feed._handle(rpc.WatchResponse(compact_revision=12, canceled=True))
    with pytest.raises(_Interrupted):
        await feed._handle(rpc.WatchResponse(canceled=True, cancel_reason="etcdserver: no leader"))
    with pytest.raises(PermanentError):
        await feed._handle(rpc.WatchResponse(canceled=True, cancel_reason="permission denied"))
