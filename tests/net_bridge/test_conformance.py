"""The network conformance suite on net_bridge, each test with host-wide names of its own:
a bridge ``kc<8 hex>``, an nft table ``kcconf_<8 hex>``, a random free /24 of
10.250.0.0/16 as its pod and cluster range and a random /24 of 10.251.0.0/16 as its
service range. After each test
the plugin's ``remove_all()`` takes the bridge, the table and the unreachable routes down;
whatever it leaves is removed here and fails the test. ``net.ipv4.ip_forward``, which the
plugin turns on, is put back as it was before this module."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcore.conformance.suites.network import NetworkConformance
from kcore.settings import Settings

CLUSTER_CIDR = ipaddress.IPv4Network("10.250.0.0/16")
SERVICE_CIDR = ipaddress.IPv4Network("10.251.0.0/16")
UNREACHABLE_METRIC = "4242"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
COMMAND_TIMEOUT = 15


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def free_pod_cidr() -> ipaddress.IPv4Network:
    """A random /24 of the cluster range that no more specific route on the node touches
    (another bridge's pod range, say)."""
    used = []
    for route in json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        with contextlib.suppress(KeyError, ValueError):
            net = ipaddress.IPv4Network(route["dst"], strict=False)
            if net.prefixlen >= 24:
                used.append(net)
    subnets = list(CLUSTER_CIDR.subnets(new_prefix=24))
    random.shuffle(subnets)
    for net in subnets:
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /24 in {CLUSTER_CIDR}")


def leftovers(options: dict[str, str]) -> list[str]:
    """What of the plugin's node-wide things is still there."""
    found = []
    if sh("ip", "link", "show", options["bridge_name"]).returncode == 0:
        found.append(f"bridge {options['bridge_name']}")
    if sh("nft", "list", "table", "ip", options["nft_table"]).returncode == 0:
        found.append(f"nft table ip {options['nft_table']}")
    for cidr in (options["cluster_cidr"], options["service_cidr"]):
        routes = sh("ip", "-4", "route", "show", "type", "unreachable", "exact", cidr).stdout
        if f"metric {UNREACHABLE_METRIC}" in routes:
            found.append(f"unreachable route {cidr}")
    return found


def remove_leftovers(options: dict[str, str]) -> None:
    bridge = options["bridge_name"]
    ports = sh("ip", "-j", "link", "show", "master", bridge)
    if ports.returncode == 0 and ports.stdout.strip():
        for link in json.loads(ports.stdout):
            sh("ip", "link", "delete", link["ifname"])
    sh("ip", "link", "delete", bridge)
    sh("nft", "delete", "table", "ip", options["nft_table"])
    for cidr in (options["cluster_cidr"], options["service_cidr"]):
        sh("ip", "route", "delete", "unreachable", cidr, "metric", UNREACHABLE_METRIC)


@pytest.fixture(scope="module", autouse=True)
def restore_ip_forward() -> Iterator[None]:
    before = IP_FORWARD.read_text() if IP_FORWARD.exists() else None
    yield
    if before is not None and IP_FORWARD.read_text() != before:
        IP_FORWARD.write_text(before)


@pytest.mark.skipif(os.geteuid() != 0, reason="net_bridge needs root")
class TestNetBridgeConformance(NetworkConformance):
    @pytest.fixture
    def network_factory(self, kcore_settings_factory):
        from kcore.plugins.net_bridge import create_network

        token = secrets.token_hex(4)
        pod_cidr = free_pod_cidr()
        # Ranges of this test's own (the pod /24 doubles as the cluster range), so that its
        # unreachable routes never meet another run's.
        options = {
            "bridge_name": f"kc{token}",
            "nft_table": f"kcconf_{token}",
            "cluster_cidr": str(pod_cidr),
            "pod_cidr": str(pod_cidr),
            "service_cidr": str(random.choice(list(SERVICE_CIDR.subnets(new_prefix=24)))),
        }
        made: list[Settings] = []

        async def make(settings: Settings | None = None):
            settings = settings or kcore_settings_factory()
            settings = Settings(data_dir=settings.data_dir, options={**settings.options, **options})
            made.append(settings)
            return await create_network(settings)

        yield make
        if not made:
            return
        try:

            async def remove_all() -> None:
                network = await create_network(made[-1])
                await network.remove_all()

            asyncio.run(asyncio.wait_for(remove_all(), 60))
        finally:
            left = leftovers(options)
            remove_leftovers(options)
        assert not left, f"remove_all() left {left}"
