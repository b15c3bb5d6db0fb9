"""The built-in filter and score steps, one at a time, and the attempt that runs them."""

from __future__ import annotations

import pytest

from kcore.plugins.scheduler import (
    SKIP,
    BalancedAllocation,
    ImageLocality,
    InterPodAffinity,
    LeastAllocated,
    NodeAffinity,
    NodeAffinityPreferred,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    PodInfo,
    PodTopologySpread,
    Profile,
    SchedulerCache,
    TaintToleration,
    TaintTolerationPreferred,
    default_filters,
    default_scores,
    fit_error_message,
    num_feasible_nodes_to_find,
)
from kcore.plugins.scheduler.framework import pod_requests

from .helpers import attempt, node, pod, run_filter, run_score

# -- requests ---------------------------------------------------------------------------------


def test_requests_sum_containers_and_take_the_largest_init_container():
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m", "nvidia.com/gpu": "1"}}},
        ],
        "initContainers": [
            {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
        ],
        "overhead": {"cpu": "10m"},
    }
    total, nz_cpu, nz_memory = pod_requests(spec)
    assert (total.cpu, total.memory, total.scalars) == (1010, 64 * 2**20, {"nvidia.com/gpu": 1})
    # Scoring counts a container without a memory request as 200Mi.
    assert nz_cpu == 1010
    assert nz_memory == 64 * 2**20 + 200 * 2**20


def test_sidecars_run_beside_the_containers_and_later_init_containers():
    spec = {
        "initContainers": [
            {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
            {"name": "init", "resources": {"requests": {"cpu": "500m"}}},
        ],
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}],
    }
    total, _, _ = pod_requests(spec)
    assert total.cpu == 800  # max(300 + 100, 300 + 500)


# -- filters ----------------------------------------------------------------------------------


def test_node_unschedulable_refuses_cordoned_nodes_unless_tolerated():
    nodes = [node("a", unschedulable=True), node("b")]
    assert run_filter(NodeUnschedulable(), pod("p"), nodes) == {
        "a": "node(s) were unschedulable",
        "b": None,
    }
    tolerant = pod(
        "p",
        spec={"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]},
    )
    assert run_filter(NodeUnschedulable(), tolerant, nodes) == {"a": None, "b": None}


def test_node_name_matches_only_the_named_node():
    nodes = [node("a"), node("b")]
    named = pod("p", node_name="b")
    assert run_filter(NodeName(), named, nodes) == {
        "a": "node(s) didn't match the requested node name",
        "b": None,
    }


def test_taint_toleration_filter():
    nodes = [
        node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        node("evict", taints=[{"key": "bad", "effect": "NoExecute"}]),
        node("soft", taints=[{"key": "soft", "value": "x", "effect": "PreferNoSchedule"}]),
    ]
    assert run_filter(TaintToleration(), pod("p"), nodes) == {
        "gpu": "node(s) had untolerated taint {dedicated: gpu}",
        "evict": "node(s) had untolerated taint {bad: }",
        "soft": None,
    }
    tolerant = pod(
        "p",
        spec={
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                {"key": "bad", "operator": "Exists"},
            ]
        },
    )
    assert set(run_filter(TaintToleration(), tolerant, nodes).values()) == {None}
    wrong_value = pod(
        "p", spec={"tolerations": [{"key": "dedicated", "value": "cpu", "effect": "NoSchedule"}]}
    )
    assert run_filter(TaintToleration(), wrong_value, nodes)["gpu"] is not None
    everything = pod("p", spec={"tolerations": [{"operator": "Exists"}]})
    assert set(run_filter(TaintToleration(), everything, nodes).values()) == {None}


NODES_WITH_LABELS = [
    node("small", labels={"disk": "hdd", "cores": "2", "zone": "z1"}),
    node("big", labels={"disk": "ssd", "cores": "16", "zone": "z2"}),
    node("bare"),
]
MISMATCH = "node(s) didn't match Pod's node affinity/selector"


def _required(*terms):
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


def _fits(step, incoming):
    return sorted(k for k, v in run_filter(step, incoming, NODES_WITH_LABELS).items() if v is None)


def test_node_affinity_node_selector():
    assert _fits(NodeAffinity(), pod("p", spec={"nodeSelector": {"disk": "ssd"}})) == ["big"]
    assert run_filter(NodeAffinity(), pod("p"), NODES_WITH_LABELS) == {
        "small": None,
        "big": None,
        "bare": None,
    }
    refused = run_filter(
        NodeAffinity(), pod("p", spec={"nodeSelector": {"disk": "nvme"}}), NODES_WITH_LABELS
    )
    assert set(refused.values()) == {MISMATCH}


@pytest.mark.parametrize(
    ("expression", "fits"),
    [
        ({"key": "disk", "operator": "In", "values": ["ssd", "hdd"]}, ["big", "small"]),
        ({"key": "disk", "operator": "NotIn", "values": ["ssd"]}, ["bare", "small"]),
        ({"key": "disk", "operator": "Exists"}, ["big", "small"]),
        ({"key": "disk", "operator": "DoesNotExist"}, ["bare"]),
        ({"key": "cores", "operator": "Gt", "values": ["4"]}, ["big"]),
        ({"key": "cores", "operator": "Lt", "values": ["4"]}, ["small"]),
        ({"key": "cores", "operator": "Gt", "values": ["four"]}, []),
    ],
)
def test_node_affinity_match_expressions(expression, fits):
    assert (
        _fits(NodeAffinity(), pod("p", spec=_required({"matchExpressions": [expression]}))) == fits
    )


def test_node_affinity_match_fields_terms_are_ored_and_expressions_anded():
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["bare"]}]}
    assert _fits(NodeAffinity(), pod("p", spec=_required(by_name))) == ["bare"]
    not_name = {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["bare"]}]}
    assert _fits(NodeAffinity(), pod("p", spec=_required(not_name))) == ["big", "small"]
    ssd = {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
    assert _fits(NodeAffinity(), pod("p", spec=_required(ssd, by_name))) == ["bare", "big"]
    both = {
        "matchExpressions": [
            {"key": "disk", "operator": "Exists"},
            {"key": "zone", "operator": "In", "values": ["z1"]},
        ]
    }
    assert _fits(NodeAffinity(), pod("p", spec=_required(both))) == ["small"]
    # No terms, or an empty term, match no node; nodeSelector and affinity must both hold.
    assert _fits(NodeAffinity(), pod("p", spec=_required())) == []
    assert _fits(NodeAffinity(), pod("p", spec=_required({}))) == []
    mixed = {**_required(ssd), "nodeSelector": {"zone": "z1"}}
    assert _fits(NodeAffinity(), pod("p", spec=mixed)) == []


def test_resource_fit_counts_the_pods_on_the_node():
    nodes = [node("a", cpu="1", memory="1Gi"), node("b", cpu="1", memory="1Gi")]
    placed = [pod("old", "800m", "100Mi", node_name="a")]
    assert run_filter(NodeResourcesFit(), pod("p", "500m"), nodes, placed) == {
        "a": "Insufficient cpu",
        "b": None,
    }
    assert run_filter(NodeResourcesFit(), pod("p", "2", "2Gi"), nodes, placed) == {
        "a": ("Insufficient cpu", "Insufficient memory"),
        "b": ("Insufficient cpu", "Insufficient memory"),
    }
    # A pod without requests fits anywhere a pod fits.
    assert run_filter(NodeResourcesFit(), pod("p"), nodes, placed) == {"a": None, "b": None}


def test_resource_fit_pod_count_and_extended_resources():
    nodes = [node("a", pods="1"), node("gpu", extra={"nvidia.com/gpu": "2"})]
    placed = [pod("old", node_name="a")]
    assert run_filter(NodeResourcesFit(), pod("p"), nodes, placed)["a"] == "Too many pods"
    gpu = pod(
        "p",
        spec={"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]},
    )
    assert run_filter(NodeResourcesFit(), gpu, nodes) == {
        "a": "Insufficient nvidia.com/gpu",
        "gpu": None,
    }


def test_resource_fit_counts_init_containers():
    nodes = [node("a", cpu="1")]
    big_init = pod(
        "p",
        "100m",
        spec={"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1500m"}}}]},
    )
    assert run_filter(NodeResourcesFit(), big_init, nodes) == {"a": "Insufficient cpu"}


def test_node_ports():
    def with_port(name, port, node_name=None, ip=None):
        p = pod(name, node_name=node_name)
        p["spec"]["containers"][0]["ports"] = [
            {"containerPort": 80, "hostPort": port, **({"hostIP": ip} if ip else {})}
        ]
        return p

    nodes = [node("a"), node("b")]
    placed = [with_port("old", 8080, "a")]
    assert run_filter(NodePorts(), with_port("p", 8080), nodes, placed) == {
        "a": "node(s) didn't have free ports for the requested pod ports",
        "b": None,
    }
    assert run_filter(NodePorts(), with_port("p", 8081), nodes, placed) == {"a": None, "b": None}
    assert run_filter(NodePorts(), pod("p"), nodes, placed) == {"a": None, "b": None}


def _anti(labels, key="kubernetes.io/hostname"):
    return {
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": labels}, "topologyKey": key}
                ]
            }
        }
    }


def test_pod_anti_affinity_on_hostname():
    nodes = [node("a"), node("b"), node("c")]
    placed = [
        pod("web-1", labels={"app": "web"}, node_name="a"),
        pod("db-1", labels={"app": "db"}, node_name="b"),
        pod("web-other-ns", labels={"app": "web"}, node_name="c", namespace="other"),
    ]
    incoming = pod("web-2", labels={"app": "web"}, spec=_anti({"app": "web"}))
    assert run_filter(InterPodAffinity(), incoming, nodes, placed) == {
        "a": "node(s) didn't match pod anti-affinity rules",
        "b": None,
        "c": None,
    }


def test_existing_pods_anti_affinity_keeps_matching_pods_away():
    nodes = [node("a"), node("b")]
    placed = [pod("loner", labels={"app": "loner"}, node_name="a", spec=_anti({"app": "web"}))]
    assert run_filter(InterPodAffinity(), pod("web", labels={"app": "web"}), nodes, placed) == {
        "a": "node(s) didn't satisfy existing pods anti-affinity rules",
        "b": None,
    }
    assert run_filter(InterPodAffinity(), pod("db", labels={"app": "db"}), nodes, placed) == {
        "a": None,
        "b": None,
    }


def test_pod_anti_affinity_and_affinity_on_a_zone():
    zone = "topology.kubernetes.io/zone"
    nodes = [
        node("a1", labels={zone: "a"}),
        node("a2", labels={zone: "a"}),
        node("b1", labels={zone: "b"}),
    ]
    placed = [pod("web-1", labels={"app": "web"}, node_name="a1")]
    incoming = pod("web-2", labels={"app": "web"}, spec=_anti({"app": "web"}, zone))
    fits = run_filter(InterPodAffinity(), incoming, nodes, placed)
    assert [k for k, v in fits.items() if v is None] == ["b1"]
    near = pod(
        "cache",
        spec={
            "affinity": {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": zone}
                    ]
                }
            }
        },
    )
    fits = run_filter(InterPodAffinity(), near, nodes, placed)
    assert fits == {"a1": None, "a2": None, "b1": "node(s) didn't match pod affinity rules"}


def test_inter_pod_affinity_skips_pods_without_terms():
    _, state = attempt(pod("p"), [node("a")], [pod("q", node_name="a")])
    assert InterPodAffinity().prepare(pod("p"), state) == SKIP


# -- scores -----------------------------------------------------------------------------------


def test_least_allocated_prefers_the_emptier_node():
    nodes = [node("a", cpu="4", memory="4Gi"), node("b", cpu="4", memory="4Gi")]
    placed = [pod("old", "2", "2Gi", node_name="a")]
    scores = run_score(LeastAllocated(), pod("p", "1", "1Gi"), nodes, placed)
    assert scores == {"a": 25, "b": 75}
    # Without requests, a pod counts as 100m and 200Mi.
    scores = run_score(LeastAllocated(), pod("p"), [node("c", cpu="1", memory="1000Mi")])
    assert scores == {"c": (90 + 80) // 2}


def test_balanced_allocation():
    nodes = [node("a", cpu="4", memory="4Gi"), node("b", cpu="4", memory="4Gi")]
    placed = [pod("old", "2", node_name="a")]
    scores = run_score(BalancedAllocation(), pod("p", "1", "1Gi"), nodes, placed)
    # a: cpu 3/4, memory 1/4 -> std 0.25; b: 1/4 and 1/4 -> 0.
    assert scores == {"a": 75, "b": 100}
    assert run_score(BalancedAllocation(), pod("p"), nodes, placed) is None  # best effort


def test_node_affinity_preferred_terms_are_weighted_and_normalized():
    nodes = NODES_WITH_LABELS
    spec = {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 80,
                        "preference": {
                            "matchExpressions": [
                                {"key": "disk", "operator": "In", "values": ["ssd"]}
                            ]
                        },
                    },
                    {
                        "weight": 20,
                        "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]},
                    },
                ]
            }
        }
    }
    assert run_score(NodeAffinityPreferred(), pod("p", spec=spec), nodes) == {
        "small": 20,
        "big": 100,
        "bare": 0,
    }
    assert run_score(NodeAffinityPreferred(), pod("p"), nodes) is None


def test_taint_toleration_prefers_fewer_untolerated_prefer_no_schedule_taints():
    soft = {"effect": "PreferNoSchedule"}
    nodes = [
        node("clean"),
        node("one", taints=[{"key": "x", **soft}]),
        node("two", taints=[{"key": "x", **soft}, {"key": "y", **soft}]),
    ]
    assert run_score(TaintTolerationPreferred(), pod("p"), nodes) == {
        "clean": 100,
        "one": 50,
        "two": 0,
    }
    tolerant = pod("p", spec={"tolerations": [{"key": "y", "operator": "Exists"}]})
    assert run_score(TaintTolerationPreferred(), tolerant, nodes) == {
        "clean": 100,
        "one": 0,
        "two": 0,
    }


def test_pod_topology_spread_prefers_nodes_with_fewer_pods_of_the_same_controller():
    nodes = [node("a"), node("b"), node("c")]
    placed = [
        pod("rs-1", owner="rs", node_name="a"),
        pod("rs-2", owner="rs", node_name="a"),
        pod("rs-3", owner="rs", node_name="b"),
        pod("other-1", owner="other", node_name="c"),
        pod("other-2", owner="other", node_name="c"),
    ]
    scores = run_score(PodTopologySpread(), pod("rs-4", owner="rs"), nodes, placed)
    assert scores["c"] == 100
    assert scores["c"] > scores["b"] > scores["a"]
    assert run_score(PodTopologySpread(), pod("lone"), nodes, placed) is None


def test_pod_topology_spread_spreads_over_zones_too():
    zone = "topology.kubernetes.io/zone"
    nodes = [
        node("a1", labels={zone: "a"}),
        node("a2", labels={zone: "a"}),
        node("b1", labels={zone: "b"}),
    ]
    placed = [pod("rs-1", owner="rs", node_name="a1")]
    scores = run_score(PodTopologySpread(), pod("rs-2", owner="rs"), nodes, placed)
    assert scores["b1"] > scores["a2"] > scores["a1"]


def test_image_locality_prefers_nodes_with_the_image():
    image = {"names": ["docker.io/library/nginx:1.27"], "sizeBytes": 500 * 2**20}
    nodes = [node("has", images=[image]), node("lacks")]
    scores = run_score(ImageLocality(), pod("p", image="nginx:1.27"), nodes)
    assert scores["lacks"] == 0
    assert scores["has"] > 0
    assert run_score(ImageLocality(), pod("p", image="nginx:1.27"), [node("x"), node("y")]) is None


def test_default_weights_are_upstreams():
    weights = {step.name: step.weight for step in default_scores()}
    assert weights == {
        "TaintToleration": 3,
        "NodeAffinity": 2,
        "NodeResourcesFit": 1,
        "PodTopologySpread": 2,
        "InterPodAffinity": 2,
        "NodeResourcesBalancedAllocation": 1,
        "ImageLocality": 1,
    }


# -- the attempt ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [(10, 10), (100, 100), (101, 100), (1000, 420), (5000, 500), (10_000, 500), (50_000, 2500)],
)
def test_nodes_to_find_is_adaptive_like_upstream(nodes, expected):
    assert num_feasible_nodes_to_find(nodes) == expected


def test_fit_error_message_matches_upstream():
    message = fit_error_message(
        3,
        {"Insufficient cpu": 1, "node(s) didn't match Pod's node affinity/selector": 2},
        unresolvable_nodes=2,
    )
    assert message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node "
        "affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims "
        "found for incoming pod, 2 Preemption is not helpful for scheduling."
    )
    never = fit_error_message(1, {"Insufficient cpu": 1}, preemption_policy="Never")
    assert never == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: not eligible due to preemptionPolicy=Never."
    )
    assert fit_error_message(0, {}) == "no nodes available to schedule pods"


def test_profile_reports_every_nodes_first_failing_filter():
    cache = SchedulerCache()
    cache.set_node(node("tainted", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]))
    cache.set_node(node("full", cpu="1"))
    cache.set_node(node("cordoned", unschedulable=True))
    profile = Profile(default_filters(), default_scores())
    result = profile.schedule(PodInfo(pod("p", "2")), cache)
    assert result.node is None
    assert result.message == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}, "
        "1 node(s) were unschedulable. preemption: 0/3 nodes are available: 1 No preemption "
        "victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    )


def test_profile_samples_big_clusters_and_takes_turns():
    cache = SchedulerCache()
    for i in range(1000):
        cache.set_node(node(f"n{i:04}"))
    profile = Profile(default_filters(), default_scores())
    first = profile.schedule(PodInfo(pod("p", "100m")), cache)
    assert (first.evaluated, first.feasible) == (420, 420)
    assert profile.next_start == 420
    second = profile.schedule(PodInfo(pod("q", "100m")), cache)
    assert second.evaluated == 420 and profile.next_start == 840
    # An unschedulable pod is checked against every node.
    third = profile.schedule(PodInfo(pod("r", "64")), cache)
    assert third.node is None and third.evaluated == 1000
    assert third.message.startswith("0/1000 nodes are available: 1000 Insufficient cpu.")


def test_profile_fails_on_a_score_outside_the_range():
    class Broken:
        name = "Broken"
        weight = 1

        def score(self, pod, node, state):
            return 101

    cache = SchedulerCache()
    cache.set_node(node("a"))
    cache.set_node(node("b"))
    with pytest.raises(ValueError, match="Broken"):
        Profile(default_filters(), [Broken()]).schedule(PodInfo(pod("p")), cache)
