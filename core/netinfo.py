"""Facts about this host's network that the node agent and network plugins share (read from
the kernel; nothing is sent)."""

from __future__ import annotations

import fcntl
import socket
import struct

LOOPBACK = "127.0.0.1"
SIOCGIFADDR = 0x8915


def primary_address(route_table: str = "/proc/net/route") -> tuple[str, str]:
    """(interface, IPv4 address) of the interface that holds the default route, read from
    the routing table and the interface itself (nothing is sent); the loopback address
    when there is no default route or its interface has no IPv4 address."""
    try:
        with open(route_table) as f:
            rows = [line.split() for line in f.read().splitlines()[1:]]
    except OSError:
        rows = []
    for row in rows:
        if len(row) < 8 or row[1] != "00000000" or row[7] != "00000000":
            continue  # not a default route (destination and mask 0)
        interface = row[0]
        request = struct.pack("256s", interface.encode()[:15])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
        except OSError:
            continue
        return interface, socket.inet_ntoa(reply[20:24])
    return "lo", LOOPBACK
