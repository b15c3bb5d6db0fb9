"""net_bridge's options, checked once when the plugin is created."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from kcore.errors import FieldError, Invalid
from kcore.settings import Settings

DEFAULTS = {
    "bridge_name": "kcore0",
    "cluster_cidr": "10.244.0.0/16",
    "pod_cidr": "10.244.0.0/24",
    "service_cidr": "10.96.0.0/12",
    "nft_table": "kcore",
}
IFNAMSIZ = 15
_NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
VETH_NAME = re.compile(r"veth[0-9a-f]{11}")
"""The shape of :meth:`BridgeConfig.veth_name`: gc removes only such ports of the bridge."""


@dataclass(frozen=True)
class BridgeConfig:
    bridge_name: str
    cluster_cidr: IPv4Network
    pod_cidr: IPv4Network
    service_cidr: IPv4Network
    nft_table: str

    @property
    def gateway(self) -> IPv4Address:
        """The pod CIDR's first address, on the bridge."""
        return self.pod_cidr.network_address + 1

    @property
    def bridge_mac(self) -> str:
        """A fixed, locally administered address: a bridge otherwise takes the lowest
        address of its ports, which changes as pods come and go."""
        digest = hashlib.sha256(self.bridge_name.encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))

    def veth_name(self, pod_uid: str) -> str:
        """The pod's host-side veth: ``veth`` + 11 hex digits of a hash of the bridge and
        the uid, so teardown finds it without a record and two bridges never clash."""
        digest = hashlib.sha256(f"{self.bridge_name}/{pod_uid}".encode()).hexdigest()
        return f"veth{digest[:11]}"

    @classmethod
    def from_settings(cls, settings: Settings) -> BridgeConfig:
        return cls.from_options({k: settings.option(k) for k in DEFAULTS})

    @classmethod
    def from_options(cls, options: dict[str, object]) -> BridgeConfig:
        """Check the options (missing or None ones take their defaults); every problem
        becomes a cause of one :class:`kcore.Invalid`, named by its option."""
        values = {k: str(v) for k, v in DEFAULTS.items()}
        values.update({k: str(v) for k, v in options.items() if v is not None and k in DEFAULTS})
        causes: list[FieldError] = []

        def bad(option: str, message: str) -> None:
            causes.append(FieldError(f"--{option.replace('_', '-')}", message))

        bridge = values["bridge_name"]
        if not bridge or len(bridge) > IFNAMSIZ:
            bad("bridge_name", f"{bridge!r}: an interface name has 1 to {IFNAMSIZ} characters")
        elif bridge in (".", "..") or re.search(r"[/:\s]", bridge):
            bad("bridge_name", f"{bridge!r}: an interface name has no '/', ':' or blanks")

        nets: dict[str, IPv4Network] = {}
        for option in ("cluster_cidr", "pod_cidr", "service_cidr"):
            try:
                nets[option] = IPv4Network(values[option], strict=True)
            except ValueError as exc:
                bad(option, f"{values[option]!r} is not an IPv4 network in CIDR form ({exc})")
        cluster, pod, service = (nets.get(k) for k in ("cluster_cidr", "pod_cidr", "service_cidr"))
        if pod is not None:
            if pod.prefixlen > 30:
                bad("pod_cidr", f"{pod} is too small: a gateway and at least one pod need a /30")
            elif pod.prefixlen < 16:
                bad("pod_cidr", f"{pod} is too large for one node: at most a /16")
        if pod is not None and cluster is not None and not pod.subnet_of(cluster):
            bad("pod_cidr", f"{pod} is not inside the cluster CIDR {cluster}")
        if service is not None and cluster is not None and service.overlaps(cluster):
            bad("service_cidr", f"{service} overlaps the cluster CIDR {cluster}")

        if not _NFT_NAME.fullmatch(values["nft_table"]):
            bad("nft_table", f"{values['nft_table']!r}: letters, digits and '_', up to 64")

        if causes:
            raise Invalid("net_bridge: " + "; ".join(str(c) for c in causes), causes=causes)
        return cls(
            bridge_name=bridge,
            cluster_cidr=cluster,  # type: ignore[arg-type]
            pod_cidr=pod,  # type: ignore[arg-type]
            service_cidr=service,  # type: ignore[arg-type]
            nft_table=values["nft_table"],
        )
