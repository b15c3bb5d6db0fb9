"""controllers: Kubernetes' built-in controllers, as controller contributions.

One module per controller, each built on :mod:`kcore.controllers` and exposing
``controllers(settings) -> list`` (Reconcilers or Controller-protocol objects). To add a
controller, add its module next to the others and name it in :data:`CONTROLLER_MODULES`.

* :mod:`.replicaset`: ReplicaSets (adoption and release, expectations, slow-start creates,
  Kubernetes' scale-down order, status).
"""

from __future__ import annotations

from typing import Any

from kcore import Settings, hookimpl
from kcore.plugins.controllers import replicaset

CONTROLLER_MODULES = (replicaset,)


@hookimpl
def kcore_controllers(settings: Settings) -> list[Any]:
    return [c for module in CONTROLLER_MODULES for c in module.controllers(settings)]


__all__ = ["CONTROLLER_MODULES", "kcore_controllers"]
