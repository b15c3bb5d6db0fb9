"""The nodeipam controller: a pod CIDR per Node out of the cluster CIDR."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from kcore.errors import Invalid
from kcore.plugins.controllers.nodeipam import NodeIpamController, controllers
from kcore.settings import Settings

from .conftest import running
from .helpers import eventually


async def node(api, name: str, cidr: str | None = None) -> None:
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec})


async def cidrs(api) -> dict[str, str | None]:
    return {
        n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR")
        for n in (await api.list("v1", "Node"))[0]
    }


def ipam(cidr: str = "10.200.0.0/16", mask: int = 24) -> NodeIpamController:
    return NodeIpamController(IPv4Network(cidr), mask)


async def test_each_node_gets_its_own_range_and_existing_ones_are_kept(api):
    await node(api, "old", "10.200.0.0/24")  # an agent's own --pod-cidr, or an earlier run's
    await node(api, "outside", "192.168.7.0/24")
    async with running(api, ipam()):
        for name in ("a", "b", "c"):
            await node(api, name)

        async def all_set():
            got = await cidrs(api)
            return all(got.values()) and got

        got = await eventually(all_set)
    assert got["old"] == "10.200.0.0/24" and got["outside"] == "192.168.7.0/24"
    assert sorted(got[n] for n in "abc") == ["10.200.1.0/24", "10.200.2.0/24", "10.200.3.0/24"]
    listed = (await api.get("v1", "Node", "a"))["spec"]
    assert listed["podCIDRs"] == [listed["podCIDR"]]


async def test_a_restarted_controller_carries_on_and_a_deleted_nodes_range_is_reused(api):
    async with running(api, ipam(mask=26)):
        await node(api, "a")
        await node(api, "b")
        await eventually(lambda: _all_set(api))
    before = await cidrs(api)
    assert before == {"a": "10.200.0.0/26", "b": "10.200.0.64/26"} or before == {
        "a": "10.200.0.64/26",
        "b": "10.200.0.0/26",
    }
    await api.delete("v1", "Node", "a")
    async with running(api, ipam(mask=26)):
        await node(api, "c")
        await eventually(lambda: _all_set(api))
    after = await cidrs(api)
    assert after["b"] == before["b"]
    assert after["c"] == before["a"]


async def _all_set(api):
    got = await cidrs(api)
    return got and all(got.values())


async def test_an_exhausted_cluster_cidr_gives_an_event_not_a_duplicate(api):
    async with running(api, ipam("10.200.0.0/23", 24)):
        for name in ("a", "b", "c"):
            await node(api, name)

        async def warned():
            events = (await api.list("v1", "Event", namespace="default"))[0]
            return [e for e in events if e.get("reason") == "CIDRNotAvailable"]

        events = await eventually(warned)
    got = await cidrs(api)
    assert sorted(v for v in got.values() if v) == ["10.200.0.0/24", "10.200.1.0/24"]
    assert list(got.values()).count(None) == 1
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["kind"] == "Node"


def test_off_unless_asked_and_options_are_checked(tmp_path):
    assert controllers(Settings(data_dir=tmp_path)) == []
    on = controllers(Settings(data_dir=tmp_path, options={"allocate_node_cidrs": True}))
    assert [c.name for c in on] == ["nodeipam"]
    assert on[0].cluster_cidr == IPv4Network("10.244.0.0/16") and on[0].mask_size == 24
    custom = controllers(
        Settings(
            data_dir=tmp_path,
            options={
                "allocate_node_cidrs": True,
                "cluster_cidr": "10.9.0.0/16",
                "node_cidr_mask_size": 20,
            },
        )
    )
    assert custom[0].cluster_cidr == IPv4Network("10.9.0.0/16") and custom[0].mask_size == 20
    for bad, field in (
        ({"node_cidr_mask_size": 12}, "--node-cidr-mask-size"),
        ({"node_cidr_mask_size": 31}, "--node-cidr-mask-size"),
        ({"cluster_cidr": "10.9.0.1/16"}, "--cluster-cidr"),
    ):
        options = {"allocate_node_cidrs": True, **bad}
        with pytest.raises(Invalid) as err:
            controllers(Settings(data_dir=tmp_path, options=options))
        assert err.value.causes[0].field == field
