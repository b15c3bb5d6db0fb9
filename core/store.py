"""The store contract: a revisioned key-value store that every store backend implements.

The model is etcd's. Keys are ``str`` (the API server uses ``/registry/<resource>/<ns>/<name>``),
values are opaque ``bytes``. The store keeps one global revision: an integer that is 0 for a
new, empty store and grows with each successful create, update or delete (by exactly one
when nothing else writes to the backend; a shared etcd may make it jump).
The revision of a write becomes the key's ``revision`` (etcd's mod revision), which the API
server hands out as ``metadata.resourceVersion``.

Semantics every backend must keep (the store conformance suite checks each):

* ``create`` fails with :class:`~kcore.errors.AlreadyExists` when the key holds a value.
* ``update`` and ``delete`` take ``expected_revision``; when given and not the key's
  current revision they fail with :class:`~kcore.errors.Conflict` and change nothing.
  A missing key is :class:`~kcore.errors.NotFound` (also with ``expected_revision=None``).
* ``list`` reads a consistent snapshot: every key under a prefix as of one revision.
  ``limit=0`` gives no items; ``more`` then says whether there are any.
  Reading at a revision older than the last compaction raises :class:`~kcore.errors.Expired`.
* ``watch`` yields, in revision order and each exactly once, every change under a prefix
  with a revision greater than ``after_revision``. A revision that has been compacted
  raises :class:`~kcore.errors.Expired` (before the first event, or later when a watcher
  falls so far behind that its backlog is dropped).
* ``compact(R)`` forgets history older than R, as etcd does: afterwards ``list`` at a
  revision below R, and ``watch`` after a revision below R - 1 (it would need events
  older than R), raise ``Expired``; reads at R or later and current values are unaffected.
* A key that is not a ``str`` of valid Unicode text, a value that is not bytes, a
  negative ``limit`` or ``list`` at a future revision is :class:`~kcore.errors.Invalid`.
* A write the storage cannot take (a full disk, a lost connection) raises
  :class:`~kcore.errors.TemporaryError` when it may pass later, and changes nothing: no
  value, no revision, no watch event.
* After ``close()`` every call raises :class:`~kcore.errors.PermanentError`; closing again
  is harmless. ``close()`` returns once the calls made before it have finished.
* Every failure reaches the caller as a :class:`~kcore.errors.KcoreError`; one caused by
  the backend (an I/O error, damaged data, a dead connection or worker) chains the
  backend's exception as ``__cause__``. Once the backend has died, every call raises
  ``PermanentError`` or ``TemporaryError`` and open watches end with one of them, never as
  if they had been closed. Damaged data is refused with ``PermanentError``, never handed
  out as if it were whole.
* A watcher that falls behind gets every event or a gapless prefix and then ``Expired``.
  A backend may say how many unread events it keeps per watch in an ``int`` attribute
  ``watch_backlog``.
* A ``durable`` store made again on the same settings (a restarted daemon) has every
  acknowledged write, its history and compaction, and goes on from the same revision. A
  second store made while the first is open refuses with ``PermanentError`` or shares the
  data (each sees the other's writes, no revision is given out twice); data in a format of
  a newer version is refused with ``PermanentError``.

All methods are coroutines; a backend keeps blocking work off the event loop.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Capability(enum.StrEnum):
    """Optional store abilities. A backend lists those it has in ``capabilities``; the
    conformance suite skips the checks of any it lacks, naming the capability."""

    LIST_AT_REVISION = "list_at_revision"
    """``list(revision=N)`` for an N older than the current revision."""
    COMPACTION = "compaction"
    """``compact`` forgets history and later reads of it raise ``Expired``."""
    DURABLE = "durable"
    """An acknowledged write survives a crash of the process."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key's value as of some revision."""

    key: str
    value: bytes
    revision: int
    """The revision of the write that produced this value (etcd's mod revision)."""
    create_revision: int
    """The revision of the create that started this key's current life."""


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For ``DELETED``, ``kv.value`` is the value just before the delete and
    ``kv.revision`` the revision of the delete itself."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None
    """The value before this change; ``None`` for ``ADDED``."""

    @property
    def revision(self) -> int:
        return self.kv.revision


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    """Sorted by key."""
    revision: int
    """The store revision the snapshot was read at."""
    more: bool = False
    """True when ``limit`` cut the result short; continue with ``start_after=items[-1].key``."""


@runtime_checkable
class Store(Protocol):
    """What a store backend offers. Obtained from the ``kcore_store`` slot hook."""

    name: str
    capabilities: frozenset[Capability]

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Store ``value`` under a new ``key``; return it with its new revision."""
        ...

    async def get(self, key: str) -> KeyValue:
        """Return the current value of ``key`` or raise ``NotFound``."""
        ...

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        """Return the keys starting with ``prefix`` as of ``revision`` (default: now),
        sorted by key, at most ``limit`` of them, beginning after key ``start_after``."""
        ...

    async def update(
        self, key: str, value: bytes, *, expected_revision: int | None = None
    ) -> KeyValue:
        """Replace the value of an existing ``key``; compare-and-swap on ``expected_revision``."""
        ...

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        """Delete ``key``; return its last value with the revision of the delete."""
        ...

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[WatchEvent]:
        """Changes under ``prefix`` with a revision greater than ``after_revision``.

        Returns an async iterator (typically an async generator; ``aclose()`` ends it).
        Iteration raises ``Expired`` if ``after_revision`` is older than the compacted
        revision or the watcher fell too far behind.
        """
        ...

    async def current_revision(self) -> int:
        """The revision of the last write (0 for an empty, new store)."""
        ...

    async def compact(self, revision: int) -> None:
        """Forget history older than ``revision`` (see the module docstring). Raises
        ``Expired`` if already compacted past it, ``Invalid`` for a future revision."""
        ...

    async def close(self) -> None:
        """Release connections and end open watches (they stop iterating)."""
        ...


__all__ = ["Capability", "EventType", "KeyValue", "ListResult", "Store", "WatchEvent"]
