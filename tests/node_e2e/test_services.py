"""Services end to end on the real daemon (runtime_linux, net_bridge with its service
proxy, the EndpointSlice controller): a Deployment of busybox httpd behind a NodePort
Service, reached from a client pod through the ClusterIP and from the host through the
NodePort; scaling and readiness change who answers; a Service that selects nothing refuses
at once; stopping the daemon takes the proxy's table and route away."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
from daemon_process import start_daemon, stop_daemon

from .conftest import IMAGE, Node, phase_is, pod_manifest

NODE_PORT = 31080

WEB = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "web",
                        "image": IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": [
                            "sh",
                            "-c",
                            "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready"
                            " && exec httpd -f -p 8080 -h /www",
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {
                            "exec": {"command": ["test", "-e", "/tmp/ready"]},
                            "periodSeconds": 1,
                            "failureThreshold": 1,
                        },
                    }
                ],
            },
        },
    },
}


def service(name: str, selector: dict[str, str], **spec: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            **spec,
        },
    }


def ready_pods(node: Node) -> list[str]:
    pods = json.loads(node.ok("get", "pods", "-l", "app=web", "-o", "json"))["items"]
    return sorted(
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    )


def fetch(node: Node, url: str, count: int) -> list[str]:
    """``count`` requests from the client pod, one line each: the body or FAIL. (No
    ``wget -T``: it crashes Debian's busybox 1.35; a hang runs into kubectl's timeout.)"""
    script = f"for i in $(seq {count}); do wget -qO- {url} || echo FAIL; done"
    return node.ok("exec", "client", "--", "sh", "-c", script, timeout=120).split()


def until(check, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what or check} not reached in {timeout}s; last: {last}")


def answers_from(node: Node, url: str, expected: list[str], count: int = 24):
    def check():
        try:
            got = fetch(node, url, count)
        except AssertionError as exc:  # kubectl exec refused (the node agent is starting)
            return False, str(exc)
        return "FAIL" not in got and sorted(set(got)) == expected, got

    return check


@pytest.fixture(scope="module")
def web(node: Node) -> dict[str, str]:
    node.apply(WEB)
    node.apply(service("web", {"app": "web"}, type="NodePort",
                       ports=[{"name": "http", "port": 80, "targetPort": "http",
                               "nodePort": NODE_PORT}]))  # fmt: skip
    node.apply(service("nothing", {"app": "nothing"}))
    client = pod_manifest("client", [{"name": "main", "command": ["sleep", "3600"]}])
    client["spec"]["terminationGracePeriodSeconds"] = 1
    node.apply(client)
    node.wait_pod("client", phase_is("Running"), timeout=90, what="Running")
    until(lambda: (len(ready_pods(node)) == 3, ready_pods(node)), 90, "3 ready replicas")
    svc = node.get("service", "web")
    nothing = node.get("service", "nothing")
    assert svc is not None and nothing is not None
    return {"web": svc["spec"]["clusterIP"], "nothing": nothing["spec"]["clusterIP"]}


def test_the_cluster_ip_reaches_every_replica(node, web):
    pods = ready_pods(node)
    got = until(answers_from(node, f"http://{web['web']}/", pods), 60, "all replicas answer")
    assert len(got) == 24


def test_the_service_name_reaches_every_replica(node, web):
    # The absolute name, and the short one (the pod's first search domain answers it).
    pods = ready_pods(node)
    for url in ("http://web.default.svc.cluster.local./", "http://web/"):
        got = until(answers_from(node, url, pods), 60, f"all replicas answer {url}")
        assert len(got) == 24


def test_a_pod_failing_readiness_gets_no_traffic(node, web):
    pods = ready_pods(node)
    sick = pods[0]
    node.ok("exec", sick, "--", "rm", "/tmp/ready")
    try:
        until(lambda: (sick not in ready_pods(node), ready_pods(node)), 30, f"{sick} not ready")
        until(answers_from(node, f"http://{web['web']}/", pods[1:]), 30, "only ready ones")
        assert sick not in fetch(node, f"http://{web['web']}/", 24)
    finally:
        node.ok("exec", sick, "--", "touch", "/tmp/ready")
    until(answers_from(node, f"http://{web['web']}/", pods), 30, f"{sick} back")


def test_scaling_changes_the_endpoints_within_seconds(node, web):
    node.ok("scale", "deployment/web", "--replicas=2")
    started = time.monotonic()
    until(lambda: (len(ready_pods(node)) == 2, ready_pods(node)), 60, "2 replicas")
    until(answers_from(node, f"http://{web['web']}/", ready_pods(node)), 20, "2 answer")
    print(f"scale 3 -> 2: traffic follows after {time.monotonic() - started:.1f}s")
    node.ok("scale", "deployment/web", "--replicas=3")
    until(lambda: (len(ready_pods(node)) == 3, ready_pods(node)), 60, "3 replicas")
    until(answers_from(node, f"http://{web['web']}/", ready_pods(node)), 20, "3 answer")


def test_the_node_port_from_the_host(node, web):
    addresses = json.loads(node.ok("get", "node", node.node_name, "-o", "json"))["status"][
        "addresses"
    ]
    internal = next(a["address"] for a in addresses if a["type"] == "InternalIP")
    pods = ready_pods(node)
    for host in (internal, "127.0.0.1"):

        def check(host=host):
            got = []
            for _ in range(24):
                with urllib.request.urlopen(f"http://{host}:{NODE_PORT}/", timeout=5) as r:
                    got.append(r.read().decode().strip())
            return sorted(set(got)) == pods, got

        until(check, 30, f"NodePort on {host}")


def test_a_service_selecting_nothing_refuses_at_once(node, web):
    started = time.monotonic()
    done = node.kubectl("exec", "client", "--", "wget", "-qO-", f"http://{web['nothing']}/",
                        timeout=30)  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode != 0
    assert "refused" in done.stderr.lower(), done.stderr
    assert took < 10, f"took {took:.1f}s: hung instead of refused"


def test_stopping_the_daemon_removes_the_proxy_table_and_route(node, web):
    table = f"{node.names.table}_svc"
    assert (
        subprocess.run(["nft", "list", "table", "ip", table], capture_output=True).returncode == 0
    )

    def proxy_routes() -> list[dict]:
        out = subprocess.run(["ip", "-j", "route", "show", str(node.names.service)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return [r for r in json.loads(out or "[]") if r.get("metric") == 4200]

    assert len(proxy_routes()) == 1
    stop_daemon(node.daemon)
    try:
        assert subprocess.run(["nft", "list", "table", "ip", table], capture_output=True).returncode
        assert proxy_routes() == []
    finally:
        node.daemon = start_daemon(
            node.daemon.data_dir, *node.args, daemon_args=("--node-name", node.node_name),
            node_agent=True,
        )  # fmt: skip
    # The pods kept running; the new proxy programs the same Services again.
    until(answers_from(node, f"http://{web['web']}/", ready_pods(node)), 60, "after restart")
