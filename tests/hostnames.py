"""Host-wide names for tests that touch the node's network and cgroups: a bridge
``kc<8 hex>``, an nft table ``kctest_<8 hex>``, a free random /24 of 10.250.0.0/16 for pods
and one of 10.251.0.0/16 for services, a cgroup root ``kcore-test-<hex>``; and removing what
a test made with them (by name, never by pattern)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def used_routes() -> list[ipaddress.IPv4Network]:
    nets = []
    for route in json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(dst, strict=False)
                if net.prefixlen >= 24:
                    nets.append(net)
    return nets


def free_subnet(second_octet: int) -> ipaddress.IPv4Network:
    """A random /24 of 10.<second_octet>.0.0/16 that no route of /24 or longer on the node
    touches (shorter ones are cluster-wide unreachable routes, maybe another run's)."""
    used = used_routes()
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{second_octet}.{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /24 in 10.{second_octet}.0.0/16")


@dataclass
class Names:
    """One plugin instance's host-wide names."""

    bridge: str
    table: str
    cluster: ipaddress.IPv4Network
    pod: ipaddress.IPv4Network
    service: ipaddress.IPv4Network

    def options(self, **extra: str) -> dict[str, str]:
        return {
            "bridge_name": self.bridge,
            "nft_table": self.table,
            "cluster_cidr": str(self.cluster),
            "pod_cidr": str(self.pod),
            "service_cidr": str(self.service),
            **extra,
        }


def remove_host_objects(names: Names) -> None:
    """Remove whatever the plugin may have left on the node for ``names``."""
    ports = sh("ip", "-j", "link", "show", "master", names.bridge, check=False)
    if ports.returncode == 0 and ports.stdout.strip():
        for link in json.loads(ports.stdout):
            sh("ip", "link", "del", link["ifname"], check=False)
    sh("ip", "link", "del", names.bridge, check=False)
    sh("nft", "delete", "table", "ip", names.table, check=False)
    sh("nft", "delete", "table", "ip", f"{names.table}_svc", check=False)  # the service proxy
    for cidr in (names.cluster, names.service):
        sh("ip", "route", "del", "unreachable", str(cidr), "metric", "4242", check=False)


def new_names(pod_prefix: int = 24) -> Names:
    """Fresh names: a free cluster /24 (its first /``pod_prefix`` for pods), a free
    service /24."""
    h = secrets.token_hex(4)
    cluster = free_subnet(250)
    pod = next(cluster.subnets(new_prefix=pod_prefix))
    return Names(f"kc{h}", f"kctest_{h}", cluster, pod, free_subnet(251))


def cleanup_runtime_dir(data_dir: Path) -> None:
    """Kill the monitors recorded under ``data_dir`` (their containers die with them)."""
    for record in (data_dir / "runtime" / "sandboxes").glob("*/sandbox.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = json.loads(record.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)


def remove_cgroup_root(parents: dict[str, Path]) -> None:
    deadline = time.monotonic() + 10
    for top in parents.values():
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            while d.exists():
                try:
                    for pid in (d / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                    d.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)


def unmount_below(path: Path) -> None:
    """Unmount (lazily) everything mounted at or below ``path``."""
    top = os.path.realpath(path)
    for _ in range(10):
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == top or point.startswith(top + "/"):
                    points.append(point)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
