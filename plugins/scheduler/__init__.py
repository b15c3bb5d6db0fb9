"""scheduler: kcore's scheduler, modelled on the Kubernetes scheduling framework.

The plugin contributes three things:

- ``kcore_controllers``: the :class:`Scheduler`, a controller named ``scheduler``;
- ``kcore_scheduler_filters``: the built-in filter steps (NodeUnschedulable, NodeName,
  TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, InterPodAffinity);
- ``kcore_scheduler_scores``: the built-in score steps with upstream's default weights
  (TaintToleration 3, NodeAffinity 2, NodeResourcesFit/LeastAllocated 1,
  PodTopologySpread 2, NodeResourcesBalancedAllocation 1, ImageLocality 1).

How the scheduler gets every plugin's steps
-------------------------------------------
A controller receives only a :class:`kcore.ControllerContext`, so the steps travel in its
``extra``. The contract, for whoever runs controllers (the daemon's controller manager):

    ctx.extra["scheduler_filters"] = host.scheduler_filters(settings)
    ctx.extra["scheduler_scores"] = host.scheduler_scores(settings)

that is, the concatenation of ``kcore_scheduler_filters`` / ``kcore_scheduler_scores`` over
all loaded plugins, in plugin order (it includes this plugin's built-ins, so a third-party
step runs *with* them). The scheduler reads each key when it starts; a key that is absent
means "the built-in steps only". Steps passed to ``Scheduler(filters=..., scores=...)``
win over both (for tests and embedding). An empty list is taken as given (no filters, or no
scores).

Steps are :class:`kcore.FilterStep` / :class:`kcore.ScoreStep`. The scheduler calls them
with the pod (the object as served), a :class:`NodeInfo` (a read-only mapping view of the
Node object that also carries the node's accounting: ``allocatable``, ``requested``,
``pods``) and a :class:`CycleState` (``pod_info``: the parsed pod; ``snapshot``: all
nodes; ``data``: scratch space). Optional methods, as upstream's extension points:
``prepare(pod, state)`` (PreFilter/PreScore; return ``SKIP`` to sit this pod out, or, in a
filter, a reason to refuse every node), ``normalize(pod, scores, state)`` (NormalizeScore),
and ``unresolvable`` on a filter (its failures cannot be fixed by preemption). A filter may
return several reasons as a tuple. A score outside 0..100 fails the attempt.

Scheduled pods and failures are described in :mod:`.scheduler`, the queue in :mod:`.queue`,
the sampling of big clusters in :mod:`.algorithm`.

Not done (yet)
--------------
No preemption (the ``preemption:`` part of a failure message says what upstream says when no
pod of lower priority could make room); explicit ``topologySpreadConstraints`` and preferred
pod (anti-)affinity are not honoured (the controller-based default spreading applies to
every pod with a controller); a ``namespaceSelector`` in a pod affinity term counts as all
namespaces; no volume, zone-of-volume or DRA filters; one scheduler profile.
"""

from __future__ import annotations

from typing import Any

from kcore import Controller, FilterStep, ScoreStep, Settings, hookimpl
from kcore.plugins.scheduler.algorithm import (
    Profile,
    ScheduleResult,
    fit_error_message,
    num_feasible_nodes_to_find,
)
from kcore.plugins.scheduler.cache import SchedulerCache
from kcore.plugins.scheduler.filters import (
    InterPodAffinity,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    TaintToleration,
    default_filters,
)
from kcore.plugins.scheduler.framework import SKIP, CycleState, NodeInfo, PodInfo, Resources
from kcore.plugins.scheduler.queue import QueuedPodInfo, SchedulingQueue
from kcore.plugins.scheduler.scheduler import (
    DEFAULT_SCHEDULER_NAME,
    FILTERS_KEY,
    SCORES_KEY,
    Scheduler,
    SchedulerMetrics,
)
from kcore.plugins.scheduler.scores import (
    BalancedAllocation,
    ImageLocality,
    LeastAllocated,
    NodeAffinityPreferred,
    PodTopologySpread,
    TaintTolerationPreferred,
    default_scores,
)


@hookimpl
def kcore_controllers(settings: Settings) -> list[Controller]:
    return [Scheduler(settings)]


@hookimpl
def kcore_scheduler_filters(settings: Settings) -> list[FilterStep]:
    steps: list[Any] = default_filters()
    return steps


@hookimpl
def kcore_scheduler_scores(settings: Settings) -> list[ScoreStep]:
    steps: list[Any] = default_scores()
    return steps


__all__ = [
    "DEFAULT_SCHEDULER_NAME",
    "FILTERS_KEY",
    "SCORES_KEY",
    "SKIP",
    "BalancedAllocation",
    "CycleState",
    "ImageLocality",
    "InterPodAffinity",
    "LeastAllocated",
    "NodeAffinity",
    "NodeAffinityPreferred",
    "NodeInfo",
    "NodeName",
    "NodePorts",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "PodInfo",
    "PodTopologySpread",
    "Profile",
    "QueuedPodInfo",
    "Resources",
    "ScheduleResult",
    "Scheduler",
    "SchedulerCache",
    "SchedulerMetrics",
    "SchedulingQueue",
    "TaintToleration",
    "TaintTolerationPreferred",
    "default_filters",
    "default_scores",
    "fit_error_message",
    "num_feasible_nodes_to_find",
]
