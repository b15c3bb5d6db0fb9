"""The host network: one address for every pod, no per-pod state."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kcore import FieldError, Invalid, NotFound, NotSupported, Settings
from kcore.netinfo import primary_address

PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})


class HostNetwork:
    """The network slot for pods in the node's namespace (see the package docstring)."""

    capabilities = frozenset({"survives_restart"})
    """Nothing is wired, so nothing is lost when the plugin restarts; pods have no address
    of their own and no network between them, and host ports are not forwarded (a server
    in the node's namespace is on its port already)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.interface, self.address = primary_address()

    def _answer(self) -> dict[str, Any]:
        return {
            "ips": [self.address],
            "interface": self.interface,
            "gateway": "",
            "routes": [],
            "dns": {"servers": [], "searches": [], "options": []},
        }

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """The node's address; the namespace must exist, and each host port must be its
        container port."""
        _check_port_mappings(config.get("port_mappings") or ())
        if not os.path.exists(netns_path):
            raise NotFound(f"network namespace {netns_path} does not exist")
        return self._answer()

    async def teardown_pod(self, pod_uid: str, netns_path: str | None) -> None:
        return None

    async def check_pod(self, pod_uid: str, netns_path: str) -> None:
        if not os.path.exists(netns_path):
            raise NotFound(f"network namespace {netns_path} of pod {pod_uid} does not exist")

    async def status(self) -> Mapping[str, Any]:
        return {
            "ready": True,
            "reason": "",
            "message": f"pods share the node's network namespace ({self.address})",
            "host_ip": self.address,
        }

    async def gc(self, live_pod_uids: Collection[str]) -> Sequence[str]:
        return []

    async def close(self) -> None:
        return None


def _check_port_mappings(mappings: Sequence[Mapping[str, Any]]) -> None:
    causes: list[FieldError] = []
    for i, mapping in enumerate(mappings):
        path = f"port_mappings[{i}]"
        protocol = str(mapping.get("protocol") or "TCP").upper()
        if protocol not in PROTOCOLS:
            causes.append(FieldError(f"{path}.protocol", f"{protocol!r} is not TCP, UDP or SCTP"))
        host_port = mapping.get("host_port") or 0
        container_port = mapping.get("container_port")
        if host_port and host_port != container_port:
            raise NotSupported(
                f"{path}: host port {host_port} differs from container port "
                f"{container_port}; with the host network a pod's port is the host's port, "
                "so net_host cannot map one to another"
            )
    if causes:
        raise Invalid(causes=causes)
