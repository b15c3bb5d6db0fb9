"""Certificate requests and waiting for the bootstrap tests."""

from __future__ import annotations

import base64

from controllers.helpers import eventually as _eventually
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


async def eventually(check, timeout: float = 10.0):
    """Await ``check()`` until it returns something truthy (controllers.helpers.eventually
    with the patience of the bootstrap tests)."""
    return await _eventually(check, timeout, interval=0.05)


KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"


def request_pem(cn: str, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr(
    name: str,
    cn: str = "system:node:n1",
    orgs: tuple[str, ...] = ("system:nodes",),
    *,
    signer: str = KUBELET_SIGNER,
    usages: tuple[str, ...] = ("digital signature", "client auth"),
    dns: tuple[str, ...] = (),
    **spec: object,
) -> dict:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(request_pem(cn, orgs, dns)).decode(),
            "signerName": signer,
            "usages": list(usages),
            **spec,
        },
    }


def condition_types(obj: dict) -> list[str]:
    return [c["type"] for c in (obj.get("status") or {}).get("conditions") or []]
