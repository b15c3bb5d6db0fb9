"""The store conformance suite: every promise of the store contract in ``kcore.store``.

Subclass :class:`StoreConformance` in a ``test_*.py`` file and provide the store under test
through the ``store_factory`` fixture (an async callable returning a new, empty store on
each call). kcore's pytest plugin builds it from ``--kcore-plugin NAME``; override it to
test a store class directly::

    import pytest
    from kcore.conformance.suites.store import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path):
            async def make():
                return MyStore(tmp_path / "db")
            return make

Each test gets its own store, writes only under a key prefix unique to the test, and
deletes what it created when it ends (compaction, which cannot be undone, is the
exception). The suite assumes nothing else writes to the store while a test runs; it does
not assume that a new store is at revision 0 or that revisions grow by exactly one (a
store on a shared etcd cluster shares its revisions). A capability the store does not
declare in ``capabilities`` turns the tests that need it into skips naming it.

The tests are plain synchronous functions (see :mod:`kcore.conformance.asyncsupport`), so
the suite runs the same with pytest-asyncio in any mode, or without it.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, suppress
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kcore.conformance.asyncsupport import add_finalizer, async_test
from kcore.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    Invalid,
    NotFound,
    PermanentError,
    TemporaryError,
)
from kcore.settings import Settings
from kcore.store import Capability, EventType, KeyValue, ListResult, WatchEvent

EVENT_TIMEOUT = 10.0
"""Seconds a watch may take to deliver an event the test knows is due."""

KEY_ROOT = "/kcore-conformance/"


# -- helpers -----------------------------------------------------------------------------------


def require(store: Any, *capabilities: Capability, pinned: Iterable[Capability] = ()) -> None:
    """Skip the running test unless ``store`` declares every one of ``capabilities``; fail
    instead for a capability in ``pinned`` (one the test module expects the store to have:
    see :attr:`StoreConformance.expected_capabilities`)."""
    pinned = frozenset(pinned)
    for cap in capabilities:
        if cap in store.capabilities:
            continue
        if cap in pinned:
            pytest.fail(
                f"the store no longer declares capability {cap.value}, which this test module"
                " expects (expected_capabilities): its tests would be skipped unnoticed",
                pytrace=False,
            )
        pytest.skip(f"store lacks capability {cap.value}")


def small_disk_store(store_on_small_disk: Any) -> Callable[[Path], Awaitable[Any]]:
    """The ``store_on_small_disk`` fixture's ``make``, or a skip."""
    if store_on_small_disk is None:
        pytest.skip("store lacks capability disk_faults: its store_factory takes no settings")
    return store_on_small_disk


def reopen_settings(store_factory: Any, kcore_settings_factory: Any) -> Settings:
    """New settings for ``store_factory(settings)``, which makes the same store again on
    them; a skip for a factory that takes none."""
    if not inspect.signature(store_factory).parameters:
        pytest.skip("store lacks capability reopen: its store_factory() takes no settings")
    return kcore_settings_factory()


def fault(fixture: Any, capability: str, fixture_name: str) -> Any:
    """An optional fault fixture's value, or a skip naming the capability."""
    if fixture is None:
        pytest.skip(f"store lacks capability {capability}: no {fixture_name} fixture")
    return fixture


async def assert_read_right_or_refused(
    reads: dict[str, tuple[Callable[[], Awaitable[Any]], Any]],
    errors: tuple[type[BaseException], ...],
    where: str,
) -> None:
    """Each read ``name: (call, right)`` raises one of ``errors`` or answers ``right``
    (a ``KeyValue`` compared as :func:`kv_view`, a ``ListResult`` as its items' views)."""
    for name, (call, right) in reads.items():
        try:
            got = await asyncio.wait_for(call(), EVENT_TIMEOUT)
        except errors:
            continue
        if isinstance(got, KeyValue):
            got = kv_view(got)
        elif isinstance(got, ListResult):
            got = [kv_view(kv) for kv in got.items]
        assert got == right, f"{name} {where}: {got}, written {right}"


async def drain(
    watch: AsyncIterator[WatchEvent],
) -> tuple[list[WatchEvent], BaseException]:
    """Every event until the watch ends, and how it ended (``StopAsyncIteration`` when it
    just stopped)."""
    events: list[WatchEvent] = []
    try:
        async for event in watch:
            events.append(event)
    except Exception as exc:
        return events, exc
    return events, StopAsyncIteration()


async def check_slow_watcher(store: Any, default_writes: int) -> None:
    """A watcher that reads nothing while writes go on either gets every event in the end,
    or a gapless prefix of them and then ``Expired``: never a gap, never a hang. A store
    with a ``watch_backlog`` (the unread events it keeps per watcher) gets that many
    writes and ten more; one without gets ``default_writes``."""
    backlog = getattr(store, "watch_backlog", None)
    count = default_writes if backlog is None else backlog + 10
    p = await keyspace(store)
    start = await store.current_revision()
    watch = open_watch(store, p, start)
    w = Writes(store)
    await w.create(p + "~first", b"")
    assert_events([await next_event(watch)], w.events, "the first event")  # it is live now
    await asyncio.gather(*(w.create(f"{p}{i:06}", b"") for i in range(count)))
    expected = sorted(w.events[1:], key=lambda e: e.revision)
    got: list[WatchEvent] = []
    while len(got) < count:
        try:
            got.append(await next_event(watch, f"a watch {count} events behind"))
        except Expired:
            break
    assert_events(got, expected[: len(got)], f"a watch {count} events behind")


async def assert_each_raises(
    calls: dict[str, Callable[[], Awaitable[Any]]],
    errors: tuple[type[BaseException], ...],
    when: str,
) -> None:
    """Each of ``calls`` raises one of ``errors`` within :data:`EVENT_TIMEOUT`: none
    hangs, none answers."""
    for name, call in calls.items():
        try:
            await asyncio.wait_for(call(), EVENT_TIMEOUT)
        except errors:
            continue
        except TimeoutError:
            raise AssertionError(f"{name}() {when} hung") from None
        wanted = " or ".join(e.__name__ for e in errors)
        raise AssertionError(f"{name}() {when} did not raise {wanted}")


def unique_prefix() -> str:
    return f"{KEY_ROOT}{uuid.uuid4().hex[:12]}/"


async def keyspace(store: Any) -> str:
    """A key prefix unique to this test; what is left under it is deleted after the test."""
    prefix = unique_prefix()
    add_finalizer(lambda: delete_prefix(store, prefix))
    return prefix


async def delete_prefix(store: Any, prefix: str) -> None:
    for kv in (await store.list(prefix)).items:
        with suppress(NotFound):
            await store.delete(kv.key)


async def list_all(store: Any, prefix: str, **kwargs: Any) -> ListResult:
    """``list`` that fails clearly when the store cuts the result short without a limit."""
    result = await store.list(prefix, **kwargs)
    assert not result.more, f"list({prefix!r}) without a limit said more=True"
    return result


def kv_view(kv: KeyValue | None) -> tuple[Any, ...] | None:
    if kv is None:
        return None
    return (kv.key, bytes(kv.value), kv.revision, kv.create_revision)


def event_view(event: WatchEvent) -> tuple[Any, ...]:
    """What of an event the contract fixes: for ``DELETED``, the kv's key, last value and
    the delete's revision (its create_revision is left to the store)."""
    kv = event.kv
    body = (
        kv_view(kv) if event.type != EventType.DELETED else (kv.key, bytes(kv.value), kv.revision)
    )
    return (str(event.type), body, kv_view(event.prev))


def assert_events(actual: Iterable[WatchEvent], expected: Iterable[WatchEvent], what: str) -> None:
    got = [event_view(e) for e in actual]
    want = [event_view(e) for e in expected]
    if got == want:
        return
    lines = [f"{what}: the watch delivered other events than the writes made"]
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else "<none>"
        w = want[i] if i < len(want) else "<none>"
        mark = "  " if g == w else "!="
        lines.append(f"  {mark} #{i}: got {g}\n         expected {w}")
    raise AssertionError("\n".join(lines))


def assert_items(result: ListResult, expected: Iterable[KeyValue], what: str) -> None:
    got = [kv_view(kv) for kv in result.items]
    want = [kv_view(kv) for kv in sorted(expected, key=lambda kv: kv.key)]
    assert got == want, f"{what}:\n  got      {got}\n  expected {want}"


async def next_event(watch: AsyncIterator[WatchEvent], what: str = "watch") -> WatchEvent:
    try:
        return await asyncio.wait_for(anext(watch), EVENT_TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"{what}: no event within {EVENT_TIMEOUT:g} s") from None
    except StopAsyncIteration:
        raise AssertionError(f"{what}: the watch ended while an event was due") from None


async def read_until(
    watch: AsyncIterator[WatchEvent], sentinel_key: str, what: str = "watch"
) -> list[WatchEvent]:
    """The events before the first one on ``sentinel_key`` (which the test writes last, so
    every event before it must already be there: nothing missing, nothing extra)."""
    events: list[WatchEvent] = []
    while True:
        try:
            event = await asyncio.wait_for(anext(watch), EVENT_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"{what}: waited {EVENT_TIMEOUT:g} s for the sentinel write; events so far: "
                f"{[event_view(e) for e in events]}"
            ) from None
        except StopAsyncIteration:
            raise AssertionError(f"{what}: the watch ended before the sentinel write") from None
        if event.kv.key == sentinel_key:
            return events
        events.append(event)


async def close_watch(watch: AsyncIterator[WatchEvent]) -> None:
    aclose = getattr(watch, "aclose", None)
    if aclose is not None:
        await asyncio.wait_for(aclose(), EVENT_TIMEOUT)


def open_watch(store: Any, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
    """``store.watch``, closed after the test."""
    watch = store.watch(prefix, after_revision=after_revision)
    add_finalizer(lambda: close_watch(watch))
    return watch


async def assert_watch_expired(store: Any, prefix: str, after_revision: int) -> None:
    """Starting the watch or taking its first event raises ``Expired``."""
    watch = None
    try:
        with pytest.raises(Expired):
            watch = store.watch(prefix, after_revision=after_revision)
            event = await asyncio.wait_for(anext(watch), EVENT_TIMEOUT)
            raise AssertionError(
                f"watch(after_revision={after_revision}) yielded {event_view(event)} "
                "instead of raising Expired"
            )
    except TimeoutError:
        raise AssertionError(
            f"watch(after_revision={after_revision}) neither raised Expired nor yielded "
            f"anything within {EVENT_TIMEOUT:g} s"
        ) from None
    finally:
        if watch is not None:
            with suppress(Exception):
                await close_watch(watch)


class Writes:
    """Writes through the store and remembers the watch events they must cause."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.events: list[WatchEvent] = []
        self.latest: dict[str, KeyValue] = {}

    async def create(self, key: str, value: bytes) -> KeyValue:
        kv = await self.store.create(key, value)
        self.events.append(WatchEvent(EventType.ADDED, kv, None))
        self.latest[key] = kv
        return kv

    async def update(self, key: str, value: bytes, **kwargs: Any) -> KeyValue:
        kv = await self.store.update(key, value, **kwargs)
        self.events.append(WatchEvent(EventType.MODIFIED, kv, self.latest.get(key)))
        self.latest[key] = kv
        return kv

    async def delete(self, key: str, **kwargs: Any) -> KeyValue:
        kv = await self.store.delete(key, **kwargs)
        self.events.append(WatchEvent(EventType.DELETED, kv, self.latest.pop(key, None)))
        return kv

    async def random_write(self, rng: random.Random, keys: list[str]) -> KeyValue:
        key = rng.choice(keys)
        if key not in self.latest:
            return await self.create(key, rng.randbytes(rng.randint(0, 8)))
        if rng.random() < 0.25:
            return await self.delete(key)
        return await self.update(key, rng.randbytes(rng.randint(0, 8)))

    def after(self, revision: int, prefix: str = "") -> list[WatchEvent]:
        return [e for e in self.events if e.revision > revision and e.kv.key.startswith(prefix)]


class SmallDisk:
    """A small tmpfs mounted on ``path`` (created) for a ``with`` block; root only.

    :meth:`fill` takes every free byte with a filler file, :meth:`free` deletes it. The
    mount is removed when the block ends, also after a failure.
    """

    def __init__(self, path: Path, size: str = "8m", *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.size = size
        self.read_only = read_only
        self._filler = self.path / ".kcore-conformance-filler"

    def __enter__(self) -> SmallDisk:
        if os.geteuid() != 0:
            pytest.fail("the disk-fault checks mount a tmpfs: run them as root", pytrace=False)
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size},mode=0700{',ro' if self.read_only else ''}",
                "kcore-test-disk",
                str(self.path),
            ],
            check=True,
            capture_output=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        done = subprocess.run(["umount", str(self.path)], capture_output=True)
        if done.returncode != 0:  # a file still open: detach now, freed when closed
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)

    def fill(self) -> None:
        chunk = b"\0" * (1 << 16)
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]
        finally:
            os.close(fd)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def remount_read_only(self) -> None:
        """The disk turns read-only with its files on it (as the kernel does after an I/O
        error)."""
        subprocess.run(
            ["mount", "-o", "remount,ro", str(self.path)],
            check=True,
            capture_output=True,
        )


# -- the suite ---------------------------------------------------------------------------------


class StoreConformance:
    """The store contract, one test per promise; each docstring quotes what it checks."""

    model_settings: ClassVar[dict[str, Any]] = {
        "max_examples": 25,
        "stateful_step_count": 30,
    }
    """Hypothesis settings of :meth:`test_behaves_like_the_model`; a subclass may change
    them (fewer examples for a slow store, ``phases`` without shrinking ...)."""

    expected_capabilities: ClassVar[frozenset[Capability]] = frozenset()
    """Capabilities the test module knows its store has. A test needing one of them fails
    when the store stops declaring it, instead of turning into a skip nobody reads."""

    long_history_writes: ClassVar[int] = 1500
    """Writes of :meth:`test_watch_through_history_compacted_under_it_never_skips`: enough
    that replaying them takes a store more than one batch (store_sqlite reads 1000 at a
    time); a store with larger batches raises it."""

    exclusive_backend: ClassVar[bool] = False
    """Set it when the store under test shares its backend with nobody (not a shared etcd):
    :meth:`test_a_store_of_its_own_counts_from_zero_by_one` then checks that a new store is
    at revision 0 and that every write adds exactly one."""

    slow_watcher_writes: ClassVar[int] = 2000
    """Writes of :meth:`test_a_watcher_that_falls_behind_never_skips` for a store without
    a ``watch_backlog``."""

    def require(self, store: Any, *capabilities: Capability) -> None:
        require(store, *capabilities, pinned=self.expected_capabilities)

    @pytest.fixture
    def store_on_small_disk(
        self, store_factory: Any, kcore_options: dict[str, Any]
    ) -> Callable[[Path], Awaitable[Any]] | None:
        """``make(directory)``: an async callable giving a new, empty store whose data
        directory is ``directory``. The suite runs it on a small disk (:class:`SmallDisk`, a
        tmpfs; root only), fills the disk and checks that writes fail cleanly and work again
        once there is room. The default makes it with ``store_factory(settings)``; a store
        that keeps its data elsewhere (etcd) is found out by a first large write and lacks
        capability disk_faults, as does one whose factory takes no settings. Override it
        for a store that keeps its files somewhere else that you can put on the disk."""
        if not inspect.signature(store_factory).parameters:
            return None

        async def make(directory: Path) -> Any:
            return await store_factory(Settings(data_dir=directory, options=dict(kcore_options)))

        return make

    @pytest.fixture
    def crash_store(self) -> Callable[[Any], AbstractAsyncContextManager[None]] | None:
        """``crash(store)``: an async context manager. The open ``store``'s backend dies at
        the end of the ``async with`` block as from an internal error (store_sqlite: its
        writer thread raises), while the calls the suite started inside the block are still
        on their way. The default, ``None``, skips the crash checks: lacks capability
        crash_faults."""
        return None

    @pytest.fixture
    def damage_store(self) -> Callable[[Settings], Awaitable[None]] | None:
        """``damage(settings)``: damage, at rest, the data of the closed durable store that
        ``store_factory(settings)`` made, so that reading all of its keys cannot succeed
        (store_sqlite: zero the pages of its table of current keys). The default, ``None``,
        skips the check: lacks capability damage_faults."""
        return None

    @pytest.fixture
    def newer_version_store(self) -> Callable[[Settings], Awaitable[None]] | None:
        """``mark(settings)``: make the data of the closed durable store that
        ``store_factory(settings)`` made look written by a newer version of the plugin, in a
        format this one does not know (store_sqlite: a higher schema version). The default,
        ``None``, skips the check: lacks capability version_faults."""
        return None

    @pytest.fixture
    def fail_store_write(
        self,
    ) -> Callable[[Any], AbstractAsyncContextManager[None]] | None:
        """``fail(store)``: an async context manager. Inside the block the backend fails
        one write half-way, as an I/O error would, among the writes the suite starts there
        (store_sqlite: a write queued with them raises a disk I/O error after its first
        statement). The default, ``None``, skips the check: lacks capability write_faults."""
        return None

    @pytest.fixture
    def store_option_makers(
        self,
    ) -> dict[str, dict[str, Callable[[], Awaitable[Any]]]] | None:
        """``{"invalid": {what: make}, "valid": {what: make}}``: async callables that make
        a new store with options it must refuse (an unknown mode, a size out of range) and
        with options at the edge of what it takes. The default, ``None``, skips the
        options checks: lacks capability options."""
        return None

    # -- create, get, update, delete ---------------------------------------------------------

    @async_test
    async def test_create_returns_value_and_new_revision(self, store: Any) -> None:
        """Contract: "``create``: Store ``value`` under a new ``key``; return it with its
        new revision." and "The revision of a write becomes the key's ``revision``"."""
        p = await keyspace(store)
        before = await store.current_revision()
        kv = await store.create(p + "a", b"hello")
        assert isinstance(kv, KeyValue), f"create returned {kv!r}, not a KeyValue"
        assert (kv.key, bytes(kv.value)) == (p + "a", b"hello")
        assert kv.revision > before, f"create got revision {kv.revision}, store was at {before}"
        assert kv.create_revision == kv.revision, "a new key's create_revision is its revision"

    @async_test
    async def test_get_returns_current_value(self, store: Any) -> None:
        """Contract: "``get``: Return the current value of ``key``"."""
        p = await keyspace(store)
        created = await store.create(p + "a", b"one")
        assert kv_view(await store.get(p + "a")) == kv_view(created)
        updated = await store.update(p + "a", b"two")
        assert kv_view(await store.get(p + "a")) == kv_view(updated)

    @async_test
    async def test_values_are_opaque_bytes(self, store: Any) -> None:
        """Contract: "values are opaque ``bytes``": empty, binary and large values come
        back intact."""
        p = await keyspace(store)
        values = {
            "empty": b"",
            "binary": bytes(range(256)),
            "nul": b"\x00a\x00",
            "large": random.Random(1).randbytes(256 * 1024),
        }
        for name, value in values.items():
            await store.create(p + name, value)
        for name, value in values.items():
            got = bytes((await store.get(p + name)).value)
            assert got == value, f"value {name!r} came back changed ({len(got)} bytes)"
        # Bytes in another container: stored as those bytes, or refused as not bytes.
        for name, value in (
            ("bytearray", bytearray(b"ba")),
            ("memoryview", memoryview(b"mv")),
        ):
            try:
                kv = await store.create(p + name, value)
            except Invalid:
                continue
            for got in (kv.value, (await store.get(p + name)).value):
                assert bytes(got) == bytes(value), f"a {name} value came back as {got!r}"

    @async_test
    async def test_create_on_existing_key_raises_already_exists(self, store: Any) -> None:
        """Contract: "``create`` fails with AlreadyExists when the key holds a value"."""
        p = await keyspace(store)
        kv = await store.create(p + "a", b"first")
        with pytest.raises(AlreadyExists):
            await store.create(p + "a", b"second")
        assert kv_view(await store.get(p + "a")) == kv_view(kv), "a failed create changed the key"

    @async_test
    async def test_get_missing_raises_not_found(self, store: Any) -> None:
        """Contract: "``get``: Return the current value of ``key`` or raise ``NotFound``"."""
        p = await keyspace(store)
        with pytest.raises(NotFound):
            await store.get(p + "missing")

    @async_test
    async def test_update_replaces_value_and_revision(self, store: Any) -> None:
        """Contract: "``update``: Replace the value of an existing ``key``"; the write's revision
        becomes the key's ``revision``."""
        p = await keyspace(store)
        old = await store.create(p + "a", b"one")
        new = await store.update(p + "a", b"two")
        assert (new.key, bytes(new.value)) == (p + "a", b"two")
        assert new.revision > old.revision, f"update got {new.revision}, after {old.revision}"

    @async_test
    async def test_update_missing_raises_not_found(self, store: Any) -> None:
        """Contract: "A missing key is NotFound (also with ``expected_revision=None``)"."""
        p = await keyspace(store)
        rev = await store.current_revision()
        with pytest.raises(NotFound):
            await store.update(p + "missing", b"x")
        with pytest.raises(NotFound):
            await store.update(p + "missing", b"x", expected_revision=max(rev, 1))
        with pytest.raises(NotFound):
            await store.get(p + "missing")

    @async_test
    async def test_delete_returns_last_value_with_delete_revision(self, store: Any) -> None:
        """Contract: "``delete``: Delete ``key``; return its last value with the revision of the
        delete"."""
        p = await keyspace(store)
        await store.create(p + "a", b"one")
        last = await store.update(p + "a", b"two")
        gone = await store.delete(p + "a")
        assert (gone.key, bytes(gone.value)) == (p + "a", b"two")
        assert gone.revision > last.revision, (
            f"delete returned revision {gone.revision}, the key's last write was {last.revision}"
        )
        assert gone.revision == await store.current_revision(), "delete's revision is not current"
        with pytest.raises(NotFound):
            await store.get(p + "a")

    @async_test
    async def test_delete_missing_raises_not_found(self, store: Any) -> None:
        """Contract: "A missing key is NotFound (also with ``expected_revision=None``)": deleting a
        key that never existed, or twice, fails the same way."""
        p = await keyspace(store)
        with pytest.raises(NotFound):
            await store.delete(p + "never")
        kv = await store.create(p + "a", b"x")
        await store.delete(p + "a")
        with pytest.raises(NotFound):
            await store.delete(p + "a")
        with pytest.raises(NotFound):
            await store.delete(p + "a", expected_revision=kv.revision)

    @async_test
    async def test_deleted_key_can_be_created_again(self, store: Any) -> None:
        """Contract: "``create`` fails with AlreadyExists when the key holds a value": only then."""
        p = await keyspace(store)
        await store.create(p + "a", b"one")
        await store.delete(p + "a")
        again = await store.create(p + "a", b"two")
        assert bytes((await store.get(p + "a")).value) == b"two"
        assert again.create_revision == again.revision

    @async_test
    async def test_keys_may_hold_any_characters(self, store: Any) -> None:
        """Contract: "Keys are ``str``": keys with spaces, quotes, wildcards and non-ASCII work."""
        p = await keyspace(store)
        names = [
            "with space",
            "quote'\"",
            "wild_%*?[]",
            "back\\slash",
            "ümlaut",
            "emoji-\U0001f600",
        ]
        for name in names:
            await store.create(p + name, name.encode())
        for name in names:
            assert bytes((await store.get(p + name)).value) == name.encode(), name
        assert [kv.key for kv in (await list_all(store, p)).items] == sorted(p + n for n in names)

    # -- revisions ---------------------------------------------------------------------------

    @async_test
    async def test_a_store_of_its_own_counts_from_zero_by_one(self, store: Any) -> None:
        """The revision "is 0 for a new, empty store and grows with each successful create,
        update or delete (by exactly one when nothing else writes to the backend)". Checked
        when the test module says its store shares its backend with nobody
        (``exclusive_backend``)."""
        if not self.exclusive_backend:
            pytest.skip(
                "store lacks capability exclusive_backend: the test module does not say that"
                " its store shares its backend with nobody"
            )
        assert await store.current_revision() == 0, "the revision of a new store"
        p = await keyspace(store)
        revisions = [
            (await store.create(p + "a", b"1")).revision,
            (await store.create(p + "b", b"1")).revision,
            (await store.update(p + "a", b"2")).revision,
            (await store.delete(p + "b")).revision,
            (await store.update(p + "a", b"3")).revision,
        ]
        assert revisions == [1, 2, 3, 4, 5], revisions
        assert await store.current_revision() == 5

    @async_test
    async def test_revisions_strictly_increase_with_each_write(self, store: Any) -> None:
        """Contract: "The store keeps one global revision ... [that] grows with each successful
        create, update or delete", across keys."""
        p = await keyspace(store)
        w = Writes(store)
        last = await store.current_revision()
        rng = random.Random(2)
        for _ in range(30):
            kv = await w.random_write(rng, [p + k for k in "abc"])
            assert kv.revision > last, f"a write got revision {kv.revision} after {last}"
            last = kv.revision

    @async_test
    async def test_current_revision_tracks_last_write(self, store: Any) -> None:
        """Contract: "``current_revision``: The revision of the last write"."""
        p = await keyspace(store)
        w = Writes(store)
        rng = random.Random(3)
        for _ in range(15):
            kv = await w.random_write(rng, [p + k for k in "ab"])
            assert await store.current_revision() == kv.revision

    @async_test
    async def test_reads_do_not_change_the_revision(self, store: Any) -> None:
        """The revision grows with each successful create, update or delete, and with
        nothing else: ``get``, ``list`` and ``watch`` are not writes."""
        p = await keyspace(store)
        kv = await store.create(p + "a", b"x")
        await store.get(p + "a")
        await store.list(p)
        await store.list(p, limit=1)
        watch = open_watch(store, p, kv.revision - 1)
        await next_event(watch)
        assert await store.current_revision() == kv.revision

    @async_test
    async def test_failed_writes_change_nothing(self, store: Any) -> None:
        """Contract: "when given and not the key's current revision they fail with Conflict and
        change nothing"; likewise a create on a taken key and a write to a missing key:
        no value, revision or watch event changes."""
        p = await keyspace(store)
        w = Writes(store)
        base = await store.current_revision()
        a = await w.create(p + "a", b"a1")
        a2 = await w.update(p + "a", b"a2")
        rev = await store.current_revision()
        failing: list[tuple[type[Exception], Callable[[], Awaitable[Any]]]] = [
            (AlreadyExists, lambda: store.create(p + "a", b"x")),
            (NotFound, lambda: store.update(p + "missing", b"x")),
            (NotFound, lambda: store.delete(p + "missing")),
            (
                Conflict,
                lambda: store.update(p + "a", b"x", expected_revision=a.revision),
            ),
            (Conflict, lambda: store.delete(p + "a", expected_revision=a.revision)),
        ]
        for error, call in failing:
            with pytest.raises(error):
                await call()
            assert await store.current_revision() == rev, (
                f"a failed write ({error.__name__}) moved the revision"
            )
            assert kv_view(await store.get(p + "a")) == kv_view(a2), (
                "a failed write changed the key"
            )
            with pytest.raises(NotFound):
                await store.get(p + "missing")
        watch = open_watch(store, p, base)
        await w.create(p + "~sentinel", b"")
        assert_events(
            await read_until(watch, p + "~sentinel"),
            w.events[:2],
            "after failed writes",
        )

    @async_test
    async def test_create_revision_is_kept_across_updates(self, store: Any) -> None:
        """``KeyValue.create_revision``: "The revision of the create that started this key's
        current life" stays while the key is updated."""
        p = await keyspace(store)
        created = await store.create(p + "a", b"1")
        for i in range(3):
            kv = await store.update(p + "a", str(i).encode())
            assert kv.create_revision == created.revision
        assert (await store.get(p + "a")).create_revision == created.revision
        [listed] = (await list_all(store, p)).items
        assert listed.create_revision == created.revision

    @async_test
    async def test_create_revision_is_new_after_delete_and_create(self, store: Any) -> None:
        """Contract: "The revision of the create that started this key's current life": a
        key created again after a delete starts a new life."""
        p = await keyspace(store)
        first = await store.create(p + "a", b"1")
        await store.delete(p + "a")
        second = await store.create(p + "a", b"2")
        assert second.create_revision == second.revision > first.revision
        assert (await store.get(p + "a")).create_revision == second.revision

    # -- compare-and-swap ----------------------------------------------------------------------

    @async_test
    async def test_update_with_current_revision_succeeds(self, store: Any) -> None:
        """``update``: "compare-and-swap on ``expected_revision``": the key's current
        revision passes."""
        p = await keyspace(store)
        kv = await store.create(p + "a", b"1")
        kv = await store.update(p + "a", b"2", expected_revision=kv.revision)
        kv = await store.update(p + "a", b"3", expected_revision=kv.revision)
        assert bytes((await store.get(p + "a")).value) == b"3"

    @async_test
    async def test_update_with_stale_revision_raises_conflict(self, store: Any) -> None:
        """Contract: "``update`` and ``delete`` take ``expected_revision``; when given and not the
        key's current revision they fail with Conflict and change nothing"."""
        p = await keyspace(store)
        old = await store.create(p + "a", b"1")
        new = await store.update(p + "a", b"2")
        for stale in (old.revision, new.revision - 1, new.revision + 1000):
            with pytest.raises(Conflict):
                await store.update(p + "a", b"stale", expected_revision=stale)
        assert kv_view(await store.get(p + "a")) == kv_view(new)

    @async_test
    async def test_delete_with_current_revision_succeeds(self, store: Any) -> None:
        """``delete``: compare-and-swap on ``expected_revision``: the current one passes."""
        p = await keyspace(store)
        kv = await store.create(p + "a", b"1")
        kv = await store.update(p + "a", b"2", expected_revision=kv.revision)
        await store.delete(p + "a", expected_revision=kv.revision)
        with pytest.raises(NotFound):
            await store.get(p + "a")

    @async_test
    async def test_delete_with_stale_revision_raises_conflict(self, store: Any) -> None:
        """Contract: "``update`` and ``delete`` take ``expected_revision``; when given and not the
        key's current revision they fail with Conflict and change nothing"."""
        p = await keyspace(store)
        old = await store.create(p + "a", b"1")
        new = await store.update(p + "a", b"2")
        with pytest.raises(Conflict):
            await store.delete(p + "a", expected_revision=old.revision)
        assert kv_view(await store.get(p + "a")) == kv_view(new)

    @async_test
    async def test_revision_of_a_previous_life_raises_conflict(self, store: Any) -> None:
        """Conflict when "not the key's current revision": a revision read before the key
        was deleted and created again is stale, even though the key exists."""
        p = await keyspace(store)
        old = await store.create(p + "a", b"1")
        await store.delete(p + "a")
        new = await store.create(p + "a", b"2")
        with pytest.raises(Conflict):
            await store.update(p + "a", b"x", expected_revision=old.revision)
        with pytest.raises(Conflict):
            await store.delete(p + "a", expected_revision=old.revision)
        assert kv_view(await store.get(p + "a")) == kv_view(new)

    # -- concurrency ---------------------------------------------------------------------------

    @async_test
    async def test_concurrent_cas_increments_lose_no_update(self, store: Any) -> None:
        """Compare-and-swap makes read-modify-write safe: 20 tasks x 10 increments of one
        counter, each retrying on Conflict, end at 200 with 200 distinct revisions."""
        p = await keyspace(store)
        key = p + "counter"
        await store.create(key, b"0")
        revisions: list[int] = []

        async def incrementer() -> None:
            for _ in range(10):
                while True:
                    kv = await store.get(key)
                    await asyncio.sleep(0)  # let the others read the same revision
                    try:
                        new = await store.update(
                            key,
                            str(int(kv.value) + 1).encode(),
                            expected_revision=kv.revision,
                        )
                    except Conflict:
                        continue
                    revisions.append(new.revision)
                    break

        await asyncio.gather(*(incrementer() for _ in range(20)))
        final = await store.get(key)
        assert int(final.value) == 200, f"counter is {int(final.value)} after 200 increments"
        assert len(set(revisions)) == 200, "two successful updates got the same revision"
        assert final.revision == max(revisions)

    @async_test
    async def test_concurrent_creates_of_one_key_have_one_winner(self, store: Any) -> None:
        """Contract: "``create`` fails with AlreadyExists when the key holds a value", also when 20
        creates race."""
        p = await keyspace(store)
        results = await asyncio.gather(
            *(store.create(p + "a", str(i).encode()) for i in range(20)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, KeyValue)]
        losers = [r for r in results if isinstance(r, AlreadyExists)]
        assert len(winners) == 1 and len(losers) == 19, f"results: {results!r}"
        assert kv_view(await store.get(p + "a")) == kv_view(winners[0])

    @async_test
    async def test_concurrent_writes_get_distinct_revisions(self, store: Any) -> None:
        """Contract: "one global revision ... grows with each successful create, update or delete":
        50 concurrent creates get 50 distinct revisions, and the store ends at the last."""
        p = await keyspace(store)
        kvs = await asyncio.gather(*(store.create(f"{p}k{i:02}", b"x") for i in range(50)))
        assert len({kv.revision for kv in kvs}) == 50, "two writes got the same revision"
        assert await store.current_revision() == max(kv.revision for kv in kvs)
        assert_items(await list_all(store, p), kvs, "list after concurrent creates")

    @async_test
    async def test_concurrent_reads_and_writes_apply_each_write_once(self, store: Any) -> None:
        """Contract: "one global revision ... grows with each successful create, update or
        delete": updates issued at the same time as reads each happen exactly once (one
        watch event each, the last value wins), and the reads see a value that was written."""
        p = await keyspace(store)
        key = p + "counter"
        first = await store.create(key, b"0")
        watch = open_watch(store, p, first.revision)
        ops = []
        for i in range(1, 41):
            ops.append(store.update(key, str(i).encode()))
            ops.append(store.get(key))
            ops.append(store.list(p))
        results = await asyncio.gather(*ops)
        updates = results[0::3]
        written = {b"0"} | {str(i).encode() for i in range(1, 41)}
        for kv in results[1::3]:
            assert bytes(kv.value) in written, f"get returned {bytes(kv.value)!r}"
        await store.create(p + "~sentinel", b"")
        events = await read_until(watch, p + "~sentinel")
        assert [e.kv.revision for e in events] == sorted(kv.revision for kv in updates), (
            f"{len(updates)} updates caused {len(events)} events "
            f"({[event_view(e) for e in events]})"
        )
        last = max(updates, key=lambda kv: kv.revision)
        assert kv_view(await store.get(key)) == kv_view(last)

    # -- list ----------------------------------------------------------------------------------

    @async_test
    async def test_list_returns_keys_under_prefix_sorted(self, store: Any) -> None:
        """``list``: "Return the keys starting with ``prefix`` ... sorted by key"."""
        p = await keyspace(store)
        names = ["m", "b", "z", "a/1", "a", "a/0", "B", "0"]
        kvs = [await store.create(p + "in/" + n, n.encode()) for n in names]
        await store.create(p + "out", b"")
        await store.create(p + "in", b"")
        result = await list_all(store, p + "in/")
        assert_items(result, kvs, f"list({p + 'in/'!r})")
        assert [kv.key for kv in result.items] == sorted(kv.key for kv in kvs)

    @async_test
    async def test_list_excludes_deleted_keys(self, store: Any) -> None:
        """``list`` reads "every key under a prefix as of one revision": deleted keys are
        gone, updated keys show their last value."""
        p = await keyspace(store)
        a = await store.create(p + "a", b"1")
        await store.create(p + "b", b"1")
        await store.delete(p + "b")
        c = await store.update(p + "a", b"2", expected_revision=a.revision)
        assert_items(await list_all(store, p), [c], "list after a delete")

    @async_test
    async def test_list_of_a_prefix_without_keys_is_empty(self, store: Any) -> None:
        """``list`` of a prefix with no keys returns no items (not an error)."""
        p = await keyspace(store)
        await store.create(p + "a", b"")
        result = await list_all(store, p + "nothing/")
        assert result.items == [] and result.more is False

    @async_test
    async def test_list_revision_is_the_snapshot_revision(self, store: Any) -> None:
        """``ListResult.revision``: "The store revision the snapshot was read at": with no
        revision given, the current one."""
        p = await keyspace(store)
        kv = await store.create(p + "a", b"")
        result = await store.list(p)
        assert result.revision == kv.revision == await store.current_revision()

    @async_test
    async def test_list_prefix_wildcards_are_literal(self, store: Any) -> None:
        """Contract: "the keys starting with ``prefix``": ``_``, ``%``, ``*``, ``?``, ``[`` and
        ``\\`` in a prefix are plain characters, not patterns."""
        p = await keyspace(store)
        names = [
            "a_b/1",
            "axb/1",
            "a%b/1",
            "a%%b/1",
            "aXYZb/1",
            "a*b/1",
            "a?b/1",
            "a[b]/1",
            "a\\b/1",
            "ab/1",
        ]
        kvs = {n: await store.create(p + n, n.encode()) for n in names}
        for prefix, matching in {
            "a_b": ["a_b/1"],
            "a%b": ["a%b/1"],
            "a%": ["a%b/1", "a%%b/1"],
            "a*": ["a*b/1"],
            "a?": ["a?b/1"],
            "a[b": ["a[b]/1"],
            "a\\": ["a\\b/1"],
            "a_": ["a_b/1"],
        }.items():
            result = await list_all(store, p + prefix)
            assert_items(result, [kvs[n] for n in matching], f"list({p + prefix!r})")

    @async_test
    async def test_list_prefix_is_a_plain_string_prefix(self, store: Any) -> None:
        """Contract: "the keys starting with ``prefix``": ``/pods/a`` covers ``/pods/ab`` too, while
        ``/pods/a/`` does not."""
        p = await keyspace(store)
        names = [
            "pods/a",
            "pods/a/x",
            "pods/ab",
            "pods/ab/y",
            "pods/b",
            "pods/a0",
            "pods/a~",
        ]
        kvs = {n: await store.create(p + n, b"") for n in names}
        for prefix, matching in {
            "pods/a": [
                "pods/a",
                "pods/a/x",
                "pods/ab",
                "pods/ab/y",
                "pods/a0",
                "pods/a~",
            ],
            "pods/a/": ["pods/a/x"],
            "pods/ab": ["pods/ab", "pods/ab/y"],
            "pods/ab/": ["pods/ab/y"],
            "pods/b": ["pods/b"],
        }.items():
            assert_items(await list_all(store, p + prefix), [kvs[n] for n in matching], prefix)

    @async_test
    async def test_list_prefix_with_non_ascii_keys(self, store: Any) -> None:
        """Contract: "the keys starting with ``prefix``": keys with characters beyond U+FFFF (which
        defeat a ``key < prefix || '\\uffff'`` range) are listed, in code point order."""
        p = await keyspace(store)
        names = ["a\U0001f600", "a\uffff", "a\u00e9", "a\U0010fffd", "a~", "b"]
        kvs = {n: await store.create(p + n, b"") for n in names}
        result = await list_all(store, p + "a")
        assert_items(result, [kvs[n] for n in names if n.startswith("a")], "non-ASCII keys")

    @async_test
    async def test_list_prefix_ending_at_code_point_edges(self, store: Any) -> None:
        """Contract: "the keys starting with ``prefix``", also for a prefix ending just below
        the surrogate range (U+D7FF, whose successor is U+E000), just below the last code
        point (U+10FFFE) or at it (U+10FFFF, which has no successor)."""
        p = await keyspace(store)
        names = [
            "a\ud7fe\uffff",
            "a\ud7ff",
            "a\ud7ffz",
            "a\ue000",
            "z\U0010fffe",
            "z\U0010ffff",
        ]
        names += ["z\U0010ffff\U0010ffff", "z\U0010ffff0", "{"]
        kvs = {n: await store.create(p + n, n.encode()) for n in names}
        for prefix in ("a\ud7ff", "z\U0010fffe", "z\U0010ffff"):
            expected = [kvs[n] for n in names if n.startswith(prefix)]
            assert_items(await list_all(store, p + prefix), expected, f"prefix {prefix!r}")

    @async_test
    async def test_list_limit_and_start_after_paginate(self, store: Any) -> None:
        """``list``: "at most ``limit`` of them, beginning after key ``start_after``", and
        ``more``: "True when ``limit`` cut the result short; continue with
        ``start_after=items[-1].key``"."""
        p = await keyspace(store)
        kvs = [await store.create(f"{p}k{i}", b"") for i in range(7)]
        pages: list[list[str]] = []
        start_after = None
        for _ in range(10):
            page = await store.list(p, limit=3, start_after=start_after)
            assert len(page.items) <= 3, f"limit=3 gave {len(page.items)} items"
            pages.append([kv.key for kv in page.items])
            if not page.more:
                break
            start_after = page.items[-1].key
        keys = [kv.key for kv in kvs]
        assert pages == [keys[0:3], keys[3:6], keys[6:7]], f"pages: {pages}"

    @async_test
    async def test_list_more_is_false_when_limit_fits_exactly(self, store: Any) -> None:
        """``more``: "True when ``limit`` cut the result short": not when exactly ``limit``
        items remain, nor when fewer do; ``limit=0`` gives no items and says whether there
        are any."""
        p = await keyspace(store)
        for i in range(4):
            await store.create(f"{p}k{i}", b"")
        exact = await store.list(p, limit=4)
        assert len(exact.items) == 4 and exact.more is False, f"limit=4 of 4: more={exact.more}"
        roomy = await store.list(p, limit=10)
        assert len(roomy.items) == 4 and roomy.more is False
        cut = await store.list(p, limit=3)
        assert len(cut.items) == 3 and cut.more is True, f"limit=3 of 4: more={cut.more}"
        # limit=0: no items; more says whether there are any.
        none = await store.list(p, limit=0)
        assert (none.items, none.more) == ([], True), f"limit=0 of 4: {none}"
        empty = await store.list(p + "nothing/", limit=0)
        assert (empty.items, empty.more) == ([], False), f"limit=0 of none: {empty}"
        tail = await store.list(p, limit=1, start_after=f"{p}k2")
        assert [kv.key for kv in tail.items] == [f"{p}k3"] and tail.more is False

    @async_test
    async def test_list_start_after_a_key_that_does_not_exist(self, store: Any) -> None:
        """``list``: "beginning after key ``start_after``": any string, not only a stored key."""
        p = await keyspace(store)
        for name in ["a", "c", "e"]:
            await store.create(p + name, b"")
        result = await list_all(store, p, start_after=p + "b")
        assert [kv.key for kv in result.items] == [p + "c", p + "e"]
        result = await list_all(store, p, start_after=p + "e")
        assert result.items == []

    # -- list at a revision ----------------------------------------------------------------------

    @async_test
    async def test_list_at_older_revision_returns_that_snapshot(self, store: Any) -> None:
        """Contract: "``list`` reads a consistent snapshot: every key under a prefix as of one
        revision": keys deleted since are there, keys created later are not, updated keys
        show their value of then."""
        self.require(store, Capability.LIST_AT_REVISION)
        p = await keyspace(store)
        before = await store.current_revision()
        a = await store.create(p + "a", b"a1")
        b = await store.create(p + "b", b"b1")
        then = await store.current_revision()
        assert_items(await list_all(store, p, revision=before), [], f"list at {before}")
        await store.update(p + "a", b"a2")
        await store.delete(p + "b")
        await store.create(p + "c", b"c1")
        result = await list_all(store, p, revision=then)
        assert_items(result, [a, b], f"list at revision {then}")
        assert result.revision == then, f"list at {then} says it read at {result.revision}"
        mid = await list_all(store, p, revision=a.revision)
        assert_items(mid, [a], f"list at revision {a.revision}")

    @async_test
    async def test_list_at_revision_paginates_one_snapshot(self, store: Any) -> None:
        """Contract: "``list`` reads a consistent snapshot" that pagination can continue at
        the first page's revision while writes go on."""
        self.require(store, Capability.LIST_AT_REVISION)
        p = await keyspace(store)
        kvs = [await store.create(f"{p}k{i}", b"v1") for i in range(6)]
        first = await store.list(p, limit=2)
        seen = list(first.items)
        await store.delete(f"{p}k3")
        await store.update(f"{p}k4", b"v2")
        await store.create(f"{p}k45", b"new")
        page = first
        while page.more:
            page = await store.list(
                p, revision=first.revision, limit=2, start_after=page.items[-1].key
            )
            seen.extend(page.items)
        assert_items(ListResult(seen, first.revision), kvs, "pages at one revision")

    # -- watch ---------------------------------------------------------------------------------

    @async_test
    async def test_watch_yields_every_change_in_order_with_types(self, store: Any) -> None:
        """Contract: "``watch`` yields, in revision order and each exactly once, every
        change under a prefix with a revision greater than ``after_revision``", typed
        ADDED, MODIFIED, DELETED."""
        p = await keyspace(store)
        w = Writes(store)
        base = await store.current_revision()
        watch = open_watch(store, p, base)
        await w.create(p + "a", b"1")
        await w.create(p + "b", b"1")
        await w.update(p + "a", b"2")
        await w.delete(p + "b")
        await w.update(p + "a", b"3")
        await w.delete(p + "a")
        await w.create(p + "a", b"4")
        await w.create(p + "~sentinel", b"")
        events = await read_until(watch, p + "~sentinel")
        assert_events(events, w.events[:-1], "watch")
        types = [str(e.type) for e in events]
        assert types == [
            "ADDED",
            "ADDED",
            "MODIFIED",
            "DELETED",
            "MODIFIED",
            "DELETED",
            "ADDED",
        ]
        revisions = [e.revision for e in events]
        assert revisions == sorted(set(revisions)), f"revisions not increasing: {revisions}"

    @async_test
    async def test_watch_events_carry_prev(self, store: Any) -> None:
        """``WatchEvent.prev``: "The value before this change; ``None`` for ``ADDED``"."""
        p = await keyspace(store)
        base = await store.current_revision()
        watch = open_watch(store, p, base)
        a1 = await store.create(p + "a", b"1")
        a2 = await store.update(p + "a", b"2")
        await store.delete(p + "a")
        added, modified, deleted = [await next_event(watch) for _ in range(3)]
        assert added.prev is None, f"ADDED carries prev {kv_view(added.prev)}"
        assert kv_view(modified.prev) == kv_view(a1), "MODIFIED's prev is not the old value"
        assert kv_view(deleted.prev) == kv_view(a2), "DELETED's prev is not the last value"

    @async_test
    async def test_watch_deleted_event_carries_last_value(self, store: Any) -> None:
        """Contract: "For ``DELETED``, ``kv.value`` is the value just before the delete and
        ``kv.revision`` the revision of the delete itself"."""
        p = await keyspace(store)
        await store.create(p + "a", b"first")
        last = await store.update(p + "a", b"last")
        watch = open_watch(store, p, last.revision)
        gone = await store.delete(p + "a")
        event = await next_event(watch)
        assert str(event.type) == "DELETED"
        assert (event.kv.key, bytes(event.kv.value), event.kv.revision) == (
            p + "a",
            b"last",
            gone.revision,
        ), f"DELETED event kv is {kv_view(event.kv)}"
        assert event.revision == gone.revision

    @async_test
    async def test_watch_filters_by_prefix(self, store: Any) -> None:
        """``watch``: "every change under a prefix": and nothing outside it, with ``_`` and
        ``%`` taken literally and ``a/`` not matching ``ab/``."""
        p = await keyspace(store)
        w = Writes(store)
        base = await store.current_revision()
        watches = {sub: open_watch(store, p + sub, base) for sub in ["a/", "a_", "a%", "a"]}
        for name in ["a/1", "ab/1", "a_/1", "ax/1", "a%/1", "a%x", "b/1", "a"]:
            await w.create(p + name, name.encode())
        await w.update(p + "ab/1", b"2")
        await w.delete(p + "a/1")
        sentinels = {sub: await w.create(p + sub + "~sentinel", b"") for sub in watches}
        for sub, watch in watches.items():
            events = await read_until(watch, sentinels[sub].key, f"watch({sub!r})")
            expected = [e for e in w.after(base, p + sub) if e.revision < sentinels[sub].revision]
            assert_events(events, expected, f"watch({p + sub!r})")

    @async_test
    async def test_watch_from_older_revision_replays_then_continues_live(self, store: Any) -> None:
        """Contract: "``watch`` yields ... every change under a prefix with a revision greater than
        ``after_revision``": history first, then live changes, no gap and no repeat."""
        p = await keyspace(store)
        w = Writes(store)
        rng = random.Random(4)
        keys = [p + k for k in "abc"]
        for _ in range(5):
            await w.random_write(rng, keys)
        start = w.events[1].revision
        watch = open_watch(store, p, start)
        replay = [await next_event(watch, "replay") for _ in range(3)]
        assert_events(replay, w.events[2:5], "replayed history")
        for _ in range(5):
            await w.random_write(rng, keys)
        await w.create(p + "~sentinel", b"")
        live = await read_until(watch, p + "~sentinel")
        assert_events(live, w.events[5:-1], "live events after the replay")

    @async_test
    async def test_watch_from_current_revision_sees_only_new_changes(self, store: Any) -> None:
        """``watch``: changes "with a revision greater than ``after_revision``": nothing at
        or before it."""
        p = await keyspace(store)
        w = Writes(store)
        await w.create(p + "a", b"1")
        now = (await w.update(p + "a", b"2")).revision
        watch = open_watch(store, p, now)
        await w.update(p + "a", b"3")
        await w.create(p + "~sentinel", b"")
        assert_events(await read_until(watch, p + "~sentinel"), w.events[2:3], "watch from now")

    @async_test
    async def test_concurrent_watchers_see_the_same_sequence(self, store: Any) -> None:
        """``watch`` yields "in revision order and each exactly once": five watchers reading
        concurrently during interleaved writes all see exactly the writes' sequence."""
        p = await keyspace(store)
        w = Writes(store)
        base = await store.current_revision()
        watches = [open_watch(store, p, base) for _ in range(5)]
        readers = [
            asyncio.ensure_future(read_until(watch, p + "~sentinel", f"watcher {i}"))
            for i, watch in enumerate(watches)
        ]
        rng = random.Random(5)
        for _ in range(40):
            await w.random_write(rng, [p + k for k in "abcd"])
            await asyncio.sleep(0)
        await store.create(p + "~sentinel", b"")
        for i, events in enumerate(await asyncio.gather(*readers)):
            assert_events(events, w.events, f"watcher {i}")

    @async_test
    async def test_watch_started_during_a_burst_of_writes_loses_and_repeats_nothing(
        self, store: Any
    ) -> None:
        """``watch`` yields "each exactly once, every change ... greater than
        ``after_revision``" even when it starts while writes land: the switch from
        replaying history to following live changes has no gap and no overlap."""
        p = await keyspace(store)
        w = Writes(store)
        base = await store.current_revision()
        keys = [p + f"k{i}" for i in range(8)]
        rng = random.Random(6)
        written = 0
        progress = asyncio.Condition()

        async def writer() -> None:
            nonlocal written
            for _ in range(150):
                await w.random_write(rng, keys)
                written += 1
                async with progress:
                    progress.notify_all()
                await asyncio.sleep(0)

        async def watcher(start_at: int, from_now: bool) -> tuple[int, list[WatchEvent]]:
            async with progress:
                await progress.wait_for(lambda: written >= start_at)
            after = await store.current_revision() if from_now else base
            watch = open_watch(store, p, after)
            return after, await read_until(watch, p + "~sentinel", f"watch started at {start_at}")

        plan = [
            (0, False),
            (5, False),
            (30, False),
            (75, False),
            (20, True),
            (100, True),
            (140, False),
        ]
        readers = [asyncio.ensure_future(watcher(at, now)) for at, now in plan]
        await writer()
        await asyncio.sleep(0.05)
        await store.create(p + "~sentinel", b"")
        for (at, now), (after, events) in zip(plan, await asyncio.gather(*readers), strict=True):
            label = f"watch started after {at} writes from {'now' if now else 'the start'}"
            assert_events(events, w.after(after), label)

    @async_test
    async def test_watch_can_be_closed_by_the_caller(self, store: Any) -> None:
        """``watch`` "Returns an async iterator (typically an async generator; ``aclose()``
        ends it)": closing one watch ends it and leaves the others running."""
        p = await keyspace(store)
        base = await store.current_revision()
        first = store.watch(p, after_revision=base)
        assert hasattr(first, "aclose"), "watch() must return an async iterator with aclose()"
        second = open_watch(store, p, base)
        await store.create(p + "a", b"")
        await next_event(first, "first watch")
        await close_watch(first)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(first), EVENT_TIMEOUT)
        await store.create(p + "b", b"")
        assert [(await next_event(second)).kv.key for _ in range(2)] == [
            p + "a",
            p + "b",
        ]

    # -- compaction ------------------------------------------------------------------------------

    async def _history(self, store: Any, prefix: str | None = None) -> tuple[str, Writes]:
        """Five writes under ``prefix`` (default: a fresh prefix of the test)."""
        p = prefix or await keyspace(store)
        w = Writes(store)
        await w.create(p + "a", b"1")
        await w.create(p + "b", b"1")
        await w.update(p + "a", b"2")
        await w.delete(p + "b")
        await w.update(p + "a", b"3")
        return p, w

    @async_test
    async def test_compact_expires_list_below_it(self, store: Any) -> None:
        """Contract: "``compact(R)`` forgets history older than R ...: afterwards ``list`` at a
        revision below R ... raise[s] ``Expired``"."""
        self.require(store, Capability.COMPACTION, Capability.LIST_AT_REVISION)
        p, w = await self._history(store)
        r = w.events[2].revision
        await store.compact(r)
        for old in (w.events[0].revision, w.events[1].revision, r - 1):
            with pytest.raises(Expired):
                await store.list(p, revision=old)

    @async_test
    async def test_compact_keeps_list_at_and_after_it(self, store: Any) -> None:
        """Contract: "``compact(R)`` ...: reads at R or later and current values are unaffected"."""
        self.require(store, Capability.COMPACTION, Capability.LIST_AT_REVISION)
        p, w = await self._history(store)
        r = w.events[2].revision
        await store.compact(r)
        at_r = await list_all(store, p, revision=r)
        assert_items(
            at_r,
            [w.events[2].kv, w.events[1].kv],
            f"list at the compacted revision {r}",
        )
        later = w.events[3].revision
        assert_items(
            await list_all(store, p, revision=later),
            [w.events[2].kv],
            f"list at {later}",
        )

    @async_test
    async def test_compact_keeps_current_values(self, store: Any) -> None:
        """Contract: "``compact(R)`` ...: reads at R or later and current values are unaffected"."""
        self.require(store, Capability.COMPACTION)
        p, w = await self._history(store)
        now = await store.current_revision()
        await store.compact(now)
        assert kv_view(await store.get(p + "a")) == kv_view(w.latest[p + "a"])
        assert_items(await list_all(store, p), list(w.latest.values()), "list after compaction")
        kv = await store.update(p + "a", b"4", expected_revision=w.latest[p + "a"].revision)
        assert kv.revision > now and kv.create_revision == w.events[0].revision

    @async_test
    async def test_compact_expires_watch_from_before_it(self, store: Any) -> None:
        """Contract: "``compact(R)`` ...: afterwards ... ``watch`` after a revision below R - 1 (it
        would need events older than R), raise ``Expired``"."""
        self.require(store, Capability.COMPACTION)
        p, w = await self._history(store)
        r = w.events[3].revision
        await store.compact(r)
        await assert_watch_expired(store, p, r - 2)
        await assert_watch_expired(store, p, w.events[0].revision - 1)

    @async_test
    async def test_watch_from_compacted_revision_minus_one_still_works(self, store: Any) -> None:
        """Contract: "``watch`` after a revision below R - 1 ... raise ``Expired``": after R - 1 it
        still works, starting with the write at R."""
        self.require(store, Capability.COMPACTION)
        p, w = await self._history(store)
        r = w.events[2].revision
        await store.compact(r)
        watch = open_watch(store, p, r - 1)
        await store.create(p + "~sentinel", b"")
        assert_events(await read_until(watch, p + "~sentinel"), w.events[2:], "watch from R - 1")

    @async_test
    async def test_compact_future_revision_raises_invalid(self, store: Any) -> None:
        """``compact``: "Raises ... ``Invalid`` for a future revision"."""
        self.require(store, Capability.COMPACTION)
        p, w = await self._history(store)
        now = await store.current_revision()
        with pytest.raises(Invalid):
            await store.compact(now + 1000)
        if Capability.LIST_AT_REVISION in store.capabilities:
            first = w.events[0].revision
            assert_items(await list_all(store, p, revision=first), [w.events[0].kv], "history")

    @async_test
    async def test_compact_below_earlier_compaction_raises_expired(self, store: Any) -> None:
        """``compact``: "Raises ``Expired`` if already compacted past it"."""
        self.require(store, Capability.COMPACTION)
        _, w = await self._history(store)
        await store.compact(w.events[3].revision)
        with pytest.raises(Expired):
            await store.compact(w.events[1].revision)
        await store.compact(w.events[4].revision)

    # -- close ---------------------------------------------------------------------------------

    @async_test
    async def test_close_ends_open_watches(self, store_factory: Any) -> None:
        """``close``: "Release connections and end open watches (they stop iterating)": a
        reader waiting for an event and an idle watch both end, without an error."""
        store = await store_factory()
        try:
            p = unique_prefix()
            base = await store.current_revision()
            waiting = store.watch(p, after_revision=base)
            idle = store.watch(p, after_revision=base)
            await store.create(p + "a", b"")
            await store.delete(p + "a")
            for watch in (waiting, idle):
                for _ in range(2):
                    await next_event(watch)
            pending = asyncio.ensure_future(anext(waiting))
            await asyncio.sleep(0.05)
        except BaseException:
            await store.close()
            raise
        await asyncio.wait_for(store.close(), EVENT_TIMEOUT)
        try:
            done, _ = await asyncio.wait([pending], timeout=EVENT_TIMEOUT)
            assert done, f"a watch waiting for events still waits {EVENT_TIMEOUT:g} s after close()"
            with pytest.raises(StopAsyncIteration):
                pending.result()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(idle), EVENT_TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"an idle watch still waits {EVENT_TIMEOUT:g} s after close()"
            ) from None
        finally:
            pending.cancel()

    # -- bad calls, closed stores, restarts, faults -----------------------------------------------

    @async_test
    async def test_keys_and_values_of_the_wrong_type_are_invalid(self, store: Any) -> None:
        """Keys are ``str`` of valid Unicode text and values opaque ``bytes``: anything
        else (a lone surrogate in a key, a ``str`` value...) is refused with ``Invalid`` and
        stores nothing. So is such a prefix of ``list`` or ``watch``, or ``start_after``."""
        p = await keyspace(store)
        kv = await store.create(p + "a", b"1")
        before = await store.current_revision()
        for call in (
            lambda: store.create(p + "b", "text"),
            lambda: store.create(p + "b", 7),
            lambda: store.create(p + "b", None),
            lambda: store.create(7, b"1"),
            lambda: store.create(p + "\ud800", b"1"),
            lambda: store.update(p + "a", "text"),
            lambda: store.update(p + "a", 7),
        ):
            with pytest.raises(Invalid):
                await call()
        assert await store.current_revision() == before, "a refused write changed the revision"
        assert kv_view(await store.get(p + "a")) == kv_view(kv)
        with pytest.raises(NotFound):
            await store.get(p + "b")
        # The same for the prefix of a list or watch, and for start_after.
        for call in (
            lambda: store.list(7),
            lambda: store.list(p + "\ud800"),
            lambda: store.list(p, start_after=7),
            lambda: store.list(p, start_after=p + "\ud800"),
            lambda: anext(store.watch(7, after_revision=before)),
            lambda: anext(store.watch(p + "\ud800", after_revision=before)),
        ):
            with pytest.raises(Invalid):
                await asyncio.wait_for(call(), EVENT_TIMEOUT)

    @async_test
    async def test_list_at_a_future_revision_is_invalid(self, store: Any) -> None:
        """``list(revision=N)`` for an N past the current revision is refused with
        ``Invalid`` (etcd's "required revision is a future revision"): that snapshot does not
        exist yet."""
        self.require(store, Capability.LIST_AT_REVISION)
        p = await keyspace(store)
        await store.create(p + "a", b"")
        now = await store.current_revision()
        with pytest.raises(Invalid):
            await store.list(p, revision=now + 1000)

    @async_test
    async def test_negative_limit_is_invalid(self, store: Any) -> None:
        """``list`` with a negative ``limit`` is refused with ``Invalid`` (etcd's "limit must
        not be negative"), not read as "all but the last"."""
        p = await keyspace(store)
        for name in "abc":
            await store.create(p + name, b"")
        with pytest.raises(Invalid):
            await store.list(p, limit=-1)

    @async_test
    async def test_calls_after_close_raise_permanent_error(self, store_factory: Any) -> None:
        """A closed store keeps no promise: every call raises ``PermanentError`` at once
        (none hangs waiting for a connection that is gone), and closing again is harmless."""
        store = await store_factory()
        p = unique_prefix()
        try:
            kv = await store.create(p + "a", b"1")
        finally:
            await asyncio.wait_for(store.close(), EVENT_TIMEOUT)
        calls = {
            "create": lambda: store.create(p + "b", b""),
            "get": lambda: store.get(p + "a"),
            "list": lambda: store.list(p),
            "update": lambda: store.update(p + "a", b"2"),
            "delete": lambda: store.delete(p + "a", expected_revision=kv.revision),
            "current_revision": lambda: store.current_revision(),
            "compact": lambda: store.compact(kv.revision),
        }
        await assert_each_raises(calls, (PermanentError,), "after close()")
        await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

    @async_test
    async def test_close_lets_calls_in_flight_finish(self, store_factory: Any) -> None:
        """``close`` while writes are on their way: each of them either takes effect and
        returns its value, or raises ``PermanentError``; none is left hanging, and each has
        its answer when ``close()`` returns ("returns once the calls made before it have
        finished")."""
        store = await store_factory()
        p = unique_prefix()
        try:
            writes = [asyncio.ensure_future(store.create(f"{p}{i}", b"x")) for i in range(8)]
            await asyncio.sleep(0)  # let them start, as callers on other tasks would have
        finally:
            await asyncio.wait_for(store.close(), EVENT_TIMEOUT)
        for _ in range(3):  # the callers' tasks take their answers
            await asyncio.sleep(0)
        early = sum(not task.done() for task in writes)
        done, pending = await asyncio.wait(writes, timeout=EVENT_TIMEOUT)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} of 8 writes made before close() never finished"
        assert not early, f"close() returned before {early} of 8 writes made before it ended"
        for task in done:
            error = task.exception()
            assert error is None or isinstance(error, PermanentError), repr(error)

    @async_test
    async def test_a_reopened_store_is_the_same_store(
        self, store_factory: Any, kcore_settings_factory: Any
    ) -> None:
        """``durable``: a store made again on the same settings (data directory and options,
        as a restarted daemon does) has every acknowledged write: the values, revisions,
        history, compaction and the revision counter go on where they were.

        Needs ``store_factory(settings)``: the factory of ``--kcore-plugin`` takes them; an
        overriding factory that takes none lacks capability reopen."""
        settings = reopen_settings(store_factory, kcore_settings_factory)
        store = await store_factory(settings)
        try:
            self.require(store, Capability.DURABLE)
            p = unique_prefix()
            p, w = await self._history(store, p)
            compacted = Capability.COMPACTION in store.capabilities
            if compacted:
                await store.compact(w.events[2].revision)
            revision = await store.current_revision()
        finally:
            await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

        again = await store_factory(settings)
        try:
            assert await again.current_revision() == revision, "the revision after reopening"
            assert kv_view(await again.get(p + "a")) == kv_view(w.latest[p + "a"])
            with pytest.raises(NotFound):
                await again.get(p + "b")
            assert_items(
                await list_all(again, p),
                list(w.latest.values()),
                "list after reopening",
            )
            if Capability.LIST_AT_REVISION in again.capabilities:
                at = w.events[3].revision
                assert_items(
                    await list_all(again, p, revision=at),
                    [w.events[2].kv],
                    f"list at {at}",
                )
            if compacted:
                if Capability.LIST_AT_REVISION in again.capabilities:
                    with pytest.raises(Expired):
                        await again.list(p, revision=w.events[1].revision)
                await assert_watch_expired(again, p, w.events[0].revision)
                with pytest.raises(Expired):
                    await again.compact(w.events[1].revision)
            watch = open_watch(again, p, w.events[2].revision - 1)
            sentinel = await again.create(p + "~sentinel", b"")
            assert sentinel.revision > revision, "a write after reopening reused a revision"
            assert_events(await read_until(watch, p + "~sentinel"), w.events[2:], "watch")
            await delete_prefix(again, p)
        finally:
            await asyncio.wait_for(again.close(), EVENT_TIMEOUT)

    @async_test
    async def test_a_second_store_on_the_same_data_refuses_or_agrees(
        self, store_factory: Any, kcore_settings_factory: Any
    ) -> None:
        """A second store made on the settings of one that is open (a daemon started twice
        by mistake) refuses with ``PermanentError``, when made or at its first call, or
        shares the data: each sees the other's writes, and no revision is given out twice."""
        settings = reopen_settings(store_factory, kcore_settings_factory)
        first = await store_factory(settings)
        add_finalizer(first.close)
        self.require(first, Capability.DURABLE)
        p = await keyspace(first)
        kv = await first.create(p + "a", b"1")
        revision = await first.current_revision()
        try:
            second = await asyncio.wait_for(store_factory(settings), EVENT_TIMEOUT)
        except PermanentError:
            return
        add_finalizer(second.close)
        try:
            got = await asyncio.wait_for(second.current_revision(), EVENT_TIMEOUT)
        except PermanentError:
            return
        assert got == revision, f"a second store on the same data is at {got}, not {revision}"
        assert kv_view(await second.get(p + "a")) == kv_view(kv)
        # Shared, then each sees the other's writes and no revision is given out twice.
        b = await second.create(p + "b", b"2")
        c = await first.create(p + "c", b"3")
        assert c.revision > b.revision > revision, "two stores on one data gave out revisions"
        assert kv_view(await first.get(p + "b")) == kv_view(b)
        assert kv_view(await second.get(p + "c")) == kv_view(c)

    @async_test(timeout=120)
    async def test_a_watch_replays_a_long_history_whole(self, store: Any) -> None:
        """A watch from far back replays a history longer than a store reads at once
        (``long_history_writes``), then goes on live: every event once, in order."""
        p = await keyspace(store)
        start = await store.current_revision()
        w = Writes(store)
        keys = [f"{p}{i:04}" for i in range(self.long_history_writes // 3)]
        await asyncio.gather(*(w.create(k, b"0") for k in keys))
        await asyncio.gather(*(w.update(k, b"1") for k in keys))
        await asyncio.gather(*(w.delete(k) for k in keys))
        watch = open_watch(store, p, start)
        await store.create(p + "~sentinel", b"")
        expected = sorted(w.events, key=lambda e: e.revision)
        assert_events(await read_until(watch, p + "~sentinel"), expected, "a long replay")

    @async_test(timeout=120)
    async def test_watch_through_history_compacted_under_it_never_skips(self, store: Any) -> None:
        """A watch replaying a long history while that history is compacted away either
        delivers every event or stops with ``Expired``: it never skips events silently (the
        contract: "each exactly once", "``Expired`` ... when a watcher falls so far behind
        that its backlog is dropped")."""
        self.require(store, Capability.COMPACTION)
        p = await keyspace(store)
        start = await store.current_revision()
        w = Writes(store)
        keys = [f"{p}{i:04}" for i in range(self.long_history_writes // 5)]
        await asyncio.gather(*(w.create(k, b"0") for k in keys))
        for round_ in range(1, 5):
            await asyncio.gather(*(w.update(k, str(round_).encode()) for k in keys))
        expected = sorted(w.events, key=lambda e: e.revision)
        watch = open_watch(store, p, start)
        got = [await next_event(watch)]
        await store.compact(await store.current_revision())
        ended_expired = False
        while len(got) < len(expected):
            try:
                got.append(await next_event(watch))
            except Expired:
                ended_expired = True
                break
        assert_events(got, expected[: len(got)], "watch through a compaction")
        assert ended_expired or len(got) == len(expected)

    @async_test
    async def test_a_full_disk_fails_writes_cleanly_and_they_work_again_after(
        self, store_on_small_disk: Any, tmp_path: Path
    ) -> None:
        """A write the storage cannot take (the disk is full) raises ``TemporaryError`` (it
        may pass later) and changes nothing: no value, no revision, no watch event. Writes
        queued together with it are each applied or refused as a whole. Once there is room
        again, writes work and the revisions go on without a gap."""
        make = small_disk_store(store_on_small_disk)
        with SmallDisk(tmp_path / "small-disk") as disk:
            store = await make(disk.path)
            try:
                await self._check_full_disk(store, disk)
            finally:
                await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

    @async_test
    async def test_a_store_on_a_read_only_disk_fails_clearly(
        self, store_on_small_disk: Any, tmp_path: Path
    ) -> None:
        """A store that cannot write its data directory (read-only) refuses to start, or
        fails every call with ``PermanentError`` or ``TemporaryError``: none hangs, nothing
        pretends to work, and ``close()`` still returns."""
        make = small_disk_store(store_on_small_disk)
        errors = (PermanentError, TemporaryError)
        with SmallDisk(tmp_path / "read-only-disk", "1m", read_only=True) as disk:
            try:
                store = await asyncio.wait_for(make(disk.path), EVENT_TIMEOUT)
            except errors:
                return  # refused to start: clear enough
            try:
                p = unique_prefix()
                try:
                    await asyncio.wait_for(store.create(p + "a", b"1"), EVENT_TIMEOUT)
                except errors:
                    pass
                else:
                    await store.delete(p + "a")
                    pytest.skip(
                        "store lacks capability disk_faults: it wrote with its data directory"
                        " read-only (the data is kept elsewhere)"
                    )
                calls = {
                    "get": lambda: store.get(p + "a"),
                    "list": lambda: store.list(p),
                    "update": lambda: store.update(p + "a", b"2"),
                    "current_revision": lambda: store.current_revision(),
                }
                await assert_each_raises(calls, errors, "on a store that could not write")
            finally:
                await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

    async def _check_full_disk(self, store: Any, disk: SmallDisk) -> None:
        p = unique_prefix()
        big = random.Random(7).randbytes(1 << 20)  # no compression makes this small
        free = os.statvfs(disk.path).f_bfree
        await store.create(p + "probe", big)
        await store.delete(p + "probe")
        used = (free - os.statvfs(disk.path).f_bfree) * os.statvfs(disk.path).f_frsize
        if used < len(big) // 2:
            pytest.skip(
                "store lacks capability disk_faults: a 1 MiB write took no room in its data"
                " directory (the data is kept elsewhere)"
            )
        w = Writes(store)
        a = await w.create(p + "a", b"1")
        base = await store.current_revision()
        watch = open_watch(store, p, base)
        disk.fill()
        try:
            for name, call in (
                ("create", lambda: store.create(p + "big", big)),
                (
                    "update",
                    lambda: store.update(p + "a", big, expected_revision=a.revision),
                ),
            ):
                with pytest.raises(TemporaryError):
                    await call()
                assert await store.current_revision() == base, f"a failed {name} took a revision"
            # Several writes at once, one of them too big: each is applied or not as a whole.
            results = await asyncio.gather(
                store.create(p + "c", b"small"),
                store.create(p + "d", big),
                store.create(p + "e", b"small"),
                return_exceptions=True,
            )
            assert isinstance(results[1], TemporaryError), results[1]
            for name, result in zip("ce", (results[0], results[2]), strict=True):
                if isinstance(result, BaseException):
                    assert isinstance(result, TemporaryError), result
                    with pytest.raises(NotFound):
                        await store.get(p + name)
                else:
                    w.events.append(WatchEvent(EventType.ADDED, result, None))
                    w.latest[result.key] = result
                    assert kv_view(await store.get(p + name)) == kv_view(result)
            assert kv_view(await store.get(p + "a")) == kv_view(a)
            for name in ("big", "d"):
                with pytest.raises(NotFound):
                    await store.get(p + name)
        finally:
            disk.free()
        last = await store.current_revision()
        assert last == base + len(w.events) - 1, "revisions taken by writes that failed"
        big_kv = await w.create(p + "big", big)
        assert big_kv.revision == last + 1, "the revision after the disk had room again"
        await w.update(p + "a", b"2", expected_revision=a.revision)
        assert bytes((await store.get(p + "big")).value) == big
        await store.create(p + "~sentinel", b"")
        assert_events(await read_until(watch, p + "~sentinel"), w.after(base), "watch")

    @async_test(timeout=120)
    async def test_a_watcher_that_falls_behind_never_skips(self, store: Any) -> None:
        """A watcher whose reader is busy while many writes go on gets every event, or a
        gapless prefix of them and then ``Expired`` ("a watcher [that] falls so far behind
        that its backlog is dropped"): a store never drops events from a watch silently. A
        store may say how many unread events it keeps per watch in ``watch_backlog``."""
        await check_slow_watcher(store, self.slow_watcher_writes)

    @async_test(timeout=120)
    async def test_a_store_whose_backend_dies_says_so_on_every_call(
        self, store: Any, crash_store: Any
    ) -> None:
        """When the backend dies (``crash_store``), the calls on their way end with a result
        or with ``PermanentError``/``TemporaryError``; every later call raises one of those,
        chaining what failed as ``__cause__``; open watches, also one in the middle of
        replaying a long history, end with one of those errors after a gapless prefix of
        their events (not as if they had been closed); a new watch raises; ``close()``
        returns. Nothing hangs."""
        crash = fault(crash_store, "crash_faults", "crash_store")
        errors = (PermanentError, TemporaryError)
        p = unique_prefix()  # not cleaned up: the store is dead
        start = await store.current_revision()
        w = Writes(store)
        keys = [f"{p}{i:05}" for i in range(self.long_history_writes)]
        await asyncio.gather(*(w.create(key, b"") for key in keys))
        live = open_watch(store, p, await store.current_revision())
        await w.create(p + "~live", b"")
        assert_events([await next_event(live)], w.events[-1:], "the live watch")
        expected = sorted(w.events, key=lambda e: e.revision)
        replaying = open_watch(store, p, start)
        first = [await next_event(replaying)]
        writes = {p + "~new", keys[0]}
        async with crash(store):
            readers = {
                "a replaying watch": asyncio.ensure_future(drain(replaying)),
                "a live watch": asyncio.ensure_future(drain(live)),
            }
            calls = {
                "create": asyncio.ensure_future(store.create(p + "~new", b"")),
                "update": asyncio.ensure_future(store.update(keys[0], b"1")),
                "get": asyncio.ensure_future(store.get(keys[1])),
                "list": asyncio.ensure_future(store.list(p, limit=5)),
                "current_revision": asyncio.ensure_future(store.current_revision()),
            }
            await asyncio.sleep(0.2)  # the readers use up what they hold and ask for more
        tasks = [*calls.values(), *readers.values()]
        _, pending = await asyncio.wait(tasks, timeout=EVENT_TIMEOUT)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} calls or watches still wait after the crash"
        for name, task in calls.items():
            error = task.exception()
            assert error is None or isinstance(error, errors), f"{name} in flight: {error!r}"
        for name, task in readers.items():
            events, ended = task.result()
            if name == "a replaying watch":
                events = first + events
            tail = [e for e in events if e.kv.revision > expected[-1].revision]
            replayed = events[: len(events) - len(tail)]
            if name == "a live watch":
                assert not replayed, f"{name} repeated events: {replayed}"
            else:
                assert_events(replayed, expected[: len(replayed)], name)
            assert {e.kv.key for e in tail} <= writes, f"{name}: events of no write {tail}"
            assert isinstance(ended, errors), f"{name} ended with {ended!r} after the crash"
        later = {
            "create": lambda: store.create(p + "~later", b""),
            "get": lambda: store.get(keys[1]),
            "list": lambda: store.list(p),
            "update": lambda: store.update(keys[1], b"2"),
            "delete": lambda: store.delete(keys[1]),
            "current_revision": lambda: store.current_revision(),
            "watch": lambda: anext(store.watch(p, after_revision=start)),
        }
        await assert_each_raises(later, errors, "after the backend died")
        with pytest.raises(errors) as info:
            await asyncio.wait_for(store.get(keys[1]), EVENT_TIMEOUT)
        assert info.value.__cause__ is not None, f"{info.value!r} does not chain its cause"
        await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

    @async_test
    async def test_damaged_data_is_refused_never_misread(
        self, store_factory: Any, kcore_settings_factory: Any, damage_store: Any
    ) -> None:
        """A durable store whose data was damaged at rest (``damage_store``) refuses to
        start with ``PermanentError``, or answers each read with the right data or with
        ``PermanentError`` (chaining what failed as ``__cause__``); a read of everything
        cannot succeed. Damaged data is never handed out as if it were whole."""
        damage = fault(damage_store, "damage_faults", "damage_store")
        settings = reopen_settings(store_factory, kcore_settings_factory)
        p, w, revision = await self._fill_and_close(store_factory, settings, 300)
        await damage(settings)
        try:
            again = await asyncio.wait_for(store_factory(settings), EVENT_TIMEOUT)
        except PermanentError:
            return
        try:
            with pytest.raises(PermanentError) as info:
                await asyncio.wait_for(list_all(again, p), EVENT_TIMEOUT)
            assert info.value.__cause__ is not None, f"{info.value!r} does not chain its cause"
            reads = {"current_revision": (again.current_revision, revision)}
            for kv in list(w.latest.values())[::30]:
                reads[f"get {kv.key}"] = (lambda key=kv.key: again.get(key), kv_view(kv))
            await assert_read_right_or_refused(reads, (PermanentError,), "on damaged data")
        finally:
            await asyncio.wait_for(again.close(), EVENT_TIMEOUT)

    async def _fill_and_close(
        self, store_factory: Any, settings: Settings, count: int
    ) -> tuple[str, Writes, int]:
        """``count`` keys written to the durable store of ``settings``, which is closed
        again: their prefix, the writes and the revision after them."""
        store = await store_factory(settings)
        try:
            self.require(store, Capability.DURABLE)
            p = unique_prefix()
            w = Writes(store)
            await asyncio.gather(*(w.create(f"{p}{i:04}", bytes(64)) for i in range(count)))
            return p, w, await store.current_revision()
        finally:
            await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

    @async_test
    async def test_data_of_a_newer_version_is_refused(
        self, store_factory: Any, kcore_settings_factory: Any, newer_version_store: Any
    ) -> None:
        """A durable store whose data a newer version of the plugin wrote, in a format this
        one does not know (``newer_version_store``), refuses with ``PermanentError`` when
        made or at every call, instead of reading (or rewriting) what it does not know."""
        mark = fault(newer_version_store, "version_faults", "newer_version_store")
        settings = reopen_settings(store_factory, kcore_settings_factory)
        p, *_ = await self._fill_and_close(store_factory, settings, 3)
        await mark(settings)
        try:
            again = await asyncio.wait_for(store_factory(settings), EVENT_TIMEOUT)
        except PermanentError:
            return
        try:
            calls = {
                "current_revision": again.current_revision,
                "get": lambda: again.get(p + "0001"),
                "create": lambda: again.create(p + "new", b""),
            }
            await assert_each_raises(calls, (PermanentError,), "on data of a newer version")
        finally:
            await asyncio.wait_for(again.close(), EVENT_TIMEOUT)

    @async_test
    async def test_a_write_that_fails_half_way_changes_nothing(
        self, store: Any, fail_store_write: Any
    ) -> None:
        """A write that fails half-way in the backend (``fail_store_write``: an I/O error in
        the middle of it) changes nothing and takes no revision, and the writes made at the
        same time are not hurt by it: each returns its value and is there, whether it was one
        of several or the only one. A watch sees exactly those writes; writes go on working."""
        fail = fault(fail_store_write, "write_faults", "fail_store_write")
        p = await keyspace(store)
        w = Writes(store)
        a = await w.create(p + "a", b"0")
        await w.create(p + "z", b"0")
        base = await store.current_revision()
        watch = open_watch(store, p, base)
        rounds: list[dict[str, Callable[[], Awaitable[KeyValue]]]] = [
            {
                "create b": lambda: w.create(p + "b", b"1"),
                "create c": lambda: w.create(p + "c", b"1"),
                "update a": lambda: w.update(p + "a", b"1", expected_revision=a.revision),
                "delete z": lambda: w.delete(p + "z"),
            },
            {"create d (alone)": lambda: w.create(p + "d", b"1")},
        ]
        for writes in rounds:
            async with fail(store):
                tasks = {what: asyncio.ensure_future(write()) for what, write in writes.items()}
                await asyncio.sleep(0)  # on their way
            _, pending = await asyncio.wait(tasks.values(), timeout=EVENT_TIMEOUT)
            for task in pending:
                task.cancel()
            assert not pending, f"{len(pending)} writes made with a failing one never finished"
            for what, task in tasks.items():
                error = task.exception()
                assert error is None, f"{what}, made with a write that failed: {error!r}"
        assert_items(await list_all(store, p), w.latest.values(), "after the failed writes")
        last = await store.current_revision()
        assert last == base + len(w.after(base)), "revisions taken by the failed writes"
        later = await w.create(p + "later", b"2")
        assert later.revision == last + 1, "the revision of the next write"
        await store.create(p + "~sentinel", b"")
        assert_events(await read_until(watch, p + "~sentinel"), w.after(base), "watch")

    @async_test
    async def test_data_on_a_disk_turned_read_only_is_read_right_or_refused(
        self, store_on_small_disk: Any, tmp_path: Path
    ) -> None:
        """A store started again on data whose disk has turned read-only refuses to start,
        or fails writes with ``PermanentError``/``TemporaryError`` and answers each read
        with the data as it was or with one of those errors; ``close()`` returns."""
        make = small_disk_store(store_on_small_disk)
        errors = (PermanentError, TemporaryError)
        with SmallDisk(tmp_path / "turns-read-only", "16m") as disk:
            store = await make(disk.path)
            p = unique_prefix()
            w = Writes(store)
            try:
                for i in range(3):
                    await w.create(f"{p}{i}", b"v%d" % i)
                revision = await store.current_revision()
            finally:
                await asyncio.wait_for(store.close(), EVENT_TIMEOUT)
            disk.remount_read_only()
            try:
                again = await asyncio.wait_for(make(disk.path), EVENT_TIMEOUT)
            except errors:
                return  # refused to start: clear enough
            try:
                try:
                    await asyncio.wait_for(again.create(p + "new", b""), EVENT_TIMEOUT)
                except errors:
                    pass
                else:
                    pytest.skip(
                        "store lacks capability disk_faults: it wrote with its data directory"
                        " read-only (the data is kept elsewhere)"
                    )
                written = [kv_view(w.latest[f"{p}{i}"]) for i in range(3)]
                reads = {
                    "current_revision": (again.current_revision, revision),
                    "get": (lambda: again.get(p + "1"), written[1]),
                    "list": (lambda: list_all(again, p), written),
                }
                await assert_read_right_or_refused(reads, errors, "on a read-only disk")
            finally:
                await asyncio.wait_for(again.close(), EVENT_TIMEOUT)

    @async_test
    async def test_options_it_cannot_take_are_refused(self, store_option_makers: Any) -> None:
        """A store made with options it cannot take (``store_option_makers["invalid"]``)
        refuses with ``Invalid`` or ``PermanentError``, when made or at its first call: it
        never runs quietly on other options than those asked for."""
        cases = fault(store_option_makers, "options", "store_option_makers")
        refused = (Invalid, PermanentError)
        for what, make in cases["invalid"].items():
            try:
                store = await asyncio.wait_for(make(), EVENT_TIMEOUT)
            except refused:
                continue
            try:
                calls = {"current_revision": store.current_revision}
                await assert_each_raises(calls, refused, f"of a store made with {what}")
            finally:
                await asyncio.wait_for(store.close(), EVENT_TIMEOUT)

    @async_test(timeout=120)
    async def test_options_at_the_edge_work(self, store_option_makers: Any) -> None:
        """A store made with options at the edge of what it takes
        (``store_option_makers["valid"]``) works: writes, reads, a watcher that falls
        behind (its ``watch_backlog`` may be tiny), and ``repr()`` for the logs."""
        cases = fault(store_option_makers, "options", "store_option_makers")
        for what, make in cases["valid"].items():
            store = await asyncio.wait_for(make(), EVENT_TIMEOUT)
            add_finalizer(store.close)  # after the keyspaces' clean-up
            assert isinstance(repr(store), str)
            p = await keyspace(store)
            kv = await store.create(p + "a", b"1")
            assert kv_view(await store.get(p + "a")) == kv_view(kv), what
            await check_slow_watcher(store, self.slow_watcher_writes)

    # -- the model ---------------------------------------------------------------------------

    def test_behaves_like_the_model(self, store_factory: Any) -> None:
        """The whole contract at once: random sequences of creates, updates and deletes
        (with right and stale ``expected_revision``), gets, lists (with limits, and at old
        revisions) and compactions give the results and errors a plain model of revisions
        gives, and a watch running throughout sees exactly the model's events."""
        from hypothesis import HealthCheck, settings
        from hypothesis.stateful import run_state_machine_as_test

        run_state_machine_as_test(
            _model_machine(store_factory),
            settings=settings(
                **{
                    "deadline": None,
                    "database": None,
                    "suppress_health_check": [HealthCheck.too_slow],
                    **self.model_settings,
                }
            ),
        )


# -- the Hypothesis model ------------------------------------------------------------------------

MODEL_CALL_TIMEOUT = 30.0


def _model_machine(store_factory: Callable[[], Awaitable[Any]]) -> type:
    """A state machine class driving a store from ``store_factory`` against a dict model."""
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        invariant,
        precondition,
        rule,
    )

    all_names = ["a", "b", "a_b", "a%b", "ab", "a/b", "b/a"]
    names = st.sampled_from(all_names)
    values = st.binary(max_size=6)
    expectations = st.sampled_from(["none", "current", "stale"])
    futures = st.sampled_from([False, False, False, True])
    prefixes = st.sampled_from(["", "a", "a_", "a%", "ab", "a/", "b", "c"])
    limits = st.sampled_from([None, 1, 2, 3])
    picks = st.integers(min_value=0, max_value=10_000)

    class StoreModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.store: Any = None
            try:
                self.store = self.call(store_factory())
                self.prefix = unique_prefix()
                self.caps = frozenset(self.store.capabilities)
                base = self.call(self.store.current_revision())
            except BaseException:
                self._close()
                raise
            self.base = base
            self.model: dict[str, KeyValue] = {}
            self.history: list[tuple[int, dict[str, KeyValue]]] = [(base, {})]
            self.events: list[WatchEvent] = []
            self.compacted: int | None = None
            self.writes_since_compaction = 0
            self.seen: list[WatchEvent] = []
            self.watch_error: BaseException | None = None
            self.watch = self.store.watch(self.prefix, after_revision=base)
            self.reader = self.loop.create_task(self._read())
            self.steps_ok = True

        # -- plumbing ------------------------------------------------------------------------

        def call(self, awaitable: Awaitable[Any]) -> Any:
            return self.loop.run_until_complete(asyncio.wait_for(awaitable, MODEL_CALL_TIMEOUT))

        def expect_error(self, error: type[Exception], awaitable: Awaitable[Any]) -> None:
            try:
                result = self.call(awaitable)
            except error:
                return
            raise AssertionError(f"expected {error.__name__}, got {result!r}")

        async def _read(self) -> None:
            try:
                async for event in self.watch:
                    self.seen.append(event)
            except Exception as exc:
                self.watch_error = exc

        def key(self, name: str) -> str:
            return self.prefix + name

        @property
        def last_revision(self) -> int:
            return self.history[-1][0]

        def record(self, type_: EventType, name: str, kv: KeyValue) -> None:
            assert kv.revision > self.last_revision, (
                f"write got revision {kv.revision}, the last write was {self.last_revision}"
            )
            prev = self.model.get(name)
            if type_ is EventType.DELETED:
                del self.model[name]
            else:
                self.model[name] = kv
            self.history.append((kv.revision, dict(self.model)))
            self.writes_since_compaction += 1
            self.events.append(WatchEvent(type_, kv, prev))

        def expected_revision(self, name: str, how: str) -> int | None:
            if how == "none":
                return None
            current = self.model.get(name)
            rev = current.revision if current is not None else self.last_revision
            return rev if how == "current" else rev - 1

        def snapshot(self, revision: int) -> dict[str, KeyValue]:
            state: dict[str, KeyValue] = {}
            for rev, snap in self.history:
                if rev > revision:
                    break
                state = snap
            return state

        def existing(self, pick: int) -> str:
            return sorted(self.model)[pick % len(self.model)]

        # -- rules ---------------------------------------------------------------------------

        @initialize(count=st.integers(min_value=0, max_value=4), value=values)
        def create_some(self, count: int, value: bytes) -> None:
            for _ in range(count):
                self.create(0, value)

        @precondition(lambda self: len(self.model) < len(all_names))
        @rule(pick=picks, value=values)
        def create(self, pick: int, value: bytes) -> None:
            self.steps_ok = False
            missing = [n for n in all_names if n not in self.model]
            name = missing[pick % len(missing)]
            kv = self.call(self.store.create(self.key(name), value))
            assert (kv.key, bytes(kv.value)) == (self.key(name), value), kv_view(kv)
            assert kv.create_revision == kv.revision, kv_view(kv)
            self.record(EventType.ADDED, name, kv)
            self.steps_ok = True

        @precondition(lambda self: self.model)
        @rule(pick=picks, value=values, how=expectations)
        def update(self, pick: int, value: bytes, how: str) -> None:
            self.steps_ok = False
            name = self.existing(pick)
            expected = self.expected_revision(name, how)
            call = self.store.update(self.key(name), value, expected_revision=expected)
            if how == "stale":
                self.expect_error(Conflict, call)
            else:
                kv = self.call(call)
                assert (kv.key, bytes(kv.value)) == (self.key(name), value), kv_view(kv)
                assert kv.create_revision == self.model[name].create_revision, kv_view(kv)
                self.record(EventType.MODIFIED, name, kv)
            self.steps_ok = True

        @precondition(lambda self: self.model)
        @rule(pick=picks, how=expectations)
        def delete(self, pick: int, how: str) -> None:
            self.steps_ok = False
            name = self.existing(pick)
            expected = self.expected_revision(name, how)
            call = self.store.delete(self.key(name), expected_revision=expected)
            if how == "stale":
                self.expect_error(Conflict, call)
            else:
                kv = self.call(call)
                last = self.model[name]
                assert (kv.key, bytes(kv.value)) == (last.key, bytes(last.value)), kv_view(kv)
                self.record(EventType.DELETED, name, kv)
            self.steps_ok = True

        @rule(name=names, pick=picks)
        def get(self, name: str, pick: int) -> None:
            """Get a key that exists (if any does) and ``name``, which may not."""
            self.steps_ok = False
            for wanted in [self.existing(pick)] if self.model else []:
                kv = self.call(self.store.get(self.key(wanted)))
                assert kv_view(kv) == kv_view(self.model[wanted])
            if name not in self.model:
                self.expect_error(NotFound, self.store.get(self.key(name)))
            else:
                assert kv_view(self.call(self.store.get(self.key(name)))) == kv_view(
                    self.model[name]
                )
            self.steps_ok = True

        @rule(
            name=names,
            op=st.sampled_from(["create", "update", "delete"]),
            how=expectations,
        )
        def write_in_vain(self, name: str, op: str, how: str) -> None:
            """Create a key that exists, or update or delete one that does not."""
            self.steps_ok = False
            key, expected = self.key(name), self.expected_revision(name, how)
            if op == "create":
                if name in self.model:
                    self.expect_error(AlreadyExists, self.store.create(key, b""))
            elif name not in self.model:
                if op == "update":
                    call = self.store.update(key, b"", expected_revision=expected)
                else:
                    call = self.store.delete(key, expected_revision=expected)
                self.expect_error(NotFound, call)
            self.steps_ok = True

        def _paged(self, sub: str, limit: int | None, revision: int | None) -> list[KeyValue]:
            items: list[KeyValue] = []
            start_after = None
            for _ in range(len(self.model) + len(self.history) + 2):
                page = self.call(
                    self.store.list(
                        self.key(sub),
                        revision=revision,
                        limit=limit,
                        start_after=start_after,
                    )
                )
                if limit is not None:
                    assert len(page.items) <= limit, f"limit={limit} gave {len(page.items)}"
                if revision is not None:
                    assert page.revision == revision, f"list at {revision} read {page.revision}"
                items.extend(page.items)
                if not page.more:
                    return items
                assert page.items, "an empty page said more=True"
                start_after = page.items[-1].key
            raise AssertionError("pagination did not end")

        @rule(sub=prefixes, limit=limits)
        def list_now(self, sub: str, limit: int | None) -> None:
            self.steps_ok = False
            items = self._paged(sub, limit, None)
            want = sorted((kv for n, kv in self.model.items() if n.startswith(sub)), key=_by_key)
            assert [kv_view(kv) for kv in items] == [kv_view(kv) for kv in want]
            self.steps_ok = True

        @precondition(lambda self: Capability.LIST_AT_REVISION in self.caps)
        @rule(sub=prefixes, limit=limits, pick=picks)
        def list_at_revision(self, sub: str, limit: int | None, pick: int) -> None:
            self.steps_ok = False
            revision = self.history[pick % len(self.history)][0]
            if self.compacted is not None and revision < self.compacted:
                self.expect_error(Expired, self.store.list(self.key(sub), revision=revision))
            else:
                items = self._paged(sub, limit, revision)
                snap = self.snapshot(revision)
                want = sorted((kv for n, kv in snap.items() if n.startswith(sub)), key=_by_key)
                assert [kv_view(kv) for kv in items] == [kv_view(kv) for kv in want], (
                    f"list at {revision}"
                )
            self.steps_ok = True

        @precondition(
            # Not more often than every third write: compaction is cheap to choose and
            # would crowd the rest out.
            lambda self: Capability.COMPACTION in self.caps and self.writes_since_compaction >= 3
        )
        @rule(pick=picks, future=futures)
        def compact(self, pick: int, future: bool) -> None:
            self.steps_ok = False
            revision = self.history[pick % len(self.history)][0]
            if future:
                self.expect_error(Invalid, self.store.compact(self.last_revision + 1000))
            elif self.compacted is not None and revision < self.compacted:
                self.expect_error(Expired, self.store.compact(revision))
            else:
                self.call(self.store.compact(revision))
                self.compacted = revision
            self.writes_since_compaction = 0
            self.steps_ok = True

        @invariant()
        def revision_is_the_last_write(self) -> None:
            self.steps_ok = False
            assert self.call(self.store.current_revision()) == self.last_revision
            self.steps_ok = True

        @invariant()
        def watch_saw_a_prefix_of_the_events(self) -> None:
            self.steps_ok = False
            got = [event_view(e) for e in self.seen]
            want = [event_view(e) for e in self.events[: len(self.seen)]]
            assert got == want, f"the watch saw {got}, the writes were {want}"
            self.steps_ok = True

        def teardown(self) -> None:
            try:
                if self.steps_ok:  # else a step failed already: report that alone
                    self._check_watch_to_the_end()
            finally:
                try:
                    self.call(delete_prefix(self.store, self.prefix))
                finally:
                    self._close()

        def _check_watch_to_the_end(self) -> None:
            """Write a sentinel and delete it; once the watch has reached the sentinel (or,
            were that event lost, its delete) it must have seen exactly the writes."""
            sentinel = self.call(self.store.create(self.key("~sentinel"), b""))
            self.record(EventType.ADDED, "~sentinel", sentinel)
            self.record(
                EventType.DELETED,
                "~sentinel",
                self.call(self.store.delete(sentinel.key)),
            )
            deadline = self.loop.time() + EVENT_TIMEOUT

            async def settle() -> None:
                while self.loop.time() < deadline and not self.reader.done():
                    if self.seen and self.seen[-1].revision >= sentinel.revision:
                        return
                    await asyncio.sleep(0.005)

            self.call(settle())
            error = self.watch_error
            if isinstance(error, Expired) and self.compacted is not None:
                return  # it fell behind a compaction: allowed
            if error is not None:
                raise AssertionError(f"the watch failed: {error!r}") from error
            assert not self.reader.done(), "the watch ended while the store was open"
            seen = [e for e in self.seen if e.revision <= sentinel.revision]
            assert_events(seen, self.events[:-1], "the model run's watch")

        def _close(self) -> None:
            try:
                if self.store is not None:
                    reader = getattr(self, "reader", None)
                    if reader is not None:
                        reader.cancel()
                    self.call(self.store.close())
                    if reader is not None:
                        with suppress(BaseException):
                            self.loop.run_until_complete(reader)
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    return StoreModel


def _by_key(kv: KeyValue) -> str:
    return kv.key


__all__ = ["SmallDisk", "StoreConformance", "require"]
