"""The controller manager: every controller contribution, one set of informers, one leader.

:class:`ControllerManager` campaigns for the Lease (see :mod:`kcore.controllers.leader`);
while it leads it makes one :class:`~kcore.controllers.SharedInformers` for the term, and
runs each controller in its own supervised task: a :class:`~kcore.controllers.Reconciler`
through a :class:`~kcore.controllers.ReconcilerRunner`, anything else through the
:class:`~kcore.interfaces.Controller` protocol's ``run(ctx, stop)``. A controller that
crashes (or returns before it was told to stop) is restarted after a back-off (1 s doubling
to 60 s, reset after a minute of running) while the others keep going. When the Lease is
lost every controller is stopped and the informers with them; the manager then campaigns
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from kcore.controllers.informers import SharedInformers
from kcore.controllers.leader import LeaderElectionConfig, LeaderElector, _sleep_unless
from kcore.controllers.reconciler import Reconciler, ReconcilerRunner
from kcore.interfaces import ControllerContext

log = structlog.get_logger("kcore.controllers.manager")

_DEFAULT = LeaderElectionConfig()


class ControllerManager:
    """Runs ``controllers`` (Reconcilers and Controller-protocol objects) against ``api``.

    ``leader_election``: the Lease's settings, or ``None`` to act without electing (one
    manager per store only). ``clock`` (wall-clock seconds) goes to each controller's
    context.
    """

    def __init__(
        self,
        api: Any,
        controllers: Iterable[Any],
        settings: Any = None,
        clock: Callable[[], float] | None = None,
        *,
        leader_election: LeaderElectionConfig | None = _DEFAULT,
        node_name: str | None = None,
        restart_backoff: tuple[float, float] = (1.0, 60.0),
        stop_grace: float = 10.0,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.api = api
        self.extra = dict(extra or {})
        """Given to every controller as ``ctx.extra`` (each gets its own copy); the daemon
        puts the loaded plugins' scheduler steps there (``scheduler_filters``,
        ``scheduler_scores``)."""
        self.controllers = list(controllers)
        names = [_name(c) for c in self.controllers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"controller names must be unique: {', '.join(duplicates)}")
        self.settings = settings
        self.clock = clock or time.time
        self.node_name = node_name
        self.restart_backoff = restart_backoff
        self.stop_grace = stop_grace
        self.elector = LeaderElector(api, leader_election) if leader_election is not None else None
        self.informers: SharedInformers | None = None
        """The current term's informers (``None`` while not leading)."""
        self.runners: dict[str, ReconcilerRunner] = {}
        """The current term's runner of each Reconciler, by name (for their stats)."""
        self.restarts: dict[str, int] = dict.fromkeys(names, 0)
        self.terms = 0
        """How many leadership terms this manager has run."""
        self._leading = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        """True while this manager runs its controllers."""
        return self._leading

    # -- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Campaign and lead until ``stop`` (or :meth:`stop`) is set."""
        stop = stop or self._stop
        if stop is not self._stop:
            waiter = asyncio.ensure_future(stop.wait())
            waiter.add_done_callback(lambda _: self._stop.set())
        try:
            if self.elector is None:
                await self._lead(self._stop)
            else:
                await self.elector.run(self._stop, self._lead, grace=self.stop_grace)
        finally:
            if stop is not self._stop:
                waiter.cancel()

    def start(self) -> asyncio.Task[None]:
        """Run in a background task (stop it with :meth:`stop`)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop(self) -> None:
        """Stop every controller, the informers, and release the Lease."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.stop_grace + 5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                log.exception("controller manager failed")

    async def _lead(self, term: asyncio.Event) -> None:
        """One leadership term: run every controller until ``term`` is set."""
        self.terms += 1
        informers = SharedInformers(self.api)
        self.informers = informers
        self.runners = {}
        self._leading = True
        ctx = ControllerContext(
            api=self.api,
            settings=self.settings,
            node_name=self.node_name,
            clock=self.clock,
            informers=informers,
        )
        log.info("running controllers", controllers=[_name(c) for c in self.controllers])
        tasks = [
            asyncio.ensure_future(
                self._supervise(c, dataclasses.replace(ctx, extra=dict(self.extra)), term)
            )
            for c in self.controllers
        ]
        try:
            informers.start()
            await term.wait()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.stop_grace)
                for task in pending:
                    task.cancel()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await informers.stop()
            self._leading = False
            self.informers = None

    async def _supervise(
        self, controller: Any, ctx: ControllerContext, term: asyncio.Event
    ) -> None:
        name = _name(controller)
        low, high = self.restart_backoff
        delay = low
        loop = asyncio.get_running_loop()
        while not term.is_set():
            started = loop.time()
            try:
                if isinstance(controller, Reconciler):
                    runner = ReconcilerRunner(controller, ctx)
                    self.runners[name] = runner
                    await runner.run(term)
                else:
                    await controller.run(ctx, term)
                if term.is_set():
                    return
                log.warning(
                    "controller returned before it was stopped", controller=name, restart_in=delay
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller crashed", controller=name, restart_in=delay)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            if loop.time() - started > 60.0:
                delay = low
            if await _sleep_unless(term, delay):
                return
            delay = min(delay * 2, high)


def _name(controller: Any) -> str:
    return str(getattr(controller, "name", "") or type(controller).__name__)


__all__ = ["ControllerManager"]
