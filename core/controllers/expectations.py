"""Expectations: what a controller is waiting to see after its own writes.

A controller that just created 3 pods must not create 3 more because its cache has not seen
them yet. Before acting it records what it expects (:meth:`Expectations.expect_creations`,
:meth:`~Expectations.expect_deletions`); its informer handlers count them down as the events
arrive (:meth:`~Expectations.creation_observed`, :meth:`~Expectations.deletion_observed`);
it skips acting on a key until :meth:`~Expectations.satisfied`, which is also true once
the record is 5 minutes old (a lost event must not stall a controller forever), as in
Kubernetes' ``ControllerExpectations`` and ``UIDTrackingControllerExpectations``.

Deletions are tracked by identity (a pod's uid or key), so that one pod seen twice (first
with ``deletionTimestamp``, then gone) counts once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EXPECTATIONS_TIMEOUT = 300.0


@dataclass
class _Record:
    creations: int = 0
    deletions: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    """Expected creations (a count) and deletions (identities) per controller key."""

    def __init__(
        self, *, timeout: float = EXPECTATIONS_TIMEOUT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def expect_creations(self, key: str, count: int) -> None:
        """Expect ``count`` creations for ``key`` (replacing what was expected)."""
        self._records[key] = _Record(creations=max(count, 0), since=self.clock())

    def expect_deletions(self, key: str, ids: Iterable[str]) -> None:
        """Expect the objects ``ids`` to be deleted (replacing what was expected)."""
        self._records[key] = _Record(deletions=set(ids), since=self.clock())

    def creation_observed(self, key: str) -> None:
        """One expected creation happened (or will not: a create that failed)."""
        record = self._records.get(key)
        if record is not None and record.creations > 0:
            record.creations -= 1

    def deletion_observed(self, key: str, id: str) -> None:
        """``id`` is gone or going (or its deletion failed); repeats are harmless."""
        record = self._records.get(key)
        if record is not None:
            record.deletions.discard(id)

    def pending(self, key: str) -> tuple[int, frozenset[str]]:
        """``(creations, deletions)`` still expected for ``key``."""
        record = self._records.get(key)
        if record is None:
            return 0, frozenset()
        return record.creations, frozenset(record.deletions)

    def satisfied(self, key: str) -> bool:
        """True when nothing is pending for ``key``, or the record has expired."""
        record = self._records.get(key)
        if record is None:
            return True
        if record.creations <= 0 and not record.deletions:
            return True
        return self.clock() - record.since > self.timeout

    def forget(self, key: str) -> None:
        """Drop ``key``'s record (its object is gone)."""
        self._records.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._records


__all__ = ["EXPECTATIONS_TIMEOUT", "Expectations"]
