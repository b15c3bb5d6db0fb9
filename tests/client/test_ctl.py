"""``kcore ctl`` against a real daemon (HTTPS, admin kubeconfig in the data dir), and the
HTTP client over that TLS connection."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
import yaml

from kcore.client import ApiClient, Informer
from kcore.errors import NotFound

pytestmark = pytest.mark.slow

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {app}}}
spec:
  containers:
  - name: c
    image: busybox
"""

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels: {{team: a, tier: front}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx
        env: [{env}]
"""


def one_line_error(result, start):
    """The command failed with exactly one line on stderr, starting with ``start``."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(start), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def apply_pods(daemon, tmp_path, ns, *pods):
    """Apply a namespace and pods ``(name, app)`` in it, in one manifest."""
    docs = [NAMESPACE.format(ns=ns)] + [POD.format(name=n, ns=ns, app=a) for n, a in pods]
    path = write(tmp_path, f"{ns}.yaml", "---\n".join(docs))
    result = daemon.ctl("apply", "-f", path)
    assert result.returncode == 0, result.stderr
    return path


def test_apply_creates_then_leaves_unchanged_then_configures(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "apply")
    manifest = NAMESPACE.format(ns="apply") + "---\n" + POD.format(name="p", ns="apply", app="a")
    manifest += "---\n" + DEPLOYMENT.format(
        ns="apply", replicas=1, env='{name: A, value: "1"}, {name: B, value: "2"}'
    )
    path = write(tmp_path, "all.yaml", manifest)

    first = daemon.ctl("apply", "-f", path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "namespace/apply unchanged",
        "pod/p created",
        "deployment.apps/web created",
    ]
    second = daemon.ctl("apply", "-f", path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "namespace/apply unchanged",
        "pod/p unchanged",
        "deployment.apps/web unchanged",
    ]

    changed = DEPLOYMENT.format(ns="apply", replicas=3, env='{name: A, value: "1"}').replace(
        "team: a, tier: front", "team: a"
    )
    third = daemon.ctl("apply", "-f", write(tmp_path, "deploy.yaml", changed))
    assert third.stdout.splitlines() == ["deployment.apps/web configured"], third.stderr
    got = json.loads(daemon.ctl("get", "deploy", "web", "-n", "apply", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 3
    # what the last apply no longer has is removed: a label, an env entry
    assert got["metadata"]["labels"] == {"team": "a"}
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_server_side_apply(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "ssa")
    path = write(tmp_path, "p.yaml", POD.format(name="p", ns="ssa", app="a"))
    assert daemon.ctl("apply", "--server-side", "-f", path).stdout == "pod/p created\n"
    assert daemon.ctl("apply", "--server-side", "-f", path).stdout == "pod/p unchanged\n"


def test_get_prints_the_servers_table(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "get", ("p1", "a"), ("p2", "b"))

    table = daemon.ctl("get", "po", "-n", "get")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["p1", "0/1", "Pending", "0"],
        ["p2", "0/1", "Pending", "0"],
    ]
    # columns line up: every row starts its STATUS cell where the header's is
    at = lines[0].index("STATUS")
    assert all(line[at:].startswith("Pending") for line in lines[1:])

    wide = daemon.ctl("get", "pods", "-n", "get", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]

    selected = daemon.ctl("get", "pod", "-n", "get", "-l", "app=b").stdout.splitlines()
    assert [line.split()[0] for line in selected] == ["NAME", "p2"]

    everywhere = daemon.ctl("get", "po", "-A", "-l", "app in (a,b)").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert ["get", "p1"] in [line.split()[:2] for line in everywhere[1:]]

    one = daemon.ctl("get", "po", "p1", "-n", "get").stdout.splitlines()
    assert len(one) == 2 and one[1].split()[0] == "p1"

    namespaces = daemon.ctl("get", "ns").stdout
    assert "kube-system" in namespaces and "NAMESPACE" not in namespaces

    names = daemon.ctl("get", "pods", "-n", "get", "-o", "name").stdout.splitlines()
    assert names == ["pod/p1", "pod/p2"]

    empty = daemon.ctl("get", "po", "-n", "get", "-l", "app=none")
    assert empty.returncode == 0 and empty.stdout == ""
    assert empty.stderr.strip() == "No resources found in get namespace."

    everything = daemon.ctl("get", "all", "-n", "get").stdout.splitlines()
    assert [line.split()[0] for line in everything] == ["NAME", "pod/p1", "pod/p2"]


def test_get_yaml_and_json(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "out", ("p", "x"))
    result = daemon.ctl("get", "pod", "p", "-n", "out", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    obj = yaml.safe_load(result.stdout)
    assert obj["kind"] == "Pod" and obj["apiVersion"] == "v1"
    assert obj["metadata"]["name"] == "p" and obj["metadata"]["namespace"] == "out"
    assert obj["spec"]["containers"][0]["image"] == "busybox"
    assert obj["status"]["phase"] == "Pending"

    listed = json.loads(daemon.ctl("get", "po", "-n", "out", "-o", "json").stdout)
    assert listed["kind"] == "List"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["p"]
    assert listed["items"][0]["metadata"]["uid"] == obj["metadata"]["uid"]


def test_describe_shows_the_object_and_its_events(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "desc", ("p", "x"))

    async def add_event():
        async with ApiClient.from_kubeconfig(daemon.kubeconfig) as client:
            pod = await client.get("v1", "Pod", "p", "desc")
            for reason, uid in (("Scheduled", pod["metadata"]["uid"]), ("Elsewhere", "other")):
                await client.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Event",
                        "metadata": {"name": f"p.{reason.lower()}", "namespace": "desc"},
                        "involvedObject": {
                            "kind": "Pod",
                            "namespace": "desc",
                            "name": "p",
                            "uid": uid,
                            "apiVersion": "v1",
                        },
                        "reason": reason,
                        "message": f"{reason} happened",
                        "type": "Normal",
                        "source": {"component": "test"},
                        "count": 1,
                        "lastTimestamp": pod["metadata"]["creationTimestamp"],
                    }
                )

    asyncio.run(add_event())
    result = daemon.ctl("describe", "po", "p", "-n", "desc")
    assert result.returncode == 0, result.stderr
    head, _, events = result.stdout.partition("\nEvents:")
    assert yaml.safe_load(head)["metadata"]["name"] == "p"
    lines = events.strip().splitlines()
    assert lines[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert len(lines) == 3, events
    assert lines[2].split()[:2] == ["Normal", "Scheduled"]
    assert lines[2].endswith("Scheduled happened")

    quiet = daemon.ctl("describe", "ns", "desc").stdout
    assert quiet.rstrip().endswith("Events:  <none>")


def test_delete(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "del", ("p", "x"))
    path = write(tmp_path, "p.yaml", POD.format(name="p", ns="del", app="x"))
    result = daemon.ctl("delete", "po", "p", "-n", "del")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'pod "p" deleted\n'
    one_line_error(
        daemon.ctl("get", "po", "p", "-n", "del"),
        'Error from server (NotFound): pods "p" not found',
    )
    one_line_error(
        daemon.ctl("delete", "pod", "p", "-n", "del"),
        'Error from server (NotFound): pods "p" not found',
    )
    assert daemon.ctl("delete", "pod", "p", "-n", "del", "--ignore-not-found").returncode == 0

    daemon.ctl("apply", "-f", path)
    by_file = daemon.ctl("delete", "-f", path)
    assert by_file.returncode == 0 and by_file.stdout == 'pod "p" deleted\n'


def test_bad_manifests_give_one_clear_line(daemon, tmp_path):
    broken = write(tmp_path, "broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n")
    line = one_line_error(daemon.ctl("apply", "-f", broken), "error: ")
    assert "broken.yaml" in line and "malformed YAML" in line and "line" in line

    no_kind = write(tmp_path, "nokind.yaml", "apiVersion: v1\nmetadata:\n  name: x\n")
    assert "kind not set" in one_line_error(daemon.ctl("apply", "-f", no_kind), "error: ")

    unknown = write(tmp_path, "unknown.yaml", "apiVersion: v9\nkind: Gizmo\nmetadata: {name: x}\n")
    line = one_line_error(daemon.ctl("apply", "-f", unknown), "error: ")
    assert 'no matches for kind "Gizmo" in version "v9"' in line

    invalid = write(
        tmp_path,
        "invalid.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers: [{name: c}]\n",
    )
    line = one_line_error(daemon.ctl("apply", "-f", invalid), "Error from server (Invalid): ")
    assert "spec.containers[0].image" in line

    missing = one_line_error(daemon.ctl("apply", "-f", str(tmp_path / "nope.yaml")), "error: ")
    assert "nope.yaml" in missing


def test_logs_and_unknown_types(daemon, tmp_path):
    apply_pods(daemon, tmp_path, "logs", ("p", "x"))
    line = one_line_error(
        daemon.ctl("logs", "p", "-n", "logs"), "Error from server (MethodNotAllowed): "
    )
    assert "node agent" in line
    one_line_error(
        daemon.ctl("get", "gizmos"), 'error: the server doesn\'t have a resource type "gizmos"'
    )


def test_kubeconfig_option(daemon, tmp_path):
    copy = tmp_path / "elsewhere.kubeconfig"
    shutil.copy(daemon.kubeconfig, copy)
    result = daemon.ctl("--kubeconfig", str(copy), "get", "ns", "default", "-o", "name")
    assert result.stdout == "namespace/default\n", result.stderr
    result = daemon.ctl("get", "ns", "default", "-o", "name", "--kubeconfig", str(copy))
    assert result.stdout == "namespace/default\n", result.stderr
    line = one_line_error(
        daemon.ctl("--kubeconfig", str(tmp_path / "none"), "get", "po"), "error: "
    )
    assert "kubeconfig" in line


async def test_http_client_over_tls_from_kubeconfig(daemon):
    async with ApiClient.from_kubeconfig(daemon.kubeconfig) as client:
        assert client.namespace == "default"
        informer = Informer(
            client, "v1", "ConfigMap", namespace="default", field_selector="metadata.name=tls"
        )
        added = asyncio.Queue()
        informer.on_add(added.put)
        async with informer:
            assert await informer.wait_for_sync(10)
            await client.create(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tls"}}
            )
            obj = await asyncio.wait_for(added.get(), 10)
            assert obj["metadata"]["name"] == "tls"
        await client.delete("v1", "ConfigMap", "tls")
        with pytest.raises(NotFound):
            await client.get("v1", "ConfigMap", "tls")
