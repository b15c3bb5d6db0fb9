"""TokenIssuer on its own: the JWT it signs, and what its verification refuses."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from kcore.apiserver.pki import generate_service_account_key
from kcore.apiserver.tokens import (
    DEFAULT_ISSUER,
    LEEWAY,
    InvalidToken,
    ObjectRef,
    TokenIssuer,
)

KEY = generate_service_account_key()
OTHER_KEY = generate_service_account_key()
T0 = 1_800_000_000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def part(token: str, index: int) -> dict:
    raw = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def issuer(clock):
    return TokenIssuer(KEY, clock=clock)


def issue(issuer: TokenIssuer, **kwargs):
    kwargs.setdefault("namespace", "ns1")
    kwargs.setdefault("service_account", ObjectRef("builder", "sa-uid"))
    return issuer.issue(**kwargs)


def test_claims_are_those_of_a_bound_kubernetes_token(issuer):
    issued = issue(
        issuer,
        audiences=["vault"],
        expiration_seconds=900,
        pod=ObjectRef("web-1", "pod-uid"),
        node=ObjectRef("node-a", "node-uid"),
    )
    header, claims = part(issued.token, 0), part(issued.token, 1)
    assert header == {"alg": "RS256", "kid": issuer.key_id, "typ": "JWT"}
    assert claims == {
        "iss": DEFAULT_ISSUER,
        "sub": "system:serviceaccount:ns1:builder",
        "aud": ["vault"],
        "exp": T0 + 900,
        "iat": T0,
        "nbf": T0,
        "jti": claims["jti"],
        "kubernetes.io": {
            "namespace": "ns1",
            "serviceaccount": {"name": "builder", "uid": "sa-uid"},
            "pod": {"name": "web-1", "uid": "pod-uid"},
            "node": {"name": "node-a", "uid": "node-uid"},
        },
    }
    assert (issued.issued_at, issued.expires_at) == (T0, T0 + 900)
    assert len(claims["jti"]) == 36
    assert issuer.verify(issued.token, audiences=["vault"]) == claims


def test_default_audience_is_the_issuer_and_each_token_has_its_own_jti(issuer):
    first, second = issue(issuer), issue(issuer)
    assert part(first.token, 1)["aud"] == [DEFAULT_ISSUER]
    assert issuer.api_audiences == (DEFAULT_ISSUER,)
    assert part(first.token, 1)["jti"] != part(second.token, 1)["jti"]
    assert issuer.verify(first.token)["sub"] == "system:serviceaccount:ns1:builder"


def test_signature_is_rs256_over_header_and_claims(issuer):
    token = issue(issuer).token
    header, claims, signature = token.split(".")
    public = serialization.load_pem_private_key(KEY, password=None).public_key()
    public.verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        f"{header}.{claims}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert "=" not in token


def test_expiry_honours_the_leeway(issuer, clock):
    token = issue(issuer, expiration_seconds=600).token
    clock.now = T0 + 600 + LEEWAY
    issuer.verify(token)
    clock.now += 1
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token)


def test_a_token_from_the_future_is_refused(clock):
    early = TokenIssuer(KEY, clock=Clock(T0 + 3600))
    token = issue(early).token
    with pytest.raises(InvalidToken, match="not valid yet"):
        TokenIssuer(KEY, clock=clock).verify(token)
    clock.now = T0 + 3600 - LEEWAY
    TokenIssuer(KEY, clock=clock).verify(token)


def test_another_audience_is_refused(issuer):
    token = issue(issuer, audiences=["vault", "other"]).token
    with pytest.raises(InvalidToken, match="audiences"):
        issuer.verify(token)
    assert issuer.verify(token, audiences=["other"])["aud"] == ["vault", "other"]


def test_another_issuer_or_key_is_refused(issuer):
    elsewhere = TokenIssuer(KEY, issuer="https://elsewhere.example")
    with pytest.raises(InvalidToken, match="issuer"):
        issuer.verify(issue(elsewhere).token)
    stranger = TokenIssuer(OTHER_KEY)
    with pytest.raises(InvalidToken, match="unknown key"):
        issuer.verify(issue(stranger).token)
    # The same claims under the other key but without a kid: the signature decides.
    _, claims, _ = issue(issuer).token.split(".")
    bare = b64(json.dumps({"alg": "RS256"}).encode())
    other = serialization.load_pem_private_key(OTHER_KEY, password=None)
    forged = other.sign(f"{bare}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidToken, match="signature"):
        issuer.verify(f"{bare}.{claims}.{b64(forged)}")


def test_tampering_is_refused(issuer):
    token = issue(issuer).token
    header, claims, signature = token.split(".")
    changed = part(token, 1)
    changed["sub"] = "system:serviceaccount:kube-system:admin"
    with pytest.raises(InvalidToken, match="signature"):
        issuer.verify(f"{header}.{b64(json.dumps(changed).encode())}.{signature}")
    middle = len(signature) // 2
    flipped = (
        signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    )
    with pytest.raises(InvalidToken, match="signature"):
        issuer.verify(f"{header}.{claims}.{flipped}")


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256", None])
def test_only_rs256_is_accepted(issuer, alg):
    _, claims, signature = issue(issuer).token.split(".")
    header = b64(json.dumps({"alg": alg} if alg else {}).encode())
    with pytest.raises(InvalidToken, match="RS256"):
        issuer.verify(f"{header}.{claims}.{signature}")
    with pytest.raises(InvalidToken):
        issuer.verify(f"{header}.{claims}.")


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "a b.c.d", "e30.e30.%%%", "e30.bm90IGpzb24.e30", "W10.W10.e30"],
)
def test_malformed_tokens_are_refused(issuer, token):
    with pytest.raises(InvalidToken, match="malformed"):
        issuer.verify(token)


@pytest.mark.parametrize(
    "claim, value",
    [("exp", None), ("exp", "tomorrow"), ("exp", True), ("nbf", "now"), ("aud", 5), ("aud", [1])],
)
def test_malformed_claims_are_refused(issuer, claim, value):
    claims = part(issue(issuer).token, 1)
    if value is None:
        del claims[claim]
    else:
        claims[claim] = value
    with pytest.raises(InvalidToken, match=f"malformed {claim}"):
        issuer.verify(issuer.sign(claims))


def test_an_infinite_expiry_is_refused(issuer):
    token = issue(issuer).token
    raw = part(token, 1)
    text = json.dumps(raw).replace(str(raw["exp"]), "1e999")
    header = token.split(".")[0]
    key = serialization.load_pem_private_key(KEY, password=None)
    body = b64(text.encode())
    signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidToken, match="malformed"):
        issuer.verify(f"{header}.{body}.{b64(signature)}")


def test_the_signing_key_must_be_rsa():
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="RSA"):
        TokenIssuer(ec_pem)


def test_key_id_is_stable_and_depends_on_the_key():
    assert TokenIssuer(KEY).key_id == TokenIssuer(KEY).key_id
    assert TokenIssuer(KEY).key_id != TokenIssuer(OTHER_KEY).key_id
    assert "=" not in TokenIssuer(KEY).key_id
