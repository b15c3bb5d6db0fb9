"""The kcore daemon: the API server on the store slot, serving HTTPS with a bearer token
for the admin user (and ServiceAccount tokens), an admin kubeconfig written at start-up, and
the loop that gives every namespace its default ServiceAccount and root CA ConfigMap."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from kcore.apiserver.namespace_defaults import (
    ensure_namespace_defaults,
    maintain_namespace_defaults,
)
from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.apiserver.services import (
    DEFAULT_SERVICE_CLUSTER_IP_RANGE,
    DEFAULT_SERVICE_NODE_PORT_RANGE,
    ServiceAllocator,
    maintain_services,
    reconcile_services,
)
from kcore.apiserver.tokens import TokenIssuer
from kcore.errors import AlreadyExists
from kcore.plugin_host import PluginHost
from kcore.pods.tolerations import DEFAULT_TOLERATION_SECONDS
from kcore.settings import Settings

log = structlog.get_logger("kcore.daemon")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class DaemonOptions:
    bind_address: str = "127.0.0.1"
    port: int = 6443
    kubeconfig: Path | None = None
    compaction_interval: float = 300.0
    """Seconds between compactions; 0 turns them off."""
    node_agent: bool = True
    """Run a node agent (and the placeholder scheduler) in the daemon."""
    node_name: str | None = None
    """The node's name (default: the host name)."""
    controllers: bool = True
    """Run the controller manager (the loaded plugins' controllers, under leader election)."""
    node_ip: str | None = None
    """The node's InternalIP (default: the address of the default route's interface)."""
    pod_cidr_from_api: bool = False
    """Register the Node first and build the pod network on the pod CIDR the control plane
    gives it (also when ``--allocate-node-cidrs`` is on), unless ``--pod-cidr`` is set."""
    on_ready: Any = None
    """``async (objects, url, pki)`` called once the API server serves (``kcore init``)."""
    service_cluster_ip_range: str = DEFAULT_SERVICE_CLUSTER_IP_RANGE
    """The CIDR Service cluster IPs come from (``--service-cluster-ip-range``)."""
    service_node_port_range: str = DEFAULT_SERVICE_NODE_PORT_RANGE
    """The ports NodePort Services get (``--service-node-port-range``)."""


async def compact_forever(store, interval: float) -> None:
    """Compact like the Kubernetes API server does: each tick, forget history older than the
    revision seen at the previous tick, so watchers can resume within one interval."""
    previous: int | None = None
    while True:
        await asyncio.sleep(interval)
        current = await store.current_revision()
        if previous is not None and previous > 0:
            try:
                await store.compact(previous)
                log.debug("compacted", revision=previous)
            except Exception as exc:  # an older compaction or a busy store: try next tick
                log.warning("compaction failed", revision=previous, error=str(exc))
        previous = current


async def bootstrap(objects: ObjectStore, *, ca_pem: bytes | None = None) -> None:
    """Create the namespaces every cluster has, once, with their defaults (the root CA
    ConfigMap only given ``ca_pem``)."""
    from kcore.api.registry import by_resource

    info = by_resource("", "v1", "namespaces")
    assert info is not None
    for name in SYSTEM_NAMESPACES:
        with contextlib.suppress(AlreadyExists):
            await objects.create(info, None, {"metadata": {"name": name}})
        await ensure_namespace_defaults(objects, name, ca_pem=ca_pem)


def _endpoint_address(bind_address: str) -> str:
    """The address the ``kubernetes`` Service's endpoints name: the bound one, or for a
    wildcard bind the address of the host's default route."""
    if bind_address in ("0.0.0.0", "::", ""):
        from kcore.netinfo import primary_address

        return primary_address()[1]
    return bind_address


def _advertised_host(bind_address: str) -> str:
    if bind_address in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return bind_address


async def serve(host: PluginHost, settings: Settings, options: DaemonOptions) -> None:
    """Run until SIGTERM or SIGINT; end watch streams cleanly on the way out."""
    from kcore.apiserver.pki import ensure_pki, write_kubeconfig

    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await host.store(settings)
    runner: web.AppRunner | None = None
    node: Node | None = None
    defaults: asyncio.Future[None] | None = None
    services: asyncio.Future[None] | None = None
    manager: ControllerManagerHandle | None = None
    try:
        allocator = ServiceAllocator(
            store,
            cluster_ip_range=options.service_cluster_ip_range,
            node_port_range=options.service_node_port_range,
        )
        # DefaultTolerationSeconds follows the eviction timeout the controllers were given.
        seconds = settings.option("pod_eviction_timeout", DEFAULT_TOLERATION_SECONDS)
        objects = ObjectStore(
            store,
            services=allocator,
            toleration_seconds=float(seconds),
            admission_checks=host.admission_checks(settings),
        )
        advertised = _advertised_host(options.bind_address)
        pki = ensure_pki(data_dir, hosts=[advertised, options.bind_address, socket.gethostname()])
        await bootstrap(objects, ca_pem=pki.ca_pem)
        defaults = asyncio.ensure_future(maintain_namespace_defaults(objects, ca_pem=pki.ca_pem))
        issuer = TokenIssuer(pki.service_account_key_pem)
        server = APIServer(objects, token=pki.token, token_issuer=issuer)
        runner = web.AppRunner(server.app(), shutdown_timeout=5, access_log=None)
        await runner.setup()
        site = web.TCPSite(
            runner, options.bind_address, options.port, ssl_context=pki.ssl_context()
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        endpoint = _endpoint_address(options.bind_address)
        await reconcile_services(objects, port=port, address=endpoint)
        services = asyncio.ensure_future(maintain_services(objects, port=port, address=endpoint))
        url = f"https://{advertised}:{port}"
        kubeconfig = options.kubeconfig or data_dir / "admin.kubeconfig"
        write_kubeconfig(kubeconfig, server=url, ca_pem=pki.ca_pem, token=pki.token)
        log.info("api server listening", url=url, kubeconfig=str(kubeconfig))
        print(f"kcore API server listening on {url}", flush=True)
        print(f"export KUBECONFIG={kubeconfig}", flush=True)
        if options.on_ready is not None:
            await options.on_ready(objects, url, pki)
        if options.controllers:
            manager = start_controller_manager(host, settings, objects, issuer)
        if options.node_agent:
            from kcore.client import ApiClient
            from kcore.client.inprocess import InProcessTransport

            in_process = ApiClient(InProcessTransport(objects, token_issuer=issuer))
            node = await start_node(
                host,
                settings,
                options,
                kubeconfig,
                server,
                api=in_process,
                scheduler=not (options.controllers and _has_scheduler(host, settings)),
            )
        compactor = (
            asyncio.ensure_future(compact_forever(store, options.compaction_interval))
            if options.compaction_interval > 0
            else None
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
        if compactor is not None:
            compactor.cancel()
        if manager is not None:
            await manager.close()
            manager = None
        if node is not None:
            await node.close()
            node = None
    finally:
        if manager is not None:
            await manager.close()
        if node is not None:
            await node.close()
        if runner is not None:
            await runner.cleanup()
        for task in (defaults, services):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await store.close()


class ControllerManagerHandle:
    """The daemon's controller manager and the in-process API client it runs on."""

    def __init__(self, manager: Any, client: Any) -> None:
        self.manager = manager
        self.client = client

    async def close(self) -> None:
        """Stop every controller and release the leader Lease."""
        try:
            await self.manager.stop()
        finally:
            await self.client.close()


def start_controller_manager(
    host: PluginHost, settings: Settings, objects: ObjectStore, issuer: TokenIssuer | None
) -> ControllerManagerHandle | None:
    """Run the loaded plugins' controllers (``kcore_controllers``) in a
    :class:`~kcore.controllers.ControllerManager` over an in-process API client, under
    leader election on ``kube-system/kcore-controller-manager``; ``None`` when no plugin
    contributes a controller."""
    from kcore.client import ApiClient
    from kcore.client.inprocess import InProcessTransport
    from kcore.controllers import ControllerManager

    controllers = host.controllers(settings)
    if not controllers:
        return None
    client = ApiClient(InProcessTransport(objects, token_issuer=issuer))
    extra = {
        "scheduler_filters": host.scheduler_filters(settings),
        "scheduler_scores": host.scheduler_scores(settings),
    }
    manager = ControllerManager(client, controllers, settings, extra=extra)
    manager.start()
    identity = manager.elector.identity if manager.elector is not None else None
    log.info("controller manager started", identity=identity)
    return ControllerManagerHandle(manager, client)


class Node:
    """The node's part of the daemon: the node agent, the network and runtime backends,
    the placeholder scheduler, and the API client they share."""

    def __init__(self) -> None:
        self.client: Any = None
        self.backend: Any = None
        self.network: Any = None
        self.agent: Any = None
        self.scheduler: Any = None
        self.server: Any = None

    async def close(self) -> None:
        """Stop watching and syncing; pods keep running (the next start adopts them)."""
        if self.server is not None:
            self.server.pod_streams = None
        for part in (self.scheduler, self.agent):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.close()
        if self.network is not None:
            with contextlib.suppress(Exception):
                await self.network.close()
        if self.backend is not None and self.backend.close is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()
        if self.client is not None:
            await self.client.close()


async def start_node(
    host: PluginHost,
    settings: Settings,
    options: DaemonOptions,
    kubeconfig: Path,
    server: APIServer | None,
    *,
    scheduler: bool = True,
    api: Any = None,
) -> Node:
    """Start the node agent on the runtime, network and volume plugins loaded, and the
    placeholder scheduler that binds pods to it. They talk to the API through ``api``
    (in the daemon: in-process, no HTTP), else as ``kubeconfig`` says (over HTTPS, as a
    node agent on another machine does)."""
    from kcore.client import ApiClient
    from kcore.hookspecs import SLOT_HOOKS
    from kcore.nodeagent.agent import NodeAgent, default_node_name
    from kcore.placeholder_scheduler import PlaceholderScheduler

    node = Node()
    try:
        node.client = api if api is not None else ApiClient.from_kubeconfig(kubeconfig)
        node.backend = await host.runtime(settings)
        name = options.node_name or default_node_name()
        if any(SLOT_HOOKS["network"] in host.hooks_of(n) for n in host.names):
            if settings.option("pod_cidr") is None and (
                options.pod_cidr_from_api or settings.option("allocate_node_cidrs")
            ):
                from kcore.cluster import await_pod_cidr

                cidr = await await_pod_cidr(node.client, name)
                settings = dataclasses.replace(
                    settings, options={**settings.options, "pod_cidr": cidr}
                )
            node.network = await host.network(settings)
        node.agent = NodeAgent(
            node.client,
            node.backend,
            node_name=name,
            data_dir=Path(settings.data_dir),
            network=node.network,
            volume_sources=host.volume_sources(settings),
            node_ip=options.node_ip,
            pod_cidr=_pod_cidr(node.network),
            node_services=host.node_services(settings),
            settings=settings,
        )
        await node.agent.start()
        if server is not None:
            server.pod_streams = node.agent
            node.server = server
        if scheduler:
            node.scheduler = PlaceholderScheduler(node.client, name)
            await node.scheduler.start()
    except BaseException:
        await node.close()
        raise
    log.info("node agent running", node=name)
    return node


def _has_scheduler(host: PluginHost, settings: Settings) -> bool:
    """Whether a loaded plugin contributes the scheduler (a controller named
    ``scheduler``); without one the daemon binds pods to its own node."""
    return any(getattr(c, "name", None) == "scheduler" for c in host.controllers(settings))


def _pod_cidr(network: Any) -> str | None:
    cidr = getattr(getattr(network, "config", None), "pod_cidr", None)
    return str(cidr) if cidr is not None else None


async def serve_node(
    host: PluginHost,
    settings: Settings,
    kubeconfig: Path,
    node_name: str | None,
    *,
    node_ip: str | None = None,
    pod_cidr_from_api: bool = False,
) -> None:
    """A node agent alone, against the API server ``kubeconfig`` names (over HTTPS), until
    SIGTERM or SIGINT. Its pods keep running when it stops."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    options = DaemonOptions(
        node_name=node_name, node_ip=node_ip, pod_cidr_from_api=pod_cidr_from_api
    )
    node = await start_node(host, settings, options, kubeconfig, None, scheduler=False)
    print(f"kcore node agent running as node {node.agent.node_name}", flush=True)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await node.close()


def run(host: PluginHost, settings: Settings, options: DaemonOptions) -> None:
    asyncio.run(serve(host, settings, options))
