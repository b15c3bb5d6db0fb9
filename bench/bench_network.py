"""Benchmark of net_bridge: pod network set-up and teardown next to ``ip -batch``.

    python bench/bench_network.py [--runs 100] [--warmups 10] [--rounds 2]
                                  [--concurrent 20] [--concurrent-rounds 5] [--workers N]

Everything runs in one invocation, as root, on the real kernel:

- net_bridge: ``setup_pod`` and ``teardown_pod`` of one pod at a time (``--runs``, in
  ``--rounds`` blocks after ``--warmups`` unrecorded runs each), always in the same network
  namespace, so that only the network's work is timed; then ``--concurrent`` pods set up
  at once (and torn down at once), ``--concurrent-rounds`` times: the wall time of each
  batch and each pod's own latency. One more row sets pods up with one host port (one nft
  transaction each). The plugin's data dir is a temporary directory on the disk of
  ``--data-dir`` (default the system's temporary directory): its files are part of a
  set-up.
- the peer: the same links, addresses and routes made by iproute2 with two execs, as a
  shell-script CNI plugin would: ``ip -batch -`` on the node (veth pair with the peer made
  in the pod's namespace, on the bridge, up) and ``ip -n <netns> -batch -`` in the pod (lo
  and eth0 up, the address, the default route); teardown is one ``ip link del``. The peer
  keeps no state (no address allocation, no records), so it does less than net_bridge. It
  runs on a bridge of its own, in blocks alternating with net_bridge's.

Everything created carries a name unique to the run (bridges ``kcb<hex>``/``kcp<hex>``, nft
table ``kcbench_<hex>``, namespaces ``kcb-<hex>-<n>``, free /24s of 10.252.0.0/16,
10.253.0.0/16 and 10.254.0.0/16) and is removed at the end, also after a failure or
Ctrl-C; ``net.ipv4.ip_forward``, which net_bridge turns on, is put back as it was. Figures
are printed, never asserted; compare the ratios of one run rather than figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from kcore.settings import Settings


@dataclass
class Series:
    latencies: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]

    @property
    def median(self) -> float:
        return self.percentile(50)


@dataclass
class Results:
    setup: Series = field(default_factory=Series)
    teardown: Series = field(default_factory=Series)
    setup_hostport: Series = field(default_factory=Series)
    concurrent_setup: Series = field(default_factory=Series)
    concurrent_setup_wall: Series = field(default_factory=Series)
    concurrent_teardown: Series = field(default_factory=Series)
    concurrent_teardown_wall: Series = field(default_factory=Series)


def sh(*args: str, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=check)
    return done.stdout


def free_subnet(second_octet: int) -> ipaddress.IPv4Network:
    """A random /24 of 10.<second_octet>.0.0/16 that no route of /24 or longer on the node
    touches (shorter ones are cluster-wide unreachable routes, maybe another run's)."""
    used = []
    for route in json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all")):
        with contextlib.suppress(ValueError, KeyError):
            net = ipaddress.IPv4Network(route["dst"], strict=False)
            if net.prefixlen >= 24:
                used.append(net)
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{second_octet}.{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /24 in 10.{second_octet}.0.0/16")


@dataclass
class Run:
    """The names of this run, and what has been made with them."""

    hex: str = field(default_factory=lambda: secrets.token_hex(4))
    namespaces: list[str] = field(default_factory=list)
    peer_links: set[str] = field(default_factory=set)

    @property
    def bridge(self) -> str:
        return f"kcb{self.hex}"

    @property
    def peer_bridge(self) -> str:
        return f"kcp{self.hex}"

    @property
    def table(self) -> str:
        return f"kcbench_{self.hex}"

    def netns(self, n: int) -> str:
        name = f"kcb-{self.hex}-{n}"
        if name not in self.namespaces:
            sh("ip", "netns", "add", name)
            self.namespaces.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.namespaces:
            sh("ip", "netns", "del", name, check=False)
        for link in self.peer_links:
            sh("ip", "link", "del", link, check=False)
        for bridge in (self.bridge, self.peer_bridge):
            ports = sh("ip", "-j", "link", "show", "master", bridge, check=False)
            for port in json.loads(ports or "[]"):
                sh("ip", "link", "del", port["ifname"], check=False)
            sh("ip", "link", "del", bridge, check=False)
        sh("nft", "delete", "table", "ip", self.table, check=False)


# --- net_bridge ---------------------------------------------------------------------------


async def kcore_block(net, run: Run, results: Results, runs: int, warmups: int, offset: int):
    path = f"/run/netns/{run.netns(0)}"
    for i in range(warmups + runs):
        uid = f"bench-{offset + i}"
        t0 = time.perf_counter()
        await net.setup_pod(uid, path, {"name": uid, "namespace": "bench"})
        t1 = time.perf_counter()
        await net.teardown_pod(uid, path)
        t2 = time.perf_counter()
        if i >= warmups:
            results.setup.latencies.append(t1 - t0)
            results.teardown.latencies.append(t2 - t1)


async def kcore_hostports(net, run: Run, results: Results, runs: int) -> None:
    path = f"/run/netns/{run.netns(0)}"
    for i in range(runs):
        uid = f"bench-hp-{i}"
        config = {
            "port_mappings": [
                {"protocol": "TCP", "container_port": 80, "host_port": 30000 + i, "host_ip": ""}
            ]
        }
        t0 = time.perf_counter()
        await net.setup_pod(uid, path, config)
        results.setup_hostport.latencies.append(time.perf_counter() - t0)
        await net.teardown_pod(uid, path)


async def timed(coro) -> float:
    t0 = time.perf_counter()
    await coro
    return time.perf_counter() - t0


async def kcore_concurrent(net, run: Run, results: Results, pods: int, rounds: int) -> None:
    paths = [f"/run/netns/{run.netns(1 + n)}" for n in range(pods)]
    for r in range(rounds + 1):  # the first round warms up
        uids = [f"bench-c{r}-{n}" for n in range(pods)]
        t0 = time.perf_counter()
        each = await asyncio.gather(
            *(timed(net.setup_pod(u, p, {})) for u, p in zip(uids, paths, strict=True))
        )
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        down = await asyncio.gather(
            *(timed(net.teardown_pod(u, p)) for u, p in zip(uids, paths, strict=True))
        )
        down_wall = time.perf_counter() - t1
        if r:
            results.concurrent_setup.latencies += each
            results.concurrent_setup_wall.latencies.append(wall)
            results.concurrent_teardown.latencies += down
            results.concurrent_teardown_wall.latencies.append(down_wall)


# --- the peer: ip -batch -----------------------------------------------------------------


async def ip_batch(script: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip",
        *args,
        "-batch",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(script.encode())
    if proc.returncode:
        raise RuntimeError(f"ip -batch: {err.decode().strip()}")


class Peer:
    """Pod wiring with ``ip -batch``: two execs to set up, one to tear down."""

    def __init__(self, run: Run, subnet: ipaddress.IPv4Network) -> None:
        self.run = run
        self.subnet = subnet
        self.gateway = subnet.network_address + 1
        self.next = 0

    async def start(self) -> None:
        br = self.run.peer_bridge
        await ip_batch(
            f"link add {br} type bridge\n"
            f"addr add {self.gateway}/{self.subnet.prefixlen} dev {br}\n"
            f"link set {br} up\n"
        )

    def address(self) -> ipaddress.IPv4Address:
        self.next = self.next % (self.subnet.num_addresses - 3) + 1
        return self.gateway + self.next

    async def setup(self, veth: str, netns: str, ip: ipaddress.IPv4Address) -> None:
        self.run.peer_links.add(veth)
        await ip_batch(
            f"link add {veth} type veth peer name eth0 netns {netns}\n"
            f"link set {veth} master {self.run.peer_bridge} up\n"
        )
        await ip_batch(
            "link set lo up\n"
            "link set eth0 up\n"
            f"addr add {ip}/{self.subnet.prefixlen} dev eth0\n"
            f"route add default via {self.gateway}\n",
            "-n",
            netns,
        )

    async def teardown(self, veth: str) -> None:
        proc = await asyncio.create_subprocess_exec("ip", "link", "del", veth)
        await proc.wait()
        self.run.peer_links.discard(veth)


async def peer_block(peer: Peer, results: Results, runs: int, warmups: int, offset: int):
    netns = peer.run.netns(0)
    for i in range(warmups + runs):
        veth = f"kcpv{peer.run.hex[:4]}{(offset + i) % 100000}"
        t0 = time.perf_counter()
        await peer.setup(veth, netns, peer.address())
        t1 = time.perf_counter()
        await peer.teardown(veth)
        t2 = time.perf_counter()
        if i >= warmups:
            results.setup.latencies.append(t1 - t0)
            results.teardown.latencies.append(t2 - t1)


async def peer_concurrent(peer: Peer, results: Results, pods: int, rounds: int) -> None:
    names = [peer.run.netns(1 + n) for n in range(pods)]
    for r in range(rounds + 1):
        veths = [f"kcpc{peer.run.hex[:4]}{r}x{n}" for n in range(pods)]
        t0 = time.perf_counter()
        each = await asyncio.gather(
            *(timed(peer.setup(v, ns, peer.address())) for v, ns in zip(veths, names, strict=True))
        )
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        down = await asyncio.gather(*(timed(peer.teardown(v)) for v in veths))
        down_wall = time.perf_counter() - t1
        if r:
            results.concurrent_setup.latencies += each
            results.concurrent_setup_wall.latencies.append(wall)
            results.concurrent_teardown.latencies += down
            results.concurrent_teardown_wall.latencies.append(down_wall)


# --- the run -------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, run: Run, data_dir: Path) -> tuple[Results, Results]:
    from kcore.plugins.net_bridge import create_network

    subnet = free_subnet(252)
    peer_subnet = free_subnet(253)
    service = free_subnet(254)
    options = {
        "bridge_name": run.bridge,
        "nft_table": run.table,
        "cluster_cidr": str(subnet),
        "pod_cidr": str(subnet),
        "service_cidr": str(service),
    }
    t0 = time.perf_counter()
    net = await create_network(
        Settings(data_dir=data_dir, options=options), workers=args.workers or None
    )
    created = time.perf_counter() - t0
    print(
        f"net_bridge created in {created * 1000:.0f} ms (pyroute2 import, bridge, routes, "
        f"nft table via {net._nft.via}); pod CIDR {subnet}, peer {peer_subnet}",
        file=sys.stderr,
        flush=True,
    )
    k, p = Results(), Results()
    peer = Peer(run, peer_subnet)
    try:
        await peer.start()
        per_block = args.runs // args.rounds
        for block in range(args.rounds):
            n = per_block if block < args.rounds - 1 else args.runs - per_block * block
            order = ("kcore", "peer") if block % 2 == 0 else ("peer", "kcore")
            for who in order:
                print(f"  block {block + 1}: {who} x {n}", file=sys.stderr, flush=True)
                if who == "kcore":
                    await kcore_block(net, run, k, n, args.warmups, block * 10000)
                else:
                    await peer_block(peer, p, n, args.warmups, block * 10000)
        print(f"  host ports x {args.runs}", file=sys.stderr, flush=True)
        await kcore_hostports(net, run, k, args.runs)
        print(
            f"  {args.concurrent} concurrent x {args.concurrent_rounds}",
            file=sys.stderr,
            flush=True,
        )
        await kcore_concurrent(net, run, k, args.concurrent, args.concurrent_rounds)
        await peer_concurrent(peer, p, args.concurrent, args.concurrent_rounds)
    finally:
        await net.remove_all()
    return k, p


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:9.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:7.2f}x" if b and a == a and b == b else f"{'-':>8}"


def print_table(args: argparse.Namespace, k: Results, p: Results) -> None:
    c = args.concurrent
    print(
        f"\npod network set-up and teardown, ms (sequential: N={args.runs} in {args.rounds} "
        f"alternating blocks after {args.warmups} warm-ups each; concurrent: {c} pods x "
        f"{args.concurrent_rounds} rounds after one warm-up round)"
    )
    print(
        f"{'operation':<42}{'net_bridge':>20}{'ip -batch (2 execs)':>22}"
        f"{'ip/net_bridge':>16}\n{'':<42}{'median':>10}{'p99':>10}{'median':>11}{'p99':>11}"
        f"{'median':>9}{'p99':>8}"
    )
    rows = [
        ("set-up, one at a time", k.setup, p.setup),
        ("teardown, one at a time", k.teardown, p.teardown),
        ("set-up with 1 hostPort (1 nft transaction)", k.setup_hostport, Series()),
        (f"set-up, {c} concurrent: per pod", k.concurrent_setup, p.concurrent_setup),
        (
            f"set-up, {c} concurrent: wall per batch",
            k.concurrent_setup_wall,
            p.concurrent_setup_wall,
        ),
        (f"teardown, {c} concurrent: per pod", k.concurrent_teardown, p.concurrent_teardown),
        (
            f"teardown, {c} concurrent: wall per batch",
            k.concurrent_teardown_wall,
            p.concurrent_teardown_wall,
        ),
    ]
    for name, a, b in rows:
        peer = f"{fmt(b.median)}  {fmt(b.percentile(99))}" if b.latencies else f"{'-':>9}  {'-':>9}"
        print(
            f"{name:<42}{fmt(a.median)} {fmt(a.percentile(99))} {peer}"
            f"{ratio(b.median, a.median)}{ratio(b.percentile(99), a.percentile(99))}"
        )
    print(
        "notes: p99 of fewer than 100 samples is the slowest one. net_bridge also allocates\n"
        "the address (a file under an flock) and writes the pod's record; the peer keeps no\n"
        "state. Teardown is mostly the kernel deleting a veth pair (it waits for RCU)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="sequential runs (default 100)")
    parser.add_argument("--warmups", type=int, default=10, help="per block (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating blocks (default 2)")
    parser.add_argument("--concurrent", type=int, default=20, help="pods at once (default 20)")
    parser.add_argument(
        "--concurrent-rounds", type=int, default=5, help="batches of those (default 5)"
    )
    parser.add_argument("--workers", type=int, default=0, help="net_bridge worker threads")
    parser.add_argument("--data-dir", default=None, help="where the temporary data dir goes")
    args = parser.parse_args()
    if args.runs < 1 or args.warmups < 0 or args.concurrent < 1 or args.concurrent_rounds < 1:
        parser.error("--runs, --concurrent and --concurrent-rounds must be at least 1")
    if not 1 <= args.rounds <= args.runs:
        parser.error("--rounds must be between 1 and --runs")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, links, routes, nftables)")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    run = Run()
    ip_forward = Path("/proc/sys/net/ipv4/ip_forward")
    forwarding = ip_forward.read_text()  # net_bridge turns it on; put back as found
    print(
        f"net_bridge benchmark {run.hex}: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}, {sh('ip', '-V').strip()}"
    )
    work = Path(tempfile.mkdtemp(prefix=f"kcore-bench-{run.hex}-", dir=args.data_dir))
    try:
        k, p = asyncio.run(bench(args, run, work / "data"))
        print_table(args, k, p)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted; removed what run {run.hex} had made", file=sys.stderr)
        return 130
    finally:
        run.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        if ip_forward.read_text() != forwarding:
            ip_forward.write_text(forwarding)
    return 0


if __name__ == "__main__":
    sys.exit(main())
