"""The csrapproving and csrsigning controllers on an in-process API: node client requests
from bootstrap tokens are approved and signed by the cluster CA; others wait or fail."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kcore.apiserver.pki import ensure_pki
from kcore.plugins.controllers.csr import controllers
from kcore.settings import Settings

from .conftest import running
from .helpers import CLIENT_SIGNER, condition_types, csr, eventually

BOOTSTRAPPER = {
    "username": "system:bootstrap:abcdef",
    "groups": ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"],
}
CSR = ("certificates.k8s.io/v1", "CertificateSigningRequest")


@pytest.fixture
def settings(tmp_path):
    ensure_pki(tmp_path, hosts=[])
    return Settings(data_dir=tmp_path)


async def issued(api, name):
    async def check():
        obj = await api.get(*CSR, name)
        return obj if (obj.get("status") or {}).get("certificate") else None

    return await eventually(check)


async def test_a_bootstrappers_node_request_is_approved_and_signed_by_the_ca(api, settings):
    async with running(api, *controllers(settings)):
        await api.create(csr("node-csr-a", "system:node:n1", **BOOTSTRAPPER))
        obj = await issued(api, "node-csr-a")
    approved = obj["status"]["conditions"][0]
    assert (approved["type"], approved["reason"]) == ("Approved", "AutoApproved")
    cert = x509.load_pem_x509_certificate(base64.b64decode(obj["status"]["certificate"]))
    ca = x509.load_pem_x509_certificate((settings.data_dir / "pki" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:nodes"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=364) < lifetime <= dt.timedelta(days=365)


async def test_requested_duration_is_honoured(api, settings):
    async with running(api, *controllers(settings)):
        await api.create(csr("short", "system:node:n1", expirationSeconds=3600, **BOOTSTRAPPER))
        obj = await issued(api, "short")
    cert = x509.load_pem_x509_certificate(base64.b64decode(obj["status"]["certificate"]))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(minutes=65)


@pytest.mark.parametrize(
    ("name", "request_kwargs"),
    [
        ("not-a-bootstrapper", {"username": "alice", "groups": ["devs"]}),
        ("not-a-node", {"cn": "alice", **BOOTSTRAPPER}),
        ("wrong-org", {"orgs": ("devs",), **BOOTSTRAPPER}),
        ("alt-names", {"dns": ("evil.example",), **BOOTSTRAPPER}),
        ("server-usage", {"usages": ("digital signature", "server auth"), **BOOTSTRAPPER}),
        (
            "other-node",
            {"cn": "system:node:n2", "username": "system:node:n1", "groups": ["system:nodes"]},
        ),
    ],
)
async def test_other_requests_stay_pending(api, settings, name, request_kwargs):
    async with running(api, *controllers(settings)) as manager:
        await api.create(csr(name, **request_kwargs))
        await eventually(lambda: _reconciled(manager, "csrapproving"), timeout=10)
        obj = await api.get(*CSR, name)
    assert condition_types(obj) == []
    assert "certificate" not in obj["status"]


async def _reconciled(manager, name, times: int = 1):
    runner = next((r for r in manager.runners.values() if r.reconciler.name == name), None)
    return runner is not None and runner.stats.reconciles >= times


async def test_a_node_renewing_its_own_certificate_is_approved(api, settings):
    async with running(api, *controllers(settings)):
        await api.create(
            csr("renew", "system:node:n1", username="system:node:n1", groups=["system:nodes"])
        )
        obj = await issued(api, "renew")
    assert condition_types(obj) == ["Approved"]


async def test_a_human_approved_client_request_is_signed_and_a_bad_one_fails(api, settings):
    async with running(api, *controllers(settings)):
        for name, usages in (("alice", ("client auth",)), ("bad", ("server auth",))):
            await api.create(csr(name, "alice", ("devs",), signer=CLIENT_SIGNER, usages=usages))
            obj = await api.get(*CSR, name)
            obj["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
            info = api.resource(*CSR)
            await api.transport.update(info, None, name, obj, subresource="approval", dry_run=False)
        await issued(api, "alice")

        async def failed():
            obj = await api.get(*CSR, "bad")
            return "Failed" in condition_types(obj) and obj

        obj = await eventually(failed)
    reason = obj["status"]["conditions"][-1]
    assert reason["reason"] == "SignerValidationFailure"
    assert "invalid usages" in reason["message"]
    assert "certificate" not in obj["status"]


async def test_without_a_ca_nothing_is_signed(api, tmp_path):
    async with running(api, *controllers(Settings(data_dir=tmp_path))) as manager:
        await api.create(csr("node-csr-a", "system:node:n1", **BOOTSTRAPPER))

        async def approved():
            obj = await api.get(*CSR, "node-csr-a")
            return condition_types(obj) == ["Approved"]

        await eventually(approved)
        await eventually(lambda: _reconciled(manager, "csrsigning", times=2))
        obj = await api.get(*CSR, "node-csr-a")
    assert "certificate" not in obj["status"]
