"""A joined node whose agent stops: NotReady, its pods Unknown, then replaced on the other
nodes. Runs last (it leaves host3 without an agent)."""

from __future__ import annotations

import signal

from .conftest import IMAGE, NEEDS_ROOT, Bed, wait_for

pytestmark = NEEDS_ROOT


def test_a_stopped_node_goes_not_ready_and_its_pods_are_replaced(bed: Bed):
    victim = bed.hosts[2]
    others = {h.name for h in bed.hosts[:2]}
    bed.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "survivor"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "survivor"}},
                "template": {
                    "metadata": {"labels": {"app": "survivor"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        # evicted 5 s after the node goes (the API server's default: 300)
                        "tolerations": [
                            {
                                "key": f"node.kubernetes.io/{taint}",
                                "operator": "Exists",
                                "effect": "NoExecute",
                                "tolerationSeconds": 5,
                            }
                            for taint in ("unreachable", "not-ready")
                        ],
                        "containers": [
                            {
                                "name": "c",
                                "image": IMAGE,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sleep", "3600"],
                            }
                        ],
                        # spread, so that one lands on the victim
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": {"app": "survivor"}},
                            }
                        ],
                    },
                },
            },
        }
    )

    def running():
        return [
            p
            for p in bed.pods("app=survivor")
            if (p.get("status") or {}).get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
        ]

    wait_for(lambda: len(running()) == 3, timeout=120, what="3 survivors running")
    on_victim = [p["metadata"]["name"] for p in running() if p["spec"]["nodeName"] == victim.name]
    assert on_victim, "the scheduler spread no survivor onto the victim"

    assert victim.process is not None
    victim.process.stop(signal.SIGKILL)  # the agent dies; its pods keep running

    def not_ready():
        node = bed.get_json("node", victim.name)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        return ready and ready[0]["status"] == "Unknown"

    wait_for(not_ready, timeout=90, what=f"{victim.name} NotReady")
    row = [r for r in bed.ok("get", "nodes").splitlines() if r.startswith(victim.name + " ")]
    assert row and row[0].split()[1] == "NotReady"

    def shown_unknown():
        out = bed.ok("get", "pods", "-l", "app=survivor", "-o", "wide")
        return [r for r in out.splitlines() if r.startswith(on_victim[0])]

    rows = wait_for(
        lambda: (r := shown_unknown()) and r[0].split()[2] == "Unknown" and r,
        timeout=90,
        what="the victim's pod shown Unknown",
    )
    assert victim.name in rows[0]

    def replaced():
        pods = running()
        return len(pods) == 3 and {p["spec"]["nodeName"] for p in pods} <= others and pods

    pods = wait_for(replaced, timeout=120, what="3 survivors on the other nodes")
    assert not set(on_victim) & {p["metadata"]["name"] for p in pods}
