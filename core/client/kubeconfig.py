"""Reading a kubeconfig: which server, how to trust it, who to be, which namespace."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kcore.errors import BadRequest


class KubeconfigError(BadRequest):
    """The kubeconfig is missing, unreadable, or lacks what is needed to connect."""


@dataclass(frozen=True)
class Kubeconfig:
    """The parts of one context of a kubeconfig that a client needs."""

    server: str
    namespace: str = "default"
    token: str | None = None
    ca_data: str | None = None
    """PEM text of the certificate authority to trust."""
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    client_cert_data: str | None = None
    client_key_data: str | None = None
    insecure: bool = False


def _named(entries: Any, name: str, what: str, path: Path) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(what) or {}
    raise KubeconfigError(f"{path}: no {what} named {name!r}")


def _b64(value: str, what: str, path: Path) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise KubeconfigError(f"{path}: {what} is not valid base64 PEM") from None


def _relative(base: Path, value: str | None) -> str | None:
    """Kubeconfig file paths are relative to the kubeconfig's own folder."""
    if not value:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base.parent / p)


def load_kubeconfig(path: str | Path, context: str | None = None) -> Kubeconfig:
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not a valid kubeconfig: {exc}") from None
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path}: not a valid kubeconfig")
    name = context or data.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no current-context")
    ctx = _named(data.get("contexts"), name, "context", path)
    cluster = _named(data.get("clusters"), ctx.get("cluster", ""), "cluster", path)
    user = _named(data.get("users"), ctx["user"], "user", path) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token_file = _relative(path, user["tokenFile"])
        assert token_file is not None
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise KubeconfigError(f"cannot read token file {token_file}: {exc.strerror}") from None
    return Kubeconfig(
        server=str(server).rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        token=token or None,
        ca_data=_b64(cluster["certificate-authority-data"], "certificate-authority-data", path)
        if cluster.get("certificate-authority-data")
        else None,
        ca_file=_relative(path, cluster.get("certificate-authority")),
        client_cert_file=_relative(path, user.get("client-certificate")),
        client_key_file=_relative(path, user.get("client-key")),
        client_cert_data=_b64(user["client-certificate-data"], "client-certificate-data", path)
        if user.get("client-certificate-data")
        else None,
        client_key_data=_b64(user["client-key-data"], "client-key-data", path)
        if user.get("client-key-data")
        else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


__all__ = ["Kubeconfig", "KubeconfigError", "load_kubeconfig"]
