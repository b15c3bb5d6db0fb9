"""certificates.k8s.io/v1: CertificateSigningRequest, how a node (or anyone) asks the
cluster's CA for a client certificate.

A client creates the request (a PEM ``CERTIFICATE REQUEST``, base64 in ``spec.request``);
the API server records who asked (``spec.username``, ``groups``, ``uid``, ``extra``); an
approver adds the ``Approved`` (or ``Denied``) condition through the ``approval``
subresource; the signer named by ``spec.signerName`` puts the certificate in
``status.certificate`` through the ``status`` subresource.

Besides the types, this module holds the rules the API server applies to the kind, as
Kubernetes' CSR registry strategy does: what a create records (:func:`with_requester`),
what each kind of write may change (:func:`merge_subresource`), and validation
(:func:`validate_csr`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from kcore.api.meta import K8sStruct, Time, TypedObject, normalize_times
from kcore.errors import FieldError, Invalid

if TYPE_CHECKING:
    from kcore.api.validation import ErrorList

KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN = "kubernetes.io/legacy-unknown"

APPROVED = "Approved"
DENIED = "Denied"
FAILED = "Failed"

KEY_USAGES = (
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
)
"""Every value ``spec.usages`` may hold (Kubernetes' ``KeyUsage`` constants)."""

MIN_EXPIRATION_SECONDS = 600
_SIGNER_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


class CertificateSigningRequestSpec(K8sStruct):
    request: str | None = None
    """The PEM ``CERTIFICATE REQUEST``, base64-encoded (a ``[]byte`` on the wire)."""
    signer_name: str | None = None
    expiration_seconds: int | None = None
    usages: list[str] = []
    username: str | None = None
    uid: str | None = None
    groups: list[str] = []
    extra: dict[str, list[str]] = {}


class CertificateSigningRequestCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    last_update_time: Time | None = None
    last_transition_time: Time | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_update_time", "last_transition_time")


class CertificateSigningRequestStatus(K8sStruct):
    conditions: list[CertificateSigningRequestCondition] = []
    certificate: str | None = None
    """The issued certificate chain, PEM, base64-encoded."""


class CertificateSigningRequest(TypedObject):
    API_VERSION: ClassVar[str] = "certificates.k8s.io/v1"
    KIND: ClassVar[str] = "CertificateSigningRequest"

    spec: CertificateSigningRequestSpec = msgspec.field(
        default_factory=CertificateSigningRequestSpec
    )
    status: CertificateSigningRequestStatus = msgspec.field(
        default_factory=CertificateSigningRequestStatus
    )


# --- helpers on plain objects ------------------------------------------------------------


def conditions_of(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in ((obj.get("status") or {}).get("conditions") or []) if isinstance(c, dict)]


def has_condition(obj: Mapping[str, Any], type_: str) -> bool:
    """Whether ``obj`` carries a condition of ``type_`` (status True or unset, as
    Kubernetes' helpers count it)."""
    return any(
        c.get("type") == type_ and c.get("status") in (None, "", "True") for c in conditions_of(obj)
    )


def request_pem(obj: Mapping[str, Any]) -> bytes:
    """The PEM bytes of ``spec.request`` (empty when missing or not base64)."""
    raw = (obj.get("spec") or {}).get("request") or ""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- API server strategy -----------------------------------------------------------------


def with_requester(
    body: Mapping[str, Any],
    *,
    username: str,
    uid: str = "",
    groups: tuple[str, ...] | list[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``body`` with ``spec.username``/``uid``/``groups``/``extra`` set to the requesting
    user's and the status cleared: a client cannot claim to be someone else."""
    out = copy.deepcopy(dict(body))
    spec = out.get("spec")
    if not isinstance(spec, dict):
        spec = out["spec"] = {}
    spec["username"] = username
    spec["groups"] = list(groups)
    if uid:
        spec["uid"] = uid
    else:
        spec.pop("uid", None)
    if extra:
        spec["extra"] = {k: list(v) for k, v in extra.items()}
    else:
        spec.pop("extra", None)
    out.pop("status", None)
    return out


def _invalid(name: str, causes: list[FieldError]) -> Invalid:
    detail = "; ".join(f"{c.field}: {c.message}" for c in causes)
    return Invalid(
        f'CertificateSigningRequest.certificates.k8s.io "{name}" is invalid: {detail}',
        causes=causes,
    )


def merge_subresource(old: dict[str, Any], new: dict[str, Any], subresource: str) -> dict[str, Any]:
    """What a write of ``approval`` or ``status`` makes of the stored ``old``.

    ``approval`` changes only the conditions, and may not take away an ``Approved``,
    ``Denied`` or ``Failed`` condition once given; ``status`` changes the certificate and
    the other conditions, but not the approval (``Approved``/``Denied`` stay as they
    were). A certificate may only be set on an approved request and never changed once
    issued. Conditions get ``lastUpdateTime``/``lastTransitionTime`` when they have none.
    """
    name = (old.get("metadata") or {}).get("name", "")
    merged = copy.deepcopy(old)
    merged["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get(
        "resourceVersion", old["metadata"]["resourceVersion"]
    )
    old_status = old.get("status") or {}
    new_status = new.get("status") or {}
    if not isinstance(new_status, dict):
        raise _invalid(name, [FieldError("status", "must be an object")])
    new_conditions = [c for c in new_status.get("conditions") or [] if isinstance(c, dict)]
    causes: list[FieldError] = []
    if subresource == "approval":
        kept = {c.get("type") for c in new_conditions}
        for gone in (APPROVED, DENIED, FAILED):
            if has_condition(old, gone) and gone not in kept:
                causes.append(
                    FieldError(
                        "status.conditions",
                        f"updates may not remove a condition of type {gone!r}",
                        reason="FieldValueForbidden",
                    )
                )
        conditions = new_conditions
        certificate = old_status.get("certificate")
    else:
        approval = [c for c in conditions_of(old) if c.get("type") in (APPROVED, DENIED)]
        conditions = approval + [
            c for c in new_conditions if c.get("type") not in (APPROVED, DENIED)
        ]
        certificate = new_status.get("certificate")
        if old_status.get("certificate") and certificate != old_status.get("certificate"):
            causes.append(
                FieldError(
                    "status.certificate",
                    "updates may not modify existing certificate content",
                    reason="FieldValueForbidden",
                )
            )
        elif certificate and not has_condition(old, APPROVED):
            causes.append(
                FieldError(
                    "status.certificate",
                    "certificate issuance requires an Approved condition",
                    reason="FieldValueForbidden",
                )
            )
        elif certificate and (has_condition(old, DENIED) or has_condition(old, FAILED)):
            causes.append(
                FieldError(
                    "status.certificate",
                    "certificate issuance is not allowed on a denied or failed request",
                    reason="FieldValueForbidden",
                )
            )
    if causes:
        raise _invalid(name, causes)
    stamp = _stamp()
    previous = {c.get("type"): c for c in conditions_of(old)}
    for c in conditions:
        c.setdefault("status", "True")
        before = previous.get(c.get("type"))
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = stamp
        if not c.get("lastTransitionTime"):
            same = before is not None and before.get("status") == c.get("status")
            c["lastTransitionTime"] = (before or {}).get("lastTransitionTime") if same else stamp
            if not c["lastTransitionTime"]:
                c["lastTransitionTime"] = stamp
    status: dict[str, Any] = {}
    if conditions:
        status["conditions"] = conditions
    if certificate:
        status["certificate"] = certificate
    merged["status"] = status
    return merged


def validate_csr(obj: CertificateSigningRequest, errs: ErrorList) -> None:
    """Kubernetes' create and update checks of a CertificateSigningRequest."""
    from cryptography import x509

    spec = obj.spec
    if not spec.request:
        errs.required("spec.request", "")
    else:
        pem = request_pem({"spec": {"request": spec.request}})
        if not pem:
            errs.invalid("spec.request", "<bytes>", "must be base64-encoded PEM")
        else:
            try:
                x509.load_pem_x509_csr(pem)
            except ValueError:
                errs.invalid(
                    "spec.request", "<bytes>", "PEM block type must be CERTIFICATE REQUEST"
                )
    if not spec.signer_name:
        errs.required("spec.signerName", "")
    elif len(spec.signer_name) > 571 or not _SIGNER_NAME.match(spec.signer_name):
        errs.invalid(
            "spec.signerName",
            spec.signer_name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )
    if not spec.usages:
        errs.required("spec.usages", "usages must be provided")
    seen: set[str] = set()
    for i, usage in enumerate(spec.usages):
        if usage not in KEY_USAGES:
            errs.not_supported(f"spec.usages[{i}]", usage, list(KEY_USAGES))
        elif usage in seen:
            errs.duplicate(f"spec.usages[{i}]", usage)
        seen.add(usage)
    if spec.expiration_seconds is not None and spec.expiration_seconds < MIN_EXPIRATION_SECONDS:
        errs.invalid(
            "spec.expirationSeconds",
            spec.expiration_seconds,
            f"may not specify a duration less than {MIN_EXPIRATION_SECONDS} seconds",
        )
    types: set[str] = set()
    for i, cond in enumerate(obj.status.conditions):
        path = f"status.conditions[{i}]"
        if not cond.type:
            errs.required(f"{path}.type", "")
        elif cond.type in types and cond.type in (APPROVED, DENIED, FAILED):
            errs.duplicate(f"{path}.type", cond.type)
        types.add(cond.type or "")
        if cond.status not in (None, "True", "False", "Unknown"):
            errs.not_supported(f"{path}.status", cond.status, ["True", "False", "Unknown"])
    if APPROVED in types and DENIED in types:
        errs.invalid(
            "status.conditions",
            "Approved,Denied",
            "Approved and Denied conditions are mutually exclusive",
        )


__all__ = [
    "APPROVED",
    "DENIED",
    "FAILED",
    "KEY_USAGES",
    "KUBELET_SERVING",
    "KUBE_APISERVER_CLIENT",
    "KUBE_APISERVER_CLIENT_KUBELET",
    "LEGACY_UNKNOWN",
    "CertificateSigningRequest",
    "CertificateSigningRequestCondition",
    "CertificateSigningRequestSpec",
    "CertificateSigningRequestStatus",
    "conditions_of",
    "has_condition",
    "merge_subresource",
    "request_pem",
    "validate_csr",
    "with_requester",
]
