"""Node IPAM: every Node gets a pod CIDR of its own out of the cluster's.

As Kubernetes' range allocator (``kube-controller-manager --allocate-node-cidrs``): a Node
without ``spec.podCIDR`` gets the first free ``/<--node-cidr-mask-size>`` (24) of the
cluster CIDR (``--cluster-cidr``, 10.244.0.0/16 unless set) in ``spec.podCIDR`` and
``spec.podCIDRs``. What is taken is read from the Nodes themselves, so a restarted
controller carries on where the last one stopped; a deleted Node's range is free again.
When the cluster CIDR is used up, the Node gets a Warning event ``CIDRNotAvailable`` and is
tried again later. A podCIDR set by someone else (a node agent started with
``--pod-cidr``) is respected, and counts as taken when it lies in the cluster CIDR.

Off unless ``--allocate-node-cidrs`` (``kcore init`` turns it on).
"""

from __future__ import annotations

from ipaddress import IPv4Network, ip_network
from typing import Any

import structlog

from kcore.controllers import Reconciler
from kcore.errors import FieldError, Invalid, NotFound, TemporaryError
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.nodeipam")

NODE = ("v1", "Node")
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_MASK_SIZE = 24
RETRY_WHEN_FULL = 30.0


def _networks(node: dict[str, Any]) -> list[IPv4Network]:
    spec = node.get("spec") or {}
    out = []
    for text in [spec.get("podCIDR"), *(spec.get("podCIDRs") or [])]:
        if not text:
            continue
        try:
            net = ip_network(text, strict=False)
        except ValueError:
            continue
        if isinstance(net, IPv4Network) and net not in out:
            out.append(net)
    return out


class NodeIpamController(Reconciler):
    """Gives each Node a pod CIDR (see the module docstring). One worker, so that two
    Nodes never get the same range."""

    name = "nodeipam"
    kinds = [NODE]
    workers = 1

    conformance = scenarios("nodeipam_scenarios")

    def __init__(self, cluster_cidr: IPv4Network, mask_size: int = DEFAULT_MASK_SIZE) -> None:
        self.cluster_cidr = cluster_cidr
        self.mask_size = mask_size
        self._assigned: dict[str, IPv4Network] = {}
        """Ranges this controller gave but the cache may not show yet."""

    async def setup(self) -> None:
        self._assigned = {}

    def _taken(self) -> set[IPv4Network]:
        taken: set[IPv4Network] = set()
        for node in self.informers.list(*NODE):
            taken.update(n for n in _networks(node) if n.overlaps(self.cluster_cidr))
        taken.update(self._assigned.values())
        return taken

    def free_range(self) -> IPv4Network | None:
        """The first range of the cluster CIDR that no Node has."""
        taken = self._taken()
        for candidate in self.cluster_cidr.subnets(new_prefix=self.mask_size):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
        return None

    async def reconcile(self, key: str) -> float | None:
        node = self.cached(key)
        if node is None:
            self._assigned.pop(key, None)
            return None
        if _networks(node):
            self._assigned.pop(key, None)
            return None
        if key in self._assigned:
            return None  # given; the cache has not caught up yet
        cidr = self.free_range()
        if cidr is None:
            await self.recorder.event(
                node,
                "Warning",
                "CIDRNotAvailable",
                f"Node {key} status is now: CIDRNotAvailable",
            )
            raise TemporaryError(
                f"no pod CIDR left in {self.cluster_cidr} for node {key}",
                retry_after=RETRY_WHEN_FULL,
            )
        patch = {"spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]}}
        try:
            await self.api.patch("v1", "Node", key, patch)
        except NotFound:
            return None
        except Invalid:
            # someone set a podCIDR meanwhile: the next event shows it
            log.info("node got a pod CIDR elsewhere", node=key)
            return None
        self._assigned[key] = cidr
        log.info("assigned pod CIDR", node=key, cidr=str(cidr))
        return None


def _cluster_cidr(settings: Any) -> tuple[IPv4Network, int]:
    option = getattr(settings, "option", None)
    text = str(option("cluster_cidr", DEFAULT_CLUSTER_CIDR)) if option else DEFAULT_CLUSTER_CIDR
    raw_mask = option("node_cidr_mask_size", DEFAULT_MASK_SIZE) if option else DEFAULT_MASK_SIZE
    causes = []
    cluster: IPv4Network | None = None
    try:
        net = ip_network(text, strict=True)
        if not isinstance(net, IPv4Network):
            raise ValueError("not IPv4")
        cluster = net
    except ValueError as exc:
        causes.append(FieldError("--cluster-cidr", f"{text!r} is not an IPv4 CIDR ({exc})"))
    try:
        mask = int(raw_mask)
    except (TypeError, ValueError):
        mask = -1
    if cluster is not None and not cluster.prefixlen <= mask <= 30:
        causes.append(
            FieldError(
                "--node-cidr-mask-size",
                f"{raw_mask!r} must be between the cluster CIDR's prefix length "
                f"({cluster.prefixlen}) and 30",
            )
        )
    if causes:
        raise Invalid("nodeipam: " + "; ".join(str(c) for c in causes), causes=causes)
    assert cluster is not None
    return cluster, mask


def controllers(settings: Any) -> list[Reconciler]:
    option = getattr(settings, "option", None)
    if not (option and option("allocate_node_cidrs", False)):
        return []
    cluster, mask = _cluster_cidr(settings)
    return [NodeIpamController(cluster, mask)]
