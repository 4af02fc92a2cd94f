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
    elif (turns := _session_turns(config)) is not None:
        if not turns:
            return None  # whole sessions of drawn (or a file's) lengths: not known ahead
        per_run = config.conversation_num * turns  # type: ignore[operator]
    else:
        per_run = config.resolved_request_count()
    return per_run * policy.looks(config)


def _session_turns(config: UserConfig) -> int | None:
    """Turns per session of a run bounded by whole sessions (``conversation_num`` alone:
    every turn of every session is sent, not 10 x concurrency); 0 when that is not known
    ahead (drawn turn counts, or a file's sessions); None for any other run."""
    from aiperf.dataset.sessions import whole_session_leases

    if not whole_session_leases(config):
        return None
    if config.input_file is not None or config.resolved_dataset() != "synthetic" or \
            config.conversation_turn_stddev > 0:
        return 0
    return max(1, round(config.conversation_turn_mean))  # as sessions.turn_counts has it


def _turn_budget(objective: Objective, config: UserConfig, budget: int,
                 policy: VerdictPolicy) -> tuple[int, str]:
    """(n, how it reads) of an objective on some turns: exact for whole sessions of a fixed
    length, else the run's budget, which bounds the range's requests from above (so a
    "can never" warning on it holds for the range too)."""
    turns = objective.turns
    assert turns is not None
    per_session = _session_turns(config)
    if per_session:
        high = per_session if turns.high_index is None else min(per_session,
                                                                turns.high_index + 1)
        n = max(0, high - turns.low_index) * config.conversation_num  # type: ignore[operator]
        n *= policy.looks(config)
        return n, f"{n} requests of {turns}"
    return budget, f"at most {budget} requests of {turns}"


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
        n, n_text = budget, f"{budget} requests"
        if objective.turns is not None:
            n, n_text = _turn_budget(objective, config, budget, policy)
        q = parse_percentile(objective.stat)
        below = objective.op in ("<", "<=")
        if q is not None:
            need = {side: min_samples_for_quantile(q, confidence, side)
                    for side in ("upper", "lower")}
            pass_side, fail_side = ("upper", "lower") if below else ("lower", "upper")
            if n < need[pass_side]:
                warnings.append(
                    f"{objective.key} {objective.text} can never PASS with {n_text}: "
                    f"a bound on the {objective.stat} at {confidence:.3g} confidence needs "
                    f"n >= {need[pass_side]} (it can only FAIL or be INCONCLUSIVE); raise "
                    f"{_more(config)} or use a lower percentile")
            elif n < need[fail_side]:
                warnings.append(
                    f"{objective.key} {objective.text} can never FAIL with {n_text}: "
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


def _more(config: UserConfig) -> str:
    """What to raise for more requests: a run of whole sessions is as long as its sessions
    (a request_count would cut them)."""
    return "conversation_num" if _session_turns(config) is not None else "request_count"
