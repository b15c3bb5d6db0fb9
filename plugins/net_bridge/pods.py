"""What the plugin remembers of each wired pod, one JSON file per pod under ``pods/``: the
address, the host-side veth, the namespace and the host ports, so that teardown, gc and a
restarted plugin know what to remove without asking the pod's (maybe gone) namespace."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import structlog

from kcore.errors import FieldError, Invalid

log = structlog.get_logger("kcore.plugins.net_bridge")

PROTOCOLS = ("tcp", "udp", "sctp")
_SAFE_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


@dataclass(frozen=True, order=True)
class HostPort:
    """One port mapping with a host port; ``host_ip`` is "" for every address of the node."""

    protocol: str
    host_port: int
    host_ip: str
    container_port: int

    @property
    def key(self) -> tuple[str, int]:
        return self.protocol, self.host_port

    def overlaps(self, other: HostPort) -> bool:
        """Both would catch the same packets: same protocol and port, and the same host
        address or either on every address."""
        return self.key == other.key and (
            not self.host_ip or not other.host_ip or self.host_ip == other.host_ip
        )

    def __str__(self) -> str:
        return f"{self.host_ip or '*'}:{self.host_port}/{self.protocol}"


def host_ports(config: Mapping[str, Any]) -> list[HostPort]:
    """The mappings of a set-up's ``config["port_mappings"]`` that have a host port,
    checked; :class:`kcore.Invalid` names the bad field."""
    found: list[HostPort] = []
    causes: list[FieldError] = []
    for i, mapping in enumerate(config.get("port_mappings") or ()):
        path = f"port_mappings[{i}]"
        host_port = mapping.get("host_port") or 0
        if not host_port:
            continue
        raw_protocol = mapping.get("protocol") or "TCP"
        protocol = str(raw_protocol).lower()
        container_port = mapping.get("container_port") or host_port
        host_ip = mapping.get("host_ip") or ""
        if protocol not in PROTOCOLS:
            causes.append(
                FieldError(f"{path}.protocol", f"{raw_protocol!r} is not TCP, UDP or SCTP")
            )
        for name, value in (("host_port", host_port), ("container_port", container_port)):
            if not isinstance(value, int) or not 0 < value < 65536:
                causes.append(FieldError(f"{path}.{name}", f"{value!r} is not a port number"))
        if host_ip == "0.0.0.0":
            host_ip = ""
        if host_ip:
            try:
                host_ip = str(IPv4Address(host_ip))
            except ValueError:
                causes.append(FieldError(f"{path}.host_ip", f"{host_ip!r} is not an IPv4 address"))
        found.append(HostPort(protocol, host_port, host_ip, container_port))
    if causes:
        raise Invalid(causes=causes)
    return sorted(set(found))


@dataclass
class PodRecord:
    uid: str
    ip: str
    host_veth: str
    netns_path: str
    netns_id: tuple[int, int]
    answer: dict[str, Any]
    ports: list[HostPort] = field(default_factory=list)
    name: str = ""
    namespace: str = ""

    def to_json(self) -> bytes:
        raw = {
            "uid": self.uid,
            "ip": self.ip,
            "host_veth": self.host_veth,
            "netns_path": self.netns_path,
            "netns_id": list(self.netns_id),
            "answer": self.answer,
            "ports": [
                {
                    "protocol": p.protocol,
                    "host_port": p.host_port,
                    "host_ip": p.host_ip,
                    "container_port": p.container_port,
                }
                for p in self.ports
            ],
            "name": self.name,
            "namespace": self.namespace,
        }
        return json.dumps(raw, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PodRecord:
        raw = json.loads(data)
        raw["netns_id"] = tuple(raw["netns_id"])
        raw["ports"] = [HostPort(**p) for p in raw.get("ports") or ()]
        return cls(**raw)


class PodRecords:
    """The records on disk; written whole (a temporary file renamed over the old one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, uid: str) -> Path:
        if _SAFE_UID.fullmatch(uid):
            return self.directory / f"{uid}.json"
        return self.directory / f"uid-{hashlib.sha256(uid.encode()).hexdigest()[:32]}.json"

    def save(self, record: PodRecord) -> None:
        path = self.path(record.uid)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, record.to_json())
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def load(self, uid: str) -> PodRecord | None:
        """The pod's record; None when there is none or it cannot be read (teardown then
        goes by the veth's name and the address files)."""
        path = self.path(uid)
        try:
            with open(path, "rb") as f:
                record = PodRecord.from_json(f.read())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("unreadable pod record", path=str(path), error=str(exc))
            return None
        return record if record.uid == uid else None

    def remove(self, uid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(uid).unlink()

    def load_all(self) -> dict[str, PodRecord]:
        records: dict[str, PodRecord] = {}
        if not self.directory.is_dir():
            return records
        for entry in os.scandir(self.directory):
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                with open(entry.path, "rb") as f:
                    record = PodRecord.from_json(f.read())
            except FileNotFoundError:
                continue
            except (ValueError, TypeError, KeyError) as exc:
                # A bug or a disk problem: leave the file for a human rather than guess.
                log.warning("unreadable pod record", path=entry.path, error=str(exc))
                continue
            records[record.uid] = record
        return records
