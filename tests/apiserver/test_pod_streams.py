"""``pods/log``, ``pods/exec`` and ``pods/attach`` served by the in-process API server over
HTTPS, with a fake provider that runs real local processes, against the real kubectl, the
Python client and a raw WebSocket client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pod_streams_fake import FakePodStreams

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.pki import Pki, ensure_pki, write_kubeconfig
from kcore.apiserver.server import APIServer
from kcore.apiserver.streaming import LogOptions, PodStreams
from kcore.daemon import bootstrap
from kcore.errors import BadRequest, NotFound
from kcore.plugins.store_sqlite.backend import SqliteStore

PODS = "/api/v1/namespaces/default/pods"


def _kubectls() -> list[str]:
    """``kubectl`` as users run it, and the 1.32 binary itself where ``kubectl`` is Google's
    dispatcher (which picks the release matching the server's version)."""
    found = ["kubectl"]
    path = shutil.which("kubectl")
    if path is not None:
        pinned = Path(path).resolve().parent / "kubectl.1.32"
        if pinned.exists():
            found.append(str(pinned))
    return found


KUBECTLS = _kubectls()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return ensure_pki(tmp_path_factory.mktemp("pki"), hosts=["127.0.0.1"])


@dataclass
class Cluster:
    server: APIServer
    fake: FakePodStreams
    url: str
    kubeconfig: Path
    home: Path
    session: aiohttp.ClientSession
    ssl: ssl.SSLContext
    token: str

    async def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.request(
            method, self.url + path, data=data, headers=hdrs, ssl=self.ssl
        ) as resp:
            text = await resp.text()
            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            return resp.status, payload, resp.headers

    async def create_pod(
        self,
        name: str,
        containers: list[dict[str, Any]],
        *,
        node: str = "node-1",
        init: list[dict[str, Any]] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": containers}
        if node:
            spec["nodeName"] = node
        if init:
            spec["initContainers"] = init
        meta: dict[str, Any] = {"name": name}
        if annotations:
            meta["annotations"] = annotations
        status, pod, _ = await self.request("POST", PODS, {"metadata": meta, "spec": spec})
        assert status == 201, pod
        status, pod, _ = await self.request(
            "PATCH",
            f"{PODS}/{name}/status",
            {"status": {"phase": "Running"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert status == 200, pod
        return pod

    async def kubectl(
        self, *args: str, input: bytes | None = None, binary: str = "kubectl"
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--kubeconfig",
            str(self.kubeconfig),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(self.home)},
        )
        out, err = await asyncio.wait_for(proc.communicate(input), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def ws(self, path: str, protocols: tuple[str, ...] = ("v5.channel.k8s.io",)):
        return await self.session.ws_connect(
            self.url + path, protocols=protocols, ssl=self.ssl, autoclose=False
        )


def container(name: str, *command: str) -> dict[str, Any]:
    return {"name": name, "image": "busybox", **({"command": list(command)} if command else {})}


@pytest.fixture
async def cluster(pki, tmp_path):
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    fake = FakePodStreams()
    server = APIServer(objects, token=pki.token)
    server.pod_streams = fake  # as the daemon does, once its node agent is up
    runner = web.AppRunner(server.app(), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.ssl_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, server=url, ca_pem=pki.ca_pem, token=pki.token)
    client_ssl = ssl.create_default_context(cadata=pki.ca_pem.decode())
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {pki.token}"})
    try:
        yield Cluster(server, fake, url, kubeconfig, tmp_path, session, client_ssl, pki.token)
    finally:
        await session.close()
        for s in fake.sessions:
            await s.close()
        await runner.cleanup()
        await store.close()


async def frames_until_close(ws) -> list[tuple[int, bytes]]:
    frames = []
    async with asyncio.timeout(30):
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                frames.append((msg.data[0], msg.data[1:]))
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                break
    return frames


def joined(frames: list[tuple[int, bytes]], channel: int) -> bytes:
    return b"".join(data for ch, data in frames if ch == channel)


async def eventually(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


# -- wiring ---------------------------------------------------------------------------------


def test_the_fake_is_a_pod_streams():
    assert isinstance(FakePodStreams(), PodStreams)


async def test_discovery_lists_log_exec_and_attach(cluster):
    status, body, _ = await cluster.request("GET", "/api/v1")
    assert status == 200
    subs = {r["name"]: r for r in body["resources"] if r["name"].startswith("pods/")}
    assert subs["pods/attach"]["kind"] == "PodAttachOptions"
    assert subs["pods/attach"]["verbs"] == ["create", "get"]
    assert subs["pods/exec"]["kind"] == "PodExecOptions"
    assert "pods/log" in subs


async def test_without_a_provider_the_subresources_are_405(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.server.pod_streams = None
    for sub in ("log", "exec?command=ls", "attach"):
        status, body, _ = await cluster.request("GET", f"{PODS}/p/{sub}")
        assert status == 405, body
        assert "needs a node agent" in body["message"]


async def test_requests_without_the_token_are_refused(cluster):
    await cluster.create_pod("p", [container("c")])
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{cluster.url}{PODS}/p/log", ssl=cluster.ssl) as resp:
            assert resp.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await anonymous.ws_connect(
                f"{cluster.url}{PODS}/p/exec?command=ls",
                protocols=("v5.channel.k8s.io",),
                ssl=cluster.ssl,
            )
        assert err.value.status == 401
    assert cluster.fake.calls == []


# -- logs ---------------------------------------------------------------------------------------


async def test_logs_plain_and_options_reach_the_provider(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.logs_of[("p", "c")] = b"one\ntwo\nthree\n"
    status, body, headers = await cluster.request("GET", f"{PODS}/p/log")
    assert status == 200 and body == "one\ntwo\nthree\n"
    assert headers["Content-Type"] == "text/plain"
    assert cluster.fake.calls[-1] == ("logs", "p", "c", LogOptions())

    query = "tailLines=2&timestamps=true&previous=1&limitBytes=10&sinceSeconds=5&container=c"
    status, body, _ = await cluster.request("GET", f"{PODS}/p/log?{query}")
    assert status == 200
    assert body == "2024-01-02T03:04:05.000000000Z two\n2024-01-02T03:04:05.000000000Z three\n"
    assert cluster.fake.calls[-1][3] == LogOptions(
        previous=True, tail_lines=2, timestamps=True, since_seconds=5, limit_bytes=10
    )
    status, _, _ = await cluster.request("GET", f"{PODS}/p/log?sinceTime=2024-01-02T03:04:05Z")
    assert status == 200
    assert cluster.fake.calls[-1][3] == LogOptions(since_time="2024-01-02T03:04:05Z")
    status, _, _ = await cluster.request(
        "GET", f"{PODS}/p/log?sinceTime=2024-01-02t03:04:05.5%2B01:00"
    )
    assert status == 200
    assert cluster.fake.calls[-1][3] == LogOptions(since_time="2024-01-02T03:04:05.5+01:00")


async def test_kubectl_logs(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.logs_of[("p", "c")] = b"one\ntwo\nthree\n"
    rc, out, err = await cluster.kubectl("logs", "p", "--tail=1")
    assert (rc, out) == (0, "three\n"), err
    rc, out, err = await cluster.kubectl("logs", "p", "--timestamps", "--since=1h")
    assert rc == 0, err
    assert out.splitlines()[0] == "2024-01-02T03:04:05.000000000Z one"
    assert cluster.fake.calls[-1][3] == LogOptions(timestamps=True, since_seconds=3600)


async def test_logs_follow_streams_chunks_as_they_come(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.logs_of[("p", "c")] = b"first\n"
    queue = cluster.fake.follow_of[("p", "c")] = asyncio.Queue()
    async with cluster.session.get(
        f"{cluster.url}{PODS}/p/log?follow=true", ssl=cluster.ssl
    ) as resp:
        assert resp.status == 200
        assert await asyncio.wait_for(resp.content.readline(), 5) == b"first\n"
        for line in (b"second\n", b"third\n"):
            read = asyncio.ensure_future(resp.content.readline())
            await asyncio.sleep(0.2)
            assert not read.done()  # nothing before the provider has it
            await queue.put(line)
            assert await asyncio.wait_for(read, 5) == line
        await queue.put(None)
        assert await asyncio.wait_for(resp.content.read(), 5) == b""
    assert cluster.fake.calls[-1][3] == LogOptions(follow=True)
    assert cluster.fake.closed_logs == [("p", "c")]


async def test_kubectl_logs_follow(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.logs_of[("p", "c")] = b"first\n"
    queue = cluster.fake.follow_of[("p", "c")] = asyncio.Queue()
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "logs",
        "-f",
        "p",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(cluster.home)},
    )
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"first\n"
        await queue.put(b"later\n")
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"later\n"
        await queue.put(None)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_logs_follow_closes_the_provider_iterator_when_the_client_goes(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.logs_of[("p", "c")] = b"first\n"
    async with cluster.session.get(f"{cluster.url}{PODS}/p/log?follow=1", ssl=cluster.ssl) as resp:
        assert await asyncio.wait_for(resp.content.readline(), 5) == b"first\n"
        resp.close()
    await eventually(lambda: cluster.fake.closed_logs == [("p", "c")])


@pytest.mark.parametrize(
    ("query", "code", "reason", "message"),
    [
        ("tailLines=x", 400, "BadRequest", "tailLines must be an integer, got 'x'"),
        ("limitBytes=1.5", 400, "BadRequest", "limitBytes must be an integer, got '1.5'"),
        ("sinceSeconds=", 400, "BadRequest", "sinceSeconds must be an integer, got ''"),
        ("sinceTime=yesterday", 400, "BadRequest", "sinceTime must be an RFC 3339 time"),
        (
            "tailLines=-1",
            422,
            "Invalid",
            'PodLogOptions "p" is invalid: tailLines: Invalid value: -1: must be greater than '
            "or equal to 0",
        ),
        (
            "limitBytes=0",
            422,
            "Invalid",
            'PodLogOptions "p" is invalid: limitBytes: Invalid value: 0: must be greater than 0',
        ),
        (
            "sinceSeconds=0",
            422,
            "Invalid",
            'PodLogOptions "p" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0',
        ),
        (
            "sinceSeconds=5&sinceTime=2024-01-02T03:04:05Z",
            422,
            "Invalid",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
    ],
)
async def test_log_options_are_validated(cluster, query, code, reason, message):
    await cluster.create_pod("p", [container("c")])
    status, body, _ = await cluster.request("GET", f"{PODS}/p/log?{query}")
    assert (status, body["code"], body["reason"]) == (code, code, reason), body
    assert message in body["message"]
    assert cluster.fake.calls == []


async def test_log_errors_are_statuses(cluster):
    await cluster.create_pod("p", [container("c"), container("waiting"), container("late")])
    cluster.fake.errors["waiting"] = BadRequest(
        'container "waiting" in pod "p" is waiting to start: ContainerCreating'
    )
    cluster.fake.late_errors["late"] = NotFound('previous terminated container "late" in pod "p"')
    status, body, _ = await cluster.request("GET", f"{PODS}/p/log?container=waiting")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert (
        body["message"] == 'container "waiting" in pod "p" is waiting to start: ContainerCreating'
    )
    # an error on the iterator's first step is a Status too
    status, body, _ = await cluster.request("GET", f"{PODS}/p/log?container=late&previous=1")
    assert (status, body["reason"]) == (404, "NotFound"), body
    assert cluster.fake.closed_logs == [("p", "late")]
    status, body, _ = await cluster.request("GET", f"{PODS}/missing/log")
    assert (status, body["message"]) == (404, 'pods "missing" not found')
    status, body, _ = await cluster.request("POST", f"{PODS}/p/log")
    assert status == 405
    rc, _, err = await cluster.kubectl("logs", "p", "-c", "waiting")
    assert rc == 1
    assert (
        'Error from server (BadRequest): container "waiting" in pod "p" is waiting to start' in err
    )


async def test_logs_of_a_pod_without_a_node_are_empty(cluster):
    """As Kubernetes' ``LogLocation``: no node, an empty log (exec and attach are a 400)."""
    await cluster.create_pod("p", [container("c")], node="")
    status, body, _ = await cluster.request("GET", f"{PODS}/p/log")
    assert (status, body) == (200, None)
    assert cluster.fake.calls == []


# -- container selection and other checks before the provider -------------------------------


async def test_container_selection(cluster):
    await cluster.create_pod("multi", [container("a"), container("b")], init=[container("setup")])
    await cluster.create_pod(
        "annotated",
        [container("a"), container("b")],
        annotations={"kubectl.kubernetes.io/default-container": "b"},
    )
    await cluster.create_pod("unbound", [container("c")], node="")
    for sub in ("log", "exec?command=ls", "attach"):
        sep = "&" if "?" in sub else "?"
        status, body, _ = await cluster.request("GET", f"{PODS}/multi/{sub}")
        assert (status, body["reason"]) == (400, "BadRequest"), body
        assert body["message"] == (
            "a container name must be specified for pod multi, choose one of: [a b] "
            "or one of the init containers: [setup]"
        )
        status, body, _ = await cluster.request("GET", f"{PODS}/multi/{sub}{sep}container=zz")
        assert (status, body["message"]) == (400, "container zz is not valid for pod multi")
        status, body, _ = await cluster.request("GET", f"{PODS}/nope/{sub}")
        assert (status, body["message"]) == (404, 'pods "nope" not found')
    for sub in ("exec?command=ls", "attach"):
        status, body, _ = await cluster.request("GET", f"{PODS}/unbound/{sub}")
        assert (status, body["message"]) == (400, "pod unbound does not have a host assigned")
    assert cluster.fake.calls == []

    await cluster.request("GET", f"{PODS}/annotated/log")
    await cluster.request("GET", f"{PODS}/multi/log?container=setup")
    assert [c[:3] for c in cluster.fake.calls] == [
        ("logs", "annotated", "b"),
        ("logs", "multi", "setup"),
    ]


async def test_exec_checks_before_the_upgrade(cluster):
    await cluster.create_pod("p", [container("c")])
    # no command
    status, body, _ = await cluster.request("POST", f"{PODS}/p/exec?stdout=true")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert "at least one command" in body["message"]
    # no stream at all
    query = "command=ls&stdout=false&stderr=false"
    status, body, _ = await cluster.request("POST", f"{PODS}/p/exec?{query}")
    assert (status, body["message"]) == (
        400,
        "you must specify at least 1 of stdin, stdout, stderr",
    )
    # not an upgrade, or SPDY (kubectl before 1.30)
    for headers in ({}, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}):
        for method in ("GET", "POST"):
            status, body, _ = await cluster.request(
                method, f"{PODS}/p/exec?command=ls&stdout=true", headers=headers
            )
            assert (status, body["kind"], body["reason"]) == (400, "Status", "BadRequest")
            assert "WebSocket" in body["message"] and "kubectl 1.30 or later" in body["message"]
    # WebSocket, but no subprotocol kcore speaks
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await cluster.ws(f"{PODS}/p/exec?command=ls", protocols=("channel.k8s.io",))
    assert err.value.status == 400
    status, body, _ = await cluster.request("PUT", f"{PODS}/p/exec?command=ls")
    assert status == 405
    assert cluster.fake.calls == []


# -- exec with kubectl ------------------------------------------------------------------------


@pytest.mark.parametrize("kubectl", KUBECTLS, ids=lambda k: Path(k).name)
async def test_kubectl_exec(cluster, kubectl):
    await cluster.create_pod("p", [container("main"), container("side")])
    rc, out, err = await cluster.kubectl(
        "exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3", binary=kubectl
    )
    assert rc == 3, err
    assert out == "out\n"
    assert "err\n" in err and "command terminated with exit code 3" in err
    assert cluster.fake.calls[-1] == (
        "exec",
        "p",
        "main",
        ("sh", "-c", "echo out; echo err >&2; exit 3"),
        False,
        False,
    )

    rc, out, err = await cluster.kubectl(
        "exec", "-i", "p", "-c", "side", "--", "cat", input=b"hello\nworld\n", binary=kubectl
    )
    assert (rc, out) == (0, "hello\nworld\n"), err
    assert cluster.fake.calls[-1] == ("exec", "p", "side", ("cat",), True, False)
    assert cluster.fake.sessions[-1].stdin_closed  # v5: the client closed stdin at its EOF

    rc, out, err = await cluster.kubectl("exec", "p", "--", "true", binary=kubectl)
    assert (rc, out) == (0, ""), err

    rc, _, err = await cluster.kubectl("exec", "gone", "--", "true", binary=kubectl)
    assert rc == 1 and 'Error from server (NotFound): pods "gone" not found' in err
    rc, _, err = await cluster.kubectl("exec", "p", "-c", "zz", "--", "true", binary=kubectl)
    assert rc == 1 and "container zz is not valid for pod p" in err


async def test_kubectl_exec_provider_error_after_the_upgrade(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.errors["c"] = BadRequest(
        'container "c" in pod "p" is waiting to start: ContainerCreating'
    )
    rc, _, err = await cluster.kubectl("exec", "p", "--", "true")
    assert rc == 1, err
    assert 'error: container "c" in pod "p" is waiting to start: ContainerCreating' in err


async def test_kubectl_attach(cluster):
    await cluster.create_pod("p", [container("c", "sh", "-c", "echo attached; cat")])
    rc, out, err = await cluster.kubectl("attach", "-i", "p", input=b"typed\n")
    assert (rc, out) == (0, "attached\ntyped\n"), err
    assert cluster.fake.calls[-1] == ("attach", "p", "c", True, False)


# -- the Python client ------------------------------------------------------------------------


@pytest.fixture
def core_v1(cluster):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


async def test_python_client_exec(cluster, core_v1):
    from kubernetes.stream import stream

    await cluster.create_pod("p", [container("c")])

    def run_exit_3():
        ws = stream(
            core_v1.connect_get_namespaced_pod_exec,
            "p",
            "default",
            command=["sh", "-c", "echo out; echo err >&2; exit 3"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        ws.run_forever(timeout=20)
        return ws.subprotocol, ws.read_stdout(), ws.read_stderr(), ws.returncode

    assert await asyncio.to_thread(run_exit_3) == ("v5.channel.k8s.io", "out\n", "err\n", 3)

    def run_cat():
        ws = stream(
            core_v1.connect_get_namespaced_pod_exec,
            "p",
            "default",
            command=["cat"],
            stderr=True,
            stdin=True,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        ws.write_stdin("from python\n")
        line = ws.readline_stdout(timeout=10)
        ws.close_channel(0)
        ws.run_forever(timeout=20)
        return line, ws.returncode

    assert await asyncio.to_thread(run_cat) == ("from python", 0)

    def run_preloaded():
        return stream(
            core_v1.connect_get_namespaced_pod_exec,
            "p",
            "default",
            command=["echo", "all at once"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )

    assert await asyncio.to_thread(run_preloaded) == "all at once\n"


async def test_python_client_attach(cluster, core_v1):
    from kubernetes.stream import stream

    await cluster.create_pod("p", [container("c", "sh", "-c", "echo ready; read x; exit 4")])

    def attach():
        ws = stream(
            core_v1.connect_get_namespaced_pod_attach,
            "p",
            "default",
            stderr=True,
            stdin=True,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        line = ws.readline_stdout(timeout=10)
        ws.write_stdin("go\n")
        ws.run_forever(timeout=20)
        return line, ws.returncode

    # as the kubelet's, an attach that ends is a Success: the exit code is in the pod status
    assert await asyncio.to_thread(attach) == ("ready", 0)
    assert cluster.fake.calls[-1] == ("attach", "p", "c", True, False)


# -- the channel protocol, frame by frame -----------------------------------------------------


async def test_exec_frames_v4(cluster):
    await cluster.create_pod("p", [container("c")])
    query = "command=sh&command=-c&command=echo+o;+echo+e+>%262;+exit+3&stdout=1&stderr=1"
    ws = await cluster.ws(f"{PODS}/p/exec?{query}", protocols=("v4.channel.k8s.io",))
    assert ws.protocol == "v4.channel.k8s.io"
    frames = await frames_until_close(ws)
    assert frames[0] == (1, b"")  # the streams are up
    assert joined(frames, 1) == b"o\n" and joined(frames, 2) == b"e\n"
    assert frames[-1][0] == 3 and [ch for ch, _ in frames].count(3) == 1
    assert json.loads(frames[-1][1]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        "[sh -c echo o; echo e >&2; exit 3], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    assert ws.close_code == 1000
    await ws.close()


async def test_exec_prefers_v5_and_sends_the_first_frame_on_the_lowest_output(cluster):
    await cluster.create_pod("p", [container("c")])
    ws = await cluster.ws(
        f"{PODS}/p/exec?command=sh&command=-c&command=echo+e+>%262&stdout=false",
        protocols=("v4.channel.k8s.io", "v5.channel.k8s.io"),
    )
    assert ws.protocol == "v5.channel.k8s.io"
    frames = await frames_until_close(ws)
    assert frames == [
        (2, b""),
        (2, b"e\n"),
        (3, json.dumps({"metadata": {}, "status": "Success"}).encode()),
    ]
    await ws.close()


async def test_exec_with_tty_resize_and_stdin_close(cluster):
    await cluster.create_pod("p", [container("c")])
    query = "command=sh&command=-c&command=read+x;+stty+size;+cat&stdin=1&stdout=1&tty=1"
    ws = await cluster.ws(f"{PODS}/p/exec?{query}")
    await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 40}).encode())
    await ws.send_bytes(b"\x00go\n")
    await ws.send_bytes(b"\x00tail\n")
    await ws.send_bytes(b"\xff\x00")  # v5: stdin is done
    frames = await frames_until_close(ws)
    out = joined(frames, 1)
    assert b"40 100" in out and b"tail" in out, out
    assert joined(frames, 2) == b""  # a tty has one output stream
    assert json.loads(frames[-1][1])["status"] == "Success"
    [session] = cluster.fake.sessions
    assert session.tty and session.resizes == [(100, 40)] and session.stdin_closed
    assert cluster.fake.calls[-1][4:] == (True, True)
    await ws.close()


async def test_exec_provider_error_is_a_failure_on_the_error_channel(cluster):
    await cluster.create_pod("p", [container("c")])
    cluster.fake.errors["c"] = NotFound('container "c" not found in pod "p"')
    ws = await cluster.ws(f"{PODS}/p/exec?command=true&stdout=1")
    frames = await frames_until_close(ws)
    assert frames[0] == (1, b"")
    assert frames[-1][0] == 3
    assert json.loads(frames[-1][1]) == {
        "metadata": {},
        "status": "Failure",
        "message": 'container "c" not found in pod "p"',
        "reason": "NotFound",
        "code": 404,
    }
    await ws.close()


async def test_exec_session_is_closed_when_the_client_goes(cluster):
    await cluster.create_pod("p", [container("c")])
    ws = await cluster.ws(f"{PODS}/p/exec?command=sleep&command=60&stdin=1&stdout=1")
    msg = await ws.receive(timeout=5)
    assert msg.data == b"\x01"
    await eventually(lambda: len(cluster.fake.sessions) == 1)
    await ws.close()
    [session] = cluster.fake.sessions
    await eventually(lambda: session.closed and session.proc.returncode is not None)


async def test_attach_frames(cluster):
    await cluster.create_pod(
        "p", [container("c", "sh", "-c", "echo ready; read x; echo got $x >&2; exit 5")]
    )
    ws = await cluster.ws(f"{PODS}/p/attach?stdin=1&stdout=1&stderr=1")
    assert (await ws.receive(timeout=5)).data == b"\x01"
    assert (await ws.receive(timeout=5)).data == b"\x01ready\n"
    await ws.send_bytes(b"\x00it\n")
    frames = await frames_until_close(ws)
    assert joined(frames, 2) == b"got it\n"
    assert json.loads(frames[-1][1]) == {"metadata": {}, "status": "Success"}
    await ws.close()
