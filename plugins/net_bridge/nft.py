"""The node's nftables table, and running nft.

One table, ``ip <name>``::

    map hostports      { inet_proto . inet_service : ipv4_addr . inet_service }  # any address
    map hostports_ip   { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
    chain hostports    { dnat through hostports_ip, then through hostports }
    chain prerouting   { nat hook prerouting:  to a local address -> jump hostports }
    chain output       { nat hook output:      to a local address -> jump hostports }
    chain postrouting  { nat hook postrouting: masquerade (below) }

A pod's host ports are elements of the two maps, so set-up and teardown add and remove
elements in one transaction and never look rules up by handle. ``prerouting`` catches
packets from other machines and from pods, ``output`` the node's own, 127.0.0.1 included
(the bridge has ``route_localnet`` on, and such a connection leaves masqueraded, since the
pod could not answer 127.0.0.1). Masquerade also covers a pod reaching a host port of its
own node (hairpin) and, as the issue asks, pod traffic leaving the cluster range.

nft runs through libnftables (the library behind the ``nft`` command, through ctypes:
0.2 ms a call) and falls back to ``nft -f -`` (about 5 ms: a process) where the library
cannot be loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import threading
from collections.abc import Iterable
from ipaddress import IPv4Network

from kcore.plugins.net_bridge.pods import HostPort

ANY_MAP = "hostports"
IP_MAP = "hostports_ip"


class NftError(Exception):
    """nft refused a script; the message is nft's."""


def table_script(
    table: str,
    pod_cidr: IPv4Network,
    cluster_cidr: IPv4Network,
    elements: Iterable[tuple[str, HostPort]],
) -> str:
    """Create the table if it is missing, replace its rules and set its maps to
    ``elements`` ((pod address, host port) pairs), all in one transaction."""
    t = f"ip {table}"
    return "\n".join(
        [
            f"table {t} {{",
            f"  map {ANY_MAP} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}",
            f"  map {IP_MAP} {{ type ipv4_addr . inet_proto . inet_service"
            " : ipv4_addr . inet_service; }",
            "  chain hostports { }",
            "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }",
            "  chain output { type nat hook output priority -100; policy accept; }",
            "  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }",
            "}",
            f"flush chain {t} hostports",
            f"flush chain {t} prerouting",
            f"flush chain {t} output",
            f"flush chain {t} postrouting",
            f"flush map {t} {ANY_MAP}",
            f"flush map {t} {IP_MAP}",
            f"table {t} {{",
            "  chain hostports {",
            f"    dnat ip to ip daddr . meta l4proto . th dport map @{IP_MAP}",
            f"    dnat ip to meta l4proto . th dport map @{ANY_MAP}",
            "  }",
            "  chain prerouting { fib daddr type local jump hostports; }",
            "  chain output { fib daddr type local jump hostports; }",
            "  chain postrouting {",
            "    ct status dnat ip saddr 127.0.0.0/8 masquerade",
            f"    ct status dnat ip saddr {pod_cidr} ip daddr {pod_cidr} masquerade",
            f"    ip saddr {pod_cidr} ip daddr != {cluster_cidr} masquerade",
            "  }",
            "}",
            _elements("add", table, elements),
        ]
    )


def add_script(table: str, pod_ip: str, ports: Iterable[HostPort]) -> str:
    return _elements("add", table, ((pod_ip, p) for p in ports))


def delete_script(table: str, pod_ip: str, ports: Iterable[HostPort]) -> str:
    """Remove the elements whether or not they are there: adding an element that exists
    with the same value is no error, so add, then delete."""
    pairs = [(pod_ip, p) for p in ports]
    return _elements("add", table, pairs) + _elements("delete", table, pairs)


def drop_table_script(table: str) -> str:
    """Delete the table whether or not it exists."""
    return f"table ip {table} {{ }}\ndelete table ip {table}\n"


def _elements(verb: str, table: str, pairs: Iterable[tuple[str, HostPort]]) -> str:
    any_ip: list[str] = []
    one_ip: list[str] = []
    for pod_ip, p in pairs:
        key = f"{p.protocol} . {p.host_port}"
        value = f" : {pod_ip} . {p.container_port}" if verb == "add" else ""
        if p.host_ip:
            one_ip.append(f"{p.host_ip} . {key}{value}")
        else:
            any_ip.append(f"{key}{value}")
    lines = []
    for name, items in ((ANY_MAP, any_ip), (IP_MAP, one_ip)):
        if items:
            lines.append(f"{verb} element ip {table} {name} {{ {', '.join(items)} }}\n")
    return "".join(lines)


class Nft:
    """Runs nft scripts, one at a time (a libnftables context is not thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._lib = None
        self._ctx = None
        self._binary = shutil.which("nft")
        lib = _load_libnftables()
        if lib is not None:
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            ctx = lib.nft_ctx_new(0)
            if ctx:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                self._lib, self._ctx = lib, ctx
        if self._ctx is None and self._binary is None:
            raise NftError("neither libnftables nor the nft command is installed")

    @property
    def via(self) -> str:
        return "libnftables" if self._ctx is not None else str(self._binary)

    def run(self, script: str) -> str:
        """Run ``script`` as one transaction; return nft's output."""
        with self._lock:
            if self._closed:
                raise NftError("closed")
            if self._ctx is not None:
                rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
                out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
                err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
                if rc != 0:
                    raise NftError(err.strip() or f"nft failed ({rc})")
                return out
            done = subprocess.run(
                [str(self._binary), "-f", "-"], input=script.encode(), capture_output=True
            )
            if done.returncode != 0:
                raise NftError(done.stderr.decode(errors="replace").strip())
            return done.stdout.decode(errors="replace")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


def _load_libnftables() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libnftables.so.1")
    except OSError:
        pass
    found = ctypes.util.find_library("nftables")  # slow (runs ldconfig): the rare case
    try:
        return ctypes.CDLL(found) if found else None
    except OSError:
        return None
