"""One scheduling attempt, as upstream's ``schedulePod`` (``pkg/scheduler/schedule_one.go``):
filter the nodes (a sample of them in a big cluster), score the ones that pass, pick the
best; or say, in upstream's words, why no node fits.

Sampling (``percentageOfNodesToScore``): with 100 nodes or fewer every node is checked;
above that, the search stops once ``max(100, n * p / 100)`` feasible nodes are found, where
``p`` is the configured percentage or, by default, ``max(5, 50 - n / 125)``. Each attempt
starts where the previous one stopped, so the nodes take turns.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kcore.plugins.scheduler.framework import SKIP, CycleState, NodeInfo, PodInfo

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
NO_NODES_MESSAGE = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


def num_feasible_nodes_to_find(all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes an attempt looks for (upstream's
    ``numFeasibleNodesToFind``)."""
    if all_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return all_nodes
    adaptive = percentage
    if adaptive <= 0:
        adaptive = max(50 - all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    return max(all_nodes * adaptive // 100, MIN_FEASIBLE_NODES_TO_FIND)


def fit_error_message(
    all_nodes: int,
    reasons: dict[str, int],
    *,
    unresolvable_nodes: int = 0,
    prefilter_message: str | None = None,
    preemption_policy: str = "PreemptLowerPriority",
) -> str:
    """Upstream's ``FitError`` message: ``0/3 nodes are available: 1 Insufficient cpu, 2
    node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available:
    1 No preemption victims found for incoming pod, 2 Preemption is not helpful for
    scheduling.`` (each part's counts sorted as text, as upstream sorts them).

    kcore does not preempt: the ``preemption:`` part says, per node, what upstream's
    DefaultPreemption says when no pod of lower priority can make room."""
    if all_nodes == 0:
        return NO_NODES_MESSAGE
    message = f"0/{all_nodes} nodes are available:"
    if prefilter_message:
        message += f" {prefilter_message}."
    elif reasons:
        message += " " + ", ".join(sorted(f"{n} {r}" for r, n in reasons.items())) + "."
    if preemption_policy == "Never":
        return message + " preemption: not eligible due to preemptionPolicy=Never."
    if prefilter_message:
        unresolvable_nodes = all_nodes
    counts = {NOT_HELPFUL: unresolvable_nodes, NO_VICTIMS: all_nodes - unresolvable_nodes}
    histogram = sorted(f"{n} {r}" for r, n in counts.items() if n)
    return message + f" preemption: 0/{all_nodes} nodes are available: {', '.join(histogram)}."


@dataclass
class ScheduleResult:
    """Where the pod goes (``node``), or why it fits nowhere (``message``)."""

    node: NodeInfo | None
    evaluated: int
    feasible: int
    message: str | None = None


class Profile:
    """The filter and score steps of a scheduler and the algorithm that runs them."""

    def __init__(
        self,
        filters: Sequence[Any],
        scores: Sequence[Any],
        *,
        percentage_of_nodes_to_score: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.filters = list(filters)
        self.scores = list(scores)
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self.next_start = 0
        self._filter_steps = [
            (step, getattr(step, "prepare", None), getattr(step, "unresolvable", False))
            for step in self.filters
        ]
        self._score_steps = [
            (step, getattr(step, "prepare", None), getattr(step, "normalize", None), step.weight)
            for step in self.scores
        ]

    def schedule(self, pod_info: PodInfo, snapshot: Any) -> ScheduleResult:
        """Find the node for ``pod_info`` among ``snapshot.nodes``."""
        nodes = snapshot.nodes
        if not nodes:
            return ScheduleResult(None, 0, 0, NO_NODES_MESSAGE)
        pod = pod_info.pod
        state = CycleState(pod_info, snapshot)
        filters = []
        for step, prepare, unresolvable in self._filter_steps:
            if prepare is not None:
                outcome = prepare(pod, state)
                if outcome == SKIP:
                    continue
                if outcome is not None:  # the pod fits no node at all
                    message = fit_error_message(
                        len(nodes),
                        {},
                        prefilter_message=str(outcome),
                        preemption_policy=pod_info.preemption_policy,
                    )
                    return ScheduleResult(None, 0, 0, message)
            filters.append((step.filter, unresolvable))
        feasible, evaluated, reasons, unresolvable_nodes = self._find_feasible(
            pod, state, filters, nodes
        )
        if not feasible:
            message = fit_error_message(
                len(nodes),
                reasons,
                unresolvable_nodes=unresolvable_nodes,
                preemption_policy=pod_info.preemption_policy,
            )
            return ScheduleResult(None, evaluated, 0, message)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0], evaluated, 1)
        state.feasible = feasible
        totals = self._prioritize(pod, state, feasible)
        return ScheduleResult(self._select(feasible, totals), evaluated, len(feasible))

    def _find_feasible(
        self, pod: Any, state: CycleState, filters: list[tuple[Any, Any]], nodes: list[NodeInfo]
    ) -> tuple[list[NodeInfo], int, dict[str, int], int]:
        count = len(nodes)
        wanted = num_feasible_nodes_to_find(count, self.percentage_of_nodes_to_score)
        start = self.next_start % count
        order = nodes[start:] + nodes[:start] if start else nodes
        checks = [check for check, _ in filters]
        feasible: list[NodeInfo] = []
        reasons: dict[str, int] = {}
        unresolvable_nodes = 0
        evaluated = 0
        for node in order:
            evaluated += 1
            for check in checks:
                outcome = check(pod, node, state)
                if outcome is not None:
                    break
            else:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
                continue
            found = (outcome,) if isinstance(outcome, str) else tuple(outcome)
            for reason in found:
                reasons[reason] = reasons.get(reason, 0) + 1
            unresolvable = filters[checks.index(check)][1]
            if unresolvable is True or (unresolvable and any(r in unresolvable for r in found)):
                unresolvable_nodes += 1
        self.next_start = (start + evaluated) % count
        return feasible, evaluated, reasons, unresolvable_nodes

    def _prioritize(self, pod: Any, state: CycleState, feasible: list[NodeInfo]) -> list[int]:
        totals = [0] * len(feasible)
        for step, prepare, normalize, weight in self._score_steps:
            if not weight:
                continue
            if prepare is not None and prepare(pod, state) == SKIP:
                continue
            score_nodes = getattr(step, "score_nodes", None)
            if score_nodes is not None:
                values = score_nodes(pod, feasible, state)
            else:
                score = step.score
                values = [score(pod, node, state) for node in feasible]
            if normalize is not None:
                normalize(pod, values, state)
            if min(values) < 0 or max(values) > 100:
                raise ValueError(
                    f"score step {step.name!r} returned a score outside 0..100: "
                    f"{min(values)}..{max(values)}"
                )
            if weight == 1:
                totals = [t + v for t, v in zip(totals, values, strict=True)]
            else:
                totals = [t + weight * v for t, v in zip(totals, values, strict=True)]
        return totals

    def _select(self, feasible: list[NodeInfo], totals: list[int]) -> NodeInfo:
        """The highest total; a tie goes to a random one of the best."""
        best = max(totals)
        ties = [i for i, total in enumerate(totals) if total == best]
        return feasible[ties[0] if len(ties) == 1 else self.rng.choice(ties)]


__all__ = [
    "Profile",
    "ScheduleResult",
    "fit_error_message",
    "num_feasible_nodes_to_find",
]
