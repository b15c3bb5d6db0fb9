"""The node's side of the network, through pyroute2: the bridge with the gateway address,
the unreachable routes for the cluster's pod and service ranges, the sysctls; and the
inspections behind ``status``, ``check_pod`` and ``gc``.

Every function takes an ``IPRoute`` made on the calling thread (pyroute2 keeps its sockets
per thread) and runs on a worker thread, never on the event loop. pyroute2 itself is
imported when the plugin is created (it costs about 250 ms), not when this module is.
"""

from __future__ import annotations

import errno
import os
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from kcore.errors import PermanentError

UNREACHABLE_METRIC = 4242
"""Metric of the unreachable routes: above the connected route of the node's own pod CIDR
(metric 0), so a pod CIDR equal to the cluster CIDR still goes to the bridge."""


def _netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


def _code(exc: Exception) -> int:
    return getattr(exc, "code", 0) or getattr(exc, "errno", 0) or 0


def ensure_bridge(ipr: Any, name: str, mac: str, gateway: IPv4Address, prefixlen: int) -> int:
    """Make the bridge ``name`` exist, up, with ``gateway/prefixlen``; return its index."""
    NetlinkError = _netlink_error()
    found = ipr.link_lookup(ifname=name)
    if not found:
        try:
            ipr.link("add", ifname=name, kind="bridge", address=mac)
        except NetlinkError as exc:
            if _code(exc) != errno.EEXIST:
                raise
        found = ipr.link_lookup(ifname=name)
    index = found[0]
    link = ipr.get_links(index)[0]
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind != "bridge":
        raise PermanentError(f"net_bridge: {name} exists and is a {kind or 'device'}, not a bridge")
    addresses = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
    if (str(gateway), prefixlen) not in addresses:
        try:
            ipr.addr("add", index=index, address=str(gateway), prefixlen=prefixlen)
        except NetlinkError as exc:
            if _code(exc) != errno.EEXIST:
                raise
    ipr.link("set", index=index, state="up")
    return index


def bridge_state(ipr: Any, name: str, gateway: IPv4Address) -> str | None:
    """None when the bridge is up with the gateway address, else what is wrong."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        return f"bridge {name} does not exist"
    link = ipr.get_links(found[0])[0]
    if not link["flags"] & 1:
        return f"bridge {name} is down"
    addresses = {a.get("address") for a in ipr.get_addr(index=found[0], family=2)}
    if str(gateway) not in addresses:
        return f"bridge {name} lacks the gateway address {gateway}"
    return None


def delete_bridge(ipr: Any, name: str) -> None:
    NetlinkError = _netlink_error()
    for index in ipr.link_lookup(ifname=name):
        with suppress(NetlinkError):
            ipr.link("del", index=index)


def ports(ipr: Any, bridge: str) -> dict[str, int]:
    """The links attached to ``bridge``: name -> index."""
    found = ipr.link_lookup(ifname=bridge)
    if not found:
        return {}
    return {link.get("ifname"): link["index"] for link in ipr.link("dump", master=found[0])}


def ensure_unreachable(ipr: Any, cidr: IPv4Network) -> None:
    NetlinkError = _netlink_error()
    try:
        ipr.route(
            "add",
            dst=str(cidr),
            type="unreachable",
            priority=UNREACHABLE_METRIC,
            proto="static",
        )
    except NetlinkError as exc:
        if _code(exc) != errno.EEXIST:
            raise


def has_unreachable(ipr: Any, cidr: IPv4Network) -> bool:
    routes = ipr.route(
        "dump",
        family=2,
        table=254,
        dst_len=cidr.prefixlen,
        type="unreachable",
    )
    for route in routes:
        dst = route.get("dst")
        if (
            dst == str(cidr.network_address)
            and route["dst_len"] == cidr.prefixlen
            and route.get("priority") == UNREACHABLE_METRIC
        ):
            return True
    return False


def remove_unreachable(ipr: Any, cidr: IPv4Network) -> None:
    NetlinkError = _netlink_error()
    try:
        ipr.route("del", dst=str(cidr), type="unreachable", priority=UNREACHABLE_METRIC)
    except NetlinkError as exc:
        if _code(exc) not in (errno.ESRCH, errno.ENOENT):
            raise


def write_sysctl(path: str, value: str) -> None:
    with open(os.path.join("/proc/sys", path), "w") as f:
        f.write(value)


def read_sysctl(path: str) -> str:
    with open(os.path.join("/proc/sys", path)) as f:
        return f.read().strip()


def pod_side(ipr: Any, ip: str, gateway: str) -> str | None:
    """Inside a pod's namespace (``ipr`` opened there): None when eth0 is up with ``ip``
    and the default route goes via ``gateway``, else what is wrong."""
    found = ipr.link_lookup(ifname="eth0")
    if not found:
        return "the pod has no eth0"
    link = ipr.get_links(found[0])[0]
    if not link["flags"] & 1:
        return "the pod's eth0 is down"
    addresses = {a.get("address") for a in ipr.get_addr(index=found[0], family=2)}
    if ip not in addresses:
        return f"the pod's eth0 lacks {ip}"
    for route in ipr.route("dump", family=2, table=254):
        if route["dst_len"] == 0 and route.get("gateway") == gateway:
            return None
    return f"the pod has no default route via {gateway}"
