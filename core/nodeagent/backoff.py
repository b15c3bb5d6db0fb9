"""Per-key exponential back-off, as client-go's ``flowcontrol.Backoff`` that the kubelet
uses for container restarts and image pulls: 10 s doubling to 5 min, forgotten after
twice the maximum without a failure."""

from __future__ import annotations

from dataclasses import dataclass

INITIAL = 10.0
MAXIMUM = 300.0


@dataclass
class _Entry:
    delay: float
    last: float


class Backoff:
    """Times are seconds of one clock (the kubelet uses the container's ``finishedAt``)."""

    def __init__(self, initial: float = INITIAL, maximum: float = MAXIMUM) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, at: float) -> bool:
        return at - entry.last > 2 * self.maximum

    def remaining(self, key: str, since: float, now: float) -> float:
        """Seconds still to wait after an event at ``since`` (0: go ahead)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            return 0.0
        return max(0.0, entry.delay - (now - since))

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: str, at: float) -> float:
        """Record a failure at ``at``; return the delay before the next attempt."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, at):
            entry = self._entries[key] = _Entry(self.initial, at)
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last = at
        return entry.delay

    def forget(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


__all__ = ["INITIAL", "MAXIMUM", "Backoff"]
