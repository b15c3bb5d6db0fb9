"""net_bridge: pods on a Linux bridge of the node (the *network* slot), as CNI's bridge,
host-local and portmap plugins together.

- One bridge per node (``--bridge-name``, default ``kcore0``) holding the gateway, the
  first address of the node's pod CIDR (``--pod-cidr``, a part of ``--cluster-cidr``).
- Per pod a veth pair: the host half on the bridge, the other created directly inside the
  pod's network namespace as ``eth0``, with the pod's address, ``lo`` up and a default
  route via the gateway.
- Addresses from the pod CIDR, one file per address under ``<data-dir>/net_bridge/ipam``
  (as host-local: ``O_EXCL`` creation under an flock), so none is handed out twice, also
  across processes and restarts; per-pod records under ``<data-dir>/net_bridge/pods``.
- nftables table ``ip <--nft-table>``: masquerade for pod traffic leaving the cluster
  range, and hostPort DNAT (from other machines, from pods and from the node itself,
  127.0.0.1 included) through two maps, one element per host port.
- Unreachable routes (metric 4242) for the cluster range and the service range
  (``--service-cidr``): a packet for a pod or service address that no more specific route
  claims is refused on the node instead of leaving it. The node's own pod CIDR is a
  connected route of the bridge and wins.

Host-wide settings, made when the plugin starts and left as they are when it stops:
``net.ipv4.ip_forward = 1`` (pods reach beyond the node through it) and
``net.ipv4.conf.<bridge>.route_localnet = 1`` (so 127.0.0.1:hostPort can be DNAT-ed to a
pod). Errors: an exhausted pod CIDR is a :class:`kcore.TemporaryError` (pods come and go;
retry), raised before any interface is made.

The service proxy (``proxy.py``): a node service, ``service-proxy``, that programs
Services' ClusterIPs and NodePorts into a second nftables table, ``ip <--nft-table>_svc``,
one whole-table transaction per sync, random load balancing over ready endpoints, ClientIP
affinity, rejects for services without endpoints, masquerade for NodePort, same-bridge and
hairpin traffic. While it runs, the service range also has a route through the bridge
(metric 4200, source the gateway) so that the node itself reaches ClusterIPs; it goes with
the table when the proxy stops.

Routes to the other nodes' pods (``routes.py``): a node service, ``pod-routes``, that keeps
``<podCIDR> via <InternalIP>`` for every other Node on a directly connected subnet
(host-gateway), and removes the route when the Node goes.

A bridge that disappears is made again by the next set-up, with the recorded pods put
back on it (``status`` reports it missing meanwhile).

Not done: IPv6; a host firewall that drops forwarded packets is left alone (allow the
bridge's traffic there); conntrack entries of a torn-down UDP host port are not flushed.
One plugin object at a time per data dir.
"""

from __future__ import annotations

from pathlib import Path

import click

from kcore import Settings, hookimpl


async def create_network(settings: Settings, workers: int | None = None):
    """The network slot's backend for ``settings``: a
    :class:`~kcore.plugins.net_bridge.bridge.BridgeNetwork` on a set-up node."""
    from kcore.plugins.net_bridge.bridge import WORKERS, BridgeNetwork
    from kcore.plugins.net_bridge.config import BridgeConfig

    config = BridgeConfig.from_settings(settings)
    return await BridgeNetwork.create(
        config, Path(settings.data_dir) / "net_bridge", workers=workers or WORKERS
    )


@hookimpl
def kcore_network(settings: Settings):
    return create_network(settings)


@hookimpl
def kcore_node_services(settings: Settings):
    from kcore.plugins.net_bridge.proxy import ServiceProxy
    from kcore.plugins.net_bridge.routes import PodRoutes

    return [ServiceProxy(), PodRoutes()]


@hookimpl
def kcore_add_options():
    return [
        click.Option(
            ["--bridge-name"],
            envvar="KCORE_BRIDGE_NAME",
            help="net_bridge: the node's bridge (default kcore0; at most 15 characters).",
        ),
        click.Option(
            ["--cluster-cidr"],
            envvar="KCORE_CLUSTER_CIDR",
            help="net_bridge: every pod address of the cluster (default 10.244.0.0/16).",
        ),
        click.Option(
            ["--pod-cidr"],
            envvar="KCORE_POD_CIDR",
            help="net_bridge: this node's pod addresses, inside --cluster-cidr; the first "
            "is the gateway on the bridge (default 10.244.0.0/24).",
        ),
        click.Option(
            ["--service-cidr"],
            envvar="KCORE_SERVICE_CIDR",
            help="net_bridge: service addresses, unreachable unless a proxy rewrites them "
            "(default 10.96.0.0/12).",
        ),
        click.Option(
            ["--nft-table"],
            envvar="KCORE_NFT_TABLE",
            help="net_bridge: the nftables table (family ip) for masquerade and host ports "
            "(default kcore).",
        ),
    ]
