"""Pods end to end with the real Python ``kubernetes`` client: watch, logs and delete;
containers sharing a network and an emptyDir; ConfigMap, Secret, downward API and
ServiceAccount files and env; the ServiceAccount token as the pod's identity; live
ConfigMap updates; a missing ConfigMap; Secret volumes on tmpfs."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from .conftest import Node, pod_manifest

NS = "default"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONDITION_ORDER = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
]


@pytest.fixture(scope="module")
def core(node: Node) -> Iterator[kubernetes.client.CoreV1Api]:
    client = kubernetes.config.new_client_from_config(config_file=str(node.daemon.kubeconfig))
    try:
        yield kubernetes.client.CoreV1Api(client)
    finally:
        client.close()


def gone(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout}s")
        time.sleep(step)


class Made:
    """What a test created; deleted (pods first, and waited for) when the test ends."""

    def __init__(self, core: kubernetes.client.CoreV1Api) -> None:
        self.core = core
        self.pods: list[str] = []
        self.config_maps: list[str] = []
        self.secrets: list[str] = []

    def pod(self, manifest: dict[str, Any]) -> Any:
        self.pods.append(manifest["metadata"]["name"])
        return self.core.create_namespaced_pod(NS, manifest)

    def config_map(self, name: str, **fields: Any) -> Any:
        self.config_maps.append(name)
        return self.core.create_namespaced_config_map(
            NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **fields}
        )

    def secret(self, name: str, **fields: Any) -> Any:
        self.secrets.append(name)
        return self.core.create_namespaced_secret(
            NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}
        )

    def wait_pod_gone(self, name: str, timeout: float = 60) -> None:
        wait_for(
            lambda: gone(lambda: self.core.read_namespaced_pod(name, NS)),
            timeout,
            f"pod {name} gone",
        )

    def clean(self) -> None:
        for name in self.pods:
            gone(lambda n=name: self.core.delete_namespaced_pod(n, NS, grace_period_seconds=0))
        for name in self.pods:
            self.wait_pod_gone(name)
        for name in self.config_maps:
            gone(lambda n=name: self.core.delete_namespaced_config_map(n, NS))
        for name in self.secrets:
            gone(lambda n=name: self.core.delete_namespaced_secret(n, NS))


@pytest.fixture
def made(core: kubernetes.client.CoreV1Api) -> Iterator[Made]:
    things = Made(core)
    try:
        yield things
    finally:
        things.clean()


def run_in(
    core: kubernetes.client.CoreV1Api, pod: str, *command: str, container: str | None = None
) -> str:
    """Exec ``command`` in the pod over the WebSocket exec subresource; its stdout, after
    checking that it exited 0."""
    extra = {"container": container} if container else {}
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        NS,
        command=list(command),
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        **extra,
    )
    try:
        ws.run_forever(timeout=30)
        out, err = ws.read_stdout(), ws.read_stderr()
        code = ws.returncode
    finally:
        ws.close()
    assert code == 0, f"exec {command} in {pod}: exit {code}, stderr {err!r}, stdout {out!r}"
    return out


def mode_of(core: kubernetes.client.CoreV1Api, pod: str, path: str) -> str:
    """The permission bits of the file ``path`` resolves to (volume files are symlinks
    into ``..data``)."""
    return run_in(core, pod, "sh", "-c", f'stat -c %a "$(readlink -f {path})"').strip()


def wait_running(core: kubernetes.client.CoreV1Api, name: str, timeout: float = 60) -> Any:
    def running() -> Any:
        pod = core.read_namespaced_pod(name, NS)
        return pod if pod.status and pod.status.phase == "Running" else None

    return wait_for(running, timeout, f"pod {name} Running")


def wait_log(
    core: kubernetes.client.CoreV1Api,
    name: str,
    text: str,
    *,
    container: str | None = None,
    timeout: float = 30,
) -> str:
    extra = {"container": container} if container else {}

    def has_text() -> str | None:
        log = core.read_namespaced_pod_log(name, NS, **extra)
        return log if text in log else None

    return wait_for(has_text, timeout, f"{text!r} in the log of {name}")


def admin_ca(node: Node) -> bytes:
    """The cluster CA (PEM) of the admin kubeconfig."""
    config = yaml.safe_load(node.daemon.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    if "certificate-authority-data" in cluster:
        return base64.b64decode(cluster["certificate-authority-data"])
    return Path(cluster["certificate-authority"]).read_bytes()


def node_internal_ip(core: kubernetes.client.CoreV1Api, node: Node) -> str:
    addresses = core.read_node(node.node_name).status.addresses
    return next(a.address for a in addresses if a.type == "InternalIP")


def jwt_claims(token: str) -> dict[str, Any]:
    claims = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))


# -- 1. create, watch, logs, delete -------------------------------------------------------------


def test_create_watch_logs_and_delete(node, core, made):
    name = "py-lifecycle"
    script = "echo hello from $(hostname); echo second line; exec sleep 3600"
    created = made.pod(pod_manifest(name, [{"name": "app", "command": ["sh", "-c", script]}]))
    assert created.metadata.uid

    watch = kubernetes.watch.Watch()
    seen, running = [], None
    for event in watch.stream(
        core.list_namespaced_pod, NS, field_selector=f"metadata.name={name}", timeout_seconds=60
    ):
        pod = event["object"]
        assert pod.metadata.name == name
        seen.append((event["type"], pod.status.phase if pod.status else None))
        if pod.status and pod.status.phase == "Running":
            running = pod
            watch.stop()
    assert running is not None, f"no Running pod in the watch: {seen}"
    assert seen[0][0] == "ADDED"
    assert {kind for kind, _ in seen[1:]} <= {"MODIFIED"}

    status = running.status
    assert ipaddress.ip_address(status.pod_ip) in node.names.pod
    assert [ip.ip for ip in status.pod_ips] == [status.pod_ip]
    assert status.host_ip == node_internal_ip(core, node)
    assert [ip.ip for ip in status.host_ips] == [status.host_ip]
    assert running.spec.node_name == node.node_name
    assert [c.type for c in status.conditions] == CONDITION_ORDER
    assert {c.type: c.status for c in status.conditions} == dict.fromkeys(CONDITION_ORDER, "True")
    assert status.start_time is not None
    (app,) = status.container_statuses
    assert (app.name, app.ready, app.started, app.restart_count) == ("app", True, True, 0)
    assert app.state.running.started_at is not None
    assert app.image == "kcore.test/busybox:latest"
    assert "://" in app.container_id

    log = wait_log(core, name, "second line\n")
    assert log == f"hello from {name}\nsecond line\n"
    assert core.read_namespaced_pod_log(name, NS, tail_lines=1) == "second line\n"
    assert core.read_namespaced_pod_log(name, NS, container="app") == log

    deleting = core.delete_namespaced_pod(name, NS)
    assert deleting.metadata.deletion_timestamp is not None
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(
        core.list_namespaced_pod,
        NS,
        field_selector=f"metadata.name={name}",
        resource_version=deleting.metadata.resource_version,
        timeout_seconds=60,
    ):
        events.append(event["type"])
        if event["type"] == "DELETED":
            final = event["object"]
            watch.stop()
    assert events[-1] == "DELETED", events
    assert final.metadata.uid == created.metadata.uid
    assert final.status.phase in ("Succeeded", "Failed")
    assert gone(lambda: core.read_namespaced_pod(name, NS))

    recorded = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
    messages = {
        e.reason: e.message for e in recorded if e.involved_object.uid == created.metadata.uid
    }
    assert messages["Scheduled"] == f"Successfully assigned {NS}/{name} to {node.node_name}"
    assert messages["Started"] == "Started container app"
    assert messages["Killing"] == "Stopping container app"


# -- 2. containers sharing the network and an emptyDir --------------------------------------


def test_containers_share_the_network_and_an_empty_dir(node, core, made):
    name = "py-web"
    page = f"<h1>served in {name} {secrets.token_hex(4)}</h1>"
    fetch = "while true; do wget -q -O- http://127.0.0.1:8080/; sleep 0.5; done"
    manifest = pod_manifest(
        name,
        [
            {
                "name": "server",
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
            },
            {"name": "client", "command": ["sh", "-c", fetch]},
        ],
        initContainers=[
            {
                "name": "content",
                "image": "kcore.test/busybox:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", f"echo '{page}' > /www/index.html"],
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
            }
        ],
        volumes=[{"name": "www", "emptyDir": {}}],
    )
    made.pod(manifest)
    pod = wait_running(core, name)
    (init,) = pod.status.init_container_statuses
    assert init.state.terminated.exit_code == 0
    assert init.state.terminated.reason == "Completed"

    log = wait_log(core, name, page, container="client")
    assert log.startswith(f"{page}\n")
    with urllib.request.urlopen(f"http://{pod.status.pod_ip}:8080/", timeout=10) as reply:
        assert reply.read().decode() == f"{page}\n"


# -- 3. ConfigMap, Secret, downward API and ServiceAccount files; env ------------------------


BLOB = bytes(range(256)) + b"\x00\xff binary"


def test_projected_files_and_env(node, core, made):
    name = "py-files"
    made.config_map(
        "py-files-cm",
        data={"color": "blue", "size": "L"},
        binaryData={"blob.bin": base64.b64encode(BLOB).decode()},
    )
    made.secret(
        "py-files-secret",
        data={
            "username": base64.b64encode(b"admin").decode(),
            "password": base64.b64encode(b"s3cr3t!").decode(),
        },
    )
    cm_ref = {"name": "py-files-cm"}
    secret_ref = {"name": "py-files-secret"}

    def field(path: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": path}}

    def resource(what: str, divisor: str | None = None) -> dict[str, Any]:
        ref = {"containerName": "app", "resource": what}
        return {"resourceFieldRef": {**ref, **({"divisor": divisor} if divisor else {})}}

    script = 'printf "%s\\n" "$@" > /tmp/args; exec sleep 3600'
    container = {
        "name": "app",
        "command": ["sh", "-c", script, "sh"],
        "args": ["$(POD_NAME)", "$(NOT_DEFINED)", "$$(POD_NAME)", "$(GREETING)"],
        "resources": {
            "limits": {"memory": "64Mi", "cpu": "500m"},
            "requests": {"memory": "32Mi", "cpu": "250m"},
        },
        "envFrom": [
            {"prefix": "CFG_", "configMapRef": cm_ref},
            {"prefix": "SEC_", "secretRef": secret_ref},
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": field("metadata.name")},
            {"name": "POD_IP", "valueFrom": field("status.podIP")},
            {"name": "NODE_NAME", "valueFrom": field("spec.nodeName")},
            {"name": "HOST_IP", "valueFrom": field("status.hostIP")},
            {"name": "NAMESPACE", "valueFrom": field("metadata.namespace")},
            {"name": "POD_UID", "valueFrom": field("metadata.uid")},
            {"name": "ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
            {"name": "APP", "valueFrom": field("metadata.labels['app']")},
            {"name": "MEM_LIMIT_MI", "valueFrom": resource("limits.memory", "1Mi")},
            {"name": "CPU_REQUEST", "valueFrom": resource("requests.cpu")},
            {"name": "CPU_LIMIT_M", "valueFrom": resource("limits.cpu", "1m")},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {**cm_ref, "key": "color"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {**secret_ref, "key": "password"}}},
            {"name": "GREETING", "value": "hello $(POD_NAME) in $(COLOR)"},
            {"name": "CFG_size", "value": "XL"},
        ],
        "volumeMounts": [
            {"name": "cm-all", "mountPath": "/etc/cm"},
            {"name": "cm-items", "mountPath": "/etc/cm-items"},
            {"name": "secret", "mountPath": "/etc/secret"},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
            {"name": "bundle", "mountPath": "/etc/bundle"},
        ],
    }
    manifest = pod_manifest(
        name,
        [container],
        volumes=[
            {"name": "cm-all", "configMap": {**cm_ref, "defaultMode": 0o640}},
            {
                "name": "cm-items",
                "configMap": {
                    **cm_ref,
                    "defaultMode": 0o444,
                    "items": [
                        {"key": "color", "path": "nested/dir/color.txt", "mode": 0o600},
                        {"key": "blob.bin", "path": "blob.bin"},
                    ],
                },
            },
            {"name": "secret", "secret": {"secretName": "py-files-secret", "defaultMode": 0o400}},
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", **field("metadata.labels")},
                        {"path": "annotations", **field("metadata.annotations")},
                        {"path": "name", **field("metadata.name"), "mode": 0o600},
                        {"path": "mem_limit", **resource("limits.memory", "1Mi")},
                        {"path": "cpu_request", **resource("requests.cpu", "1m")},
                    ]
                },
            },
            {
                "name": "bundle",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [
                        {"configMap": {**cm_ref, "items": [{"key": "size", "path": "cfg/size"}]}},
                        {
                            "secret": {
                                **secret_ref,
                                "items": [{"key": "username", "path": "creds/user", "mode": 0o400}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [{"path": "meta/name", **field("metadata.name")}]
                            }
                        },
                        {
                            "serviceAccountToken": {
                                "audience": "vault",
                                "expirationSeconds": 600,
                                "path": "vault/token",
                            }
                        },
                    ],
                },
            },
        ],
    )
    manifest["metadata"]["labels"] = {"tier": "test", "app": "files"}
    manifest["metadata"]["annotations"] = {"owner": "kcore", "note": 'say "hi"'}
    made.pod(manifest)
    pod = wait_running(core, name)

    def cat(path: str) -> str:
        return run_in(core, name, "cat", path)

    def ls(path: str) -> list[str]:
        return run_in(core, name, "ls", path).split()

    # configMap: every key, data and binaryData, defaultMode
    assert ls("/etc/cm") == ["blob.bin", "color", "size"]
    assert (cat("/etc/cm/color"), cat("/etc/cm/size")) == ("blue", "L")
    blob_sum = hashlib.sha256(BLOB).hexdigest()
    assert run_in(core, name, "sha256sum", "/etc/cm/blob.bin").split()[0] == blob_sum
    assert {mode_of(core, name, f"/etc/cm/{k}") for k in ("blob.bin", "color", "size")} == {"640"}

    # configMap items: only those, at their paths, items[].mode over defaultMode
    assert ls("/etc/cm-items") == ["blob.bin", "nested"]
    assert cat("/etc/cm-items/nested/dir/color.txt") == "blue"
    assert mode_of(core, name, "/etc/cm-items/nested/dir/color.txt") == "600"
    assert mode_of(core, name, "/etc/cm-items/blob.bin") == "444"
    assert run_in(core, name, "sha256sum", "/etc/cm-items/blob.bin").split()[0] == blob_sum

    # secret
    assert ls("/etc/secret") == ["password", "username"]
    assert (cat("/etc/secret/username"), cat("/etc/secret/password")) == ("admin", "s3cr3t!")
    assert mode_of(core, name, "/etc/secret/password") == "400"

    # downward API
    assert cat("/etc/podinfo/labels") == 'app="files"\ntier="test"'
    assert cat("/etc/podinfo/annotations") == 'note="say \\"hi\\""\nowner="kcore"'
    assert cat("/etc/podinfo/name") == name
    assert cat("/etc/podinfo/mem_limit") == "64"
    assert cat("/etc/podinfo/cpu_request") == "250"
    assert mode_of(core, name, "/etc/podinfo/name") == "600"
    assert mode_of(core, name, "/etc/podinfo/labels") == "644"

    # a projected volume: sources side by side, paths in subdirectories, modes
    assert ls("/etc/bundle") == ["cfg", "creds", "meta", "vault"]
    assert (cat("/etc/bundle/cfg/size"), cat("/etc/bundle/creds/user")) == ("L", "admin")
    assert cat("/etc/bundle/meta/name") == name
    modes = {f: mode_of(core, name, f"/etc/bundle/{f}") for f in ("cfg/size", "creds/user")}
    modes.update({f: mode_of(core, name, f"/etc/bundle/{f}") for f in ("meta/name", "vault/token")})
    assert modes == {
        "cfg/size": "440",
        "creds/user": "400",
        "meta/name": "440",
        "vault/token": "440",
    }
    vault = jwt_claims(cat("/etc/bundle/vault/token"))
    assert vault["aud"] == ["vault"]
    assert vault["exp"] - vault["iat"] == 600
    assert vault["kubernetes.io"]["pod"]["name"] == name

    # the ServiceAccount volume the admission plugin added
    assert ls(SA_DIR) == ["ca.crt", "namespace", "token"]
    assert cat(f"{SA_DIR}/namespace") == NS
    assert cat(f"{SA_DIR}/ca.crt") == admin_ca(node).decode()
    assert len(cat(f"{SA_DIR}/token").split(".")) == 3
    assert {mode_of(core, name, f"{SA_DIR}/{f}") for f in ("ca.crt", "namespace", "token")} == {
        "644"
    }
    (mount,) = [m for m in pod.spec.containers[0].volume_mounts if m.mount_path == SA_DIR]
    assert mount.read_only
    assert mount.name.startswith("kube-api-access-")

    # env of the container's process, and of an exec into it
    environ = run_in(core, name, "cat", "/proc/1/environ").split("\0")
    env = dict(item.split("=", 1) for item in environ if item)
    expected = {
        "POD_NAME": name,
        "POD_IP": pod.status.pod_ip,
        "NODE_NAME": node.node_name,
        "HOST_IP": pod.status.host_ip,
        "NAMESPACE": NS,
        "POD_UID": pod.metadata.uid,
        "ACCOUNT": "default",
        "APP": "files",
        "MEM_LIMIT_MI": "64",
        "CPU_REQUEST": "1",
        "CPU_LIMIT_M": "500",
        "COLOR": "blue",
        "PASSWORD": "s3cr3t!",
        "GREETING": f"hello {name} in blue",
        "CFG_color": "blue",
        "CFG_size": "XL",
        "SEC_username": "admin",
        "SEC_password": "s3cr3t!",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert "CFG_blob.bin" not in env  # envFrom takes a ConfigMap's data, not binaryData
    assert run_in(core, name, "sh", "-c", 'echo "$POD_NAME $CFG_size"') == f"{name} XL\n"

    # $(VAR) in args: known ones expanded, unknown ones literal, $$ escapes
    assert cat("/tmp/args").splitlines() == [
        name,
        "$(NOT_DEFINED)",
        "$(POD_NAME)",
        f"hello {name} in blue",
    ]


def test_api_data_volumes_are_read_only(node, core, made):
    """configMap, secret, downwardAPI and projected volumes are mounted read-only whatever
    ``readOnly`` says (Kubernetes >= 1.10, kubernetes/kubernetes#58720); emptyDir is not."""
    name = "py-readonly"
    made.config_map("py-readonly-cm", data={"k": "v"})
    made.secret("py-readonly-secret", stringData={"k": "v"})
    downward = {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}
    volumes = {
        "cm": {"configMap": {"name": "py-readonly-cm"}},
        "secret": {"secret": {"secretName": "py-readonly-secret"}},
        "downward": {"downwardAPI": downward},
        "projected": {"projected": {"sources": [{"downwardAPI": downward}]}},
        "scratch": {"emptyDir": {}},
    }
    writable = 'for d in "$@"; do touch "$d/new" 2>/dev/null && echo "$d"; done; true'
    manifest = pod_manifest(
        name,
        [
            {
                "name": "app",
                "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": v, "mountPath": f"/v/{v}", "readOnly": False} for v in volumes
                ],
            }
        ],
        volumes=[{"name": v, **source} for v, source in volumes.items()],
    )
    made.pod(manifest)
    wait_running(core, name)
    dirs = [f"/v/{v}" for v in volumes]
    assert run_in(core, name, "sh", "-c", writable, "sh", *dirs).split() == ["/v/scratch"]


# -- 4. the ServiceAccount token is the pod's identity --------------------------------------


def test_service_account_token_authenticates_as_the_pod(node, core, made, tmp_path):
    name = "py-token"
    vault_token = {"audience": "vault", "expirationSeconds": 600, "path": "token"}
    manifest = pod_manifest(
        name,
        [
            {
                "name": "app",
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "vault", "mountPath": "/etc/vault"}],
            }
        ],
        volumes=[
            {"name": "vault", "projected": {"sources": [{"serviceAccountToken": vault_token}]}}
        ],
    )
    created = made.pod(manifest)
    wait_running(core, name)
    token = run_in(core, name, "cat", f"{SA_DIR}/token")
    for_vault = run_in(core, name, "cat", "/etc/vault/token")
    claims = jwt_claims(token)
    assert claims["sub"] == f"system:serviceaccount:{NS}:default"
    assert claims["kubernetes.io"]["namespace"] == NS
    assert claims["kubernetes.io"]["pod"] == {"name": name, "uid": created.metadata.uid}
    assert claims["kubernetes.io"]["node"]["name"] == node.node_name
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "default"
    assert claims["exp"] - claims["iat"] == 3607

    ca = tmp_path / "ca.crt"
    ca.write_text(run_in(core, name, "cat", f"{SA_DIR}/ca.crt"))

    def api_as(bearer: str) -> kubernetes.client.CoreV1Api:
        config = kubernetes.client.Configuration(host=node.daemon.url)
        config.ssl_ca_cert = str(ca)
        config.api_key = {"authorization": bearer}
        config.api_key_prefix = {"authorization": "Bearer"}
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))

    def status_of(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
        try:
            call()
        except ApiException as exc:
            return exc.status, json.loads(exc.body)
        return 200, {}

    as_pod = api_as(token)
    try:
        seen = as_pod.read_namespaced_pod(name, NS)
        assert seen.metadata.uid == created.metadata.uid
        account = as_pod.read_namespaced_service_account("default", NS)
        assert account.metadata.uid == claims["kubernetes.io"]["serviceaccount"]["uid"]
        assert name in [p.metadata.name for p in as_pod.list_namespaced_pod(NS).items]

        head, body, signature = token.split(".")
        forged = f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
        # a token for another audience is no identity here
        for bad in ("garbage", forged, token + "x", for_vault):
            code, reply = status_of(lambda b=bad: api_as(b).read_namespaced_pod(name, NS))
            assert code == 401, bad
            assert (reply["kind"], reply["reason"], reply["code"]) == (
                "Status",
                "Unauthorized",
                401,
            )
        no_header = kubernetes.client.Configuration(host=node.daemon.url)
        no_header.ssl_ca_cert = str(ca)
        anonymous = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(no_header))
        assert status_of(lambda: anonymous.read_namespaced_pod(name, NS))[0] == 401

        # the token is bound to the pod: it dies with it
        core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
        made.wait_pod_gone(name)
        code, reply = status_of(lambda: as_pod.list_namespaced_pod(NS))
        assert (code, reply.get("reason")) == (401, "Unauthorized")
    finally:
        as_pod.api_client.close()


# -- 5. a ConfigMap update reaches the volume, atomically -----------------------------------


def test_config_map_update_reaches_the_volume_atomically(node, core, made):
    name = "py-live"
    old, new = "old-" + "o" * 3000, "new-" + "n" * 5000
    made.config_map("py-live-cm", data={"value": old})
    made.secret("py-live-secret", stringData={"value": "before"})
    reader = """
last=
while true; do
  v=$(cat /etc/live/value)
  if [ "$v" = "$OLD" ]; then s=old; elif [ "$v" = "$NEW" ]; then s=new; else s="TORN(${#v})"; fi
  if [ "$s" != "$last" ]; then echo "state=$s"; last=$s; fi
done
"""
    manifest = pod_manifest(
        name,
        [
            {
                "name": "reader",
                "command": ["sh", "-c", reader],
                "env": [{"name": "OLD", "value": old}, {"name": "NEW", "value": new}],
                "volumeMounts": [
                    {"name": "live", "mountPath": "/etc/live"},
                    {"name": "live", "mountPath": "/etc/pinned", "subPath": "value"},
                    {"name": "secret", "mountPath": "/etc/secret"},
                    {"name": "podinfo", "mountPath": "/etc/podinfo"},
                ],
            }
        ],
        volumes=[
            {"name": "live", "configMap": {"name": "py-live-cm"}},
            {"name": "secret", "secret": {"secretName": "py-live-secret"}},
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
        ],
    )
    manifest["metadata"]["labels"] = {"stage": "one"}
    made.pod(manifest)
    wait_running(core, name)
    wait_log(core, name, "state=old\n")
    time.sleep(1)

    core.patch_namespaced_config_map("py-live-cm", NS, {"data": {"value": new}})
    changed_at = time.monotonic()
    core.patch_namespaced_secret("py-live-secret", NS, {"stringData": {"value": "after"}})
    core.patch_namespaced_pod(name, NS, {"metadata": {"labels": {"stage": "two"}}})
    wait_log(core, name, "state=new\n", timeout=25)
    took = time.monotonic() - changed_at
    assert took < 17, f"the update took {took:.1f}s to reach the volume"
    time.sleep(1)
    log = core.read_namespaced_pod_log(name, NS)
    assert log == "state=old\nstate=new\n", "the reader saw an empty or partial file"
    assert run_in(core, name, "cat", "/etc/live/value") == new
    # Secrets and the downward API refresh alike
    wait_for(
        lambda: run_in(core, name, "cat", "/etc/secret/value") == "after",
        10,
        "the Secret update in the volume",
    )
    wait_for(
        lambda: run_in(core, name, "cat", "/etc/podinfo/labels") == 'stage="two"',
        10,
        "the label change in the downward API volume",
        step=1,
    )
    # a subPath mount is pinned to the file it was made from
    assert run_in(core, name, "cat", "/etc/pinned") == old


# -- 6. a missing ConfigMap holds the pod until it exists -----------------------------------


def test_missing_config_map_holds_the_pod_until_created(node, core, made):
    name = "py-waits"
    manifest = pod_manifest(
        name,
        [
            {
                "name": "app",
                "command": ["sh", "-c", "cat /etc/late/greeting; echo; exec sleep 3600"],
                "volumeMounts": [
                    {"name": "late", "mountPath": "/etc/late"},
                    {"name": "maybe", "mountPath": "/etc/maybe"},
                ],
            }
        ],
        volumes=[
            {"name": "maybe", "configMap": {"name": "py-never-cm", "optional": True}},
            {"name": "late", "configMap": {"name": "py-late-cm"}},
        ],
    )
    made.pod(manifest)
    message = 'MountVolume.SetUp failed for volume "late" : configmap "py-late-cm" not found'

    def failed_mount() -> Any:
        events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}")
        return [e for e in events.items if e.reason == "FailedMount"]

    (event, *_) = wait_for(failed_mount, 20, "a FailedMount event")
    assert (event.type, event.message) == ("Warning", message)
    assert event.involved_object.kind == "Pod"
    assert event.source.component == "kubelet"
    time.sleep(1)
    pod = core.read_namespaced_pod(name, NS)
    assert pod.status.phase == "Pending"
    (app,) = pod.status.container_statuses or [None]
    assert app is not None and app.state.waiting.reason == "ContainerCreating"

    made.config_map("py-late-cm", data={"greeting": "finally"})
    wait_running(core, name, timeout=45)
    assert wait_log(core, name, "finally\n") == "finally\n"
    assert run_in(core, name, "ls", "/etc/maybe") == ""  # optional and missing: empty
    assert not [e for e in failed_mount() if '"maybe"' in e.message]


# -- 7. Secret volumes live on tmpfs -----------------------------------------------------------


def mounts_by_path() -> dict[str, str]:
    out = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            out[fields[4].replace("\\040", " ")] = fields[fields.index("-") + 1]
    return out


def test_secret_volume_is_on_tmpfs(node, core, made):
    name = "py-tmpfs"
    made.secret("py-tmpfs-secret", stringData={"password": "hunter2"})
    manifest = pod_manifest(
        name,
        [
            {
                "name": "app",
                "command": ["sleep", "3600"],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/etc/creds"},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "memory", "mountPath": "/memory"},
                ],
            }
        ],
        volumes=[
            {"name": "creds", "secret": {"secretName": "py-tmpfs-secret"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "memory", "emptyDir": {"medium": "Memory"}},
        ],
    )
    uid = made.pod(manifest).metadata.uid
    pod = wait_running(core, name)
    volumes = node.daemon.data_dir / "pods" / uid / "volumes"
    creds = volumes / "kubernetes.io~secret" / "creds"
    assert (creds / "password").read_text() == "hunter2"
    (api_access,) = [v.name for v in pod.spec.volumes if v.name.startswith("kube-api-access-")]
    projected = volumes / "kubernetes.io~projected" / api_access
    scratch = volumes / "kubernetes.io~emptyDir" / "scratch"
    memory = volumes / "kubernetes.io~emptyDir" / "memory"
    assert scratch.is_dir()

    mounts = mounts_by_path()
    assert mounts.get(str(creds.resolve())) == "tmpfs"
    assert mounts.get(str(projected.resolve())) == "tmpfs"
    assert mounts.get(str(memory.resolve())) == "tmpfs"
    assert str(scratch.resolve()) not in mounts  # an emptyDir without a medium is on disk

    inside = {}
    for line in run_in(core, name, "cat", "/proc/self/mountinfo").splitlines():
        fields = line.split()
        inside[fields[4]] = fields[fields.index("-") + 1]
    assert inside["/etc/creds"] == "tmpfs"
    assert inside[SA_DIR] == "tmpfs"
    assert inside["/memory"] == "tmpfs"
    assert run_in(core, name, "cat", "/etc/creds/password") == "hunter2"

    core.delete_namespaced_pod(name, NS)
    made.wait_pod_gone(name)
    pod_dir = str((node.daemon.data_dir / "pods" / uid).resolve())
    left = [p for p in mounts_by_path() if p == pod_dir or p.startswith(pod_dir + "/")]
    assert left == [], "the pod is gone but its volumes are still mounted"
    assert not (node.daemon.data_dir / "pods" / uid).exists()
