"""The controller runtime: what controller plugins import (and all they need to import).

A controller is a :class:`Reconciler` (or any :class:`~kcore.interfaces.Controller`)
returned from a plugin's ``kcore_controllers`` hook; the daemon's
:class:`ControllerManager` runs them all, under leader election, on one set of
:class:`SharedInformers`::

    from kcore.controllers import Reconciler, split_key

    class ConfigMapEcho(Reconciler):
        name = "configmap-echo"
        kinds = [("v1", "ConfigMap")]

        async def reconcile(self, key):
            namespace, name = split_key(key)
            cm = self.cached(key)
            if cm is None:
                return None           # gone: nothing to do
            ...                       # read caches, write through self.api
            return None               # or seconds to come back; raise TemporaryError /
                                      # PermanentError to say what went wrong

Parts:

* :class:`SharedInformers` / :class:`SharedInformer`: one list+watch per kind, indexed by
  namespace, controller uid, owner uid, pod node, and custom functions;
  :class:`ResourceEvent` is what handlers and :meth:`Reconciler.keys_for` get.
* :class:`WorkQueue` with :class:`ExponentialBackoff`: dedupe, no key in two workers,
  per-key back-off, ``add_after``.
* :class:`Reconciler`, :class:`ReconcilerRunner`: the reconcile loop and its error rules.
* Owner references: :func:`controller_ref`, :func:`owner_reference`, :func:`with_owner`,
  :func:`is_controlled_by`, :func:`adopt`, :func:`release`, :class:`ControllerRefManager`.
* :class:`Expectations`: creates and deletes in flight.
* Pods: :func:`is_pod_active`, :func:`is_pod_ready`, :func:`is_pod_available`,
  :func:`deletion_order` and friends.
* :class:`LeaderElector` / :class:`LeaderElectionConfig` and :class:`ControllerManager`.
* Label selectors (:func:`from_label_selector_object` ...) and :class:`EventRecorder`,
  re-exported for plugins.
"""

from __future__ import annotations

from kcore.controllers.expectations import EXPECTATIONS_TIMEOUT, Expectations
from kcore.controllers.informers import (
    ADDED,
    BY_CONTROLLER,
    BY_NAMESPACE,
    BY_NODE,
    BY_OWNER,
    DELETED,
    MODIFIED,
    ResourceEvent,
    SharedInformer,
    SharedInformers,
)
from kcore.controllers.leader import LeaderElectionConfig, LeaderElector
from kcore.controllers.manager import ControllerManager
from kcore.controllers.owners import (
    ControllerRefManager,
    adopt,
    being_deleted,
    controller_ref,
    fresh_owner_check,
    group_of,
    is_controlled_by,
    owner_reference,
    ref_matches_kind,
    release,
    with_owner,
)
from kcore.controllers.pods import (
    POD_DELETION_COST,
    deletion_order,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    is_pod_terminating,
    parse_time,
    pod_condition,
    pod_deletion_cost,
    pod_ready_time,
)
from kcore.controllers.reconciler import (
    CountingApi,
    Kind,
    Reconciler,
    ReconcilerRunner,
    ReconcilerStats,
    make_key,
    namespace_terminating,
    split_key,
)
from kcore.controllers.workqueue import ExponentialBackoff, WorkQueue
from kcore.events import EventRecorder
from kcore.selectors import (
    LabelSelector,
    from_label_selector_object,
    label_selector_from_set,
    parse_label_selector,
)

__all__ = [
    "ADDED",
    "BY_CONTROLLER",
    "BY_NAMESPACE",
    "BY_NODE",
    "BY_OWNER",
    "DELETED",
    "EXPECTATIONS_TIMEOUT",
    "MODIFIED",
    "POD_DELETION_COST",
    "ControllerManager",
    "ControllerRefManager",
    "CountingApi",
    "EventRecorder",
    "Expectations",
    "ExponentialBackoff",
    "Kind",
    "LabelSelector",
    "LeaderElectionConfig",
    "LeaderElector",
    "Reconciler",
    "ReconcilerRunner",
    "ReconcilerStats",
    "ResourceEvent",
    "SharedInformer",
    "SharedInformers",
    "WorkQueue",
    "adopt",
    "being_deleted",
    "controller_ref",
    "deletion_order",
    "fresh_owner_check",
    "from_label_selector_object",
    "group_of",
    "is_controlled_by",
    "is_pod_active",
    "is_pod_available",
    "is_pod_ready",
    "is_pod_terminating",
    "label_selector_from_set",
    "make_key",
    "namespace_terminating",
    "owner_reference",
    "parse_label_selector",
    "parse_time",
    "pod_condition",
    "pod_deletion_cost",
    "pod_ready_time",
    "ref_matches_kind",
    "release",
    "split_key",
    "with_owner",
]
