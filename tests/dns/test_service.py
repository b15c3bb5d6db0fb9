"""The ``cluster-dns`` node service on an in-process API: it publishes its address before
its first await, follows Services and EndpointSlices through informers, and forwards the
rest to a fake upstream on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from controllers.helpers import eventually
from inprocess_api import in_process_api

from kcore import Invalid, NodeService, NodeServiceContext, Settings
from kcore.plugin_host import DEFAULT_PLUGINS, PluginHost
from kcore.plugins.dns import wire
from kcore.plugins.dns.client import query
from kcore.plugins.dns.service import ClusterDNS, DnsConfig

from .fakes import FakeUpstream, endpoint_slice, ep, service


class LoopbackNetwork:
    """A network backend whose pod-network address is loopback."""

    node_address = "127.0.0.1"


@contextlib.asynccontextmanager
async def running(dns: ClusterDNS, api, network=None):
    ctx = NodeServiceContext(
        api=api, settings=None, node_name="node-1", network=network or LoopbackNetwork()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dns.run(ctx, stop))
    try:
        yield ctx, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def addresses(dns: ClusterDNS, name: str, qtype: int = wire.A) -> list:
    answer = await query(("127.0.0.1", dns.server.port), name, qtype)
    return sorted(str(r.data) for r in answer.answers if r.rtype == qtype)


async def test_serves_the_cluster_from_the_api(upstream: FakeUpstream):
    dns = ClusterDNS(DnsConfig(port=0, upstreams=(upstream.address,)))
    assert isinstance(dns, NodeService) and dns.name == "cluster-dns"
    async with in_process_api() as (api, _, _), running(dns, api) as (ctx, task):
        await asyncio.sleep(0)  # as the node agent does: the service has run to its first await
        assert ctx.cluster_dns == ["127.0.0.1"] and ctx.cluster_domain == "cluster.local"
        await asyncio.wait_for(dns.ready.wait(), 10)

        await api.create(service("web", cluster_ip="10.96.0.50", ports=[{"port": 80}]))
        name = "web.default.svc.cluster.local"
        await eventually(lambda: addresses(dns, name), timeout=10)
        assert await addresses(dns, name) == ["10.96.0.50"]

        await api.create(service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432}]))
        await api.create(
            endpoint_slice(
                "db",
                [ep("10.244.0.5", hostname="db-0"), ep("10.244.0.6"), ep("10.244.0.7", False)],
                ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}],
            )
        )
        db = "db.default.svc.cluster.local"

        async def two_endpoints():
            return await addresses(dns, db) == ["10.244.0.5", "10.244.0.6"]

        await eventually(two_endpoints, timeout=10)
        assert await addresses(dns, f"db-0.{db}") == ["10.244.0.5"]
        srv = await query(("127.0.0.1", dns.server.port), f"_pg._tcp.{db}", wire.SRV)
        assert sorted(r.data.target for r in srv.answers) == [f"10-244-0-6.{db}", f"db-0.{db}"]

        await api.delete("v1", "Service", "web", "default")

        async def gone():
            answer = await query(("127.0.0.1", dns.server.port), name)
            return answer.rcode == wire.NXDOMAIN

        await eventually(gone, timeout=10)
        assert await addresses(dns, "www.example.test") == ["192.0.2.10"]
    assert task.done() and task.exception() is None
    with pytest.raises((TimeoutError, ConnectionError, OSError)):
        await query(("127.0.0.1", dns.server.port), name, tcp=True, timeout=1)


async def test_custom_domain_and_ttl():
    dns = ClusterDNS(DnsConfig(port=0, domain="corp.example", ttl=30, upstreams=()))
    async with in_process_api() as (api, _, _), running(dns, api) as (ctx, _):
        await asyncio.wait_for(dns.ready.wait(), 10)
        assert ctx.cluster_domain == "corp.example"
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        await api.create(service("web", "shop", cluster_ip="10.96.0.51", ports=[{"port": 80}]))
        name = "web.shop.svc.corp.example"
        await eventually(lambda: addresses(dns, name), timeout=10)
        answer = await query(("127.0.0.1", dns.server.port), name)
        assert [(r.data, r.ttl) for r in answer.answers] == [("10.96.0.51", 30)]
        # no upstreams: SERVFAIL outside the zone
        outside = await query(("127.0.0.1", dns.server.port), "www.example.test")
        assert outside.rcode == wire.SERVFAIL


@pytest.mark.parametrize("network", [None, object()], ids=["no network", "no address"])
async def test_without_a_pod_network_address_nothing_is_served(network):
    dns = ClusterDNS(DnsConfig(port=0, upstreams=()))
    ctx = NodeServiceContext(api=None, settings=None, node_name="n", network=network)
    stop = asyncio.Event()
    task = asyncio.create_task(dns.run(ctx, stop))
    await asyncio.sleep(0.05)
    assert ctx.cluster_dns == [] and dns.server is None and not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)


def test_upstreams_default_to_resolv_conf_without_ourselves(tmp_path: Path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 10.0.0.2\nnameserver 10.244.0.1\noptions ndots:1\n")
    dns = ClusterDNS(DnsConfig(), resolv_conf=conf)
    assert dns.upstreams("10.244.0.1", 53) == [("10.0.0.2", 53)]
    assert ClusterDNS(DnsConfig(), resolv_conf=tmp_path / "none").upstreams("x", 53) == []
    explicit = ClusterDNS(DnsConfig(upstreams=(("127.0.0.9", 5353),)), resolv_conf=conf)
    assert explicit.upstreams("10.244.0.1", 53) == [("127.0.0.9", 5353)]


def test_options():
    config = DnsConfig.from_options(
        port=5353, domain="Corp.Example.", ttl=0, upstream="127.0.0.2:5300, ::1"
    )
    assert config == DnsConfig(
        port=5353, domain="corp.example", ttl=0, upstreams=(("127.0.0.2", 5300), ("::1", 53))
    )
    assert DnsConfig.from_options() == DnsConfig()
    with pytest.raises(Invalid) as caught:
        DnsConfig.from_options(port=70000, domain="bad_domain..x", ttl=7200, upstream="nope")
    fields = [c.field for c in caught.value.causes]
    assert fields == ["--cluster-dns-port", "--cluster-domain", "--dns-ttl", "--dns-upstream"]


def test_plugin_hooks(tmp_path: Path):
    assert "dns" in DEFAULT_PLUGINS
    host = PluginHost(["dns"])
    names = {o.name for o in host.options()}
    assert {"cluster_dns_port", "cluster_domain", "dns_upstream", "dns_ttl"} <= names
    settings = Settings(data_dir=tmp_path, options={"cluster_domain": "corp.example"})
    [svc] = host.node_services(settings)
    assert svc.name == "cluster-dns" and svc.config.domain == "corp.example"
    with pytest.raises(Invalid):
        host.node_services(Settings(data_dir=tmp_path, options={"dns_ttl": -1}))
