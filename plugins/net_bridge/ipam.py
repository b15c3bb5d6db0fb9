"""Pod addresses from the node's pod CIDR, kept on disk as CNI's host-local plugin does.

One file per allocated address, named by the address and holding its owner (the pod uid).
Creating that file with ``O_EXCL`` is the allocation, so two set-ups never get one address;
every change runs under a thread lock (the plugin's worker threads) and an ``flock`` on
``lock`` (an flock alone does not separate threads sharing one open file). kcore has one
plugin object per data dir at a time (the node agent's), so the flock only guards against
a second process started on the same data dir by mistake. ``last_reserved_ip`` makes
allocation go round the range instead of handing a just released address out again at
once (the ``address_rotation`` capability). Nothing is kept in memory, so a restarted
plugin sees exactly what the files say, its place in the rotation included.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

LAST_RESERVED = "last_reserved_ip"
LOCK = "lock"


class Exhausted(Exception):
    """Every address of the range is taken."""


class HostLocalIpam:
    """Allocates the addresses of ``subnet`` except its network, broadcast and ``reserved``
    addresses (the gateway)."""

    def __init__(self, directory: Path, subnet: IPv4Network, reserved: set[IPv4Address]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._mutex = threading.Lock()
        self._first = int(subnet.network_address) + 1
        self._count = max(0, subnet.num_addresses - 2)
        self._skip = {int(a) for a in reserved if self._first <= int(a) < self._first + self._count}
        self.size = self._count - len(self._skip)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def allocate(self, owner: str) -> IPv4Address:
        """A free address, now recorded as ``owner``'s; :class:`Exhausted` when none is left."""
        data = owner.encode()
        with self._locked():
            start = self._start_offset()
            count = self._count
            for step in range(count):
                number = self._first + (start + step) % count
                if number in self._skip:
                    continue
                address = IPv4Address(number)
                try:
                    fd = os.open(
                        self.directory / str(address),
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                        0o644,
                    )
                except FileExistsError:
                    continue
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                self._write_last(address)
                return address
        raise Exhausted(f"all {self.size} addresses are taken")

    def _start_offset(self) -> int:
        """Just after the last reserved address, or the start of the range."""
        try:
            last = int(IPv4Address((self.directory / LAST_RESERVED).read_text().strip()))
        except (OSError, ValueError):
            return 0
        offset = last - self._first + 1
        return offset if 0 <= offset < self._count else 0

    def _write_last(self, address: IPv4Address) -> None:
        # Overwritten in place, padded to a fixed width: truncating a file on ext4 makes
        # the kernel flush it at close (auto_da_alloc), 0.3 ms per set-up.
        fd = os.open(self.directory / LAST_RESERVED, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
        try:
            os.pwrite(fd, str(address).ljust(15).encode(), 0)
        finally:
            os.close(fd)

    def owner(self, address: IPv4Address | str) -> str | None:
        try:
            return (self.directory / str(address)).read_text()
        except FileNotFoundError:
            return None

    def claim(self, address: IPv4Address, owner: str) -> bool:
        """Record ``address`` as ``owner``'s again (a re-wired pod keeping its address);
        False when someone else holds it."""
        with self._locked():
            current = self.owner(address)
            if current == owner:
                return True
            if current is not None:
                return False
            (self.directory / str(address)).write_text(owner)
            return True

    def release(self, address: IPv4Address | str, owner: str) -> bool:
        """Free ``address`` if ``owner`` holds it."""
        with self._locked():
            if self.owner(address) != owner:
                return False
            _unlink(self.directory / str(address))
            return True

    def release_owner(self, owner: str) -> list[str]:
        """Free every address ``owner`` holds (a pod the plugin has no record of)."""
        with self._locked():
            freed = [a for a, o in self._scan().items() if o == owner]
            for address in freed:
                _unlink(self.directory / address)
        return freed

    def allocations(self) -> dict[str, str]:
        """Every allocated address (in this range or an earlier one) -> its owner."""
        with self._locked():
            return self._scan()

    def _scan(self) -> dict[str, str]:
        found = {}
        for entry in os.scandir(self.directory):
            try:
                ipaddress.IPv4Address(entry.name)
            except ValueError:
                continue
            with contextlib.suppress(FileNotFoundError):
                found[entry.name] = Path(entry.path).read_text()
        return found


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
