"""Topology spread constraints (filter and score) and preferred pod (anti-)affinity."""

from __future__ import annotations

from kcore.plugins.scheduler.filters import PodTopologySpread as SpreadFilter
from kcore.plugins.scheduler.scores import InterPodAffinityPreferred
from kcore.plugins.scheduler.scores import PodTopologySpread as SpreadScore

from .helpers import node, pod, run_filter, run_score

ZONE = "topology.kubernetes.io/zone"
MISMATCH = "node(s) didn't match pod topology spread constraints"


def spread(key=ZONE, max_skew=1, when="DoNotSchedule", **extra):
    constraint = {
        "maxSkew": max_skew,
        "topologyKey": key,
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }
    return {"topologySpreadConstraints": [constraint]}


def zoned_nodes():
    return [
        node("a1", labels={ZONE: "a"}),
        node("a2", labels={ZONE: "a"}),
        node("b1", labels={ZONE: "b"}),
        node("bare"),
    ]


def web(name, node_name=None, **kwargs):
    return pod(name, labels={"app": "web"}, node_name=node_name, **kwargs)


def test_do_not_schedule_keeps_the_skew_within_max_skew():
    placed = [web("w1", "a1"), web("w2", "a2")]
    incoming = web("w3", spec=spread())
    assert run_filter(SpreadFilter(), incoming, zoned_nodes(), placed) == {
        "a1": MISMATCH,
        "a2": MISMATCH,
        "b1": None,
        "bare": MISMATCH + " (missing required label)",
    }
    # Zone a holds 2 and zone b none: a third in zone a is a skew of 3.
    assert (
        run_filter(SpreadFilter(), web("w3", spec=spread(max_skew=2)), zoned_nodes(), placed)["a1"]
        == MISMATCH
    )
    loose = web("w3", spec=spread(max_skew=3))
    fits = run_filter(SpreadFilter(), loose, zoned_nodes(), placed)
    assert fits["a1"] is None and fits["b1"] is None


def test_only_matching_pods_of_the_namespace_count_and_terminating_ones_do_not():
    placed = [
        web("w1", "a1"),
        pod("db", labels={"app": "db"}, node_name="b1"),
        pod("other-ns", labels={"app": "web"}, node_name="b1", namespace="other"),
    ]
    incoming = web("w2", spec=spread())
    fits = run_filter(SpreadFilter(), incoming, zoned_nodes(), placed)
    assert fits["a1"] == MISMATCH and fits["b1"] is None
    going = web("w1", "a1")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    fits = run_filter(SpreadFilter(), incoming, zoned_nodes(), [going])
    assert fits["a1"] is None and fits["b1"] is None


def test_min_domains_counts_missing_domains_as_empty():
    placed = [web("w1", "a1"), web("w2", "b1")]
    # Two domains exist; with minDomains 3 the global minimum is 0, so skew 1+1-0 > 1.
    incoming = web("w3", spec=spread(minDomains=3))
    fits = run_filter(SpreadFilter(), incoming, zoned_nodes(), placed)
    assert fits["a1"] == MISMATCH and fits["b1"] == MISMATCH
    fits = run_filter(SpreadFilter(), web("w3", spec=spread()), zoned_nodes(), placed)
    assert fits["a1"] is None and fits["b1"] is None


def test_node_affinity_policy_decides_which_nodes_count():
    placed = [web("w1", "a1"), web("w2", "a2"), web("w3", "b1")]
    # The pod may only go to zone a nodes: zone b does not count (Honor), so zone a's 2 are
    # the minimum and one more fits there.
    selector = {"nodeSelector": {ZONE: "a"}}
    incoming = web("w4", spec={**spread(), **selector})
    fits = run_filter(SpreadFilter(), incoming, zoned_nodes(), placed)
    assert fits["a1"] is None
    ignoring = spread(nodeAffinityPolicy="Ignore")
    incoming = web("w4", spec={**ignoring, **selector})
    assert run_filter(SpreadFilter(), incoming, zoned_nodes(), placed)["a1"] == MISMATCH


def test_node_taints_policy_honor_leaves_untolerated_nodes_out():
    nodes = zoned_nodes()
    nodes[2]["spec"]["taints"] = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    placed = [web("w1", "a1")]
    honor = web("w2", spec=spread(nodeTaintsPolicy="Honor"))
    # Zone b's only node is tainted: only zone a counts, its minimum is 1, so a2 fits.
    assert run_filter(SpreadFilter(), honor, nodes, placed)["a2"] is None
    ignore = web("w2", spec=spread())
    assert run_filter(SpreadFilter(), ignore, nodes, placed)["a2"] == MISMATCH


def test_match_label_keys_narrow_the_selector_to_the_pods_revision():
    placed = [
        pod("old1", labels={"app": "web", "rev": "1"}, node_name="a1"),
        pod("old2", labels={"app": "web", "rev": "1"}, node_name="a2"),
    ]
    incoming = pod("new", labels={"app": "web", "rev": "2"}, spec=spread(matchLabelKeys=["rev"]))
    fits = run_filter(SpreadFilter(), incoming, zoned_nodes(), placed)
    assert fits["a1"] is None and fits["b1"] is None


def test_schedule_anyway_prefers_the_emptier_domain_and_skips_hard_only_pods():
    placed = [web("w1", "a1"), web("w2", "a2")]
    incoming = web("w3", spec=spread(when="ScheduleAnyway"))
    scores = run_score(SpreadScore(), incoming, zoned_nodes(), placed)
    assert scores["b1"] == 100
    assert scores["a1"] == scores["a2"] < scores["b1"]
    assert scores["bare"] == 0  # lacks the label: ignored
    # Only DoNotSchedule constraints: nothing to score, and no system defaults either.
    assert run_score(SpreadScore(), web("w3", spec=spread()), zoned_nodes(), placed) is None


def _preferred(kind, weight, labels, key="kubernetes.io/hostname"):
    return {
        "affinity": {
            kind: {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": weight,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": labels},
                            "topologyKey": key,
                        },
                    }
                ]
            }
        }
    }


def test_preferred_pod_affinity_draws_the_pod_near_matching_pods():
    nodes = [node("a"), node("b"), node("c")]
    placed = [pod("cache", labels={"app": "cache"}, node_name="b")]
    incoming = pod("web", spec=_preferred("podAffinity", 50, {"app": "cache"}))
    assert run_score(InterPodAffinityPreferred(), incoming, nodes, placed) == {
        "a": 0,
        "b": 100,
        "c": 0,
    }


def test_preferred_anti_affinity_on_a_zone_pushes_the_pod_away():
    nodes = [
        node("a1", labels={ZONE: "a"}),
        node("a2", labels={ZONE: "a"}),
        node("b1", labels={ZONE: "b"}),
    ]
    placed = [web("w1", "a1")]
    incoming = web("w2", spec=_preferred("podAntiAffinity", 100, {"app": "web"}, ZONE))
    assert run_score(InterPodAffinityPreferred(), incoming, nodes, placed) == {
        "a1": 0,
        "a2": 0,
        "b1": 100,
    }


def test_preferred_affinity_skips_without_terms_or_matches():
    nodes = [node("a"), node("b")]
    assert run_score(InterPodAffinityPreferred(), pod("p"), nodes) is None
    lonely = pod("p", spec=_preferred("podAffinity", 10, {"app": "nothing"}))
    assert run_score(InterPodAffinityPreferred(), lonely, nodes, [web("w", "a")]) is None
