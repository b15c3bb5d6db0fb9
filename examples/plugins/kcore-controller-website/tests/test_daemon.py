"""End to end: a kcore daemon with this plugin, simulated containers, and kubectl."""

from __future__ import annotations

import json
import time

from conftest import EXAMPLE, Daemon


def ok(proc) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def wait_for(check, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.3)


def test_kubectl_apply_of_a_website_serves_it(daemon: Daemon):
    # the controller created the definition when it started
    wait_for(lambda: daemon.kubectl("get", "crd", "websites.examples.kcore.io").returncode == 0,
             what="the Website definition")  # fmt: skip
    ok(daemon.kubectl("apply", "-f", str(EXAMPLE / "website.yaml")))

    def website():
        return json.loads(ok(daemon.kubectl("get", "website", "hello", "-o", "json")))

    def ready():
        status = website().get("status") or {}
        return status if status.get("readyReplicas") == 2 else None

    status = wait_for(ready, what="two ready replicas")
    (cond,) = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Ready", "True", "Serving")
    assert status["url"] == "http://hello.default.svc"

    objects = ok(daemon.kubectl("get", "configmap,deployment,service", "-l",
                                "examples.kcore.io/website=hello", "-o", "name"))  # fmt: skip
    assert sorted(objects.split()) == [
        "configmap/hello-content", "deployment.apps/hello", "service/hello"
    ]  # fmt: skip
    pods = ok(daemon.kubectl("get", "pods", "-l", "examples.kcore.io/website=hello", "-o", "name"))
    assert len(pods.split()) == 2
    table = ok(daemon.kubectl("get", "ws")).splitlines()
    assert table[0].split() == ["NAME", "DESIRED", "READY", "STATUS", "AGE"]
    assert table[1].split()[:4] == ["hello", "2", "2", "Serving"]

    ok(daemon.kubectl("scale", "website", "hello", "--replicas=1"))
    wait_for(lambda: ok(daemon.kubectl("get", "deployment", "hello", "-o",
                                       "jsonpath={.spec.replicas}")) == "1",
             what="the Deployment scaled with the Website")  # fmt: skip

    ok(daemon.kubectl("delete", "website", "hello"))
    wait_for(lambda: not ok(daemon.kubectl("get", "configmap,deployment,service", "-l",
                                           "examples.kcore.io/website=hello", "-o", "name")),
             what="the Website's objects to go")  # fmt: skip
