"""A real one-node cluster for end-to-end tests: the daemon with its node agent on
runtime_linux, net_bridge and the volume sources, the busybox test image imported, every
host-wide name (bridge, nft table, cgroup root, pod and service ranges) unique to the run.

Stopping the daemon leaves pods running (by design); the fixture then kills the pod
monitors by their recorded pids, unmounts what the volumes mounted, and removes the cgroups,
links, routes and nft table by name."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_process import Daemon, start_daemon, stop_daemon
from hostnames import (
    Names,
    cleanup_runtime_dir,
    new_names,
    remove_cgroup_root,
    remove_host_objects,
    unmount_below,
)

from kcore.images import ImageStore

IMAGE = "kcore.test/busybox:latest"


@dataclass
class Node:
    daemon: Daemon
    names: Names
    cgroup: str
    node_name: str
    args: tuple[str, ...] = ()
    daemon_args: tuple[str, ...] = ()

    def restart(self) -> None:
        """Stop the daemon (its pods keep running) and start it again on the same data."""
        stop_daemon(self.daemon)
        self.daemon = start_daemon(
            self.daemon.data_dir, *self.args, daemon_args=self.daemon_args, node_agent=True
        )

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60):
        return self.daemon.kubectl(*args, input=input, timeout=timeout)

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        done = self.kubectl(*args, input=input, timeout=timeout)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def apply(self, manifest: dict[str, Any] | str) -> str:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.ok("apply", "-f", "-", input=text)

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        done = self.kubectl("get", kind, name, "-n", namespace, "-o", "json")
        if done.returncode != 0:
            if "NotFound" in done.stderr or "not found" in done.stderr:
                return None
            raise AssertionError(done.stderr)
        return json.loads(done.stdout)

    def wait_pod(
        self,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        *,
        namespace: str = "default",
        timeout: float = 60,
        what: str = "",
    ) -> dict[str, Any]:
        """Poll the pod until ``check`` holds; fail with the last state seen."""
        deadline = time.monotonic() + timeout
        pod = None
        while time.monotonic() < deadline:
            pod = self.get("pod", name, namespace)
            if pod is not None and check(pod):
                return pod
            time.sleep(0.2)
        events = self.kubectl("get", "events", "-n", namespace).stdout
        raise AssertionError(
            f"pod {name}: {what or 'condition'} not reached in {timeout}s; last seen "
            f"{json.dumps((pod or {}).get('status'), indent=1)}\nevents:\n{events}"
        )

    def wait_gone(self, name: str, namespace: str = "default", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("pod", name, namespace) is None:
                return
            time.sleep(0.2)
        raise AssertionError(f"pod {name} still exists after {timeout}s")

    def events_for(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        out = self.ok(
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={name}",
        )
        return json.loads(out)["items"]


def phase_is(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: (pod.get("status") or {}).get("phase") in phases


def container_state(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status["name"] == name:
            return status
    return {}


def pod_manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    for c in containers:
        c.setdefault("image", IMAGE)
        c.setdefault("imagePullPolicy", "IfNotPresent")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 2, **spec},
    }


@contextlib.contextmanager
def running_node(data_dir: Path, busybox_layout: Path, *extra_args: str) -> Iterator[Node]:
    """A daemon on ``data_dir`` with unique host-wide names (``extra_args``: more global
    options, e.g. a plugin's); everything it made is removed afterwards."""
    names = new_names()
    suffix = secrets.token_hex(4)
    cgroup = f"kcore-test-{suffix}"
    node_name = f"node-{suffix}"
    ImageStore(data_dir / "images").import_path(busybox_layout)
    args = (
        *("--bridge-name", names.bridge, "--nft-table", names.table),
        *("--cluster-cidr", str(names.cluster), "--pod-cidr", str(names.pod)),
        *("--service-cidr", str(names.service), "--runtime-cgroup-name", cgroup),
        # Names outside the cluster go nowhere: no test query leaves the machine.
        *("--dns-upstream", "127.0.0.1:9"),
        *extra_args,
    )
    daemon_args = ("--node-name", node_name, "--service-cluster-ip-range", str(names.service))
    node = None
    try:
        daemon = start_daemon(data_dir, *args, daemon_args=daemon_args, node_agent=True)
        node = Node(daemon, names, cgroup, node_name, args, daemon_args)
        yield node
    finally:
        if node is not None and node.daemon.proc.poll() is None:
            stop_daemon(node.daemon)
        from kcore.plugins.runtime_linux.cgroups import CgroupDriver

        cleanup_runtime_dir(data_dir)
        unmount_below(data_dir)
        remove_cgroup_root(CgroupDriver.detect(root_name=cgroup).parent_paths())
        remove_host_objects(names)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("kcore-node"), busybox_layout) as node:
        yield node
