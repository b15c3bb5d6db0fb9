"""The pytest plugin behind the conformance suites (registered as a ``pytest11`` entry
point, so it is active wherever kcore is installed; it collects nothing by itself).

It adds the options ``--kcore-plugin NAME`` (repeatable) and ``--kcore-option KEY=VALUE``
(plugin option values, as ``settings.options``), and the fixtures through which suites
get the implementation under test. A plugin author who tests an implementation directly
overrides the factory fixture (``store_factory``, ``runtime_factory``, ``network_factory``) in a
``conftest.py`` or test class.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kcore.settings import Settings

# Suite classes live in modules that authors import, not in their test files: rewrite their
# asserts so that a failure explains itself.
pytest.register_assert_rewrite("kcore.conformance.suites")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kcore", "kcore conformance")
    group.addoption(
        "--kcore-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="kcore plugin (entry-point name or module path) whose backends the suites test",
    )
    group.addoption(
        "--kcore-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="value of a plugin option for the suites, e.g. etcd_endpoints=http://127.0.0.1:2379",
    )


@pytest.fixture
def kcore_plugins(request: pytest.FixtureRequest) -> list[str]:
    """The plugins named with ``--kcore-plugin``."""
    return list(request.config.getoption("--kcore-plugin"))


@pytest.fixture
def kcore_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Plugin option values given with ``--kcore-option``."""
    options: dict[str, Any] = {}
    for item in request.config.getoption("--kcore-option"):
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--kcore-option expects KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = value
    return options


@pytest.fixture
def kcore_settings_factory(tmp_path: Path, kcore_options: dict[str, Any]) -> Callable[[], Settings]:
    """Make settings with a fresh, empty data directory on each call."""
    counter = itertools.count()

    def make() -> Settings:
        data_dir = tmp_path / f"data{next(counter)}"
        data_dir.mkdir()
        return Settings(data_dir=data_dir, options=dict(kcore_options))

    return make


@pytest.fixture
def store_factory(
    kcore_plugins: list[str], kcore_settings_factory: Callable[[], Settings]
) -> Callable[..., Awaitable[Any]]:
    """An async callable ``make(settings=None)`` returning a store on each call.

    Without ``settings`` the store is new and empty (a fresh data directory); with them
    (made by ``kcore_settings_factory``) it is the store of those settings, so that a test
    can close one store and open it again, as a restarted daemon does (the suite's
    ``durable`` checks).

    The default builds the store of the plugin named with ``--kcore-plugin``, through the
    same plugin host the daemon uses. Override this fixture to test a store directly::

        @pytest.fixture
        def store_factory(kcore_settings_factory):
            async def make(settings=None):
                settings = settings or kcore_settings_factory()
                return MyStore(settings.data_dir / "db")
            return make

    (A ``make()`` without parameters works too; the store then lacks the reopen checks.)
    """
    if not kcore_plugins:
        pytest.fail(
            "no store under test: pass --kcore-plugin NAME, or override the store_factory fixture",
            pytrace=False,
        )
    from kcore.plugin_host import PluginHost

    host = PluginHost(kcore_plugins)

    async def make(settings: Settings | None = None) -> Any:
        return await host.store(settings if settings is not None else kcore_settings_factory())

    return make


@pytest.fixture
def runtime_factory(
    kcore_plugins: list[str], kcore_settings_factory: Callable[[], Settings]
) -> Callable[..., Awaitable[Any]]:
    """An async callable ``make(settings=None)`` returning a new
    :class:`kcore.RuntimeBackend` on each call.

    Without ``settings`` the runtime gets a fresh, empty data directory; with them (made by
    ``kcore_settings_factory``) it runs on those, so that a test can close one runtime and
    start another on the same data directory, as a restarted node agent does.

    The default builds the runtime of the plugin named with ``--kcore-plugin``, through the
    same plugin host the daemon uses. Override this fixture to test a runtime directly::

        @pytest.fixture
        def runtime_factory(kcore_settings_factory):
            async def make(settings=None):
                settings = settings or kcore_settings_factory()
                return my_runtime_backend(settings.data_dir)
            return make
    """
    if not kcore_plugins:
        pytest.fail(
            "no runtime under test: pass --kcore-plugin NAME, or override the "
            "runtime_factory fixture",
            pytrace=False,
        )
    from kcore.plugin_host import PluginHost

    host = PluginHost(kcore_plugins)

    async def make(settings: Settings | None = None) -> Any:
        return await host.runtime(settings if settings is not None else kcore_settings_factory())

    return make


@pytest.fixture
def network_factory(
    kcore_plugins: list[str], kcore_settings_factory: Callable[[], Settings]
) -> Callable[..., Awaitable[Any]]:
    """An async callable ``make(settings=None)`` returning a new
    :class:`kcore.NetworkPlugin` on each call.

    Without ``settings`` the plugin gets a fresh, empty data directory; with them (made by
    ``kcore_settings_factory``) it runs on those, so that a test can close one plugin and
    start another on the same data directory, as a restarted node agent does.

    The default builds the network of the plugin named with ``--kcore-plugin``, through the
    same plugin host the daemon uses (plugin options come from ``--kcore-option``). Override
    this fixture to test a plugin directly::

        @pytest.fixture
        def network_factory(kcore_settings_factory):
            async def make(settings=None):
                return MyNetwork(settings or kcore_settings_factory())
            return make
    """
    if not kcore_plugins:
        pytest.fail(
            "no network under test: pass --kcore-plugin NAME, or override the "
            "network_factory fixture",
            pytrace=False,
        )
    from kcore.plugin_host import PluginHost

    host = PluginHost(kcore_plugins)

    async def make(settings: Settings | None = None) -> Any:
        return await host.network(settings if settings is not None else kcore_settings_factory())

    return make


@pytest.fixture
def volume_sources_factory(
    kcore_plugins: list[str], kcore_settings_factory: Callable[[], Settings]
) -> Callable[..., list[Any]]:
    """A callable ``make(settings=None)`` returning the :class:`kcore.VolumeSource` list
    that the plugins named with ``--kcore-plugin`` contribute (``kcore_volume_sources``),
    through the same plugin host the node agent uses. Override it to test sources
    directly::

        @pytest.fixture
        def volume_sources_factory():
            return lambda settings=None: [MyVolumeSource()]
    """
    if not kcore_plugins:
        pytest.fail(
            "no volume sources under test: pass --kcore-plugin NAME, or override the "
            "volume_sources_factory fixture",
            pytrace=False,
        )
    host = _volume_plugin_host(tuple(kcore_plugins))

    def make(settings: Settings | None = None) -> list[Any]:
        return host.volume_sources(settings if settings is not None else kcore_settings_factory())

    return make


@functools.cache
def _volume_plugin_host(plugins: tuple[str, ...]) -> Any:
    """One plugin host per run for the volume suite, whose tests are many and quick
    (finding and loading plugins costs more than most of them)."""
    from kcore.plugin_host import PluginHost

    return PluginHost(plugins)
