"""The kcore daemon: the API server on the store slot, serving HTTPS with a bearer token
for the admin user (and ServiceAccount tokens), an admin kubeconfig written at start-up, and
the loop that gives every namespace its default ServiceAccount and root CA ConfigMap."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from kcore.apiserver.namespace_defaults import (
    ensure_namespace_defaults,
    maintain_namespace_defaults,
)
from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.apiserver.tokens import TokenIssuer
from kcore.errors import AlreadyExists
from kcore.plugin_host import PluginHost
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
    defaults: asyncio.Future[None] | None = None
    try:
        objects = ObjectStore(store)
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
        url = f"https://{advertised}:{port}"
        kubeconfig = options.kubeconfig or data_dir / "admin.kubeconfig"
        write_kubeconfig(kubeconfig, server=url, ca_pem=pki.ca_pem, token=pki.token)
        log.info("api server listening", url=url, kubeconfig=str(kubeconfig))
        print(f"kcore API server listening on {url}", flush=True)
        print(f"export KUBECONFIG={kubeconfig}", flush=True)
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
    finally:
        if runner is not None:
            await runner.cleanup()
        if defaults is not None:
            defaults.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await defaults
        await store.close()


def run(host: PluginHost, settings: Settings, options: DaemonOptions) -> None:
    asyncio.run(serve(host, settings, options))
