"""Benchmark of net_bridge's service proxy (plugins/net_bridge/proxy.py).

    python bench/bench_service_proxy.py [--changes 50] [--requests 2000]
                                        [--services 100,1000] [--background 100]

Everything runs in one invocation, as root, inside network namespaces of its own: a "node"
namespace with a bridge, one "pod" namespace with a TCP server and one "client" pod. The
proxy's table and route go into the node namespace only. Three measurements:

- endpoint change -> rules: the ``service-proxy`` node service runs against an in-process
  API (in-memory store) next to ``--background`` other Services; each of ``--changes``
  writes replaces the endpoint of one EndpointSlice, and the time is taken from just
  before the write until ``nft list`` in the node namespace shows the new endpoint's
  ``dnat`` (polled every millisecond from another thread). That is the watch, the
  informer, the coalescing delay, building the rules and the nft transaction.
- request latency: the client pod opens a new TCP connection, sends a line and reads the
  answer, ``--requests`` times through the ClusterIP and as many straight to the pod IP,
  in alternating blocks; new connections are what the NAT rules see (later packets
  follow conntrack).
- sync time vs number of services: ``ProxyTable.apply`` (build the script, one nft
  transaction replacing the table, the route) for N Services of 3 endpoints each, and of
  it the Python time to build the script.

Figures are printed, never asserted. Everything created carries a name unique to the run
(namespaces ``kcb-<hex>-<n>``, bridge ``kcs<hex>``, table ``kcbench_<hex>_svc``) and goes
with the namespaces at the end, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import structlog

from kcore.plugins.net_bridge.proxy import (
    Endpoint,
    ProxyConfig,
    ProxyTable,
    ServicePortRules,
    ServiceProxy,
    ruleset,
)

PORT = 9000
SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512)
print("ready", flush=True)
def serve(c):
    with c:
        c.recv(64); c.sendall(b"ok")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = r"""
import json, socket, sys, time
targets = [(sys.argv[1], int(sys.argv[2])), (sys.argv[3], int(sys.argv[4]))]
n, block = int(sys.argv[5]), 100
out = {0: [], 1: []}
for _ in range(20):  # warm up both paths
    for host, port in targets:
        with socket.create_connection((host, port), timeout=5) as c:
            c.sendall(b"hi"); c.recv(16)
while len(out[1]) < n:
    for i, (host, port) in enumerate(targets):
        for _ in range(block):
            t = time.perf_counter()
            with socket.create_connection((host, port), timeout=5) as c:
                c.sendall(b"hi"); c.recv(16)
            out[i].append(time.perf_counter() - t)
print(json.dumps(out))
"""


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=check).stdout


def pct(data: list[float], p: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(p / 100 * len(data)))] if data else float("nan")


@dataclass
class Bed:
    hex: str = field(default_factory=lambda: secrets.token_hex(4))
    spaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def netns(self) -> str:
        name = f"kcb-{self.hex}-{len(self.spaces)}"
        sh("ip", "netns", "add", name)
        self.spaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        for name in reversed(self.spaces):
            sh("ip", "netns", "del", name, check=False)


def build(bed: Bed) -> tuple[str, ProxyConfig, dict[str, str]]:
    """The node namespace, a server pod and a client pod; (node, config, pod name -> ip)."""
    config = ProxyConfig(
        table=f"kcbench_{bed.hex}_svc",
        bridge=f"kcs{bed.hex}",
        pod_cidr=IPv4Network("10.240.0.0/24"),
        service_cidr=IPv4Network("10.96.0.0/12"),
        gateway=IPv4Address("10.240.0.1"),
    )
    node = bed.netns()
    sh("ip", "-n", node, "link", "add", config.bridge, "type", "bridge")
    sh("ip", "-n", node, "addr", "add", "10.240.0.1/24", "dev", config.bridge)
    sh("ip", "-n", node, "link", "set", config.bridge, "up")
    sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    pods = {}
    for i, name in enumerate(("server", "client")):
        ns = bed.netns()
        veth = f"v{bed.hex}{i}"
        sh("ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        sh("ip", "-n", node, "link", "set", veth, "master", config.bridge, "up")
        ip = f"10.240.0.{2 + i}"
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.240.0.1")
        pods[name] = ip
        pods[f"{name}-ns"] = ns
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{pods['server-ns']}", sys.executable, "-c", SERVER,
         str(PORT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    bed.procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return node, config, pods


def service(name: str, ip: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 80}]},
    }


def endpoint_slice(name: str, addresses: list[str]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "", "port": PORT, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


async def endpoint_changes(node: str, config: ProxyConfig, args) -> list[float]:
    from kcore.apiserver.objects import ObjectStore
    from kcore.client import ApiClient
    from kcore.client.inprocess import InProcessTransport
    from kcore.daemon import bootstrap
    from kcore.interfaces import NodeServiceContext
    from kcore.plugins.store_sqlite.backend import SqliteStore

    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    api = ApiClient(InProcessTransport(objects))
    proxy = ServiceProxy(netns=f"/run/netns/{node}", config=config)
    watcher = ProxyTable(config, netns=f"/run/netns/{node}")
    stop = asyncio.Event()
    task = asyncio.create_task(
        proxy.run(NodeServiceContext(api=api, settings=None, node_name="bench"), stop)
    )
    times = []
    try:
        for i in range(args.background + 1):
            name = f"svc-{i}"
            await api.create(service(name, str(IPv4Address("10.96.1.0") + i)))
            await api.create(endpoint_slice(name, [f"10.240.{1 + i // 250}.{1 + i % 250}"]))
        target = "svc-0"
        for n in range(args.changes + 3):
            address = f"10.241.{n // 250}.{1 + n % 250}"
            chain = f"endpoint-default/{target}/tcp/__{address}/{PORT}"
            obj = await api.get("discovery.k8s.io/v1", "EndpointSlice", target, "default")
            obj["endpoints"] = endpoint_slice(target, [address])["endpoints"]
            started = time.perf_counter()
            await api.update(obj)
            deadline = started + 10
            while f"dnat to {address}:" not in await watcher.list(chain):
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"change {n} not in the rules after 10 s")
                await asyncio.sleep(0.001)
            if n >= 3:  # the first ones warm up
                times.append(time.perf_counter() - started)
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await watcher.close()
        await api.close()
        await store.close()
    return times


def request_latency(config: ProxyConfig, node: str, pods: dict[str, str], n: int):
    cluster_ip = "10.96.0.10"
    port = ServicePortRules(
        "default", "echo", "", "tcp", 80, (cluster_ip,), endpoints=(Endpoint(pods["server"], PORT),)
    )

    async def apply():
        table = ProxyTable(config, netns=f"/run/netns/{node}")
        try:
            await table.apply([port])
        finally:
            await table.close()

    asyncio.run(apply())
    out = sh("nsenter", f"--net=/run/netns/{pods['client-ns']}", sys.executable, "-c", CLIENT,
             cluster_ip, "80", pods["server"], str(PORT), str(n))  # fmt: skip
    data = json.loads(out)
    return data["0"], data["1"]


async def sync_times(node: str, config: ProxyConfig, counts: list[int], rounds: int = 7):
    table = ProxyTable(config, netns=f"/run/netns/{node}")
    results = {}
    try:
        for count in counts:
            ports = [
                ServicePortRules(
                    "default",
                    f"svc-{i}",
                    "http",
                    "tcp",
                    80,
                    (str(IPv4Address("10.96.0.0") + 1000 + i),),
                    endpoints=tuple(
                        Endpoint(str(IPv4Address("10.240.0.0") + 3 * i + k + 2), 8080)
                        for k in range(3)
                    ),
                )
                for i in range(count)
            ]
            applies, builds = [], []
            for _ in range(rounds):
                t = time.perf_counter()
                ruleset(config, ports)
                builds.append(time.perf_counter() - t)
                applies.append(await table.apply(ports))
            results[count] = (statistics.median(applies), statistics.median(builds))
    finally:
        with contextlib.suppress(Exception):
            await table.remove()
        await table.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--services", default="100,1000")
    parser.add_argument("--background", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    bed = Bed()
    try:
        node, config, pods = build(bed)
        print(f"endpoint changes x {args.changes} ...", file=sys.stderr, flush=True)
        changes = asyncio.run(endpoint_changes(node, config, args))
        print(f"requests x {args.requests} x 2 ...", file=sys.stderr, flush=True)
        via_service, direct = request_latency(config, node, pods, args.requests)
        counts = [int(c) for c in args.services.split(",")]
        print(f"sync times for {counts} services ...", file=sys.stderr, flush=True)
        syncs = asyncio.run(sync_times(node, config, counts))
    except KeyboardInterrupt:
        print(f"interrupted; removed what run {bed.hex} had made", file=sys.stderr)
        return 130
    finally:
        bed.cleanup()

    ms = 1000.0
    print(f"\nservice proxy benchmark ({platform.node()}, {os.cpu_count()} CPUs, "
          f"{platform.release()})\n")  # fmt: skip
    print(f"{'measurement':<52} {'median':>10} {'p99':>10}")
    print("-" * 74)
    print(
        f"{'EndpointSlice write -> rule in nft list (' + str(len(changes)) + ' changes)':<52} "
        f"{statistics.median(changes) * ms:>8.1f}ms {pct(changes, 99) * ms:>8.1f}ms"
    )
    for label, data in (("request via ClusterIP (new connection)", via_service),
                        ("request straight to the pod IP", direct)):  # fmt: skip
        print(f"{label:<52} {statistics.median(data) * ms:>8.3f}ms {pct(data, 99) * ms:>8.3f}ms")
    ratio_med = statistics.median(via_service) / statistics.median(direct)
    ratio_p99 = pct(via_service, 99) / pct(direct, 99)
    print(f"{'ratio ClusterIP / pod IP':<52} {ratio_med:>9.2f}x {ratio_p99:>9.2f}x")
    for count, (apply_s, build_s) in syncs.items():
        label = f"sync of {count} services (3 endpoints each)"
        print(f"{label:<52} {apply_s * ms:>8.1f}ms {'':>10}")
        print(f"{'  of it building the nft script (Python)':<52} {build_s * ms:>8.1f}ms")
    print(f"\n(endpoint changes ran with {args.background} other Services programmed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
