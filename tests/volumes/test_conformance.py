"""The volume source conformance suite, run on the ``volumes`` plugin as ``kcore
conformance`` runs it, and tested itself: each deliberately broken source below fails the
checks of the promise it breaks, and only those."""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from kcore.conformance.suites.volumes import VolumeSourceConformance, unmount_below
from kcore.errors import NotFound
from kcore.plugin_host import PluginHost
from kcore.plugins.volumes import (
    ConfigMapSource,
    DownwardAPISource,
    HostPathSource,
    SecretSource,
    volume_sources,
)
from kcore.plugins.volumes.atomic_writer import DATA_DIR, AtomicWriter
from kcore.plugins.volumes.downward_api import downward_payload
from kcore.plugins.volumes.keyed import (
    config_map_data,
    fetch,
    keyed_payload,
    pod_namespace,
    volume_default_mode,
)
from kcore.plugins.volumes.volume_dir import materialize


class TestVolumesPlugin(VolumeSourceConformance):
    """The plugin, loaded through the plugin host as the node agent loads it."""

    @pytest.fixture(scope="class")
    @classmethod
    def host(cls) -> PluginHost:
        return PluginHost(["volumes"])

    @pytest.fixture
    def volume_sources_factory(self, host, kcore_settings_factory):
        return lambda settings=None: host.volume_sources(settings or kcore_settings_factory())


# -- broken sources ------------------------------------------------------------------------------


async def config_map_payload(pod, volume, api):
    source = volume["configMap"]
    optional = bool(source.get("optional"))
    obj = await fetch(api, "ConfigMap", pod_namespace(pod), source.get("name"), optional=optional)
    data = None if obj is None else config_map_data(obj)
    return keyed_payload(
        "ConfigMap", data, source.get("items"), volume_default_mode(source), optional=optional
    )


class UncheckedPathsConfigMap(ConfigMapSource):
    """Writes each file where its path says, unchecked and in place."""

    async def setup(self, pod, volume, target, api):
        for path, projection in (await config_map_payload(pod, volume, api)).items():
            full = os.path.join(target, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            Path(full).write_bytes(projection.data)
            os.chmod(full, projection.mode)


class TornConfigMap(ConfigMapSource):
    """Publishes the first version properly, then rewrites files inside it, one by one."""

    async def setup(self, pod, volume, target, api):
        payload = await config_map_payload(pod, volume, api)
        if not os.path.islink(os.path.join(target, DATA_DIR)):
            AtomicWriter(target).write(payload)
            return
        for path, projection in sorted(payload.items()):
            Path(target, DATA_DIR, path).write_bytes(projection.data)
            time.sleep(0.002)


class PluralMessageConfigMap(ConfigMapSource):
    """Lets the API server's message through: ``configmaps "x" not found``."""

    async def setup(self, pod, volume, target, api):
        if not volume["configMap"].get("optional"):
            await api.get("v1", "ConfigMap", volume["configMap"]["name"], pod_namespace(pod))
        await super().setup(pod, volume, target, api)


class DiskSecret(SecretSource):
    """Keeps secrets on the disk."""

    async def setup(self, pod, volume, target, api):
        source = volume["secret"]
        optional = bool(source.get("optional"))
        obj = await fetch(
            api, "Secret", pod_namespace(pod), source["secretName"], optional=optional
        )
        from kcore.plugins.volumes.keyed import secret_data

        data = None if obj is None else secret_data(obj)
        payload = keyed_payload(
            "Secret", data, source.get("items"), volume_default_mode(source), optional=optional
        )
        materialize(Path(target), payload)


class LeakyTeardownSecret(SecretSource):
    """Removes the files at teardown but leaves the tmpfs mounted."""

    async def teardown(self, pod, volume, target):
        for name in os.listdir(target) if os.path.isdir(target) else []:
            path = os.path.join(target, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


class StrictOptionalSecret(SecretSource):
    """Ignores ``optional``."""

    async def setup(self, pod, volume, target, api):
        source = dict(volume["secret"])
        source.pop("optional", None)
        await super().setup(pod, {**volume, "secret": source}, target, api)


class RewritingDownwardAPI(DownwardAPISource):
    """Writes a new version at every setup, changed or not."""

    async def setup(self, pod, volume, target, api):
        payload = downward_payload(pod, volume["downwardAPI"].get("items"), 0o644, None)
        if os.path.islink(os.path.join(target, DATA_DIR)):
            os.unlink(os.path.join(target, DATA_DIR))
        AtomicWriter(target).write(payload)


class HostDeletingHostPath(HostPathSource):
    """Removes the host path at teardown."""

    async def teardown(self, pod, volume, target):
        shutil.rmtree(self.host_path(pod, volume), ignore_errors=True)
        await super().teardown(pod, volume, target)


class NfsSource:
    """A type no case covers."""

    type_name = "nfs"

    async def setup(self, pod, volume, target, api):
        raise NotFound("nothing")

    async def teardown(self, pod, volume, target):
        return None


BROKEN = {
    cls.__name__: cls
    for cls in (
        UncheckedPathsConfigMap,
        TornConfigMap,
        PluralMessageConfigMap,
        DiskSecret,
        LeakyTeardownSecret,
        StrictOptionalSecret,
        RewritingDownwardAPI,
        HostDeletingHostPath,
        NfsSource,
    )
}


def sources_with(name: str | None = None, only: str | None = None) -> list:
    """The plugin's sources with one replaced by (or joined by) a broken one."""
    sources = {s.type_name: s for s in volume_sources({"cpu": "2", "memory": "64Mi"})}
    if name is not None:
        broken = BROKEN[name]()
        sources[broken.type_name] = broken
    if only is not None:
        sources = {only: sources[only]}
    return list(sources.values())


HOSTILE = "test_hostile_item_paths_are_refused[configMap-items-{}]"
EXPECTED_FAILURES: dict[str, tuple[str, set[str]]] = {
    "UncheckedPathsConfigMap": (
        "configMap",
        {
            *(
                HOSTILE.format(p)
                for p in (
                    "parent",
                    "absolute",
                    "inner-parent",
                    "dotdot",
                    "trailing-dotdot",
                    "dotdot-prefix",
                    "reserved-data",
                    "long-name",
                    "long-path",
                )
            ),
            "test_update_is_atomic_for_a_concurrent_reader[configMap-update]",
        },
    ),
    "TornConfigMap": (
        "configMap",
        {"test_update_is_atomic_for_a_concurrent_reader[configMap-update]"},
    ),
    "PluralMessageConfigMap": (
        "configMap",
        {"test_required_missing_source_raises_not_found[configMap-items]"},
    ),
    "DiskSecret": (
        "secret",
        {
            "test_setup_fills_an_empty_directory[secret]",
            "test_setup_fills_an_empty_directory[secret-update]",
        },
    ),
    "LeakyTeardownSecret": (
        "secret",
        {
            "test_teardown_removes_everything[secret]",
            "test_teardown_removes_everything[secret-update]",
        },
    ),
    "StrictOptionalSecret": (
        "secret",
        {"test_optional_missing_source_is_tolerated[secret]"},
    ),
    "RewritingDownwardAPI": (
        "downwardAPI",
        {
            "test_setup_again_changes_nothing[downwardAPI]",
            "test_setup_again_changes_nothing[downwardAPI-update]",
        },
    ),
    "HostDeletingHostPath": ("hostPath", {"test_teardown_removes_everything[hostPath]"}),
    "NfsSource": ("source", {"test_every_contributed_source_has_a_case"}),
}


def run_suite(pytester: pytest.Pytester, factory: str, *args: str) -> dict[str, str]:
    pytester.makepyfile(
        test_broken_volumes=textwrap.dedent(
            f"""\
            import pytest

            from kcore.conformance.suites.volumes import VolumeSourceConformance
            from volumes.test_conformance import sources_with


            class TestBroken(VolumeSourceConformance):
                @pytest.fixture
                def volume_sources_factory(self):
                    return lambda settings=None: {factory}
            """
        )
    )
    basetemp = f"--basetemp={pytester.path / 'basetemp'}"
    try:
        result = pytester.runpytest(
            basetemp,
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            "-p",
            "no:hypothesispytest",
            "--tb=no",
            *args,
        )
    finally:
        unmount_below(pytester.path)
    out: dict[str, str] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.failed:
            out[name] = "failed"
        elif report.skipped:
            out.setdefault(name, f"skipped: {report.longrepr[-1]}")
        elif report.when == "call":
            out.setdefault(name, "passed")
    return out


@pytest.mark.parametrize("broken", sorted(EXPECTED_FAILURES))
def test_the_suite_catches_a_broken_source(pytester: pytest.Pytester, broken: str) -> None:
    selection, expected = EXPECTED_FAILURES[broken]
    outcomes = run_suite(pytester, f"sources_with({broken!r})", "-k", selection)
    failed = {name for name, outcome in outcomes.items() if outcome == "failed"}
    assert failed == expected
    assert set(outcomes.values()) <= {"passed", "failed"}, outcomes


def test_a_type_the_plugins_do_not_contribute_is_skipped_as_a_capability(pytester):
    outcomes = run_suite(pytester, 'sources_with(only="emptyDir")', "-k", "fills")
    assert outcomes.pop("test_setup_fills_an_empty_directory[emptyDir]") == "passed"
    assert outcomes.pop("test_setup_fills_an_empty_directory[emptyDir-memory]") == "passed"
    assert outcomes["test_setup_fills_an_empty_directory[secret]"] == (
        "skipped: Skipped: volume sources lack capability secret"
    )
    assert {o.split(":")[0] for o in outcomes.values()} == {"skipped"}
