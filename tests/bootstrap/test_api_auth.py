"""The API server's side of joining: bootstrap tokens (authentication, expiry, what they
may do), anonymous cluster-info, client certificates, and the CertificateSigningRequest
kind (requester, approval and status subresources, validation, table)."""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kcore.apiserver.bootstrap_auth import bootstrap_token_secret
from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.pki import ensure_pki
from kcore.apiserver.server import USER, APIServer
from kcore.daemon import bootstrap
from kcore.plugins.controllers.csr import CertificateAuthority, sign_request
from kcore.plugins.store_sqlite.backend import SqliteStore

from .helpers import condition_types, csr, request_pem

ADMIN = "admin-token"
TOKEN = "abcdef.0123456789abcdef"
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@dataclass
class Env:
    session: aiohttp.ClientSession
    base: str
    objects: ObjectStore

    async def call(self, method: str, path: str, body=None, *, token: str | None = ADMIN,
                   headers: dict | None = None):  # fmt: skip
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, json=body, headers=headers
        ) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def add_token(self, token: str = TOKEN, **kwargs) -> None:
        kwargs.setdefault("expires", datetime.now(UTC) + timedelta(hours=1))
        secret = bootstrap_token_secret(token, **kwargs)
        status, body = await self.call("POST", "/api/v1/namespaces/kube-system/secrets", secret)
        assert status == 201, body


async def whoami(request: web.Request) -> web.Response:
    user = request[USER]
    return web.json_response({"name": user.name, "groups": list(user.groups)})


@pytest.fixture
async def env():
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    app = APIServer(objects, token=ADMIN).app()
    app.router.add_get("/test/whoami", whoami)
    server = TestServer(app)
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        yield Env(session, str(server.make_url("")).rstrip("/"), objects)
    finally:
        await session.close()
        await server.close()
        await store.close()


# -- bootstrap tokens ---------------------------------------------------------------------


async def test_a_bootstrap_token_authenticates_its_bootstrap_user(env):
    await env.add_token()
    status, me = await env.call("GET", "/test/whoami", token=TOKEN)
    assert status == 200
    assert me["name"] == "system:bootstrap:abcdef"
    assert me["groups"][:2] == [
        "system:bootstrappers",
        "system:bootstrappers:kubeadm:default-node-token",
    ]


@pytest.mark.parametrize(
    "why",
    ["unknown", "wrong secret", "expired", "no authentication usage", "being deleted"],
)
async def test_bootstrap_tokens_that_do_not_authenticate(env, why):
    if why == "wrong secret":
        await env.add_token("abcdef.0123456789abcdee")
    elif why == "expired":
        await env.add_token(expires=datetime.now(UTC) - timedelta(seconds=1))
    elif why == "no authentication usage":
        await env.add_token(usages=("signing",))
    elif why == "being deleted":
        await env.add_token()
        secret = await env.objects.get(_secrets(), "kube-system", "bootstrap-token-abcdef")
        secret["metadata"]["finalizers"] = ["test/keep"]
        status, _ = await env.call(
            "PUT", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef", secret
        )
        assert status == 200
        status, _ = await env.call(
            "DELETE", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef"
        )
        assert status == 200
    status, body = await env.call("GET", CSRS, token=TOKEN)
    assert status == 401 and body["reason"] == "Unauthorized"


def _secrets():
    from kcore.api.registry import by_resource

    return by_resource("", "v1", "secrets")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/namespaces/kube-system/secrets"),
        ("POST", "/api/v1/namespaces/default/pods"),
        ("DELETE", f"{CSRS}/x"),
        ("PUT", f"{CSRS}/x/approval"),
        ("PUT", f"{CSRS}/x/status"),
    ],
)
async def test_a_bootstrap_token_may_do_nothing_but_request_certificates(env, method, path):
    await env.add_token()
    status, body = await env.call(method, path, {"metadata": {"name": "x"}}, token=TOKEN)
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert 'User "system:bootstrap:abcdef" cannot' in body["message"]


async def test_a_bootstrap_token_creates_gets_lists_and_watches_csrs(env):
    await env.add_token()
    status, created = await env.call("POST", CSRS, csr("node-csr-1"), token=TOKEN)
    assert status == 201, created
    spec = created["spec"]
    assert spec["username"] == "system:bootstrap:abcdef"
    assert "system:bootstrappers" in spec["groups"]
    assert (await env.call("GET", f"{CSRS}/node-csr-1", token=TOKEN))[0] == 200
    assert (await env.call("GET", CSRS, token=TOKEN))[0] == 200
    status, _ = await env.call("GET", f"{CSRS}?watch=true&timeoutSeconds=1", token=TOKEN)
    assert status == 200
    assert (await env.call("GET", "/apis", token=TOKEN))[0] == 200


async def test_the_requester_is_recorded_whatever_the_body_claims(env):
    body = csr("c1", username="system:admin", groups=["system:masters"])
    status, created = await env.call("POST", CSRS, body)
    assert status == 201
    assert created["spec"]["username"] == "kcore-admin"
    assert "system:masters" in created["spec"]["groups"]  # the admin's own groups


async def test_cluster_info_is_readable_anonymously_and_nothing_else(env):
    cm = {"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "x"}}
    status, _ = await env.call("POST", "/api/v1/namespaces/kube-public/configmaps", cm)
    assert status == 201
    status, body = await env.call(
        "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", token=None
    )
    assert status == 200 and body["data"] == {"kubeconfig": "x"}
    for path in ("/api/v1/namespaces/kube-public/configmaps", "/api/v1/nodes", CSRS):
        assert (await env.call("GET", path, token=None))[0] == 401
    status, _ = await env.call(
        "PUT", "/api/v1/namespaces/kube-public/configmaps/cluster-info", cm, token=None
    )
    assert status == 401


# -- the CertificateSigningRequest kind ---------------------------------------------------


async def test_approval_subresource_changes_only_the_conditions(env):
    await env.call("POST", CSRS, csr("c1"))
    status, obj = await env.call("GET", f"{CSRS}/c1")
    obj["spec"]["usages"] = ["client auth"]
    obj["status"] = {
        "conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}],
        "certificate": base64.b64encode(b"nope").decode(),
    }
    status, approved = await env.call("PUT", f"{CSRS}/c1/approval", obj)
    assert status == 200, approved
    assert condition_types(approved) == ["Approved"]
    assert approved["status"]["conditions"][0]["lastUpdateTime"]
    assert "certificate" not in approved["status"]
    assert approved["spec"]["usages"] == ["digital signature", "client auth"]
    # Approved and Denied exclude each other; an approval cannot be taken back
    approved["status"]["conditions"].append({"type": "Denied", "status": "True"})
    status, body = await env.call("PUT", f"{CSRS}/c1/approval", approved)
    assert status == 422 and "mutually exclusive" in body["message"]
    approved["status"]["conditions"] = []
    status, body = await env.call("PUT", f"{CSRS}/c1/approval", approved)
    assert status == 422 and "may not remove a condition of type 'Approved'" in body["message"]


async def test_status_sets_the_certificate_only_once_approved_and_never_changes_it(env, tmp_path):
    await env.call("POST", CSRS, csr("c1"))
    status, obj = await env.call("GET", f"{CSRS}/c1")
    cert = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()
    obj["status"] = {"certificate": cert}
    status, body = await env.call("PUT", f"{CSRS}/c1/status", obj)
    assert status == 422 and "requires an Approved condition" in body["message"]
    obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    status, obj = await env.call("PUT", f"{CSRS}/c1/approval", obj)
    # a status write cannot approve or un-approve, but sets the certificate
    obj["status"] = {"certificate": cert, "conditions": []}
    status, issued = await env.call("PUT", f"{CSRS}/c1/status", obj)
    assert status == 200, issued
    assert issued["status"]["certificate"] == cert
    assert condition_types(issued) == ["Approved"]
    issued["status"]["certificate"] = base64.b64encode(b"other").decode()
    status, body = await env.call("PUT", f"{CSRS}/c1/status", issued)
    assert status == 422 and "may not modify existing certificate" in body["message"]
    # the main resource keeps spec and status
    issued["spec"]["signerName"] = "example.com/other"
    issued["metadata"]["labels"] = {"a": "b"}
    status, updated = await env.call("PUT", f"{CSRS}/c1", issued)
    assert status == 200
    assert updated["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert updated["status"]["certificate"] == cert
    assert updated["metadata"]["labels"] == {"a": "b"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"request": base64.b64encode(b"not pem").decode()}, "spec.request"),
        ({"request": "%%%"}, "spec.request"),
        ({"signerName": ""}, "spec.signerName"),
        ({"signerName": "no-slash"}, "spec.signerName"),
        ({"usages": []}, "spec.usages"),
        ({"usages": ["client auth", "flying"]}, "spec.usages[1]"),
        ({"expirationSeconds": 60}, "spec.expirationSeconds"),
    ],
)
async def test_invalid_requests_name_the_field(env, change, field):
    body = csr("bad")
    body["spec"].update(change)
    status, answer = await env.call("POST", CSRS, body)
    assert status == 422, answer
    assert field in [c["field"] for c in answer["details"]["causes"]]


async def test_kubectl_table_of_csrs(env):
    await env.call("POST", CSRS, csr("c1", expirationSeconds=3600))
    status, table = await env.call(
        "GET", CSRS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    )
    assert status == 200
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    cells = table["rows"][0]["cells"]
    assert cells[0] == "c1" and cells[2] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert cells[3] == "kcore-admin" and cells[4] == "60m" and cells[5] == "Pending"


# -- client certificates over TLS ---------------------------------------------------------


async def test_client_certificates_signed_by_the_ca_authenticate_their_subject(tmp_path):
    pki = ensure_pki(tmp_path, hosts=["127.0.0.1"])
    ensure_pki(tmp_path / "other", hosts=["127.0.0.1"])  # another cluster's CA
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    app = APIServer(objects, token=ADMIN).app()
    app.router.add_get("/test/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.ssl_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    def client_cert(ca_dir, cn, orgs):
        ca = CertificateAuthority(ca_dir / "pki" / "ca.crt", ca_dir / "pki" / "ca.key")
        ca_cert, ca_key = ca.load()
        key = ec.generate_private_key(ec.SECP256R1())
        req = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.load_pem_x509_csr(request_pem(cn, orgs)).subject)
            .sign(key, hashes.SHA256())
        )
        cert = sign_request(req, ["digital signature", "client auth"], ca_cert, ca_key)
        (tmp_path / f"{cn}.crt").write_bytes(cert)
        (tmp_path / f"{cn}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(tmp_path / f"{cn}.crt", tmp_path / f"{cn}.key")
        return ctx

    try:
        url = f"https://127.0.0.1:{port}/test/whoami"
        good = client_cert(tmp_path, "system:node:n1", ("system:nodes",))
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=good) as resp:
                assert resp.status == 200
                assert await resp.json() == {
                    "name": "system:node:n1",
                    "groups": ["system:nodes", "system:authenticated"],
                }
            plain = ssl.create_default_context(cafile=str(pki.ca_cert))
            async with session.get(url, ssl=plain) as resp:
                assert resp.status == 401
            async with session.get(
                url, ssl=plain, headers={"Authorization": f"Bearer {ADMIN}"}
            ) as resp:
                assert resp.status == 200
            foreign = client_cert(tmp_path / "other", "system:node:evil", ("system:nodes",))
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url, ssl=foreign) as resp:
                    assert resp.status != 200
                    await resp.read()
    finally:
        await runner.cleanup()
        await store.close()
