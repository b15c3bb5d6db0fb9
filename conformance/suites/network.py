"""The network conformance suite: the CNI-like contract of ``kcore.interfaces.NetworkPlugin``,
checked on real network namespaces with real traffic.

Subclass :class:`NetworkConformance` in a ``test_*.py`` file and provide the plugin under
test through the ``network_factory`` fixture. kcore's pytest plugin builds it from
``--kcore-plugin NAME``; override it to test a plugin directly::

    import pytest
    from kcore.conformance.suites.network import NetworkConformance

    class TestMyNetwork(NetworkConformance):
        @pytest.fixture
        def network_factory(self, kcore_settings_factory):
            async def make(settings=None):
                settings = settings or kcore_settings_factory()
                return MyNetwork(settings)
            return make

``network_factory(settings=None)`` returns a new plugin object: on a fresh, empty data
directory when called without settings, and on the given settings otherwise (the restart
check builds a second plugin on the first one's settings, after closing the first).

Each test plays the node agent: it makes a network namespace as a pod sandbox has it (a
unique name under ``/run/netns``, loopback up), calls ``setup_pod`` with it and checks what
the plugin did, in the namespace and on the host: the address really is on ``eth0``, a TCP
server in one pod answers a client in another pod or on the host, a host port reaches the
pod, and teardown leaves nothing (interfaces, addresses, the size of each nftables table)
that set-up made. Every check that needs a capability the plugin does not declare in
``capabilities`` is skipped with the reason ``network lacks capability <name>``. Every
namespace, server process and pod a test makes is removed after it, also when it fails;
every wait and command is bounded.

What the suite expects beyond the protocol's text:

* A pod's interface is ``eth0`` (with ``pod_addresses``), and the routes the answer lists
  are in the pod's namespace.
* A host port mapped with ``host_ip`` ``""`` is reached at ``status()["host_ip"]`` when the
  plugin reports that key (it must be an address of this host), else at ``127.0.0.1``.
* Things a plugin makes once and shares between pods (a bridge, an nftables table, the
  bridge's address) may appear with the first pod and stay; the leak checks take their
  baseline after one pod has come and gone. Loopback in a pod's namespace is the runtime's
  (up before set-up), not the plugin's.
* The suite sends traffic only to addresses that are on an interface inside one of its own
  namespaces and that the host does not route through a gateway, and to the host itself;
  a plugin that answers anything else fails the check rather than getting traffic.

Inside a pod's namespace every change teardown leaves counts. On the host, which other
programs may change meanwhile, only what touches the test's pods counts as the plugin's
(:class:`kcore.conformance.netns.Footprint`): an interface or address in the pods'
networks or peered with their namespaces, a route to a pod's address, an nft table naming
a pod's address or host port, and growth of a table that named them while they were set
up. The suite needs root, ``ip`` (iproute2) and ``nsenter``, and uses ``nft`` when it is
installed.

Two optional fixtures, overridden in the test class like ``network_factory``, open more
checks; without one, its checks are skipped with ``network lacks capability <fixture>``:

* ``small_pod_range``: ``(settings, size)``, settings (from ``kcore_settings_factory``,
  with the plugin's own option for a small pod range) on which ``network_factory(settings)``
  makes a plugin with room for exactly ``size`` pods at once (2 to :data:`MAX_SMALL_RANGE`).
  net_bridge gives a /29 pod CIDR: 5 pods, its network, broadcast and gateway addresses
  being no pod's. The suite fills the range and checks the contract's "TemporaryError when
  the pod range is exhausted", that teardown, gc and crashes give every address back,
  and with ``address_rotation`` the order in which freed addresses come back.
* ``crash_network``: an async callable ``crash(settings, call, *args)`` that runs ``call``
  (``"setup_pod"`` or ``"teardown_pod"``, with the arguments the suite gives) on a new
  plugin object on ``settings`` and kills it in the middle, as a node agent killed during
  the call leaves things: ``setup_pod`` after it has durably taken the pod's address and
  before it answers, ``teardown_pod`` after it has released the address and before it
  returns (net_bridge runs the call in a child process that SIGKILLs itself just before
  it writes or removes the pod's record). The suite's own plugin object on those settings
  is closed meanwhile; afterwards it makes a new one, as a restarted node agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from kcore.conformance import netns
from kcore.conformance.asyncsupport import DEFAULT_TIMEOUT, add_finalizer, async_test
from kcore.conformance.netns import Netns
from kcore.errors import Conflict, NotFound, PermanentError, TemporaryError
from kcore.interfaces import NETWORK_CAPABILITIES

WAIT_TIMEOUT = 10.0
"""Seconds traffic may take to flow after set-up (routes, neighbours, nft rules)."""

REPEATS = 200
"""Set-up and teardown cycles of the leak check."""

CONCURRENT_PODS = 20
"""Pods set up at once in the concurrency check."""

CONTAINER_PORT = 8080
"""Where the suite's servers listen inside a pod."""

RESTARTS = 20
"""Plugin objects made and closed in the file descriptor check."""

MAX_SMALL_RANGE = 64
"""The most pods a ``small_pod_range`` may hold: the checks fill it, twice."""

NAMESPACE = "kcore-conformance"

NETNS_PREFIX = "kcconf"
"""The prefix of every namespace the suite makes (``kcconf-<10 hex digits>``)."""

LONG_TIMEOUT = max(DEFAULT_TIMEOUT, 300.0)
"""Seconds for the checks that set up many pods."""

NETWORK_RESOURCES: Mapping[str, str] = {"network": "network_factory"}
"""What the tests get from :func:`async_test`: ``network``, made by ``network_factory``."""

network_test = async_test(resources=NETWORK_RESOURCES)
long_network_test = async_test(resources=NETWORK_RESOURCES, timeout=LONG_TIMEOUT)

ANSWER_KEYS = ("ips", "interface", "gateway", "routes", "dns")


# -- helpers -----------------------------------------------------------------------------------


def require(network: Any, *capabilities: str) -> None:
    """Skip the running test unless the plugin declares every one of ``capabilities``."""
    for cap in capabilities:
        assert cap in NETWORK_CAPABILITIES, f"the suite asks for an unknown capability {cap!r}"
        if cap not in network.capabilities:
            pytest.skip(f"network lacks capability {cap}")


def has(network: Any, capability: str) -> bool:
    assert capability in NETWORK_CAPABILITIES, capability
    return capability in network.capabilities


def check_answer(answer: Any) -> None:
    """``answer`` has the shape ``setup_pod`` promises."""
    assert isinstance(answer, Mapping), f"setup_pod returned {answer!r}, not a mapping"
    missing = [k for k in ANSWER_KEYS if k not in answer]
    assert not missing, f"setup_pod's answer lacks {missing}: {answer!r}"
    ips = answer["ips"]
    assert isinstance(ips, Sequence) and not isinstance(ips, str) and ips, (
        f"answer['ips'] is {ips!r}, not a non-empty list of addresses"
    )
    for ip in ips:
        _assert_ip(ip, "an address in answer['ips']")
    assert isinstance(answer["interface"], str) and answer["interface"], (
        f"answer['interface'] is {answer['interface']!r}"
    )
    if answer["gateway"]:
        _assert_ip(answer["gateway"], "answer['gateway']")
    routes = answer["routes"]
    assert isinstance(routes, Sequence) and not isinstance(routes, str), (
        f"answer['routes'] is {routes!r}, not a list"
    )
    for route in routes:
        assert isinstance(route, Mapping) and "dst" in route, f"a route without dst: {route!r}"
        try:
            ipaddress.ip_network(route["dst"], strict=False)
        except (TypeError, ValueError):
            raise AssertionError(f"a route's dst {route['dst']!r} is not a network") from None
        if route.get("gateway"):
            _assert_ip(route["gateway"], f"the gateway of route {route!r}")
    dns = answer["dns"]
    assert isinstance(dns, Mapping), f"answer['dns'] is {dns!r}, not a mapping"
    for key in ("servers", "searches", "options"):
        value = dns.get(key, [])
        assert isinstance(value, Sequence) and not isinstance(value, str), (
            f"answer['dns'][{key!r}] is {value!r}, not a list"
        )


def _assert_ip(value: Any, what: str) -> None:
    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} is {value!r}, not an IP address") from None


def _plain(value: Any) -> Any:
    """A mapping or sequence as plain dicts and lists, to compare answers."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _normal_dst(dst: str) -> str:
    if dst == "default":
        return "0.0.0.0/0"
    return str(ipaddress.ip_network(dst, strict=False))


def _show_leaks(found: list[str]) -> str:
    return "; ".join(found)


@dataclass
class Pod:
    """A pod the suite set up: its uid, namespace, config and the plugin's answer."""

    uid: str
    ns: Netns
    config: dict[str, Any]
    answer: Mapping[str, Any]

    @property
    def ip(self) -> str:
        ip = netns.first_ipv4(self.answer["ips"])
        assert ip is not None
        return ip

    @property
    def ips(self) -> set[str]:
        return set(self.answer["ips"])


@dataclass
class Harness:
    """One test's view of the plugin: makes namespaces and pods, removes them after the
    test (teardown first, then the namespace), and checks with bounds."""

    network: Any
    namespaces: list[Netns] = field(default_factory=list)

    async def netns(self) -> Netns:
        """A new namespace, as a pod sandbox has it; deleted after the test."""
        ns = await netns.create_netns(NETNS_PREFIX)
        add_finalizer(lambda: netns.delete_netns(ns))
        self.namespaces.append(ns)
        return ns

    @staticmethod
    def config(uid: str, *, host_port: int = 0) -> dict[str, Any]:
        """A set-up config as the node agent sends it; with ``host_port``, one TCP mapping
        from it to :data:`CONTAINER_PORT` on every host address."""
        mappings = []
        if host_port:
            mappings.append(
                {
                    "protocol": "TCP",
                    "container_port": CONTAINER_PORT,
                    "host_port": host_port,
                    "host_ip": "",
                }
            )
        return {"name": f"conformance-{uid[:8]}", "namespace": NAMESPACE, "port_mappings": mappings}

    async def setup(
        self,
        ns: Netns,
        *,
        uid: str | None = None,
        host_port: int = 0,
        teardown_after: bool = True,
    ) -> Pod:
        """Set up a pod (a new uid unless given) in ``ns`` and check the answer's shape;
        unless ``teardown_after`` is false, it is torn down after the test."""
        uid = uid or str(uuid.uuid4())
        config = self.config(uid, host_port=host_port)
        if teardown_after:
            add_finalizer(lambda: self.teardown_quietly(uid, ns.path))
        answer = await self.network.setup_pod(uid, ns.path, config)
        check_answer(answer)
        return Pod(uid, ns, config, answer)

    async def pod(self, *, host_port: int = 0) -> Pod:
        """A pod in a namespace of its own."""
        return await self.setup(await self.netns(), host_port=host_port)

    async def teardown_quietly(self, uid: str, netns_path: str | None) -> None:
        # Tearing down twice must succeed; the idempotence checks say so when it does not.
        with contextlib.suppress(NotFound):
            await self.network.teardown_pod(uid, netns_path)

    async def assert_on_interface(self, pod: Pod) -> None:
        """Every address of the answer is on the answer's interface in the pod's
        namespace."""
        found = await netns.addresses_of(pod.ns, pod.answer["interface"])
        missing = pod.ips - found
        assert not missing, (
            f"the answer says {sorted(pod.ips)} on {pod.answer['interface']}, but inside the "
            f"pod's namespace {pod.answer['interface']} has {sorted(found) or 'no address'}"
        )

    async def safe_target(self, pod: Pod) -> str:
        """The pod's address, once it is certain that traffic to it stays on this machine:
        it is on the pod's interface, and the host does not route it through a gateway."""
        ip = pod.ip
        found = await netns.addresses_of(pod.ns, pod.answer["interface"])
        assert ip in found, (
            f"refusing to send traffic to {ip}: it is not on {pod.answer['interface']} inside "
            f"the pod's namespace (which has {sorted(found) or 'no address'})"
        )
        route = await netns.route_to(ip)
        assert not route.get("gateway"), (
            f"refusing to send traffic to {ip}: the host routes it via {route.get('gateway')} "
            f"(dev {route.get('dev')}), off this machine"
        )
        return ip

    async def host_address(self) -> str:
        """Where a host port is reached: ``status()["host_ip"]`` or 127.0.0.1."""
        status = await self.network.status()
        address = status.get("host_ip") or "127.0.0.1"
        _assert_ip(address, "status()['host_ip']")
        if address != "127.0.0.1":
            local = {
                a.split("/", 1)[0] for addrs in (await netns.interfaces()).values() for a in addrs
            }
            assert address in local, (
                f"status()['host_ip'] is {address}, not an address of this host ({sorted(local)})"
            )
        return address

    async def assert_check_fails(self, pod: Pod, why: str) -> None:
        try:
            await self.network.check_pod(pod.uid, pod.ns.path)
        except (NotFound, PermanentError):
            return
        raise AssertionError(f"check_pod passed {why}; it must raise NotFound or PermanentError")

    async def warm_up(self, *, host_port: int = 0) -> None:
        """One pod set up and torn down, so that what the plugin makes once and shares (a
        bridge, a table) is in the leak checks' baseline."""
        pod = await self.pod(host_port=host_port)
        await self.network.teardown_pod(pod.uid, pod.ns.path)


async def routes_in(ns: Netns) -> set[tuple[str, str]]:
    """(dst, gateway) of each IPv4 route with a gateway in ``ns``."""
    result = await ns.run("ip", "-j", "route", "show")
    return {
        (_normal_dst(r["dst"]), r["gateway"])
        for r in json.loads(result.stdout or "[]")
        if r.get("gateway")
    }


async def assert_usable_addresses(pod: Pod) -> None:
    """Each address of the pod is a host address of its subnet: not the subnet's network or
    broadcast address (on a prefix shorter than /31), and not a gateway of its routes."""
    found = (await netns.interfaces(pod.ns)).get(pod.answer["interface"], frozenset())
    for text in found:
        iface = ipaddress.ip_interface(text)
        net = iface.network
        if str(iface.ip) not in pod.ips or net.prefixlen >= net.max_prefixlen - 1:
            continue
        which = "network" if iface.ip == net.network_address else "broadcast"
        assert iface.ip not in (net.network_address, net.broadcast_address), (
            f"the pod got {iface.ip}, the {which} address of its subnet {net}"
        )
    gateways = {r["gateway"] for r in pod.answer["routes"] if r.get("gateway")}
    assert not (pod.ips & gateways), (
        f"the pod got {sorted(pod.ips & gateways)}, the gateway of its own routes"
    )


def free_host_port(network: Any) -> int:
    """A free host port when the plugin offers host ports, else 0 (no mapping)."""
    return netns.free_tcp_port() if has(network, "host_ports") else 0


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each refers to."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


def assert_few_new_fds(before: Mapping[int, str], limit: int, what: str) -> None:
    new = {fd: target for fd, target in open_fds().items() if before.get(fd) != target}
    shown = ", ".join(sorted(set(new.values()))[:5])
    assert len(new) < limit, f"{what} left {len(new)} more file descriptors open ({shown})"


def small_range_of(small_pod_range: Any) -> tuple[Any, int]:
    """The ``small_pod_range`` fixture's settings and size, or a skip."""
    if small_pod_range is None:
        pytest.skip("network lacks capability small_pod_range")
    settings, size = small_pod_range
    assert isinstance(size, int) and 2 <= size <= MAX_SMALL_RANGE, (
        f"small_pod_range's size is {size!r}, not 2 to {MAX_SMALL_RANGE}"
    )
    return settings, size


def crash_of(crash_network: Any) -> Any:
    if crash_network is None:
        pytest.skip("network lacks capability crash_network")
    return crash_network


async def _crash_bed(
    network_factory: Any, small_pod_range: Any, crash_network: Any
) -> tuple[Any, int, Any, Restarts, Harness]:
    """What the crash checks start from: the small range's settings and size, the crash
    fixture, the restarts on those settings with a first plugin object open (it must
    have ``pod_addresses`` and ``survives_restart``) and a harness on it; or a skip."""
    settings, size = small_range_of(small_pod_range)
    crash = crash_of(crash_network)
    restarts = Restarts.start(network_factory, settings)
    first = await restarts.open()
    require(first, "pod_addresses", "survives_restart")
    return settings, size, crash, restarts, Harness(first)


def assert_distinct(pods: Sequence[Pod], what: str) -> None:
    """No two of ``pods`` share an address."""
    owner: dict[str, str] = {}
    for pod in pods:
        for ip in pod.ips:
            assert ip not in owner, f"{what}: pods {owner[ip]} and {pod.uid} both got {ip}"
            owner[ip] = pod.uid


@dataclass
class Restarts:
    """A test's plugin objects on one ``settings``, one open at a time, as a node agent
    that is restarted (or killed) has them. After the test the open object (or a new one)
    tears down every pod set up or crashed through it and is closed."""

    factory: Any
    settings: Any
    network: Any = None
    uids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, factory: Any, settings: Any) -> Restarts:
        restarts = cls(factory, settings)
        add_finalizer(restarts.cleanup)
        return restarts

    async def open(self) -> Any:
        assert self.network is None, "one plugin object at a time"
        self.network = await self.factory(self.settings)
        return self.network

    async def close(self) -> None:
        network, self.network = self.network, None
        if network is not None:
            await network.close()

    async def setup(self, ns: Netns, uid: str | None = None) -> Pod:
        uid = uid or str(uuid.uuid4())
        self.uids[uid] = ns.path
        return await Harness(self.network).setup(ns, uid=uid, teardown_after=False)

    async def try_pod(self, pods: Sequence[Pod] = ()) -> Pod | None:
        """A pod in a new namespace, or None when the plugin refuses it with
        TemporaryError. Its addresses are none of ``pods``' and none is the network,
        broadcast or gateway address of its subnet."""
        try:
            pod = await self.setup(await Harness(self.network).netns())
        except TemporaryError:
            return None
        await assert_usable_addresses(pod)
        assert_distinct([*pods, pod], "in a small pod range")
        return pod

    async def fill(self, count: int, pods: Sequence[Pod] = ()) -> list[Pod]:
        """``count`` more pods (see :meth:`try_pod`), none refused."""
        made = list(pods)
        for i in range(count):
            pod = await self.try_pod(made)
            assert pod is not None, (
                f"set-up {i + 1} of {count} was refused (TemporaryError) in a pod range with "
                "room for it"
            )
            made.append(pod)
        return made[len(pods) :]

    async def assert_full(self, why: str) -> None:
        """A new pod is refused with TemporaryError, and its namespace stays as it was."""
        ns = await Harness(self.network).netns()
        before = await netns.snapshot(ns)
        uid = str(uuid.uuid4())
        self.uids[uid] = ns.path
        try:
            pod = await Harness(self.network).setup(ns, uid=uid, teardown_after=False)
        except TemporaryError:
            pass
        else:
            raise AssertionError(f"a set-up {why} got {sorted(pod.ips)}; the range is full")
        found = netns.leaks(before, await netns.snapshot(ns))
        assert not found, f"the refused set-up left in the pod's namespace: {_show_leaks(found)}"

    async def cleanup(self) -> None:
        if not self.uids and self.network is None:
            return
        network = self.network or await self.open()
        try:
            for uid, path in self.uids.items():
                with contextlib.suppress(NotFound):
                    await network.teardown_pod(uid, path)
        finally:
            await self.close()


# -- the suite ---------------------------------------------------------------------------------


class NetworkConformance:
    """The network contract, one test per promise."""

    @pytest.fixture
    def small_pod_range(self) -> tuple[Any, int] | None:
        """Override to return ``(settings, size)``: settings on which ``network_factory``
        makes a plugin with room for exactly ``size`` pods (see the module docstring).
        ``None`` (the default): the checks that fill the pod range are skipped."""
        return None

    @pytest.fixture
    def crash_network(self) -> Any:
        """Override to return ``crash(settings, call, *args)``, which kills a plugin on
        ``settings`` in the middle of ``call`` (see the module docstring). ``None`` (the
        default): the checks after a crash are skipped."""
        return None

    # -- the plugin --------------------------------------------------------------------------

    @network_test
    async def test_status_is_ready(self, network: Any) -> None:
        """``status()`` is the node's NetworkReady condition: ``ready`` true (a bool),
        ``reason`` and ``message`` strings."""
        status = await network.status()
        assert isinstance(status, Mapping), f"status() returned {status!r}"
        assert status.get("ready") is True, f"status() is {dict(status)!r}, not ready: True"
        for key in ("reason", "message"):
            assert isinstance(status.get(key), str), f"status()[{key!r}] is {status.get(key)!r}"

    @network_test
    async def test_capabilities_are_known(self, network: Any) -> None:
        """A plugin declares only capabilities from ``NETWORK_CAPABILITIES``."""
        unknown = set(network.capabilities) - NETWORK_CAPABILITIES
        assert not unknown, f"unknown capabilities {sorted(unknown)}"

    # -- set-up ------------------------------------------------------------------------------

    @network_test
    async def test_setup_answers_in_the_contract_shape(self, network: Any) -> None:
        """The answer has ``ips``, ``interface``, ``gateway``, ``routes`` and ``dns``; a
        wired pod passes ``check_pod``."""
        h = Harness(network)
        pod = await h.pod()
        await network.check_pod(pod.uid, pod.ns.path)

    @network_test
    async def test_setup_twice_gives_the_same_answer(self, network: Any) -> None:
        """Set-up is idempotent: the same pod again gets the same answer, and nothing more
        is wired (its own host port is no conflict with itself)."""
        h = Harness(network)
        ns = await h.netns()
        pod = await h.setup(ns, host_port=free_host_port(network))
        first = await netns.interfaces(ns)
        again = await network.setup_pod(pod.uid, ns.path, pod.config)
        assert _plain(again) == _plain(pod.answer), (
            f"the second set-up answered {_plain(again)}, the first {_plain(pod.answer)}"
        )
        assert await netns.interfaces(ns) == first, (
            f"the second set-up changed the namespace: {first} -> {await netns.interfaces(ns)}"
        )
        await network.check_pod(pod.uid, ns.path)

    @network_test
    async def test_setup_of_missing_namespace_raises_not_found(self, network: Any) -> None:
        """A namespace path that does not exist is :class:`kcore.NotFound`; the pod can
        then be torn down, and checking it fails."""
        uid = str(uuid.uuid4())
        missing = str(netns.NETNS_DIR / netns.unique_name(NETNS_PREFIX))
        config = Harness.config(uid, host_port=free_host_port(network))
        with pytest.raises(NotFound):
            await network.setup_pod(uid, missing, config)
        await network.teardown_pod(uid, missing)
        await network.teardown_pod(uid, None)
        with pytest.raises((NotFound, PermanentError)):
            await network.check_pod(uid, missing)

    # -- addresses ---------------------------------------------------------------------------

    @network_test
    async def test_each_pod_gets_its_own_address_on_eth0(self, network: Any) -> None:
        """``pod_addresses``: each pod's addresses are its own, really on ``eth0`` in its
        namespace, and the routes of the answer are there too."""
        require(network, "pod_addresses")
        h = Harness(network)
        pods = [await h.pod() for _ in range(3)]
        for pod in pods:
            assert pod.answer["interface"] == "eth0", (
                f"the pod's interface is {pod.answer['interface']!r}, not 'eth0'"
            )
            await h.assert_on_interface(pod)
            expected = {
                (_normal_dst(r["dst"]), r["gateway"])
                for r in pod.answer["routes"]
                if r.get("gateway") and ipaddress.ip_address(r["gateway"]).version == 4
            }
            missing = expected - await routes_in(pod.ns)
            assert not missing, f"routes of the answer missing in the pod's namespace: {missing}"
            await assert_usable_addresses(pod)
        assert_distinct(pods, "pods set up one after another")

    @long_network_test
    async def test_concurrent_setups_get_distinct_addresses(self, network: Any) -> None:
        """``pod_addresses``: pods set up at the same time get distinct addresses."""
        require(network, "pod_addresses")
        h = Harness(network)
        namespaces = await asyncio.gather(*(h.netns() for _ in range(CONCURRENT_PODS)))
        pods = await asyncio.gather(*(h.setup(ns) for ns in namespaces))
        by_ip: dict[str, list[str]] = {}
        for pod in pods:
            for ip in pod.ips:
                by_ip.setdefault(ip, []).append(pod.uid)
        shared = {ip: uids for ip, uids in by_ip.items() if len(uids) > 1}
        assert not shared, f"{CONCURRENT_PODS} concurrent set-ups shared addresses: {shared}"
        for pod in pods:
            await h.assert_on_interface(pod)

    @long_network_test
    async def test_setup_in_a_full_pod_range_fails_temporarily_until_a_teardown(
        self, network_factory: Any, small_pod_range: Any
    ) -> None:
        """``small_pod_range``, ``pod_addresses``: ``size`` pods fit, each with addresses of
        its own, none the network, broadcast or gateway address of its subnet. One more is
        :class:`kcore.TemporaryError` (the contract's "the pod range is exhausted") and
        leaves nothing in its namespace, also after a teardown of a pod the plugin never
        saw and a gc that keeps every pod (neither frees an address). Once a pod is torn
        down the refused pod fits, and the range is full again."""
        settings, size = small_range_of(small_pod_range)
        restarts = Restarts.start(network_factory, settings)
        network = await restarts.open()
        require(network, "pod_addresses")
        pods = await restarts.fill(size)
        await restarts.assert_full(f"with {size} pods set up")
        await network.teardown_pod(str(uuid.uuid4()), None)
        released = await network.gc([p.uid for p in pods])
        assert list(released) == [], f"gc released {released!r}; every pod was live"
        await restarts.assert_full("after a teardown of an unknown pod and a gc of none")
        gone = pods.pop(size // 2)
        await network.teardown_pod(gone.uid, gone.ns.path)
        pods += await restarts.fill(1, pods)
        await restarts.assert_full("once the freed address was taken again")

    @long_network_test
    async def test_freed_addresses_rotate_before_reuse(
        self, network_factory: Any, small_pod_range: Any
    ) -> None:
        """``small_pod_range``, ``pod_addresses``, ``address_rotation``: a pod torn down
        at once does not pass its address to the next pod; each set-up gets an address no
        pod had yet until all ``size`` were handed out once, in the order the rotation
        goes. With every other address taken the first comes back (the range wraps).
        Then two are freed in the order the rotation reaches them (the last of the first
        round, ahead of the last one handed out, then the first, behind it): the earlier
        freed comes first, the just freed one after it. With ``survives_restart`` the
        plugin is restarted on the same settings before these two set-ups: the place in
        the rotation survives a restart."""
        settings, size = small_range_of(small_pod_range)
        restarts = Restarts.start(network_factory, settings)
        network = await restarts.open()
        require(network, "pod_addresses", "address_rotation")
        h = Harness(network)

        async def setup_expecting(expected: str, why: str) -> Pod:
            pod = await restarts.setup(await h.netns())
            assert pod.ip == expected, (
                f"{why}, a set-up got {pod.ip}, not {expected} (addresses in the order the "
                f"first round handed them out: {order})"
            )
            return pod

        gone = await restarts.setup(await h.netns())
        await network.teardown_pod(gone.uid, gone.ns.path)
        order = [gone.ip]
        holders: dict[str, Pod] = {}
        for i in range(1, size):
            pod = await restarts.setup(await h.netns())
            assert pod.ip not in order, (
                f"set-up {i + 1} got {pod.ip}, handed out before (first round so far: {order}),"
                f" while {size - i} addresses of the range had never been handed out"
            )
            order.append(pod.ip)
            holders[pod.ip] = pod
        first, second, last = order[0], order[1], order[-1]
        holders[first] = await setup_expecting(first, "with only that address free")
        if size > 2:
            # The last address handed out becomes the second, so that the last one of the
            # first round is ahead of it and the first behind it.
            pod = holders.pop(second)
            await network.teardown_pod(pod.uid, pod.ns.path)
            holders[second] = await setup_expecting(second, "with only that address free")
        for ip in (last, first):
            pod = holders.pop(ip)
            await network.teardown_pod(pod.uid, pod.ns.path)
        if has(network, "survives_restart"):
            await restarts.close()
            await restarts.open()
        await setup_expecting(last, f"with {last} freed before {first}")
        await setup_expecting(first, "with only that address free")

    # -- traffic -----------------------------------------------------------------------------

    @network_test
    async def test_pod_to_pod_traffic(self, network: Any) -> None:
        """``pod_to_pod``: a TCP server in one pod answers a client in another, both ways."""
        require(network, "pod_to_pod")
        h = Harness(network)
        a, b = await h.pod(), await h.pod()
        for server_pod, client_pod in ((a, b), (b, a)):
            target = await h.safe_target(server_pod)
            async with netns.echo_server(server_pod.ns, CONTAINER_PORT) as server:
                await netns.wait_for_echo(server, target, ns=client_pod.ns, timeout=WAIT_TIMEOUT)

    @network_test
    async def test_host_to_pod_traffic(self, network: Any) -> None:
        """``host_to_pod``: a TCP server in a pod answers a client on the host."""
        require(network, "host_to_pod")
        h = Harness(network)
        pod = await h.pod()
        target = await h.safe_target(pod)
        async with netns.echo_server(pod.ns, CONTAINER_PORT) as server:
            await netns.wait_for_echo(server, target, timeout=WAIT_TIMEOUT)

    @network_test
    async def test_host_port_reaches_the_pod(self, network: Any) -> None:
        """``host_ports``: a client on the host connecting to the host port reaches the
        server on the container port inside the pod."""
        require(network, "host_ports")
        h = Harness(network)
        host_port = netns.free_tcp_port()
        pod = await h.pod(host_port=host_port)
        address = await h.host_address()
        async with netns.echo_server(pod.ns, CONTAINER_PORT) as server:
            await netns.wait_for_echo(server, address, host_port, timeout=WAIT_TIMEOUT)

    @network_test
    async def test_duplicate_host_port_conflicts(self, network: Any) -> None:
        """``host_ports``: a host port another pod holds is :class:`kcore.Conflict`, and the
        failed set-up leaves nothing behind; teardown frees the port for the next pod."""
        require(network, "host_ports")
        h = Harness(network)
        host_port = netns.free_tcp_port()
        first = await h.pod(host_port=host_port)
        ns = await h.netns()
        before = await netns.snapshot(ns)
        uid = str(uuid.uuid4())
        with pytest.raises(Conflict):
            await h.setup(ns, uid=uid, host_port=host_port)
        found = netns.leaks(before, await netns.snapshot(ns))
        assert not found, f"the refused set-up left in the pod's namespace: {_show_leaks(found)}"
        await network.teardown_pod(uid, ns.path)
        await network.check_pod(first.uid, first.ns.path)
        await network.teardown_pod(first.uid, first.ns.path)
        await h.setup(ns, uid=uid, host_port=host_port)

    # -- teardown ----------------------------------------------------------------------------

    @network_test
    async def test_teardown_removes_what_setup_made(self, network: Any) -> None:
        """Teardown removes every interface, address and nftables rule that set-up made,
        inside the pod's namespace and on the host."""
        h = Harness(network)
        host_port = free_host_port(network)
        await h.warm_up(host_port=host_port)
        ns = await h.netns()
        host_before, ns_before = await netns.snapshot(), await netns.snapshot(ns)
        pod = await h.setup(ns, host_port=host_port)
        host_during = await netns.snapshot()
        ours = netns.Footprint()
        ours.add(ns, pod.ips, [host_port], in_pod=await netns.snapshot(ns))
        if has(network, "pod_addresses"):
            await h.assert_on_interface(pod)
        await network.teardown_pod(pod.uid, ns.path)
        found = netns.leaks(ns_before, await netns.snapshot(ns))
        assert not found, f"teardown left in the pod's namespace: {_show_leaks(found)}"
        found = netns.leaks(host_before, await netns.snapshot(), ours=ours, seen=[host_during])
        assert not found, f"teardown left on the host: {_show_leaks(found)}"

    @long_network_test
    async def test_repeated_setup_and_teardown_leak_nothing(self, network: Any) -> None:
        """:data:`REPEATS` set-ups and teardowns (new pods, one namespace, the same host
        port) leave nothing behind (nor file descriptors open in this process, for a
        plugin that runs in it), and a pod set up afterwards still works."""
        h = Harness(network)
        host_port = free_host_port(network)
        await h.warm_up(host_port=host_port)
        ns = await h.netns()
        host_before, ns_before = await netns.snapshot(), await netns.snapshot(ns)
        fds_before = open_fds()
        seen: list[netns.Snapshot] = []
        ours = netns.Footprint()
        for i in range(REPEATS):
            pod = await h.setup(ns, host_port=host_port)
            ours.add(ns, pod.ips, [host_port], in_pod=await netns.snapshot(ns) if i == 0 else None)
            if i % 10 == 0:
                seen.append(await netns.snapshot())
            try:
                await network.teardown_pod(pod.uid, ns.path)
            except Exception as exc:
                raise AssertionError(f"teardown {i + 1} of {REPEATS} failed: {exc!r}") from exc
        found = netns.leaks(ns_before, await netns.snapshot(ns))
        assert not found, f"{REPEATS} cycles left in the pod's namespace: {_show_leaks(found)}"
        found = netns.leaks(host_before, await netns.snapshot(), ours=ours, seen=seen)
        assert not found, f"{REPEATS} cycles left on the host: {_show_leaks(found)}"
        assert_few_new_fds(fds_before, REPEATS // 4, f"{REPEATS} cycles")
        pod = await h.setup(ns, host_port=host_port)
        await network.check_pod(pod.uid, ns.path)
        if has(network, "pod_addresses"):
            await h.assert_on_interface(pod)

    @network_test
    async def test_teardown_is_idempotent(self, network: Any) -> None:
        """Tearing a pod down twice, and again without its namespace path, succeeds; with
        ``pod_addresses`` checking it afterwards fails."""
        h = Harness(network)
        pod = await h.pod(host_port=free_host_port(network))
        await network.teardown_pod(pod.uid, pod.ns.path)
        await network.teardown_pod(pod.uid, pod.ns.path)
        await network.teardown_pod(pod.uid, None)
        if has(network, "pod_addresses"):
            await h.assert_check_fails(pod, "after teardown")

    @network_test
    async def test_teardown_of_unknown_pod_succeeds(self, network: Any) -> None:
        """Tearing down a pod the plugin never saw succeeds, with or without a namespace
        path, and leaves a namespace of that path as it was."""
        h = Harness(network)
        ns = await h.netns()
        before = await netns.snapshot(ns)
        missing = str(netns.NETNS_DIR / netns.unique_name(NETNS_PREFIX))
        for path in (ns.path, missing, None):
            await network.teardown_pod(str(uuid.uuid4()), path)
        found = netns.leaks(before, await netns.snapshot(ns))
        assert not found, f"teardown of an unknown pod changed its namespace: {found}"
        assert await netns.interfaces(ns) == before.interfaces

    @network_test
    async def test_teardown_after_the_namespace_is_gone(self, network: Any) -> None:
        """A pod whose namespace was deleted tears down fine and releases what the plugin
        held for it: host interfaces and rules, and its host port."""
        h = Harness(network)
        host_port = free_host_port(network)
        await h.warm_up(host_port=host_port)
        ns = await h.netns()
        host_before = await netns.snapshot()
        pod = await h.setup(ns, host_port=host_port)
        host_during = await netns.snapshot()
        ours = netns.Footprint()
        ours.add(ns, pod.ips, [host_port], in_pod=await netns.snapshot(ns))
        await netns.delete_netns(ns)
        await network.teardown_pod(pod.uid, ns.path)
        await network.teardown_pod(pod.uid, None)
        found = netns.leaks(host_before, await netns.snapshot(), ours=ours, seen=[host_during])
        assert not found, f"teardown without the namespace left on the host: {found}"
        if has(network, "pod_addresses"):
            await h.assert_check_fails(pod, "for a pod whose namespace is gone")
        if host_port:
            await h.pod(host_port=host_port)

    # -- check and gc ------------------------------------------------------------------------

    @network_test
    async def test_check_notices_missing_wiring(self, network: Any) -> None:
        """``pod_addresses``: after the pod's ``eth0`` was deleted behind the plugin's back,
        ``check_pod`` raises; teardown still succeeds."""
        require(network, "pod_addresses")
        h = Harness(network)
        pod = await h.pod()
        await network.check_pod(pod.uid, pod.ns.path)
        await pod.ns.run("ip", "link", "delete", pod.answer["interface"])
        await h.assert_check_fails(pod, f"with the pod's {pod.answer['interface']} deleted")
        await network.teardown_pod(pod.uid, pod.ns.path)

    @network_test
    async def test_setup_again_after_broken_wiring_gives_the_same_answer(
        self, network: Any
    ) -> None:
        """``setup_pod`` is "idempotent for the same pod: the same answer again", also when
        the pod's ``eth0`` was deleted behind the plugin's back: set-up either refuses
        (``NotFound`` or ``PermanentError``) or answers as before (net_bridge wires the pod
        again with its address); it never answers with other addresses."""
        require(network, "pod_addresses")
        h = Harness(network)
        pod = await h.pod()
        await pod.ns.run("ip", "link", "delete", pod.answer["interface"])
        await h.assert_check_fails(pod, f"with the pod's {pod.answer['interface']} deleted")
        try:
            again = await network.setup_pod(pod.uid, pod.ns.path, pod.config)
        except (NotFound, PermanentError):
            return  # refusing to re-wire is allowed; the harness tears the pod down
        assert _plain(again) == _plain(pod.answer), (
            f"set-up after the wiring broke answered {_plain(again)}, before {_plain(pod.answer)}"
        )

    @network_test
    async def test_gc_releases_pods_not_live(self, network: Any) -> None:
        """``gc`` releases the pods not in the live set (and returns their uids), never a
        live one; live pods stay wired. With ``pod_addresses`` it releases exactly the dead
        pod, whose namespace loses what set-up put there, and no new pod gets a live pod's
        address."""
        h = Harness(network)
        live = [await h.pod(), await h.pod()]
        dead_ns = await h.netns()
        dead_before = await netns.snapshot(dead_ns)
        dead = await h.setup(dead_ns)
        live_uids = [p.uid for p in live] + [str(uuid.uuid4())]
        released = await network.gc(live_uids)
        assert isinstance(released, Sequence) and not isinstance(released, str), (
            f"gc returned {released!r}, not a list of uids"
        )
        assert set(released) <= {dead.uid}, (
            f"gc released {sorted(released)}; only the dead pod {dead.uid} was not live"
        )
        for pod in live:
            await network.check_pod(pod.uid, pod.ns.path)
        if has(network, "pod_addresses"):
            assert list(released) == [dead.uid], f"gc released {released!r}, not [{dead.uid!r}]"
            found = netns.leaks(dead_before, await netns.snapshot(dead_ns))
            assert not found, f"gc left in the dead pod's namespace: {_show_leaks(found)}"
            await h.assert_check_fails(dead, "for a pod gc released")
            for pod in live:
                await h.assert_on_interface(pod)
            newcomer = await h.pod()
            live_uids.append(newcomer.uid)
            taken = newcomer.ips & set().union(*(p.ips for p in live))
            assert not taken, f"a pod set up after gc got a live pod's address {taken}"
        assert list(await network.gc(live_uids)) == [], "a second gc released something again"
        await network.teardown_pod(dead.uid, dead_ns.path)

    # -- restart -----------------------------------------------------------------------------

    @long_network_test
    async def test_restart_keeps_pods(
        self, network_factory: Any, kcore_settings_factory: Any
    ) -> None:
        """``survives_restart``: a new plugin on the same settings knows the pods the
        closed one set up: it checks them, never hands out their addresses or host ports,
        and tears them down."""
        settings = kcore_settings_factory()
        current: dict[str, Any] = {"network": await network_factory(settings)}
        pods: list[Pod] = []

        async def cleanup() -> None:
            plugin = current["network"]
            if plugin is None:
                return
            for pod in pods:
                with contextlib.suppress(NotFound):
                    await plugin.teardown_pod(pod.uid, pod.ns.path)
            await plugin.close()

        add_finalizer(cleanup)
        require(current["network"], "survives_restart")
        first = current["network"]
        host_port = free_host_port(first)
        h = Harness(first)
        ns = await h.netns()
        before = await netns.snapshot(ns)
        pod = await h.setup(ns, host_port=host_port, teardown_after=False)
        pods.append(pod)

        current["network"] = None
        await first.close()
        current["network"] = second = await network_factory(settings)
        await second.check_pod(pod.uid, ns.path)
        h2 = Harness(second)
        if has(second, "pod_addresses"):
            await h2.assert_on_interface(pod)
            for _ in range(5):
                other = await h2.pod()
                taken = other.ips & pod.ips
                assert not taken, f"after the restart a new pod got the live pod's {taken}"
        if host_port:
            with pytest.raises(Conflict):
                await h2.pod(host_port=host_port)
        await second.teardown_pod(pod.uid, ns.path)
        found = netns.leaks(before, await netns.snapshot(ns))
        assert not found, f"teardown after the restart left in the namespace: {found}"
        if has(second, "pod_addresses"):
            await h2.assert_check_fails(pod, "after teardown by the restarted plugin")

    @long_network_test
    async def test_restarting_the_plugin_leaks_no_file_descriptors(
        self, network_factory: Any, kcore_settings_factory: Any
    ) -> None:
        """Making a plugin object on the same settings and closing it, :data:`RESTARTS`
        times, leaves no more file descriptors open in this process (for a plugin that
        runs in it): ``close`` releases the plugin's own resources."""
        settings = kcore_settings_factory()

        async def cycle() -> None:
            network = await network_factory(settings)
            await network.close()

        await cycle()
        before = open_fds()
        for _ in range(RESTARTS):
            await cycle()
        assert_few_new_fds(before, RESTARTS // 2, f"{RESTARTS} plugin objects made and closed")

    @long_network_test
    async def test_gc_and_teardown_after_a_crash_in_setup_release_the_pods(
        self, network_factory: Any, small_pod_range: Any, crash_network: Any
    ) -> None:
        """``crash_network``, ``small_pod_range``, ``pod_addresses``, ``survives_restart``:
        two set-ups die mid-way while a pod set up before stays wired. A new plugin object
        on the same settings tears the first crashed pod down, and ``gc`` releases the
        other one and returns exactly its uid; both namespaces are as before their
        set-ups, the live pod still checks, and the range has room for ``size`` pods
        again: the live one and ``size - 1`` new ones."""
        settings, size, crash, restarts, h = await _crash_bed(
            network_factory, small_pod_range, crash_network
        )
        live = await restarts.setup(await h.netns())
        await restarts.close()
        crashed = []
        for _ in range(2):
            ns = await h.netns()
            before = await netns.snapshot(ns)
            uid = str(uuid.uuid4())
            restarts.uids[uid] = ns.path
            await crash(settings, "setup_pod", uid, ns.path, Harness.config(uid))
            crashed.append((uid, ns, before))
        second = await restarts.open()
        (torn_uid, torn_ns, torn_before), (gc_uid, gc_ns, gc_before) = crashed
        await second.teardown_pod(torn_uid, torn_ns.path)
        found = netns.leaks(torn_before, await netns.snapshot(torn_ns))
        assert not found, f"teardown after a crashed set-up left: {_show_leaks(found)}"
        released = await second.gc([live.uid])
        assert isinstance(released, Sequence) and list(released) == [gc_uid], (
            f"gc after a crashed set-up released {released!r}, not [{gc_uid!r}]"
        )
        found = netns.leaks(gc_before, await netns.snapshot(gc_ns))
        assert not found, f"gc after a crashed set-up left: {_show_leaks(found)}"
        await second.check_pod(live.uid, live.ns.path)
        await restarts.fill(size - 1, [live])
        await restarts.assert_full("after the crashed pods were released and the range refilled")

    @long_network_test
    async def test_setup_after_a_crash_in_teardown_never_shares_an_address(
        self, network_factory: Any, small_pod_range: Any, crash_network: Any
    ) -> None:
        """``crash_network``, ``small_pod_range``, ``pod_addresses``, ``survives_restart``:
        the teardowns of two pods die mid-way. A new plugin object on the same settings sets
        the first up again (it gets an address, on its ``eth0``), then new pods fill the
        range; set up again, the second either gets an address no other pod has or is
        refused with :class:`kcore.TemporaryError` without freeing anyone's address. Once
        every pod is torn down, ``size`` pods fit again."""
        settings, size, crash, restarts, h = await _crash_bed(
            network_factory, small_pod_range, crash_network
        )
        a = await restarts.setup(await h.netns())
        b = await restarts.setup(await h.netns())
        await restarts.close()
        for pod in (a, b):
            await crash(settings, "teardown_pod", pod.uid, pod.ns.path)
        second = await restarts.open()
        a_again = await restarts.setup(a.ns, a.uid)
        await Harness(second).assert_on_interface(a_again)
        pods = [a_again]
        while len(pods) <= size and (pod := await restarts.try_pod(pods)) is not None:
            pods.append(pod)
        assert len(pods) <= size, f"{len(pods)} pods fit in a range with room for {size}"
        try:
            b_again = await restarts.setup(b.ns, b.uid)
        except TemporaryError:
            await restarts.assert_full("after a refused set-up of a pod whose teardown died")
        else:
            assert_distinct([*pods, b_again], "after a crashed teardown")
            pods.append(b_again)
        for uid, path in list(restarts.uids.items()):
            await second.teardown_pod(uid, path)
        restarts.uids.clear()
        await restarts.fill(size)
        await restarts.assert_full("after every pod was torn down and the range refilled")


__all__ = [
    "CONCURRENT_PODS",
    "CONTAINER_PORT",
    "MAX_SMALL_RANGE",
    "REPEATS",
    "RESTARTS",
    "WAIT_TIMEOUT",
    "Harness",
    "NetworkConformance",
    "Pod",
    "check_answer",
    "require",
]
