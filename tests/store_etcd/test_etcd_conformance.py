"""The shared store conformance suite on a real etcd: on ``EtcdStore`` directly, and through
``kcore conformance --plugin store_etcd`` as a user runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcore.conformance.suites.store import StoreConformance
from kcore.plugins.store_etcd.backend import EtcdStore


class TestEtcdStoreConformance(StoreConformance):
    @pytest.fixture
    def store_factory(self, etcd_server):
        async def make():
            # A fresh keyspace per store: the suite expects a new, empty store each time.
            return EtcdStore(etcd_server.endpoints, prefix="/kcore-test-*", compaction_interval=0)

        return make


@pytest.mark.slow
def test_kcore_conformance_command_passes_on_etcd(etcd_server, tmp_path):
    script = shutil.which("kcore") or str(Path(sys.executable).parent / "kcore")
    junit = tmp_path / "report.xml"
    proc = subprocess.run(
        [
            script,
            "conformance",
            "--plugin",
            "store_etcd",
            f"--etcd-endpoints={etcd_server.endpoints}",
            "--etcd-prefix=/kcore-conformance-cli-*",
            "--junitxml",
            str(junit),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    summary = output.strip().splitlines()[-1]  # "store  passed   55 passed, 0 failed, 0 skipped"
    assert re.fullmatch(r"store\s+passed\s+[1-9]\d* passed, 0 failed, 0 skipped", summary), summary
    report = junit.read_text()
    assert 'failures="0"' in report and 'errors="0"' in report and 'skipped="0"' in report
