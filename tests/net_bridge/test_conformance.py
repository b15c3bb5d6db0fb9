"""The network conformance suite on net_bridge, each test with host-wide names of its own:
a bridge ``kc<8 hex>``, an nft table ``kcconf_<8 hex>``, a random free /24 of
10.250.0.0/16 as its pod and cluster range and a random /24 of 10.251.0.0/16 as its
service range. After each test
the plugin's ``remove_all()`` takes the bridge, the table and the unreachable routes down;
whatever it leaves is removed here and fails the test. ``net.ipv4.ip_forward``, which the
plugin turns on, is put back as it was before this module.

The suite's optional fixtures: ``small_pod_range`` is the /29 at .96 of the test's /24 (5
pods, .98 to .102: addresses of two and three digits, so that the rotation's saved last
address is also written over a longer one), and ``crash_network`` runs the call in a child
process that SIGKILLs itself where net_bridge would write or remove the pod's record (the
address already taken or freed)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import secrets
import signal
import subprocess
import sys
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
SMALL_PREFIX = 29
"""The pod CIDR of ``small_pod_range``: 8 addresses, 5 pods (not the network, broadcast
and gateway addresses)."""
SMALL_OFFSET = 96
"""Where in the test's /24 the ``small_pod_range`` starts."""
CRASH_TIMEOUT = 60

CRASH = r"""
import asyncio, json, os, signal, sys

from kcore.plugins.net_bridge import create_network, pods
from kcore.settings import Settings

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

# setup_pod records the pod last (after its address and veth), teardown_pod forgets it
# last (after freeing them): the process dies just before.
pods.PodRecords.save = die
pods.PodRecords.remove = die

async def main(spec):
    settings = Settings(data_dir=spec["data_dir"], options=spec["options"])
    network = await create_network(settings)
    await getattr(network, spec["call"])(*spec["args"])

asyncio.run(main(json.loads(sys.argv[1])))
"""


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
    def bridge_options(self) -> dict[str, str]:
        token = secrets.token_hex(4)
        pod_cidr = free_pod_cidr()
        # Ranges of this test's own (the pod /24 doubles as the cluster range), so that its
        # unreachable routes never meet another run's.
        return {
            "bridge_name": f"kc{token}",
            "nft_table": f"kcconf_{token}",
            "cluster_cidr": str(pod_cidr),
            "pod_cidr": str(pod_cidr),
            "service_cidr": str(random.choice(list(SERVICE_CIDR.subnets(new_prefix=24)))),
        }

    @pytest.fixture
    def bridge_settings(self, bridge_options):
        """``settings`` with this test's options; a ``pod_cidr`` inside the test's /24
        (``small_pod_range``) stays."""
        own = ipaddress.IPv4Network(bridge_options["pod_cidr"])

        def settings_of(settings: Settings) -> Settings:
            options = {**settings.options, **bridge_options}
            pod_cidr = settings.options.get("pod_cidr")
            if pod_cidr and ipaddress.IPv4Network(pod_cidr).subnet_of(own):
                options["pod_cidr"] = pod_cidr
            return Settings(data_dir=settings.data_dir, options=options)

        return settings_of

    @pytest.fixture
    def network_factory(self, kcore_settings_factory, bridge_options, bridge_settings):
        from kcore.plugins.net_bridge import create_network

        made: list[Settings] = []

        async def make(settings: Settings | None = None):
            settings = bridge_settings(settings or kcore_settings_factory())
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
            left = leftovers(bridge_options)
            remove_leftovers(bridge_options)
        assert not left, f"remove_all() left {left}"

    @pytest.fixture
    def small_pod_range(self, kcore_settings_factory, bridge_options):
        settings = kcore_settings_factory()
        own = ipaddress.IPv4Network(bridge_options["pod_cidr"])
        small = ipaddress.IPv4Network(f"{own.network_address + SMALL_OFFSET}/{SMALL_PREFIX}")
        options = {**settings.options, "pod_cidr": str(small)}
        return Settings(data_dir=settings.data_dir, options=options), small.num_addresses - 3

    @pytest.fixture
    def crash_network(self, bridge_settings):
        async def crash(settings: Settings, call: str, *args) -> None:
            settings = bridge_settings(settings)
            spec = {
                "data_dir": str(settings.data_dir),
                "options": settings.options,
                "call": call,
                "args": list(args),
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CRASH,
                json.dumps(spec),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), CRASH_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            assert proc.returncode == -signal.SIGKILL, (
                f"{call} was to die before it (un)recorded the pod, but exited with "
                f"{proc.returncode}: {out.decode(errors='replace')[-2000:]}"
            )

        return crash
