"""The kcore command line, run as a user runs it: the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def kcore(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    script = shutil.which("kcore")
    cmd = [script] if script else [sys.executable, "-m", "kcore.cli"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_plugins_json_lists_the_embedded_defaults_in_their_slots():
    proc = kcore("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = {entry["name"]: entry for entry in json.loads(proc.stdout)}
    assert list(entries) == [
        "store_sqlite",
        "runtime_linux",
        "net_bridge",
        "volumes",
        "controllers",
        "scheduler",
        "dns",
    ]
    assert entries["store_sqlite"]["slots"] == ["store"]
    assert "kcore_store" in entries["store_sqlite"]["hooks"]
    assert entries["runtime_linux"]["slots"] == ["runtime"]
    assert entries["net_bridge"]["slots"] == ["network"]
    assert entries["volumes"]["slots"] == []
    assert "kcore_volume_sources" in entries["volumes"]["hooks"]
    assert "kcore_controllers" in entries["controllers"]["hooks"]
    assert "kcore_scheduler_filters" in entries["scheduler"]["hooks"]
    assert "kcore_node_services" in entries["dns"]["hooks"]
    assert entries["store_sqlite"]["version"]


def test_plugins_table():
    proc = kcore("plugins")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["NAME", "VERSION", "SLOTS", "SUITES", "HOOKS"]
    assert "store_sqlite" in proc.stdout


@pytest.mark.parametrize(
    ("plugins", "expected"),
    [
        ("nope", "unknown plugin 'nope'; known plugins: "),
        ("sample_plugins.fails_import", "failed to import"),
        ("sample_plugins.misspelled", "kcore_stor"),
    ],
)
def test_bad_plugins_give_one_line_and_exit_2(plugins, expected):
    proc = kcore(f"--plugins={plugins}", "plugins")
    assert proc.returncode == 2
    assert expected in one_line_error(proc)


def test_plugins_env_var_is_read():
    proc = kcore("plugins", "--json", env={"KCORE_PLUGINS": "sample_plugins.second_store"})
    assert proc.returncode == 0, proc.stderr
    assert [p["name"] for p in json.loads(proc.stdout)] == ["sample_plugins.second_store"]


def test_plugin_commands_and_options_work_before_and_after_the_subcommand(tmp_path):
    plugins = "--plugins=store_sqlite,sample_plugins.second_store"
    proc = kcore(plugins, "--data-dir", str(tmp_path), "--second-colour=red", "second-hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"colour=red data_dir={tmp_path}"
    proc = kcore(plugins, "second-hello", "--second-colour", "blue")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("colour=blue ")
    proc = kcore(
        plugins,
        "second-hello",
        env={"KCORE_SECOND_COLOUR": "green", "KCORE_DATA_DIR": str(tmp_path)},
    )
    assert proc.stdout.strip() == f"colour=green data_dir={tmp_path}"


def test_options_of_unloaded_plugins_are_refused():
    proc = kcore("--second-colour=red", "plugins")
    assert proc.returncode == 2
    assert "--second-colour" in proc.stderr


def test_help_lists_plugin_commands():
    proc = kcore("--plugins=sample_plugins.second_store", "--help")
    assert proc.returncode == 0
    assert "second-hello" in proc.stdout
    assert "--second-colour" in proc.stdout


def test_conformance_refuses_a_plugin_with_no_applicable_suite():
    proc = kcore("conformance", "--plugin", "sample_plugins.contributions")
    assert proc.returncode != 0
    assert "no conformance suite applies" in one_line_error(proc)


MANIFESTS = """\
apiVersion: v1
kind: Pod
metadata: {name: ok}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: Bad_Name}
spec:
  containers: [{name: c}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {replicas: three}
"""


def test_validate_reports_each_bad_document_on_one_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(MANIFESTS)
    proc = kcore("validate", "-f", str(path))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["pod/ok valid"]
    errors = proc.stderr.splitlines()
    assert len(errors) == 2, proc.stderr
    assert errors[0].startswith(f"{path}: document 2: ")
    assert "metadata.name" in errors[0]
    assert "spec.containers[0].image: Required value" in errors[0]
    assert errors[1].startswith(f"{path}: document 3: ")
    assert "spec.replicas" in errors[1]
    assert "Traceback" not in proc.stderr


def test_validate_prints_the_defaulted_object(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(MANIFESTS.split("---")[0])
    proc = kcore("validate", "-f", str(path), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    pod = json.loads(proc.stdout)
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_validate_malformed_yaml_is_one_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("a: [b\n")
    assert "malformed YAML" in one_line_error(kcore("validate", "-f", str(path)))
