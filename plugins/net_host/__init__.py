"""net_host: pods share the node's network namespace, as ``hostNetwork: true`` pods do.

Nothing is wired per pod: every pod's address is the node's primary address (the IPv4
address of the interface holding the default route, else 127.0.0.1), a host port is the
container port itself, and there is nothing to tear down or collect. For single-node
set-ups and tests where isolating pod networks is not wanted; the runtime must then run the
pods' processes in the node's namespace.
"""

from __future__ import annotations

from kcore import NetworkPlugin, Settings, hookimpl


@hookimpl
def kcore_network(settings: Settings) -> NetworkPlugin:
    from kcore.plugins.net_host.network import HostNetwork

    return HostNetwork(settings)
