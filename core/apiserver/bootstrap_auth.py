"""How a new node gets in: bootstrap tokens, client certificates, the anonymous
``cluster-info`` read, and what each of those identities may do.

As kubeadm and Kubernetes' API server do it:

* A **bootstrap token** ``<id>.<secret>`` (``[a-z0-9]{6}.[a-z0-9]{16}``) is stored as the
  Secret ``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token``
  (``token-id``, ``token-secret``, ``expiration``, ``usage-bootstrap-authentication``,
  ``usage-bootstrap-signing``, ``auth-extra-groups``). As a bearer token it authenticates
  ``system:bootstrap:<id>`` in ``system:bootstrappers`` (plus the extra groups) while the
  Secret exists, is unexpired and allows authentication. Such a user may only create, get,
  list and watch CertificateSigningRequests (403 otherwise).
* A **client certificate** signed by the cluster CA authenticates its subject: the CN is the
  user, each O a group (``system:node:<name>`` in ``system:nodes`` for a node).
* **Anonymous** requests may only ``GET`` the ``kube-public/cluster-info`` ConfigMap: the
  API server's address and CA, with a detached JWS per bootstrap token
  (``jws-kubeconfig-<id>``) that proves a joining node and the cluster share the token.
  The joining node pins the CA by the SHA-256 of its DER ``SubjectPublicKeyInfo``
  (:func:`ca_cert_hash`).

The admin token, ServiceAccount tokens and node certificates keep full access: kcore has
no RBAC or Node authorizer yet.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.tokens import InvalidToken, UserInfo
from kcore.errors import Forbidden, NotFound

__all__ = [
    "ANONYMOUS_USER",
    "BOOTSTRAPPERS_GROUP",
    "CLUSTER_INFO_NAME",
    "CLUSTER_INFO_NAMESPACE",
    "DEFAULT_EXTRA_GROUP",
    "NODES_GROUP",
    "TOKEN_SECRET_TYPE",
    "RequestAttributes",
    "anonymous_allowed",
    "authenticate_bootstrap_token",
    "authorize",
    "bootstrap_token_secret",
    "ca_cert_hash",
    "detached_jws",
    "generate_token",
    "is_bootstrap_token",
    "parse_token",
    "user_from_peercert",
    "verify_detached_jws",
]

TOKEN_SECRET_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_SECRET_PREFIX = "bootstrap-token-"
BOOTSTRAPPERS_GROUP = "system:bootstrappers"
DEFAULT_EXTRA_GROUP = "system:bootstrappers:kubeadm:default-node-token"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
NODES_GROUP = "system:nodes"
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"
JWS_KEY_PREFIX = "jws-kubeconfig-"
ANONYMOUS_USER = UserInfo("system:anonymous", groups=("system:unauthenticated",))

_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_TOKEN_CHARS = string.ascii_lowercase + string.digits
_CLUSTER_INFO_PATH = f"/api/v1/namespaces/{CLUSTER_INFO_NAMESPACE}/configmaps/{CLUSTER_INFO_NAME}"


# --- tokens ------------------------------------------------------------------------------


def generate_token() -> str:
    """A fresh bootstrap token ``<6>.<16>`` of lower-case letters and digits."""
    pick = lambda n: "".join(secrets.choice(_TOKEN_CHARS) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def is_bootstrap_token(value: str) -> bool:
    return bool(_TOKEN.match(value))


def parse_token(value: str) -> tuple[str, str]:
    """``(token id, token secret)``; ValueError naming the expected form otherwise."""
    match = _TOKEN.match(value.strip())
    if match is None:
        raise ValueError(
            f"the bootstrap token {value!r} was not of the form '[a-z0-9]{{6}}.[a-z0-9]{{16}}'"
        )
    return match.group(1), match.group(2)


def bootstrap_token_secret(
    token: str,
    *,
    expires: datetime | None,
    description: str = "",
    extra_groups: tuple[str, ...] = (DEFAULT_EXTRA_GROUP,),
    usages: tuple[str, ...] = ("authentication", "signing"),
) -> dict[str, Any]:
    """The Secret that stores ``token``, as kubeadm writes it (``expires`` None: never)."""
    token_id, token_secret = parse_token(token)
    fields = {"token-id": token_id, "token-secret": token_secret}
    if description:
        fields["description"] = description
    if expires is not None:
        fields["expiration"] = expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for usage in usages:
        fields[f"usage-bootstrap-{usage}"] = "true"
    if extra_groups:
        fields["auth-extra-groups"] = ",".join(extra_groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": TOKEN_SECRET_PREFIX + token_id, "namespace": "kube-system"},
        "type": TOKEN_SECRET_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in fields.items()},
    }


def _secret_fields(secret: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
    for key, value in (secret.get("stringData") or {}).items():
        out[key] = str(value)
    return out


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def authenticate_bootstrap_token(
    objects: ObjectStore, token: str, *, now: datetime | None = None
) -> UserInfo:
    """The ``system:bootstrap:<id>`` user of ``token``, or :class:`InvalidToken` saying
    why not (missing, wrong secret, expired, not for authentication)."""
    from kcore.api.registry import by_resource

    token_id, token_secret = parse_token(token) if is_bootstrap_token(token) else ("", "")
    if not token_id:
        raise InvalidToken("not a bootstrap token")
    info = by_resource("", "v1", "secrets")
    assert info is not None
    try:
        secret = await objects.get(info, "kube-system", TOKEN_SECRET_PREFIX + token_id)
    except NotFound:
        raise InvalidToken(f"bootstrap token {token_id} does not exist") from None
    if secret.get("type") != TOKEN_SECRET_TYPE:
        raise InvalidToken(f"secret of bootstrap token {token_id} has the wrong type")
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        raise InvalidToken(f"bootstrap token {token_id} is being deleted")
    fields = _secret_fields(secret)
    if fields.get("token-id") != token_id:
        raise InvalidToken(f"secret of bootstrap token {token_id} names another token id")
    if not hmac.compare_digest(fields.get("token-secret", "").encode(), token_secret.encode()):
        raise InvalidToken(f"bootstrap token {token_id} has a different secret")
    expiration = fields.get("expiration")
    if expiration:
        when = _parse_time(expiration)
        if when is None or when <= (now or datetime.now(UTC)):
            raise InvalidToken(f"bootstrap token {token_id} expired at {expiration}")
    if fields.get("usage-bootstrap-authentication") != "true":
        raise InvalidToken(f"bootstrap token {token_id} is not for authentication")
    groups = [BOOTSTRAPPERS_GROUP]
    for group in (fields.get("auth-extra-groups") or "").split(","):
        group = group.strip()
        if group.startswith(BOOTSTRAPPERS_GROUP + ":") and group not in groups:
            groups.append(group)
    groups.append("system:authenticated")
    return UserInfo(BOOTSTRAP_USER_PREFIX + token_id, groups=tuple(groups))


# --- client certificates -------------------------------------------------------------------


def user_from_peercert(peercert: Mapping[str, Any] | None) -> UserInfo | None:
    """The user of a verified client certificate (``ssl`` ``getpeercert()`` form): CN the
    name, each O a group; ``None`` without a certificate or a CN."""
    if not peercert:
        return None
    name = ""
    groups: list[str] = []
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName" and not name:
                name = value
            elif key == "organizationName" and value not in groups:
                groups.append(value)
    if not name:
        return None
    groups.append("system:authenticated")
    return UserInfo(name, groups=tuple(groups))


def ca_cert_hash(ca_pem: bytes | str) -> str:
    """``sha256:<hex>`` of the CA's DER SubjectPublicKeyInfo (kubeadm's CA pin)."""
    data = ca_pem.encode() if isinstance(ca_pem, str) else ca_pem
    cert = x509.load_pem_x509_certificate(data)
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


# --- cluster-info signatures ---------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def detached_jws(content: str, token: str) -> str:
    """The detached JWS (HS256, key = the token secret, ``kid`` = the token id) of
    ``content``: ``header..signature``, as Kubernetes' bootstrap signer writes it."""
    token_id, token_secret = parse_token(token)
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    payload = _b64url(content.encode())
    mac = hmac.new(token_secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}..{_b64url(mac.digest())}"


def verify_detached_jws(content: str, jws: str, token: str) -> bool:
    """Whether ``jws`` is :func:`detached_jws` of ``content`` for ``token``."""
    header, sep, signature = jws.partition("..")
    if not sep or not header or not signature:
        return False
    try:
        padded = header + "=" * (-len(header) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return False
    if not isinstance(fields, dict) or fields.get("alg") != "HS256":
        return False
    token_id, token_secret = parse_token(token)
    if fields.get("kid") not in (None, token_id):
        return False
    payload = _b64url(content.encode())
    mac = hmac.new(token_secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return hmac.compare_digest(_b64url(mac.digest()), signature)


# --- authorization ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestAttributes:
    """What a request asks to do, as Kubernetes' authorizers see it."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """Parse an API path (``/api/v1/...``, ``/apis/<group>/<version>/...``)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return RequestAttributes(verb=method.lower())
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    elif len(rest) in (1, 2) and rest[0] == "namespaces":
        pass  # the namespaces resource itself
    if not rest:
        return RequestAttributes(verb=method.lower())
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if method in ("GET", "HEAD"):
        if query.get("watch") in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if name else "list"
    elif method == "DELETE" and not name:
        verb = "deletecollection"
    else:
        verb = _VERBS.get(method, method.lower())
    return RequestAttributes(verb, group, resource, sub, namespace, name)


def anonymous_allowed(method: str, path: str) -> bool:
    """Anonymous callers may read ``kube-public/cluster-info`` and nothing else."""
    return method in ("GET", "HEAD") and path.rstrip("/") == _CLUSTER_INFO_PATH


def _forbidden_message(user: UserInfo, attrs: RequestAttributes) -> str:
    label = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    if attrs.name:
        label += f' "{attrs.name}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'{label} is forbidden: User "{user.name}" cannot {attrs.verb} resource "{resource}" '
        f'in API group "{attrs.group}" {scope}'
    )


def authorize(user: UserInfo, method: str, path: str, query: Mapping[str, str]) -> None:
    """Raise :class:`~kcore.errors.Forbidden` when ``user`` may not make this request.

    Bootstrap tokens may create, get, list and watch CertificateSigningRequests (and read
    discovery); every other authenticated user may do anything."""
    if BOOTSTRAPPERS_GROUP not in user.groups:
        return
    attrs = request_attributes(method, path, query)
    if not attrs.is_resource:
        if method in ("GET", "HEAD"):
            return
    elif (
        attrs.group == "certificates.k8s.io"
        and attrs.resource == "certificatesigningrequests"
        and not attrs.subresource
        and attrs.verb in ("create", "get", "list", "watch")
    ):
        return
    elif attrs.group == "" and attrs.resource == "configmaps" and anonymous_allowed(method, path):
        return
    raise Forbidden(_forbidden_message(user, attrs))
