"""Pods end to end with the real kubectl: restart policies and back-off, probes, logs,
exec, bad images and commands, graceful termination, and a daemon restart under running
pods."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Node, container_state, phase_is, pod_manifest


def state_of(pod, name="app"):
    return container_state(pod, name).get("state") or {}


def waiting_reason(pod, name="app"):
    return (state_of(pod, name).get("waiting") or {}).get("reason")


def reasons(node: Node, pod: str) -> set[str]:
    return {e["reason"] for e in node.events_for(pod)}


@pytest.fixture
def cleanup(node: Node):
    made: list[str] = []
    yield made
    for name in made:
        node.kubectl("delete", "pod", name, "--grace-period=0", "--wait=false")
    for name in made:
        node.wait_gone(name, timeout=60)


@pytest.mark.parametrize(
    ("policy", "command", "phase", "reason", "code"),
    [
        ("Never", "exit 1", "Failed", "Error", 1),
        ("Never", "exit 0", "Succeeded", "Completed", 0),
        ("OnFailure", "exit 0", "Succeeded", "Completed", 0),
    ],
)
def test_terminal_phases(node, cleanup, policy, command, phase, reason, code):
    name = f"term-{policy.lower()}-{code}"
    cleanup.append(name)
    node.apply(
        pod_manifest(
            name,
            [{"name": "app", "command": ["sh", "-c", f"echo bye; {command}"]}],
            restartPolicy=policy,
        )
    )
    pod = node.wait_pod(name, phase_is(phase), timeout=30, what=phase)
    terminated = state_of(pod)["terminated"]
    assert terminated["exitCode"] == code
    assert terminated["reason"] == reason
    assert terminated["finishedAt"] >= terminated["startedAt"]
    assert container_state(pod, "app")["restartCount"] == 0
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["ContainersReady"]["reason"] == ("PodCompleted" if code == 0 else "PodFailed")
    assert node.ok("logs", name) == "bye\n"
    time.sleep(1.5)  # a terminal pod is never restarted
    again = node.get("pod", name)
    assert container_state(again, "app")["restartCount"] == 0
    assert again["status"]["phase"] == phase


def test_always_restarts_with_crash_loop_back_off(node, cleanup):
    cleanup.append("crashy")
    node.apply(
        pod_manifest("crashy", [{"name": "app", "command": ["sh", "-c", "echo run; exit 3"]}])
    )
    pod = node.wait_pod(
        "crashy",
        lambda p: waiting_reason(p) == "CrashLoopBackOff",
        timeout=30,
        what="CrashLoopBackOff",
    )
    status = container_state(pod, "app")
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    message = status["state"]["waiting"]["message"]
    assert message.startswith("back-off 10s restarting failed container=app pod=crashy_default(")
    assert pod["status"]["phase"] == "Running"  # Always: never terminal
    assert "BackOff" in reasons(node, "crashy")
    out = node.kubectl("get", "pod", "crashy")
    assert "CrashLoopBackOff" in out.stdout
    # the previous instance's log stays readable
    assert node.ok("logs", "crashy", "--previous") == "run\n"


def test_on_failure_restarts_a_failed_container(node, cleanup):
    cleanup.append("onfail")
    script = "if [ -e /data/ran ]; then echo second; exit 0; fi; touch /data/ran; exit 2"
    node.apply(
        pod_manifest(
            "onfail",
            [
                {
                    "name": "app",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            restartPolicy="OnFailure",
            volumes=[{"name": "data", "emptyDir": {}}],
        )
    )
    pod = node.wait_pod("onfail", phase_is("Succeeded"), timeout=30, what="Succeeded")
    status = container_state(pod, "app")
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert node.ok("logs", "onfail") == "second\n"


def test_liveness_probe_restarts_the_container(node, cleanup):
    cleanup.append("live")
    node.apply(
        pod_manifest(
            "live",
            [
                {
                    "name": "app",
                    "command": ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 3600"],
                    "livenessProbe": {
                        "exec": {"command": ["cat", "/tmp/ok"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }
            ],
        )
    )
    pod = node.wait_pod(
        "live",
        lambda p: (
            container_state(p, "app").get("restartCount", 0) >= 1 and "running" in state_of(p)
        ),
        timeout=40,
        what="a restart by the liveness probe",
    )
    assert container_state(pod, "app")["lastState"]["terminated"]["exitCode"] == 137
    events = node.events_for("live")
    unhealthy = [e for e in events if e["reason"] == "Unhealthy"]
    assert unhealthy and unhealthy[0]["message"].startswith("Liveness probe failed:")
    assert unhealthy[0]["involvedObject"]["fieldPath"] == "spec.containers{app}"
    killing = [e["message"] for e in events if e["reason"] == "Killing"]
    assert "Container app failed liveness probe, will be restarted" in killing


def test_readiness_follows_an_http_probe(node, cleanup):
    cleanup.append("ready")
    web = {
        "name": "web",
        "command": [
            "sh",
            "-c",
            "mkdir -p /www && echo ok > /www/index.html && httpd -f -p 8080 -h /www",
        ],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1},
    }
    closed = {
        "name": "closed",
        "command": ["sleep", "3600"],
        "readinessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1},
    }
    node.apply(pod_manifest("ready", [web, closed]))
    pod = node.wait_pod(
        "ready",
        lambda p: container_state(p, "web").get("ready") is True,
        timeout=30,
        what="web ready",
    )
    assert container_state(pod, "closed")["ready"] is False
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["ContainersReady"]["message"] == "containers with unready status: [closed]"
    assert pod["status"]["phase"] == "Running"


def test_a_missing_image_and_a_missing_command(node, cleanup):
    cleanup.extend(["noimage", "nocommand"])
    node.apply(
        pod_manifest(
            "noimage",
            [{"name": "app", "image": "kcore.test/doesnotexist:1", "command": ["true"]}],
        )
    )
    node.apply(pod_manifest("nocommand", [{"name": "app", "command": ["/no/such/binary"]}]))
    pod = node.wait_pod(
        "noimage",
        lambda p: waiting_reason(p) in ("ErrImagePull", "ImagePullBackOff"),
        timeout=30,
        what="ErrImagePull",
    )
    assert "kcore.test/doesnotexist:1" in state_of(pod)["waiting"]["message"]
    assert pod["status"]["phase"] == "Pending"
    failed = [e["message"] for e in node.events_for("noimage") if e["reason"] == "Failed"]
    assert any(m.startswith('Failed to pull image "kcore.test/doesnotexist:1"') for m in failed)
    pod = node.wait_pod(
        "noimage",
        lambda p: waiting_reason(p) == "ImagePullBackOff",
        timeout=30,
        what="ImagePullBackOff",
    )
    pod = node.wait_pod(
        "nocommand",
        lambda p: (
            container_state(p, "app").get("restartCount", 0) >= 1
            or (state_of(p).get("terminated") or {}).get("reason") == "StartError"
        ),
        timeout=30,
        what="a start error",
    )
    status = container_state(pod, "app")
    last = status["state"].get("terminated") or status["lastState"].get("terminated")
    assert last["reason"] == "StartError"
    assert last["exitCode"] == 128
    assert "/no/such/binary" in last["message"]


def test_logs_options(node, cleanup):
    cleanup.append("chatty")
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; sleep 3600"
    node.apply(
        pod_manifest(
            "chatty",
            [
                {"name": "app", "command": ["sh", "-c", script]},
                {"name": "side", "command": ["sh", "-c", "echo from side; sleep 3600"]},
            ],
        )
    )
    node.wait_pod("chatty", phase_is("Running"), timeout=30)
    deadline = time.monotonic() + 10
    while "oops" not in node.kubectl("logs", "chatty", "-c", "app").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert node.ok("logs", "chatty", "-c", "app", "--tail", "2") == "line 5\noops\n"
    assert node.ok("logs", "chatty", "-c", "side") == "from side\n"
    stamped = node.ok("logs", "chatty", "-c", "app", "--timestamps", "--tail", "1")
    stamp, _, text = stamped.partition(" ")
    assert text == "oops\n" and stamp.endswith("Z") and "T" in stamp
    done = node.kubectl("logs", "chatty")  # kubectl picks the first container itself
    assert done.returncode == 0 and done.stdout.startswith("line 1\n")
    assert 'Defaulted container "app"' in done.stderr
    assert node.kubectl("logs", "chatty", "-c", "nope").returncode != 0


def test_logs_follow_ends_with_the_container(node, cleanup):
    cleanup.append("follow")
    node.apply(
        pod_manifest(
            "follow",
            [{"name": "app", "command": ["sh", "-c", "echo a; sleep 1; echo b; sleep 1; echo c"]}],
            restartPolicy="Never",
        )
    )
    node.wait_pod("follow", phase_is("Running", "Succeeded"), timeout=30)
    out = node.kubectl("logs", "-f", "follow", timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a\nb\nc\n"


def test_exec(node, cleanup):
    cleanup.append("execme")
    node.apply(pod_manifest("execme", [{"name": "app", "command": ["sleep", "3600"]}]))
    node.wait_pod("execme", phase_is("Running"), timeout=30)
    done = node.kubectl("exec", "execme", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert "err" in done.stderr
    done = node.kubectl("exec", "-i", "execme", "--", "cat", input="piped\n")
    assert done.returncode == 0 and done.stdout == "piped\n"
    done = node.kubectl("exec", "execme", "--", "hostname")
    assert done.stdout.strip() == "execme"
    done = node.kubectl("exec", "execme", "--", "/no/such")
    assert done.returncode != 0


def test_graceful_termination_runs_pre_stop_and_stops_the_pod(node, cleanup, tmp_path: Path):
    marker_dir = tmp_path / "shared"
    marker_dir.mkdir()
    trap = "trap 'echo got TERM > /data/term; exit 0' TERM; while true; do sleep 0.1; done"
    node.apply(
        pod_manifest(
            "graceful",
            [
                {
                    "name": "app",
                    "command": ["sh", "-c", trap],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "lifecycle": {
                        "preStop": {"exec": {"command": ["sh", "-c", "echo pre > /data/pre"]}}
                    },
                }
            ],
            terminationGracePeriodSeconds=20,
            volumes=[{"name": "data", "hostPath": {"path": str(marker_dir)}}],
        )
    )
    node.wait_pod("graceful", phase_is("Running"), timeout=30)
    started = time.monotonic()
    node.ok("delete", "pod", "graceful", "--wait=true", timeout=60)
    took = time.monotonic() - started
    assert (marker_dir / "pre").read_text() == "pre\n"
    assert (marker_dir / "term").read_text() == "got TERM\n"
    assert took < 15, f"deletion took {took:.1f}s although the container exits on SIGTERM"
    assert "Killing" in reasons(node, "graceful")


def test_pods_survive_a_daemon_restart(node, cleanup):
    cleanup.append("survivor")
    node.apply(pod_manifest("survivor", [{"name": "app", "command": ["sleep", "3600"]}]))
    before = node.wait_pod("survivor", phase_is("Running"), timeout=30)
    node.restart()
    time.sleep(2)
    after = node.wait_pod("survivor", phase_is("Running"), timeout=30)
    assert (
        container_state(after, "app")["containerID"]
        == container_state(before, "app")["containerID"]
    )
    assert container_state(after, "app")["restartCount"] == 0
    assert after["status"]["podIP"] == before["status"]["podIP"]
    done = node.kubectl("exec", "survivor", "--", "echo", "still here")
    assert done.stdout == "still here\n", done.stderr
    node.ok("delete", "pod", "survivor", "--grace-period=1")
    node.wait_gone("survivor")


def test_node_is_registered_and_ready(node):
    out = json.loads(node.ok("get", "node", node.node_name, "-o", "json"))
    conditions = {c["type"]: c["status"] for c in out["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert out["spec"]["podCIDR"] == str(node.names.pod)
    lease = node.ok("get", "lease", "-n", "kube-node-lease", node.node_name, "-o", "json")
    assert json.loads(lease)["spec"]["holderIdentity"] == node.node_name
    wide = node.ok("get", "nodes", "-o", "wide")
    assert node.node_name in wide and "Ready" in wide


def test_limits_become_cgroup_settings_and_qos(node, cleanup):
    cleanup.extend(["hungry", "guaranteed"])
    node.apply(
        pod_manifest(
            "hungry",
            [
                {
                    "name": "app",
                    "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
                    "resources": {"limits": {"memory": "16Mi", "cpu": "100m"}},
                }
            ],
            restartPolicy="Never",
        )
    )
    pod = node.wait_pod("hungry", phase_is("Failed"), timeout=30, what="an OOM kill")
    terminated = state_of(pod)["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137
    assert pod["status"]["qosClass"] == "Guaranteed"
    node.apply(
        pod_manifest(
            "guaranteed",
            [
                {
                    "name": "app",
                    "command": ["sleep", "3600"],
                    "resources": {"limits": {"memory": "32Mi", "cpu": "250m"}},
                }
            ],
        )
    )
    node.wait_pod("guaranteed", phase_is("Running"), timeout=30)
    pod = node.get("pod", "guaranteed")
    cid = container_state(pod, "app")["containerID"].split("://", 1)[1]
    state = node.daemon.data_dir / "runtime" / "containers" / cid / "state.json"
    pid = json.loads(state.read_text())["pid"]
    memory = cpu = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            if (base / "memory.max").exists():
                memory = int((base / "memory.max").read_text())
                cpu = (base / "cpu.max").read_text().split()[0]
        elif "memory" in controllers.split(","):
            memory = int(
                (
                    Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.limit_in_bytes"
                ).read_text()
            )
        elif "cpu" in controllers.split(","):
            top = Path("/sys/fs/cgroup") / controllers
            if not top.exists():
                top = Path("/sys/fs/cgroup/cpu")
            cpu = (top / path.lstrip("/") / "cpu.cfs_quota_us").read_text().strip()
    assert memory == 32 * 1024 * 1024
    assert cpu == "25000"  # 250m of a 100 ms period


def test_attach_streams_the_running_output(node, cleanup):
    cleanup.append("attachme")
    script = "sleep 2; for i in 1 2 3; do echo tick $i; sleep 0.5; done"
    node.apply(
        pod_manifest(
            "attachme", [{"name": "app", "command": ["sh", "-c", script]}], restartPolicy="Never"
        )
    )
    node.wait_pod("attachme", phase_is("Running"), timeout=30)
    done = node.kubectl("attach", "attachme", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "tick 3" in done.stdout


def test_exec_with_a_terminal(node, cleanup):
    """``kubectl exec -it``: kubectl on a terminal of its own, a tty in the container."""
    cleanup.append("ttypod")
    node.apply(pod_manifest("ttypod", [{"name": "app", "command": ["sleep", "3600"]}]))
    node.wait_pod("ttypod", phase_is("Running"), timeout=30)
    master, slave = pty.openpty()
    kubeconfig = str(node.daemon.kubeconfig)
    proc = subprocess.Popen(
        ["kubectl", "--kubeconfig", kubeconfig, "exec", "-it", "ttypod", "--", "sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "HOME": str(node.daemon.data_dir)},
    )
    os.close(slave)
    out = b""
    try:
        time.sleep(1)
        os.write(master, b"tty; echo marker-$((6*7)); exit 5\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: kubectl closed its terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=20) == 5, out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"/dev/pts/" in out, out
    assert b"marker-42" in out, out


def _kill_pod_monitor(node: Node, uid: str) -> None:
    """Kill the pod's monitor (its infra process) by the pid the runtime recorded."""
    for record in (node.daemon.data_dir / "runtime" / "sandboxes").glob("*/sandbox.json"):
        data = json.loads(record.read_text())
        if (data.get("config") or {}).get("metadata", {}).get("uid") == uid and data.get(
            "state"
        ) == "SANDBOX_READY":
            os.kill(data["pid"], 9)
            return
    raise AssertionError(f"no ready sandbox for pod {uid}")


def test_a_lost_sandbox_is_re_created_or_reported_by_restart_policy(node, cleanup):
    cleanup.extend(["phoenix", "once"])
    node.apply(pod_manifest("phoenix", [{"name": "app", "command": ["sleep", "3600"]}]))
    node.apply(
        pod_manifest("once", [{"name": "app", "command": ["sleep", "3600"]}], restartPolicy="Never")
    )
    phoenix = node.wait_pod("phoenix", phase_is("Running"), timeout=30)
    once = node.wait_pod("once", phase_is("Running"), timeout=30)
    _kill_pod_monitor(node, phoenix["metadata"]["uid"])
    _kill_pod_monitor(node, once["metadata"]["uid"])
    after = node.wait_pod(
        "phoenix",
        lambda p: (
            container_state(p, "app").get("restartCount", 0) >= 1 and "running" in state_of(p)
        ),
        timeout=30,
        what="a new sandbox and a restarted container",
    )
    assert after["status"]["phase"] == "Running"
    assert "SandboxChanged" in reasons(node, "phoenix")
    gone = node.wait_pod("once", phase_is("Failed"), timeout=30, what="Failed")
    terminated = state_of(gone)["terminated"]
    assert terminated["exitCode"] == 137
    assert container_state(gone, "app")["restartCount"] == 0
