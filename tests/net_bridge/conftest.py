"""Fixtures for net_bridge on the real kernel: network namespaces ``kc-<hex>``, a bridge
``kc<8 hex>``, an nft table ``kctest_<8 hex>``, a free random /24 of 10.250.0.0/16 as the
cluster and pod CIDR and one of 10.251.0.0/16 as the service CIDR, all unique to the test
and removed afterwards (also when the test fails, and also when the plugin's own
``remove_all`` fails). Servers started in pods are stopped by their pids."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hostnames import Names, new_names, remove_host_objects, sh

from kcore.settings import Settings

ECHO_SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    with c:
        data = c.recv(1024)
        c.sendall(b"echo:" + data + b" from:" + peer[0].encode())
"""

ECHO_CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
    c.sendall(b"hello")
    print(c.recv(1024).decode())
"""


@pytest.fixture(scope="module", autouse=True)
def keep_ip_forward() -> Iterator[None]:
    """The plugin turns net.ipv4.ip_forward on (and leaves it on, by design); the tests
    put it back as they found it."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    before = path.read_text()
    yield
    if path.read_text() != before:
        path.write_text(before)


@pytest.fixture
def make_names() -> Iterator[Callable[..., Names]]:
    """Make a fresh set of names; everything made with them is removed at the end."""
    made: list[Names] = []

    def make(pod_prefix: int = 24) -> Names:
        names = new_names(pod_prefix)
        made.append(names)
        return names

    yield make
    for names in made:
        remove_host_objects(names)


@dataclass
class Namespaces:
    made: list[str] = field(default_factory=list)

    def make(self) -> str:
        name = f"kc-{secrets.token_hex(6)}"
        sh("ip", "netns", "add", name)
        self.made.append(name)
        return f"/run/netns/{name}"

    def delete(self, path: str) -> None:
        name = Path(path).name
        sh("ip", "netns", "del", name, check=False)
        if name in self.made:
            self.made.remove(name)


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    """``netns.make()`` -> the path of a new network namespace; all deleted at the end."""
    spaces = Namespaces()
    yield spaces
    for name in list(spaces.made):
        sh("ip", "netns", "del", name, check=False)


@dataclass
class Processes:
    pids: list[subprocess.Popen] = field(default_factory=list)

    def echo_server(self, netns_path: str, port: int) -> subprocess.Popen:
        proc = subprocess.Popen(
            ["nsenter", f"--net={netns_path}", sys.executable, "-c", ECHO_SERVER, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pids.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    for proc in procs.pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def echo_from_netns(netns_path: str, host: str, port: int) -> str:
    done = sh("nsenter", f"--net={netns_path}", sys.executable, "-c", ECHO_CLIENT, host, str(port))
    return done.stdout.strip()


async def echo_from_node(host: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(b"hello")
        await writer.drain()
        return (await asyncio.wait_for(reader.read(1024), 5)).decode()
    finally:
        writer.close()


def ping(netns_path: str | None, address: str) -> bool:
    cmd = ["ping", "-c1", "-W2", address]
    if netns_path:
        cmd = ["nsenter", f"--net={netns_path}", *cmd]
    return sh(*cmd, check=False).returncode == 0


@pytest.fixture
async def plugin_factory(
    tmp_path: Path, make_names: Callable[..., Names]
) -> AsyncIterator[Callable[..., object]]:
    """``await plugin_factory(names=None, data_dir=None, **options)`` -> a BridgeNetwork
    (new names unless given); every plugin made is removed with ``remove_all``."""
    from kcore.plugins.net_bridge import create_network

    made = []

    async def make(names: Names | None = None, data_dir: Path | None = None, **options: str):
        names = names or make_names()
        data_dir = data_dir or tmp_path / f"data-{len(made)}"
        data_dir.mkdir(exist_ok=True)
        net = await create_network(Settings(data_dir=data_dir, options=names.options(**options)))
        net.names = names
        made.append(net)
        return net

    yield make
    for net in made:
        if not net._closed:
            with contextlib.suppress(Exception):
                await net.remove_all()


@pytest.fixture
async def net(plugin_factory):
    return await plugin_factory()
