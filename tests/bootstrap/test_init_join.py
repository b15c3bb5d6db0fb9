"""``kcore init`` and ``kcore join`` end to end on runtime_sim (no root resources): the
join command init prints works, bad tokens and CA hashes are refused with clear messages,
the joined node runs with its own certificate and keeps it across a restart."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import click
import pytest
import yaml

from kcore.cluster import JoinRefused, _check_hashes, fetch_cluster_info

from .processes import Process, join_args, kubectl, run, start

SIM = "store_sqlite,runtime_sim,volumes,controllers,scheduler"
NODE_PLUGINS = "store_sqlite,runtime_sim,volumes"


def wait_for(check, timeout: float = 30.0, what: str = ""):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("init")
    plane = start(
        data,
        [
            "--plugins", SIM, "init", "--advertise-address", "127.0.0.1", "--port", "0",
            "--node-name", "cp", "--pod-network-cidr", "10.240.0.0/16", "--token-ttl", "1h",
        ],
    )  # fmt: skip
    try:
        plane.wait_line("kcore join ")
        yield plane
    finally:
        plane.stop()


def join_line(plane: Process) -> list[str]:
    return join_args(plane.wait_line("kcore join "))


def test_init_prints_a_join_command_with_token_and_ca_hash(control_plane: Process):
    words = join_line(control_plane)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", words[1])
    assert words[2] == "--token" and re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", words[3])
    assert words[4] == "--discovery-token-ca-cert-hash"
    from kcore.apiserver.bootstrap_auth import ca_cert_hash

    ca = (control_plane.data_dir / "pki" / "ca.crt").read_bytes()
    assert words[5] == ca_cert_hash(ca)
    admin = control_plane.data_dir / "admin.kubeconfig"
    info = json.loads(
        kubectl(admin, "get", "cm", "-n", "kube-public", "cluster-info", "-o", "json").stdout
    )
    token_id = words[3].split(".")[0]
    assert f"jws-kubeconfig-{token_id}" in info["data"]
    config = yaml.safe_load(
        kubectl(admin, "get", "cm", "-n", "kube-system", "kubeadm-config", "-o", "json").stdout
    )
    networking = yaml.safe_load(config["data"]["ClusterConfiguration"])["networking"]
    assert networking["podSubnet"] == "10.240.0.0/16"


def test_join_with_a_wrong_token_is_refused(control_plane: Process, tmp_path: Path):
    words = join_line(control_plane)
    token_id, secret = words[3].split(".")
    wrong = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    bad = run(tmp_path, ["--plugins", NODE_PLUGINS, *words[:3], f"{token_id}.{wrong}", *words[4:]])
    assert bad.returncode != 0
    assert f'kcore: error: the bootstrap token "{token_id}" is wrong' in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "kubelet.kubeconfig").exists()
    # a token id the cluster does not know
    other = "zzzzzz" if token_id != "zzzzzz" else "yyyyyy"
    with pytest.raises(JoinRefused, match=f'token "{other}" is not valid for this cluster'):
        asyncio.run(fetch_cluster_info(f"https://{words[1]}", f"{other}.{secret}", [], timeout=5))


def test_join_with_a_wrong_ca_hash_is_refused(control_plane: Process, tmp_path: Path):
    words = join_line(control_plane)
    pinned = "sha256:" + "0" * 64
    done = run(tmp_path, ["--plugins", NODE_PLUGINS, *words[:5], pinned])
    assert done.returncode != 0
    assert f"does not match the pinned --discovery-token-ca-cert-hash {pinned}" in done.stderr
    assert words[5] in done.stderr  # the hash it found
    assert not (tmp_path / "kubelet.kubeconfig").exists()
    with pytest.raises(click.BadParameter, match="sha256:<64 hex digits>"):
        _check_hashes(("md5:abc",), False)
    with pytest.raises(click.UsageError, match="give --discovery-token-ca-cert-hash"):
        _check_hashes((), False)
    info = asyncio.run(fetch_cluster_info(f"https://{words[1]}", words[3], [words[5]], timeout=5))
    assert info.server == f"https://{words[1]}"


def test_bootstrap_token_may_only_handle_certificate_requests(control_plane: Process, tmp_path):
    words = join_line(control_plane)
    admin = control_plane.data_dir / "admin.kubeconfig"
    server = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]["server"]
    args = ["--server", server, "--token", words[3], "--insecure-skip-tls-verify"]
    nodes = kubectl(Path("/dev/null"), *args, "get", "nodes")
    assert nodes.returncode != 0
    assert f'User "system:bootstrap:{words[3][:6]}" cannot list resource "nodes"' in nodes.stderr
    csrs = kubectl(Path("/dev/null"), *args, "get", "csr")
    assert csrs.returncode == 0, csrs.stderr
    fake = kubectl(Path("/dev/null"), "--server", server, "--token", "abcdef.0123456789abcdef",
                   "--insecure-skip-tls-verify", "get", "csr")  # fmt: skip
    assert fake.returncode != 0 and "Unauthorized" in fake.stderr


def test_joined_node_gets_a_certificate_a_pod_cidr_and_runs_pods(
    control_plane: Process, tmp_path_factory: pytest.TempPathFactory
):
    words = join_line(control_plane)
    admin = control_plane.data_dir / "admin.kubeconfig"
    data = tmp_path_factory.mktemp("worker")
    worker = start(data, ["--plugins", NODE_PLUGINS, *words, "--node-name", "worker-1"])
    try:
        worker.wait_line("kcore node agent running as node worker-1")
        kubeconfig = yaml.safe_load((data / "kubelet.kubeconfig").read_text())
        assert "client-certificate-data" in kubeconfig["users"][0]["user"]
        assert oct((data / "kubelet.kubeconfig").stat().st_mode & 0o777) == "0o600"

        def ready_nodes():
            out = kubectl(admin, "get", "nodes", "-o", "json")
            items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
            return {
                n["metadata"]["name"]: n
                for n in items
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            }

        nodes = wait_for(lambda: len(ready_nodes()) == 2 and ready_nodes(), what="2 nodes")
        cidrs = {n: node["spec"]["podCIDR"] for n, node in nodes.items()}
        assert set(cidrs) == {"cp", "worker-1"}
        assert len(set(cidrs.values())) == 2
        assert all(c.startswith("10.240.") and c.endswith("/24") for c in cidrs.values())
        csr = kubectl(admin, "get", "csr")
        assert "Approved,Issued" in csr.stdout and "system:bootstrap:" in csr.stdout
        # the node agent's own identity: its certificate, not the bootstrap token
        lease = json.loads(
            kubectl(admin, "get", "lease", "-n", "kube-node-lease", "worker-1", "-o", "json").stdout
        )
        assert lease["spec"]["holderIdentity"] == "worker-1"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "on-worker"},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "busybox"}]},
        }
        created = kubectl(admin, "apply", "-f", "-", input=json.dumps(pod))
        assert created.returncode == 0, created.stderr

        def phase():
            out = kubectl(admin, "get", "pod", "on-worker", "-o", "jsonpath={.status.phase}")
            return out.stdout == "Running"

        wait_for(phase, what="the pod on the joined node running")
    finally:
        assert worker.stop() is not None
    again = start(data, ["--plugins", NODE_PLUGINS, *words, "--node-name", "worker-1"])
    try:
        again.wait_line("Using the node credentials in")
        again.wait_line("kcore node agent running as node worker-1")
    finally:
        again.stop()


def test_kubectl_certificate_approve_and_deny(control_plane: Process):
    from .helpers import CLIENT_SIGNER, csr

    admin = control_plane.data_dir / "admin.kubeconfig"
    for name in ("alice-csr", "mallory-csr"):
        body = csr(
            name, name.split("-")[0], ("devs",), signer=CLIENT_SIGNER, usages=("client auth",)
        )
        created = kubectl(admin, "create", "-f", "-", input=json.dumps(body))
        assert created.returncode == 0, created.stderr
    assert "Pending" in kubectl(admin, "get", "csr", "alice-csr").stdout
    approved = kubectl(admin, "certificate", "approve", "alice-csr")
    assert approved.returncode == 0, approved.stderr
    denied = kubectl(admin, "certificate", "deny", "mallory-csr")
    assert denied.returncode == 0, denied.stderr

    def condition(name):
        out = kubectl(admin, "get", "csr", name, "--no-headers")
        return out.stdout.split()[-1] if out.returncode == 0 else ""

    wait_for(lambda: condition("alice-csr") == "Approved,Issued", what="alice's certificate")
    assert condition("mallory-csr") == "Denied"
    cert = kubectl(admin, "get", "csr", "alice-csr", "-o", "jsonpath={.status.certificate}")
    assert b"BEGIN CERTIFICATE" in base64.b64decode(cert.stdout)


def test_init_again_on_the_same_data_dir_reuses_ca_and_token(control_plane: Process):
    words = join_line(control_plane)
    assert control_plane.stop() is not None
    again = start(
        control_plane.data_dir,
        ["--plugins", SIM, "init", "--advertise-address", "127.0.0.1", "--port", "0",
         "--node-name", "cp", "--pod-network-cidr", "10.240.0.0/16"],
    )  # fmt: skip
    try:
        new = join_args(again.wait_line("kcore join "))
        assert new[3] == words[3]  # the same, still valid token
        assert new[5] == words[5]  # the same CA
    finally:
        again.stop()
