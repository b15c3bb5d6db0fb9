"""controllers: Kubernetes' built-in controllers, as controller contributions.

One module per controller, each built on :mod:`kcore.controllers` and exposing
``controllers(settings) -> list`` (Reconcilers or Controller-protocol objects). To add a
controller, add its module next to the others and name it in :data:`CONTROLLER_MODULES`.

* :mod:`.replicaset`: ReplicaSets (adoption and release, expectations, slow-start creates,
  Kubernetes' scale-down order, status).
* :mod:`.deployment`: Deployments (RollingUpdate and Recreate, revisions and rollback,
  pause, proportional scaling, progress deadline, history cleanup, status).
* :mod:`.daemonset`: DaemonSets (one pod per eligible node, RollingUpdate with surge or
  OnDelete, template hash label, status; no ControllerRevision history).
* :mod:`.nodelifecycle`: nodes that stop heartbeating become Unknown and tainted, their pods
  not ready, then evicted (``--node-monitor-grace-period``, ``--pod-eviction-timeout``).
* :mod:`.job`: Jobs (completions and parallelism, Indexed, finalizer-tracked counting,
  backoffLimit with back-off, activeDeadlineSeconds, podFailurePolicy, suspend, TTL).
* :mod:`.cronjob`: CronJobs (cron and macros via croniter, timeZone, concurrencyPolicy,
  missed schedules, startingDeadlineSeconds, suspend, history limits).
* :mod:`.garbagecollector`: ownerReferences: Background, Foreground and Orphan deletion,
  dangling references, several owners.
* :mod:`.namespace`: a deleted namespace is emptied, then finalized (``/finalize``).
* :mod:`.csr`: CertificateSigningRequests: node client requests from bootstrap tokens
  approved, approved client requests signed with the cluster CA.
* :mod:`.nodeipam`: a pod CIDR per Node out of ``--cluster-cidr``
  (``--allocate-node-cidrs``, ``--node-cidr-mask-size``).
* :mod:`.podgc`: pods of deleted Nodes, unscheduled terminating pods, pods of
  out-of-service Nodes, terminated pods above ``--terminated-pod-gc-threshold``.
* :mod:`.endpoints` and :mod:`.endpointslice`: v1 Endpoints and discovery.k8s.io/v1
  EndpointSlices of each Service with a selector, from the pods it selects (readiness,
  named target ports, terminating pods, slices of at most 100 endpoints).
"""

from __future__ import annotations

from typing import Any

import click

from kcore import Settings, hookimpl
from kcore.plugins.controllers import (
    cronjob,
    csr,
    daemonset,
    deployment,
    endpoints,
    endpointslice,
    garbagecollector,
    job,
    namespace,
    nodeipam,
    nodelifecycle,
    podgc,
    replicaset,
)

CONTROLLER_MODULES = (
    replicaset,
    deployment,
    daemonset,
    nodelifecycle,
    job,
    cronjob,
    garbagecollector,
    namespace,
    podgc,
    csr,
    nodeipam,
    endpoints,
    endpointslice,
)


@hookimpl
def kcore_controllers(settings: Settings) -> list[Any]:
    return [c for module in CONTROLLER_MODULES for c in module.controllers(settings)]


@hookimpl
def kcore_add_options() -> list[click.Option]:
    return [
        click.Option(
            ["--node-monitor-grace-period"],
            type=float,
            metavar="SECONDS",
            envvar="KCORE_NODE_MONITOR_GRACE_PERIOD",
            help="controllers: a node whose Lease is not renewed for this long becomes "
            "Unknown and unreachable-tainted (default 40).",
        ),
        click.Option(
            ["--pod-eviction-timeout"],
            type=float,
            metavar="SECONDS",
            envvar="KCORE_POD_EVICTION_TIMEOUT",
            help="controllers: how long pods stay on a not-ready or unreachable node before "
            "they are evicted: the tolerationSeconds the API server gives new pods "
            "(DefaultTolerationSeconds), and what pods without such tolerations get "
            "(default 300).",
        ),
        click.Option(
            ["--terminated-pod-gc-threshold"],
            type=int,
            metavar="N",
            envvar="KCORE_TERMINATED_POD_GC_THRESHOLD",
            help="controllers: delete the oldest terminated pods above this many "
            "(default 12500; 0: never).",
        ),
        click.Option(
            ["--allocate-node-cidrs"],
            is_flag=True,
            default=None,
            envvar="KCORE_ALLOCATE_NODE_CIDRS",
            help="controllers: give every Node a pod CIDR out of --cluster-cidr "
            "(kcore init turns it on).",
        ),
        click.Option(
            ["--node-cidr-mask-size"],
            type=int,
            metavar="BITS",
            envvar="KCORE_NODE_CIDR_MASK_SIZE",
            help="controllers: the prefix length of each Node's pod CIDR (default 24).",
        ),
    ]


__all__ = ["CONTROLLER_MODULES", "kcore_add_options", "kcore_controllers"]
