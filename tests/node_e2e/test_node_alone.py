"""``kcore node``: a node agent on its own, against an API server in another process
(over HTTPS with the admin kubeconfig), as a node on another machine would run."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time

from daemon_process import clean_env, start_daemon, stop_daemon
from hostnames import unmount_below


def test_a_separate_node_agent_registers_and_runs_pods(tmp_path):
    (tmp_path / "api").mkdir()
    api = start_daemon(tmp_path / "api")
    node_name = f"alone-{secrets.token_hex(3)}"
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    with open(node_dir / "node.log", "w") as log:
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcore",
                "--data-dir",
                str(node_dir),
                "--plugins",
                "runtime_sim,volumes",
                "node",
                "--kubeconfig",
                str(api.kubeconfig),
                "--node-name",
                node_name,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=clean_env(),
        )
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()
        assert line.strip() == f"kcore node agent running as node {node_name}", (
            line + (node_dir / "node.log").read_text()
        )
        node = json.loads(api.kubectl("get", "node", node_name, "-o", "json").stdout)
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "remote"},
            "spec": {
                "nodeName": node_name,
                "containers": [{"name": "app", "image": "example.com/app:1"}],
            },
        }
        done = api.kubectl("apply", "-f", "-", input=json.dumps(pod))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        phase = None
        while time.monotonic() < deadline:
            out = api.kubectl("get", "pod", "remote", "-o", "jsonpath={.status.phase}")
            phase = out.stdout
            if phase == "Running":
                break
            time.sleep(0.2)
        assert phase == "Running", (node_dir / "node.log").read_text()[-3000:]
        api.kubectl("delete", "pod", "remote", "--wait=true", timeout=60)
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
        if agent.stdout is not None:
            agent.stdout.close()
        stop_daemon(api)
        unmount_below(node_dir)
