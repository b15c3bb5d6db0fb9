"""What the net_bridge node services (service proxy, pod routes) wait on: their informers'
changes, and whichever comes first of some work and the service's stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any


def wake_on_changes(informers: Iterable[Any], changed: asyncio.Event) -> None:
    """Set ``changed`` on every add, update and delete any of ``informers`` sees."""

    def wake(*_: Any) -> None:
        changed.set()

    for informer in informers:
        informer.on_add(wake)
        informer.on_update(wake)
        informer.on_delete(wake)


async def until_first(
    work: Awaitable[Any], stopping: asyncio.Future[Any], timeout: float | None = None
) -> None:
    """Wait for ``work`` or ``stopping``, at most ``timeout`` seconds; ``work`` is cancelled
    when it has not finished then."""
    future = asyncio.ensure_future(work)
    await asyncio.wait([future, stopping], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    future.cancel()
