"""The API server's PKI: a private CA, a serving certificate, an admin bearer token and the
key that signs ServiceAccount tokens.

kubectl sends credentials only over TLS, so the API server serves HTTPS with a certificate
issued by a CA that kcore creates itself; the kubeconfig carries that CA and the token.

Everything lives under ``<data_dir>/pki/``::

    ca.crt  ca.key              the CA (10 years, CN kcore-ca), created once
    apiserver.crt apiserver.key the serving certificate (1 year), re-issued when needed
    admin.token                 the admin bearer token, created once
    sa.key                      the RSA key that signs ServiceAccount tokens, created once

Keys and the token are mode 0600; every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_COMMON_NAME",
    "CA_VALIDITY",
    "DEFAULT_HOSTS",
    "RENEW_BEFORE",
    "SERVING_VALIDITY",
    "Pki",
    "atomic_write",
    "create_ca",
    "ensure_pki",
    "generate_service_account_key",
    "issue_certificate",
    "write_kubeconfig",
]

log = structlog.get_logger(__name__)

CA_COMMON_NAME = "kcore-ca"
SERVING_COMMON_NAME = "kcore-apiserver"
CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)
#: The serving certificate is re-issued when it expires within this window.
RENEW_BEFORE = dt.timedelta(days=30)
#: Backdating of ``notBefore``, so that a peer with a slightly slow clock accepts new certs.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: Names every serving certificate carries, whatever the caller asks for.
DEFAULT_HOSTS = (
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

PKI_DIR = "pki"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVING_CERT = "apiserver.crt"
SERVING_KEY = "apiserver.key"
TOKEN_FILE = "admin.token"
SERVICE_ACCOUNT_KEY = "sa.key"
SERVICE_ACCOUNT_KEY_SIZE = 2048
LOCK_FILE = ".lock"

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DNS_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"^(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")

_San = ipaddress.IPv4Address | ipaddress.IPv6Address | str


@dataclass(frozen=True)
class Pki:
    """Where the PKI files are, plus the values callers need in memory."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    token_file: Path
    token: str
    ca_pem: bytes
    service_account_key: Path
    service_account_key_pem: bytes
    """PEM (PKCS#8) of the RSA key that signs and verifies ServiceAccount tokens."""

    def ssl_context(self, *, client_certificates: bool = True) -> ssl.SSLContext:
        """A server-side context with the serving certificate, TLS 1.2 or later, HTTP/1.1;
        with ``client_certificates``, clients may present a certificate the CA signed
        (optional: token users present none).

        The files are read now, so a context made after a re-issue serves the new cert.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(certfile=self.serving_cert, keyfile=self.serving_key)
        if client_certificates:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cafile=self.ca_cert)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def ensure_pki(data_dir: Path, *, hosts: Iterable[str]) -> Pki:
    """Create the PKI under ``data_dir/pki`` on first use; afterwards reuse it.

    The serving certificate (and its key) is re-issued, keeping the CA, when it is missing,
    unreadable, not issued by the CA, does not match its key, expires within
    :data:`RENEW_BEFORE`, or lacks one of ``hosts`` (IP addresses become IP SANs, anything
    else a DNS SAN; :data:`DEFAULT_HOSTS` are always included). A re-issued certificate
    keeps the SANs of the one it replaces, so callers with different host lists do not make
    it flap. The CA is only replaced when it is missing, unreadable or expired, which
    invalidates kubeconfigs written before.

    A file lock serialises concurrent callers (daemon and CLI, say).
    """
    wanted = _normalise_hosts([*DEFAULT_HOSTS, *hosts])
    pki_dir = Path(data_dir) / PKI_DIR
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {
        "ca_cert": pki_dir / CA_CERT,
        "ca_key": pki_dir / CA_KEY,
        "serving_cert": pki_dir / SERVING_CERT,
        "serving_key": pki_dir / SERVING_KEY,
        "token_file": pki_dir / TOKEN_FILE,
    }
    with _locked(pki_dir / LOCK_FILE):
        now = _now()
        ca_cert, ca_key = _load_ca(paths["ca_cert"], paths["ca_key"], now)
        if ca_cert is None or ca_key is None:
            ca_cert, ca_key = create_ca(paths["ca_cert"], paths["ca_key"], now)
        reason, existing = _serving_status(
            paths["serving_cert"], paths["serving_key"], ca_cert, wanted, now
        )
        if reason is not None:
            log.info("issuing apiserver serving certificate", reason=reason)
            _issue_serving(
                paths["serving_cert"],
                paths["serving_key"],
                ca_cert,
                ca_key,
                _union(existing, wanted),
                now,
            )
        token = _ensure_token(paths["token_file"])
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        sa_key_path = pki_dir / SERVICE_ACCOUNT_KEY
        sa_key_pem = _ensure_service_account_key(sa_key_path)
    return Pki(
        token=token,
        ca_pem=ca_pem,
        service_account_key=sa_key_path,
        service_account_key_pem=sa_key_pem,
        **paths,
    )


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    token: str,
    cluster: str = "kcore",
    user: str = "kcore-admin",
    context: str = "kcore",
) -> None:
    """Write a one-cluster, one-user kubeconfig (mode 0600, atomically), replacing ``path``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": cluster, "user": user, "namespace": "default"},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    atomic_write(path, text.encode("utf-8"), _KEY_MODE)


# --- CA ------------------------------------------------------------------------------------


def _load_ca(
    cert_path: Path, key_path: Path, now: dt.datetime
) -> tuple[x509.Certificate | None, CertificateIssuerPrivateKeyTypes | None]:
    if not cert_path.exists() and not key_path.exists():
        return None, None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("replacing unusable kcore CA", error=str(exc))
        return None, None
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        log.warning("replacing kcore CA: certificate and key do not match")
        return None, None
    if cert.not_valid_after_utc <= now:
        log.warning("replacing expired kcore CA", not_after=cert.not_valid_after_utc.isoformat())
        return None, None
    return cert, key  # type: ignore[return-value]


def create_ca(
    cert_path: Path, key_path: Path, now: dt.datetime | None = None
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    """A new self-signed CA (CN kcore-ca, valid for :data:`CA_VALIDITY`), written to
    ``cert_path`` and ``key_path`` (whose directory must exist)."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a crash in between leaves a mismatched pair, which the next call replaces.
    atomic_write(key_path, _private_pem(key), _KEY_MODE)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    log.info("created kcore CA", path=str(cert_path))
    return cert, key


# --- serving certificate -------------------------------------------------------------------


def _serving_status(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    wanted: list[_San],
    now: dt.datetime,
) -> tuple[str | None, list[_San]]:
    """Why the serving certificate must be re-issued (None: it is fine), and its SANs."""
    if not cert_path.exists():
        return "missing", []
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return "unreadable", []
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not issued by the current CA", []
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        return "key does not match", []
    present = _cert_sans(cert)
    if cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return "expiring", present
    if cert.not_valid_before_utc > now:
        return "not yet valid", present
    missing = [h for h in wanted if h not in present]
    if missing:
        return f"new hosts {', '.join(map(str, missing))}", present
    return None, present


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """A KeyUsage with the usages named (by KeyUsage's argument names) and no other."""
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**{**flags, **allowed})


_EXTENDED_USAGES = {
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
}


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    usages: Iterable[str],
    sans: x509.SubjectAlternativeName | None = None,
    subject_key_identifier: bool = False,
) -> x509.Certificate:
    """A leaf certificate for ``subject`` and ``public_key`` signed by the CA, valid from
    ``not_before`` to ``not_after`` but never past the CA itself. ``usages`` are
    Kubernetes' names (``digital signature``, ``key encipherment``, ``client auth``,
    ``server auth``; others are left out); ``sans``: its alternative names."""
    wanted = set(usages)
    eku = [oid for usage, oid in _EXTENDED_USAGES.items() if usage in wanted]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(
                digital_signature="digital signature" in wanted,
                key_encipherment="key encipherment" in wanted,
            ),
            critical=True,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    if subject_key_identifier:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    return builder.sign(ca_key, hashes.SHA256())


def _issue_serving(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    sans: list[_San],
    now: dt.datetime,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    general: list[x509.GeneralName] = [
        x509.DNSName(h) if isinstance(h, str) else x509.IPAddress(h) for h in sans
    ]
    cert = issue_certificate(
        ca_cert,
        ca_key,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVING_COMMON_NAME)]),
        key.public_key(),
        not_before=now - CLOCK_SKEW,
        not_after=now + SERVING_VALIDITY,
        usages=("digital signature", "server auth"),
        sans=x509.SubjectAlternativeName(general),
        subject_key_identifier=True,
    )
    atomic_write(key_path, _private_pem(key), _KEY_MODE)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    return cert


def _cert_sans(cert: x509.Certificate) -> list[_San]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[_San] = [n.lower() for n in ext.get_values_for_type(x509.DNSName)]
    out.extend(ip for ip in ext.get_values_for_type(x509.IPAddress) if not _is_network(ip))
    return out


def _is_network(value: object) -> bool:
    return isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network)


def _normalise_hosts(hosts: Iterable[str]) -> list[_San]:
    """IP addresses as ``ipaddress`` objects, names lower-cased; duplicates dropped."""
    out: list[_San] = []
    for raw in hosts:
        host = str(raw).strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            continue
        value: _San
        try:
            value = ipaddress.ip_address(host)
        except ValueError:
            value = _dns_name(host)
        if value not in out:
            out.append(value)
    return out


def _dns_name(host: str) -> str:
    name = host.rstrip(".").lower()
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    if len(name) > 253 or not _DNS_NAME.match(name):
        raise ValueError(f"not an IP address or DNS name: {host!r}")
    return name


def _union(first: list[_San], second: list[_San]) -> list[_San]:
    out = list(first)
    out.extend(h for h in second if h not in out)
    return out


# --- token ---------------------------------------------------------------------------------


def _ensure_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("replacing unreadable admin token", error=str(exc))
        token = ""
    if token:
        return token
    token = secrets.token_urlsafe(32)
    atomic_write(path, (token + "\n").encode("ascii"), _KEY_MODE)
    return token


# --- service-account signing key ----------------------------------------------------------


def generate_service_account_key() -> bytes:
    """A new RSA private key for signing ServiceAccount tokens, as PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=SERVICE_ACCOUNT_KEY_SIZE)
    return _private_pem(key)


def _ensure_service_account_key(path: Path) -> bytes:
    """The signing key at ``path``; a missing or unusable one is replaced, which invalidates
    every token signed before."""
    try:
        pem = path.read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return pem
        log.warning("replacing service-account key: not an RSA key")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError) as exc:
        log.warning("replacing unusable service-account key", error=str(exc))
    pem = generate_service_account_key()
    atomic_write(path, pem, _KEY_MODE)
    log.info("created service-account signing key", path=str(path))
    return pem


# --- helpers -------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _private_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _KEY_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temp file beside ``path`` with ``mode``, fsync it, rename it over
    (and fsync the directory): a reader sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
