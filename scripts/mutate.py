#!/usr/bin/env python3
"""A small mutation tester: how many injected faults does a test suite catch?

It parses a source file with :mod:`ast`, makes one small semantic change at a time (a
flipped comparison, ``and`` for ``or``, a negated condition, an integer off by one, a dropped
statement, ``True`` for ``False``), runs the test command against each mutant and counts the
mutants the suite kills (a failing or hanging run) and those that survive::

    python scripts/mutate.py store_sqlite --max 60          # a named target (TARGETS below)
    python scripts/mutate.py --file pkg/mod.py --cmd 'python -m pytest tests/x -q -x'
    python scripts/mutate.py ipam --list                    # only list the mutants
    python scripts/mutate.py store_sqlite --max 60 --jobs 2 # two mutants at a time

How a mutant is applied. By default the file in the tree is never touched: the test
command runs with a ``sitecustomize`` on ``PYTHONPATH`` that makes the interpreter (and any
Python subprocess inheriting the environment) import the target *module* from the mutated
source. Other people running tests from the same tree at the same time therefore never see
a mutant, and a crash of this script cannot leave one behind. The overlay also writes a
marker when the mutant module is imported; a run that never imported it is reported as an
error instead of a survivor. ``--in-place`` writes the mutant into the file itself (for code
that is loaded by path, not imported), always restores the original bytes afterwards (also
on Ctrl-C or SIGTERM) and checks the file's SHA-256 at the end.

``--jobs N`` runs up to N mutants at the same time, each in a worker of its own (its own
overlay, marker and pytest ``--basetemp``); results keep the order of the mutant list. The
test command must then tolerate running next to itself (names unique to the run). One file
holds one mutant, so ``--in-place`` runs one at a time.

Mutants that change nothing observable (equivalent mutants) are excluded per target with a
reason (``exclude`` in TARGETS); they are listed but not counted.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import json
import os
import queue
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Named targets: the source file, the functions/classes to mutate (empty: all), the test
# command (run from the repository root) and equivalent mutants to exclude, keyed by the
# mutant's key (see ``Mutant.key``; ``--list`` prints them) with the reason.
TARGETS: dict[str, dict] = {
    "store_sqlite": {
        "file": "plugins/store_sqlite/backend.py",
        "only": [],
        "cmd": "python -m pytest tests/store_sqlite/test_sqlite_conformance.py"
        " -q -x -p no:cacheprovider",
        "timeout": 60,
        "exclude": {
            "<module>: 512 -> 0": "MAX_BATCH 0: the writer still takes one operation per"
            " batch (the first get() is outside the loop); batching is throughput only",
            "<module>: 512 -> 513": "MAX_BATCH 513: batch size is throughput only",
            "Database.__init__: 0 -> 1": "revision is set again from the history table"
            " before __init__ returns",
            "Database.__init__: drop `self.revision = 0`": "set again before any use",
            "Database.__init__: 0 -> 1 #2": "compacted is set again from the meta table"
            " before __init__ returns",
            "Database.__init__: drop `self.compacted = 0`": "set again before any use",
            "SqliteStore._watch: drop `watcher.done = True`": "in the generator's finally:"
            " the generator never resumes and the watcher leaves the list right after",
            "SqliteStore._register: drop `raise Expired(f'revision {after_revision + 1}"
            " has been co...`": "db.replay() right after makes the same check on the same"
            " thread with the same state",
            "SqliteStore._process_items: `return False` -> `return None`": "the caller"
            " only tests the result's truth",
            "Database.replay: drop `raise Expired(f'the history of {key} before revision"
            " {rev...`": "unreachable: a delete's previous row is the key's live value just"
            " before it, which compaction keeps (it is neither a tombstone nor superseded"
            " below the compaction revision), and replay reads only rows above it",
            "Database.__init__: negate condition `'locked' in str(exc)`": "both branches"
            " stop the store with PermanentError on every call; only the message differs",
            "Database.__init__: in -> not in in `'locked' in str(exc)`": "likewise, only the"
            " message differs",
            "SqliteStore.compact: True -> False": "compact then runs its two statements as"
            " two transactions instead of one: only a crash of the process between them"
            " could show it",
            "Database.replay: 1 -> 2 #2": "only the text of the Expired message",
            "Database.replay: >= -> > in `after >= upto`": "at after == upto the query asks"
            " for after < revision <= upto: no rows, the same empty answer",
            "SqliteStore._register: 1 -> 2 #2": "only the text of the Expired message",
            "SqliteStore._watch: True -> False #2": "the watcher leaves the list right after"
            " in the same finally, so nothing reads done again",
            "SqliteStore._watch: and -> or in `event is not _WAKE and (not watcher.done)`": "end() runs on the watcher's loop, sets done, empties the queue and then puts only"
            " _WAKE: a dequeued event never meets done=True and _WAKE never done=False",
            "SqliteStore._run: < -> <= in `len(batch) < MAX_BATCH`": "a batch of 513 instead"
            " of 512 operations: throughput only",
            "<module>: 1 -> 0": "SCHEMA_VERSION's value: files are stamped and checked with"
            " the same constant; only another kcore version opening the file could tell",
            "<module>: 1 -> 2": "SCHEMA_VERSION's value, likewise",
            "Database.__init__: drop `conn.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')`": "the stamp is read only by a kcore with a higher SCHEMA_VERSION: version 0 passes"
            " this version's check like 1",
            "<module>: 1000 -> 1001": "REPLAY_PAGE: how many history events one replay step reads; every page is read until the end, so only the number of steps changes",
            "prefix_end: 57343 -> 57344": "the successor of U+DFFF would be 0xE000 either way; a prefix ending in a lone surrogate is Invalid before it gets here",
            "Database.compact: > -> >= in `revision > self.compacted`": "compacting again at the compacted revision deletes nothing more and writes the same meta row",
            "Database.list: > -> >= in `revision > self.revision`": "inside `revision != self.revision`: the two never meet at equality",
            "Database.list: drop `revision = None`": "a list at exactly the current revision then reads the history table instead of the current one: the same rows",
            "Database.list: 1 -> 2": "fetching limit + 2 rows instead of limit + 1: `more` is the same and the extra rows are cut off",
            "_Outbox.resolve: and -> or in `op.loop is not None and op.future is not None`": "every _Op is made by _call with both its loop and its future, so the two tests agree",
            "SqliteStore.close: drop `self._stopped = True`": "the writer thread's _stop sets it again, under the same lock, before close() returns; a call racing close() is queued behind _CLOSE and failed by _stop's sweep of the queue, as it would be refused",
            "SqliteStore._register: 1 -> 2": "db.replay() right after makes the same check with - 1 on the same thread with the same state (like the excluded drop of this raise)",
            "SqliteStore._run: negate condition `len(batch) < MAX_BATCH`": "the writer then takes one operation per batch (as with MAX_BATCH 0, excluded above): batching is throughput only",
            "prefix_end: <= -> < in `55296 <= code <= 57343` #2": "code == 0xDFFF only for a prefix ending in U+DFFE, a lone surrogate, which is Invalid before prefix_end runs",
            "Database.__init__: drop `self.path = path`": "Database.path is never read",
            "Database.__init__: drop `conn.execute(f'PRAGMA synchronous = {synchronous}')`": "SQLite's default in WAL mode is FULL, the default option; NORMAL differs from it only in what survives a power cut",
            "Database.__init__: drop `conn.execute('PRAGMA cache_size = -32768')`": "page cache size: speed only",
            "Database.__init__: drop `conn.execute('PRAGMA temp_store = MEMORY')`": "where SQLite keeps temporary tables: speed only",
            "Database.__init__: drop `raise PermanentError(f'{path} is in use by another store ...`": "the bare raise after it re-raises the 'database is locked' error, which stops the store with PermanentError on every call just the same; only the message differs",
            "Database.replay: 1 -> 0 #2": "only the text of the Expired message",
            "Database.compact: drop `self.conn.execute(_COMPACT, {'r': revision})`": "the compacted mark alone makes reads below it Expired and reads at or after it answer the same: the superseded rows only stay on disk (the file's size)",
            "_Watcher.__init__: drop `self.upto = 0`": "_register sets upto before the watcher is in the list that offer() is called for",
            "_Watcher.__init__: 0 -> 1": "likewise: set again by _register before any use",
            "_Watcher.__init__: drop `self.error: BaseException | None = None`": "read only once done is set by end(), which sets error first (or when the watcher's loop is closed, where its generator never runs again)",
            "SqliteStore.__init__: 10000 -> 10001": "the default watch backlog's size: the store reports it in watch_backlog and the suite's slow watcher writes that many and ten more",
            "SqliteStore.__init__: True -> False": "the writer thread's daemon flag: only an interpreter exiting with a store left open could tell",
            "SqliteStore.close: True -> False": "like the excluded drop of this line: the writer thread's _stop sets _stopped under the same lock before close() returns",
            "SqliteStore._watch: drop `cursor = after_revision`": "the first page's events set the cursor before the next page is asked for (more is True only for a full page)",
            "SqliteStore._watch: drop `self._watchers.remove(watcher)`": "the watcher is done (set just before), so offer() ignores it, and _send drops done watchers at the next batch: memory only",
            "SqliteStore._send: drop `self._watchers = [w for w in self._watchers if not w.done]`": "a done watcher ignores offer() and leaves the list in its generator's finally: pruning here only frees memory sooner",
            "SqliteStore._send: drop `watcher.done = True`": "only for a watcher whose loop is closed: its generator never runs again, and call_soon_threadsafe on that loop keeps raising RuntimeError, which is caught; marking it done only drops it from the list sooner",
            "SqliteStore._send: True -> False": "likewise",
            "SqliteStore._register: 1 -> 0 #2": "only the text of the Expired message",
        },
    },
    "runtime_linux": {
        "file": "plugins/runtime_linux/runtime.py",
        # The state handling: the sandbox record, the container index/metadata and the
        # statuses and lists derived from them.
        "only": [
            "_read_json",
            "_process_start",
            "_labels_match",
            "_Sandbox",
            "_sandbox",
            "_sandbox_status",
            "list_pod_sandbox",
            "_container_dir",
            "_container_meta",
            "_container_index",
            "_state",
            "_container_status",
            "list_containers",
            "_live_sandbox_of",
        ],
        # The tests of sandbox and container states, lists and restarts.
        "cmd": "python -m pytest tests/runtime_linux/test_conformance.py -q -x"
        " -p no:cacheprovider -k 'sandbox or list_containers or exit or remove_container"
        " or idempotent or unknown or start_container or restart or create_container'",
        "timeout": 400,
        "exclude": {
            "LinuxRuntime._container_status: 0 -> 1 #2": "the monitor's state.json always"
            " has started_at (monitor.Container.record); the default is never used",
            "LinuxRuntime._container_status: 0 -> 1 #3": "likewise finished_at",
            "LinuxRuntime._container_status: 0 -> 1 #4": "likewise exit_code",
            "LinuxRuntime._container_status: or -> and in `state.get('created_at') or"
            " meta.get('created_at', 0)`": "both timestamps are taken during"
            " create_container; state's is never 0",
            "_process_start: drop `os.waitpid(pid, os.WNOHANG)`": "the pids it is given are pod monitors, children of the zygote and never of the runtime's own process, so this waitpid always raises ChildProcessError",
            "_Sandbox.close: drop `self.dirfd = None`": "no caller uses a _Sandbox after close(): remove_pod_sandbox drops it right after, and the runtime's close() is the end of the runtime object",
            "LinuxRuntime._sandbox_status: 0 -> 1": "the default of created_at: run_pod_sandbox sets created_at in the record before the record is stored or written, so the default is never used",
            "LinuxRuntime._container_index: != -> == in `cached[0] != stamp`": "container.json is written once, at creation, under a random id never reused, so a cached entry's mtime never changes; with == every listing rereads the same unchanged file",
            "LinuxRuntime._container_index: 0 -> 1": "compares the cached meta (a dict) with the mtime (an int), always unequal: every listing rereads container.json, which never changes; same result, only slower",
            "LinuxRuntime._container_status: 0 -> 1": "the default of meta's created_at: create_container writes created_at into every container.json, so the default is never used",
            "LinuxRuntime._container_status: 0 -> 1 #5": "the default of a RUNNING container's pid: the monitor's state.json always carries pid (monitor.Container.record), so the default is never used",
        },
    },
    "ipam": {
        "file": "plugins/net_bridge/ipam.py",
        "only": [],
        # The tests that allocate, keep and release addresses.
        "cmd": "python -m pytest tests/net_bridge/test_conformance.py -q -x -p no:cacheprovider"
        " -k 'address or setup or teardown or gc or restart'",
        "timeout": 240,
        "exclude": {
            "HostLocalIpam.__init__: 384 -> 385": "the lock file's mode: the plugin runs as"
            " root and only flock()s it",
            "HostLocalIpam.__init__: 384 -> 0": "the lock file's mode: root opens it anyway",
            "HostLocalIpam.allocate: 420 -> 421": "an allocation file's mode: only root reads it",
            "HostLocalIpam.close: 0 -> 1": "the lock fd is never 0 (stdin is open), so >= 1"
            " and >= 0 agree",
            "HostLocalIpam._write_last: 15 -> 16": "padding width of last_reserved_ip; the"
            " reader strips it",
            "HostLocalIpam.claim: `return False` -> `return None`": "the only caller tests"
            " the result's truth",
            "HostLocalIpam.release: `return False` -> `return None`": "callers test the"
            " result's truth or ignore it",
            "HostLocalIpam.__init__: 0 -> 1": "max(1, n - 2) == max(0, n - 2): net_bridge refuses a pod_cidr longer than /30 (config.py), so n - 2 >= 2",
            "HostLocalIpam.__init__: < -> <= in `self._first <= int(a) < self._first + self._count`": "the only reserved address is the gateway, the range's first address (BridgeConfig.gateway); the upper bound never decides",
            "HostLocalIpam.close: >= -> > in `self._lock_fd >= 0`": "the lock fd is never 0 (stdin is open), so > 0 and >= 0 agree",
            "HostLocalIpam.close: drop `self._lock_fd = -1`": "BridgeNetwork.close calls HostLocalIpam.close at most once (its _closed guard) and nothing uses the allocator after close",
            "HostLocalIpam.close: -1 -> 0": "likewise: the fd value after close is never read again",
            "HostLocalIpam.allocate: 420 -> 0": "an allocation file's mode: only root (the plugin) reads it",
            "HostLocalIpam._start_offset: 0 -> 1": "no last_reserved_ip: starting at offset 1 instead of 0 tries the same addresses in the same order, since offset 0 is the gateway (always reserved) and comes last instead of being skipped first",
            "HostLocalIpam._start_offset: <= -> < in `0 <= offset < self._count`": "at offset 0 both branches return 0",
            "HostLocalIpam._start_offset: < -> <= in `0 <= offset < self._count`": "offset == count is used modulo count in allocate: the same start as 0",
            "HostLocalIpam._start_offset: 0 -> 1 #2": "1 <= offset: at offset 0 the else branch returns 0 as well",
            "HostLocalIpam._start_offset: 0 -> 1 #3": "out-of-range last_reserved_ip: offset 1 instead of 0 tries the same addresses in the same order (offset 0 is the always reserved gateway)",
            "HostLocalIpam.release: False -> True": "the result is read only by _gc_leftovers, which passes the owner it just read under _sweep (nothing changes in between), and by _teardown, which ORs it with `record is not None`, true on that path",
            "HostLocalIpam._locked: drop `fcntl.flock(self._lock_fd, fcntl.LOCK_EX)`": "kcore has one plugin object per data dir at a time (the node agent's; the suite's restart and crash checks close theirs first), so the flock never meets a second holder: the thread lock alone orders every change; the flock only guards against a second process started by mistake",
            "HostLocalIpam._locked: drop `fcntl.flock(self._lock_fd, fcntl.LOCK_UN)`": "kcore has one plugin object per data dir at a time (the node agent's; the suite's restart and crash checks close theirs first), so an flock never released is never waited for, and close() drops it with the fd; the flock only guards against a second process started by mistake",
        },
    },
    "replicaset": {
        "file": "plugins/controllers/replicaset.py",
        "only": [],
        "cmd": "python -m pytest --pyargs kcore.conformance.suites.test_controllers"
        " --kcore-plugin controllers -k ReplicaSet -q -x -p no:cacheprovider",
        "timeout": 300,
        "exclude": {
            "ReplicaSetController.manage_replicas: > -> >= in `diff > 0`": "at diff == 0"
            " the delete branch picks min(0, burst) = 0 victims: no write, no expectation",
            "ReplicaSetController.update_status: `return await self.api.update_status({**rs, 'status': stat...` -> `return None`": "the only caller (reconcile) ignores update_status's result",
            "ReplicaSetController.update_status: `return await self.api.update_status({**fresh, 'status': s...` -> `return None`": "the only caller (reconcile) ignores update_status's result",
            "slow_start_batch: drop `raise err`": "gather(return_exceptions=True) never returns a CancelledError here: when the caller is cancelled the await itself raises, and nothing else holds the child tasks to cancel them",
            "ReplicaSetController.pods_to_delete: >= -> > in `count >= len(pods)`": "at count == len(pods) sorting first and taking all still deletes every pod",
            "ReplicaSetController.pods_to_delete: 1 -> 2": "every node count doubled: ranks keep their order (deletion_order only compares them)",
            "ReplicaSetController.pods_to_delete: 0 -> 1": "every candidate pod is active and matches its own ReplicaSet's selector, so its node already counts >= 1; adding 1 to every count keeps the order",
            "ReplicaSetController.pods_to_delete: 0 -> 1 #2": "the default is never used: every candidate's node is in on_node (see the previous reason)",
            "ReplicaSetController.reconcile: 0 -> 1 #2": "without minReadySeconds calculate_status counts every ready pod available, so readyReplicas == replicas != availableReplicas never holds and the requeue is never taken",
            "ReplicaSetController.calculate_status: < -> <= in `diff < 0`": "a reason is only computed when manage_replicas failed, which it can only do at diff != 0 (at 0 it makes no request)",
            "ReplicaSetController.calculate_status: 0 -> 1 #2": "diff < 1 vs diff < 0 differ only at diff == 0, where manage_replicas makes no request and cannot fail",
            "ReplicaSetController.calculate_status: > -> >= in `diff > 0`": "differs only at diff == 0, where manage_replicas makes no request and cannot fail",
            "ReplicaSetController._replicas: 1 -> 2": "spec.replicas is never None: the API server defaults it to 1 (core/api/defaults.py) on every write",
            "ReplicaSetController._replicas: 1 -> 0": "spec.replicas is never None: the API server defaults it to 1 (core/api/defaults.py) on every write",
            "ReplicaSetController.observe: 0 -> 1": "a ReplicaSet without minReadySeconds gets one more sync 2 s after a pod turned ready; its status does not depend on time and the pod's update already queued a sync of the same state, so it writes nothing",
            "ReplicaSetController.keys_for: and -> or in `event.type == MODIFIED and old is not None`": "only MODIFIED events carry an old object (informers.py), so both conditions are the same",
            "ReplicaSetController.keys_for: == -> != in `event.type == MODIFIED`": "only an informer resync (MODIFIED with the same resourceVersion) takes that early return; without it a resync queues the pod's ReplicaSets, whose reconcile of an unchanged state writes nothing",
            "ReplicaSetController.keys_for: is not -> is in `old is not None`": "only an informer resync (MODIFIED with the same resourceVersion) takes that early return; without it a resync queues the pod's ReplicaSets, whose reconcile of an unchanged state writes nothing",
            "ReplicaSetController.keys_for: and -> or in `old is not None and controller_ref(old) is not None`": "every MODIFIED of an orphan then queues the ReplicaSets selecting it; a matching orphan already had them queued when it was added, relabelled or released, so the extra sync finds the same state and writes nothing",
            "ReplicaSetController.manage_replicas: < -> <= in `diff < 0`": "at diff == 0 the create branch creates min(0, burst) = 0 pods: no request, and an empty expectation record replaces a satisfied one",
            "ReplicaSetController.manage_replicas: 0 -> 1": "diff < 1 vs diff < 0: at diff == 0 the create branch creates 0 pods: no request, and an empty expectation record replaces a satisfied one",
            "ReplicaSetController.reconcile: drop `self.expectations.forget(key)`": "observe() already forgot the key when the ReplicaSet's DELETED event arrived, and that event is what queues this reconcile of a missing ReplicaSet",
            "_labels_changed: and -> or in `old is not None and (_meta(old).get('labels') or {}) != (...`": "it is only called for MODIFIED events (which carry old), where it then always says yes: every update of an orphan queues the ReplicaSets selecting it, which a matching orphan already had queued when it was added, relabelled or released; the extra sync writes nothing",
        },
    },
}

LOGGING_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
LOGGER_NAMES = {"log", "logger", "logging", "structlog", "_log", "_logger", "LOG", "LOGGER"}

COMPARE_SWAPS: dict[type, type] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
OP_TEXT = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


@dataclass
class Mutant:
    index: int  # position of the node in the walk (stable for a given source)
    kind: str  # compare, boolop, negate, number, drop, bool
    arg: object  # which variant (the operator position, the new value...)
    line: int
    scope: str  # qualified name of the enclosing def/class ("<module>" at the top)
    description: str
    key: str = ""

    def location(self, path: str) -> str:
        return f"{path}:{self.line}"


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed, timeout, survived, excluded, error
    seconds: float = 0.0
    reason: str = ""


@dataclass
class Target:
    name: str
    file: Path
    cmd: str
    only: list[str] = field(default_factory=list)
    timeout: float = 300
    exclude: dict[str, str] = field(default_factory=dict)
    module: str | None = None


# -- finding mutants ---------------------------------------------------------------------------


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_logging_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in LOGGING_METHODS:
        base = func.value
        while isinstance(base, ast.Attribute | ast.Call):
            base = base.func if isinstance(base, ast.Call) else base.value
        return isinstance(base, ast.Name) and (
            base.id in LOGGER_NAMES or base.id.endswith(("log", "logger"))
        )
    return isinstance(func, ast.Name) and func.id in {"print"}


def _is_logger_assignment(stmt: ast.AST) -> bool:
    """``log = structlog.get_logger(...)``: dropping it only breaks logging."""
    value = getattr(stmt, "value", None)
    return (
        isinstance(stmt, ast.Assign | ast.AnnAssign)
        and isinstance(value, ast.Call)
        and ast.unparse(value.func).endswith(("get_logger", "getLogger"))
    )


def _is_all_assignment(stmt: ast.AST) -> bool:
    targets = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        targets = [stmt.target]
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _children(node: ast.AST) -> Iterator[ast.AST]:
    """Child nodes, leaving out annotations (never mutated)."""
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment", "type_params"):
            continue
        if isinstance(node, ast.AnnAssign) and name == "target":
            continue
        if isinstance(value, ast.AST):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, ast.AST))


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, str, bool]]:
    """Every node worth mutating in a deterministic order, with its scope and whether it
    lies inside one of the selected definitions (filled in by the caller's ``only``)."""

    def visit(node: ast.AST, scope: str) -> Iterator[tuple[ast.AST, str]]:
        if (
            _is_logging_call(node)
            or (isinstance(node, ast.Expr) and _is_logging_call(node.value))
            or _is_all_assignment(node)
            or _is_logger_assignment(node)
            or _is_type_checking(node)
        ):
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope = node.name if scope == "<module>" else f"{scope}.{node.name}"
            # Decorators and default values stay; bodies are walked below.
        yield node, scope
        for child in _children(node):
            yield from visit(child, scope)

    for node, scope in visit(tree, "<module>"):
        yield node, scope, True


def _in_scope(scope: str, only: list[str]) -> bool:
    if not only:
        return True
    parts = scope.split(".")
    for name in only:
        wanted = name.split(".")
        for i in range(len(parts) - len(wanted) + 1):
            if parts[i : i + len(wanted)] == wanted:
                return True
    return False


def _short(node: ast.AST, limit: int = 60) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _statement_parents(tree: ast.AST) -> dict[int, ast.AST]:
    parents = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    return parents


def find_mutants(source: str, only: list[str] | None = None) -> list[Mutant]:
    tree = ast.parse(source)
    only = only or []
    parents = _statement_parents(tree)
    out: list[Mutant] = []
    docstrings = set()
    for node in ast.walk(tree):
        # Docstrings, also the attribute docstrings that follow an assignment.
        if isinstance(node, ast.stmt) and _is_docstring(node):
            docstrings.add(id(node))
    for index, (node, scope, _) in enumerate(_walk(tree)):
        if not _in_scope(scope, only):
            continue
        line = getattr(node, "lineno", 0)

        def add(kind: str, arg: object, description: str, at=(index, line, scope)) -> None:
            out.append(Mutant(at[0], kind, arg, at[1], at[2], description))

        if isinstance(node, ast.Compare):
            for pos, op in enumerate(node.ops):
                swap = COMPARE_SWAPS.get(type(op))
                if swap is not None:
                    add(
                        "compare",
                        pos,
                        f"{OP_TEXT[type(op)]} -> {OP_TEXT[swap]} in `{_short(node)}`",
                    )
        elif isinstance(node, ast.BoolOp):
            new = "or" if isinstance(node.op, ast.And) else "and"
            old = "and" if new == "or" else "or"
            add("boolop", None, f"{old} -> {new} in `{_short(node)}`")
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            add("negate", None, f"negate condition `{_short(node.test)}`")
        elif isinstance(node, ast.Constant):
            value = node.value
            parent = parents.get(id(node))
            if isinstance(value, bool):
                add("bool", not value, f"{value} -> {not value}")
            elif isinstance(value, int) and not (
                isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.USub)
            ):
                add("number", value + 1, f"{value} -> {value + 1}")
                if value != 0:
                    add("number", 0, f"{value} -> 0")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
                value = -node.operand.value
                for new in dict.fromkeys((value + 1, 0)):
                    add("number", new, f"{value} -> {new}")
        elif isinstance(node, ast.stmt) and id(node) not in docstrings:
            if isinstance(node, ast.Expr):
                add("drop", "pass", f"drop `{_short(node)}`")
            elif isinstance(node, ast.Assign | ast.AugAssign) or (
                isinstance(node, ast.AnnAssign) and node.value is not None
            ):
                if not isinstance(parents.get(id(node)), ast.ClassDef):
                    add("drop", "pass", f"drop `{_short(node)}`")
            elif isinstance(node, ast.Return) and node.value is not None:
                if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                    add("drop", "return", f"`{_short(node)}` -> `return None`")
            elif isinstance(node, ast.Raise):
                add("drop", "pass", f"drop `{_short(node)}`")
    # Keys that survive edits elsewhere in the file: scope, description, occurrence.
    seen: dict[str, int] = {}
    for m in out:
        base = f"{m.scope}: {m.description}"
        n = seen.get(base, 0)
        seen[base] = n + 1
        m.key = base if n == 0 else f"{base} #{n + 1}"
    return out


def apply_mutant(source: str, mutant: Mutant) -> str:
    """The source with ``mutant`` applied (the module is re-emitted by ``ast.unparse``)."""
    tree = ast.parse(source)
    nodes = [node for node, _, _ in _walk(tree)]
    node = nodes[mutant.index]
    kind = mutant.kind
    if kind == "compare":
        assert isinstance(node, ast.Compare)
        node.ops[mutant.arg] = COMPARE_SWAPS[type(node.ops[mutant.arg])]()
    elif kind == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "negate":
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
    elif kind in ("number", "bool"):
        if isinstance(node, ast.UnaryOp):
            node.op = ast.UAdd()
            node.operand = ast.Constant(mutant.arg)
        else:
            node.value = mutant.arg
    elif kind == "drop":
        if mutant.arg == "return":
            node.value = None
        else:
            _replace_statement(tree, node, ast.Pass())
    else:  # pragma: no cover
        raise ValueError(kind)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


def _replace_statement(tree: ast.AST, old: ast.AST, new: ast.stmt) -> None:
    for parent in ast.walk(tree):
        for _, value in ast.iter_fields(parent):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = copy.copy(new)
                        ast.copy_location(value[i], old)
                        return
    raise LookupError("statement not found")


# -- running mutants ---------------------------------------------------------------------------

SITECUSTOMIZE = '''\
"""Installed by scripts/mutate.py: import one module from a mutated source."""
import importlib.abc
import importlib.util
import os
import sys

_NAME = os.environ.get("KCORE_MUTATE_MODULE")
_SOURCE = os.environ.get("KCORE_MUTATE_SOURCE")
_ORIGIN = os.environ.get("KCORE_MUTATE_ORIGIN")
_MARKER = os.environ.get("KCORE_MUTATE_MARKER")


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        with open(_SOURCE) as f:
            code = compile(f.read(), _ORIGIN, "exec")
        if _MARKER:
            with open(_MARKER, "a") as f:
                f.write(f"{os.getpid()}\\n")
        exec(code, module.__dict__)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != _NAME:
            return None
        return importlib.util.spec_from_file_location(fullname, _ORIGIN, loader=_Loader())


if _NAME and _SOURCE and _ORIGIN:
    sys.meta_path.insert(0, _Finder())
'''


def module_name(path: Path) -> str:
    """The import name of ``path``: its package chain, with this repository's package-dir
    mapping (pyproject.toml) applied to the top directory."""
    path = path.resolve()
    parts = [path.stem] if path.stem != "__init__" else []
    directory = path.parent
    while (directory / "__init__.py").exists():
        parts.insert(0, directory.name)
        directory = directory.parent
    pyproject = directory / "pyproject.toml"
    if pyproject.exists() and parts:
        config = tomllib.loads(pyproject.read_text())
        mapping = config.get("tool", {}).get("setuptools", {}).get("package-dir", {})
        for package, folder in mapping.items():
            if folder == parts[0]:
                return ".".join([package, *parts[1:]])
    return ".".join(parts)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Cancel:
    """Set by the main thread to end the test commands that worker threads run: ``stop``
    ends each as a hang is ended (SIGINT, SIGKILL after a grace period), ``kill`` at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.kill = threading.Event()


class Cancelled(Exception):
    """A test run ended by :class:`Cancel`; it has no result."""


# How often a worker thread looks at its Cancel while it waits for a test command.
POLL = 0.2


def run_command(
    cmd: str, env: dict[str, str], timeout: float, cwd: Path, cancel: Cancel | None = None
) -> tuple[str, str]:
    """Runs ``cmd``; returns (status, tail of output): passed, failed or timeout. The command
    runs in a session of its own so that a hang is ended with everything it started. In the
    main thread a KeyboardInterrupt ends it; in a worker thread ``cancel`` does (Cancelled)."""
    proc = subprocess.Popen(
        shlex.split(cmd),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            if cancel is not None and cancel.stop.is_set():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                out = _stop(proc, cancel=cancel)
                return "timeout", out.decode(errors="replace")[-2000:]
            try:
                out, _ = proc.communicate(timeout=left if cancel is None else min(left, POLL))
            except subprocess.TimeoutExpired:
                continue
            status = "passed" if proc.returncode == 0 else "failed"
            return status, out.decode(errors="replace")[-2000:]
    except BaseException:
        _stop(proc, cancel=cancel)
        raise
    _stop(proc, cancel=cancel)
    raise Cancelled(cmd)


def _stop(proc: subprocess.Popen, grace: float = 30, cancel: Cancel | None = None) -> bytes:
    """Ends a test run: SIGINT first, so that pytest still runs its fixtures' clean-up
    (namespaces, bridges, cgroups), then SIGKILL for the whole session (at once when
    ``cancel.kill`` is set)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while True:
        left = deadline - time.monotonic()
        try:
            out, _ = proc.communicate(timeout=max(0, min(left, POLL) if cancel else left))
            return out or b""
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline or (cancel is not None and cancel.kill.is_set()):
                break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    return out or b""


class _Terminate(Exception):
    pass


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum, frame):
        raise _Terminate(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Runner:
    """Runs the test command on one mutant at a time, in a temporary directory of its own
    (overlay, marker, mutant source, pytest's basetemp): concurrent runs need one each."""

    def __init__(
        self,
        target: Target,
        in_place: bool = False,
        cwd: Path = REPO,
        verbose=False,
        original: bytes | None = None,
    ):
        self.target = target
        self.in_place = in_place
        self.cwd = cwd
        self.verbose = verbose
        self.original = target.file.read_bytes() if original is None else original
        self.checksum = hashlib.sha256(self.original).hexdigest()
        self.source = self.original.decode()
        self.module = target.module or module_name(target.file)
        self.tmp = Path(tempfile.mkdtemp(prefix="kcore-mutate-"))
        (self.tmp / "site").mkdir()
        (self.tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)

    def sibling(self) -> Runner:
        """Another runner on the same original source, with a temporary directory of its own."""
        return Runner(self.target, self.in_place, self.cwd, self.verbose, self.original)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def _env(self, source: str | None) -> tuple[dict[str, str], Path]:
        env = dict(os.environ)
        marker = self.tmp / "loaded"
        marker.unlink(missing_ok=True)
        if source is not None and not self.in_place:
            mutant = self.tmp / "mutant.py"
            mutant.write_text(source)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.tmp / "site"), env.get("PYTHONPATH", "")) if p
            )
            env["KCORE_MUTATE_MODULE"] = self.module
            env["KCORE_MUTATE_SOURCE"] = str(mutant)
            env["KCORE_MUTATE_ORIGIN"] = str(self.target.file.resolve())
            env["KCORE_MUTATE_MARKER"] = str(marker)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # pytest's temporary directories: one per runner, so that concurrent runs neither
        # share nor remove each other's (appended: the last --basetemp wins).
        basetemp = f"--basetemp={shlex.quote(str(self.tmp / 'pytest'))}"
        env["PYTEST_ADDOPTS"] = " ".join(
            p for p in (env.get("PYTEST_ADDOPTS", "").strip(), basetemp) if p
        )
        return env, marker

    def run(self, source: str, cancel: Cancel | None = None) -> tuple[str, str, bool]:
        """Runs the test command on ``source``: (status, output, whether it was loaded)."""
        env, marker = self._env(source)
        command = (self.target.cmd, env, self.target.timeout, self.cwd, cancel)
        if not self.in_place:
            status, out = run_command(*command)
            return status, out, marker.exists()
        path = self.target.file
        written = source.encode()
        # Only the main thread can take signals; main() turns SIGTERM into an interrupt.
        in_main = threading.current_thread() is threading.main_thread()
        try:
            with _sigterm_raises() if in_main else contextlib.nullcontext():
                path.write_bytes(written)
                status, out = run_command(*command)
        finally:
            if path.read_bytes() != written:
                print(f"warning: {path} changed while a mutant was in it", file=sys.stderr)
            path.write_bytes(self.original)
        return status, out, True

    def verify_restored(self) -> None:
        if sha256(self.target.file) != self.checksum:
            raise SystemExit(f"error: {self.target.file} is not the original any more")

    def baseline(self) -> None:
        status, out, loaded = self.run(self.source)
        if status != "passed":
            raise SystemExit(f"error: the suite fails without a mutant:\n{out}")
        if not loaded:
            raise SystemExit(f"error: the suite never imported {self.module}")

    def run_mutant(self, mutant: Mutant, cancel: Cancel | None = None) -> Result:
        if mutant.key in self.target.exclude:
            return Result(mutant, "excluded", reason=self.target.exclude[mutant.key])
        source = apply_mutant(self.source, mutant)
        start = time.monotonic()
        status, _, loaded = self.run(source, cancel)
        seconds = time.monotonic() - start
        if status == "timeout":
            return Result(mutant, "timeout", seconds)
        if status == "failed":
            return Result(mutant, "killed", seconds)
        if not loaded:
            return Result(mutant, "error", seconds, "the suite never imported the module")
        return Result(mutant, "survived", seconds)


def run_parallel(
    runners: list[Runner],
    mutants: list[Mutant],
    job: Callable[[Runner, Mutant, Cancel], Result],
    done: Callable[[int, Result], None],
) -> None:
    """Runs ``job`` on every mutant, on as many at once as there are runners (one worker
    thread per runner, fed from one queue in list order), and calls ``done(index, result)``
    in this thread as each finishes. An interrupt here (Ctrl-C, or SIGTERM through main's
    handler) ends every running test command, waits for the workers and is raised again; a
    second interrupt while waiting SIGKILLs what still runs."""
    todo: queue.SimpleQueue[tuple[int, Mutant]] = queue.SimpleQueue()
    for item in enumerate(mutants):
        todo.put(item)
    finished: queue.SimpleQueue[tuple[int, Result | BaseException]] = queue.SimpleQueue()
    cancel = Cancel()

    def work(runner: Runner) -> None:
        while not cancel.stop.is_set():
            try:
                index, mutant = todo.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put((index, job(runner, mutant, cancel)))
            except Cancelled:
                return
            except BaseException as exc:  # handed to the main thread, which raises it
                finished.put((index, exc))
                return

    threads = [
        threading.Thread(target=work, args=(r,), name=f"mutate-{n}", daemon=True)
        for n, r in enumerate(runners[: len(mutants)])
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in mutants:
            index, result = finished.get()
            if isinstance(result, BaseException):
                raise result
            done(index, result)
    finally:
        cancel.stop.set()
        while any(t.is_alive() for t in threads):
            try:
                for thread in threads:
                    thread.join()
            except KeyboardInterrupt:
                print("interrupted again; killing the running tests", file=sys.stderr)
                cancel.kill.set()


def select(mutants: list[Mutant], maximum: int | None, seed: int) -> list[Mutant]:
    if maximum is None or len(mutants) <= maximum:
        return mutants
    picked = random.Random(seed).sample(range(len(mutants)), maximum)
    return [mutants[i] for i in sorted(picked)]


def summarize(target: Target, total: int, results: list[Result]) -> dict:
    count = {s: sum(r.status == s for r in results) for s in ("killed", "timeout", "survived")}
    count["excluded"] = sum(r.status == "excluded" for r in results)
    count["error"] = sum(r.status == "error" for r in results)
    counted = count["killed"] + count["timeout"] + count["survived"]
    score = 100.0 * (count["killed"] + count["timeout"]) / counted if counted else 100.0
    return {"target": target.name, "all_mutants": total, "run": len(results), **count,
            "score": round(score, 1)}  # fmt: skip


def report(target: Target, total: int, results: list[Result]) -> dict:
    summary = summarize(target, total, results)
    rel = os.path.relpath(target.file, REPO) if target.file.is_relative_to(REPO) else target.file
    print(f"\n== {target.name}: {rel}")
    print(f"   command: {target.cmd}")
    header = ("mutants", "sampled", "killed", "timeout", "survived", "excluded", "error", "score")
    values = (
        total,
        summary["run"],
        summary["killed"],
        summary["timeout"],
        summary["survived"],
        summary["excluded"],
        summary["error"],
        f"{summary['score']:.1f}%",
    )
    print("   " + " ".join(f"{h:>9}" for h in header))
    print("   " + " ".join(f"{v!s:>9}" for v in values))
    for status in ("survived", "error", "excluded"):
        rows = [r for r in results if r.status == status]
        if rows:
            print(f"   {status}:")
        for r in rows:
            extra = f"  ({r.reason})" if r.reason else ""
            print(f"     {r.mutant.location(str(rel))}  {r.mutant.key}{extra}")
    return summary


def load_target(args: argparse.Namespace) -> Target:
    if args.target:
        if args.target not in TARGETS:
            raise SystemExit(f"unknown target {args.target!r}; known: {', '.join(TARGETS)}")
        spec = TARGETS[args.target]
        target = Target(
            name=args.target,
            file=REPO / spec["file"],
            cmd=spec["cmd"],
            only=list(spec.get("only") or []),
            timeout=spec.get("timeout", 300),
            exclude=dict(spec.get("exclude") or {}),
        )
    else:
        if not args.file or not args.cmd:
            raise SystemExit("give a target name, or --file and --cmd")
        target = Target(name=Path(args.file).stem, file=Path(args.file).resolve(), cmd=args.cmd)
    if args.file and args.target:
        target.file = Path(args.file).resolve()
    if args.cmd and args.target:
        target.cmd = args.cmd
    if args.only:
        target.only = [n for n in args.only.split(",") if n]
    if args.timeout:
        target.timeout = args.timeout
    if args.module:
        target.module = args.module
    if args.exclude_file:
        target.exclude.update(json.loads(Path(args.exclude_file).read_text()))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help=f"a named target: {', '.join(TARGETS)}")
    parser.add_argument("--file", help="the source file to mutate")
    parser.add_argument("--cmd", help="the test command (run from --cwd)")
    parser.add_argument("--only", help="comma-separated functions/classes to mutate")
    parser.add_argument("--module", help="the import name of --file (derived when absent)")
    parser.add_argument("--max", type=int, help="sample this many mutants (deterministic)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, help="seconds per test run (hang = killed)")
    parser.add_argument("--list", action="store_true", help="only list the mutants")
    parser.add_argument("--in-place", action="store_true", help="write mutants into the file")
    parser.add_argument("--cwd", default=str(REPO), help="where the command runs")
    parser.add_argument("--exclude-file", help="JSON {mutant key: reason} of equivalents")
    parser.add_argument("--json", help="write the summary and every result here")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run up to this many mutants at the same time (default 1)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="with --rerun: run nothing, report the earlier results with today's exclusions",
    )
    parser.add_argument(
        "--rerun",
        help="a --json result: run only its survivors again (after adding tests) and"
        " report the merged result",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.in_place and args.jobs > 1:
        parser.error("--in-place runs one mutant at a time (one file holds one mutant)")
    target = load_target(args)

    source = target.file.read_text()
    mutants = find_mutants(source, target.only)
    chosen = select(mutants, args.max, args.seed)
    if args.list:
        for m in chosen:
            flag = "  [excluded]" if m.key in target.exclude else ""
            print(f"{m.location(str(target.file))}  {m.key}{flag}")
        print(f"{len(chosen)} of {len(mutants)} mutants")
        return 0

    previous: dict[str, dict] = {}
    if args.rerun:
        previous = {r["key"]: r for r in json.loads(Path(args.rerun).read_text())["results"]}
        chosen = [m for m in mutants if m.key in previous]
        missing = set(previous) - {m.key for m in chosen}
        if missing:
            print(f"warning: {len(missing)} earlier mutants no longer exist", file=sys.stderr)
    runner = Runner(target, in_place=args.in_place, cwd=Path(args.cwd))
    runners = [runner] + [runner.sibling() for _ in range(args.jobs - 1)]
    results: list[Result | None] = [None] * len(chosen)
    if args.report_only:
        args.no_baseline = True

    def job(runner: Runner, mutant: Mutant, cancel: Cancel) -> Result:
        earlier = previous.get(mutant.key)
        if earlier and mutant.key in target.exclude:
            return Result(mutant, "excluded", reason=target.exclude[mutant.key])
        if earlier and (args.report_only or earlier["status"] in ("killed", "timeout")):
            return Result(mutant, earlier["status"], earlier["seconds"], "earlier run")
        return runner.run_mutant(mutant, cancel)

    def done(index: int, result: Result) -> None:
        results[index] = result
        finished = sum(r is not None for r in results)
        print(
            f"[{finished}/{len(chosen)}] {result.status:<8} {result.seconds:6.1f}s "
            f"{result.mutant.location(os.path.basename(target.file))} {result.mutant.key}",
            flush=True,
        )

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # A background job has SIGINT ignored; SIGTERM ends the run the same way (cleanly).
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        if not args.no_baseline:
            runner.baseline()
        run_parallel(runners, chosen, job, done)
    except KeyboardInterrupt:
        print("interrupted; reporting what ran", file=sys.stderr)
    finally:
        for each in runners:
            each.close()
        runner.verify_restored()
    ran = [r for r in results if r is not None]  # in the order of the mutant list
    summary = report(target, len(mutants), ran)
    if args.json:
        data = {
            "summary": summary,
            "command": target.cmd,
            "results": [
                {
                    "key": r.mutant.key,
                    "line": r.mutant.line,
                    "status": r.status,
                    "seconds": round(r.seconds, 1),
                    "reason": r.reason,
                }
                for r in ran
            ],
        }
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
