"""runtime_sim: a simulated container runtime for scale tests with hundreds of nodes in
one process (as kwok and kubemark): CRI semantics, asyncio timers, no processes.

Containers run for the time their annotations script and exit with the scripted code
(see :mod:`kcore.plugins.runtime_sim.sim`). Imported images are kept under
``<data-dir>/images-sim``; pulls succeed at once with synthetic images.

``kcore sim-nodes`` runs many simulated nodes (Node, Lease heartbeats, their pods on this
runtime) in one process against an API server: see :mod:`kcore.plugins.runtime_sim.nodes`.
"""

from __future__ import annotations

from pathlib import Path

from kcore import RuntimeBackend, Settings, hookimpl


@hookimpl
def kcore_runtime(settings: Settings) -> RuntimeBackend:
    from kcore.plugins.runtime_sim.sim import make_backend

    return make_backend(Path(settings.data_dir))


@hookimpl
def kcore_add_commands():
    from kcore.plugins.runtime_sim.nodes import sim_nodes_command

    return [sim_nodes_command]
