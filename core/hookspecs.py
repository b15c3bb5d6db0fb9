"""Every extension point of kcore, in one module.

A plugin is a module (or object) with functions marked ``@kcore.hookimpl`` whose names are
hooks below. Two kinds of hook:

**Slots** have exactly one active backend: the object store, the container runtime and
the pod network. A loaded plugin that implements a slot hook *offers* that slot; when the
daemon starts, exactly one loaded plugin must offer each slot it needs. Two is a start-up
error naming both; none is an error naming the installed plugins that could fill it. Only
the chosen plugin's hook is called.

**Contributions** come from any number of plugins: each returns a list, and kcore uses the
concatenation (volume sources, controllers, scheduler steps, admission checks, CLI commands
and options).

Rules for plugin authors, as in pluggy:

* an implementation may accept fewer arguments than its spec (so specs only ever *gain*
  arguments; none is renamed or removed);
* a misspelled ``kcore_`` hook name is a start-up error, never a silent no-op;
* slot hooks may return the backend or an awaitable of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import click

    from kcore.interfaces import (
        AdmissionCheck,
        Controller,
        FilterStep,
        NetworkPlugin,
        NodeService,
        RuntimeBackend,
        ScoreStep,
        VolumeSource,
    )
    from kcore.settings import Settings
    from kcore.store import Store

PROJECT = "kcore"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: slot name -> the hook that fills it
SLOT_HOOKS: dict[str, str] = {
    "store": "kcore_store",
    "runtime": "kcore_runtime",
    "network": "kcore_network",
}

# --------------------------------------------------------------------------------------
# Slots: one active backend each
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def kcore_store(settings: Settings) -> Store | Awaitable[Store] | None:
    """Create the object store backend (the *store* slot).

    :param settings: the data directory and plugin option values; a file-backed store
        keeps its files under ``settings.data_dir``.
    :returns: an object implementing :class:`kcore.store.Store`, or an awaitable of one.

    Called once per process when a component needs the store (the API server, ``kcore
    conformance``), and only on the one plugin chosen for the slot. The store is closed
    with ``await store.close()`` at shutdown.
    """


@hookspec(firstresult=True)
def kcore_runtime(settings: Settings) -> RuntimeBackend | Awaitable[RuntimeBackend] | None:
    """Create the container runtime (the *runtime* slot): a CRI-like runtime service and
    image service.

    :param settings: the data directory (images and container state live under it) and
        plugin option values.
    :returns: a :class:`kcore.interfaces.RuntimeBackend`, or an awaitable of one.

    Called once by the node agent at start-up, only on the plugin chosen for the slot.
    """


@hookspec(firstresult=True)
def kcore_network(settings: Settings) -> NetworkPlugin | Awaitable[NetworkPlugin] | None:
    """Create the pod network (the *network* slot), CNI-like.

    :param settings: the data directory and plugin option values (pod CIDR and the like).
    :returns: a :class:`kcore.interfaces.NetworkPlugin`, or an awaitable of one.

    Called once by the node agent at start-up, only on the plugin chosen for the slot.
    """


# --------------------------------------------------------------------------------------
# Contributions: any number of plugins, results concatenated
# --------------------------------------------------------------------------------------


@hookspec
def kcore_volume_sources(settings: Settings) -> list[VolumeSource]:
    """Volume types this plugin materializes (``emptyDir``, ``configMap``, ...).

    :param settings: the data directory and plugin option values.
    :returns: a list of :class:`kcore.interfaces.VolumeSource`; each ``type_name`` must
        be unique across loaded plugins (a duplicate is a start-up error). A plugin's own
        volume type is a CSI driver: ``type_name = "csi:<driver>"`` materializes the pods'
        ``csi: {driver: <driver>, volumeAttributes: {...}}`` volumes.

    Called once by the node agent at start-up.
    """


@hookspec
def kcore_controllers(settings: Settings) -> list[Controller]:
    """Reconcile loops to run in the daemon's controller manager.

    :param settings: the data directory and plugin option values.
    :returns: a list of :class:`kcore.interfaces.Controller`; names must be unique.

    Called once when the controller manager starts. The scheduler is a controller too.
    """


@hookspec
def kcore_node_services(settings: Settings) -> list[NodeService]:
    """Long-running parts of every node, next to the node agent: the service proxy that
    programs the node's packet filter, a node-local DNS server, ...

    :param settings: the data directory and plugin option values.
    :returns: a list of :class:`kcore.interfaces.NodeService`; names must be unique.

    Called once by the node agent at start-up (in the daemon, in ``kcore node`` and in
    ``kcore join``). Each service's ``run`` gets a
    :class:`kcore.interfaces.NodeServiceContext` with the node's API client and network
    backend; a DNS service publishes its address there for the pods' resolv.conf.
    """


@hookspec
def kcore_scheduler_filters(settings: Settings) -> list[FilterStep]:
    """Filter steps for the scheduler: may a pod run on a node?

    :param settings: the data directory and plugin option values.
    :returns: a list of :class:`kcore.interfaces.FilterStep`, applied in plugin order;
        a node passes when every filter returns ``None``.

    Called once when the scheduler starts.
    """


@hookspec
def kcore_scheduler_scores(settings: Settings) -> list[ScoreStep]:
    """Score steps for the scheduler: how good is a node that passed the filters?

    :param settings: the data directory and plugin option values.
    :returns: a list of :class:`kcore.interfaces.ScoreStep`; the node with the highest
        weighted sum wins.

    Called once when the scheduler starts.
    """


@hookspec
def kcore_admission_checks(settings: Settings) -> list[AdmissionCheck]:
    """Checks the API server runs on every write after defaulting and validation, in
    plugin order; any may refuse the write or change the object.

    :param settings: the data directory and plugin option values.
    :returns: a list of :class:`kcore.interfaces.AdmissionCheck`.

    Called once when the API server starts.
    """


@hookspec
def kcore_add_commands() -> list[click.Command]:
    """Subcommands for the ``kcore`` command line (``kcore <name> ...``).

    :returns: a list of ``click.Command``; a name that is already taken is a start-up error.

    Called when the command line is built, for the plugins named by ``--plugins`` (or the
    defaults). Commands get :class:`kcore.settings.Settings` from ``click`` context:
    ``ctx.find_object(kcore.cli.CliState).settings``.
    """


@hookspec
def kcore_add_options() -> list[click.Option]:
    """Options for every ``kcore`` command (the daemon, ``kcore conformance``, ...), such
    as ``--etcd-endpoints``.

    :returns: a list of ``click.Option``. Their values reach hooks as
        ``settings.options[<python name>]``. Give each an ``envvar`` where an environment
        variable makes sense.

    Called when the command line is built, for the plugins named by ``--plugins`` (or the
    defaults) and, for ``kcore conformance``, the plugin under test.
    """


def _all_specs() -> dict[str, Any]:
    return {name: obj for name, obj in globals().items() if name.startswith("kcore_")}
