"""The sample-size planner, run at collection: an objective the profile's request budget can
never decide is named with the n it needs, before any load is sent."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aiperf.metrics.definitions import parse_percentile
from pytest_aiperf.judge import is_exact_count
from pytest_aiperf.slo import Objective

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from pytest_aiperf.policy import VerdictPolicy


def request_budget(config: UserConfig, policy: VerdictPolicy) -> int | None:
    """The most requests the test may send (every look of ``extend``, every repeat), or None
    for a timed profile whose request count is not known ahead."""
    if config.benchmark_duration:
        rate = config.request_rate
        if not rate:
            return None
        per_run = math.floor(rate * config.benchmark_duration)
    else:
        per_run = config.resolved_request_count()
    return per_run * policy.looks(config)


def plan(objectives: list[Objective], config: UserConfig, policy: VerdictPolicy) -> list[str]:
    """One warning per objective that cannot be decided within the budget."""
    from aiperf.statistics import min_samples_for_quantile, proportion_interval

    budget = request_budget(config, policy)
    if budget is None:
        return []
    confidence = policy.look_confidence(policy.looks(config))
    warnings = []
    for objective in objectives:
        if is_exact_count(objective) or objective.window_s is not None or objective.server:
            continue  # an exact check; a window's n depends on the rate; a server's gauge
        if objective.turns is not None:
            continue  # "[turn>=2]": its n is the share of those turns, known after the run
        q = parse_percentile(objective.stat)
        below = objective.op in ("<", "<=")
        if q is not None:
            need = {side: min_samples_for_quantile(q, confidence, side)
                    for side in ("upper", "lower")}
            pass_side, fail_side = ("upper", "lower") if below else ("lower", "upper")
            if budget < need[pass_side]:
                warnings.append(
                    f"{objective.key} {objective.text} can never PASS with {budget} requests: "
                    f"a bound on the {objective.stat} at {confidence:.3g} confidence needs "
                    f"n >= {need[pass_side]} (it can only FAIL or be INCONCLUSIVE); raise "
                    f"request_count or use a lower percentile")
            elif budget < need[fail_side]:
                warnings.append(
                    f"{objective.key} {objective.text} can never FAIL with {budget} requests: "
                    f"the other bound needs n >= {need[fail_side]}")
        elif objective.metric in ("request_error_rate", "good_request_fraction"):
            scale = 100.0 if objective.metric == "request_error_rate" else 1.0
            best = 0 if below else budget  # the most favourable outcome
            interval = proportion_interval(best, budget, confidence)
            bound = (interval.high if below else interval.low)
            if bound is None:
                continue
            bound *= scale
            meets = bound <= objective.threshold if below else bound >= objective.threshold
            if objective.op in ("<", ">"):
                meets = bound < objective.threshold if below else bound > objective.threshold
            if not meets:
                warnings.append(
                    f"{objective.key} {objective.text} can never PASS with {budget} requests: "
                    f"even with {'no errors' if below else 'every request good'} the bound "
                    f"at {confidence:.3g} confidence is {bound:.3g} {objective.unit}; send "
                    "more requests or loosen the threshold")
    return warnings
