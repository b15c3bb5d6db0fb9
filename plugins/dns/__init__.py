"""dns: cluster DNS on every node, as CoreDNS with its ``kubernetes`` plugin (kubeadm's
set-up: ``pods insecure``, forwarding to the node's resolvers).

A node service (``cluster-dns``) serves DNS over UDP and TCP on port 53
(``--cluster-dns-port``) of the node's pod-network address (net_bridge's gateway, on the
bridge), and publishes that address so that ``dnsPolicy: ClusterFirst`` pods get it as their
nameserver, with the search path ``<ns>.svc.<domain> svc.<domain> <domain>`` and
``ndots:5``. A node whose network backend has no such address (net_host, none) serves and
publishes nothing; its pods keep the node's resolv.conf.

Names in the cluster domain (``--cluster-domain``, default ``cluster.local``) are answered
from Services and EndpointSlices (informers; :mod:`kcore.plugins.dns.records` lists the
records) with a TTL of ``--dns-ttl`` seconds (default 5). Other names are forwarded to
``--dns-upstream`` (``ip[:port]`` list; default the node's ``/etc/resolv.conf``
nameservers), SERVFAIL when none answers. The wire format is our own
(:mod:`kcore.plugins.dns.wire`): no dependency.

Not done: zone transfers, DNSSEC, a response cache, wildcard queries, the ``Endpoints``
kind (EndpointSlices only), per-namespace checks of pod names (``pods verified``).
"""

from __future__ import annotations

import click

from kcore import Settings, hookimpl


@hookimpl
def kcore_node_services(settings: Settings) -> list:
    from kcore.plugins.dns.service import ClusterDNS, DnsConfig

    return [ClusterDNS(DnsConfig.from_settings(settings))]


@hookimpl
def kcore_add_options() -> list[click.Option]:
    return [
        click.Option(
            ["--cluster-dns-port"],
            type=int,
            metavar="PORT",
            envvar="KCORE_CLUSTER_DNS_PORT",
            help="dns: the port cluster DNS serves on, UDP and TCP (default 53; pods' "
            "resolv.conf can only name port 53).",
        ),
        click.Option(
            ["--cluster-domain"],
            envvar="KCORE_CLUSTER_DOMAIN",
            help="dns: the cluster's DNS domain (default cluster.local).",
        ),
        click.Option(
            ["--dns-upstream"],
            metavar="IP[:PORT],...",
            envvar="KCORE_DNS_UPSTREAM",
            help="dns: resolvers for names outside the cluster domain (default: the "
            "nameservers of the node's /etc/resolv.conf).",
        ),
        click.Option(
            ["--dns-ttl"],
            type=int,
            metavar="SECONDS",
            envvar="KCORE_DNS_TTL",
            help="dns: TTL of the cluster's records (default 5).",
        ),
    ]


__all__ = ["kcore_add_options", "kcore_node_services"]
