"""Real etcd servers on loopback for store_etcd's tests.

Ports are chosen free at run time, names are unique to the run, data lives on /dev/shm
(tmpfs: etcd 3.4 has no ``--unsafe-no-fsync``) when there is one, and logs under the test's
``tmp_path``. A server is stopped by the pid recorded when it started, never by name, and
:func:`running_clusters` stops and removes everything it started also when a test fails.
A missing etcd binary fails the test loudly: CI installs ``etcd-server``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 30.0
_names = itertools.count()


def etcd_binary() -> str:
    path = os.environ.get("KCORE_ETCD_BINARY") or shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no etcd binary at {path}: store_etcd's tests run real etcd servers "
            "(Debian: apt-get install etcd-server; or set KCORE_ETCD_BINARY)",
            pytrace=False,
        )
    return path


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (all held open together, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA with a server certificate (IP 127.0.0.1) and a client certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("kcore-test-ca"))
        .issuer_name(name("kcore-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, usage: x509.ObjectIdentifier, stem: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key_path, key)
        return cert_path, key_path

    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = issue("etcd", ExtendedKeyUsageOID.SERVER_AUTH, "server")
    client = issue("kcore", ExtendedKeyUsageOID.CLIENT_AUTH, "client")
    return TlsFiles(ca_path, *server, *client)


class EtcdMember:
    """One etcd process: started, stopped and restarted on the same ports and data."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        log_path: Path,
        client_port: int,
        peer_port: int,
        tls: TlsFiles | None,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.log_path = log_path
        self.client_port = client_port
        self.peer_port = peer_port
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"EtcdMember({self.name}, {self.client_url}, pid={self.pid})"

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, initial_cluster: str) -> None:
        assert not self.running, f"{self} is running already"
        args = [
            etcd_binary(),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-token={self.name.rsplit('-', 1)[0]}",
            "--initial-cluster-state=new",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.tls is not None:
            args += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {' '.join(args)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.pid = self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Send ``sig`` to the recorded pid and wait; SIGKILL if it does not end in time."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def _get(self, path: str) -> bytes:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        with urllib.request.urlopen(self.client_url + path, timeout=2, context=context) as r:
            return r.read()

    def healthy(self) -> bool:
        try:
            return json.loads(self._get("/health")).get("health") == "true"
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def status(self) -> dict[str, str]:
        """The member's id and its leader's (etcd's JSON gateway)."""
        request = urllib.request.Request(self.client_url + "/v3/maintenance/status", data=b"{}")
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        with urllib.request.urlopen(request, timeout=2, context=context) as r:
            body = json.loads(r.read())
        return {"id": body["header"]["member_id"], "leader": body["leader"]}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


class EtcdCluster:
    """``size`` members of one cluster on loopback."""

    def __init__(self, data_root: Path, log_root: Path, size: int, tls: TlsFiles | None) -> None:
        run = f"kcore-{os.getpid()}-{next(_names)}"
        ports = free_ports(2 * size)
        self.members = [
            EtcdMember(
                f"{run}-{i}",
                data_root / f"{run}-{i}",
                log_root / f"{run}-{i}.log",
                ports[2 * i],
                ports[2 * i + 1],
                tls,
            )
            for i in range(size)
        ]
        self.tls = tls
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def start(self, *members: EtcdMember) -> None:
        """Start ``members`` (default: all) and wait until they are healthy."""
        members = members or tuple(self.members)
        for member in members:
            member.start(self.initial_cluster)
        self.wait_healthy(*members)

    def wait_healthy(self, *members: EtcdMember) -> None:
        members = members or tuple(m for m in self.members if m.running)
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(members)
        while waiting:
            for member in list(waiting):
                if not member.running:
                    raise AssertionError(
                        f"etcd {member.name} exited while starting:\n{member.log_tail()}"
                    )
                if member.healthy():
                    waiting.remove(member)
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(f"--- {m.name}\n{m.log_tail()}" for m in waiting)
                raise AssertionError(f"etcd not healthy after {START_TIMEOUT:g} s:\n{tails}")
            if waiting:
                time.sleep(0.05)

    def leader(self) -> EtcdMember:
        for member in self.members:
            if member.running:
                status = member.status()
                for candidate in self.members:
                    if candidate.running and candidate.status()["id"] == status["leader"]:
                        return candidate
        raise AssertionError("the cluster has no leader")

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@contextlib.contextmanager
def running_clusters(log_root: Path) -> Iterator[object]:
    """A factory ``make(size=1, tls=None) -> EtcdCluster`` of started clusters; on exit
    every member is stopped by its pid and the data is removed, whatever happened."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    data_root = Path(tempfile.mkdtemp(prefix=f"kcore-etcd-{os.getpid()}-", dir=base))
    clusters: list[EtcdCluster] = []

    def make(size: int = 1, tls: TlsFiles | None = None) -> EtcdCluster:
        etcd_binary()
        cluster = EtcdCluster(data_root, log_root, size, tls)
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        try:
            for cluster in clusters:
                cluster.stop()
        finally:
            shutil.rmtree(data_root, ignore_errors=True)
