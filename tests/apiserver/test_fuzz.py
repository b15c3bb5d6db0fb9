"""Fuzzing the API server over HTTP (in process, store_sqlite in memory).

Random and semi-valid requests (paths, methods, query strings, content types and bodies)
must never get a 5xx, and every error must be a well-formed ``Status``. Writes that fail
must leave nothing behind: no object, no new store revision.

Each test runs one server on its own event loop for all of its examples (Hypothesis and
function-scoped fixtures do not mix), and talks raw HTTP/1.1 to it, so that paths reach
the server byte for byte (no client-side normalisation of ``..`` or percent-encoding).

Every server bug the fuzzing found has a minimal reproducer in ``test_fixed_server_bug``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yaml
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import kcore
import kcore.apiserver.server as server_module
import kcore.plugins
from kcore.api import registry
from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore

TOKEN = "fuzz-token"
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

WATCH_WITH_BAD_RV = "watch with an invalid resourceVersion: a second HTTP response in the stream"
_KCORE_DIRS = tuple(str(Path(p).resolve()) for p in (*kcore.__path__, *kcore.plugins.__path__))


def _signature(exc: BaseException) -> tuple[str, str]:
    """The exception's type and the innermost kcore function it went through."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if str(path.resolve()).startswith(_KCORE_DIRS) and not frame.name.startswith("<"):
            where = f"{path.stem}.{frame.name}"
    return type(exc).__name__, where


class _ErrorLog:
    """Stands in for the API server's logger: remembers the signature of each exception
    that the server turned into a 500."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.signatures: list[tuple[str, str]] = []

    def exception(self, event: str, **kw: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            self.signatures.append(_signature(exc))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


# -- a raw HTTP/1.1 client and one server per test ------------------------------------------


@dataclass
class Response:
    method: str
    target: str
    status: int
    headers: dict[str, str]
    body: bytes
    chunked: bool = False
    """Chunked: a watch stream (every other answer has a Content-Length)."""
    stream_error: str | None = None
    """Why the chunked body could not be read."""

    def json(self) -> Any:
        return json.loads(self.body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise ValueError(f"malformed chunked body at {size_line[:100]!r}") from None
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


class Server:
    """An APIServer over an in-memory store, on a private event loop."""

    def __init__(self) -> None:
        self.errors = _ErrorLog(server_module.log)
        server_module.log = self.errors
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        self.store = SqliteStore(":memory:")
        self.objects = ObjectStore(self.store)
        await bootstrap(self.objects)
        self.server = TestServer(APIServer(self.objects, token=TOKEN).app(), host="127.0.0.1")
        await self.server.start_server()
        self.port = self.server.port

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.server.close()
            await self.store.close()

        try:
            self.loop.run_until_complete(stop())
            self.loop.close()
        finally:
            server_module.log = self.errors.real

    def revision(self) -> int:
        return self.loop.run_until_complete(self.store.current_revision())

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return self.loop.run_until_complete(
            asyncio.wait_for(self._request(method, target, body, headers or {}), 20)
        )

    def json(self, method: str, target: str, obj: Any = None, **headers: str) -> Response:
        body = None if obj is None else json.dumps(obj).encode()
        hdrs = {"Content-Type": "application/json", **headers} if body is not None else headers
        return self.request(method, target, body, hdrs)

    async def _request(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            lines = [
                f"{method} {target} HTTP/1.1",
                f"Host: 127.0.0.1:{self.port}",
                f"Authorization: Bearer {TOKEN}",
                "Connection: close",
                *(f"{k}: {v}" for k, v in headers.items()),
            ]
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            writer.write("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b""))
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
        stream_error = None
        if chunked:
            try:
                payload = _dechunk(payload)
            except ValueError as exc:
                stream_error = str(exc)
        resp = Response(
            method, target, int(status_line.split()[1]), hdrs, payload, chunked, stream_error
        )
        return resp

    # -- what every answer must look like ---------------------------------------------------

    def check(self, resp: Response) -> None:
        """No 5xx, errors as ``Status``, lists and watch streams well-formed."""
        signatures, self.errors.signatures = self.errors.signatures, []
        note(f"-> {resp.status} {resp.body[:300]!r}")
        assert resp.status < 500, f"server error {resp.status} {signatures}: {resp.body[:1000]!r}"
        assert not signatures, signatures
        assert resp.status >= 200, resp.status
        assert resp.stream_error is None, resp.stream_error
        if resp.method == "HEAD":
            return
        if resp.status >= 400:
            check_status(resp)
        elif resp.chunked:
            check_watch_stream(resp.body)
        elif resp.headers.get("content-type", "").startswith("application/json"):
            assert isinstance(resp.json(), dict)


def check_status(resp: Response) -> dict[str, Any]:
    """An error answer is a JSON ``Status``: Failure, its code equal to the HTTP status,
    a non-empty message and reason."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    body = resp.json()
    assert isinstance(body, dict), body
    assert body.get("kind") == "Status", body
    assert body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure", body
    code = body.get("code")
    assert isinstance(code, int) and not isinstance(code, bool), body
    assert code == resp.status, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("reason"), str) and body["reason"], body
    assert isinstance(body.get("metadata"), dict), body
    return body


def check_watch_stream(body: bytes) -> None:
    for line in body.decode().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        assert event["type"] in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"), event
        assert isinstance(event["object"], dict), event
        if event["type"] == "ERROR":
            status = event["object"]
            assert status["kind"] == "Status" and status["status"] == "Failure", status
            assert isinstance(status["code"], int) and status["message"], status


# -- vocabularies ----------------------------------------------------------------------------

GROUP_VERSIONS = [
    "/api/v1",
    "/apis/apps/v1",
    "/apis/batch/v1",
    "/apis/coordination.k8s.io/v1",
    "/apis/events.k8s.io/v1",
    "/apis/autoscaling/v1",
    "/apis/apps/v2",
    "/api/v2",
]
RESOURCES = [
    "pods",
    "services",
    "configmaps",
    "secrets",
    "namespaces",
    "nodes",
    "endpoints",
    "serviceaccounts",
    "events",
    "deployments",
    "replicasets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "leases",
    "widgets",
]
NAMESPACES = ["default", "kube-system", "missing-ns", "Default", "-"]
NAMES = ["a", "p1", "web", "x", "cm-1", "kube-root", "A_B", "x.y", "-x-", "name%20with%20space"]
SUBRESOURCES = [
    "status",
    "scale",
    "log",
    "exec",
    "attach",
    "binding",
    "proxy",
    "portforward",
    "token",
    "finalize",
    "eviction",
]
JUNK = [
    "",
    ".",
    "..",
    "%2e%2e",
    "%2F",
    "a%2Fb",
    "%00",
    "%FF",
    "%C3%28",
    "%E2%82",
    "%ZZ",
    "%",
    "*",
    "~",
    ";x=1",
    "a?b",
    "%3F",
    "%23",
    "%20",
    "%EF%BF%BF",
    "%F0%9F%98%80",
    "namespaces",
    "api",
    "apis",
    "v1",
    "watch",
]


def _pct(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


segments = st.one_of(
    st.sampled_from(RESOURCES),
    st.sampled_from(NAMESPACES),
    st.sampled_from(NAMES),
    st.sampled_from(SUBRESOURCES),
    st.sampled_from(JUNK),
    st.integers(1, 3000).map(lambda n: "a" * n),
    st.text(max_size=12).map(lambda s: quote(s, safe="")),
    st.binary(min_size=1, max_size=8).map(_pct),
)


@st.composite
def junk_paths(draw: st.DrawFn) -> str:
    """A known prefix, then anything."""
    prefix = draw(
        st.sampled_from(
            [
                "",
                *GROUP_VERSIONS,
                *(f"{gv}/namespaces/{ns}" for gv in GROUP_VERSIONS[:3] for ns in NAMESPACES[:3]),
                "/version",
                "/healthz",
                "/openapi/v2",
                "/openapi/v3",
                "/api",
                "/apis",
            ]
        )
    )
    tail = draw(st.lists(segments, max_size=5))
    return "/".join([prefix, *tail]) if tail else prefix


REAL_RESOURCES = [
    (f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}", r)
    for r in registry.RESOURCES
]


@st.composite
def resource_paths(draw: st.DrawFn) -> str:
    """``<group version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]`` of a real
    resource, each part replaced by junk now and then."""
    gv, info = draw(st.sampled_from(REAL_RESOURCES))

    def part(real: st.SearchStrategy[str]) -> str:
        return draw(segments) if draw(st.integers(0, 5)) == 0 else draw(real)

    parts = [part(st.just(gv))]
    if info.namespaced and draw(st.integers(0, 5)):
        parts += ["namespaces", part(st.sampled_from(NAMESPACES[:2]))]
    parts.append(part(st.just(info.plural)))
    if draw(st.booleans()):
        parts.append(part(st.sampled_from(NAMES[:4])))
        subs = [sub.name for sub in info.subresources] or SUBRESOURCES
        if draw(st.integers(0, 2)) == 0:
            parts.append(part(st.sampled_from(subs)))
    return "/".join(parts)


@st.composite
def paths(draw: st.DrawFn) -> str:
    path = draw(resource_paths() | junk_paths())
    if not path.startswith("/"):
        path = "/" + path
    if draw(st.integers(0, 4)) == 0:
        path += "/"
    # aiohttp refuses request lines over 8190 bytes itself, in plain text: stay below.
    return path[:6000]


# Query parameters: the values real clients send, nearly-valid ones and junk.
def _continue_token(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


QUERY_VALUES: dict[str, list[str]] = {
    "labelSelector": [
        "app=demo",
        "app==demo",
        "app!=demo",
        "app in (a,b)",
        "app notin (a)",
        "app",
        "!app",
        "app,tier=x",
        "=",
        "app=",
        "((",
        "app in",
        "app in (",
        "a=b=c",
        "!",
        ",",
        "x" * 300 + "=y",
        "a>1",
        "a<x",
        "app in ()",
    ],
    "fieldSelector": [
        "metadata.name=p1",
        "metadata.name==p1",
        "metadata.name!=p1",
        "metadata.namespace=default",
        "spec.nodeName=n1",
        "status.phase=Running",
        "involvedObject.name=x",
        "bogus=1",
        "metadata.name",
        "=",
        "==",
        "metadata.name=a,metadata.name=b",
        "metadata.name=\\",
        "metadata.name=a\\,b",
        "metadata.labels=x",
    ],
    "limit": ["1", "2", "0", "-1", "abc", "1.5", "", "99999999999999999999999", "500"],
    "continue": [
        "",
        "garbage",
        "!!!",
        "=",
        _continue_token({"rv": 1, "start": "/registry/core/pods/default/a"}),
        _continue_token({"rv": "x", "start": 1}),
        _continue_token({"rv": -5, "start": "/"}),
        _continue_token({"rv": 99999999, "start": ""}),
        _continue_token({"rv": 1e300, "start": None}),
        _continue_token([1, 2]),
        _continue_token("str"),
        _continue_token(b"\xff\xfe"),
        _continue_token({"rv": 99999999999999999999999999, "start": "a"}),
    ],
    "resourceVersion": ["0", "1", "", "abc", "-1", "1.5", "99999999", "999999999999999999999"],
    "resourceVersionMatch": ["Exact", "NotOlderThan", "bogus"],
    "dryRun": ["All", "None", "bogus"],
    "fieldValidation": ["Strict", "Warn", "Ignore", "bogus"],
    "fieldManager": ["kubectl", ""],
    "gracePeriodSeconds": ["0", "1", "-1", "abc", ""],
    "propagationPolicy": ["Background", "Foreground", "Orphan", "bogus", ""],
    "allowWatchBookmarks": ["true", "false", "junk"],
    "sendInitialEvents": ["true", "false"],
    "pretty": ["true"],
    "follow": ["true"],
    "container": ["c", "nope"],
    "tailLines": ["2", "x"],
}


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs: list[tuple[str, str]] = []
    keys = draw(st.lists(st.sampled_from(sorted(QUERY_VALUES)), max_size=4, unique=True))
    for k in keys:
        value = draw(st.sampled_from(QUERY_VALUES[k]) | st.text(max_size=10))
        pairs.append((k, value))
    watch = draw(st.sampled_from([None, None, "true", "1", "false", "0", ""]))
    if watch is not None:
        pairs.append(("watch", watch))
    # A watch may stay open for up to an hour: always bound it (0 or 1 second).
    pairs.append(("timeoutSeconds", draw(st.sampled_from(["0", "0", "0", "1"]))))
    draw(st.randoms()).shuffle(pairs)
    query = urlencode(pairs, quote_via=quote)
    if draw(st.integers(0, 9)) == 0:
        query += draw(st.sampled_from(["&", "&&=", "&%ZZ=1", "&a=%FF", "&=x", "&labelSelector"]))
    return query


# Only methods that aiohttp's HTTP parser knows: it answers others itself, with a plain-text 400
# before the application sees the request.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] * 3 + ["HEAD", "OPTIONS", "PROPFIND", "TRACE"]
CONTENT_TYPES = [
    None,
    "",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/yaml",
    "application/x-yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/foo+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "*/*",
    "garbage",
    ";",
]
PATCH_CONTENT_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]
ACCEPTS = [
    None,
    "application/json",
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
    "g=meta.k8s.io,application/json",
    "application/json;as=Table",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "*/*",
    "text/html",
    ";;,,",
]

# -- bodies ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "demo"}, "annotations": {"a": "b"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "sleep 1"],
                    "env": [{"name": "A", "value": "1"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
            "restartPolicy": "Always",
            "nodeSelector": {"disk": "ssd"},
            "terminationGracePeriodSeconds": 5,
        },
    }


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
            "strategy": {"type": "RollingUpdate"},
        },
    }


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"tier": "x"}},
        "data": {"key": "value", "other.key": "x"},
        "binaryData": {"bin": "aGVsbG8="},
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": "demo"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}],
            "type": "ClusterIP",
        },
    }


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "args": ["true"]}],
                }
            },
        },
    }


KINDS = {
    "pods": ("/api/v1/namespaces/default/pods", pod),
    "deployments": ("/apis/apps/v1/namespaces/default/deployments", deployment),
    "configmaps": ("/api/v1/namespaces/default/configmaps", configmap),
    "services": ("/api/v1/namespaces/default/services", service),
    "jobs": ("/apis/batch/v1/namespaces/default/jobs", job),
}


def _paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths_in(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths_in(v, (*prefix, i))
    return out


# A mutation is drawn without looking at the object it applies to (so that drawing never
# depends on server state): ``pick`` selects a field modulo the number of fields.
WRONG_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    1.5,
    "",
    "x",
    "3",
    [],
    [1, "a"],
    {},
    {"k": 1},
    "<long>",
    "<upper>",
    "<nul>",
]
mutation_plans = st.lists(
    st.tuples(
        st.integers(0, 2**16),
        st.sampled_from(["wrong", "wrong", "drop", "null", "extra"]),
        st.sampled_from(WRONG_VALUES) | json_values,
        st.sampled_from(["$patch", "unknown", "", "status", "metadata", "$retainKeys"]),
    ),
    max_size=3,
)


def _wrong(old: Any, value: Any) -> Any:
    if value == "<long>":
        return str(old) * 50 or "x" * 300
    if value == "<upper>":
        return str(old).upper()
    if value == "<nul>":
        return f"{old}\x00"
    return value


def apply_plan(template: Any, plan: list[tuple[int, str, Any, str]]) -> Any:
    """``template`` with fields given a wrong type, dropped, nulled or joined by an
    unknown field, as ``plan`` says."""
    obj = copy.deepcopy(template)
    for pick, op, shared_value, extra_key in plan:
        value = copy.deepcopy(shared_value)  # never alias WRONG_VALUES or another field
        spots = _paths_in(obj)[1:]
        if not spots:
            break
        path = spots[pick % len(spots)]
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        if op == "wrong":
            parent[last] = _wrong(parent[last], value)
        elif op == "drop":
            del parent[last]
        elif op == "null":
            parent[last] = None
        elif isinstance(parent[last], dict):
            parent[last][extra_key] = value
    return obj


def mutated(template: Any) -> st.SearchStrategy[Any]:
    return mutation_plans.map(lambda plan: apply_plan(template, plan))


encodings = st.tuples(
    st.sampled_from(["json"] * 6 + ["yaml", "truncated", "trailing", "invalid-utf8", "bom"]),
    st.integers(0, 1000),
    st.sampled_from([b"}", b" x", b"\n{}", b"\x00"]),
)


def encode(obj: Any, encoding: tuple[str, int, bytes]) -> bytes:
    """``obj`` as JSON mostly; sometimes as YAML, or broken on purpose."""
    how, fraction, trailer = encoding
    text = json.dumps(obj).encode()
    if how == "yaml":
        return yaml.safe_dump(obj).encode()
    if how == "truncated":
        return text[: len(text) * fraction // 1001]
    if how == "trailing":
        return text + trailer
    if how == "invalid-utf8":
        return text.replace(b'"', b'"\xff', 1) if b'"' in text else b"\xff" + text
    if how == "bom":
        return b"\xef\xbb\xbf" + text
    return text


RAW_BODIES = [
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b"\xff\xfe\xfd",
    b'{"a": "\xc3\x28"}',
    b'{"metadata": {"name": "\xed\xa0\x80"}}',
    b"{'single': 'quotes'}",
    b"NaN",
    b'{"a": NaN}',
    b'{"a": 1e999}',
    b'{"a": -0}',
    b'{"a": 123456789012345678901234567890}',
    b'{"a": 1, "a": 2}',
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"a: b\n- c",
    b"key: [unclosed",
    b"--- !!python/object/apply:os.system ['true']",
    b"a: !!binary AAAA",
    b"a: &x 1\nb: *y",
    b"---\na: 1\n---\nb: 2",
    b"\t\n\t",
    b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y1}\ndata: {a: 1}",
    b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a]",
    b"kind: 5\napiVersion: {}",
    b"2024-01-01",
    b"a: 2024-01-01T00:00:00Z",
    b"? [a, b]\n: c",
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["none", "json", "shaped", "shaped", "raw", "bytes", "patch"]))
    if kind == "none":
        return None
    if kind == "json":
        return encode(draw(json_values), draw(encodings))
    if kind == "shaped":
        make = draw(st.sampled_from([pod, deployment, configmap, service, job]))
        return encode(draw(mutated(make(draw(st.sampled_from(NAMES[:4]))))), draw(encodings))
    if kind == "raw":
        return draw(st.sampled_from(RAW_BODIES))
    if kind == "patch":
        return encode(draw(patch_bodies()), draw(encodings))
    return draw(st.binary(max_size=64))


@st.composite
def json_patch_ops(draw: st.DrawFn) -> list[Any]:
    pointers = st.sampled_from(
        [
            "",
            "/",
            "/metadata/labels/app",
            "/metadata/labels/new",
            "/metadata/name",
            "/metadata/resourceVersion",
            "/metadata/uid",
            "/metadata/annotations",
            "/spec/containers/0/image",
            "/spec/containers/-",
            "/spec/containers/9",
            "/spec/containers/-1",
            "/spec/containers/01",
            "/spec/replicas",
            "/data/key",
            "/data/a~1b",
            "/data/~2",
            "/status",
            "/kind",
            "no-slash",
        ]
    )
    ops = []
    for _ in range(draw(st.integers(0, 3))):
        op: dict[str, Any] = {
            "op": draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "x"]))
        }
        if draw(st.integers(0, 5)):
            op["path"] = draw(pointers | json_values)
        if draw(st.booleans()):
            op["value"] = draw(json_values)
        if draw(st.booleans()):
            op["from"] = draw(pointers | json_values)
        ops.append(op if draw(st.integers(0, 9)) else draw(json_values))
    return ops


@st.composite
def patch_bodies(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["json", "merge", "strategic", "random"]))
    if kind == "json":
        return draw(json_patch_ops())
    if kind == "random":
        return draw(json_values)
    base = draw(
        st.sampled_from(
            [
                {"metadata": {"labels": {"app": "other", "gone": None}}},
                {"metadata": {"resourceVersion": "1"}},
                {"spec": {"replicas": 3}},
                {"data": {"key": None, "new": "v"}},
                {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}},
                {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "c"}],
                        "containers": [{"name": "c", "image": "x", "$patch": "delete"}],
                    }
                },
                {"spec": {"$retainKeys": ["containers"], "containers": []}},
                {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
                {"spec": {"$patch": "replace"}},
                {"$patch": "delete"},
                {"metadata": {"finalizers": ["example.com/x"]}},
                {"status": {"phase": "Running"}},
            ]
        )
    )
    return draw(mutated(base))


def target_with_query(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


# -- the tests -------------------------------------------------------------------------------


def test_random_requests_get_no_server_error_and_well_formed_status():
    with Server() as server:

        @settings(FUZZ, max_examples=70)
        @given(
            method=st.sampled_from(METHODS),
            path=paths(),
            query=query_strings(),
            body=bodies(),
            content_type=st.sampled_from(CONTENT_TYPES),
            accept=st.sampled_from(ACCEPTS),
        )
        def run(method, path, query, body, content_type, accept):
            # The same objects before every example, so that the paths' names hit something.
            for resource, name in (("configmaps", "a"), ("pods", "p1"), ("deployments", "a")):
                collection, make = KINDS[resource]
                assert server.json("POST", collection, make(name)).status in (201, 409)
            headers = {}
            if content_type is not None:
                headers["Content-Type"] = content_type
            if accept is not None:
                headers["Accept"] = accept
            target = target_with_query(path, query)
            note(f"{method} {target} {headers} {body[:200] if body else body!r}")
            resp = server.request(method, target, body, headers)
            server.check(resp)

        run()


def test_failed_creates_write_nothing():
    counter = itertools.count()
    with Server() as server:

        @settings(FUZZ, max_examples=60)
        @given(
            resource=st.sampled_from(sorted(KINDS)),
            data=st.data(),
            content_type=st.sampled_from(
                [None, "application/json", "application/json", "application/yaml", "text/plain"]
                + [t for t in CONTENT_TYPES if t and "patch" in t]
            ),
            dry_run=st.booleans(),
            namespace=st.sampled_from(["default", "default", "default", "missing-ns"]),
        )
        def run(resource, data, content_type, dry_run, namespace):
            collection, make = KINDS[resource]
            collection = collection.replace("/default/", f"/{namespace}/")
            name = f"fz-{next(counter)}"
            obj = data.draw(mutated(make(name)))
            body = encode(obj, data.draw(encodings))
            headers = {"Content-Type": content_type} if content_type is not None else {}
            target = collection + ("?dryRun=All" if dry_run else "")
            note(f"POST {target} {headers} {body[:400]!r}")
            before = server.revision()
            resp = server.request("POST", target, body, headers)
            server.check(resp)
            after = server.revision()
            stored = server.json("GET", f"{collection}/{name}")
            if resp.status >= 300 or dry_run:
                assert after == before, "a failed or dry-run create changed the store"
                assert stored.status == 404, stored
                check_status(stored)
                return
            assert resp.status == 201, resp
            created = resp.json()
            assert created["kind"] and created["apiVersion"]
            meta = created["metadata"]
            # A Service's cluster IP is a store key of its own, written before the object.
            writes = 2 if resource == "services" else 1
            assert after == before + writes and meta["resourceVersion"] == str(after)
            if meta["name"] == name:
                assert stored.status == 200 and stored.json() == created
            else:  # the name in the body was replaced by another one
                again = server.json("GET", f"{collection}/{quote(meta['name'], safe='')}")
                assert again.status == 200 and again.json() == created

        run()


def test_failed_updates_patches_and_deletes_change_nothing():
    counter = itertools.count()
    with Server() as server:

        @settings(FUZZ, max_examples=60)
        @given(
            resource=st.sampled_from(["pods", "deployments", "configmaps"]),
            method=st.sampled_from(["PUT", "PATCH", "PATCH", "PATCH", "DELETE"]),
            subresource=st.sampled_from([None, None, None, "status", "scale"]),
            content_type=st.sampled_from(PATCH_CONTENT_TYPES) | st.sampled_from(CONTENT_TYPES),
            bound=st.booleans(),
            rv=st.sampled_from([None, "", "1", "abc", "<current>"]),
            plan=mutation_plans,
            patch=patch_bodies(),
            delete_options=st.none() | mutation_plans,
            encoding=encodings,
            query=st.sampled_from(["", "", "dryRun=All", "fieldValidation=Strict"]),
        )
        def run(
            resource,
            method,
            subresource,
            content_type,
            bound,
            rv,
            plan,
            patch,
            delete_options,
            encoding,
            query,
        ):
            # A fresh object per example, so that every example starts from the same state.
            collection, make = KINDS[resource]
            name = f"up-{next(counter)}"
            url = f"{collection}/{name}"
            template = make(name)
            if resource == "pods" and bound:
                template["spec"]["nodeName"] = "n1"  # its delete waits for the node agent
            assert server.json("POST", collection, template).status == 201
            old = server.json("GET", url).json()
            if method == "PUT":
                base = copy.deepcopy(old)
                if rv is not None:
                    base["metadata"]["resourceVersion"] = (
                        old["metadata"]["resourceVersion"] if rv == "<current>" else rv
                    )
                payload: Any = apply_plan(base, plan)
            elif method == "PATCH":
                payload = patch
            elif delete_options is None:
                payload = None
            else:
                options = {
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                    "gracePeriodSeconds": 0,
                    "preconditions": {
                        "uid": old["metadata"]["uid"],
                        "resourceVersion": old["metadata"]["resourceVersion"],
                    },
                }
                payload = apply_plan(options, delete_options)
            body = None if payload is None else encode(payload, encoding)
            target = url + (f"/{subresource}" if subresource else "")
            target = target_with_query(target, query)
            headers = {"Content-Type": content_type} if content_type is not None else {}
            note(f"{method} {target} {headers} {body[:400] if body else body!r}")
            before = server.revision()
            resp = server.request(method, target, body, headers)
            server.check(resp)
            after = server.json("GET", url)
            if resp.status >= 300 or "dryRun" in query:
                assert server.revision() == before, "a failed or dry-run write changed the store"
                assert after.status == 200 and after.json() == old
                return
            if method == "DELETE":
                assert after.status in (200, 404)
                return
            assert after.status == 200
            new = after.json()
            if subresource == "scale":
                scale = resp.json()
                assert scale["kind"] == "Scale"
                assert scale["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]
                assert scale["spec"]["replicas"] == new["spec"]["replicas"]
            else:
                assert resp.json() == new
            if new != old:
                assert server.revision() == before + 1
                assert int(new["metadata"]["resourceVersion"]) == before + 1

        run()


def test_random_list_and_watch_queries():
    with Server() as server:
        for i in range(3):
            cm = configmap(f"seed-{i}")
            assert server.json("POST", KINDS["configmaps"][0], cm).status == 201

        @settings(FUZZ, max_examples=60)
        @given(
            collection=st.sampled_from(
                [
                    "/api/v1/namespaces/default/configmaps",
                    "/api/v1/configmaps",
                    "/api/v1/namespaces/default/pods",
                    "/api/v1/pods",
                    "/api/v1/namespaces",
                    "/api/v1/nodes",
                    "/api/v1/namespaces/default/events",
                    "/apis/apps/v1/namespaces/default/deployments",
                    "/apis/events.k8s.io/v1/events",
                    "/api/v1/namespaces/missing-ns/configmaps",
                ]
            ),
            method=st.sampled_from(["GET", "GET", "GET", "DELETE"]),
            query=query_strings(),
            accept=st.sampled_from(ACCEPTS),
        )
        def run(collection, method, query, accept):
            if method == "DELETE":
                query = "dryRun=All&" + query  # the first value counts: keep the seeds
            target = target_with_query(collection, query)
            headers = {"Accept": accept} if accept else {}
            note(f"{method} {target} {headers}")
            before = server.revision()
            resp = server.request(method, target, None, headers)
            server.check(resp)
            assert server.revision() == before, "a read or dry-run delete wrote"
            if resp.status != 200 or resp.chunked:
                return  # errors and watch streams: checked by Server.check
            listed = resp.json()
            assert listed["kind"] in ("Table",) or listed["kind"].endswith("List"), listed
            assert isinstance(listed["metadata"].get("resourceVersion", ""), str)
            if listed["kind"] != "Table":
                assert isinstance(listed["items"], list)

        run()


# -- the bugs found, one minimal reproducer each ------------------------------------------------

CMS = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
JSON = "application/json"


def _yaml_alias_bomb(levels: int, fan: int = 4) -> bytes:
    """A few hundred bytes of YAML whose aliases expand to ``fan ** levels`` nodes."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "x0: &x0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * fan) + "]")
    lines.append(f"data: {{a: *x{levels}}}")
    return "\n".join(lines).encode()


def _bug(
    id: str,
    method: str,
    path: str,
    body: bytes | None,
    ctype: str | None,
    why: str,
    want: int | None = None,
):
    """A reproducer: the request must get a 4xx ``Status`` (``want``, if given)."""
    return pytest.param(method, path, body, ctype, want, id=id)


NULL_ARG_POD = json.dumps(
    {
        "metadata": {"name": "px"},
        "spec": {"containers": [{"name": "c", "image": "i", "args": [None]}]},
    }
).encode()
DEEP_YAML = b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 800))


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "want"),
    [
        _bug("invalid-utf8-json", "POST", CMS, b'{"\xff": 1}', JSON, "UnicodeDecodeError in _body"),
        _bug("null-in-typed-list", "POST", PODS, NULL_ARG_POD, JSON, "_convert recurses forever"),
        _bug("deep-json", "POST", CMS, b"[" * 5000 + b"]" * 5000, JSON, "RecursionError"),
        _bug("deep-yaml", "POST", CMS, DEEP_YAML, "application/yaml", "RecursionError"),
        _bug(
            "deep-strategic-patch",
            "PATCH",
            f"{CMS}/c1",
            b'{"metadata":' * 900 + b"1" + b"}" * 900,
            "application/strategic-merge-patch+json",
            "RecursionError in patch.fresh",
        ),
        _bug(
            "generate-name-not-string",
            "POST",
            CMS,
            b'{"metadata": {"generateName": ["x"]}}',
            JSON,
            "TypeError in create",
        ),
        _bug("put-metadata-string", "PUT", f"{CMS}/c1", b'{"metadata": "x"}', JSON, "update"),
        _bug(
            "put-resource-version-list",
            "PUT",
            f"{CMS}/c1",
            b'{"metadata": {"resourceVersion": [1]}}',
            JSON,
            "TypeError in _parse_rv",
        ),
        _bug(
            "apply-create-metadata-string",
            "PATCH",
            f"{CMS}/nope",
            b"metadata: x",
            "application/apply-patch+yaml",
            "AttributeError in patch",
        ),
        _bug(
            "delete-preconditions-string",
            "DELETE",
            f"{CMS}/c1",
            b'{"preconditions": "x"}',
            JSON,
            "AttributeError in delete",
        ),
        _bug(
            "delete-grace-period-string",
            "DELETE",
            f"{PODS}/bound",
            b'{"gracePeriodSeconds": "abc"}',
            JSON,
            "ValueError in _grace_period",
        ),
        _bug(
            "binding-target-string",
            "POST",
            f"{PODS}/p1/binding",
            b'{"target": "n1"}',
            JSON,
            "AttributeError in _binding",
        ),
        _bug(
            "scale-spec-list",
            "PUT",
            f"{DEPLOYS}/d1/scale",
            b'{"spec": [1]}',
            JSON,
            "AttributeError in _scale",
        ),
        _bug(
            "scale-patch-gives-list",
            "PATCH",
            f"{DEPLOYS}/d1/scale",
            b"[1]",
            "application/merge-patch+json",
            "AttributeError in _scale",
        ),
        _bug(
            "limit-beyond-64-bits",
            "GET",
            f"{CMS}?limit=99999999999999999999999",
            None,
            None,
            "OverflowError in the sqlite store",
        ),
        _bug(
            "watch-invalid-resource-version",
            "GET",
            f"{CMS}?watch=true&resourceVersion=abc&timeoutSeconds=1",
            None,
            None,
            WATCH_WITH_BAD_RV,
        ),
        _bug(
            "yaml-alias-bomb",
            "POST",
            CMS,
            _yaml_alias_bomb(9),
            "application/yaml",
            "aliases expand 4x per level (CPU and memory); Kubernetes refuses excessive aliasing",
            want=400,
        ),
    ],
)
async def test_fixed_server_bug(api, method, path, body, ctype, want):
    """Each request is answered with a 4xx ``Status``, before any stream starts."""
    cm = {"metadata": {"name": "c1"}, "data": {"a": "b"}}
    assert (await api.request("POST", CMS, cm))[0] == 201
    p1 = {"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert (await api.request("POST", PODS, p1))[0] == 201
    bound = copy.deepcopy(p1)
    bound["metadata"]["name"] = "bound"
    bound["spec"]["nodeName"] = "n1"
    assert (await api.request("POST", PODS, bound))[0] == 201
    assert (await api.request("POST", DEPLOYS, deployment("d1")))[0] == 201

    headers = {"Content-Type": ctype} if ctype else {}
    async with api.session.request(method, api.base + path, data=body, headers=headers) as resp:
        status, ctype_back = resp.status, resp.headers.get("Content-Type", "")
        assert 400 <= status < 500, status  # before reading: a broken stream never ends
        payload = await resp.read()
    assert want is None or status == want, payload[:300]
    reply = Response(method, path, status, {"content-type": ctype_back}, payload)
    check_status(reply)
