"""The API server's PKI: CA, serving certificate, admin token and kubeconfig."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kcore.apiserver.pki import DEFAULT_HOSTS, Pki, ensure_pki, write_kubeconfig

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

EXPECTED_DEFAULT_DNS = {
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
}
EXPECTED_DEFAULT_IPS = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> tuple[set[str], set]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), set(ext.get_values_for_type(x509.IPAddress))


def _snapshot(pki: Pki) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    names = ("ca_cert", "ca_key", "serving_cert", "serving_key", "token_file")
    for name in (*names, "service_account_key"):
        path: Path = getattr(pki, name)
        st = path.stat()
        out[name] = (path.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def _require(tool: str) -> None:
    if not os.access(tool, os.X_OK):
        pytest.fail(f"{tool} is not installed: scripts/test.sh installs it")


# --- files, modes, reuse -------------------------------------------------------------------


def test_first_call_creates_ca_serving_cert_and_token_with_private_modes(tmp_path):
    pki = ensure_pki(tmp_path, hosts=[])

    pki_dir = tmp_path / "pki"
    for path in (pki.ca_cert, pki.ca_key, pki.serving_cert, pki.serving_key, pki.token_file):
        assert path.parent == pki_dir
        assert path.is_file()
    assert _mode(pki_dir) == 0o700
    assert _mode(pki.ca_key) == 0o600
    assert _mode(pki.serving_key) == 0o600
    assert _mode(pki.token_file) == 0o600
    for cert in (pki.ca_cert, pki.serving_cert):
        assert _mode(cert) & 0o022 == 0  # nobody else may write a certificate
    # No temp files are left behind by the atomic writes.
    assert not [p.name for p in pki_dir.iterdir() if p.name.endswith(".tmp")]

    assert pki.ca_pem == pki.ca_cert.read_bytes()
    assert pki.token_file.read_text().strip() == pki.token
    assert len(pki.token) >= 43  # 32 random bytes, urlsafe base64
    assert set(pki.token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert ensure_pki(tmp_path / "other", hosts=[]).token != pki.token


def test_ca_is_a_ten_year_self_signed_ca_named_kcore_ca(tmp_path):
    pki = ensure_pki(tmp_path, hosts=[])
    ca = _cert(pki.ca_cert)

    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kcore-ca"
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    lifetime = ca.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=3640) < lifetime <= dt.timedelta(days=3651)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert ca_key.public_key() == ca.public_key()


def test_serving_cert_is_a_one_year_server_cert_with_all_sans(tmp_path):
    pki = ensure_pki(
        tmp_path, hosts=["10.0.0.5", "Node1.Example.com", "fd00::7", "[fd00::8]", "127.0.0.1"]
    )
    cert = _cert(pki.serving_cert)
    ca = _cert(pki.ca_cert)

    cert.verify_directly_issued_by(ca)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=360) < lifetime <= dt.timedelta(days=366)
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC)
    key = serialization.load_pem_private_key(pki.serving_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key()

    dns, ips = _sans(cert)
    assert dns == EXPECTED_DEFAULT_DNS | {"node1.example.com"}
    assert ips == EXPECTED_DEFAULT_IPS | {
        ipaddress.ip_address(a) for a in ("10.0.0.5", "fd00::7", "fd00::8")
    }
    assert set(DEFAULT_HOSTS) >= EXPECTED_DEFAULT_DNS


def test_second_call_reuses_everything_and_rewrites_nothing(tmp_path):
    first = ensure_pki(tmp_path, hosts=["10.0.0.5", "node1"])
    before = _snapshot(first)

    second = ensure_pki(tmp_path, hosts=["node1", "10.0.0.5"])

    assert _snapshot(second) == before  # same bytes, same inode, same mtime
    assert second.token == first.token
    assert second.ca_pem == first.ca_pem
    # A subset of the hosts (or none) is still covered: nothing is re-issued.
    assert _snapshot(ensure_pki(tmp_path, hosts=[])) == before


def test_new_host_reissues_only_the_serving_cert(tmp_path):
    first = ensure_pki(tmp_path, hosts=["node1"])
    before = _snapshot(first)

    second = ensure_pki(tmp_path, hosts=["node1", "192.168.1.20", "api.example"])
    after = _snapshot(second)

    for kept in ("ca_cert", "ca_key", "token_file"):
        assert after[kept] == before[kept], kept
    assert after["serving_cert"][0] != before["serving_cert"][0]
    assert after["serving_key"][0] != before["serving_key"][0]
    assert second.token == first.token and second.ca_pem == first.ca_pem

    cert = _cert(second.serving_cert)
    cert.verify_directly_issued_by(_cert(second.ca_cert))
    dns, ips = _sans(cert)
    assert {"node1", "api.example"} <= dns
    assert ipaddress.ip_address("192.168.1.20") in ips

    # The earlier caller's host list is now covered too: no flapping back and forth.
    assert _snapshot(ensure_pki(tmp_path, hosts=["node1"])) == after


def _write_short_lived_serving_cert(pki: Pki, days: int) -> bytes:
    """Replace the serving cert with one the CA issued that expires in ``days``."""
    ca = _cert(pki.ca_cert)
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    old = _cert(pki.serving_cert)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=300))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    pki.serving_cert.write_bytes(pem)
    pki.serving_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


def test_cert_expiring_within_30_days_is_reissued_keeping_the_ca(tmp_path):
    pki = ensure_pki(tmp_path, hosts=["node1"])
    short = _write_short_lived_serving_cert(pki, days=10)
    before = _snapshot(pki)

    again = ensure_pki(tmp_path, hosts=["node1"])

    assert again.serving_cert.read_bytes() != short
    cert = _cert(again.serving_cert)
    cert.verify_directly_issued_by(_cert(again.ca_cert))
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)
    assert "node1" in _sans(cert)[0]
    after = _snapshot(again)
    for kept in ("ca_cert", "ca_key", "token_file"):
        assert after[kept] == before[kept], kept


def test_cert_valid_for_more_than_30_days_is_kept(tmp_path):
    pki = ensure_pki(tmp_path, hosts=[])
    pem = _write_short_lived_serving_cert(pki, days=45)

    ensure_pki(tmp_path, hosts=[])

    assert pki.serving_cert.read_bytes() == pem


def test_missing_or_mismatched_serving_files_are_reissued(tmp_path):
    pki = ensure_pki(tmp_path, hosts=[])
    ca_before = pki.ca_cert.read_bytes()

    pki.serving_cert.unlink()
    ensure_pki(tmp_path, hosts=[])
    assert pki.serving_cert.is_file()
    _cert(pki.serving_cert).verify_directly_issued_by(_cert(pki.ca_cert))

    # A key that does not belong to the certificate (say, a crash between the two writes).
    other = ec.generate_private_key(ec.SECP256R1())
    pki.serving_key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ensure_pki(tmp_path, hosts=[])
    key = serialization.load_pem_private_key(pki.serving_key.read_bytes(), password=None)
    assert key.public_key() == _cert(pki.serving_cert).public_key()
    assert pki.ca_cert.read_bytes() == ca_before


def test_lost_ca_is_recreated_and_the_serving_cert_follows_it(tmp_path):
    first = ensure_pki(tmp_path, hosts=[])
    first.ca_key.unlink()
    first.ca_cert.unlink()

    second = ensure_pki(tmp_path, hosts=[])

    assert second.ca_pem != first.ca_pem
    assert second.token == first.token
    _cert(second.serving_cert).verify_directly_issued_by(_cert(second.ca_cert))


def test_service_account_key_is_a_private_rsa_key_kept_across_calls(tmp_path):
    first = ensure_pki(tmp_path, hosts=[])

    assert first.service_account_key == tmp_path / "pki" / "sa.key"
    assert _mode(first.service_account_key) == 0o600
    assert first.service_account_key.read_bytes() == first.service_account_key_pem
    key = serialization.load_pem_private_key(first.service_account_key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert ensure_pki(tmp_path, hosts=[]).service_account_key_pem == first.service_account_key_pem
    assert ensure_pki(tmp_path / "other", hosts=[]).service_account_key_pem != (
        first.service_account_key_pem
    )

    first.service_account_key.write_bytes(b"not a key")  # unusable: replaced
    replaced = ensure_pki(tmp_path, hosts=[])
    assert replaced.service_account_key_pem != first.service_account_key_pem
    serialization.load_pem_private_key(replaced.service_account_key_pem, password=None)
    assert replaced.token == first.token and replaced.ca_pem == first.ca_pem


def test_invalid_host_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"10\.0\.0\.1:6443"):
        ensure_pki(tmp_path, hosts=["10.0.0.1:6443"])
    with pytest.raises(ValueError):
        ensure_pki(tmp_path, hosts=["https://node1"])


# --- openssl --------------------------------------------------------------------------------


def _openssl_verify(pki: Pki, *extra: str) -> subprocess.CompletedProcess:
    command = [OPENSSL, "verify", "-CAfile", str(pki.ca_cert), "-purpose", "sslserver"]
    return subprocess.run(
        [*command, *extra, str(pki.serving_cert)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_openssl_verifies_the_serving_cert_against_the_ca(tmp_path):
    _require(OPENSSL)
    pki = ensure_pki(tmp_path, hosts=["10.1.2.3", "node1.example"])

    for extra in (
        (),
        ("-verify_hostname", "kubernetes.default.svc.cluster.local"),
        ("-verify_hostname", "node1.example"),
        ("-verify_ip", "10.1.2.3"),
        ("-verify_ip", "::1"),
    ):
        result = _openssl_verify(pki, *extra)
        assert result.returncode == 0, (extra, result.stdout, result.stderr)
        assert result.stdout.strip().endswith(": OK")

    assert _openssl_verify(pki, "-verify_hostname", "evil.example").returncode != 0
    assert _openssl_verify(pki, "-verify_ip", "10.9.9.9").returncode != 0

    # A different CA does not vouch for it.
    other = ensure_pki(tmp_path / "other", hosts=[])
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(other.ca_cert), str(pki.serving_cert)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0


# --- TLS handshake --------------------------------------------------------------------------


def _client_context(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certs and hostnames
    ctx.load_verify_locations(cadata=ca_pem.decode())  # trusts only this CA
    return ctx


async def _handshake(pki: Pki, client: ssl.SSLContext, server_hostname: str) -> tuple[str, bytes]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readline())
            await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=pki.ssl_context())
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=server_hostname
            )
            version = writer.get_extra_info("ssl_object").version()
            writer.write(b"ping\n")
            await writer.drain()
            reply = await reader.readline()
            writer.close()
            return version, reply
    finally:
        server.close()
        await server.wait_closed()


def test_tls_handshake_with_a_client_trusting_only_the_ca(tmp_path):
    pki = ensure_pki(tmp_path, hosts=["node1.example"])
    client = _client_context(pki.ca_pem)

    async def scenario() -> None:
        for name in ("127.0.0.1", "localhost", "::1", "kubernetes.default.svc", "node1.example"):
            version, reply = await _handshake(pki, client, name)
            assert reply == b"ping\n", name
            assert version in ("TLSv1.2", "TLSv1.3"), name

        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(pki, client, "not-in-the-cert.example")

        stranger = _client_context(ensure_pki(tmp_path / "other", hosts=[]).ca_pem)
        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(pki, stranger, "localhost")

    asyncio.run(scenario())


def test_ssl_context_is_tls12_or_later_server_side(tmp_path):
    ctx = ensure_pki(tmp_path, hosts=[]).ssl_context()
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER


# --- kubeconfig -----------------------------------------------------------------------------


def test_kubeconfig_is_a_standard_private_config(tmp_path):
    pki = ensure_pki(tmp_path, hosts=[])
    path = tmp_path / "kube" / "config"

    write_kubeconfig(path, server="https://127.0.0.1:6443", ca_pem=pki.ca_pem, token=pki.token)

    assert _mode(path) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["apiVersion"] == "v1"
    assert config["kind"] == "Config"
    assert config["current-context"] == "kcore"
    [cluster] = config["clusters"]
    assert cluster["name"] == "kcore"
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == pki.ca_pem
    assert config["users"] == [{"name": "kcore-admin", "user": {"token": pki.token}}]
    assert config["contexts"] == [
        {
            "name": "kcore",
            "context": {"cluster": "kcore", "user": "kcore-admin", "namespace": "default"},
        }
    ]


def test_kubeconfig_replaces_an_existing_file_atomically_and_names_are_configurable(tmp_path):
    path = tmp_path / "config"
    path.write_text("old contents\n")
    path.chmod(0o644)

    write_kubeconfig(
        path,
        server="https://10.0.0.1:6443",
        ca_pem=b"PEM",
        token="t0k",
        cluster="c1",
        user="u1",
        context="ctx1",
    )

    assert _mode(path) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "ctx1"
    assert config["contexts"][0]["context"] == {
        "cluster": "c1",
        "user": "u1",
        "namespace": "default",
    }
    assert config["clusters"][0]["name"] == "c1"
    assert config["users"][0] == {"name": "u1", "user": {"token": "t0k"}}
    assert [p.name for p in tmp_path.iterdir()] == ["config"]


def _kubectl(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_kubectl_reads_the_token_from_the_kubeconfig(tmp_path):
    _require(KUBECTL)
    pki = ensure_pki(tmp_path, hosts=[])
    path = tmp_path / "config"
    write_kubeconfig(path, server="https://127.0.0.1:6443", ca_pem=pki.ca_pem, token=pki.token)

    result = _kubectl(
        path, tmp_path, "config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == pki.token


def test_kubectl_trusts_the_server_and_sends_the_bearer_token(tmp_path):
    """Gotcha 1: kubectl only sends credentials over TLS, so this is the path that matters."""
    _require(KUBECTL)
    pki = ensure_pki(tmp_path, hosts=[])
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"major": "1", "minor": "20", "gitVersion": "v1.20.2-kcore"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = pki.ssl_context().wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        path = tmp_path / "config"
        write_kubeconfig(
            path, server=f"https://127.0.0.1:{port}", ca_pem=pki.ca_pem, token=pki.token
        )
        result = _kubectl(path, tmp_path, "get", "--raw", "/version")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gitVersion"] == "v1.20.2-kcore"
    # kubectl may send more than one request; every one carries the token.
    assert seen and set(seen) == {f"Bearer {pki.token}"}
