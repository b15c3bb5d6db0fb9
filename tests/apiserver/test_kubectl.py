"""The real kubectl against a running daemon (HTTPS, admin kubeconfig, store_sqlite)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

MANIFESTS = Path(__file__).resolve().parent / "manifests"


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc.stdout


def test_version_and_api_resources(daemon):
    out = ok(daemon.kubectl("version", "-o", "json"))
    assert json.loads(out)["serverVersion"]["major"] == "1"
    out = ok(daemon.kubectl("api-resources"))
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "po" in lines["pods"].split() and "deploy" in lines["deployments"].split()


def test_create_get_describe_delete_pod(daemon):
    assert "pod/demo created" in ok(daemon.kubectl("create", "-f", str(MANIFESTS / "pod.yaml")))
    dup = daemon.kubectl("create", "-f", str(MANIFESTS / "pod.yaml"))
    assert dup.returncode != 0 and "AlreadyExists" in dup.stderr
    table = ok(daemon.kubectl("get", "pods"))
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:3] == ["demo", "0/1", "Pending"]
    pod = json.loads(ok(daemon.kubectl("get", "pod", "demo", "-o", "json")))
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert "name: demo" in ok(daemon.kubectl("get", "pod", "demo", "-o", "yaml"))
    assert "demo" in ok(daemon.kubectl("get", "pods", "-l", "app=demo"))
    assert "demo" not in ok(daemon.kubectl("get", "pods", "-l", "app=other"))
    wide = ok(daemon.kubectl("get", "pods", "-A", "--show-labels"))
    assert wide.splitlines()[1].split()[0] == "default"
    assert "app=demo" in wide
    described = ok(daemon.kubectl("describe", "pod", "demo"))
    assert "Name:" in described and "busybox:1.36" in described
    assert 'pod "demo" deleted' in ok(daemon.kubectl("delete", "pod", "demo", "--timeout=30s"))
    gone = daemon.kubectl("get", "pod", "demo")
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_apply_twice_scale_patch_label_annotate(daemon):
    path = str(MANIFESTS / "deployment.yaml")
    assert "created" in ok(daemon.kubectl("apply", "-f", path))
    assert "unchanged" in ok(daemon.kubectl("apply", "-f", path))
    changed = (MANIFESTS / "deployment.yaml").read_text().replace("nginx:1.14.2", "nginx:1.16.1")
    assert "configured" in ok(daemon.kubectl("apply", "-f", "-", input=changed))
    dep = json.loads(ok(daemon.kubectl("get", "deploy", "nginx-deployment", "-o", "json")))
    [ctr] = dep["spec"]["template"]["spec"]["containers"]
    assert ctr["image"] == "nginx:1.16.1" and ctr["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    assert dep["metadata"]["generation"] == 2
    assert "scaled" in ok(daemon.kubectl("scale", "deploy", "nginx-deployment", "--replicas=3"))
    get = lambda: json.loads(ok(daemon.kubectl("get", "deploy", "nginx-deployment", "-o", "json")))  # noqa: E731
    assert get()["spec"]["replicas"] == 3
    ok(
        daemon.kubectl(
            "patch", "deploy", "nginx-deployment", "--type=merge", "-p", '{"spec":{"replicas":4}}'
        )
    )
    assert get()["spec"]["replicas"] == 4
    ok(
        daemon.kubectl(
            "patch",
            "deploy",
            "nginx-deployment",
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/replicas","value":5}]',
        )
    )
    assert get()["spec"]["replicas"] == 5
    ok(
        daemon.kubectl(
            "patch",
            "deploy",
            "nginx-deployment",
            "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"A","value":"1"}]}]}}}}',
        )
    )
    [ctr] = get()["spec"]["template"]["spec"]["containers"]
    assert ctr["env"] == [{"name": "A", "value": "1"}] and ctr["image"] == "nginx:1.16.1"
    ok(daemon.kubectl("label", "deploy", "nginx-deployment", "tier=web"))
    ok(daemon.kubectl("annotate", "deploy", "nginx-deployment", "note=hello"))
    dep = get()
    assert dep["metadata"]["labels"]["tier"] == "web"
    assert dep["metadata"]["annotations"]["note"] == "hello"
    table = ok(daemon.kubectl("get", "deploy"))
    assert table.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    ok(daemon.kubectl("delete", "-f", path))


@pytest.mark.parametrize(
    "manifest", ["configmap.yaml", "secret.yaml", "service.yaml", "namespace.yaml"]
)
def test_other_kinds_round_trip(daemon, manifest):
    path = str(MANIFESTS / manifest)
    ok(daemon.kubectl("apply", "-f", path))
    assert "unchanged" in ok(daemon.kubectl("apply", "-f", path))
    obj = json.loads(ok(daemon.kubectl("get", "-f", path, "-o", "json")))
    assert obj["metadata"]["uid"]
    ok(daemon.kubectl("describe", "-f", path))
    ok(daemon.kubectl("delete", "-f", path, "--timeout=30s"))


def test_get_watch_sees_changes(daemon):
    proc = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            str(daemon.kubeconfig),
            "get",
            "configmaps",
            "-w",
            "--request-timeout=0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        ok(daemon.kubectl("create", "configmap", "watched", "--from-literal=a=b"))
        deadline = time.monotonic() + 20
        seen = ""
        while time.monotonic() < deadline and "watched" not in seen:
            seen += proc.stdout.readline()
        assert "watched" in seen
    finally:
        proc.kill()
        proc.wait()
    ok(daemon.kubectl("delete", "configmap", "watched"))


def test_get_events(daemon):
    proc = daemon.kubectl("get", "events")
    assert proc.returncode == 0, proc.stderr


def test_describe_shows_recorded_events(daemon):
    """A component records Events through the HTTP client; kubectl describe lists them,
    repeats folded into one line with a count."""
    import asyncio

    from kcore.client import ApiClient
    from kcore.events import EventRecorder

    ok(daemon.kubectl("create", "configmap", "evented", "--from-literal=a=b"))

    async def record():
        async with ApiClient.from_kubeconfig(daemon.kubeconfig) as api:
            cm = await api.get("v1", "ConfigMap", "evented", "default")
            recorder = EventRecorder(api, "test-controller")
            for _ in range(3):
                await recorder.event(cm, "Warning", "Flapping", "it went away and came back")

    asyncio.run(record())
    described = ok(daemon.kubectl("describe", "configmap", "evented"))
    line = next(x for x in described.splitlines() if "Flapping" in x)
    assert "Warning" in line and "it went away and came back" in line
    assert "x3" in line
    events = ok(daemon.kubectl("get", "events"))
    assert "Flapping" in events and "configmap/evented" in events
    ok(daemon.kubectl("delete", "configmap", "evented"))
