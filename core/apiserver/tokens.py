"""ServiceAccount tokens: the JWTs the API server signs for a ServiceAccount, and the checks
that make one the identity of a request.

A token is a JWS in compact form (``header.claims.signature``, each part base64url without
padding), signed RS256 with the cluster's service-account key (``pki/sa.key``). Its claims
are those of Kubernetes' bound tokens::

    {"iss": "https://kubernetes.default.svc.cluster.local",
     "sub": "system:serviceaccount:<namespace>:<name>",
     "aud": ["https://kubernetes.default.svc.cluster.local"],
     "exp": 1767229200, "iat": 1767225600, "nbf": 1767225600, "jti": "<uuid>",
     "kubernetes.io": {"namespace": "<namespace>",
                       "serviceaccount": {"name": "<name>", "uid": "<uid>"},
                       "pod": {"name": "<pod>", "uid": "<uid>"},      # bound to a pod
                       "node": {"name": "<node>", "uid": "<uid>"},    # ... on this node
                       "secret": {"name": "<secret>", "uid": "<uid>"}}}  # or to a secret

A good signature is not enough: a token dies with its ServiceAccount and with the object it
is bound to, compared by uid, so that a namesake created later does not revive it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kcore import api
from kcore.api.authentication_v1 import TokenRequest
from kcore.api.defaults import DEFAULT_SERVICE_ACCOUNT, DEFAULT_TOKEN_EXPIRATION
from kcore.api.registry import for_type
from kcore.api.validation import ErrorList, invalid_error
from kcore.apiserver.objects import ObjectStore
from kcore.errors import BadRequest, Conflict, KcoreError, NotFound

__all__ = [
    "DEFAULT_ISSUER",
    "InvalidToken",
    "IssuedToken",
    "ObjectRef",
    "TokenIssuer",
    "UserInfo",
    "authenticate_service_account",
    "create_token_request",
    "service_account_username",
]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
"""``iss`` of every token, and the API server's audience (``--api-audiences`` defaults to
the issuer)."""
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
LEEWAY = 60
"""Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (go-jose's default)."""

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_encode_json = msgspec.json.Encoder(order="sorted").encode
_decode_json = msgspec.json.Decoder().decode


class InvalidToken(KcoreError):
    """A bearer token that does not authenticate anyone; the message says why (for logs:
    the client only ever sees ``Unauthorized``)."""

    code = 401
    reason = "Unauthorized"


@dataclass(frozen=True)
class ObjectRef:
    """A name and uid, as the ``kubernetes.io`` claims carry the objects a token is bound to."""

    name: str
    uid: str = ""

    def claim(self) -> dict[str, str]:
        return {"name": self.name, **({"uid": self.uid} if self.uid else {})}

    @classmethod
    def from_claim(cls, value: Any, what: str) -> ObjectRef:
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise InvalidToken(f"token has a malformed {what} claim")
        uid = value.get("uid", "")
        if not isinstance(uid, str):
            raise InvalidToken(f"token has a malformed {what} claim")
        return cls(value["name"], uid)


@dataclass(frozen=True)
class UserInfo:
    """Who a request comes from, as Kubernetes' authenticators describe a user."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    issued_at: int
    """Seconds since the epoch, by the issuer's clock; also ``nbf``."""
    expires_at: int


def service_account_username(namespace: str, name: str) -> str:
    return f"{_SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


class TokenIssuer:
    """Signs and verifies ServiceAccount JWTs with one RSA key.

    ``clock`` (seconds since the epoch) is read for ``iat``/``exp`` when issuing and for the
    expiry check when verifying; tests move it to make tokens expire.
    """

    def __init__(
        self,
        private_key_pem: bytes,
        *,
        issuer: str = DEFAULT_ISSUER,
        api_audiences: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        leeway: int = LEEWAY,
    ) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service-account signing key must be an RSA key")
        self._key = key
        self._public_key = key.public_key()
        self.issuer = issuer
        self.api_audiences: tuple[str, ...] = tuple(api_audiences) or (issuer,)
        self.clock = clock
        self.leeway = leeway
        der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # As Kubernetes names its keys: the unpadded base64url SHA-256 of the public key.
        self.key_id = _b64encode(hashlib.sha256(der).digest())

    @classmethod
    def ephemeral(cls, **kwargs: Any) -> TokenIssuer:
        """An issuer with a key of its own, which dies with it: for an API server without a
        PKI (tests), whose tokens need not survive a restart."""
        from kcore.apiserver.pki import generate_service_account_key

        return cls(generate_service_account_key(), **kwargs)

    # -- issuing ---------------------------------------------------------------------------

    def issue(
        self,
        *,
        namespace: str,
        service_account: ObjectRef,
        audiences: Sequence[str] = (),
        expiration_seconds: int = DEFAULT_TOKEN_EXPIRATION,
        pod: ObjectRef | None = None,
        node: ObjectRef | None = None,
        secret: ObjectRef | None = None,
    ) -> IssuedToken:
        """A token for ``service_account``, for ``audiences`` (default: the API server's),
        optionally bound to a pod (and that pod's node) or to a secret."""
        now = int(self.clock())
        expires = now + expiration_seconds
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": service_account.claim(),
        }
        for name, ref in (("pod", pod), ("node", node), ("secret", secret)):
            if ref is not None:
                private[name] = ref.claim()
        claims = {
            "iss": self.issuer,
            "sub": service_account_username(namespace, service_account.name),
            "aud": list(audiences) or list(self.api_audiences),
            "exp": expires,
            "iat": now,
            "nbf": now,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
        }
        return IssuedToken(self.sign(claims), now, expires)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Any claims, signed: :meth:`issue` builds the claims of a real token."""
        header = {"alg": "RS256", "kid": self.key_id, "typ": "JWT"}
        signing_input = f"{_b64encode(_encode_json(header))}.{_b64encode(_encode_json(claims))}"
        signature = self._key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64encode(signature)}"

    # -- verifying -------------------------------------------------------------------------

    def verify(self, token: str, *, audiences: Sequence[str] | None = None) -> dict[str, Any]:
        """The claims of ``token`` once its signature, issuer, times and audience check out
        (an audience in ``audiences``, default the API server's); else :class:`InvalidToken`.

        This says nothing about the objects the token names: see
        :func:`authenticate_service_account`.
        """
        if not _JWS.match(token):
            raise InvalidToken("token is malformed")
        header_part, claims_part, signature_part = token.split(".")
        try:
            header = _decode_json(_b64decode(header_part))
            claims = _decode_json(_b64decode(claims_part))
            signature = _b64decode(signature_part)
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise InvalidToken("token is malformed") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken("token is malformed")
        if header.get("alg") != "RS256":
            raise InvalidToken(f"token is signed with {header.get('alg')!r}, not RS256")
        if header.get("kid") not in (None, self.key_id):
            raise InvalidToken("token is signed with an unknown key")
        try:
            self._public_key.verify(
                signature,
                f"{header_part}.{claims_part}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise InvalidToken("token signature is invalid") from None
        if claims.get("iss") != self.issuer:
            raise InvalidToken(f"token issuer {claims.get('iss')!r} is not {self.issuer!r}")
        self._check_times(claims)
        wanted = self.api_audiences if audiences is None else tuple(audiences)
        given = claims.get("aud")
        given = [given] if isinstance(given, str) else given
        if not isinstance(given, list) or not all(isinstance(a, str) for a in given):
            raise InvalidToken("token has a malformed aud claim")
        if not set(given) & set(wanted):
            raise InvalidToken(
                f"token audiences {given} are invalid for the audiences {list(wanted)}"
            )
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.clock()
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if (value is None and name != "exp") or _is_number(value):
                continue
            raise InvalidToken(f"token has a malformed {name} claim")
        if now > claims["exp"] + self.leeway:
            raise InvalidToken("service account token has expired")
        if claims.get("nbf") is not None and now + self.leeway < claims["nbf"]:
            raise InvalidToken("service account token is not valid yet")
        if claims.get("iat") is not None and now + self.leeway < claims["iat"]:
            raise InvalidToken("service account token was issued in the future")


# -- the API: TokenRequest and authentication ------------------------------------------------


async def create_token_request(
    objects: ObjectStore,
    issuer: TokenIssuer,
    namespace: str,
    name: str,
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """``POST …/serviceaccounts/<name>/token``: the TokenRequest ``body`` answered with a
    token in ``status``, as Kubernetes' TokenREST answers it (same checks, same errors)."""
    request = api.decode(dict(body), into=TokenRequest)
    meta, spec = request.metadata, request.spec
    errs = ErrorList()
    if meta.name and meta.name != name:
        errs.invalid("metadata.name", meta.name, "must match the service account name if specified")
    if meta.namespace and meta.namespace != namespace:
        errs.invalid(
            "metadata.namespace",
            meta.namespace,
            "must match the service account namespace if specified",
        )
    if errs:
        raise _invalid_token_request(name, errs)
    sa = await objects.get(for_type(api.ServiceAccount), namespace, name)
    seconds = (
        DEFAULT_TOKEN_EXPIRATION if spec.expiration_seconds is None else spec.expiration_seconds
    )
    if seconds < MIN_EXPIRATION_SECONDS:
        errs.invalid(
            "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"
        )
    if seconds > MAX_EXPIRATION_SECONDS:
        errs.invalid(
            "spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds"
        )
    if errs:
        raise _invalid_token_request("", errs)
    bound: dict[str, ObjectRef] = {}
    ref = spec.bound_object_ref
    if ref is not None:
        bound = await _bound_objects(objects, namespace, name, ref)
    audiences = list(spec.audiences) or list(issuer.api_audiences)
    issued = issuer.issue(
        namespace=namespace,
        service_account=ObjectRef(name, sa["metadata"]["uid"]),
        audiences=audiences,
        expiration_seconds=seconds,
        **bound,
    )
    out = api.to_dict(request)
    out["metadata"].update(
        name=name,
        namespace=namespace,
        uid=meta.uid or sa["metadata"]["uid"],
        creationTimestamp=_rfc3339(issued.issued_at),
    )
    out["spec"].update(audiences=audiences, expirationSeconds=seconds)
    out["status"] = {"token": issued.token, "expirationTimestamp": _rfc3339(issued.expires_at)}
    return out


async def _bound_objects(
    objects: ObjectStore, namespace: str, service_account: str, ref: Any
) -> dict[str, ObjectRef]:
    """The ``issue`` arguments for ``spec.boundObjectRef``: the object must exist and, when
    the reference has a uid, be that very object."""
    api_version = ref.api_version or ""
    group, _, version = api_version.rpartition("/")
    kind = ref.kind or ""
    found: dict[str, ObjectRef] = {}
    if group == "" and kind == "Pod":
        pod = await objects.get(for_type(api.Pod), namespace, ref.name or "")
        spec = pod.get("spec") or {}
        if (spec.get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT) != service_account:
            raise BadRequest(
                f'cannot bind token for serviceaccount "{service_account}" to pod running '
                "with different serviceaccount name."
            )
        found["pod"] = target = ObjectRef(pod["metadata"]["name"], pod["metadata"]["uid"])
        if spec.get("nodeName"):
            found["node"] = await _node_of(objects, spec["nodeName"])
    elif group == "" and kind == "Secret":
        secret = await objects.get(for_type(api.Secret), namespace, ref.name or "")
        found["secret"] = target = ObjectRef(secret["metadata"]["name"], secret["metadata"]["uid"])
    else:
        raise BadRequest(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
    if ref.uid and ref.uid != target.uid:
        error = Conflict(
            f'Operation cannot be fulfilled on {kind} "{target.name}": the UID in the bound '
            f"object reference ({ref.uid}) does not match the UID in record. The object might "
            "have been deleted and then recreated"
        )
        error.details = {"name": target.name, "kind": kind}  # type: ignore[attr-defined]
        raise error
    return found


async def _node_of(objects: ObjectStore, name: str) -> ObjectRef:
    """The pod's node by name and uid; by name alone when there is no such Node (yet)."""
    try:
        node = await objects.get(for_type(api.Node), None, name)
    except NotFound:
        return ObjectRef(name)
    return ObjectRef(name, node["metadata"]["uid"])


def _invalid_token_request(name: str, errs: ErrorList) -> KcoreError:
    error = invalid_error("TokenRequest", "authentication.k8s.io", name, list(errs))
    error.details = {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest"}  # type: ignore[attr-defined]
    return error


async def authenticate_service_account(
    objects: ObjectStore, issuer: TokenIssuer, token: str
) -> UserInfo:
    """The ServiceAccount user ``token`` stands for, or :class:`InvalidToken`.

    Besides :meth:`TokenIssuer.verify`: the ServiceAccount and any bound pod or secret must
    still exist with the uids in the token, and not have been deleted more than the leeway
    ago (a pod in its grace period keeps its token)."""
    claims = issuer.verify(token)
    private = claims.get("kubernetes.io")
    if not isinstance(private, dict) or not isinstance(private.get("namespace"), str):
        raise InvalidToken("token has no kubernetes.io claims")
    namespace = private["namespace"]
    sa_ref = ObjectRef.from_claim(private.get("serviceaccount"), "serviceaccount")
    username = service_account_username(namespace, sa_ref.name)
    if claims.get("sub") != username:
        raise InvalidToken("token subject does not match its serviceaccount claim")
    refs = {
        what: ObjectRef.from_claim(private[what], what)
        for what in ("pod", "secret", "node")
        if private.get(what) is not None
    }
    deleted_before = issuer.clock() - issuer.leeway
    await _check_alive(objects, api.ServiceAccount, namespace, sa_ref, deleted_before)
    for what, kind in (("pod", api.Pod), ("secret", api.Secret)):
        if what in refs:
            await _check_alive(objects, kind, namespace, refs[what], deleted_before)
    extra: dict[str, tuple[str, ...]] = {}
    for what in ("pod", "node"):
        if what in refs:
            extra[f"authentication.kubernetes.io/{what}-name"] = (refs[what].name,)
            if refs[what].uid:
                extra[f"authentication.kubernetes.io/{what}-uid"] = (refs[what].uid,)
    if isinstance(claims.get("jti"), str):
        extra["authentication.kubernetes.io/credential-id"] = (f"JTI={claims['jti']}",)
    return UserInfo(
        name=username,
        uid=sa_ref.uid,
        groups=(
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ),
        extra=extra,
    )


async def _check_alive(
    objects: ObjectStore, kind: type, namespace: str, ref: ObjectRef, deleted_before: float
) -> None:
    info = for_type(kind)
    plural = info.plural
    try:
        obj = await objects.get(info, namespace, ref.name)
    except NotFound:
        raise InvalidToken(f"{plural} {namespace}/{ref.name} named by the token is gone") from None
    meta = obj["metadata"]
    deleted = meta.get("deletionTimestamp")
    if deleted and datetime.fromisoformat(deleted).timestamp() < deleted_before:
        raise InvalidToken(f"{plural} {namespace}/{ref.name} named by the token has been deleted")
    if meta.get("uid") != ref.uid:
        raise InvalidToken(
            f"{plural} {namespace}/{ref.name} has uid {meta.get('uid')}, the token names {ref.uid}"
        )


# -- helpers -----------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
