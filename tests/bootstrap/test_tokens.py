"""Bootstrap tokens, their Secret, the cluster-info signature and the CA pin."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from kcore.apiserver.bootstrap_auth import (
    bootstrap_token_secret,
    ca_cert_hash,
    detached_jws,
    generate_token,
    is_bootstrap_token,
    parse_token,
    request_attributes,
    verify_detached_jws,
)
from kcore.apiserver.pki import ensure_pki
from kcore.cluster import parse_duration


def test_generated_tokens_have_kubeadms_form_and_differ():
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", t) for t in tokens)
    assert all(is_bootstrap_token(t) for t in tokens)


@pytest.mark.parametrize(
    "bad", ["", "abcdef", "abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abc.def.ghi"]
)
def test_malformed_tokens_are_refused_with_the_expected_form(bad):
    assert not is_bootstrap_token(bad)
    with pytest.raises(ValueError, match=r"\[a-z0-9\]\{6\}\.\[a-z0-9\]\{16\}"):
        parse_token(bad)


def test_token_secret_is_what_kubeadm_writes():
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    secret = bootstrap_token_secret("abcdef.0123456789abcdef", expires=expires)
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "token-id": "abcdef",
        "token-secret": "0123456789abcdef",
        "expiration": "2030-01-02T03:04:05Z",
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
    }
    forever = bootstrap_token_secret("abcdef.0123456789abcdef", expires=None)
    assert "expiration" not in forever["data"]


def test_ca_hash_is_the_sha256_of_the_public_key_as_openssl_computes_it(tmp_path):
    pki = ensure_pki(tmp_path, hosts=[])
    # kubeadm's documented recipe: openssl x509 -pubkey | openssl pkey -pubin -outform der
    pub = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout", "-in", str(pki.ca_cert)],
        capture_output=True,
        check=True,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True, check=True
    ).stdout
    assert ca_cert_hash(pki.ca_pem) == "sha256:" + hashlib.sha256(der).hexdigest()
    other = ensure_pki(tmp_path / "other", hosts=[])
    assert ca_cert_hash(other.ca_pem) != ca_cert_hash(pki.ca_pem)


def test_cluster_info_signature_checks_token_and_content():
    token = "abcdef.0123456789abcdef"
    content = "apiVersion: v1\nkind: Config\n"
    jws = detached_jws(content, token)
    header, empty, signature = jws.split(".")
    assert empty == "" and header and signature  # detached: no payload in the middle
    assert verify_detached_jws(content, jws, token)
    assert not verify_detached_jws(content, jws, "abcdef.0123456789abcdee")
    assert not verify_detached_jws(content + " ", jws, token)
    assert not verify_detached_jws(content, "garbage", token)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("0", None), ("0s", None)],
)
def test_token_ttl_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "24", "1d", "h", "10m5"])
def test_bad_durations_are_refused(bad):
    import click

    with pytest.raises(click.BadParameter, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/nodes", {}, ("list", "", "nodes", "", "", "")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "", "nodes", "", "", "n1")),
        (
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"watch": "true"},
            ("watch", "", "pods", "", "ns", ""),
        ),
        (
            "PUT",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
            {},
            ("update", "certificates.k8s.io", "certificatesigningrequests", "approval", "", "c"),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/ns/pods",
            {},
            ("deletecollection", "", "pods", "", "ns", ""),
        ),
        (
            "GET",
            "/api/v1/namespaces/kube-system",
            {},
            ("get", "", "namespaces", "", "", "kube-system"),
        ),
    ],
)
def test_request_attributes(method, path, query, expected):
    a = request_attributes(method, path, query)
    assert (a.verb, a.group, a.resource, a.subresource, a.namespace, a.name) == expected


def test_expiry_is_in_the_future_by_the_ttl():
    now = datetime.now(UTC)
    secret = bootstrap_token_secret(generate_token(), expires=now + timedelta(hours=2))
    when = base64.b64decode(secret["data"]["expiration"]).decode()
    parsed = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(hours=1, minutes=59) < parsed - now <= timedelta(hours=2)
