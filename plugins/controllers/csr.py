"""CertificateSigningRequests: approve the ones nodes make to join, and sign approved
client certificates with the cluster CA.

Two controllers, as Kubernetes' ``csrapproving`` and ``csrsigning``:

:class:`CSRApprovingController` (``csrapproving``)
    Approves (``Approved``, reason ``AutoApproved``) a pending request for signer
    ``kubernetes.io/kube-apiserver-client-kubelet`` when it is a well-formed node client
    request (subject ``CN=system:node:<name>``, ``O=system:nodes``, no alternative names,
    usages ``digital signature`` and ``client auth`` (``key encipherment`` allowed)) and it
    comes from a bootstrap token (group ``system:bootstrappers``) or from that very node
    renewing its certificate. Anything else stays pending for a human
    (``kubectl certificate approve|deny``).

:class:`CSRSigningController` (``csrsigning``)
    Signs approved requests for ``kubernetes.io/kube-apiserver-client-kubelet`` and
    ``kubernetes.io/kube-apiserver-client`` with the CA under ``<data-dir>/pki``
    (``ca.crt``, ``ca.key``: the control plane's), valid for ``spec.expirationSeconds``
    (at most a year, never past the CA), backdated five minutes. A request that breaks
    its signer's rules gets the ``Failed`` condition (``SignerValidationFailure``) instead.
    Without a CA (a controller manager off the control plane) it signs nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kcore.api.certificates_v1 import (
    APPROVED,
    DENIED,
    FAILED,
    KUBE_APISERVER_CLIENT,
    KUBE_APISERVER_CLIENT_KUBELET,
    has_condition,
    request_pem,
)
from kcore.api.registry import by_kind
from kcore.controllers import Reconciler
from kcore.errors import NotFound
from kcore.pki import issue_certificate
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.csr")

CSR = ("certificates.k8s.io/v1", "CertificateSigningRequest")
NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
SIGNING_DURATION = dt.timedelta(days=365)
"""The longest certificate the signer issues (``--cluster-signing-duration``)."""
BACKDATE = dt.timedelta(minutes=5)

_KUBELET_CLIENT_REQUIRED = {"digital signature", "client auth"}
_KUBELET_CLIENT_ALLOWED = {"digital signature", "key encipherment", "client auth"}
_CLIENT_ALLOWED = {"digital signature", "key encipherment", "client auth"}


class SignerError(ValueError):
    """A request its signer refuses; the message goes into the ``Failed`` condition."""


def _settled(obj: dict[str, Any]) -> bool:
    return any(has_condition(obj, t) for t in (APPROVED, DENIED, FAILED))


def load_request(obj: dict[str, Any]) -> x509.CertificateSigningRequest:
    pem = request_pem(obj)
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise SignerError(f"unable to parse csr: {exc}") from None
    if not csr.is_signature_valid:
        raise SignerError("the request's signature does not match its public key")
    return csr


def _names(csr: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in csr.subject.get_attributes_for_oid(oid)]


def _has_alternative_names(csr: x509.CertificateSigningRequest) -> bool:
    try:
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return True


def check_node_client(obj: dict[str, Any], csr: x509.CertificateSigningRequest) -> str:
    """The node name of a valid node client request; :class:`SignerError` otherwise."""
    common = _names(csr, NameOID.COMMON_NAME)
    orgs = _names(csr, NameOID.ORGANIZATION_NAME)
    if orgs != [NODES_GROUP]:
        raise SignerError(f"subject organization is not {NODES_GROUP} (got {orgs})")
    if len(common) != 1 or not common[0].startswith(NODE_USER_PREFIX):
        raise SignerError(f'subject common name does not begin with "{NODE_USER_PREFIX}"')
    node = common[0][len(NODE_USER_PREFIX) :]
    if not node:
        raise SignerError("subject common name names no node")
    if _has_alternative_names(csr):
        raise SignerError("a node client certificate may not carry alternative names")
    usages = set((obj.get("spec") or {}).get("usages") or [])
    if not _KUBELET_CLIENT_REQUIRED <= usages or not usages <= _KUBELET_CLIENT_ALLOWED:
        raise SignerError(
            "usages must be 'digital signature' and 'client auth' (and may add "
            f"'key encipherment'), got {sorted(usages)}"
        )
    return node


def _check_client(obj: dict[str, Any], csr: x509.CertificateSigningRequest) -> None:
    usages = set((obj.get("spec") or {}).get("usages") or [])
    if "client auth" not in usages or not usages <= _CLIENT_ALLOWED:
        raise SignerError(f"invalid usages for a client certificate: {sorted(usages)}")
    if not _names(csr, NameOID.COMMON_NAME):
        raise SignerError("a client certificate needs a subject common name")


class CSRApprovingController(Reconciler):
    """Auto-approves node client requests from bootstrap tokens (see the module docstring)."""

    name = "csrapproving"
    kinds = [CSR]

    conformance = scenarios("csr_approving_scenarios")

    async def reconcile(self, key: str) -> float | None:
        obj = self.cached(key)
        if obj is None or _settled(obj):
            return None
        spec = obj.get("spec") or {}
        if spec.get("signerName") != KUBE_APISERVER_CLIENT_KUBELET:
            return None
        try:
            node = check_node_client(obj, load_request(obj))
        except SignerError as exc:
            log.info("not auto-approving", csr=key, why=str(exc))
            return None
        groups = spec.get("groups") or []
        if BOOTSTRAPPERS_GROUP in groups:
            message = "Auto approving kubelet client certificate after SubjectAccessReview."
        elif NODES_GROUP in groups and spec.get("username") == NODE_USER_PREFIX + node:
            message = "Auto approving self kubelet client certificate after SubjectAccessReview."
        else:
            return None
        approved = dict(obj)
        approved["status"] = {
            **(obj.get("status") or {}),
            "conditions": [
                *((obj.get("status") or {}).get("conditions") or []),
                {"type": APPROVED, "status": "True", "reason": "AutoApproved", "message": message},
            ],
        }
        info = by_kind(*CSR)
        assert info is not None
        try:
            await self.api.transport.update(
                info, None, key, approved, subresource="approval", dry_run=False
            )
        except NotFound:
            return None
        log.info("approved node client certificate request", csr=key, node=node)
        return None


class CertificateAuthority:
    """The cluster CA, read from ``ca.crt``/``ca.key`` (again when the files change)."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._loaded: tuple[float, x509.Certificate, Any] | None = None

    def load(self) -> tuple[x509.Certificate, Any] | None:
        try:
            stamp = max(self.cert_path.stat().st_mtime, self.key_path.stat().st_mtime)
        except OSError:
            return None
        if self._loaded is None or self._loaded[0] != stamp:
            cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            self._loaded = (stamp, cert, key)
        return self._loaded[1], self._loaded[2]


def sign_request(
    csr: x509.CertificateSigningRequest,
    usages: list[str],
    ca_cert: x509.Certificate,
    ca_key: Any,
    *,
    duration: dt.timedelta = SIGNING_DURATION,
    now: dt.datetime | None = None,
) -> bytes:
    """A certificate for ``csr``'s subject and key, signed by the CA, as PEM."""
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    cert = issue_certificate(
        ca_cert,
        ca_key,
        csr.subject,
        csr.public_key(),
        not_before=now - BACKDATE,
        not_after=now + min(duration, SIGNING_DURATION),
        usages=usages,
        sans=sans,
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class CSRSigningController(Reconciler):
    """Signs approved client certificate requests with the cluster CA."""

    name = "csrsigning"
    kinds = [CSR]
    signers = (KUBE_APISERVER_CLIENT_KUBELET, KUBE_APISERVER_CLIENT)

    conformance = scenarios("csr_signing_scenarios")

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca
        self._warned = False

    async def reconcile(self, key: str) -> float | None:
        obj = self.cached(key)
        if obj is None:
            return None
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        if (
            spec.get("signerName") not in self.signers
            or not has_condition(obj, APPROVED)
            or has_condition(obj, DENIED)
            or has_condition(obj, FAILED)
            or status.get("certificate")
        ):
            return None
        loaded = self.ca.load()
        if loaded is None:
            if not self._warned:
                log.warning("no cluster CA here: not signing", ca=str(self.ca.cert_path))
                self._warned = True
            return None
        ca_cert, ca_key = loaded
        try:
            csr = load_request(obj)
            if spec.get("signerName") == KUBE_APISERVER_CLIENT_KUBELET:
                check_node_client(obj, csr)
            else:
                _check_client(obj, csr)
        except SignerError as exc:
            await self._fail(obj, str(exc))
            return None
        seconds = spec.get("expirationSeconds")
        duration = dt.timedelta(seconds=seconds) if isinstance(seconds, int) else SIGNING_DURATION
        pem = sign_request(csr, list(spec.get("usages") or []), ca_cert, ca_key, duration=duration)
        signed = dict(obj)
        signed["status"] = {**status, "certificate": base64.b64encode(pem).decode("ascii")}
        try:
            await self.api.update_status(signed)
        except NotFound:
            return None
        log.info("signed certificate", csr=key, signer=spec.get("signerName"))
        return None

    async def _fail(self, obj: dict[str, Any], message: str) -> None:
        status = obj.get("status") or {}
        failed = dict(obj)
        failed["status"] = {
            **status,
            "conditions": [
                *(status.get("conditions") or []),
                {
                    "type": FAILED,
                    "status": "True",
                    "reason": "SignerValidationFailure",
                    "message": message,
                },
            ],
        }
        log.info("refused to sign", csr=obj["metadata"]["name"], why=message)
        try:
            await self.api.update_status(failed)
        except NotFound:
            pass


def controllers(settings: Any) -> list[Reconciler]:
    pki = Path(getattr(settings, "data_dir", ".")) / "pki"
    return [
        CSRApprovingController(),
        CSRSigningController(CertificateAuthority(pki / "ca.crt", pki / "ca.key")),
    ]
