"""The controller conformance suite: what every controller contribution must do, checked
against a real API (the API server's object store on an in-memory ``store_sqlite``) with
a clock the suite moves.

Subclass :class:`ControllerConformance` in a ``test_*.py`` file. By default the controllers
under test are those the plugins named with ``--kcore-plugin`` contribute
(``kcore_controllers``); override :meth:`~ControllerConformance.make_controllers` to test
controllers directly::

    from kcore.conformance.suites.controllers import ControllerConformance

    class TestMyController(ControllerConformance):
        def make_controllers(self, plugins, settings):
            return [MyController()]        # fresh instances on every call

Describing a controller: scenarios
----------------------------------
Controllers differ, so each describes its world. A controller (a
:class:`~kcore.controllers.Reconciler` or any :class:`kcore.Controller`) may have a method
``conformance()`` returning one :class:`Scenario` or a list of them::

    class MyController(Reconciler):
        def conformance(self):
            from my_plugin.conformance import scenarios    # only the suite needs it
            return scenarios()

A controller without ``conformance()`` is skipped in every check, with the reason
``<name> lacks capability conformance scenarios``; that is how a controller declares that it
lacks the capability. A scenario may also leave out single checks: a check whose part is
missing (no ``perturbations``, no ``flip``, no ``owner`` ...) is skipped with a reason
naming that part, and :attr:`Scenario.missing` skips any check with the author's reason.

A scenario is a handful of async callables that get a :class:`ScenarioEnv` (the test's own
API client, which is "someone else" to the controller, a namespace of the test's own, the
virtual clock and a scratch dict):

* ``seed``: the inputs (a ReplicaSet, some Nodes ...);
* ``check``: what is not converged yet, as a list of readable problems (``[]``: converged).
  It should be strict: the right number of objects, each as the controller must make it,
  the status written;
* ``starts``: other starting states, each applied after ``seed`` and before the controller
  first runs: some of its objects missing, extra ones, half-updated ones;
* ``perturbations``: changes made under the running controller (delete one of its objects,
  change another);
* ``foreign``: makes objects that look like the controller's but belong to someone else
  and returns them; they must stay untouched;
* ``flip(env, i)``: flips an input (the ``i``-th time), for the write-rate check;
* ``owner``: an :class:`OwnerDeletion` naming the owner and its dependents;
* ``summary``: the converged state with names and uids left out, to compare the end states
  of two runs;
* ``companions``: other controllers the scenario needs running (the garbage collector for
  owner deletion, a stand-in kubelet that makes pods ready ...); their writes are not
  counted as the controller's;
* ``on_advance``: what keeps a converged world converged as time passes (node heartbeats).

A scenario's callables can also make the API refuse the controller under test:
``env.reject_writes("create", "Pod")`` makes every ``create`` of a Pod by the copies under
test fail with an internal server error (as an admission webhook or a quota saying no
would), until ``env.accept_writes()``; the test's own client and the companions are not
affected. A perturbation that rejects, then one that accepts again, checks how the
controller reports a failure and recovers from it (the ``check`` reads ``env.data`` to
know which state it is in).

The checks
----------
Every write of the controller under test goes through a recording transport (creates,
updates, patches, deletes and subresource posts, Events included), so writes are counted,
and can be made to fail or, after a number, to hang. Time is the scenario's virtual
clock: the controller's ``ctx.clock`` and the clock of its work queue (delays, back-off)
move only when the suite advances them, by ``Scenario.tick`` per round while it waits for
convergence. "Settled" means no request in flight, no key queued or being reconciled, and
no request for a moment of real time.

* **converges** from the seed and from each starting state (one test per state);
* **quiescent**: once converged, reconciling every object again (a resync), letting
  ``quiet_for`` virtual seconds pass, and starting a fresh copy of the controller on the
  converged state write nothing;
* **perturbations**: after each perturbation it converges back;
* **foreign**: objects that belong to someone else are not written by the controller and
  keep everything but their status (which companions may write);
* **two copies** started at once (as during a leader hand-over, when the old leader's last
  reconciles overlap the new one's) converge, write at most ``STORM_FACTOR`` times what one
  copy writes (plus ``STORM_SLACK``), write nothing on a resync, and converge again after
  the first perturbation. More than ``STORM_WRITES`` writes without settling fail any
  check at once, as a write storm;
* **owner deletion**, for each propagation policy the scenario allows: with
  ``Background`` and ``Foreground`` the dependents go, with ``Orphan`` they stay without a
  reference to the owner, and the owner goes; the controller creates nothing but Events
  after the delete;
* **flapping**: the input is flipped ``FLIPS`` times in quick succession; the controller
  writes at most ``Scenario.flip_cost`` per flip and converges;
* **back-off**: while every write of the controller fails (an internal server error; from
  the moment the clock has moved far enough for it to try one), it tries each object at
  most ``FROZEN_ATTEMPTS`` times while the clock stands still, and at most
  ``BACKOFF_ATTEMPTS`` times over ``BACKOFF_WINDOW`` virtual seconds moved in steps of
  ``BACKOFF_STEP`` (the runtime's exponential back-off tries about 14 times; a fixed
  one-second retry 30 times); once writes work again it converges;
* **restart**: a run cut off after half the writes an uninterrupted run makes (later
  writes hang, then the controller is stopped) and started again, with the same object
  (as the controller manager does at a new leadership term), converges to the same end
  state (``summary``) as the uninterrupted run.

A Reconciler's work queue is read to know when it is idle and to resync it; a plain
:class:`kcore.Controller` (the scheduler) is idle when it makes no request, and the
fresh-copy part of the quiescence check is what covers it.

Every test builds its own store, API and clients, and stops every controller and closes
every client and the store when it ends, also when it fails.

Helpers for scenario authors
----------------------------
* :func:`flip_between` makes a ``flip`` that patches one object back and forth::

      flip=flip_between(NODE, "n1", {"spec": {"unschedulable": True}},
                        {"spec": {"unschedulable": False}}, namespace=None)

* :func:`ready_node` creates a Node whose node agent has reported it Ready, with
  allocatable resources, as a seed's world usually needs;
* :func:`condition` reads one condition of an object's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kcore.api.registry import ResourceInfo
from kcore.client import ApiClient
from kcore.client.inprocess import InProcessTransport
from kcore.conformance.asyncsupport import async_test
from kcore.controllers import ReconcilerRunner, SharedInformers, make_key
from kcore.controllers.reconciler import Reconciler
from kcore.errors import KcoreError, NotFound
from kcore.interfaces import ControllerContext
from kcore.settings import Settings

NAMESPACE = "conformance"
"""The namespace every scenario gets for its objects (``ScenarioEnv.namespace``)."""

POLICIES = ("Background", "Foreground", "Orphan")
FLIPS = 12
"""How often the flapping check flips the input."""
STORM_FACTOR = 4
STORM_SLACK = 10
STORM_WRITES = 400
"""Writes without settling that count as a write storm (the check fails at once)."""
FROZEN_ATTEMPTS = 5
FROZEN_WINDOW = 0.3
"""Seconds of real time the back-off check waits with the clock standing still."""
BACKOFF_WINDOW = 60.0
BACKOFF_STEP = 2.0
BACKOFF_ATTEMPTS = 22
QUIET = 0.08
"""Seconds of real time without a request after which the world counts as settled."""
QUIET_STEPS = 6
"""At most this many steps of the clock while a converged world is left alone."""
STUCK = 3.0
"""Seconds of real time without a write after which a world that has used up its virtual
time and is not converged counts as stuck."""
SETTLE_TIMEOUT = 20.0
CONVERGE_TIMEOUT = 60.0

CHECKS = (
    "converges",
    "quiescent",
    "perturbations",
    "foreign",
    "two_copies",
    "owner_deletion",
    "flapping",
    "backoff",
    "restart",
)
"""The names :attr:`Scenario.missing` may use."""

controller_test = async_test(resources={}, timeout=120.0)


# -- what scenario authors write --------------------------------------------------------------


Step = Callable[["ScenarioEnv"], Awaitable[Any]]
Check = Callable[["ScenarioEnv"], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class OwnerDeletion:
    """How to delete the owner of a scenario's objects, and what depends on it."""

    owner: Callable[[ScenarioEnv], Awaitable[Mapping[str, Any]]]
    """The owner as it is now (it must exist once the seed converged)."""
    dependents: Callable[[ScenarioEnv], Awaitable[Sequence[Mapping[str, Any]]]]
    """The objects that exist for the owner (being deleted or not)."""
    policies: Sequence[str] = POLICIES
    """The propagation policies to check; others are skipped."""


@dataclass(frozen=True)
class Scenario:
    """One world a controller must keep converged (see the module docstring)."""

    name: str
    seed: Step
    check: Check
    starts: Mapping[str, Step] = field(default_factory=dict)
    perturbations: Mapping[str, Step] = field(default_factory=dict)
    foreign: Callable[[ScenarioEnv], Awaitable[Sequence[Mapping[str, Any]]]] | None = None
    flip: Callable[[ScenarioEnv, int], Awaitable[Any]] | None = None
    flip_cost: int = 10
    """The most writes one flip of the input may cost."""
    owner: OwnerDeletion | None = None
    summary: Callable[[ScenarioEnv], Awaitable[Any]] | None = None
    companions: Callable[[], Sequence[Any]] = tuple
    """Fresh instances of the controllers to run next to the one under test."""
    on_advance: Step | None = None
    tick: float = 1.0
    """Virtual seconds the clock moves per round while waiting for convergence."""
    time_to_converge: float = 60.0
    """Virtual seconds a convergence may take (the rounds stop moving the clock then)."""
    quiet_for: float = 30.0
    """Virtual seconds a converged world stays converged without any input."""
    missing: Mapping[str, str] = field(default_factory=dict)
    """Check name (one of :data:`CHECKS`) -> why this scenario cannot have it."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.missing) - set(CHECKS))
        if unknown:
            raise ValueError(f"scenario {self.name!r}: unknown checks {unknown}; known: {CHECKS}")


class Clock:
    """Wall-clock seconds (whole, from now) that move only when told."""

    def __init__(self, start: float | None = None) -> None:
        self.t = float(int(time.time())) if start is None else float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class _Here:
    """The default namespace argument of :class:`ScenarioEnv`'s helpers: its own."""


HERE: Any = _Here()


@dataclass
class ScenarioEnv:
    """What a scenario's callables get."""

    api: ApiClient
    """The test's own client: its writes are someone else's, not the controller's."""
    namespace: str
    clock: Clock
    settings: Settings | None = None
    """The settings the controllers were made with (their data directory: where a
    scenario puts files a controller reads, a CA say)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Scratch space shared by one scenario's callables in one run."""
    rejected: set[tuple[str, str]] = field(default_factory=set)
    """The (verb, kind) writes the API refuses to the copies under test (see
    :meth:`reject_writes`)."""

    def reject_writes(self, verb: str, kind: str) -> None:
        """From now on the API refuses the controller under test's ``verb`` writes
        (``create``, ``update``, ``patch``, ``delete``, ``post``) of ``kind`` (``Pod``) with
        an internal server error (:class:`InjectedFailure`), until :meth:`accept_writes`.
        The test's own client and the companions are not affected."""
        self.rejected.add((verb, kind))

    def accept_writes(self) -> None:
        """Ends every :meth:`reject_writes`."""
        self.rejected.clear()

    def _ns(self, namespace: Any) -> str | None:
        return self.namespace if namespace is HERE else namespace

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: Any = HERE,
        *,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """The objects of a kind in the scenario's namespace (``namespace=None``: in all,
        or cluster-scoped)."""
        items, _ = await self.api.list(
            api_version, kind, self._ns(namespace), label_selector=label_selector
        )
        return items

    async def get(
        self, api_version: str, kind: str, name: str, namespace: Any = HERE
    ) -> dict[str, Any] | None:
        try:
            return await self.api.get(api_version, kind, name, namespace=self._ns(namespace))
        except NotFound:
            return None

    def stamp(self, offset: float = 0.0, *, micro: bool = False) -> str:
        """The virtual time (plus ``offset`` seconds) in RFC 3339."""
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
        return datetime.fromtimestamp(self.clock() + offset, UTC).strftime(fmt)


def flip_between(
    kind: tuple[str, str],
    name: str,
    even: Mapping[str, Any],
    odd: Mapping[str, Any],
    *,
    namespace: Any = HERE,
) -> Callable[[ScenarioEnv, int], Awaitable[Any]]:
    """A ``flip`` that merge-patches the ``kind`` object ``name`` with ``even`` on the
    even flips and with ``odd`` on the odd ones (``namespace=None``: cluster-scoped)."""

    async def flip(env: ScenarioEnv, i: int) -> None:
        patch = even if i % 2 == 0 else odd
        await env.api.patch(*kind, name, patch, namespace=env._ns(namespace))

    return flip


async def ready_node(
    env: ScenarioEnv,
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    **spec: Any,
) -> dict[str, Any]:
    """Creates the Node ``name`` (``labels`` next to ``kubernetes.io/hostname``, ``spec``)
    with the status its node agent would report: Ready, with ``cpu``, ``memory`` and 110
    pods allocatable. Returns the Node as it is then."""
    created = await env.api.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, **(labels or {})},
            },
            "spec": spec,
        }
    )
    now = env.stamp()
    resources = {"cpu": cpu, "memory": memory, "pods": "110"}
    status = {
        "capacity": resources,
        "allocatable": dict(resources),
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            },
        ],
    }
    patched = await env.api.patch("v1", "Node", name, {"status": status}, subresource="status")
    return patched or created


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """The condition ``type_`` of ``obj``'s status (``{}`` when it has none)."""
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == type_:
            return c
    return {}


def scenarios_of(controller: Any) -> list[Scenario]:
    """The scenarios a controller declares (``[]`` without a ``conformance()`` method)."""
    declare = getattr(controller, "conformance", None)
    if declare is None:
        return []
    found = declare()
    if found is None:
        return []
    if isinstance(found, Scenario):
        return [found]
    found = list(found)
    for item in found:
        if not isinstance(item, Scenario):
            raise TypeError(f"{controller_name(controller)}.conformance() gave {item!r}")
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise ValueError(f"{controller_name(controller)}: scenario names repeat: {names}")
    return found


def controller_name(controller: Any) -> str:
    return str(getattr(controller, "name", "") or type(controller).__name__)


# -- recording writes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One write a client made (or tried)."""

    verb: str
    kind: str
    namespace: str | None
    name: str
    """The object's name; ``<generateName>*`` for a create without a name."""
    subresource: str | None = None
    failed: bool = False

    @property
    def target(self) -> tuple[str, str | None, str, str | None]:
        return (self.kind, self.namespace, self.name, self.subresource)

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.kind} {where}{sub}{' (failed)' if self.failed else ''}"


class InjectedFailure(KcoreError):
    """The write failure the back-off check injects: an internal server error."""

    code = 500
    reason = "InternalError"


class _Activity:
    """Requests of every client of one test: how many are in flight, when the last ended."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last = self.last_write = time.monotonic()
        self.writes = 0

    @contextlib.contextmanager
    def request(self, write: bool) -> Any:
        self.in_flight += 1
        if write:
            self.writes += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last = time.monotonic()
            if write:
                self.last_write = self.last


class RecordingTransport:
    """Wraps a transport: records each write in :attr:`writes`, and, when told, fails
    writes (:attr:`fail_writes`) or lets only the first :attr:`write_limit` through
    (later ones hang until the caller is cancelled)."""

    def __init__(self, inner: Any, activity: _Activity) -> None:
        self.inner = inner
        self.activity = activity
        self.writes: list[Write] = []
        self.fail_writes = False
        self.rejected: set[tuple[str, str]] = set()
        """(verb, kind) writes that fail as with :attr:`fail_writes`."""
        self.write_limit: int | None = None
        self.limit_reached = asyncio.Event()

    async def _write(self, write: Write, call: Callable[[], Awaitable[Any]]) -> Any:
        if self.write_limit is not None and len(self.writes) >= self.write_limit:
            self.limit_reached.set()
            await asyncio.Event().wait()  # a process frozen mid-way: never answers
        with self.activity.request(write=True):
            if self.fail_writes or (write.verb, write.kind) in self.rejected:
                self.writes.append(dataclasses.replace(write, failed=True))
                raise InjectedFailure("injected by the conformance suite: the write failed")
            self.writes.append(write)
            return await call()

    @staticmethod
    def _body_name(body: Mapping[str, Any]) -> str:
        meta = body.get("metadata") or {}
        return str(meta.get("name") or f"{meta.get('generateName') or ''}*")

    async def create(
        self, info: ResourceInfo, namespace: str | None, body: Mapping[str, Any], **kw: Any
    ) -> Any:
        write = Write("create", info.kind, namespace, self._body_name(body))
        return await self._write(write, lambda: self.inner.create(info, namespace, body, **kw))

    async def update(
        self, info: ResourceInfo, namespace: str | None, name: str, body: Any, **kw: Any
    ) -> Any:
        write = Write("update", info.kind, namespace, name, kw.get("subresource"))
        return await self._write(
            write, lambda: self.inner.update(info, namespace, name, body, **kw)
        )

    async def patch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        **kw: Any,
    ) -> Any:
        write = Write("patch", info.kind, namespace, name, kw.get("subresource"))
        return await self._write(
            write, lambda: self.inner.patch(info, namespace, name, content_type, patch, **kw)
        )

    async def delete(
        self, info: ResourceInfo, namespace: str | None, name: str, options: Any, **kw: Any
    ) -> Any:
        write = Write("delete", info.kind, namespace, name)
        return await self._write(
            write, lambda: self.inner.delete(info, namespace, name, options, **kw)
        )

    async def post(
        self, info: ResourceInfo, namespace: str | None, name: str, subresource: str, body: Any
    ) -> Any:
        write = Write("post", info.kind, namespace, name, subresource)
        return await self._write(
            write, lambda: self.inner.post(info, namespace, name, subresource, body)
        )

    async def get(self, *args: Any, **kw: Any) -> Any:
        with self.activity.request(write=False):
            return await self.inner.get(*args, **kw)

    async def list(self, *args: Any, **kw: Any) -> Any:
        with self.activity.request(write=False):
            return await self.inner.list(*args, **kw)

    async def table(self, *args: Any, **kw: Any) -> Any:
        with self.activity.request(write=False):
            return await self.inner.table(*args, **kw)

    async def logs(self, *args: Any, **kw: Any) -> Any:
        with self.activity.request(write=False):
            return await self.inner.logs(*args, **kw)

    def watch(self, *args: Any, **kw: Any) -> Any:
        return self.inner.watch(*args, **kw)

    async def close(self) -> None:
        await self.inner.close()


def describe(writes: Sequence[Write], limit: int = 12) -> str:
    """The most frequent writes, for a failure message."""
    if not writes:
        return "no writes"
    counts = Counter(str(dataclasses.replace(w, failed=False)) for w in writes)
    lines = [f"{n} x {what}" for what, n in counts.most_common(limit)]
    if len(counts) > limit:
        lines.append(f"... and {len(counts) - limit} more kinds of write")
    return "; ".join(lines)


def without_events(writes: Sequence[Write]) -> list[Write]:
    return [w for w in writes if w.kind != "Event"]


# -- running controllers ---------------------------------------------------------------------


@dataclass
class Copy:
    """One running copy of a controller."""

    controller: Any
    api: ApiClient
    transport: RecordingTransport
    informers: SharedInformers
    stop: asyncio.Event
    task: asyncio.Task[None]
    runner: ReconcilerRunner | None = None

    @property
    def name(self) -> str:
        return controller_name(self.controller)

    @property
    def writes(self) -> list[Write]:
        return self.transport.writes


class Harness:
    """The world of one test: a store, the API on it, clients, running controllers."""

    def __init__(
        self,
        objects: Any,
        store: Any,
        scenario: Scenario,
        *,
        settings: Settings | None,
        extra: Mapping[str, Any],
    ) -> None:
        self.objects = objects
        self.store = store
        self.scenario = scenario
        self.settings = settings
        self.extra = dict(extra)
        self.activity = _Activity()
        self.clock = Clock()
        self.copies: list[Copy] = []
        self.companion_copies: list[Copy] = []
        self._clients: list[ApiClient] = []
        api, _ = self.client()
        self.env = ScenarioEnv(api=api, namespace=NAMESPACE, clock=self.clock, settings=settings)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, scenario: Scenario, *, settings: Settings | None, extra: Mapping[str, Any]
    ) -> Any:
        """A harness on a fresh in-memory store, with the system namespaces and the
        scenario's own; everything stopped and closed afterwards."""
        from kcore.apiserver.objects import ObjectStore
        from kcore.daemon import bootstrap
        from kcore.plugin_host import PluginHost

        with tempfile.TemporaryDirectory(prefix="kcore-controllers-") as tmp:
            store_settings = Settings(data_dir=Path(tmp), options={"sqlite_path": ":memory:"})
            store = await PluginHost(["store_sqlite"]).store(store_settings)
            harness: Harness | None = None
            try:
                objects = ObjectStore(store)
                await bootstrap(objects)
                harness = cls(objects, store, scenario, settings=settings, extra=extra)
                await harness.env.api.create(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
                )
                yield harness
            finally:
                if harness is not None:
                    await harness.close()
                await store.close()

    def client(self) -> tuple[ApiClient, RecordingTransport]:
        transport = RecordingTransport(InProcessTransport(self.objects), self.activity)
        api = ApiClient(transport)
        self._clients.append(api)
        return api, transport

    async def close(self) -> None:
        for copy in list(self.copies):
            await self.stop(copy)
        for api in self._clients:
            with contextlib.suppress(Exception):
                await api.close()

    # -- starting and stopping -----------------------------------------------------------

    async def start(
        self,
        controller: Any,
        *,
        write_limit: int | None = None,
        fail_writes: bool = False,
        companion: bool = False,
    ) -> Copy:
        """Run a copy of ``controller`` on a client of its own; ``write_limit``: only that
        many writes get through, later ones hang; ``fail_writes``: every write fails; a
        copy under test (not a ``companion``) also gets the writes the scenario rejects
        (:meth:`ScenarioEnv.reject_writes`) refused."""
        api, transport = self.client()
        transport.write_limit = write_limit
        transport.fail_writes = fail_writes
        if not companion:
            transport.rejected = self.env.rejected
        informers = SharedInformers(api)
        ctx = ControllerContext(
            api=api,
            settings=self.settings,
            clock=self.clock,
            extra=dict(self.extra),
            informers=informers,
        )
        stop = asyncio.Event()
        runner = None
        if isinstance(controller, Reconciler):
            runner = ReconcilerRunner(controller, ctx)
            runner.queue.clock = self.clock  # delays and back-off in virtual time
            task = asyncio.ensure_future(runner.run(stop))
        else:
            task = asyncio.ensure_future(controller.run(ctx, stop))
        copy = Copy(controller, api, transport, informers, stop, task, runner)
        self.copies.append(copy)
        await self._wait_started(copy)
        return copy

    async def _wait_started(self, copy: Copy) -> None:
        """Until the copy's informers have listed (a plain Controller's: a settle)."""
        if copy.runner is None:
            await self.settle()
            return
        deadline = time.monotonic() + SETTLE_TIMEOUT
        kinds = list(copy.controller.kinds)
        while not (
            all(k in copy.informers for k in kinds)
            and all(copy.informers.informer(*k).has_synced for k in kinds)
        ):
            if copy.task.done():
                copy.task.result()
                raise AssertionError(f"{copy.name} stopped while starting")
            assert time.monotonic() < deadline, f"{copy.name}'s informers did not sync"
            await asyncio.sleep(0.01)

    async def start_companions(self) -> list[Copy]:
        started = [await self.start(c, companion=True) for c in self.scenario.companions()]
        self.companion_copies.extend(started)
        return started

    async def stop(self, copy: Copy) -> None:
        """Stop a copy (its in-flight reconciles are cancelled) and its informers."""
        if copy not in self.copies:
            return
        self.copies.remove(copy)
        copy.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(copy.task), 10.0)
        except TimeoutError:
            copy.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await copy.task
        except Exception:
            pass  # a crash shows in the checks; stopping goes on
        await copy.informers.stop()
        with contextlib.suppress(Exception):
            await copy.api.close()

    # -- time and waiting ------------------------------------------------------------------

    def _poke(self) -> bool:
        """Hand due keys to the workers; whether any copy has work queued or running."""
        busy = False
        for copy in self.copies:
            if copy.runner is not None:
                queue = copy.runner.queue
                if len(queue) or queue.processing():
                    busy = True
        return busy

    async def settle(self, quiet: float | None = None) -> None:
        """Until no request is in flight, no key is queued or being reconciled, and no
        request was made for ``quiet`` seconds. A write storm fails at once."""
        quiet = QUIET if quiet is None else quiet
        start = time.monotonic()
        writes_before = self.activity.writes
        while True:
            await asyncio.sleep(0.01)
            for copy in self.copies:
                if copy.task.done() and not copy.stop.is_set():
                    exc = copy.task.exception() if not copy.task.cancelled() else None
                    raise AssertionError(f"{copy.name} stopped by itself: {exc!r}") from exc
            storm = self.activity.writes - writes_before
            if storm > STORM_WRITES:
                raise AssertionError(
                    f"write storm: {storm} writes without settling; {self._recent_writes(storm)}"
                )
            now = time.monotonic()
            if (
                not self._poke()
                and self.activity.in_flight == 0
                and now - self.activity.last >= quiet
            ):
                return
            if now - start > SETTLE_TIMEOUT:
                raise AssertionError(
                    f"not settled after {SETTLE_TIMEOUT:g} s: "
                    f"{self.activity.in_flight} requests in flight, "
                    f"{self.activity.writes - writes_before} writes meanwhile; "
                    f"{self._recent_writes(50)}"
                )

    def _recent_writes(self, count: int) -> str:
        writes = [w for c in self.copies for w in c.writes[-count:]]
        return describe(writes)

    async def advance(self, seconds: float, *, quiet: float | None = None) -> None:
        """Move the virtual clock, let the scenario keep up (``on_advance``), settle."""
        self.clock.advance(seconds)
        if self.scenario.on_advance is not None:
            await self.scenario.on_advance(self.env)
        await self.settle(quiet)

    async def converge(
        self, what: str, *, tick: float | None = None, budget: float | None = None
    ) -> None:
        """Until the scenario's check passes (see :meth:`until`)."""
        await self.until(self.scenario.check, what, tick=tick, budget=budget)

    async def until(
        self,
        check: Callable[[ScenarioEnv], Awaitable[Sequence[str]]],
        what: str,
        *,
        tick: float | None = None,
        budget: float | None = None,
    ) -> None:
        """Settle and ``check``, moving the clock by ``tick`` per round for at most
        ``budget`` virtual seconds (the scenario's by default), until ``check`` finds no
        problem. Fails once the budget is spent and nothing was written for
        :data:`STUCK` seconds, or after :data:`CONVERGE_TIMEOUT` seconds."""
        scenario = self.scenario
        tick = scenario.tick if tick is None else tick
        budget = scenario.time_to_converge if budget is None else budget
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        spent = 0.0
        while True:
            await self.settle()
            problems = list(await check(self.env))
            if not problems:
                return
            if spent < budget:
                await self.advance(tick)
                spent += tick
                continue
            now = time.monotonic()
            if now - self.activity.last_write >= STUCK or now > deadline:
                writes = [w for c in self.copies for w in c.writes]
                raise AssertionError(
                    f"{what}: not converged after {spent:g} virtual seconds: "
                    + "; ".join(problems)
                    + f" (the controllers' last writes: {describe(writes[-40:])})"
                )
            await asyncio.sleep(0.05)

    async def resync(self) -> None:
        """Queue every primary object of every Reconciler copy under test, as a resync does
        (companions keep their own keys: a garbage collector's are not ``ns/name``)."""
        for copy in self.copies:
            if copy.runner is None or copy in self.companion_copies:
                continue
            controller = copy.controller
            for api_version, kind in controller.kinds:
                for obj in copy.informers.list(api_version, kind):
                    meta = obj.get("metadata") or {}
                    if (api_version, kind) == tuple(controller.primary):
                        copy.runner.queue.add(make_key(meta.get("namespace"), meta["name"]))
        await self.settle()


# -- the suite -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One test's subject: a controller, one of its scenarios, maybe a starting state."""

    controller: str
    scenario: str | None
    start: str | None = None
    error: str | None = None

    @property
    def id(self) -> str:
        parts = [self.controller] + [p for p in (self.scenario, self.start) if p]
        return "/".join(parts)


def _essence(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes an object someone's: all but its status and resourceVersion (which
    companions, a stand-in kubelet say, may write)."""
    meta = obj.get("metadata") or {}
    kept = ("uid", "labels", "annotations", "ownerReferences", "finalizers", "deletionTimestamp")
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return (*tuple(meta.get(k) for k in kept), rest)


async def _foreign_state(env: ScenarioEnv, objs: Sequence[Mapping[str, Any]]) -> list[str]:
    """What happened to objects of someone else: gone or changed."""
    problems = []
    for obj in objs:
        meta = obj.get("metadata") or {}
        now = await env.get(
            obj["apiVersion"], obj["kind"], meta["name"], namespace=meta.get("namespace")
        )
        where = f"{obj['kind']} {meta.get('namespace') or ''}/{meta['name']}"
        if now is None:
            problems.append(f"{where} (someone else's) was deleted")
        elif _essence(now) != _essence(obj):
            problems.append(f"{where} (someone else's) was changed")
    return problems


class ControllerConformance:
    """Checks every contributed controller that declares scenarios (module docstring)."""

    # -- what a subclass may override ------------------------------------------------------

    def make_controllers(self, plugins: Sequence[str], settings: Settings) -> list[Any]:
        """Fresh instances of the controllers under test, on every call. The default:
        the ``kcore_controllers`` of the ``--kcore-plugin`` plugins."""
        if not plugins:
            raise pytest.UsageError(
                "no controllers under test: pass --kcore-plugin NAME, or override "
                "ControllerConformance.make_controllers"
            )
        from kcore.plugin_host import PluginHost

        return PluginHost(plugins).controllers(settings)

    def make_extra(self, plugins: Sequence[str], settings: Settings) -> dict[str, Any]:
        """``ctx.extra`` for the controllers, as the daemon gives it (the scheduler's
        steps of every plugin)."""
        if not plugins:
            return {}
        from kcore.plugin_host import PluginHost

        host = PluginHost(plugins)
        return {
            "scheduler_filters": host.scheduler_filters(settings),
            "scheduler_scores": host.scheduler_scores(settings),
        }

    # -- collection --------------------------------------------------------------------------

    @staticmethod
    def _settings(config: pytest.Config, data_dir: Path) -> Settings:
        options: dict[str, Any] = {}
        for item in config.getoption("--kcore-option", default=[]) or []:
            key, _, value = item.partition("=")
            options[key.strip().replace("-", "_")] = value
        return Settings(data_dir=data_dir, options=options)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" not in metafunc.fixturenames:
            return
        plugins = list(metafunc.config.getoption("--kcore-plugin", default=[]) or [])
        cases: list[Case] = []
        with tempfile.TemporaryDirectory(prefix="kcore-controllers-") as tmp:
            try:
                controllers = self.make_controllers(
                    plugins, self._settings(metafunc.config, Path(tmp))
                )
            except pytest.UsageError as exc:
                controllers, cases = [], [Case("no-controllers", None, error=str(exc))]
            for controller in controllers:
                name = controller_name(controller)
                scenarios = scenarios_of(controller)
                if not scenarios:
                    cases.append(Case(name, None))
                for scenario in scenarios:
                    if metafunc.function.__name__ == "test_converges_from_each_starting_state":
                        cases.append(Case(name, scenario.name, "seed"))
                        cases += [Case(name, scenario.name, s) for s in scenario.starts]
                    else:
                        cases.append(Case(name, scenario.name))
        if not cases:
            cases = [Case("no-controllers", None, error="the plugins contribute no controller")]
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])

    # -- per-test helpers ------------------------------------------------------------------

    @pytest.fixture
    def kit(self, request: pytest.FixtureRequest, case: Case, tmp_path: Path) -> _Kit:
        if case.error:
            pytest.fail(case.error, pytrace=False)
        plugins = list(request.config.getoption("--kcore-plugin", default=[]) or [])
        settings = self._settings(request.config, tmp_path)
        return _Kit(self, plugins, settings, case)

    # -- the checks ----------------------------------------------------------------------------

    @controller_test
    async def test_converges_from_each_starting_state(self, kit: _Kit) -> None:
        scenario = kit.scenario("converges")
        async with kit.harness() as h:
            await scenario.seed(h.env)
            if kit.case.start != "seed":
                await scenario.starts[kit.case.start](h.env)
            await h.start_companions()
            await h.start(kit.controller())
            await h.converge(f"from the starting state {kit.case.start!r}")

    @controller_test
    async def test_reconciling_a_converged_state_writes_nothing(self, kit: _Kit) -> None:
        scenario = kit.scenario("quiescent")
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            copy = await h.start(kit.controller())
            await h.converge("from the seed")
            await h.settle(quiet=3 * QUIET)
            before = len(copy.writes)
            await h.resync()
            extra = copy.writes[before:]
            assert not extra, f"reconciling a converged state wrote: {describe(extra)}"
            steps = max(1, min(QUIET_STEPS, math.ceil(scenario.quiet_for / scenario.tick)))
            for _ in range(steps):
                await h.advance(scenario.quiet_for / steps)
            extra = copy.writes[before:]
            assert not extra, (
                f"{scenario.quiet_for:g} virtual seconds on a converged state wrote: "
                f"{describe(extra)}"
            )
            problems = list(await scenario.check(h.env))
            assert not problems, f"a converged state fell apart by itself: {problems}"
            await h.stop(copy)
            fresh = await h.start(kit.controller())
            await h.settle(quiet=3 * QUIET)
            await h.resync()
            assert not fresh.writes, (
                f"a fresh copy started on the converged state wrote: {describe(fresh.writes)}"
            )

    @controller_test
    async def test_converges_back_after_its_objects_change(self, kit: _Kit) -> None:
        scenario = kit.scenario("perturbations", needs="perturbations")
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            await h.start(kit.controller())
            await h.converge("from the seed")
            for name, perturb in scenario.perturbations.items():
                await perturb(h.env)
                await h.converge(f"after the perturbation {name!r}")

    @controller_test
    async def test_leaves_objects_of_others_alone(self, kit: _Kit) -> None:
        scenario = kit.scenario("foreign", needs="foreign")
        assert scenario.foreign is not None
        async with kit.harness() as h:
            await scenario.seed(h.env)
            foreign = list(await scenario.foreign(h.env))
            assert foreign, "the scenario's foreign() made no objects"
            await h.start_companions()
            copy = await h.start(kit.controller())
            await h.converge("with objects of someone else around")
            await h.resync()
            problems = await _foreign_state(h.env, foreign)
            names = {
                (o["kind"], (o.get("metadata") or {}).get("namespace"), o["metadata"]["name"])
                for o in foreign
            }
            touched = [w for w in copy.writes if (w.kind, w.namespace, w.name) in names]
            assert not problems and not touched, (
                f"{'; '.join(problems)}; the controller wrote: {describe(touched)}"
            )

    @controller_test
    async def test_two_copies_converge_without_a_write_storm(self, kit: _Kit) -> None:
        scenario = kit.scenario("two_copies")
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            single = await h.start(kit.controller())
            await h.converge("one copy, from the seed")
            alone = len(single.writes)
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            first = await h.start(kit.controller())
            second = await h.start(kit.controller())
            await h.converge("two copies, from the seed")
            await h.settle(quiet=3 * QUIET)
            together = len(first.writes) + len(second.writes)
            bound = STORM_FACTOR * alone + STORM_SLACK
            assert together <= bound, (
                f"two copies wrote {together} times where one wrote {alone} "
                f"(at most {bound}): {describe(first.writes + second.writes)}"
            )
            marks = (len(first.writes), len(second.writes))
            await h.resync()
            extra = first.writes[marks[0] :] + second.writes[marks[1] :]
            assert not extra, f"two copies on a converged state wrote: {describe(extra)}"
            for name, perturb in list(scenario.perturbations.items())[:1]:
                await perturb(h.env)
                await h.converge(f"two copies, after the perturbation {name!r}")

    @controller_test
    @pytest.mark.parametrize("policy", POLICIES)
    async def test_owner_deletion(self, kit: _Kit, policy: str) -> None:
        scenario = kit.scenario("owner_deletion", needs="owner")
        spec = scenario.owner
        assert spec is not None
        if policy not in spec.policies:
            pytest.skip(
                f"scenario {scenario.name!r} lacks capability {policy} deletion (declares none)"
            )
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            copy = await h.start(kit.controller())
            await h.converge("from the seed")
            owner = dict(await spec.owner(h.env))
            meta = owner["metadata"]
            uid = meta["uid"]
            assert await spec.dependents(h.env), "the owner has no dependents to delete"
            mark = len(copy.writes)
            await h.env.api.delete(
                owner["apiVersion"],
                owner["kind"],
                meta["name"],
                namespace=meta.get("namespace"),
                propagation_policy=policy,  # type: ignore[arg-type]
            )

            async def outcome(env: ScenarioEnv) -> list[str]:
                problems = []
                now = await h.env.get(
                    owner["apiVersion"], owner["kind"], meta["name"], meta.get("namespace")
                )
                if now is not None and now["metadata"].get("uid") == uid:
                    problems.append(f"the owner {meta['name']} is still there")
                left = await spec.dependents(h.env)
                if policy == "Orphan":
                    refs = [
                        d
                        for d in left
                        if any(
                            r.get("uid") == uid
                            for r in (d.get("metadata") or {}).get("ownerReferences") or ()
                        )
                    ]
                    if refs:
                        problems.append(f"{len(refs)} dependents still refer to the deleted owner")
                elif left:
                    names = sorted(d["metadata"]["name"] for d in left)
                    problems.append(f"dependents left: {names}")
                return problems

            await h.until(outcome, f"after a {policy} deletion of the owner")
            await h.resync()
            await h.advance(scenario.tick)
            created = [w for w in copy.writes[mark:] if w.verb == "create" and w.kind != "Event"]
            assert not created, (
                f"the controller created after its owner's {policy} deletion: {describe(created)}"
            )
            problems = await outcome(h.env)
            assert not problems, f"after settling again: {problems}"

    @controller_test
    async def test_write_rate_stays_bounded_under_a_flapping_input(self, kit: _Kit) -> None:
        scenario = kit.scenario("flapping", needs="flip")
        assert scenario.flip is not None
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            copy = await h.start(kit.controller())
            await h.converge("from the seed")
            mark = len(copy.writes)
            for i in range(FLIPS):
                await scenario.flip(h.env, i)
                await asyncio.sleep(0.02)
            await h.converge(f"after {FLIPS} flips of the input")
            writes = copy.writes[mark:]
            bound = FLIPS * scenario.flip_cost
            assert len(writes) <= bound, (
                f"{FLIPS} flips of the input cost {len(writes)} writes (at most {bound}): "
                f"{describe(writes)}"
            )

    @controller_test
    async def test_backs_off_while_its_writes_fail(self, kit: _Kit) -> None:
        scenario = kit.scenario("backoff")
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            copy = await h.start(kit.controller(), fail_writes=True)
            spent = 0.0
            while True:
                await h.settle()
                if _per_target(copy.writes) or spent >= scenario.time_to_converge:
                    break
                await h.advance(scenario.tick)
                spent += scenario.tick
            assert _per_target(copy.writes), (
                f"no write was tried in {spent:g} virtual seconds: the seed needs no work"
            )
            await asyncio.sleep(FROZEN_WINDOW)
            await h.settle()
            attempts = _per_target(copy.writes)
            worst = max(attempts.values())
            assert worst <= FROZEN_ATTEMPTS, (
                f"{worst} tries of one write while its clock stood still (at most "
                f"{FROZEN_ATTEMPTS}): retried without back-off: {describe(copy.writes)}"
            )
            mark = len(copy.writes)
            steps = int(BACKOFF_WINDOW / BACKOFF_STEP)
            for _ in range(steps):
                await h.advance(BACKOFF_STEP, quiet=QUIET / 4)
            attempts = _per_target(copy.writes[mark:])
            worst = max(attempts.values(), default=0)
            assert worst <= BACKOFF_ATTEMPTS, (
                f"{worst} tries of one write in {BACKOFF_WINDOW:g} virtual seconds of "
                f"failures (at most {BACKOFF_ATTEMPTS}): no exponential back-off: "
                f"{describe(copy.writes[mark:])}"
            )
            copy.transport.fail_writes = False
            await h.converge("once writes work again", tick=30.0, budget=1200.0)

    @controller_test
    async def test_restart_mid_way_converges_to_the_same_end(self, kit: _Kit) -> None:
        scenario = kit.scenario("restart")
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            copy = await h.start(kit.controller())
            await h.converge("without a restart")
            total = len(copy.writes)
            expected = await scenario.summary(h.env) if scenario.summary else None
        if total < 2:
            pytest.skip(
                f"scenario {scenario.name!r} lacks capability restart: it converges in "
                f"{total} writes, none to cut"
            )
        cut = total // 2
        async with kit.harness() as h:
            await scenario.seed(h.env)
            await h.start_companions()
            controller = kit.controller()
            copy = await h.start(controller, write_limit=cut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(copy.transport.limit_reached.wait(), STUCK)
            await asyncio.sleep(0.05)
            await h.stop(copy)
            await h.start(controller)
            await h.converge(f"after a restart cut off after {cut} of {total} writes")
            if scenario.summary is not None:
                got = await scenario.summary(h.env)
                assert got == expected, (
                    f"the restarted run ended elsewhere: {got!r}, not {expected!r}"
                )


def _per_target(writes: Sequence[Write]) -> Counter[tuple[Any, ...]]:
    return Counter(w.target for w in without_events(writes))


@dataclass
class _Kit:
    """A test's way to its controller, scenario and harness."""

    suite: ControllerConformance
    plugins: list[str]
    settings: Settings
    case: Case

    def controller(self) -> Any:
        """A fresh instance of the controller under test."""
        found = [
            c
            for c in self.suite.make_controllers(self.plugins, self.settings)
            if controller_name(c) == self.case.controller
        ]
        assert found, f"the plugins no longer contribute {self.case.controller!r}"
        return found[0]

    def scenario(self, check: str, *, needs: str | None = None) -> Scenario:
        if self.case.scenario is None:
            pytest.skip(
                f"{self.case.controller} lacks capability conformance scenarios "
                "(it has no conformance() method)"
            )
        by_name = {s.name: s for s in scenarios_of(self.controller())}
        scenario = by_name[self.case.scenario]
        if check in scenario.missing:
            pytest.skip(
                f"scenario {scenario.name!r} lacks capability {check}: {scenario.missing[check]}"
            )
        if needs is not None and not getattr(scenario, needs):
            pytest.skip(f"scenario {scenario.name!r} lacks capability {needs} (declares none)")
        return scenario

    @contextlib.asynccontextmanager
    async def harness(self) -> Any:
        by_name = {s.name: s for s in scenarios_of(self.controller())}
        extra = self.suite.make_extra(self.plugins, self.settings)
        async with Harness.open(
            by_name[str(self.case.scenario)], settings=self.settings, extra=extra
        ) as h:
            yield h


__all__ = [
    "CHECKS",
    "FLIPS",
    "HERE",
    "NAMESPACE",
    "POLICIES",
    "Case",
    "Clock",
    "ControllerConformance",
    "Harness",
    "InjectedFailure",
    "OwnerDeletion",
    "RecordingTransport",
    "Scenario",
    "ScenarioEnv",
    "Write",
    "condition",
    "controller_name",
    "describe",
    "flip_between",
    "ready_node",
    "scenarios_of",
]
