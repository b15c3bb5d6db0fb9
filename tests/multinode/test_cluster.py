"""Three hosts, one cluster: nodes, pod-to-pod traffic across nodes, DaemonSets, Services
by name across nodes, refused joins."""

from __future__ import annotations

import ipaddress
import json

from .conftest import IMAGE, NEEDS_ROOT, Bed, fetch_script, pod, wait_for

pytestmark = NEEDS_ROOT


def test_get_nodes_wide_shows_three_ready_nodes_with_addresses_and_versions(bed: Bed):
    out = bed.ok("get", "nodes", "-o", "wide")
    header, *rows = out.splitlines()
    columns = header.split()
    assert columns[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    table = {row.split()[0]: row.split() for row in rows}
    assert set(table) == {h.name for h in bed.hosts}
    for host in bed.hosts:
        cells = table[host.name]
        assert cells[1] == "Ready"
        assert cells[4].startswith("v1.")
        assert cells[5] == host.ip
    nodes = bed.get_json("nodes")["items"]
    cidrs = [ipaddress.IPv4Network(n["spec"]["podCIDR"]) for n in nodes]
    assert len(set(cidrs)) == 3
    assert all(c.subnet_of(bed.cluster_cidr) and c.prefixlen == 24 for c in cidrs)


def test_each_host_routes_to_the_other_hosts_pods(bed: Bed):
    nodes = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in bed.get_json("nodes")["items"]}
    for host in bed.hosts:

        def routes(host=host):
            out = host.sh("ip", "-j", "route", "show", "proto", "75").stdout
            return {r["dst"]: r.get("gateway") for r in json.loads(out or "[]")}

        expected = {nodes[other.name]: other.ip for other in bed.hosts if other.name != host.name}
        wait_for(lambda routes=routes, expected=expected: routes() == expected,
                 timeout=60, what=f"routes on {host.name}")  # fmt: skip


def test_pods_on_different_nodes_reach_each_other_by_pod_ip(bed: Bed):
    web = (
        "mkdir -p /www && echo from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"
    )
    servers = {}
    for host in bed.hosts[1:]:
        name = f"web-{host.name}"
        bed.apply(pod(name, host.name, web))
        servers[host.name] = name

    def ips():
        got = {}
        for node, name in servers.items():
            status = bed.get_json("pod", name).get("status") or {}
            if status.get("phase") != "Running" or not status.get("podIP"):
                return None
            got[node] = status["podIP"]
        return got

    addresses = wait_for(ips, timeout=120, what="web pods running")
    h1, h2, h3 = (h.name for h in bed.hosts)
    clients = {
        f"client-{h2}-to-{h3}": (h2, addresses[h3], servers[h3]),
        f"client-{h3}-to-{h2}": (h3, addresses[h2], servers[h2]),
        f"client-{h1}-to-{h3}": (h1, addresses[h3], servers[h3]),
    }
    for name, (node, ip, target) in clients.items():
        script = f"{fetch_script(f'http://{ip}:8080/')} | grep -q from-{target}"
        bed.apply(pod(name, node, f"set -o pipefail 2>/dev/null; {script}",
                      restartPolicy="Never"))  # fmt: skip
    for name in clients:

        def finished(name=name):
            phase = (bed.get_json("pod", name).get("status") or {}).get("phase")
            return phase in ("Succeeded", "Failed") and phase

        assert wait_for(finished, timeout=120, what=name) == "Succeeded", name
    # and from a host itself (no pod): host1's namespace reaches a pod on host3
    got = bed.control.sh(
        "python3", "-c",
        f"import urllib.request as u; print(u.urlopen('http://{addresses[h3]}:8080/', "
        "timeout=5).read().decode())",
    )  # fmt: skip
    assert got.returncode == 0 and f"from-{servers[h3]}" in got.stdout, got.stderr


def test_a_daemonset_runs_on_all_three_nodes(bed: Bed):
    bed.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "everywhere"},
            "spec": {
                "selector": {"matchLabels": {"app": "everywhere"}},
                "template": {
                    "metadata": {"labels": {"app": "everywhere"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "c",
                                "image": IMAGE,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sleep", "3600"],
                            }
                        ],
                    },
                },
            },
        }
    )

    def running_on():
        pods = bed.pods("app=everywhere")
        return {
            p["spec"].get("nodeName")
            for p in pods
            if (p.get("status") or {}).get("phase") == "Running"
        }

    wait_for(lambda: running_on() == {h.name for h in bed.hosts}, timeout=120,
             what="a DaemonSet pod running on every node")  # fmt: skip
    status = bed.get_json("daemonset", "everywhere")["status"]
    assert status["desiredNumberScheduled"] == 3


def test_a_pod_reaches_a_service_by_name_on_another_node(bed: Bed):
    h2, h3 = (h.name for h in bed.hosts[1:])
    web = "mkdir -p /www && echo svc-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"
    backend = pod("svc-backend", h3, web)
    backend["metadata"]["labels"] = {"app": "svc-backend"}
    bed.apply(backend)
    bed.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "svc-backend"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        }
    )
    script = fetch_script("http://web.default.svc.cluster.local/", tries=60)
    bed.apply(pod("svc-client", h2, f"{script} | grep -q svc-svc-backend", restartPolicy="Never"))

    def finished():
        phase = (bed.get_json("pod", "svc-client").get("status") or {}).get("phase")
        return phase in ("Succeeded", "Failed") and phase

    assert wait_for(finished, timeout=150, what="the client pod") == "Succeeded"


def test_joins_with_a_wrong_token_or_ca_hash_are_refused(bed: Bed, tmp_path):
    host = bed.hosts[1]
    words = bed.join_words
    token_id, secret = words[3].split(".")
    wrong = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    bad_token = bed.run_join(host, words[1], "--token", f"{token_id}.{wrong}", *words[4:],
                             "--node-name", "intruder", data_dir=tmp_path / "a")  # fmt: skip
    assert bad_token.returncode != 0
    assert f'bootstrap token "{token_id}" is wrong' in bad_token.stderr
    pinned = "sha256:" + "f" * 64
    bad_hash = bed.run_join(host, *words[1:5], pinned, "--node-name", "intruder",
                            data_dir=tmp_path / "b")  # fmt: skip
    assert bad_hash.returncode != 0
    assert f"does not match the pinned --discovery-token-ca-cert-hash {pinned}" in bad_hash.stderr
    names = {n["metadata"]["name"] for n in bed.get_json("nodes")["items"]}
    assert "intruder" not in names
