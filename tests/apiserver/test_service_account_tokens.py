"""ServiceAccount tokens through the API: TokenRequest, tokens as identities, and the
defaults every namespace gets. In-process over HTTP (with a clock the test moves), then the
real daemon with kubectl and the Python client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from daemon_process import start_daemon, stop_daemon
from kubernetes import client, config

from kcore.apiserver.namespace_defaults import ROOT_CA_CONFIGMAP, ensure_namespace_defaults
from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.pki import generate_service_account_key, write_kubeconfig
from kcore.apiserver.server import USER, APIServer
from kcore.apiserver.tokens import DEFAULT_ISSUER, LEEWAY, ObjectRef, TokenIssuer
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore

ADMIN = "admin-token"
KEY = generate_service_account_key()
NS = "/api/v1/namespaces/default"


def claims_of(token: str) -> dict:
    raw = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


# -- in process, over HTTP -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    session: aiohttp.ClientSession
    base: str
    clock: Clock
    issuer: TokenIssuer
    objects: ObjectStore

    async def call(self, method: str, path: str, body=None, *, token: str = ADMIN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def token(self, sa: str = "default", spec: dict | None = None, ns: str = "default"):
        path = f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"
        status, body = await self.call("POST", path, {"spec": spec or {}})
        assert status == 201, body
        return body["status"]["token"]

    async def whoami(self, token: str):
        return await self.call("GET", "/test/whoami", token=token)


async def whoami(request: web.Request) -> web.Response:
    user = request[USER]
    return web.json_response(
        {"name": user.name, "uid": user.uid, "groups": list(user.groups), "extra": user.extra}
    )


@pytest.fixture
async def env():
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    clock = Clock()
    issuer = TokenIssuer(KEY, clock=clock)
    app = APIServer(objects, token=ADMIN, token_issuer=issuer).app()
    app.router.add_get("/test/whoami", whoami)
    server = TestServer(app)
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        yield Env(session, str(server.make_url("")).rstrip("/"), clock, issuer, objects)
    finally:
        await session.close()
        await server.close()
        await store.close()


async def create(env: Env, resource: str, body: dict, ns: str = "default") -> dict:
    status, created = await env.call("POST", f"/api/v1/namespaces/{ns}/{resource}", body)
    assert status == 201, created
    return created


def pod(name: str, sa: str | None = None, node: str | None = None) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if sa:
        spec["serviceAccountName"] = sa
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


async def test_token_request_answers_the_request_with_a_token(env):
    p = await create(env, "pods", pod("web"))
    status, sa = await env.call("GET", f"{NS}/serviceaccounts/default")
    assert status == 200
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": ["vault", DEFAULT_ISSUER],
            "expirationSeconds": 1200,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"},
        },
    }
    status, answer = await env.call("POST", f"{NS}/serviceaccounts/default/token", request)
    assert status == 201, answer
    assert answer["kind"] == "TokenRequest"
    assert answer["apiVersion"] == "authentication.k8s.io/v1"
    assert answer["metadata"]["name"] == "default"
    assert answer["metadata"]["namespace"] == "default"
    assert answer["spec"] == {**request["spec"], "audiences": ["vault", DEFAULT_ISSUER]}
    token = answer["status"]["token"]
    claims = claims_of(token)
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["aud"] == ["vault", DEFAULT_ISSUER]
    assert claims["exp"] - claims["iat"] == 1200
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "serviceaccount": {"name": "default", "uid": sa["metadata"]["uid"]},
        "pod": {"name": "web", "uid": p["metadata"]["uid"]},
    }
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))
    assert answer["status"]["expirationTimestamp"] == expires

    status, user = await env.whoami(token)
    assert status == 200, user
    assert user["name"] == "system:serviceaccount:default:default"
    assert user["uid"] == sa["metadata"]["uid"]
    assert user["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["web"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [p["metadata"]["uid"]]
    assert user["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={claims['jti']}"]
    assert (await env.whoami(ADMIN))[1]["name"] == "kcore-admin"


async def test_defaults_are_an_hour_for_the_api_server(env):
    status, answer = await env.call("POST", f"{NS}/serviceaccounts/default/token", {})
    assert status == 201, answer
    assert answer["spec"] == {"audiences": [DEFAULT_ISSUER], "expirationSeconds": 3600}
    claims = claims_of(answer["status"]["token"])
    assert claims["exp"] - claims["iat"] == 3600
    status, pods = await env.call("GET", f"{NS}/pods", token=answer["status"]["token"])
    assert status == 200 and pods["kind"] == "PodList"


async def test_a_pod_token_names_the_pod_node(env):
    status, node = await env.call("POST", "/api/v1/nodes", {"metadata": {"name": "node-a"}})
    assert status == 201, node
    await create(env, "pods", pod("on-a", node="node-a"))
    await create(env, "pods", pod("on-b", node="node-b"))
    bound = {"kind": "Pod", "apiVersion": "v1", "name": "on-a"}
    token = await env.token(spec={"boundObjectRef": bound})
    assert claims_of(token)["kubernetes.io"]["node"] == {
        "name": "node-a",
        "uid": node["metadata"]["uid"],
    }
    user = (await env.whoami(token))[1]
    assert user["extra"]["authentication.kubernetes.io/node-name"] == ["node-a"]
    token = await env.token(spec={"boundObjectRef": {**bound, "name": "on-b"}})
    assert claims_of(token)["kubernetes.io"]["node"] == {"name": "node-b"}


async def test_expired_token_is_unauthorized(env):
    token = await env.token(spec={"expirationSeconds": 600})
    env.clock.now += 600 + LEEWAY - 1
    assert (await env.whoami(token))[0] == 200
    env.clock.now += 2
    status, body = await env.whoami(token)
    assert status == 401
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


async def test_token_bound_to_a_deleted_pod_is_unauthorized(env):
    await create(env, "pods", pod("short-lived"))
    token = await env.token(spec={"boundObjectRef": {"kind": "Pod", "name": "short-lived"}})
    assert (await env.call("GET", f"{NS}/pods", token=token))[0] == 200
    status, _ = await env.call("DELETE", f"{NS}/pods/short-lived?gracePeriodSeconds=0")
    assert status == 200
    assert (await env.call("GET", f"{NS}/pods", token=token))[0] == 401
    await create(env, "pods", pod("short-lived"))  # a namesake does not revive it
    assert (await env.call("GET", f"{NS}/pods", token=token))[0] == 401


async def test_token_bound_to_a_deleted_secret_is_unauthorized(env):
    await create(env, "secrets", {"metadata": {"name": "s"}})
    token = await env.token(spec={"boundObjectRef": {"kind": "Secret", "name": "s"}})
    assert claims_of(token)["kubernetes.io"]["secret"]["name"] == "s"
    assert (await env.whoami(token))[0] == 200
    assert (await env.call("DELETE", f"{NS}/secrets/s"))[0] == 200
    assert (await env.whoami(token))[0] == 401


async def test_token_of_a_deleted_service_account_is_unauthorized(env):
    await create(env, "serviceaccounts", {"metadata": {"name": "robot"}})
    token = await env.token("robot")
    assert (await env.whoami(token))[1]["name"] == "system:serviceaccount:default:robot"
    assert (await env.call("DELETE", f"{NS}/serviceaccounts/robot"))[0] == 200
    assert (await env.whoami(token))[0] == 401
    await create(env, "serviceaccounts", {"metadata": {"name": "robot"}})
    assert (await env.whoami(token))[0] == 401


async def test_tampered_foreign_and_other_audience_tokens_are_unauthorized(env):
    token = await env.token()
    header, payload, signature = token.split(".")
    claims = claims_of(token)
    claims["kubernetes.io"]["namespace"] = "kube-system"
    claims["sub"] = "system:serviceaccount:kube-system:default"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B")
    flipped += signature[middle + 1 :]
    stranger = TokenIssuer(generate_service_account_key(), clock=env.clock)
    sa = (await env.call("GET", f"{NS}/serviceaccounts/default"))[1]
    foreign = stranger.issue(
        namespace="default", service_account=ObjectRef("default", sa["metadata"]["uid"])
    ).token
    other_audience = await env.token(spec={"audiences": ["vault"]})
    for bad in (
        f"{header}.{forged}.{signature}",
        f"{header}.{payload}.{flipped}",
        foreign,
        other_audience,
        token + "x",
        "not-a-jwt",
    ):
        status, body = await env.call("GET", f"{NS}/pods", token=bad)
        assert (status, body["reason"]) == (401, "Unauthorized"), bad
    assert (await env.call("GET", f"{NS}/pods", token=token))[0] == 200


async def test_token_requests_refused_as_kubernetes_refuses_them(env):
    await create(env, "pods", pod("mine"))
    await create(env, "pods", pod("theirs", sa="builder"))
    path = f"{NS}/serviceaccounts/default/token"

    status, body = await env.call("POST", path, {"spec": {"expirationSeconds": 100}})
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
        "Invalid value: 100: may not specify a duration less than 10 minutes"
    )
    assert body["details"]["causes"][0]["field"] == "spec.expirationSeconds"
    status, body = await env.call("POST", path, {"spec": {"expirationSeconds": 2**32 + 1}})
    assert status == 422 and "larger than 2^32 seconds" in body["message"]

    status, body = await env.call(
        "POST", f"{NS}/serviceaccounts/ghost/token", {"spec": {"audiences": ["x"]}}
    )
    assert (status, body["reason"], body["message"]) == (
        404,
        "NotFound",
        'serviceaccounts "ghost" not found',
    )
    status, body = await env.call(
        "POST", "/api/v1/namespaces/nowhere/serviceaccounts/default/token", {"spec": {}}
    )
    assert status == 404

    def bound(**ref):
        return {"spec": {"boundObjectRef": ref}}

    status, body = await env.call("POST", path, bound(kind="Pod", name="gone"))
    assert (status, body["message"]) == (404, 'pods "gone" not found')
    status, body = await env.call("POST", path, bound(kind="Pod", name="mine", uid="other-uid"))
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"].startswith(
        'Operation cannot be fulfilled on Pod "mine": the UID in the bound object reference '
        "(other-uid) does not match the UID in record."
    )
    status, body = await env.call("POST", path, bound(kind="Pod", name="theirs"))
    assert (status, body["message"]) == (
        400,
        'cannot bind token for serviceaccount "default" to pod running with different '
        "serviceaccount name.",
    )
    status, body = await env.call(
        "POST", path, bound(kind="Deployment", apiVersion="apps/v1", name="x")
    )
    assert (status, body["message"]) == (
        400,
        "cannot bind token to object of type apps/v1, Kind=Deployment",
    )
    status, body = await env.call("POST", path, {"metadata": {"name": "other"}, "spec": {}})
    assert status == 422 and "must match the service account name" in body["message"]
    status, body = await env.call("POST", path, {"kind": "Pod", "apiVersion": "v1"})
    assert status == 400
    status, body = await env.call("GET", path)
    assert status == 405


async def test_token_subresource_needs_authentication(env):
    status, _ = await env.call("POST", f"{NS}/serviceaccounts/default/token", {}, token="")
    assert status == 401


async def test_ensure_namespace_defaults_creates_repairs_and_skips(env):
    objects = env.objects
    await create_namespace(env, "team-a")
    await ensure_namespace_defaults(objects, "team-a", ca_pem=b"CA-1\n")
    cm = (await env.call("GET", f"/api/v1/namespaces/team-a/configmaps/{ROOT_CA_CONFIGMAP}"))[1]
    assert cm["data"] == {"ca.crt": "CA-1\n"}
    assert "kubernetes.io/description" in cm["metadata"]["annotations"]
    assert (await env.call("GET", "/api/v1/namespaces/team-a/serviceaccounts/default"))[0] == 200
    await ensure_namespace_defaults(objects, "team-a", ca_pem=b"CA-2\n")  # a new CA
    cm = (await env.call("GET", f"/api/v1/namespaces/team-a/configmaps/{ROOT_CA_CONFIGMAP}"))[1]
    assert cm["data"] == {"ca.crt": "CA-2\n"}
    await ensure_namespace_defaults(objects, "missing", ca_pem=b"CA")  # nothing to do


async def create_namespace(env: Env, name: str) -> None:
    status, body = await env.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body


# -- the real daemon: kubectl and the Python client ------------------------------------------


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc.stdout


def ca_of(daemon) -> bytes:
    config_doc = yaml.safe_load(daemon.kubeconfig.read_text())
    return base64.b64decode(config_doc["clusters"][0]["cluster"]["certificate-authority-data"])


def as_token(daemon, token: str, *args: str) -> subprocess.CompletedProcess:
    """kubectl with a kubeconfig of its own: the daemon's URL and CA, and ``token``."""
    path = daemon.data_dir / f"token-{hashlib.sha256(token.encode()).hexdigest()[:12]}.kubeconfig"
    write_kubeconfig(path, server=daemon.url, ca_pem=ca_of(daemon), token=token, user="sa")
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(daemon.data_dir)},
    )


def eventually(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_kubectl_create_token_and_use_it(daemon):
    token = ok(daemon.kubectl("create", "token", "default")).strip()
    claims = claims_of(token)
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["aud"] == [DEFAULT_ISSUER] and claims["exp"] - claims["iat"] == 3600
    ok(as_token(daemon, token, "get", "pods"))
    ok(as_token(daemon, token, "create", "configmap", "made-by-sa", "--from-literal=a=b"))
    ok(daemon.kubectl("delete", "configmap", "made-by-sa"))

    short = ok(daemon.kubectl("create", "token", "default", "--duration", "10m")).strip()
    assert claims_of(short)["exp"] - claims_of(short)["iat"] == 600
    too_short = daemon.kubectl("create", "token", "default", "--duration", "1m")
    assert too_short.returncode != 0
    assert "may not specify a duration less than 10 minutes" in too_short.stderr

    vault = ok(daemon.kubectl("create", "token", "default", "--audience", "vault")).strip()
    assert claims_of(vault)["aud"] == ["vault"]
    refused = as_token(daemon, vault, "get", "pods")
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr

    missing = daemon.kubectl("create", "token", "ghost")
    assert missing.returncode != 0 and 'serviceaccounts "ghost" not found' in missing.stderr


def test_kubectl_token_bound_to_a_pod_dies_with_it(daemon):
    ok(daemon.kubectl("run", "holder", "--image=busybox", "--restart=Never"))
    token = ok(
        daemon.kubectl(
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "holder",
        )
    ).strip()
    uid = ok(daemon.kubectl("get", "pod", "holder", "-o", "jsonpath={.metadata.uid}"))
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "holder", "uid": uid}
    ok(as_token(daemon, token, "get", "pods"))
    ok(daemon.kubectl("delete", "pod", "holder", "--timeout=30s"))
    refused = as_token(daemon, token, "get", "pods")
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr


def test_default_service_account_and_root_ca_in_every_namespace(daemon):
    ca = ca_of(daemon).decode()
    for ns in ("default", "kube-system"):
        ok(daemon.kubectl("get", "serviceaccount", "default", "-n", ns))
        cm = json.loads(ok(daemon.kubectl("get", "cm", ROOT_CA_CONFIGMAP, "-n", ns, "-o", "json")))
        assert cm["data"] == {"ca.crt": ca}

    ok(daemon.kubectl("create", "namespace", "fresh"))

    def has_defaults():
        ok(daemon.kubectl("get", "serviceaccount", "default", "-n", "fresh"))
        out = ok(daemon.kubectl("get", "cm", ROOT_CA_CONFIGMAP, "-n", "fresh", "-o", "json"))
        assert json.loads(out)["data"] == {"ca.crt": ca}

    eventually(has_defaults)
    # Deleted or changed, they come back.
    ok(daemon.kubectl("delete", "serviceaccount", "default", "-n", "fresh"))
    ok(daemon.kubectl("delete", "cm", ROOT_CA_CONFIGMAP, "-n", "fresh"))
    eventually(has_defaults)
    patch = '{"data":{"ca.crt":"not a CA"}}'
    ok(daemon.kubectl("patch", "cm", ROOT_CA_CONFIGMAP, "-n", "fresh", "-p", patch))
    eventually(has_defaults)
    token = ok(daemon.kubectl("create", "token", "default", "-n", "fresh")).strip()
    ok(as_token(daemon, token, "get", "pods", "-n", "fresh"))


def test_python_client_creates_a_token(daemon):
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(daemon.kubeconfig)))
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[DEFAULT_ISSUER], expiration_seconds=900)
    )
    answer = api.create_namespaced_service_account_token("default", "default", body)
    assert answer.spec.audiences == [DEFAULT_ISSUER]
    assert answer.spec.expiration_seconds == 900
    assert answer.status.expiration_timestamp.timestamp() == claims_of(answer.status.token)["exp"]
    configuration = client.Configuration()
    configuration.host = daemon.url
    configuration.ssl_ca_cert = str(daemon.data_dir / "ca-for-python.crt")
    Path(configuration.ssl_ca_cert).write_bytes(ca_of(daemon))
    configuration.api_key = {"authorization": f"Bearer {answer.status.token}"}
    as_sa = client.CoreV1Api(client.ApiClient(configuration))
    assert as_sa.list_namespaced_pod("default").kind == "PodList"


def test_tokens_survive_a_daemon_restart(tmp_path):
    first = start_daemon(tmp_path)
    try:
        token = ok(first.kubectl("create", "token", "default")).strip()
    finally:
        stop_daemon(first)
    key = (tmp_path / "pki" / "sa.key").stat()
    assert key.st_mode & 0o777 == 0o600
    second = start_daemon(tmp_path)
    try:
        ok(as_token(second, token, "get", "serviceaccounts"))
    finally:
        stop_daemon(second)
