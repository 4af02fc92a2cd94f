"""One probe of a capacity search: the profile at one load point, run on the mesh and
judged exactly as a pytest-aiperf test is (``pytest_aiperf.judge``: order-statistic bounds
for percentiles, Clopper-Pearson for error rates; ``extend`` adds chunks of the same
profile while an objective is INCONCLUSIVE, each look at confidence 1 - alpha / K).

The budgets are checked before every run (the first chunk and each extend chunk): a run
that would pass the request budget is not started, nor one the time left cannot hold by
the best throughput seen so far; each run's request timeout is also cut to the time left,
so a server that stops answering cannot hold the search past its deadline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiperf.capacity.model import Probe, point_text, status_of
from aiperf.capacity.search import BudgetExhausted, Ledger

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from aiperf.results import ProfileResult
    from pytest_aiperf.policy import VerdictPolicy
    from pytest_aiperf.slo import Objective, Verdict

RunFunction = Callable[["UserConfig"], "ProfileResult"]
# (probe point, chunk number from 1, its result) -> where its artifacts went, if anywhere
OnRun = Callable[[float, int, "ProfileResult"], "str | None"]
CURVE_METRICS = ("request_throughput", "time_to_first_token.p50", "time_to_first_token.p99",
                 "request_latency.p50", "request_latency.p99", "request_error_rate")
RATE_PROBE_SECONDS = 5.0  # a request-rate probe's default length (its request count)
RUN_OVERHEAD_S = 1.0  # the mesh's own time around a run (configure, collect): estimates


class _Stop(Exception):
    """An extend chunk that cannot be run (budget, or its run failed)."""


class _Decided(Exception):
    """An objective FAILed: the probe fails whatever the undecided ones would say, so no
    more chunks are sent for them."""


def derived_goodput(objectives: list[Objective], streams: bool,
                    produces_tokens: bool) -> dict[str, float]:
    """Per-request thresholds from the SLOs (``time_to_first_token.p99 < 250 ms`` -> a
    request is good when its TTFT is at most 250 ms), so every probe reports goodput and
    the share of requests that met every SLO."""
    from aiperf.metrics.definitions import BY_TAG, goodput_problem

    out: dict[str, float] = {}
    for o in objectives:
        if o.implicit or o.relative or o.window_s is not None or o.metric.startswith("adj_"):
            continue
        if o.turns is not None:  # "[turn>=2]": not a bar for every request
            continue
        spec = BY_TAG[o.base_tag]
        if not spec.per_request or goodput_problem(o.metric, streams, produces_tokens):
            continue
        upward = o.op in (">", ">=")
        if upward != bool(spec.higher_is_better):
            continue
        # the strictest threshold of a metric named twice
        if o.metric in out:
            keep = max if upward else min
            out[o.metric] = keep(out[o.metric], o.threshold)
        else:
            out[o.metric] = o.threshold
    return out


class ProbeRunner:
    """Runs a probe at a point: ``runner(point, ledger) -> Probe``."""

    def __init__(self, run: RunFunction, profile: dict[str, Any],
                 objectives: list[Objective], *, over: str,
                 policy: VerdictPolicy | None = None, validity: str | None = None,
                 on_run: OnRun | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from aiperf.common.config import UserConfig
        from pytest_aiperf.policy import VerdictPolicy
        from pytest_aiperf.slo import check_applicable, check_goodput

        if over not in ("concurrency", "request_rate"):
            raise ValueError(f"over must be concurrency or request_rate, not {over!r}")
        if over == "concurrency" and profile.get("request_rate") is not None:
            raise ValueError("a search over concurrency takes no request_rate (it would make "
                             "each probe an open-loop run capped at the concurrency)")
        if not objectives:
            raise ValueError("a capacity search needs at least one objective (slo)")
        self.run = run
        self.over = over
        self.objectives = objectives
        self.policy = policy or VerdictPolicy(inconclusive="extend")
        self.validity = validity or self.policy.validity
        self.on_run = on_run
        self.clock = clock
        self._best_rate = 0.0  # requests per second, the best seen: time estimates
        base = UserConfig.build(where="capacity profile", **{
            **profile, over: 1 if over == "concurrency" else 1.0})
        from aiperf.plugin import PluginType, plugins

        meta = plugins.get_metadata(PluginType.ENDPOINT, base.endpoint_type)
        streams = base.streaming and bool(getattr(meta, "supports_streaming", False))
        tokens = bool(getattr(meta, "produces_tokens", True))
        profile = dict(profile)
        if not profile.get("goodput"):
            goodput = derived_goodput(objectives, streams, tokens)
            if goodput:
                profile["goodput"] = goodput
        check_goodput(profile.get("goodput") or {}, streams, tokens)
        check_applicable(objectives, profile, streams, tokens)
        self.profile = profile

    # -- the profile at a point -------------------------------------------------------------

    def profile_at(self, point: float) -> dict[str, Any]:
        """The profile at ``point``, sized by its own key: a request count or a duration
        as given; whole sessions when it gives ``conversation_num`` alone (a request count
        added there would cut its sessions and send another number of requests), at least
        one per slot of a closed loop (a session is one slot's chain of turns: fewer
        sessions than slots never hold ``point`` requests in flight); else the default
        request count."""
        values = {**self.profile,
                  self.over: int(point) if self.over == "concurrency" else float(point)}
        if "request_count" in values or "benchmark_duration" in values:
            return values
        if values.get("conversation_num") is not None:
            if self.over == "concurrency":
                values["conversation_num"] = max(int(values["conversation_num"]), int(point))
            return values
        values["request_count"] = self.default_request_count(point)
        return values

    def default_request_count(self, point: float) -> int:
        """Enough to bound every percentile objective at the extend's per-look confidence
        (twice the least n that gives a bound: a bound at its least n is the extreme value,
        which decides only a generous threshold), and at least AIPerf's 10 x concurrency, or
        ``RATE_PROBE_SECONDS`` of a rate."""
        from aiperf.metrics.definitions import parse_percentile
        from aiperf.statistics import min_samples_for_quantile
        from pytest_aiperf.policy import EXTEND_FACTOR

        looks = EXTEND_FACTOR if self.policy.inconclusive == "extend" else 1
        confidence = self.policy.look_confidence(looks)
        need = 0
        for o in self.objectives:
            q = parse_percentile(o.stat)
            if q is None or o.window_s is not None:
                continue
            side = "upper" if o.op in ("<", "<=") else "lower"
            need = max(need, 2 * min_samples_for_quantile(q, confidence, side))
        load = (10 * int(point) if self.over == "concurrency"
                else math.ceil(point * RATE_PROBE_SECONDS))
        return max(need, load, 10)

    def _estimate_s(self, point: float, requests: int) -> float:
        if self.over == "request_rate":
            return requests / point + RUN_OVERHEAD_S
        if self._best_rate <= 0:
            return 0.0  # the first probe: nothing known yet (its timeout is still cut)
        return requests / self._best_rate + RUN_OVERHEAD_S

    # -- running ------------------------------------------------------------------------------

    def __call__(self, point: float, ledger: Ledger) -> Probe:
        from aiperf.common.config import UserConfig

        started = self.clock()
        values = self.profile_at(point)
        config = UserConfig.build(where=f"capacity probe at {point_text(point, self.over)}",
                                  **values)
        chunk = requests_per_run(config) + config.warmup_request_count
        if config.benchmark_duration is not None:
            chunk = max(chunk, 1)
        looks = self.policy.looks(config)
        left = ledger.requests_left()
        if left is not None and config.benchmark_duration is None:
            looks = min(looks, left // max(1, chunk))
        estimate = (config.benchmark_duration + RUN_OVERHEAD_S
                    if config.benchmark_duration is not None
                    else self._estimate_s(point, chunk))
        reason = ledger.fits(chunk if config.benchmark_duration is None else 0, estimate)
        if reason is not None or looks < 1:
            raise BudgetExhausted(reason or f"request budget: {left} left, a probe at "
                                            f"{point_text(point, self.over)} needs {chunk}")
        confidence = self.policy.look_confidence(looks)
        probe = Probe(point, "PASS", confidence=confidence)
        runs: list[ProfileResult] = []

        def one_run() -> ProfileResult | None:
            """A chunk run and spent; None when it cannot be judged (the probe says why)."""
            result = self._run_bounded(values, ledger, point)
            runs.append(result)
            # warm-up requests are left out of every result, but they were sent
            ledger.spend(result.request_count + result.error_count
                         + config.warmup_request_count)
            probe.requests += result.request_count + result.error_count
            probe.looks = len(runs)
            self._learn(result)
            if self.on_run is not None:
                where = self.on_run(point, len(runs), result)
                probe.artifacts = probe.artifacts or where
            return self._usable(result, config, probe)

        try:
            first = one_run()
        except Exception as exc:  # the run itself failed: the search stops with the cause
            from aiperf.errors import AIPerfError

            if not isinstance(exc, AIPerfError):
                raise
            probe.status, probe.cause = "ERROR", f"{type(exc).__name__}: {exc}"
            probe.seconds = self.clock() - started
            return probe
        if first is None:
            probe.seconds = self.clock() - started
            return probe

        last: list[Verdict] = []

        def more() -> ProfileResult:
            if any(v.failed for v in last):
                raise _Decided
            why = ledger.fits(chunk if config.benchmark_duration is None else 0,
                              estimate if config.benchmark_duration is not None
                              else self._estimate_s(point, chunk))
            if why is not None:
                raise _Stop(why)
            try:
                result = one_run()
            except Exception as exc:
                from aiperf.errors import AIPerfError

                if not isinstance(exc, AIPerfError):
                    raise
                raise _Stop(f"{type(exc).__name__}: {exc}") from None
            if result is None:
                raise _Stop(probe.cause or "a chunk could not be judged")
            return result

        from pytest_aiperf.judge import extend_until_decided, judge_runs

        def judged(results: list[ProfileResult]) -> list[Verdict]:
            last[:] = judge_runs(self.objectives, results, config, self.policy.steady_state,
                                 confidence)
            return last

        try:
            verdicts, _ = extend_until_decided(first, more, judged, looks)
        except _Decided:
            verdicts = list(last)
        except _Stop as stop:
            good = [r for r in runs if r.request_count]
            verdicts = judged(good)
            probe.warnings.append(f"extend stopped after {len(runs)} runs: {stop}")
            if probe.status in ("INVALID", "ERROR"):  # the failed chunk said so
                probe.warnings.append(f"chunk {len(runs)}: {probe.cause}")
                probe.status, probe.cause = "PASS", None
        probe.verdicts = verdicts
        probe.status = status_of(verdicts)
        self._goodput(probe, runs, confidence)
        probe.metrics = _curve(runs[0])
        probe.seconds = self.clock() - started
        return probe

    def _run_bounded(self, values: dict[str, Any], ledger: Ledger,
                     point: float) -> ProfileResult:
        """One run whose request timeout fits the time budget's remainder."""
        from aiperf.common.config import UserConfig
        from pytest_aiperf.deadline import bounded_profile

        config = UserConfig.build(where=f"capacity probe at {point_text(point, self.over)}",
                                  **values)
        left = ledger.seconds_left()
        if left is not None:
            bounds = bounded_profile(config, values, max(left, 1.0))
            if bounds:
                config = UserConfig.build(where="capacity probe", **{**values, **bounds})
        return self.run(config)

    def _learn(self, result: ProfileResult) -> None:
        if "request_throughput" in result:
            self._best_rate = max(self._best_rate, result.metric("request_throughput"))

    def _usable(self, result: ProfileResult, config: UserConfig,
                probe: Probe) -> ProfileResult | None:
        """The result, or None with the probe marked ERROR (all failed, or a request
        unaccounted for) or INVALID (the client could not deliver the load)."""
        invariant = result.invariant
        if invariant and not invariant.get("ok", True):
            probe.status = "ERROR"
            probe.cause = (f"credit invariant broken: {invariant.get('credits_issued')} "
                           f"requests issued, {invariant.get('records_received')} records")
            return None
        if result.request_count == 0:
            probe.status, probe.cause = "ERROR", _unusable(result)
            return None
        if self.validity != "off":
            validity = result.validity
            if validity is not None and not validity.valid:
                if self.validity == "error":
                    probe.status, probe.cause = "INVALID", validity.reason()
                    return None
                probe.warnings.append(f"INVALID run (validity=warn): {validity.reason()}")
        return result

    def _goodput(self, probe: Probe, runs: list[ProfileResult], confidence: float) -> None:
        """Goodput (good requests per second) and the SLO-attainment share of the requests
        sent, with its Clopper-Pearson interval, pooled over the probe's runs."""
        judged = [r for r in runs if r.request_count and "good_request_count" in r]
        if not judged:
            return
        from aiperf.statistics import proportion_interval

        good = sum(round(r.metric("good_request_count")) for r in judged)
        sent = sum(r.request_count + r.error_count for r in judged)
        duration = sum(r.metric("benchmark_duration") for r in judged
                       if "benchmark_duration" in r)
        probe.goodput = good / duration if duration > 0 else None
        if sent:
            probe.attainment = good / sent
            interval = proportion_interval(good, sent, confidence)
            probe.attainment_interval = (interval.low, interval.high)


def requests_per_run(config: UserConfig) -> int:
    """The profiling requests one run sends (0 for a timed run): every turn of every
    session for a run of whole sessions (its synthetic mean turn count rounded, as the
    dataset draws it; an estimate for drawn or a file's turn counts: the ledger spends
    what was sent), else the request count."""
    from aiperf.dataset.sessions import whole_session_leases

    if whole_session_leases(config):
        assert config.conversation_num is not None  # whole_session_leases says so
        return config.conversation_num * max(1, round(config.conversation_turn_mean))
    return config.resolved_request_count() or 0


def _unusable(result: ProfileResult) -> str:
    errors = result.error_count
    head = (f"every request failed ({errors} of {errors})" if errors else
            "no request completed" + (" (the run was cancelled)" if result.was_cancelled
                                      else ""))
    return "\n".join([head, *result.error_lines(limit=5, width=200)])


def _curve(result: ProfileResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in CURVE_METRICS:
        try:
            out[name] = float(result.metric(name))
        except KeyError:
            continue
    return out
