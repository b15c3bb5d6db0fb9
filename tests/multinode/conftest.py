"""A three-host cluster on one machine: three network namespaces ("hosts") on a test
bridge, host1 running ``kcore init``, host2 and host3 ``kcore join`` with the command host1
printed, each on runtime_linux + net_bridge with names unique to the run.

Layout (``<h>`` a per-run hex string, ``X`` a free /24 of 10.251.0.0/16)::

    host namespace:  bridge kc<h> ── veth kc<h>1 ─┐ ── veth kc<h>2 ─┐ ── veth kc<h>3 ─┐
    netns kctest-<h>-host1: eth0 10.251.X.11/24   (kcore init: API server, controllers,
                                                   scheduler, node agent)
    netns kctest-<h>-host2: eth0 10.251.X.12/24   (kcore join)
    netns kctest-<h>-host3: eth0 10.251.X.13/24   (kcore join)

The processes enter their namespace with ``nsenter --net`` (not ``ip netns exec``, which
hides the cgroup file systems behind a fresh /sys). The cluster CIDR is a free /22 of
10.250.0.0/16 (a /24 per node), the service range a free /24 of 10.251.0.0/16; bridges,
nft tables and cgroup roots inside carry names of their own. Nothing is routed out of the
namespaces: the test bridge has no address and no uplink.

Teardown, also after a failure: every kcore process stopped by its pid, the pods' monitors
killed by their recorded pids, mounts below the data directories unmounted, cgroup roots
removed, namespaces, veths and the bridge deleted by name."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bootstrap.processes import Process, join_args, kubectl, run, start
from hostnames import cleanup_runtime_dir, remove_cgroup_root, sh, unmount_below, used_routes

from kcore.images import ImageStore

IMAGE = "kcore.test/busybox:latest"
GRACE_PERIOD = "15"
EVICTION_TIMEOUT = "5"

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, bridges)")


def free_cluster_cidr() -> ipaddress.IPv4Network:
    """A /22 of 10.250.0.0/16 that no route of /24 or longer on this machine touches."""
    used = used_routes()
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.250.{random.randrange(64) * 4}.0/22")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /22 in 10.250.0.0/16")


def free_24(avoid: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    used = used_routes() + avoid
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.251.{random.randrange(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24 in 10.251.0.0/16")


@dataclass
class Host:
    name: str
    netns: str
    veth: str
    ip: str
    data_dir: Path
    bridge: str
    table: str
    cgroup: str
    process: Process | None = None
    join: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}"]

    def args(self, service_cidr: str) -> list[str]:
        """The global and plugin options of this host's kcore."""
        return [
            *("--bridge-name", self.bridge, "--nft-table", self.table),
            *("--runtime-cgroup-name", self.cgroup, "--service-cidr", service_cidr),
        ]

    def sh(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command in this host's network namespace."""
        return subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, check=check, timeout=60
        )


@dataclass
class Bed:
    hosts: list[Host]
    cluster_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    subnet: ipaddress.IPv4Network
    bridge: str
    join_words: list[str] = field(default_factory=list)

    @property
    def control(self) -> Host:
        return self.hosts[0]

    @property
    def kubeconfig(self) -> Path:
        return self.control.data_dir / "admin.kubeconfig"

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60):
        return kubectl(
            self.kubeconfig, *args, prefix=self.control.prefix, input=input, timeout=timeout
        )

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        done = self.kubectl(*args, input=input, timeout=timeout)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def apply(self, manifest: dict[str, Any]) -> None:
        self.ok("apply", "-f", "-", input=json.dumps(manifest))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.ok("get", *args, "-o", "json"))

    def pods(self, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["pods", "-l", selector] if selector else ["pods"]
        return self.get_json(*args)["items"]

    def start_join(self, host: Host) -> Process:
        """``kcore join`` on ``host`` with the command host1 printed."""
        host.process = start(
            host.data_dir,
            [*host.args(str(self.service_cidr)), *self.join_words, "--node-name", host.name,
             "--node-ip", host.ip],
            prefix=host.prefix,
            name=f"join-{secrets.token_hex(2)}",
        )  # fmt: skip
        return host.process

    def run_join(self, host: Host, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
        """A ``kcore join`` with ``args`` that is expected to end (a refused one)."""
        return run(
            data_dir, [*host.args(str(self.service_cidr)), "join", *args], prefix=host.prefix
        )


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: {last!r}")


def ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def _make_host_network(bed: Bed) -> None:
    sh("ip", "link", "add", bed.bridge, "type", "bridge")
    sh("ip", "link", "set", bed.bridge, "up")
    for host in bed.hosts:
        sh("ip", "netns", "add", host.netns)
        sh("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
           "netns", host.netns)  # fmt: skip
        sh("ip", "link", "set", host.veth, "master", bed.bridge, "up")
        sh(
            "ip",
            "-n",
            host.netns,
            "addr",
            "add",
            f"{host.ip}/{bed.subnet.prefixlen}",
            "dev",
            "eth0",
        )
        sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", host.netns, "link", "set", "lo", "up")


def _teardown(bed: Bed) -> None:
    from kcore.plugins.runtime_linux.cgroups import CgroupDriver

    for host in reversed(bed.hosts):
        if host.process is not None:
            with contextlib.suppress(Exception):
                host.process.stop()
    for host in bed.hosts:
        cleanup_runtime_dir(host.data_dir)
        unmount_below(host.data_dir)
        with contextlib.suppress(Exception):
            remove_cgroup_root(CgroupDriver.detect(root_name=host.cgroup).parent_paths())
    for host in bed.hosts:
        sh("ip", "netns", "del", host.netns, check=False)
        sh("ip", "link", "del", host.veth, check=False)
    sh("ip", "link", "del", bed.bridge, check=False)


@pytest.fixture(scope="package")
def bed(tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path) -> Iterator[Bed]:
    h = secrets.token_hex(4)
    cluster = free_cluster_cidr()
    subnet = free_24([])
    service = free_24([subnet])
    hosts = []
    for i in (1, 2, 3):
        tag = secrets.token_hex(4)
        data_dir = tmp_path_factory.mktemp(f"host{i}")
        hosts.append(
            Host(
                name=f"host{i}-{h[:4]}",
                netns=f"kctest-{h}-host{i}",
                veth=f"kc{h}{i}",
                ip=str(subnet.network_address + 10 + i),
                data_dir=data_dir,
                bridge=f"kc{tag}",
                table=f"kctest_{tag}",
                cgroup=f"kcore-test-{tag}",
            )
        )
    bed = Bed(hosts, cluster, service, subnet, f"kc{h}")
    try:
        _make_host_network(bed)
        for host in hosts:
            ImageStore(host.data_dir / "images").import_path(busybox_layout)
        control = bed.control
        control.process = start(
            control.data_dir,
            [
                *control.args(str(service)),
                "--node-monitor-grace-period", GRACE_PERIOD,
                "--pod-eviction-timeout", EVICTION_TIMEOUT,
                "init", "--advertise-address", control.ip, "--node-name", control.name,
                "--pod-network-cidr", str(cluster),
            ],
            prefix=control.prefix,
            name="init",
        )  # fmt: skip
        bed.join_words = join_args(control.process.wait_line("kcore join ", timeout=120))
        for host in hosts[1:]:
            bed.start_join(host)
        for host in hosts[1:]:
            assert host.process is not None
            host.process.wait_line("kcore node agent running", timeout=120)

        def all_ready():
            done = bed.kubectl("get", "nodes", "-o", "json")
            if done.returncode != 0:
                return None
            nodes = json.loads(done.stdout)["items"]
            return len(nodes) == 3 and all(ready(n) for n in nodes) and nodes

        wait_for(all_ready, timeout=120, what="three Ready nodes")
        yield bed
    finally:
        _teardown(bed)


def pod(name: str, node: str, command: str, **spec: Any) -> dict[str, Any]:
    """A busybox pod bound to ``node`` running ``sh -c command``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", command],
                }
            ],
            **spec,
        },
    }


def fetch_script(url: str, tries: int = 30) -> str:
    """Shell that fetches ``url`` (each try cut at 3 s), exiting 0 on the first success."""
    return (
        f"for i in $(seq {tries}); do "
        f"if timeout 3 wget -qO- {url}; then exit 0; fi; sleep 1; done; exit 1"
    )
