"""The tolerations every pod gets for a node that stops being ready (public): the API
server's DefaultTolerationSeconds admission adds them when a pod is created, and the node
lifecycle controller assumes them for pods that lack them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
NO_EXECUTE_TAINTS = (TAINT_NOT_READY, TAINT_UNREACHABLE)
DEFAULT_TOLERATION_SECONDS = 300
"""kube-apiserver's ``--default-not-ready-toleration-seconds`` and
``--default-unreachable-toleration-seconds``."""


def with_default_tolerations(
    tolerations: Sequence[Mapping[str, Any]], seconds: float = DEFAULT_TOLERATION_SECONDS
) -> list[Mapping[str, Any]]:
    """``tolerations`` plus, for each of the ``not-ready`` and ``unreachable`` taints no
    toleration covers (same key or empty key, effect ``NoExecute`` or empty), an
    ``Exists`` ``NoExecute`` toleration for ``seconds``, as DefaultTolerationSeconds."""
    out = list(tolerations)
    for key in NO_EXECUTE_TAINTS:
        if not any(
            (t.get("key") or "") in (key, "") and (t.get("effect") or "") in ("NoExecute", "")
            for t in tolerations
        ):
            out.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": int(seconds),
                }
            )
    return out


__all__ = [
    "DEFAULT_TOLERATION_SECONDS",
    "NO_EXECUTE_TAINTS",
    "TAINT_NOT_READY",
    "TAINT_UNREACHABLE",
    "with_default_tolerations",
]
