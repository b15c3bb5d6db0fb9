"""The plugin host: discovery, slots, contributions and start-up errors."""

from __future__ import annotations

import pytest
from sample_plugins.contributions import Contributor

from kcore import PluginError, Settings, Store
from kcore.plugin_host import DEFAULT_PLUGINS, PluginHost, candidates_for, parse_plugin_list


def test_entry_point_plugin_fills_store_slot():
    host = PluginHost(["store_sqlite"])
    assert host.slot_owner("store") == "store_sqlite"
    [info] = host.info()
    assert info.name == "store_sqlite"
    assert info.slots == ("store",)
    assert "kcore_store" in info.hooks
    assert info.version != "unknown"


def test_dotted_module_path_loads_uninstalled_plugin():
    host = PluginHost(["sample_plugins.second_store"])
    assert host.slot_owner("store") == "sample_plugins.second_store"


def test_unknown_name_lists_known_plugins():
    with pytest.raises(PluginError, match=r"unknown plugin 'nope'; known plugins: .*store_sqlite"):
        PluginHost(["nope"])


def test_unknown_dotted_path_is_unknown_plugin_not_traceback():
    with pytest.raises(PluginError, match=r"unknown plugin 'no_such_pkg\.mod'"):
        PluginHost(["no_such_pkg.mod"])


def test_plugin_that_fails_to_import_is_named_with_its_error():
    with pytest.raises(PluginError) as err:
        PluginHost(["sample_plugins.fails_import"])
    assert "sample_plugins.fails_import" in str(err.value)
    assert "kcore_this_module_does_not_exist" in str(err.value)
    assert "failed to import" in str(err.value)


@pytest.mark.parametrize(
    ("module", "hook"),
    [
        ("sample_plugins.misspelled", "kcore_stor"),
        ("sample_plugins.unmarked_misspelled", "kcore_controlers"),
    ],
)
def test_misspelled_hook_is_a_startup_error(module, hook):
    with pytest.raises(PluginError, match=hook):
        PluginHost([module])


def test_hookimpl_with_argument_not_in_spec_is_rejected():
    with pytest.raises(PluginError, match="colour"):
        PluginHost(["sample_plugins.bad_argument"])


def test_two_plugins_for_one_slot_names_both():
    host = PluginHost(["store_sqlite", "sample_plugins.second_store"])
    with pytest.raises(PluginError) as err:
        host.slot_owner("store")
    assert "store_sqlite" in str(err.value)
    assert "sample_plugins.second_store" in str(err.value)


def test_empty_slot_names_candidates():
    host = PluginHost([])
    with pytest.raises(PluginError, match=r"no loaded plugin fills the store slot.*store_sqlite"):
        host.slot_owner("store")
    assert "store_sqlite" in candidates_for("store")
    with pytest.raises(PluginError, match="runtime slot"):
        host.slot_owner("runtime")


async def test_only_the_chosen_plugin_builds_the_backend(tmp_path):
    import sample_plugins.second_store as second

    second.created.clear()
    host = PluginHost(["sample_plugins.second_store"])
    store = await host.store(Settings(data_dir=tmp_path))
    try:
        assert isinstance(store, Store)
        assert len(second.created) == 1
        assert second.created[0].data_dir == tmp_path
    finally:
        await store.close()


async def test_store_sqlite_keeps_its_database_under_the_data_dir(tmp_path):
    host = PluginHost(["store_sqlite"])
    store = await host.store(Settings(data_dir=tmp_path))
    try:
        await store.create("/k", b"v")
    finally:
        await store.close()
    assert (tmp_path / "store" / "kcore.db").exists()


def test_contributions_concatenate_in_plugin_order_and_reject_duplicates():
    host = PluginHost(plugins=[("a", Contributor("x", "y")), ("b", Contributor("z"))])
    assert [c.name for c in host.controllers(Settings())] == ["x", "y", "z"]
    assert [v.type_name for v in host.volume_sources(Settings())] == ["x", "y", "z"]
    clash = PluginHost(plugins=[("a", Contributor("x")), ("b", Contributor("x"))])
    with pytest.raises(PluginError, match="two contributions named 'x'"):
        clash.controllers(Settings())


def test_parse_plugin_list():
    assert parse_plugin_list(None) == DEFAULT_PLUGINS
    assert parse_plugin_list(" a, b,,a ,c") == ("a", "b", "c")
    assert parse_plugin_list("") == ()
