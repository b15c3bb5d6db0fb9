"""A plugin's volume type reaches real Pods as an inline (ephemeral) CSI volume: the API
server keeps the ``csi`` block as it is, and the node agent hands a ``csi`` volume to the
source of type ``csi:<driver>`` (an in-process API server, a real NodeAgent, runtime_sim)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_process import start_daemon, stop_daemon

from kcore.conformance.suites.volumes import VolumeCase
from kcore.errors import Invalid
from kcore.nodeagent.agent import NodeAgent
from kcore.nodeagent.backoff import Backoff
from kcore.plugins.runtime_sim.sim import make_backend
from kcore.plugins.volumes import volume_sources
from nodeagent.test_pod_worker import (
    NODE,
    NS,
    Cluster,
    cluster_on,
    container,
    phase,
    pod,
    wait_event,
    wait_for,
    wait_gone,
    waiting,
)

DRIVER = "test.kcore.io"


class AttributeFiles:
    """The driver ``test.kcore.io``: one file per volume attribute (name -> value)."""

    type_name = f"csi:{DRIVER}"

    def __init__(self) -> None:
        self.setups: list[str] = []
        self.teardowns: list[str] = []

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        csi = volume["csi"]
        if csi["driver"] != DRIVER:
            raise Invalid(f"not my driver: {csi['driver']}")
        for name, value in (csi.get("volumeAttributes") or {}).items():
            (target / name).write_text(value)
        self.setups.append(volume["name"])

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        for entry in target.iterdir() if target.exists() else ():
            entry.unlink()
        self.teardowns.append(volume["name"])


def csi_volume(name: str, driver: str = DRIVER, **fields: Any) -> dict[str, Any]:
    return {"name": name, "csi": {"driver": driver, **fields}}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster_on(make_backend(tmp_path), tmp_path) as c:
        yield c


@pytest.fixture
def driver() -> AttributeFiles:
    return AttributeFiles()


@pytest.fixture
async def agent(cluster: Cluster, driver: AttributeFiles) -> NodeAgent:
    agent = NodeAgent(
        cluster.api,
        cluster.backend,
        node_name=NODE,
        data_dir=cluster.data_dir,
        network=None,
        volume_sources=[*volume_sources(), driver],
        heartbeat=5.0,
    )
    agent.restart_backoff = Backoff(initial=0.2, maximum=1.0)
    await agent.start()
    cluster.agents.append(agent)
    return agent


async def test_a_pod_gets_the_files_of_its_csi_volume(cluster, agent, driver):
    api = cluster.api
    volumes = [
        csi_volume("greeting", volumeAttributes={"hello": "world", "lang": "en"}),
        csi_volume("locked", readOnly=True, volumeAttributes={"key": "value"}),
    ]
    app = container(
        volumeMounts=[
            {"name": "greeting", "mountPath": "/greeting"},
            {"name": "locked", "mountPath": "/locked"},
        ]
    )
    created = await api.create(pod("csi", [app], volumes=volumes))
    uid = created["metadata"]["uid"]
    await wait_for(api, "csi", lambda p: phase(p) == "Running", what="phase Running")

    pod_dir = cluster.data_dir / "pods" / uid
    greeting = pod_dir / "volumes" / "kubernetes.io~csi" / "greeting"
    locked = pod_dir / "volumes" / "kubernetes.io~csi" / "locked"
    assert {p.name: p.read_text() for p in greeting.iterdir()} == {"hello": "world", "lang": "en"}
    assert (locked / "key").read_text() == "value"
    [record] = await cluster.containers(uid)
    mounts = {m["container_path"]: m for m in record["mounts"]}
    assert mounts["/greeting"]["host_path"] == str(greeting)
    assert mounts["/greeting"]["readonly"] is False
    assert mounts["/locked"]["host_path"] == str(locked)
    assert mounts["/locked"]["readonly"] is True  # csi.readOnly

    await api.delete("v1", "Pod", "csi", NS)
    await wait_gone(api, "csi")
    assert sorted(set(driver.teardowns)) == ["greeting", "locked"]
    assert not pod_dir.exists()


async def test_a_csi_volume_of_a_driver_the_node_lacks_fails_to_mount(cluster, agent, driver):
    api = cluster.api
    app = container(volumeMounts=[{"name": "data", "mountPath": "/data"}])
    missing = csi_volume("data", driver="absent.kcore.io", volumeAttributes={"a": "b"})
    created = await api.create(pod("nodriver", [app], volumes=[missing]))
    uid = created["metadata"]["uid"]

    event = await wait_event(
        api,
        "nodriver",
        "FailedMount",
        'MountVolume.SetUp failed for volume "data" : '
        "volume driver 'absent.kcore.io' is not installed on this node",
    )
    assert event["type"] == "Warning"
    p = await api.get("v1", "Pod", "nodriver", NS)
    assert phase(p) == "Pending"
    assert waiting(p, "app")["reason"] == "ContainerCreating"
    assert await cluster.containers(uid) == []
    assert driver.setups == []


def test_the_conformance_suite_gives_a_csi_case_to_the_source_of_its_driver():
    assert VolumeCase("c", csi_volume("v")).type_name == AttributeFiles.type_name
    assert VolumeCase("e", {"name": "v", "emptyDir": {}}).type_name == "emptyDir"


CSI_BLOCK = {
    "driver": DRIVER,
    "readOnly": True,
    "fsType": "ext4",
    "volumeAttributes": {"configMap": "site", "items": '[{"key": "a", "path": "b"}]'},
    "nodePublishSecretRef": {"name": "driver-creds"},
}


async def test_the_csi_block_survives_create_and_get(cluster):
    api = cluster.api
    app = container(volumeMounts=[{"name": "site", "mountPath": "/www"}])
    body = pod("roundtrip", [app], volumes=[{"name": "site", "csi": CSI_BLOCK}])
    created = await api.create(body)
    assert created["spec"]["volumes"] == [{"name": "site", "csi": CSI_BLOCK}]
    got = await api.get("v1", "Pod", "roundtrip", NS)
    assert got["spec"]["volumes"] == [{"name": "site", "csi": CSI_BLOCK}]


MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: httpd
    image: busybox
    volumeMounts: [{name: site, mountPath: /www}]
  volumes:
  - name: site
    csi:
      driver: test.kcore.io
      readOnly: true
      fsType: ext4
      volumeAttributes:
        configMap: site
        items: '[{"key": "a", "path": "b"}]'
      nodePublishSecretRef: {name: driver-creds}
"""


@pytest.mark.slow
def test_kubectl_shows_the_csi_volume_as_it_was_sent(tmp_path):
    daemon = start_daemon(tmp_path)
    try:
        created = daemon.kubectl("create", "-f", "-", input=MANIFEST)
        assert created.returncode == 0, created.stderr
        shown = daemon.kubectl("get", "pod", "web", "-o", "yaml")
        assert shown.returncode == 0, shown.stderr
        volumes = yaml.safe_load(shown.stdout)["spec"]["volumes"]
        # next to the ServiceAccount token volume the API server adds
        assert [v for v in volumes if v["name"] == "site"] == [{"name": "site", "csi": CSI_BLOCK}]
        as_json = daemon.kubectl("get", "pod", "web", "-o", "jsonpath={.spec.volumes[0].csi}")
        assert json.loads(as_json.stdout) == CSI_BLOCK
    finally:
        stop_daemon(daemon)
