"""Entering a pod's network namespace from one thread, and the few rtnetlink requests of a
pod's set-up and teardown, over a plain netlink socket.

A netlink socket belongs to the network namespace of the thread that created it, for good.
So a socket inside a pod's namespace is made by a worker thread that ``setns()``-es into
it, creates the socket and ``setns()``-es straight back (:func:`entered`); the socket then
works from any thread. That costs microseconds, where pyroute2's own netns helpers start a
helper process (6-19 ms, shared/reference/dependencies.md section 2).

Why not pyroute2 for these requests: each pyroute2 request costs 0.5-1.5 ms on this kind of
machine (its asyncio machinery, and encoding nested attributes in Python), about 8 ms for
the six requests of one pod; over a plain socket the same six take about 1.2 ms, most of it
the kernel creating the veth pair. pyroute2 still does the node's side (``node.py``), where
decoding full answers matters more than speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
LOOPBACK_INDEX = 1
"""The loopback device is the first one registered in every network namespace."""

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread (only) into the namespace ``fd`` refers to."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_id(fd: int) -> tuple[int, int]:
    """(device, inode) of a namespace file: equal ids mean the same namespace."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


_thread = threading.local()


@contextlib.contextmanager
def entered(ns_fd: int) -> Iterator[None]:
    """Run the block inside the network namespace ``ns_fd``, on this thread only.

    Sockets created in the block stay in that namespace. Refused on a thread that runs an
    event loop. Should the way back ever fail, the thread refuses every later use.
    """
    if getattr(_thread, "stranded", False):
        raise RuntimeError("this thread is stuck in a pod's network namespace")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("setns() on an event loop's thread")
    home = getattr(_thread, "home", None)
    if home is None:
        home = _thread.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    setns(ns_fd)
    try:
        yield
    finally:
        try:
            setns(home)
        except OSError as exc:
            _thread.stranded = True
            raise RuntimeError(f"could not leave a pod's network namespace: {exc}") from exc


# --- rtnetlink ------------------------------------------------------------------------
# Constants from linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h.

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended ack attributes follow
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24

IFF_UP = 0x1
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_GATEWAY = 5
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg
_ATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


def _attr(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _name(value: str) -> bytes:
    return value.encode() + b"\0"


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        found.setdefault(kind & 0x3FFF, data[offset + _ATTR.size : offset + size])
        offset += (size + 3) & ~3
    return found


def _find_u32(data: bytes, offset: int, end: int, wanted: int) -> int:
    """The value of the first u32 attribute ``wanted``, or 0 (a link's answer has some
    sixty attributes: decoding them all costs 0.1 ms)."""
    while offset + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        if kind & 0x3FFF == wanted:
            return _U32.unpack_from(data, offset + _ATTR.size)[0]
        offset += (size + 3) & ~3
    return 0


class Rtnl:
    """A route netlink socket in the namespace of the thread that creates it; requests
    raise ``OSError`` with the kernel's errno (and its extended message, when it gives
    one). Use from one thread at a time."""

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, self._seq, 0) + body)
        return self._seq

    def _reply(self, seq: int, what: str) -> tuple[int, bytes, int, int]:
        """The first message answering ``seq``: (type, buffer, start of payload, end)."""
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                size, kind, flags, msg_seq, _pid = _HEADER.unpack_from(data, offset)
                if size < _HEADER.size:
                    break
                if msg_seq == seq:
                    start, end = offset + _HEADER.size, offset + size
                    if kind == NLMSG_ERROR:
                        (code,) = _I32.unpack_from(data, start)
                        if code:
                            raise _error(-code, what, data, start, end, flags)
                    return kind, data, start, end
                offset += (size + 3) & ~3

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        """Send one request and wait for the kernel's acknowledgement."""
        seq = self._send(kind, flags | NLM_F_REQUEST | NLM_F_ACK, body)
        self._reply(seq, what)

    # -- the requests of a pod's wiring -----------------------------------------------------

    def link(self, name: str) -> tuple[int, int, int] | None:
        """(index, flags, master index or 0) of the link ``name``, or None."""
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
        seq = self._send(RTM_GETLINK, NLM_F_REQUEST, body)
        try:
            _kind, data, start, end = self._reply(seq, f"look up link {name}")
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        _family, _type, index, flags, _change = _IFINFO.unpack_from(data, start)
        master = _find_u32(data, start + _IFINFO.size, end, IFLA_MASTER)
        return index, flags, master

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, master: int) -> None:
        """Create the veth pair ``name``/``peer``: ``name`` here, attached to ``master`` and
        up; ``peer`` created directly inside the namespace ``peer_netns_fd``, down (the
        kernel refuses to bring a peer up before both halves exist)."""
        peer_info = (
            _IFINFO.pack(0, 0, 0, 0, 0)
            + _attr(IFLA_IFNAME, _name(peer))
            + _attr(IFLA_NET_NS_FD, _U32.pack(peer_netns_fd))
        )
        linkinfo = _attr(IFLA_INFO_KIND, _name("veth")) + _attr(
            IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info)
        )
        body = (
            _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP)
            + _attr(IFLA_IFNAME, _name(name))
            + _attr(IFLA_MASTER, _U32.pack(master))
            + _attr(IFLA_LINKINFO, linkinfo)
        )
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {name}")

    def set_master(self, name: str, master: int) -> None:
        body = (
            _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP)
            + _attr(IFLA_IFNAME, _name(name))
            + _attr(IFLA_MASTER, _U32.pack(master))
        )
        self.request(RTM_NEWLINK, 0, body, f"attach {name}")

    def set_up(self, index: int) -> None:
        body = _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)
        self.request(RTM_NEWLINK, 0, body, f"set link {index} up")

    def add_address(self, index: int, address: bytes, prefixlen: int) -> None:
        """Add the IPv4 ``address`` (4 bytes) with its prefix route."""
        body = (
            _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
            + _attr(IFA_LOCAL, address)
            + _attr(IFA_ADDRESS, address)
        )
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"add address {socket.inet_ntoa(address)}/{prefixlen}",
        )

    def add_route(self, gateway: bytes, dst: bytes = b"", dst_len: int = 0) -> None:
        """Add an IPv4 route to ``dst/dst_len`` (default: the default route) via ``gateway``."""
        body = _RTMSG.pack(
            socket.AF_INET,
            dst_len,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
            0,
        )
        if dst_len:
            body += _attr(RTA_DST, dst)
        body += _attr(RTA_GATEWAY, gateway)
        self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"add route via {socket.inet_ntoa(gateway)}",
        )

    def delete_link(self, name: str) -> bool:
        """Delete the link ``name`` (and a veth's peer with it); False when it is absent."""
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
        try:
            self.request(RTM_DELLINK, 0, body, f"delete link {name}")
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True


def _error(code: int, what: str, data: bytes, start: int, end: int, flags: int) -> OSError:
    text = os.strerror(code)
    # nlmsgerr is the error code and the request's header (NETLINK_CAP_ACK: no payload).
    tlv_start = start + _I32.size + _HEADER.size
    if flags & NLM_F_ACK_TLVS and tlv_start < end:
        message = _attrs(data, tlv_start, end).get(NLMSGERR_ATTR_MSG)
        if message:
            detail = message.rstrip(b"\0").decode(errors="replace")
            text = f"{text} ({detail})"
    return OSError(code, f"{what}: {text}")
