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
from kcore.plugins.store_etcd.backend import EtcdStore, resolve_prefix
from kcore.store import Capability


class TestEtcdStoreConformance(StoreConformance):
    expected_capabilities = frozenset(Capability)

    @pytest.fixture
    def store_factory(self, etcd_server, kcore_settings_factory):
        prefixes: dict[Path, str] = {}

        async def make(settings=None):
            # A fresh keyspace per new store (the suite expects a new, empty store), the
            # same one again for the same settings (a reopened store).
            settings = settings or kcore_settings_factory()
            prefix = prefixes.setdefault(settings.data_dir, resolve_prefix("/kcore-test-*"))
            return EtcdStore(etcd_server.endpoints, prefix=prefix, compaction_interval=0)

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
    # "store  passed   61 passed, 0 failed, 6 skipped", then one line per reason: etcd keeps
    # its data on its own server (no disk faults here) and the fault fixtures are
    # store_sqlite's own; every reason is a capability the store lacks.
    lines = output.strip().splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("store "))
    found = re.fullmatch(
        r"store\s+passed\s+[1-9]\d* passed, 0 failed, (\d+) skipped", lines[summary]
    )
    assert found, lines
    reasons = [re.fullmatch(r"\s+skipped (\d+): (.*)", line) for line in lines[summary + 1 :]]
    assert reasons and all(reasons), lines
    assert all("lacks capability" in r[2] for r in reasons), lines
    assert any("lacks capability disk_faults" in r[2] for r in reasons), lines
    skipped = int(found[1])
    assert sum(int(r[1]) for r in reasons) == skipped, lines
    report = junit.read_text()
    assert 'failures="0"' in report and 'errors="0"' in report
    assert f'skipped="{skipped}"' in report
