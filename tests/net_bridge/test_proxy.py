"""The service proxy (plugins/net_bridge/proxy.py): the rules it derives from Services and
EndpointSlices (no root needed), and those rules on a real kernel.

The real tests build a node of their own: a network namespace ``kc-<hex>`` acting as the
node, with a bridge, three "pod" namespaces serving HTTP (busybox httpd) and TCP/UDP echo,
a client pod, and an "outside" namespace on a second link of the node, standing for another
machine. The proxy's table and route go into the node namespace only; nothing touches the
host's own nft ruleset or routes, and all of it goes with the namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hostnames import free_subnet, sh

from kcore.plugins.net_bridge.proxy import (
    DEFAULT_AFFINITY_TIMEOUT,
    ROUTE_METRIC,
    Endpoint,
    ProxyConfig,
    ProxyTable,
    ServicePortRules,
    ServiceProxy,
    parse_affinity,
    ruleset,
    service_ports,
)

BUSYBOX = "/bin/busybox"
HTTP, ECHO, UDP = 8080, 9000, 9053


# -- objects as the API serves them ----------------------------------------------------------


def service(
    name: str,
    cluster_ip: str | None,
    ports: list[dict],
    *,
    namespace: str = "default",
    type: str = "ClusterIP",
    **spec: object,
) -> dict:
    body = {"type": type, "ports": ports, **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
        body["clusterIPs"] = [cluster_ip]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def endpoint_slice(
    service_name: str,
    ports: list[dict],
    addresses: list[str],
    *,
    namespace: str = "default",
    not_ready: tuple[str, ...] = (),
    name: str | None = None,
    address_type: str = "IPv4",
) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-{secrets.token_hex(3)}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": address_type,
        "ports": ports,
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {
                    "ready": a not in not_ready,
                    "serving": a not in not_ready,
                    "terminating": False,
                },
            }
            for a in addresses
        ],
    }


CONFIG = ProxyConfig(
    table="kctest_unit_svc",
    bridge="kcunit",
    pod_cidr=IPv4Network("10.250.7.0/24"),
    service_cidr=IPv4Network("10.251.7.0/24"),
    gateway=IPv4Address("10.250.7.1"),
)


# -- rule generation (no root) -------------------------------------------------------------------


def test_only_services_with_a_cluster_ip_are_programmed():
    services = [
        service("web", "10.251.7.10", [{"port": 80}]),
        service("headless", "None", [{"port": 80}]),
        service("unset", None, [{"port": 80}]),
        service("ext", None, [{"port": 80}], type="ExternalName", externalName="example.com"),
        service("v6", "fd00::10", [{"port": 80}]),
    ]
    assert [p.name for p in service_ports(services, [])] == ["web"]


def test_ready_endpoints_matched_by_port_name_and_protocol():
    services = [
        service(
            "web",
            "10.251.7.10",
            [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        )
    ]
    slices = [
        endpoint_slice(
            "web",
            [
                {"name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 5353, "protocol": "UDP"},
            ],
            ["10.250.7.2", "10.250.7.3", "10.250.7.4"],
            not_ready=("10.250.7.4",),
        ),
        # Named targetPorts resolve per pod: a second slice, another port number.
        endpoint_slice("web", [{"name": "http", "port": 8081}], ["10.250.7.5"]),
        endpoint_slice("web", [{"name": "http", "port": 80}], ["10.250.7.6"], namespace="other"),
        endpoint_slice("other", [{"name": "http", "port": 80}], ["10.250.7.7"]),
        endpoint_slice("web", [{"name": "http", "port": 80}], ["fd00::1"], address_type="IPv6"),
    ]
    ports = {p.port_name: p for p in service_ports(services, slices)}
    assert ports["http"].protocol == "tcp" and ports["http"].port == 80
    assert ports["http"].endpoints == (
        Endpoint("10.250.7.2", 8080),
        Endpoint("10.250.7.3", 8080),
        Endpoint("10.250.7.5", 8081),
    )
    assert ports["dns"].protocol == "udp"
    assert ports["dns"].endpoints == (Endpoint("10.250.7.2", 5353), Endpoint("10.250.7.3", 5353))
    assert ports["dns-tcp"].endpoints == ()


def test_an_endpoint_without_a_ready_condition_counts_as_ready_and_duplicates_merge():
    services = [service("web", "10.251.7.10", [{"port": 80}])]
    one = endpoint_slice("web", [{"port": 80}], ["10.250.7.2"])
    one["endpoints"][0]["conditions"] = {}
    two = endpoint_slice("web", [{"port": 80}], ["10.250.7.2"])
    assert service_ports(services, [one, two])[0].endpoints == (Endpoint("10.250.7.2", 80),)


def test_node_ports_and_affinity():
    services = [
        service("np", "10.251.7.10", [{"port": 80, "nodePort": 30080}], type="NodePort"),
        service("lb", "10.251.7.11", [{"port": 80, "nodePort": 30081}], type="LoadBalancer"),
        service("plain", "10.251.7.12", [{"port": 80, "nodePort": 30082}]),
        service("sticky", "10.251.7.13", [{"port": 80}], sessionAffinity="ClientIP"),
        service(
            "short",
            "10.251.7.14",
            [{"port": 80}],
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ),
    ]
    ports = {p.name: p for p in service_ports(services, [])}
    assert (ports["np"].node_port, ports["lb"].node_port, ports["plain"].node_port) == (
        30080,
        30081,
        None,
    )
    assert ports["sticky"].affinity_timeout == DEFAULT_AFFINITY_TIMEOUT
    assert ports["short"].affinity_timeout == 60
    assert ports["np"].affinity_timeout is None


def rules_for(*ports: ServicePortRules, affinity=None) -> str:
    return ruleset(CONFIG, list(ports), affinity)


def web(endpoints: tuple[Endpoint, ...], **fields: object) -> ServicePortRules:
    return ServicePortRules(
        namespace="default",
        name="web",
        port_name="http",
        protocol="tcp",
        port=80,
        cluster_ips=("10.251.7.10",),
        endpoints=endpoints,
        **fields,
    )


def test_the_table_is_replaced_whole_in_one_script():
    script = rules_for(web((Endpoint("10.250.7.2", 8080),)))
    lines = script.splitlines()
    assert lines[:3] == [
        "table ip kctest_unit_svc { }",
        "delete table ip kctest_unit_svc",
        "table ip kctest_unit_svc {",
    ]
    assert "flush" not in script


def test_random_choice_over_the_endpoints_and_dnat():
    eps = (Endpoint("10.0.9.9", 80), Endpoint("10.250.7.2", 8080), Endpoint("10.250.7.3", 8080))
    script = rules_for(web(eps))
    chain = "service-default/web/tcp/http"
    assert f"10.251.7.10 . tcp . 80 : goto {chain}" in script
    chain_text = script.split(f"  chain {chain} {{")[1].split("\n  }")[0]
    assert chain_text.splitlines()[-3:] == [
        "    numgen random mod 3 == 0 goto endpoint-default/web/tcp/http__10.0.9.9/80",
        "    numgen random mod 2 == 0 goto endpoint-default/web/tcp/http__10.250.7.2/8080",
        "    goto endpoint-default/web/tcp/http__10.250.7.3/8080",
    ]
    assert "meta l4proto tcp dnat to 10.250.7.2:8080" in script
    # Local endpoints: masquerade traffic from the pod CIDR (same bridge, hairpin); a remote
    # one only its own (hairpin).
    assert "ip saddr 10.250.7.0/24 jump mark-for-masquerade" in script
    assert "ip saddr 10.0.9.9/32 jump mark-for-masquerade" in script
    one = rules_for(web(eps[1:2]))
    assert "numgen" not in one
    assert "goto endpoint-default/web/tcp/http__10.250.7.2/8080" in one


def test_without_endpoints_a_service_has_no_dnat_and_is_rejected():
    script = rules_for(web((), node_port=30080))
    assert "service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }" in script
    assert "set cluster-ips { type ipv4_addr; elements = { 10.251.7.10 }; }" in script
    assert "elements = { tcp . 30080 : goto reject-chain }" in script  # service-nodeports
    assert "chain service-" not in script
    services = script.split("  chain services {")[1].split("\n  }")[0]
    assert services.splitlines()[-2:] == [
        "    ip daddr 10.251.7.0/24 goto reject-chain",
        "    ip daddr @cluster-ips goto reject-chain",
    ]
    assert "meta l4proto tcp reject with tcp reset" in script


def test_node_ports_masquerade_traffic_from_outside_the_pod_cidr():
    script = rules_for(web((Endpoint("10.250.7.2", 8080),), node_port=30080))
    assert "tcp . 30080 : goto external-default/web/tcp/http" in script
    external = script.split("chain external-default/web/tcp/http {")[1].split("}")[0]
    assert "ip saddr != 10.250.7.0/24 jump mark-for-masquerade" in external
    assert "goto service-default/web/tcp/http" in external
    assert "fib daddr type local meta l4proto . th dport vmap @service-nodeports" in script


def test_affinity_sets_are_checked_first_and_refilled():
    eps = (Endpoint("10.250.7.2", 8080), Endpoint("10.250.7.3", 8080))
    name = "affinity-default/web/tcp/http__10.250.7.2/8080"
    script = rules_for(
        web(eps, affinity_timeout=600),
        affinity={name: [("10.250.7.9", 99.7)], "affinity-gone": [("1.2.3.4", 5.0)]},
    )
    chain = script.split("chain service-default/web/tcp/http {")[1].split("\n  }")[0]
    assert chain.index(f"ip saddr @{name} goto") < chain.index("numgen random")
    assert f"set {name} {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}" in script
    assert f"update @{name} {{ ip saddr }}" in script
    assert (
        f"add element ip kctest_unit_svc {name} {{ 10.250.7.9 timeout 600s expires 99s }}" in script
    )
    assert "affinity-gone" not in script


def test_parse_affinity_reads_nft_listings():
    listing = (
        "table ip t {\n"
        "\tset affinity-default/web/tcp/__10.250.7.2/80 {\n"
        "\t\ttype ipv4_addr\n"
        "\t\tsize 65535\n"
        "\t\tflags dynamic,timeout\n"
        "\t\ttimeout 3h\n"
        "\t\telements = { 10.0.0.8 timeout 1h expires 9m59s992ms, 10.0.0.9 expires 1d2h,\n"
        "\t\t\t     10.0.0.10 expires 500ms }\n"
        "\t}\n"
        "\tset affinity-default/web/tcp/__10.250.7.3/80 {\n"
        "\t\ttype ipv4_addr\n"
        "\t\tflags dynamic,timeout\n"
        "\t\ttimeout 3h\n"
        "\t}\n"
        "\tset cluster-ips {\n"
        "\t\ttype ipv4_addr\n"
        "\t\telements = { 10.251.0.1 }\n"
        "\t}\n"
        "}\n"
    )
    found = parse_affinity(listing)
    assert list(found) == ["affinity-default/web/tcp/__10.250.7.2/80"]
    elements = found["affinity-default/web/tcp/__10.250.7.2/80"]
    assert [e[0] for e in elements] == ["10.0.0.8", "10.0.0.9", "10.0.0.10"]
    assert [e[1] for e in elements] == pytest.approx([599.992, 93600.0, 0.5])


def test_net_bridge_contributes_the_proxy():
    from kcore.interfaces import NodeService
    from kcore.plugins import net_bridge

    services = {s.name: s for s in net_bridge.kcore_node_services(None)}
    assert isinstance(services["service-proxy"], NodeService)
    assert isinstance(services["service-proxy"], ServiceProxy)


def test_the_table_is_named_after_the_plugin_table():
    from kcore.plugins.net_bridge.config import BridgeConfig

    bridge = BridgeConfig.from_options({"nft_table": "kcore", "bridge_name": "kcore0"})
    config = ProxyConfig.from_bridge(bridge)
    assert (config.table, config.bridge, str(config.gateway)) == (
        "kcore_svc",
        "kcore0",
        "10.244.0.1",
    )
    assert config.service_cidr == IPv4Network("10.96.0.0/12")


# -- a node of our own ----------------------------------------------------------------------------

SERVER = r"""
import socket, sys, threading
name, tcp_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", tcp_port)); t.listen(128)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", udp_port))
def udp():
    while True:
        data, peer = u.recvfrom(512)
        u.sendto(f"{name} from:{peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    with c:
        c.recv(64)
        c.sendall(f"{name} from:{peer[0]}".encode())
"""

CLIENT = r"""
import json, socket, sys, time
kind, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
out = []
def once():
    started = time.monotonic()
    try:
        if kind == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.connect((host, port)); s.send(b"hi"); body = s.recv(512).decode()
        else:
            s = socket.create_connection((host, port), timeout=2)
            if kind == "http":
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            else:
                s.sendall(b"hi")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            body = data.decode().split("\r\n\r\n")[-1].strip()
        s.close()
        return {"ok": body, "s": time.monotonic() - started}
    except OSError as exc:
        return {"error": type(exc).__name__, "s": time.monotonic() - started}
if seconds:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(once())
else:
    out = [once() for _ in range(count)]
print(json.dumps(out))
"""


@dataclass
class Pod:
    name: str
    netns: str
    ip: str


@dataclass
class Node:
    """A node namespace with a bridge, pods behind it and an outside machine."""

    netns: str
    config: ProxyConfig
    outside_netns: str
    node_outside_ip: str = "192.168.77.1"
    pods: dict[str, Pod] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    spaces: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"

    def ip(self, *args: str, netns: str | None = None) -> str:
        return sh("ip", "-n", netns or self.netns, *args).stdout

    def nft(self, *args: str) -> str:
        return sh("ip", "netns", "exec", self.netns, "nft", *args).stdout

    def add_netns(self) -> str:
        name = f"kc-{secrets.token_hex(6)}"
        sh("ip", "netns", "add", name)
        self.spaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def add_pod(self, name: str, serve: bool = True, tmp: Path | None = None) -> Pod:
        netns = self.add_netns()
        address = str(self.config.pod_cidr.network_address + 2 + len(self.pods))
        veth = f"v{secrets.token_hex(5)}"
        self.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self.ip("link", "set", veth, "master", self.config.bridge, "up")
        self.ip("link", "set", veth, "type", "bridge_slave", "hairpin", "on")  # as net_bridge
        prefix = self.config.pod_cidr.prefixlen
        self.ip("addr", "add", f"{address}/{prefix}", "dev", "eth0", netns=netns)
        self.ip("link", "set", "eth0", "up", netns=netns)
        self.ip("route", "add", "default", "via", str(self.config.gateway), netns=netns)
        pod = self.pods[name] = Pod(name, netns, address)
        if serve:
            assert tmp is not None
            root = tmp / name
            root.mkdir()
            (root / "index.html").write_text(name)
            self.spawn(netns, BUSYBOX, "httpd", "-f", "-p", str(HTTP), "-h", str(root))
            proc = self.spawn(
                netns, sys.executable, "-c", SERVER, name, str(ECHO), str(UDP), stdout=True
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return pod

    def spawn(self, netns: str, *cmd: str, stdout: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", *cmd],
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def client(self, netns: str, kind: str, host: str, port: int, count: int = 1) -> list[dict]:
        done = sh("nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", CLIENT, kind, host,
                  str(port), str(count))  # fmt: skip
        return json.loads(done.stdout)

    def loop_client(self, netns: str, kind: str, host: str, port: int, seconds: float):
        return self.spawn(
            netns, sys.executable, "-c", CLIENT, kind, host, str(port), "0", str(seconds),
            stdout=True,
        )  # fmt: skip

    def wait_http(self, pod: Pod) -> None:
        deadline = time.monotonic() + 10
        while "ok" not in self.client(self.netns, "http", pod.ip, HTTP)[0]:
            assert time.monotonic() < deadline, f"httpd in {pod.name} does not answer"
            time.sleep(0.05)

    def remove(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for name in reversed(self.spaces):
            sh("ip", "netns", "del", name, check=False)


def make_node(tmp: Path) -> Node:
    h = secrets.token_hex(4)
    pod_cidr, service_cidr = free_subnet(250), free_subnet(251)
    config = ProxyConfig(
        table=f"kctest_{h}_svc",
        bridge=f"kc{h}",
        pod_cidr=pod_cidr,
        service_cidr=service_cidr,
        gateway=pod_cidr.network_address + 1,
    )
    node = Node(netns="", config=config, outside_netns="")
    try:
        node.netns = node.add_netns()
        run = node.ip
        run("link", "add", config.bridge, "type", "bridge")
        run("addr", "add", f"{config.gateway}/{pod_cidr.prefixlen}", "dev", config.bridge)
        run("link", "set", config.bridge, "up")
        run("route", "add", "unreachable", str(service_cidr), "metric", "4242")
        for key in ("net.ipv4.ip_forward=1", f"net.ipv4.conf.{config.bridge}.route_localnet=1"):
            sh("ip", "netns", "exec", node.netns, "sysctl", "-qw", key)
        node.outside_netns = node.add_netns()
        run("link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns",
            node.outside_netns)  # fmt: skip
        run("addr", "add", f"{node.node_outside_ip}/24", "dev", "ext0")
        run("link", "set", "ext0", "up")
        run("addr", "add", "192.168.77.2/24", "dev", "eth0", netns=node.outside_netns)
        run("link", "set", "eth0", "up", netns=node.outside_netns)
        run("route", "add", "default", "via", node.node_outside_ip, netns=node.outside_netns)
        for name in ("a", "b", "c"):
            node.add_pod(name, tmp=tmp)
        node.add_pod("client", serve=False)
        for name in ("a", "b", "c"):
            node.wait_http(node.pods[name])
    except BaseException:
        node.remove()
        raise
    return node


pytestmark_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = make_node(tmp_path_factory.mktemp("proxy-node"))
    try:
        yield n
    finally:
        n.remove()


@pytest.fixture
async def table(node: Node) -> AsyncIterator[ProxyTable]:
    t = ProxyTable(node.config, netns=node.path)
    try:
        yield t
    finally:
        with contextlib.suppress(Exception):
            await t.remove()
        await t.close()


class Cluster:
    """Services and slices for one test, with cluster IPs from the node's service range."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.services: list[dict] = []
        self.slices: list[dict] = []
        self._next = 10

    def cluster_ip(self) -> str:
        self._next += 1
        return str(self.node.config.service_cidr.network_address + self._next)

    def add(
        self,
        name: str,
        pods: list[str],
        *,
        protocol: str = "TCP",
        target: int = HTTP,
        not_ready: tuple[str, ...] = (),
        **spec: object,
    ) -> str:
        ip = self.cluster_ip()
        port: dict = {"name": "p", "port": 80, "protocol": protocol}
        if "nodePort" in spec:
            port["nodePort"] = spec.pop("nodePort")
        self.services.append(service(name, ip, [port], **spec))
        addresses = [self.node.pods[p].ip for p in pods]
        ready = tuple(self.node.pods[p].ip for p in not_ready)
        self.slices.append(
            endpoint_slice(
                name,
                [{"name": "p", "port": target, "protocol": protocol}],
                addresses,
                not_ready=ready,
                name=name,
            )
        )
        return ip

    def set_endpoints(self, name: str, pods: list[str]) -> None:
        for s in self.slices:
            if s["metadata"]["name"] == name:
                s["endpoints"] = endpoint_slice(name, [], [self.node.pods[p].ip for p in pods])[
                    "endpoints"
                ]

    def ports(self) -> list[ServicePortRules]:
        return service_ports(self.services, self.slices)


def bodies(results: list[dict]) -> list[str]:
    assert all("ok" in r for r in results), results
    return [r["ok"].split(" from:")[0] for r in results]


def peers(results: list[dict]) -> set[str]:
    assert all("ok" in r for r in results), results
    return {r["ok"].split(" from:")[1] for r in results}


@pytestmark_root
async def test_net_bridge_turns_hairpin_mode_on_for_pod_ports(net, netns):
    """With br_netfilter loaded (as on most hosts), a pod's packet DNAT-ed back to the same
    pod is bridged out of the port it came in by; only hairpin mode lets it through."""
    await net.setup_pod("hairpin-pod", netns.make(), {"name": "p", "port_mappings": []})
    out = sh("ip", "-d", "-j", "link", "show", net.config.veth_name("hairpin-pod")).stdout
    assert json.loads(out)[0]["linkinfo"]["info_slave_data"]["hairpin"] is True


@pytestmark_root
async def test_cluster_ip_reaches_every_ready_endpoint_from_pods_and_the_node(node, table):
    cluster = Cluster(node)
    ip = cluster.add("web", ["a", "b", "c"], not_ready=("c",))
    await table.apply(cluster.ports())
    seen = bodies(node.client(node.pods["client"].netns, "http", ip, 80, count=40))
    assert set(seen) == {"a", "b"}, seen
    # From the node itself, through the route the proxy adds for the service range.
    seen = bodies(node.client(node.netns, "http", ip, 80, count=20))
    assert set(seen) == {"a", "b"}


@pytestmark_root
async def test_udp_and_pod_to_pod_on_the_bridge_is_masqueraded(node, table):
    cluster = Cluster(node)
    udp = cluster.add("dns", ["a", "b", "c"], protocol="UDP", target=UDP)
    echo = cluster.add("echo", ["a", "b", "c"], target=ECHO)
    await table.apply(cluster.ports())
    results = node.client(node.pods["client"].netns, "udp", udp, 80, count=40)
    assert set(bodies(results)) == {"a", "b", "c"}
    results = node.client(node.pods["client"].netns, "tcp", echo, 80, count=10)
    # The endpoint answers the gateway, so the reply goes back through the node's NAT.
    assert peers(results) == {str(node.config.gateway)}


@pytestmark_root
async def test_node_ports_from_the_node_pods_and_another_machine(node, table):
    cluster = Cluster(node)
    cluster.add("np", ["a", "b"], type="NodePort", nodePort=30111, target=ECHO)
    await table.apply(cluster.ports())
    gateway = str(node.config.gateway)
    for netns, address in [
        (node.netns, gateway),
        (node.netns, "127.0.0.1"),
        (node.netns, node.node_outside_ip),
        (node.pods["client"].netns, gateway),
        (node.outside_netns, node.node_outside_ip),
    ]:
        results = node.client(netns, "tcp", address, 30111, count=12)
        assert set(bodies(results)) <= {"a", "b"}, (netns, address)
        # Masqueraded: from outside the pod CIDR and from the same bridge alike.
        assert peers(results) == {gateway}, (netns, address, results)
    results = node.client(node.outside_netns, "tcp", node.node_outside_ip, 30111, count=30)
    assert set(bodies(results)) == {"a", "b"}


@pytestmark_root
async def test_client_ip_affinity_sticks_across_syncs(node, table):
    cluster = Cluster(node)
    ip = cluster.add("sticky", ["a", "b", "c"], sessionAffinity="ClientIP")
    await table.apply(cluster.ports())
    client = node.pods["client"]
    first = bodies(node.client(client.netns, "http", ip, 80, count=15))
    assert len(set(first)) == 1, first
    chosen = first[0]
    listing = node.nft("list", "sets", "table", "ip", node.config.table)
    assert (
        client.ip
        in parse_affinity(listing)[f"affinity-default/sticky/tcp/p__{node.pods[chosen].ip}/{HTTP}"][
            0
        ]
    )
    # A sync for another change keeps the affinity.
    cluster.add("other", ["a"])
    await table.apply(cluster.ports())
    assert set(bodies(node.client(client.netns, "http", ip, 80, count=10))) == {chosen}
    # Other clients are spread as usual, each sticking to its own.
    from_node = bodies(node.client(node.netns, "http", ip, 80, count=10))
    assert len(set(from_node)) == 1


@pytestmark_root
async def test_without_endpoints_traffic_is_refused_at_once(node, table):
    cluster = Cluster(node)
    empty = cluster.add("empty", [], type="NodePort", nodePort=30112)
    udp = cluster.add("empty-udp", [], protocol="UDP")
    served = cluster.add("served", ["a"])
    await table.apply(cluster.ports())
    client = node.pods["client"].netns
    for netns, kind, host, port in [
        (client, "http", empty, 80),
        (node.netns, "http", empty, 80),
        (client, "udp", udp, 80),
        (client, "http", served, 81),  # a port the Service does not have
        (client, "http", str(node.config.service_cidr.network_address + 200), 80),  # no Service
        (node.outside_netns, "http", node.node_outside_ip, 30112),
    ]:
        (result,) = node.client(netns, kind, host, port)
        assert result.get("error") == "ConnectionRefusedError", (netns, host, port, result)
        assert result["s"] < 1.5
    assert bodies(node.client(client, "http", served, 80)) == ["a"]


@pytestmark_root
async def test_hairpin_a_pod_reaches_itself_through_its_service(node, table):
    cluster = Cluster(node)
    ip = cluster.add("self", ["a"], target=ECHO)
    await table.apply(cluster.ports())
    results = node.client(node.pods["a"].netns, "tcp", ip, 80, count=3)
    assert bodies(results) == ["a"] * 3
    assert peers(results) == {str(node.config.gateway)}


@pytestmark_root
async def test_updates_are_atomic_for_a_client_in_a_loop(node, table):
    cluster = Cluster(node)
    ip = cluster.add("web", ["a", "b"])
    for i in range(30):
        cluster.add(f"filler-{i}", ["c"])
    await table.apply(cluster.ports())
    loop = node.loop_client(node.pods["client"].netns, "http", ip, 80, seconds=2.5)
    sets = [["a", "b"], ["b", "c"], ["c"], ["a", "b", "c"], ["a"]]
    started = time.monotonic()
    applied = 0
    while loop.poll() is None and time.monotonic() - started < 2.3:
        cluster.set_endpoints("web", sets[applied % len(sets)])
        await table.apply(cluster.ports())
        applied += 1
        await asyncio.sleep(0.02)
    out, _ = await asyncio.to_thread(loop.communicate, timeout=30)
    results = json.loads(out)
    assert applied >= 10
    assert len(results) >= 20
    failures = [r for r in results if "ok" not in r]
    assert not failures, failures[:5]
    assert set(bodies(results)) == {"a", "b", "c"}


@pytestmark_root
async def test_start_replaces_a_leftover_and_remove_leaves_nothing(node):
    config = node.config
    node.nft("add", "table", "ip", config.table)
    node.nft("add", "chain", "ip", config.table, "leftover")
    t = ProxyTable(config, netns=node.path)
    try:
        cluster = Cluster(node)
        ip = cluster.add("web", ["a"])
        await t.apply(cluster.ports())
        listing = await t.list()
        assert "leftover" not in listing and "service-default/web/tcp/p" in listing
        routes = json.loads(node.ip("-j", "route", "show", str(config.service_cidr)))
        assert [(r.get("type", "unicast"), r.get("dev"), r.get("prefsrc"), r["metric"])
                for r in sorted(routes, key=lambda r: r["metric"])] == [
            ("unicast", config.bridge, str(config.gateway), ROUTE_METRIC),
            ("unreachable", None, None, 4242),
        ]  # fmt: skip
        assert bodies(node.client(node.netns, "http", ip, 80)) == ["a"]
        await t.remove()
        await t.remove()  # idempotent
        assert config.table not in node.nft("list", "tables")
        routes = json.loads(node.ip("-j", "route", "show", str(config.service_cidr)))
        assert [(r.get("type"), r["metric"]) for r in routes] == [("unreachable", 4242)]
        (result,) = node.client(node.netns, "http", ip, 80)
        assert result.get("error") == "OSError"  # EHOSTUNREACH: the unreachable route
        assert bodies(node.client(node.pods["client"].netns, "http", node.pods["a"].ip, HTTP))
    finally:
        with contextlib.suppress(Exception):
            await t.remove()
        await t.close()


@pytestmark_root
async def test_the_service_follows_the_api(node):
    """The node service end to end on an in-process API: informers, coalesced syncs, and
    the table and route gone when it stops."""
    from controllers.helpers import eventually
    from inprocess_api import in_process_api

    from kcore.interfaces import NodeServiceContext

    pods = node.pods
    client = pods["client"].netns

    async def http(count: int = 1) -> list[dict]:
        return await asyncio.to_thread(node.client, client, "http", ip, 80, count)

    async with in_process_api() as (api, _store, _objects):
        # The API server's ClusterIP, when it allocates one; the node's service range is
        # made to hold it (inside the node namespace any range is ours).
        created = await api.create(
            service("web", None, [{"name": "http", "port": 80, "targetPort": "web"}])
        )
        ip = created["spec"].get("clusterIP")
        if not ip:
            created["spec"]["clusterIP"] = ip = "10.96.77.10"
            created["spec"]["clusterIPs"] = [ip]
            await api.update(created)
        config = dataclasses.replace(
            node.config, service_cidr=IPv4Network(f"{ip}/24", strict=False)
        )
        proxy = ServiceProxy(netns=node.path, config=config)
        stop = asyncio.Event()
        ctx = NodeServiceContext(api=api, settings=None, node_name="n1")
        task = asyncio.create_task(proxy.run(ctx, stop))
        try:
            slice_ = endpoint_slice(
                "web", [{"name": "http", "port": HTTP, "protocol": "TCP"}], [pods["a"].ip],
                name="web-1",
            )  # fmt: skip
            await api.create(slice_)

            async def answered_by(*names: str) -> bool:
                results = await http(len(names) * 8)
                return all("ok" in r for r in results) and set(bodies(results)) == set(names)

            await eventually(lambda: answered_by("a"), timeout=10)
            slice_ = await api.get("discovery.k8s.io/v1", "EndpointSlice", "web-1", "default")
            slice_["endpoints"] = endpoint_slice("web", [], [pods["b"].ip, pods["c"].ip])[
                "endpoints"
            ]
            await api.update(slice_)
            await eventually(lambda: answered_by("b", "c"), timeout=10)
            await api.delete("discovery.k8s.io/v1", "EndpointSlice", "web-1", "default")

            async def refused() -> bool:
                return (await http())[0].get("error") == "ConnectionRefusedError"

            await eventually(refused, timeout=10)
            assert proxy.table is not None and proxy.table.syncs >= 3
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        assert config.table not in node.nft("list", "tables")
        assert json.loads(node.ip("-j", "route", "show", str(config.service_cidr))) == []
