"""Controllers on real containers (runtime_linux): a Deployment rolls out, scales, rolls
back; a Job runs to completion."""

from __future__ import annotations

import json
import time

from .conftest import IMAGE, Node


def running_pods(node: Node, selector: str) -> list[dict]:
    pods = json.loads(node.ok("get", "pods", "-l", selector, "-o", "json"))["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def wait_running(node: Node, selector: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        pods = running_pods(node, selector)
        if len(pods) == count:
            return pods
        assert time.monotonic() < deadline, f"{len(pods)} of {count} running for {selector}"
        time.sleep(0.3)


def test_a_deployment_rolls_out_scales_and_rolls_back(node):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "echo v=$VERSION; exec sleep 3600"],
                            "env": [{"name": "VERSION", "value": "1"}],
                        }
                    ],
                },
            },
        },
    }
    try:
        node.apply(deployment)
        pods = wait_running(node, "app=web", 3)
        assert {p["spec"]["nodeName"] for p in pods} == {node.node_name}
        node.ok("scale", "deployment/web", "--replicas=5")
        wait_running(node, "app=web", 5)
        node.ok("scale", "deployment/web", "--replicas=2")
        wait_running(node, "app=web", 2)
        node.ok("set", "env", "deployment/web", "VERSION=2")
        out = node.ok("rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
        assert 'deployment "web" successfully rolled out' in out
        pods = wait_running(node, "app=web", 2)
        assert {node.ok("logs", p["metadata"]["name"]) for p in pods} == {"v=2\n"}
        node.ok("rollout", "undo", "deployment/web")
        node.ok("rollout", "status", "deployment/web", "--timeout=90s", timeout=120)
        pods = wait_running(node, "app=web", 2)
        assert {node.ok("logs", p["metadata"]["name"]) for p in pods} == {"v=1\n"}
    finally:
        node.kubectl("delete", "deployment", "web", "--wait=true", timeout=90)
    deadline = time.monotonic() + 60
    while json.loads(node.ok("get", "pods", "-l", "app=web", "-o", "json"))["items"]:
        assert time.monotonic() < deadline, "the Deployment's pods outlived it"
        time.sleep(0.3)


def test_a_job_runs_to_completion(node):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "count"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "c",
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "echo done"],
                        }
                    ],
                }
            },
        },
    }
    try:
        node.apply(job)
        node.ok("wait", "--for=condition=complete", "job/count", "--timeout=90s", timeout=120)
        status = json.loads(node.ok("get", "job", "count", "-o", "json"))["status"]
        assert status["succeeded"] == 3
    finally:
        node.kubectl("delete", "job", "count", "--wait=true", timeout=90)
