"""Fixtures for store_etcd's tests: real etcd servers (see ``etcd_servers``)."""

from __future__ import annotations

import pytest
from etcd_servers import EtcdCluster, running_clusters


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> EtcdCluster:
    """One etcd member shared by the tests that neither stop it nor need a cluster; each
    store on it uses a prefix of its own."""
    with running_clusters(tmp_path_factory.mktemp("etcd-logs")) as make:
        yield make()


@pytest.fixture
def etcd_factory(tmp_path):
    """``make(size=1, tls=None)``: start an etcd cluster for this test alone."""
    with running_clusters(tmp_path) as make:
        yield make
