"""``kcore init`` and ``kcore join``: clusters of several nodes, as kubeadm builds them.

``kcore init`` runs the daemon as a control plane (API server bound to the advertise
address, controllers with ``--allocate-node-cidrs``, scheduler and, by default, a node
agent) and, once the API server serves, publishes what a joining node needs:

* a bootstrap token: the Secret ``kube-system/bootstrap-token-<id>`` (``--token`` or a new
  one, valid ``--token-ttl``; a re-run reuses the last one while it is valid, kept in
  ``<data-dir>/bootstrap-token``);
* the ConfigMap ``kube-public/cluster-info`` (readable anonymously): the API server's
  address and CA as a kubeconfig, signed per token (``jws-kubeconfig-<id>``);
* the ConfigMap ``kube-system/kubeadm-config``: the pod and service ranges;

then prints the exact ``kcore join`` command, the CA pinned by its public key's hash.

``kcore join <address> --token <t> --discovery-token-ca-cert-hash sha256:<h>`` fetches
``cluster-info`` without trusting the server yet, checks the signature of the token (a
wrong token stops here) and the hash of the CA (a wrong hash stops here), then talks TLS
verified, authenticated with the token: it creates a CertificateSigningRequest for
``system:node:<name>`` (``O=system:nodes``), waits for the control plane to approve and
sign it, saves ``<data-dir>/kubelet.kubeconfig`` with the certificate (a restart reuses it)
and runs the node agent with it: the Node registers, waits for its pod CIDR and builds its
pod network on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import structlog

from kcore.errors import AlreadyExists, KcoreError, NotFound

# Heavier modules (aiohttp, cryptography, yaml, the API server's) are imported where they
# are used, so that every other kcore command starts as fast as before.

log = structlog.get_logger("kcore.cluster")

__all__ = [
    "CLUSTER_CONFIG_NAME",
    "DEFAULT_POD_NETWORK_CIDR",
    "DEFAULT_SERVICE_CIDR",
    "KUBELET_KUBECONFIG",
    "JoinRefused",
    "await_pod_cidr",
    "init_cmd",
    "join_cmd",
    "parse_duration",
]

DEFAULT_POD_NETWORK_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_TOKEN_TTL = "24h"
KUBELET_KUBECONFIG = "kubelet.kubeconfig"
TOKEN_FILE = "bootstrap-token"
CLUSTER_CONFIG_NAME = "kubeadm-config"
POD_CIDR_TIMEOUT = 120.0
DISCOVERY_TIMEOUT = 300.0
CSR_TIMEOUT = 120.0
_HASH = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class JoinRefused(KcoreError):
    """The cluster or this node's input says no: the message says which and why."""

    code = 403
    reason = "Forbidden"


def parse_duration(text: str) -> float | None:
    """Seconds of a Go duration (``24h``, ``1h30m``, ``90s``); ``0`` means never (None)."""
    value = text.strip()
    if value in ("0", "0s"):
        return None
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        number, unit = float(match.group(1)), match.group(2)
        total += number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        pos = match.end()
    if pos != len(value) or not value:
        raise click.BadParameter(f"{text!r} is not a duration such as 24h, 30m or 0 (never)")
    return total


# --- the node's pod CIDR -----------------------------------------------------------------------


async def await_pod_cidr(api: Any, node_name: str, *, timeout: float = POD_CIDR_TIMEOUT) -> str:
    """Register the Node (when it does not exist yet) and wait until the control plane
    gives it ``spec.podCIDR``; return that."""
    from kcore.client import Informer

    try:
        node = await api.get("v1", "Node", node_name)
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            node = await api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node_name,
                        "labels": {
                            "kubernetes.io/hostname": node_name,
                            "kubernetes.io/os": "linux",
                        },
                    },
                }
            )
        node = await api.get("v1", "Node", node_name)
    cidr = (node.get("spec") or {}).get("podCIDR")
    if cidr:
        return str(cidr)
    got = asyncio.Event()
    found: list[str] = []

    def seen(*objs: Any) -> None:
        obj = objs[-1]
        value = (obj.get("spec") or {}).get("podCIDR")
        if value and not found:
            found.append(str(value))
            got.set()

    informer = Informer(api, "v1", "Node", field_selector=f"metadata.name={node_name}")
    informer.on_add(seen)
    informer.on_update(seen)
    log.info("waiting for the control plane to assign a pod CIDR", node=node_name)
    informer.start()
    try:
        async with asyncio.timeout(timeout):
            await got.wait()
    except TimeoutError:
        raise KcoreError(
            f"node {node_name} got no pod CIDR from the control plane within {timeout:.0f}s "
            "(does its controller manager run with --allocate-node-cidrs? else give "
            "--pod-cidr)"
        ) from None
    finally:
        await informer.stop()
    log.info("pod CIDR assigned", node=node_name, cidr=found[0])
    return found[0]


# --- init ---------------------------------------------------------------------------------------


def _kubeconfig_text(server: str, ca_pem: bytes) -> str:
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "",
                "cluster": {
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                    "server": server,
                },
            }
        ],
        "contexts": None,
        "current-context": "",
        "preferences": {},
        "users": None,
    }
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) through a temp file and a rename."""
    from kcore.apiserver.pki import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, 0o600)


@dataclass
class ControlPlane:
    """What ``kcore init`` publishes once the API server serves (see the module docstring)."""

    data_dir: Path
    pod_network_cidr: str
    service_cidr: str
    token: str | None = None
    token_ttl: float | None = 24 * 3600.0
    endpoint: str = ""
    """``host:port`` of the API server, set when it serves."""
    ca_hash: str = ""

    async def publish(self, objects: Any, url: str, pki: Any) -> None:
        """The daemon's ``on_ready``: token, cluster-info, cluster config, join command."""
        from kcore.apiserver import bootstrap_auth

        self.endpoint = url.removeprefix("https://")
        self.ca_hash = bootstrap_auth.ca_cert_hash(pki.ca_pem)
        token = await self.ensure_token(objects)
        await self.publish_cluster_info(objects, url, pki.ca_pem, token)
        await self.publish_cluster_config(objects)
        print(
            "Your kcore control plane has initialized successfully!\n"
            "Join any number of nodes by running the following on each as root:\n",
            flush=True,
        )
        print(self.join_command(token), flush=True)

    def join_command(self, token: str) -> str:
        return (
            f"kcore join {self.endpoint} --token {token} "
            f"--discovery-token-ca-cert-hash {self.ca_hash}"
        )

    async def ensure_token(self, objects: Any) -> str:
        """The token to print: ``--token`` (stored, its expiry renewed), else the saved one
        while its Secret is valid, else a new one."""
        from kcore.api.registry import by_resource
        from kcore.apiserver import bootstrap_auth

        info = by_resource("", "v1", "secrets")
        assert info is not None
        path = self.data_dir / TOKEN_FILE
        if self.token is None:
            with contextlib.suppress(OSError, ValueError):
                saved = path.read_text().strip()
                bootstrap_auth.parse_token(saved)
                with contextlib.suppress(KcoreError):
                    await bootstrap_auth.authenticate_bootstrap_token(objects, saved)
                    return saved
        token = self.token or bootstrap_auth.generate_token()
        expires = (
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.token_ttl)
            if self.token_ttl is not None
            else None
        )
        secret = bootstrap_auth.bootstrap_token_secret(
            token, expires=expires, description="The bootstrap token kcore init made."
        )
        name = secret["metadata"]["name"]
        try:
            await objects.create(info, "kube-system", secret)
        except AlreadyExists:
            await objects.update(info, "kube-system", name, secret)
        _write_private(path, (token + "\n").encode())
        return token

    async def publish_cluster_info(self, objects: Any, url: str, ca_pem: bytes, token: str) -> None:
        from kcore.api.registry import by_resource
        from kcore.apiserver import bootstrap_auth

        cm_info = by_resource("", "v1", "configmaps")
        secret_info = by_resource("", "v1", "secrets")
        assert cm_info is not None and secret_info is not None
        kubeconfig = _kubeconfig_text(url, ca_pem)
        data = {"kubeconfig": kubeconfig}
        try:
            current = await objects.get(
                cm_info, bootstrap_auth.CLUSTER_INFO_NAMESPACE, bootstrap_auth.CLUSTER_INFO_NAME
            )
        except NotFound:
            current = None
        if current is not None and (current.get("data") or {}).get("kubeconfig") == kubeconfig:
            for key, value in (current.get("data") or {}).items():
                token_id = key.removeprefix(bootstrap_auth.JWS_KEY_PREFIX)
                if key.startswith(bootstrap_auth.JWS_KEY_PREFIX):
                    with contextlib.suppress(NotFound):
                        await objects.get(
                            secret_info,
                            "kube-system",
                            bootstrap_auth.TOKEN_SECRET_PREFIX + token_id,
                        )
                        data[key] = value
        token_id, _ = bootstrap_auth.parse_token(token)
        data[bootstrap_auth.JWS_KEY_PREFIX + token_id] = bootstrap_auth.detached_jws(
            kubeconfig, token
        )
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": bootstrap_auth.CLUSTER_INFO_NAME,
                "namespace": bootstrap_auth.CLUSTER_INFO_NAMESPACE,
            },
            "data": data,
        }
        await _upsert(objects, cm_info, bootstrap_auth.CLUSTER_INFO_NAMESPACE, body)

    async def publish_cluster_config(self, objects: Any) -> None:
        import yaml

        import kcore
        from kcore.api.registry import by_resource

        info = by_resource("", "v1", "configmaps")
        assert info is not None
        config = {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "clusterName": "kubernetes",
            "controlPlaneEndpoint": self.endpoint,
            "kubernetesVersion": f"v1.30.0-kcore.{kcore.__version__}",
            "networking": {
                "dnsDomain": "cluster.local",
                "podSubnet": self.pod_network_cidr,
                "serviceSubnet": self.service_cidr,
            },
        }
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CLUSTER_CONFIG_NAME, "namespace": "kube-system"},
            "data": {"ClusterConfiguration": yaml.safe_dump(config, sort_keys=False)},
        }
        await _upsert(objects, info, "kube-system", body)


async def _upsert(objects: Any, info: Any, namespace: str, body: dict[str, Any]) -> None:
    try:
        await objects.create(info, namespace, body)
    except AlreadyExists:
        await objects.update(info, namespace, body["metadata"]["name"], body)


def _check_cidr(value: str, option: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an IPv4 CIDR ({exc})", param_hint=option
        ) from None
    return str(net)


class _OwnOptionsYield(click.Command):
    """A command whose own options give way to a plugin option with the same flag
    (``--service-cidr`` is net_bridge's when net_bridge is loaded)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        taken = {o for p in self.params if getattr(p, "_kcore_plugin", False) for o in p.opts}
        saved = self.params
        self.params = [
            p for p in saved if getattr(p, "_kcore_plugin", False) or not set(p.opts) & taken
        ]
        try:
            return super().get_params(ctx)
        finally:
            self.params = saved


admin_kubeconfig_option = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the admin kubeconfig (default <data-dir>/admin.kubeconfig).",
)
"""``--kubeconfig`` of the commands that start a control plane (``kcore daemon``, ``init``)."""


@click.command("init", cls=_OwnOptionsYield)
@click.option(
    "--advertise-address",
    help="The address the API server binds to and advertises, and this node's InternalIP "
    "(default: the address of the default route's interface).",
)
@click.option(
    "--port",
    "--apiserver-bind-port",
    "port",
    default=6443,
    show_default=True,
    type=int,
    help="The API server's HTTPS port.",
)
@click.option(
    "--pod-network-cidr",
    default=DEFAULT_POD_NETWORK_CIDR,
    show_default=True,
    help="Every pod address of the cluster; each node gets a part (--node-cidr-mask-size).",
)
@click.option(
    "--service-cidr",
    default=None,
    help=f"Service addresses (default {DEFAULT_SERVICE_CIDR}).",
)
@click.option("--token", help="The bootstrap token to use ([a-z0-9]{6}.[a-z0-9]{16}).")
@click.option(
    "--token-ttl",
    default=DEFAULT_TOKEN_TTL,
    show_default=True,
    help="How long the bootstrap token is valid (0: forever).",
)
@click.option("--node-name", help="This node's name (default: the host name).")
@click.option(
    "--node-agent/--no-node-agent",
    default=None,
    help="Run a node agent on the control plane (default: when a runtime plugin is loaded).",
)
@admin_kubeconfig_option
@click.pass_context
def init_cmd(
    ctx: click.Context,
    advertise_address: str | None,
    port: int,
    pod_network_cidr: str,
    token: str | None,
    token_ttl: str,
    node_name: str | None,
    node_agent: bool | None,
    kubeconfig: Path | None,
    service_cidr: str | None = None,
) -> None:
    """Start a control plane that other nodes join (as kubeadm init), and print the
    command that joins them."""
    from kcore.apiserver import bootstrap_auth
    from kcore.daemon import DaemonOptions, run
    from kcore.netinfo import primary_address
    from kcore.settings import Settings

    state = ctx.obj
    state.host.slot_owner("store")
    if node_agent is None:
        node_agent = "runtime" in {slot for i in state.host.info() for slot in i.slots}
    if node_agent:
        state.host.slot_owner("runtime")
    if token is not None:
        try:
            bootstrap_auth.parse_token(token)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--token") from None
    ttl = parse_duration(token_ttl)
    address = advertise_address or primary_address()[1]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise click.BadParameter(
            f"{address!r} is not an IP address", param_hint="--advertise-address"
        ) from None
    options = dict(state.options)
    pod_cidr = _check_cidr(pod_network_cidr, "--pod-network-cidr")
    if options.get("cluster_cidr") and str(options["cluster_cidr"]) != pod_cidr:
        raise click.UsageError(
            f"--cluster-cidr {options['cluster_cidr']} and --pod-network-cidr {pod_cidr} differ"
        )
    service = _check_cidr(
        str(options.get("service_cidr") or service_cidr or DEFAULT_SERVICE_CIDR), "--service-cidr"
    )
    options.update(cluster_cidr=pod_cidr, service_cidr=service, allocate_node_cidrs=True)
    settings = Settings(data_dir=state.data_dir, options=options)
    plane = ControlPlane(state.data_dir, pod_cidr, service, token=token, token_ttl=ttl)
    daemon_options: dict[str, Any] = {
        "bind_address": address,
        "port": port,
        "kubeconfig": kubeconfig,
        "node_agent": node_agent,
        "node_name": node_name,
        "node_ip": address,
        "pod_cidr_from_api": True,
        "on_ready": plane.publish,
    }
    if "service_cluster_ip_range" in DaemonOptions.__dataclass_fields__:
        daemon_options["service_cluster_ip_range"] = service
    run(state.host, settings, DaemonOptions(**daemon_options))


# --- join ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterInfo:
    server: str
    ca_pem: bytes


def _endpoint_url(address: str) -> str:
    address = address.strip().rstrip("/")
    if address.startswith("https://"):
        return address
    if address.startswith("http://"):
        raise click.BadParameter("the API server speaks HTTPS", param_hint="ADDRESS")
    return f"https://{address}" if ":" in address.rsplit("]", 1)[-1] else f"https://{address}:6443"


def _check_hashes(hashes: tuple[str, ...], skip: bool) -> list[str]:
    out = []
    for value in hashes:
        match = _HASH.match(value.strip())
        if match is None:
            raise click.BadParameter(
                f"{value!r} is not of the form sha256:<64 hex digits>",
                param_hint="--discovery-token-ca-cert-hash",
            )
        out.append("sha256:" + match.group(1).lower())
    if not out and not skip:
        raise click.UsageError(
            "give --discovery-token-ca-cert-hash (kcore init prints it), or accept any CA "
            "with --discovery-token-unsafe-skip-ca-verification"
        )
    return out


async def fetch_cluster_info(
    endpoint: str, token: str, ca_hashes: list[str], *, timeout: float = DISCOVERY_TIMEOUT
) -> ClusterInfo:
    """The API server and CA of ``cluster-info``, once the token's signature and the CA's
    hash check out; retried while the server cannot be reached or has no cluster-info."""
    import ssl

    import aiohttp
    import yaml

    from kcore.apiserver import bootstrap_auth

    token_id, _ = bootstrap_auth.parse_token(token)
    url = (
        f"{endpoint}/api/v1/namespaces/{bootstrap_auth.CLUSTER_INFO_NAMESPACE}"
        f"/configmaps/{bootstrap_auth.CLUSTER_INFO_NAME}"
    )
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    last = ""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=insecure)) as session:
        while True:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status == 200:
                        body = await resp.json(content_type=None)
                        break
                    text = (await resp.text())[:200]
                    if resp.status in (401, 403):
                        raise JoinRefused(
                            f"the API server at {endpoint} does not let anyone read "
                            f"kube-public/cluster-info ({resp.status}): is it a kcore "
                            "control plane made by kcore init?"
                        )
                    last = f"{resp.status}: {text}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            if time.monotonic() > deadline:
                raise JoinRefused(
                    f"could not fetch cluster-info from {endpoint} within {timeout:.0f}s: {last}"
                )
            log.info("waiting for cluster-info", endpoint=endpoint, last=last)
            await asyncio.sleep(2)
    data = body.get("data") or {} if isinstance(body, dict) else {}
    kubeconfig = data.get("kubeconfig")
    if not isinstance(kubeconfig, str):
        raise JoinRefused(f"the cluster-info ConfigMap at {endpoint} holds no kubeconfig")
    signature = data.get(bootstrap_auth.JWS_KEY_PREFIX + token_id)
    if not signature:
        raise JoinRefused(
            f'the bootstrap token "{token_id}" is not valid for this cluster or has expired: '
            "cluster-info holds no signature made with it (kcore init prints a valid token)"
        )
    if not bootstrap_auth.verify_detached_jws(kubeconfig, signature, token):
        raise JoinRefused(
            f'the bootstrap token "{token_id}" is wrong: its secret does not match the '
            "signature of cluster-info, so this API server cannot be trusted with it"
        )
    try:
        config = yaml.safe_load(kubeconfig)
        cluster = config["clusters"][0]["cluster"]
        server = str(cluster["server"])
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        found = bootstrap_auth.ca_cert_hash(ca_pem)
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise JoinRefused(f"the cluster-info kubeconfig is unusable: {exc}") from None
    if ca_hashes and found not in ca_hashes:
        raise JoinRefused(
            f"the cluster CA found in cluster-info has the public key hash {found}, which "
            f"does not match the pinned --discovery-token-ca-cert-hash "
            f"{', '.join(ca_hashes)}: refusing to trust this API server"
        )
    return ClusterInfo(server, ca_pem)


def node_key_and_request(node_name: str) -> tuple[bytes, bytes]:
    """A new EC P-256 key and a CSR for ``CN=system:node:<name>, O=system:nodes`` (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from kcore.apiserver import bootstrap_auth

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, bootstrap_auth.NODES_GROUP),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


async def request_node_certificate(
    info: ClusterInfo, token: str, node_name: str, *, timeout: float = CSR_TIMEOUT
) -> tuple[bytes, bytes]:
    """``(certificate PEM, key PEM)`` for ``system:node:<node_name>``, through a
    CertificateSigningRequest made with the bootstrap token."""
    from kcore.apiserver import bootstrap_auth
    from kcore.client import ApiClient, HttpTransport

    key_pem, csr_pem = node_key_and_request(node_name)
    token_id, _ = bootstrap_auth.parse_token(token)
    api = ApiClient(HttpTransport(info.server, token=token, ca_data=info.ca_pem.decode()))
    try:
        try:
            csr = await api.create(
                {
                    "apiVersion": "certificates.k8s.io/v1",
                    "kind": "CertificateSigningRequest",
                    "metadata": {"generateName": "node-csr-"},
                    "spec": {
                        "request": base64.b64encode(csr_pem).decode("ascii"),
                        "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                        "usages": ["digital signature", "client auth"],
                    },
                }
            )
        except KcoreError as exc:
            if exc.code == 401:
                raise JoinRefused(
                    f'the API server refused the bootstrap token "{token_id}" (401 '
                    "Unauthorized): it is wrong or has expired"
                ) from None
            raise
        name = csr["metadata"]["name"]
        print(f"Waiting for the control plane to sign certificate request {name}", flush=True)
        deadline = time.monotonic() + timeout
        while True:
            csr = await api.get("certificates.k8s.io/v1", "CertificateSigningRequest", name)
            status = csr.get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("type") in ("Denied", "Failed"):
                    raise JoinRefused(
                        f"certificate request {name} was {condition['type'].lower()}: "
                        f"{condition.get('message') or condition.get('reason') or ''}"
                    )
            if status.get("certificate"):
                return base64.b64decode(status["certificate"]), key_pem
            if time.monotonic() > deadline:
                raise JoinRefused(
                    f"certificate request {name} was not signed within {timeout:.0f}s "
                    f"(approve it with: kubectl certificate approve {name})"
                )
            await asyncio.sleep(0.5)
    finally:
        await api.close()


def write_node_kubeconfig(
    path: Path, info: ClusterInfo, cert_pem: bytes, key_pem: bytes, node_name: str
) -> None:
    import yaml

    user = f"system:node:{node_name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kcore",
                "cluster": {
                    "server": info.server,
                    "certificate-authority-data": base64.b64encode(info.ca_pem).decode(),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": base64.b64encode(cert_pem).decode(),
                    "client-key-data": base64.b64encode(key_pem).decode(),
                },
            }
        ],
        "contexts": [{"name": "kcore", "context": {"cluster": "kcore", "user": user}}],
        "current-context": "kcore",
        "preferences": {},
    }
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())


def saved_credentials_usable(path: Path) -> bool:
    """Whether ``path`` is a node kubeconfig whose certificate is still valid for a day."""
    from cryptography import x509

    from kcore.client.kubeconfig import KubeconfigError, load_kubeconfig

    try:
        config = load_kubeconfig(path)
        cert = x509.load_pem_x509_certificate((config.client_cert_data or "").encode())
    except (KubeconfigError, ValueError, OSError):
        return False
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


async def cluster_networking(kubeconfig: Path) -> dict[str, str]:
    """``networking`` of ``kube-system/kubeadm-config`` (empty when there is none)."""
    import yaml

    from kcore.client import ApiClient

    api = ApiClient.from_kubeconfig(kubeconfig)
    try:
        cm = await api.get("v1", "ConfigMap", CLUSTER_CONFIG_NAME, namespace="kube-system")
    except NotFound:
        return {}
    finally:
        await api.close()
    with contextlib.suppress(yaml.YAMLError, AttributeError, TypeError):
        config = yaml.safe_load((cm.get("data") or {}).get("ClusterConfiguration") or "")
        return {k: str(v) for k, v in (config.get("networking") or {}).items()}
    return {}


async def join(
    host: Any,
    settings: Any,
    *,
    address: str,
    token: str,
    ca_hashes: list[str],
    node_name: str,
    node_ip: str | None,
    discovery_timeout: float = DISCOVERY_TIMEOUT,
) -> None:
    """Get this node's credentials (unless saved ones are still good), then run its node
    agent on the cluster's pod and service ranges until SIGTERM or SIGINT."""
    from kcore.daemon import serve_node
    from kcore.settings import Settings

    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = data_dir / KUBELET_KUBECONFIG
    if saved_credentials_usable(kubeconfig):
        print(f"Using the node credentials in {kubeconfig}", flush=True)
    else:
        endpoint = _endpoint_url(address)
        info = await fetch_cluster_info(endpoint, token, ca_hashes, timeout=discovery_timeout)
        print(f"Found the cluster at {info.server}; the CA and the token check out", flush=True)
        cert_pem, key_pem = await request_node_certificate(info, token, node_name)
        write_node_kubeconfig(kubeconfig, info, cert_pem, key_pem, node_name)
        print(f"This node has joined the cluster: credentials in {kubeconfig}", flush=True)
    networking = await cluster_networking(kubeconfig)
    options = dict(settings.options)
    for option, key in (("cluster_cidr", "podSubnet"), ("service_cidr", "serviceSubnet")):
        cluster_value = networking.get(key)
        if not cluster_value:
            continue
        if options.get(option) and str(options[option]) != cluster_value:
            raise JoinRefused(
                f"--{option.replace('_', '-')} {options[option]} differs from the cluster's "
                f"{cluster_value}"
            )
        options[option] = cluster_value
    await serve_node(
        host,
        Settings(data_dir=data_dir, options=options),
        kubeconfig,
        node_name,
        node_ip=node_ip,
        pod_cidr_from_api=True,
    )


@click.command("join")
@click.argument("address")
@click.option("--token", required=True, help="The bootstrap token kcore init printed.")
@click.option(
    "--discovery-token-ca-cert-hash",
    "--ca-cert-hash",
    "ca_cert_hashes",
    multiple=True,
    metavar="sha256:HEX",
    help="The hash of the cluster CA's public key that kcore init printed (repeatable).",
)
@click.option(
    "--discovery-token-unsafe-skip-ca-verification",
    "skip_ca_verification",
    is_flag=True,
    help="Trust whatever CA cluster-info names (no pin).",
)
@click.option("--node-name", help="This node's name (default: the host name).")
@click.option(
    "--node-ip",
    help="This node's InternalIP (default: the address of the default route's interface).",
)
@click.option(
    "--discovery-timeout",
    default=DISCOVERY_TIMEOUT,
    show_default=True,
    type=float,
    metavar="SECONDS",
    help="How long to keep trying to reach the control plane.",
)
@click.pass_context
def join_cmd(
    ctx: click.Context,
    address: str,
    token: str,
    ca_cert_hashes: tuple[str, ...],
    skip_ca_verification: bool,
    node_name: str | None,
    node_ip: str | None,
    discovery_timeout: float = DISCOVERY_TIMEOUT,
) -> None:
    """Join this machine to a cluster as a node (as kubeadm join), then run its node
    agent: ADDRESS is the control plane's host:port."""
    from kcore.apiserver import bootstrap_auth
    from kcore.nodeagent.agent import default_node_name

    state = ctx.obj
    state.host.slot_owner("runtime")
    try:
        bootstrap_auth.parse_token(token)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token") from None
    hashes = _check_hashes(ca_cert_hashes, skip_ca_verification)
    if node_ip is not None:
        try:
            ipaddress.ip_address(node_ip)
        except ValueError:
            raise click.BadParameter(
                f"{node_ip!r} is not an IP address", param_hint="--node-ip"
            ) from None
    asyncio.run(
        join(
            state.host,
            state.settings,
            address=address,
            token=token,
            ca_hashes=hashes,
            node_name=node_name or default_node_name(),
            node_ip=node_ip,
            discovery_timeout=discovery_timeout,
        )
    )
