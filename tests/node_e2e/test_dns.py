"""Cluster DNS end to end: the real daemon (its default plugins, dns among them) on
runtime_linux and net_bridge; busybox pods resolve Services through the DNS server on the
node's bridge address. Names outside the cluster go to a fake upstream on 127.0.0.1 (set
with ``--dns-upstream``), never to the machine's resolvers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcore.plugins.dns import wire

from .conftest import Node, phase_is, pod_manifest, running_node

UPSTREAM_NAME = "www.upstream.test"
UPSTREAM_ADDRESS = "192.0.2.10"


class ThreadedUpstream:
    """A fake resolver on 127.0.0.1 (UDP) in a thread: A for ``UPSTREAM_NAME``, NXDOMAIN
    for everything else; it records the names it was asked."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
                query = wire.decode(data)
            except (TimeoutError, wire.FormatError):
                continue
            name = query.questions[0].name.lower() if query.questions else ""
            self.seen.append(name)
            reply = query.reply(wire.NOERROR)
            if name == UPSTREAM_NAME:
                if query.questions[0].qtype == wire.A:
                    reply.answers = [wire.Record(name, wire.A, UPSTREAM_ADDRESS, ttl=30)]
            else:
                reply.rcode = wire.NXDOMAIN
            self.sock.sendto(reply.encode(), addr)

    def __enter__(self) -> ThreadedUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedUpstream]:
    with ThreadedUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def dns_node(
    tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path, upstream: ThreadedUpstream
) -> Iterator[Node]:
    """conftest's ``node``, plus ``--dns-upstream`` pointing at the fake upstream."""
    upstream_arg = ("--dns-upstream", f"127.0.0.1:{upstream.port}")
    with running_node(tmp_path_factory.mktemp("kcore-dns"), busybox_layout, *upstream_arg) as n:
        yield n


def sleeper(name: str, labels: dict[str, str] | None = None, **spec) -> dict:
    manifest = pod_manifest(name, [{"name": "main", "command": ["sleep", "3600"]}], **spec)
    manifest["metadata"]["labels"] = labels or {}
    return manifest


@pytest.fixture(scope="module")
def cluster(dns_node: Node) -> dict[str, str]:
    """A ClusterIP Service ``web``, a headless Service ``db`` with the pod ``db-0`` behind
    it (hostname db-0, subdomain db), and a ``client`` pod; their addresses."""
    node = dns_node
    ports = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]
    for name, extra in (("web", {}), ("db", {"clusterIP": "None"})):
        node.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": ports, **extra},
            }
        )
    node.apply(sleeper("db-0", {"app": "db"}, hostname="db-0", subdomain="db"))
    node.apply(sleeper("client"))
    running = phase_is("Running")
    db = node.wait_pod("db-0", running, timeout=90, what="Running")
    node.wait_pod("client", running, timeout=90, what="Running")
    web = node.get("service", "web")
    assert web is not None
    return {"web": web["spec"]["clusterIP"], "db-0": db["status"]["podIP"]}


def nslookup(node: Node, *args: str, expect: str, timeout: float = 30) -> str:
    """``busybox nslookup ARGS`` in the client pod until its output holds ``expect``.
    (busybox applies the search list only to names without a dot.)"""
    deadline = time.monotonic() + timeout
    while True:
        done = node.kubectl("exec", "client", "--", "busybox", "nslookup", *args)
        if expect in done.stdout:
            return done.stdout
        if time.monotonic() > deadline:
            raise AssertionError(
                f"nslookup {' '.join(args)}: {expect!r} not in\n{done.stdout}{done.stderr}"
            )
        time.sleep(0.5)


def test_pod_resolv_conf_names_the_node_dns(dns_node: Node, cluster):
    gateway = str(dns_node.names.pod.network_address + 1)
    text = dns_node.ok("exec", "client", "--", "cat", "/etc/resolv.conf")
    lines = [line.split() for line in text.splitlines() if line.strip()]
    assert ["nameserver", gateway] in lines
    assert [line for line in lines if line[0] == "nameserver"] == [["nameserver", gateway]]
    search = next(line for line in lines if line[0] == "search")
    assert search[1:4] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert ["options", "ndots:5"] in lines


def test_service_names_resolve_to_the_cluster_ip(dns_node: Node, cluster):
    ip = cluster["web"]
    assert ip and ip != "None"
    out = nslookup(dns_node, "web.default.svc.cluster.local", expect=f"Address: {ip}")
    assert "web.default.svc.cluster.local" in out
    nslookup(dns_node, "-type=a", "web", expect=f"Address: {ip}")
    nslookup(
        dns_node,
        "-type=srv",
        "_http._tcp.web.default.svc.cluster.local",
        expect="80 web.default.svc.cluster.local",
    )


def test_headless_service_resolves_to_pod_addresses(dns_node: Node, cluster):
    pod_ip = cluster["db-0"]
    nslookup(dns_node, "-type=a", "db.default.svc.cluster.local", expect=f"Address: {pod_ip}")
    nslookup(dns_node, "-type=a", "db", expect=f"Address: {pod_ip}")
    nslookup(dns_node, "-type=a", "db-0.db.default.svc.cluster.local", expect=f"Address: {pod_ip}")
    dashed = pod_ip.replace(".", "-")
    nslookup(
        dns_node, "-type=a", f"{dashed}.default.pod.cluster.local", expect=f"Address: {pod_ip}"
    )


def test_other_names_are_forwarded_upstream(dns_node: Node, cluster, upstream):
    nslookup(dns_node, "-type=a", f"{UPSTREAM_NAME}.", expect=f"Address: {UPSTREAM_ADDRESS}")
    assert UPSTREAM_NAME in upstream.seen
    done = dns_node.kubectl("exec", "client", "--", "busybox", "nslookup", "-type=a", "nope.test.")
    assert "NXDOMAIN" in done.stdout + done.stderr
