"""Leader election over a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection``.

Candidates share one Lease (by default ``kube-system/kcore-controller-manager``). The holder
renews ``spec.renewTime`` every ``retry_period``; if it cannot renew for ``renew_deadline`` it
stops leading. Another candidate takes the Lease once it has seen the same record unchanged
for ``leaseDurationSeconds`` of *its own* clock (so clock skew between machines does not
matter), or at once when the holder released it on a clean stop (empty holder). Every write
is a compare-and-swap on the Lease's resourceVersion, so two candidates never both win.

kube-controller-manager's timings are the defaults: lease 15 s, renew deadline 10 s,
retry 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from kcore.errors import AlreadyExists, Conflict, KcoreError, NotFound

log = structlog.get_logger("kcore.controllers.leader")

LEASE_API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Where the Lease lives, who we are and how fast we act (seconds)."""

    name: str = "kcore-controller-manager"
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str | None = None
    """Default: ``<hostname>_<random uuid>``, as kube-controller-manager."""
    release_on_stop: bool = True
    """Clear the holder on a clean stop, so a successor need not wait for the Lease to expire."""

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")


def _micro_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; ``True`` if ``stop`` was set meanwhile (or before)."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class LeaderElector:
    """One candidate. :meth:`run` campaigns, calls ``lead`` while leading, and campaigns
    again after losing the Lease, until ``stop`` is set."""

    def __init__(
        self,
        api: Any,
        config: LeaderElectionConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.config = config or LeaderElectionConfig()
        self.identity = self.config.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.clock = clock
        self.wall_clock = wall_clock
        self.is_leader = False
        self.transitions = 0
        """How many times this candidate became the leader."""
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._log = log.bind(
            lease=f"{self.config.namespace}/{self.config.name}", identity=self.identity
        )

    # -- one attempt ----------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One compare-and-swap on the Lease: ``True`` if we hold it afterwards."""
        cfg = self.config
        now = _micro_time(self.wall_clock())
        duration = max(1, math.ceil(cfg.lease_duration))
        try:
            lease = await self.api.get(
                LEASE_API_VERSION, "Lease", cfg.name, namespace=cfg.namespace
            )
        except NotFound:
            body = {
                "apiVersion": LEASE_API_VERSION,
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": duration,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self.api.create(body)
            except (AlreadyExists, Conflict):
                return False
            self._observe(created, force=True)
            return True
        spec = lease.get("spec") or {}
        self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        held_by_us = holder == self.identity
        if holder and not held_by_us:
            held_for = spec.get("leaseDurationSeconds") or duration
            if self._observed_at + held_for > self.clock():
                return False  # someone else holds an unexpired lease
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": duration,
            "renewTime": now,
        }
        if not held_by_us:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + 1
        try:
            updated = await self.api.update({**lease, "spec": new_spec})
        except (Conflict, NotFound):
            return False
        self._observe(updated, force=True)
        return True

    def _observe(self, lease: dict[str, Any], *, force: bool = False) -> None:
        spec = lease.get("spec") or {}
        record = tuple(
            spec.get(k)
            for k in (
                "holderIdentity",
                "leaseDurationSeconds",
                "acquireTime",
                "renewTime",
                "leaseTransitions",
            )
        )
        if force or record != self._observed:
            self._observed = record
            self._observed_at = self.clock()

    async def release(self) -> None:
        """Give the Lease up (empty holder), if we hold it."""
        if not self.is_leader:
            return
        self.is_leader = False
        cfg = self.config
        try:
            lease = await self.api.get(
                LEASE_API_VERSION, "Lease", cfg.name, namespace=cfg.namespace
            )
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = _micro_time(self.wall_clock())
            spec = {**(lease.get("spec") or {}), "leaseDurationSeconds": 1, "renewTime": now}
            spec.pop("holderIdentity", None)
            await self.api.update({**lease, "spec": spec})
            self._log.info("released the lease")
        except (KcoreError, OSError) as exc:
            self._log.warning("could not release the lease", error=str(exc))

    # -- campaigning and leading ----------------------------------------------------------

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every ``retry_period`` (with jitter) until we hold the Lease (``True``) or
        ``stop`` is set (``False``)."""
        first = True
        while not stop.is_set():
            try:
                if await self.try_acquire_or_renew():
                    self.is_leader = True
                    self.transitions += 1
                    self._log.info("became the leader")
                    return True
                if first:
                    self._log.info("waiting for the lease", holder=(self._observed or ("",))[0])
                    first = False
            except (KcoreError, OSError) as exc:
                self._log.warning("could not acquire the lease", error=str(exc))
            jitter = self.config.retry_period * random.uniform(0, 0.2)
            if await _sleep_unless(stop, self.config.retry_period + jitter):
                return False
        return False

    async def renew(self, stop: asyncio.Event) -> None:
        """Renew every ``retry_period`` until ``stop`` is set (returns) or renewing has
        failed for ``renew_deadline`` or another holder shows up (returns, not leading)."""
        cfg = self.config
        last = self.clock()
        while not await _sleep_unless(stop, cfg.retry_period):
            left = cfg.renew_deadline - (self.clock() - last)
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(), max(left, 0.001))
            except (KcoreError, OSError, TimeoutError) as exc:
                self._log.warning("could not renew the lease", error=str(exc) or type(exc).__name__)
                ok = False
            if ok:
                last = self.clock()
                continue
            other = self._observed is not None and self._observed[0] not in (
                None,
                "",
                self.identity,
            )
            if other or self.clock() - last >= cfg.renew_deadline:
                self.is_leader = False
                self._log.warning(
                    "lost the lease", holder=self._observed[0] if self._observed else None
                )
                return

    async def run(
        self,
        stop: asyncio.Event,
        lead: Callable[[asyncio.Event], Awaitable[None]],
        *,
        grace: float = 10.0,
    ) -> None:
        """Until ``stop``: acquire, run ``lead(term_stop)`` while renewing, and when the Lease
        is lost set ``term_stop`` (``lead`` gets ``grace`` seconds to return, then is
        cancelled) and campaign again. On ``stop`` the Lease is released."""
        try:
            while await self.acquire(stop):
                term = asyncio.Event()
                leading = asyncio.ensure_future(lead(term))
                renewing = asyncio.ensure_future(self.renew(stop))
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {leading, renewing, stopped}, return_when=asyncio.FIRST_COMPLETED
                )
                term.set()
                for task in (renewing, stopped):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                done, _ = await asyncio.wait({leading}, timeout=grace)
                if not done:
                    leading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await leading
                    except Exception:
                        self._log.exception("leading failed")
                if stop.is_set():
                    break
                if self.is_leader:  # lead() returned by itself: hand the lease over
                    await self.release()
                    await _sleep_unless(stop, self.config.retry_period)
        finally:
            if self.config.release_on_stop:
                await self.release()
            self.is_leader = False


__all__ = ["LEASE_API_VERSION", "LeaderElectionConfig", "LeaderElector"]
