"""The plugin's hooks, and a third-party plugin's steps reaching the scheduler."""

from __future__ import annotations

from kcore import ControllerContext, FilterStep, ScoreStep, Settings, hookimpl
from kcore.plugin_host import PluginHost
from kcore.plugins.scheduler import FILTERS_KEY, SCORES_KEY, Scheduler

from .helpers import node, pod


class TeamFilter:
    """Pods labelled ``team`` go only to nodes of that team."""

    name = "Team"
    unresolvable = True

    def filter(self, pod, node, state):
        team = pod["metadata"].get("labels", {}).get("team")
        if team and node["metadata"]["labels"].get("team") != team:
            return "node(s) belong to another team"
        return None


class Favourite:
    """Strongly prefer the node named ``favourite``."""

    name = "Favourite"
    weight = 50

    def score(self, pod, node, state):
        return 100 if node["metadata"]["name"] == "favourite" else 0


class TeamsPlugin:
    @hookimpl
    def kcore_scheduler_filters(self, settings):
        return [TeamFilter()]

    @hookimpl
    def kcore_scheduler_scores(self, settings):
        return [Favourite()]


def host_with_teams() -> PluginHost:
    return PluginHost(["kcore.plugins.scheduler"], plugins=[("teams", TeamsPlugin())])


def test_the_plugin_contributes_the_scheduler_and_its_steps():
    settings = Settings()
    host = PluginHost(["kcore.plugins.scheduler"])
    [controller] = host.controllers(settings)
    assert controller.name == "scheduler"
    filters = host.scheduler_filters(settings)
    scores = host.scheduler_scores(settings)
    assert [f.name for f in filters] == [
        "NodeUnschedulable",
        "NodeName",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "NodeResourcesFit",
        "PodTopologySpread",
        "InterPodAffinity",
    ]
    assert all(isinstance(f, FilterStep) for f in filters)
    assert all(isinstance(s, ScoreStep) for s in scores)
    # Without steps in ctx.extra, the scheduler runs the built-ins only.
    got_filters, got_scores = controller.steps(ControllerContext(api=None, settings=settings))
    assert [f.name for f in got_filters] == [f.name for f in filters]
    assert [s.name for s in got_scores] == [s.name for s in scores]


def test_steps_from_every_plugin_come_through_ctx_extra():
    settings = Settings()
    host = host_with_teams()
    [scheduler] = host.controllers(settings)
    ctx = ControllerContext(
        api=None,
        settings=settings,
        extra={
            FILTERS_KEY: host.scheduler_filters(settings),
            SCORES_KEY: host.scheduler_scores(settings),
        },
    )
    filters, scores = scheduler.steps(ctx)
    assert [f.name for f in filters][-1] == "Team"
    assert [s.name for s in scores][-1] == "Favourite"
    assert len(filters) == 9


async def test_third_party_steps_change_decisions(cluster):
    settings = Settings()
    host = host_with_teams()
    [scheduler] = host.controllers(settings)
    assert isinstance(scheduler, Scheduler)
    extra = {
        FILTERS_KEY: host.scheduler_filters(settings),
        SCORES_KEY: host.scheduler_scores(settings),
    }
    await cluster.create(
        node("blue", cpu="64", labels={"team": "blue"}),
        node("favourite", cpu="1"),
        node("red", cpu="1", labels={"team": "red"}),
    )
    async with cluster.scheduler(scheduler, extra=extra):
        await cluster.create(pod("anyone", "100m"))
        # The big empty node would win on resources; the third-party score says otherwise.
        assert await cluster.node_of("anyone") == "favourite"
        await cluster.create(pod("blue-pod", "100m", labels={"team": "blue"}))
        assert await cluster.node_of("blue-pod") == "blue"
        await cluster.create(pod("green-pod", "100m", labels={"team": "green"}))
        cond = await cluster.condition("green-pod")
        # Built-in filters still run first: the third-party reason counts where they pass.
        await cluster.create(pod("red-huge", "2", labels={"team": "red"}))
        huge = await cluster.condition("red-huge")
    assert cond["message"] == (
        "0/3 nodes are available: 3 node(s) belong to another team. preemption: 0/3 nodes are "
        "available: 3 Preemption is not helpful for scheduling."
    )
    # favourite and red are too small (NodeResourcesFit), blue is another team's.
    assert huge["message"] == (
        "0/3 nodes are available: 1 node(s) belong to another team, 2 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod."
    )


async def test_without_the_extra_the_third_party_steps_do_not_run(cluster):
    await cluster.create(node("favourite", cpu="1"), node("big", cpu="64"))
    async with cluster.scheduler(Scheduler(seed=1)):
        await cluster.create(pod("p", "500m", labels={"team": "green"}))
        assert await cluster.node_of("p") == "big"
