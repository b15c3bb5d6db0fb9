"""What Kubernetes' ServiceAccount admission plugin does to a new Pod: unless the pod or
its ServiceAccount sets ``automountServiceAccountToken: false``, add the projected volume
``kube-api-access-<5 chars>`` (a bound token, the cluster CA from ``kube-root-ca.crt``,
the namespace) and mount it read-only at
``/var/run/secrets/kubernetes.io/serviceaccount`` in every container that has nothing
mounted there."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION = 3607
_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def token_volume(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": "metadata.namespace",
                                },
                            }
                        ]
                    }
                },
            ],
        },
    }


def mount_service_account_token(
    pod: dict[str, Any], service_account: Mapping[str, Any] | None
) -> None:
    """Add the token volume and its mounts to ``pod`` (in place), as the admission
    plugin does."""
    spec = pod.setdefault("spec", {})
    wanted = spec.get("automountServiceAccountToken")
    if wanted is None and service_account is not None:
        wanted = service_account.get("automountServiceAccountToken")
    if wanted is False:
        return
    volumes = spec.setdefault("volumes", [])
    if any(str(v.get("name", "")).startswith(VOLUME_PREFIX) for v in volumes):
        return
    name = VOLUME_PREFIX + "".join(secrets.choice(_CHARS) for _ in range(5))
    volumes.append(token_volume(name))
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            mounts = container.setdefault("volumeMounts", [])
            if any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})


__all__ = ["MOUNT_PATH", "mount_service_account_token", "token_volume"]
