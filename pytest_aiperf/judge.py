"""Objectives judged with intervals: PASS, FAIL or INCONCLUSIVE, never a bare point compare
where a bound can be had.

Which interval each statistic gets (all from ``aiperf.statistics``):

- ``pNN`` (``adj_`` metrics too, one +inf per failed request): distribution-free
  order-statistic bounds on the quantile;
- ``avg`` of a per-request metric: a t-interval (the mean of hundreds of requests is close
  to normal; a bootstrap would cost 1,000 resamples for the same answer);
- ``request_error_rate`` and ``good_request_fraction``: Clopper-Pearson (exact, never
  narrower than its confidence allows, also at 0 or n errors); but "no request may fail"
  (``request_error_rate <= 0 %``) is checked exactly on the requests sent;
- throughputs: batch means over the sample's time windows ("no interval" with < 5);
- relative objectives (``< baseline + 10 %``): the interval on the difference from the
  stored baseline run (``pytest_aiperf.baseline``);
- ``min``, ``max``, ``std``, ``count``, ``sum`` and run totals: the point value of the sample,
  judged as it is, with "no interval" stated. The implicit error-rate objective of a test
  without objectives is such an exact check of the requests sent, not an estimate.
- server metrics (``server.<name>.<stat>``, scraped from the server's /metrics): the
  run's value (``ProfileResult.server``) as a point, "server metric (point, no interval)";
  a metric that was not scraped, a gauge scraped only after the run, or a counter or
  histogram that went down during the run (a server restart), FAILs, saying why, never
  PASSes.

An objective on some turns of multi-turn sessions (``time_to_first_token.p99[turn>=2]``)
is judged like any per-request statistic, on those turns' requests only (``TurnEvidence``:
n is the subset's), their values read from the per-request table in one streaming pass
(``aiperf.dataset.breakdowns.turn_sample``). A run that kept no table (sketch mode, or
``export_records=False``) has no per-turn values: INCONCLUSIVE, saying so.

Each verdict is computed on an ``Evidence``: the whole run, its steady window, one time
window (``aiperf.windows.Sample`` has this shape) or several runs pooled by ``extend``.

Sketch mode (``sketch=True``): a per-request metric has a quantile sketch instead of values
(``Evidence.sketched``). A percentile's bounds are the same order statistics read from the
sketch and widened by its relative accuracy, so a threshold within that rounding is
INCONCLUSIVE; a mean's bounds come from the sketch's exact moments. Time windows and the
steady window are merged from the per-window sketches the records manager kept as the run
went (``SketchEvidence``; the steady window's span from ``aiperf.windows.SteadyTracker``,
rounded inward to whole windows). Where it cannot be had (no windows, a steady span
shorter than one window), the whole run is judged instead, and the label says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import numpy as np

from aiperf.metrics.definitions import BY_TAG, parse_percentile
from pytest_aiperf.slo import OPERATORS, Objective, Verdict

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from aiperf.results import ProfileResult
    from aiperf.statistics import Interval
    from aiperf.statistics.sketch import MetricSketch

THROUGHPUTS = ("request_throughput", "output_token_throughput", "total_token_throughput",
               "goodput")
PROPORTIONS = {"request_error_rate": 100.0, "good_request_fraction": 1.0}  # -> display unit
POINT_STATS = ("min", "max", "std", "count", "sum")
NO_INTERVAL = "point value (no interval)"
SERVER_METHOD = "server metric (point, no interval)"


class Evidence(Protocol):
    """What a verdict is computed from (``aiperf.windows.Sample`` fits it)."""

    label: str
    n_ok: int
    n_err: int
    duration_s: float

    def values(self, tag: str) -> np.ndarray: ...

    def scalar(self, tag: str) -> float | None: ...

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray: ...


class Sketched(NamedTuple):
    """A per-request metric in sketch mode: its sketch, and the failed requests that an
    ``adj_`` metric counts as infinitely slow (0 otherwise)."""

    sketch: MetricSketch
    failures: int


def sketched(evidence: Evidence, tag: str) -> Sketched | None:
    """The evidence's sketch of ``tag`` when it has one (an optional ``sketched`` method:
    evidence without it, e.g. a time window, has values)."""
    method = getattr(evidence, "sketched", None)
    return None if method is None else method(tag)


def _window_metrics() -> tuple[str, ...]:
    from aiperf.metrics.aggregate import WINDOW_METRICS

    return tuple(WINDOW_METRICS)


def _not_kept_per_window(evidence: Evidence, objective: Objective) -> bool:
    """A sketch-mode window that had requests but keeps no sketch of this metric: the
    records manager windows a few latency metrics only, so the sample says nothing (not a
    FAIL: the metric was measured, just not kept per window). Pooled runs (``extend``, or a
    steady window per run) are looked through: one such window among the parts leaves the
    pooled sample without that run's share, whatever the other parts kept."""
    if isinstance(evidence, PooledEvidence):
        return any(_not_kept_per_window(part, objective) for part in evidence.parts)
    return (isinstance(evidence, SketchEvidence) and evidence.n_ok > 0
            and BY_TAG[objective.base_tag].per_request
            and objective.base_tag not in _window_metrics()
            and objective.base_tag not in evidence.sketches)


def is_sketched(result: ProfileResult) -> bool:
    # getattr: a hand-built stand-in for a result (a test's) may carry no metrics or sketch
    metrics = getattr(result, "metrics", None) or {}
    return any(getattr(m, "sketch", None) is not None for m in metrics.values())


@dataclass
class SketchEvidence:
    """A sample known only by its sketches and counts: in sketch mode, a time window whose
    per-metric sketches the records manager kept as the run went (a result offers them as
    ``sketch_windows(window_s) -> list[SketchEvidence] | None``; None: it kept none of that
    length). Percentiles and means come from the sketches; throughput is the window's
    count over its length, without an interval."""

    label: str
    n_ok: int
    n_err: int
    duration_s: float
    sketches: dict[str, MetricSketch] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    # The steady window's: the run's completions in bins (``ProfileResult._end_bins``) and
    # the window's span in seconds since the first start, for throughput's batch means.
    bins: dict[str, Any] | None = field(default=None, repr=False)
    start_s: float = 0.0
    end_s: float = 0.0

    def values(self, tag: str) -> np.ndarray:
        return np.empty(0)  # sketch mode keeps none; ``sketched`` has the metric

    def sketched(self, tag: str) -> Sketched | None:
        sketch = self.sketches.get(tag.removeprefix("adj_"))
        if sketch is None:
            return None
        return Sketched(sketch, self.n_err if tag.startswith("adj_") else 0)

    def scalar(self, tag: str) -> float | None:
        return self.scalars.get(tag)

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray:
        if not self.bins:
            return np.empty(0)
        from aiperf.windows import binned_throughput

        return binned_throughput(self.bins, self.start_s, self.end_s, tag, n_windows)


class ResultEvidence:
    """The whole run, read from the result's per-request values and run-level metrics;
    time windows (throughput batch means) come from ``aiperf.windows`` when it exists."""

    label = "whole run"

    def __init__(self, result: ProfileResult) -> None:
        self.result = result
        self.n_ok = result.request_count
        self.n_err = result.error_count
        self.duration_s = (result.metric("benchmark_duration")
                           if "benchmark_duration" in result else 0.0)
        self._windows: Any = None

    def values(self, tag: str) -> np.ndarray:
        base = tag.removeprefix("adj_")
        if base not in self.result:
            return np.empty(0)
        data = np.asarray(self.result[base].values, dtype=np.float64)
        if tag.startswith("adj_"):
            failures = self.result[tag].failures if tag in self.result else self.n_err
            return np.concatenate([data, np.full(failures, np.inf)])
        return data

    def sketched(self, tag: str) -> Sketched | None:
        base = tag.removeprefix("adj_")
        if base not in self.result or getattr(self.result[base], "sketch", None) is None:
            return None
        failures = 0
        if tag.startswith("adj_"):
            failures = self.result[tag].failures if tag in self.result else self.n_err
        return Sketched(self.result[base].sketch, failures)

    def scalar(self, tag: str) -> float | None:
        return self.result.metric(tag) if tag in self.result else None

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray:
        try:
            from aiperf.windows import whole_run
        except ImportError:
            return np.empty(0)
        if self._windows is None:
            self._windows = whole_run(self.result)
        return np.asarray(self._windows.throughput_windows(tag, n_windows), dtype=np.float64)


@dataclass
class TurnEvidence:
    """The requests of some turns of a run's sessions (an objective's ``[turn>=2]``): their
    values of the objective's metric and their counts. A run-level figure (throughput,
    error rate) has no per-turn meaning here: the objective's parser allows per-request
    metrics only."""

    label: str
    n_ok: int
    n_err: int
    duration_s: float
    own: dict[str, np.ndarray] = field(default_factory=dict)

    def values(self, tag: str) -> np.ndarray:
        data = self.own.get(tag.removeprefix("adj_"), np.empty(0))
        if tag.startswith("adj_"):  # each failed turn counts as infinitely slow
            return np.concatenate([data, np.full(self.n_err, np.inf)])
        return data

    def scalar(self, tag: str) -> float | None:
        return None

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray:
        return np.empty(0)


def judge_turns(objective: Objective, results: Sequence[ProfileResult],
                steady: Sequence[Any] | None, confidence: float,
                whole_label: str = "whole run") -> Verdict:
    """An objective on some turns (``objective.turns``), on every run's requests of those
    turns pooled (the chunks of ``extend``), within each run's steady window when
    ``steady`` gives them (``aiperf.windows.Sample``s, one per run). The window is named
    as the other objectives' is (the first run's steady bounds, or ``whole_label``), then
    the turns."""
    from aiperf.dataset.breakdowns import turn_sample

    turns = objective.turns
    assert turns is not None
    base = objective.base_tag
    where = whole_label if steady is None else steady[0].label
    label = f"{where}, {turns}" + (f" (+{len(results) - 1} runs pooled)"
                                   if len(results) > 1 else "")
    parts: list[np.ndarray] = []
    ok = err = 0
    for i, result in enumerate(results):
        sent = result.request_count + result.error_count
        records = result.records
        if sent and not len(records):
            why = getattr(records, "note", None) or (
                "the run kept no per-request table (export_records=False)")
            return Verdict(objective, None, "INCONCLUSIVE", 0, sent, (None, None),
                           confidence, "per turn", f"no per-turn values: {why}; each "
                           f"request's turn is only in that table", label)
        within = None
        if steady is not None:
            origin = int(result.timeline.start_ns.min()) if len(result.timeline) else 0
            sample = steady[i]
            within = (origin + round(sample.start_s * 1e9), origin + round(sample.end_s * 1e9))
        found = turn_sample(records, base, turns.low_index, turns.high_index, within)
        parts.append(found.values)
        ok += found.ok
        err += found.err
    evidence = TurnEvidence(label, ok, err, 0.0,
                            {base: np.concatenate(parts) if parts else np.empty(0)})
    if not ok + err:
        # No request of those turns ran: nothing measured, whatever the statistic (a
        # count of nothing is 0, which would meet "< 5"), so never a PASS.
        return Verdict(objective, None, "FAIL", 0, 0, None, None, "not measured",
                       f"no request of {turns} in this sample (turn_index "
                       f"{turns.low_index} is turn {turns.low_index + 1}; only multi-turn "
                       f"requests carry one)", label)
    verdict = judge(objective, evidence, confidence, ok + err)
    run_sent = sum(r.request_count + r.error_count for r in results)
    if verdict.needed is not None and run_sent > ok + err:
        # judge counts the subset's requests; a user sets the run's, of which these turns
        # are a share: scaled, so "about N requests would decide it" is a request count.
        from dataclasses import replace

        share = (ok + err) / run_sent
        why = (f"{turns} is {share:.0%} of the run's requests: about {verdict.needed} of "
               f"them would decide it")
        scaled = -(-verdict.needed * run_sent // (ok + err))  # ceil, in integers
        verdict = replace(verdict, needed=scaled,
                          note=f"{verdict.note}; {why}" if verdict.note else why)
    return verdict


@dataclass
class PooledEvidence:
    """Several runs of one profile taken as one sample (``extend`` chunks): per-request
    values concatenated, counts added, rates weighted by each run's duration, throughput
    windows of every run together."""

    parts: Sequence[Evidence]
    label: str = "whole run"

    @property
    def n_ok(self) -> int:
        return sum(p.n_ok for p in self.parts)

    @property
    def n_err(self) -> int:
        return sum(p.n_err for p in self.parts)

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.parts)

    def values(self, tag: str) -> np.ndarray:
        return np.concatenate([np.asarray(p.values(tag), dtype=np.float64)
                               for p in self.parts])

    def sketched(self, tag: str) -> Sketched | None:
        """The parts' sketches merged (the runs of ``extend`` in sketch mode); None when no
        part has one, or a part holds exact values instead. A sketch-mode part without one
        (a run's empty steady window, a window whose answers were all one token long and
        so gave no inter-token latency) has no value of the metric to add: it is left out,
        not allowed to discard the other runs' sketches (a count of 0 and "not measured"
        where the others held thousands), and its failures still count as ``adj_``
        values."""
        found: list[Sketched] = []
        empty_failures = 0
        for part in self.parts:
            one = sketched(part, tag)
            if one is not None:
                found.append(one)
            elif part.n_ok == 0 or not np.asarray(part.values(tag)).size:
                empty_failures += part.n_err if tag.startswith("adj_") else 0
            else:
                return None  # exact values: the pool is judged on values, not sketches
        if not found:
            return None
        from aiperf.statistics.sketch import MetricSketch

        merged = MetricSketch(found[0].sketch.relative_accuracy)
        for f in found:
            merged.merge(f.sketch)
        return Sketched(merged, empty_failures + sum(f.failures for f in found))

    def scalar(self, tag: str) -> float | None:
        found = [(p, p.scalar(tag)) for p in self.parts]
        found = [(p, v) for p, v in found if v is not None]
        if not found:
            return None
        sent = self.n_ok + self.n_err
        if tag == "request_error_rate":
            return 100.0 * self.n_err / sent if sent else 0.0
        if tag == "good_request_fraction":
            good = sum(v * (p.n_ok + p.n_err) for p, v in found)
            return good / sent if sent else 0.0
        if tag in THROUGHPUTS:
            duration = sum(p.duration_s for p, _ in found)
            return sum(v * p.duration_s for p, v in found) / duration if duration else None
        if tag == "benchmark_duration":
            return self.duration_s
        return float(sum(v for _, v in found))  # counts and totals add up

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray:
        return np.concatenate([np.asarray(p.throughput_windows(tag, n_windows),
                                          dtype=np.float64) for p in self.parts])


def judge_result(objectives: list[Objective], result: ProfileResult,
                 confidence: float = 0.95) -> list[Verdict]:
    evidence = ResultEvidence(result)
    sent = evidence.n_ok + evidence.n_err
    verdicts = []
    for o in objectives:
        if o.server:
            verdicts.append(judge_server(o, [result], sent))
        elif o.turns is not None:  # on those turns' requests, never on the whole run's
            verdicts.append(judge_turns(o, [result], None, confidence))
        else:
            verdicts.append(judge(o, evidence, confidence))
    return verdicts


# How one server statistic of several runs (the chunks of ``extend``) is one value: the
# extremes of the extremes, increases added up, the rest the mean of the runs'.
_SERVER_COMBINE: dict[str, Callable[[list[float]], float]] = {
    "max": max, "min": min, "total": sum, "count": sum, "sum": sum,
}


def judge_server(objective: Objective, results: Sequence[ProfileResult],
                 sent: int) -> Verdict:
    """A server objective on the runs' scraped metrics: PASS or FAIL on the point value;
    FAIL, with the reason, when the metric has no value (never a PASS on nothing)."""
    from aiperf.server_metrics.summary import default_stat

    name = objective.server_name
    values: list[float] = []
    scrapes = 0
    stat = objective.stat
    for result in results:
        server = getattr(result, "server", None)
        if server is None:
            return _server_fail(objective, sent, "server metrics were not scraped in this "
                                "run (the profile sets no server_metrics)")
        scrapes += sum(i.total_fetches - i.failed_fetches for i in server.endpoints.values())
        metric = server.get(name)
        if metric is None:
            return _server_fail(objective, sent, server.missing(name), scrapes)
        stat = objective.stat or default_stat(metric.type)
        try:
            if objective.server_labels:
                metric = metric.select(objective.server_labels)
            value = metric.stat(stat)
        except KeyError as exc:
            return _server_fail(objective, sent, str(exc.args[0]), scrapes)
        if not metric.scraped_in_run:  # a gauge seen only after the run: the idle server
            return _server_fail(objective, sent, f"{name} was not scraped during the run "
                                "(only after it, when the server is idle again): shorten "
                                "server_metrics_interval below the run's length", scrapes)
        if metric.restarted:  # a counter's or histogram's increase across it is not known
            return _server_fail(objective, sent, f"{name} went down during the run (a "
                                "server restart?): its increase over the run is not known",
                                scrapes)
        if value is None or math.isnan(value):
            return _server_fail(objective, sent, f"{name} had no {stat} in the run (no "
                                "observation between the run's scrapes)", scrapes)
        values.append(float(value))
    if not values:
        return _server_fail(objective, sent, "no run to judge")
    combine = _SERVER_COMBINE.get(stat, lambda v: float(np.mean(v)))
    measured = float(combine(values))
    status = "PASS" if OPERATORS[objective.op](measured, objective.threshold) else "FAIL"
    note = None if objective.stat else f"{stat} of {name}"
    label = "whole run" if len(results) == 1 else f"whole run (+{len(results) - 1} runs)"
    return Verdict(objective, measured, status, scrapes, sent, None, None, SERVER_METHOD,
                   note, label)


def _server_fail(objective: Objective, sent: int, why: str, scrapes: int = 0) -> Verdict:
    return Verdict(objective, None, "FAIL", scrapes, sent, None, None, SERVER_METHOD,
                   why, "whole run")


def judge(objective: Objective, evidence: Evidence, confidence: float = 0.95,
          sent: int | None = None) -> Verdict:
    """One objective on one sample."""
    from aiperf.statistics import decide

    sent = evidence.n_ok + evidence.n_err if sent is None else sent
    tag, stat = objective.metric, objective.stat
    spec = BY_TAG[objective.base_tag]
    if _not_kept_per_window(evidence, objective):
        # Before any statistic: a window without the metric's values has a count of 0 and
        # nothing else, and "count < 5" would pass on that.
        return Verdict(objective, None, "INCONCLUSIVE", 0, sent, None, None,
                       "not kept per window",
                       f"sketch mode keeps time windows of "
                       f"{', '.join(_window_metrics())} only", evidence.label)
    interval = None
    if is_exact_count(objective) or (not spec.per_request
                                     and tag not in (*PROPORTIONS, *THROUGHPUTS)):
        measured = evidence.scalar(tag)
        count = sent
    elif not spec.per_request:
        interval = _run_level_interval(tag, evidence, confidence)
        measured = evidence.scalar(tag)
        count = sent if tag in PROPORTIONS else interval.n
    elif (sk := sketched(evidence, tag)) is not None:
        interval, measured, count = _judge_sketch(sk, stat, confidence)
    else:
        values = evidence.values(tag)
        count = int(values.size)
        q = parse_percentile(stat)
        if q is not None:
            interval = _quantile(values, q, confidence)
            measured = interval.estimate
        elif stat == "avg":
            interval = _mean(values, confidence)
            measured = interval.estimate
        else:
            measured = _point(values, stat)
    if measured is None and (interval is None or interval.n == 0):
        return Verdict(objective, None, "FAIL", count, sent, None, None, "not measured",
                       f"{tag} was not measured in this sample", evidence.label)
    if interval is None:  # a point value of the sample, exact for it
        status = ("PASS" if measured is not None and not math.isnan(measured)
                  and OPERATORS[objective.op](measured, objective.threshold) else "FAIL")
        method = "observed count (exact)" if is_exact_count(objective) else NO_INTERVAL
        return Verdict(objective, measured, status, count, sent, None, None, method,
                       None, evidence.label)
    scale = PROPORTIONS.get(tag, 1.0)
    low, high = (None if b is None else b * scale for b in (interval.low, interval.high))
    status = decide(interval, objective.op, objective.threshold / scale)
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        status = "INCONCLUSIVE" if status == "PASS" else status  # nothing measured passes
    needed = None
    if status == "INCONCLUSIVE":
        needed = needed_observations(objective, evidence, confidence, count)
    return Verdict(objective, None if measured is None else float(measured), status, count,
                   sent, (low, high), confidence, interval.method, interval.note,
                   evidence.label, needed)


def is_exact_count(objective: Objective) -> bool:
    """"No request may fail" (the implicit objective, or ``request_error_rate <= 0 %``) is a
    fact about the requests sent, checked exactly: no finite sample could bound a rate at 0."""
    return objective.implicit or (objective.metric == "request_error_rate"
                                  and objective.op == "<=" and objective.threshold == 0)


def _judge_sketch(sk: Sketched, stat: str, confidence: float
                  ) -> tuple[Interval | None, float | None, int]:
    """(interval, measured, count) of a per-request statistic from its sketch: what the
    values branch of ``judge`` computes from values."""
    from aiperf.statistics import sketch_mean_interval, sketch_quantile_interval

    sketch, failures = sk
    count = sketch.count + failures
    q = parse_percentile(stat)
    if q is not None:
        interval = sketch_quantile_interval(sketch, q, confidence, failures)
        return interval, interval.estimate, count
    if stat == "avg":
        if failures:  # as mean_interval refuses +inf values
            raise ValueError("values must be finite (a mean of error-adjusted values has no "
                             "meaning)")
        interval = sketch_mean_interval(sketch, confidence)
        return interval, interval.estimate, count
    if stat == "count":
        return None, float(count), count
    if not count:
        return None, None, count
    if failures:  # the +inf values decide these as np.max/np.std/np.sum would on them
        infinite = {"min": sketch.min if sketch.count else math.inf, "max": math.inf,
                    "std": math.nan, "sum": math.inf}
        return None, infinite[stat], count
    exact = {"min": sketch.min, "max": sketch.max, "std": sketch.std(), "sum": sketch.sum}
    return None, float(exact[stat]), count


def _quantile(values: np.ndarray, q: float, confidence: float) -> Interval:
    from aiperf.statistics import quantile_interval

    return quantile_interval(values, q, confidence)


def _mean(values: np.ndarray, confidence: float) -> Interval:
    from aiperf.statistics import mean_interval

    return mean_interval(values, confidence)


def _run_level_interval(tag: str, evidence: Evidence, confidence: float) -> Interval:
    from aiperf.statistics import batch_means_interval, proportion_interval

    sent = evidence.n_ok + evidence.n_err
    if tag == "request_error_rate":
        return proportion_interval(evidence.n_err, sent, confidence)
    if tag == "good_request_fraction":
        fraction = evidence.scalar(tag) or 0.0
        return proportion_interval(round(fraction * sent), sent, confidence)
    rates = np.asarray(evidence.throughput_windows(tag), dtype=np.float64)
    return batch_means_interval(rates[np.isfinite(rates)], confidence)  # NaN: no duration


def _point(values: np.ndarray, stat: str) -> float | None:
    if stat == "count":
        return float(values.size)
    if not values.size:
        return None
    return float({"min": np.min, "max": np.max, "std": np.std, "sum": np.sum}[stat](values))


def needed_observations(objective: Objective, evidence: Evidence, confidence: float,
                        n: int) -> int | None:
    """About how many observations like these would decide the objective, or None when no
    number would (the sample sits on the threshold) or it cannot be told."""
    from aiperf.statistics import requests_to_decide, requests_to_decide_from_share

    q = parse_percentile(objective.stat)
    tag = objective.metric
    sk = sketched(evidence, tag) if BY_TAG[objective.base_tag].per_request else None
    if q is not None and sk is not None:
        sketch, failures = sk
        total = sketch.count + failures
        if not total:
            return None
        below = sketch.fraction_below(objective.threshold,
                                      inclusive=objective.op in ("<=", ">"))
        share = below * sketch.count / total  # a failure is above every threshold
        needed = requests_to_decide_from_share(share, total, q, confidence)
        return None if needed is None else max(needed, n + 1)
    if sk is not None and objective.stat == "avg":
        sketch = sk.sketch
        if sketch.count < 2:
            return None
        gap = abs(sketch.mean - objective.threshold)
        if gap == 0:
            return None
        z = _normal_quantile(confidence)
        return max(n + 1, math.ceil((z * sketch.std(ddof=1) / gap) ** 2))
    if q is not None and BY_TAG[objective.base_tag].per_request:
        values = evidence.values(tag)
        needed = requests_to_decide(values, q, objective.op, objective.threshold, confidence)
        return None if needed is None else max(needed, n + 1)
    if tag in PROPORTIONS or objective.stat == "avg":
        scale = PROPORTIONS.get(tag, 1.0)
        if tag in PROPORTIONS:
            p = (evidence.scalar(tag) or 0.0) / scale
            spread = math.sqrt(max(p * (1 - p), 1e-12))
        else:
            values = evidence.values(tag)
            if values.size < 2:
                return None
            p = float(np.mean(values))
            spread = float(np.std(values, ddof=1))
        gap = abs(p - objective.threshold / scale)
        if gap == 0:
            return None
        z = _normal_quantile(confidence)
        return max(n + 1, math.ceil((z * spread / gap) ** 2))
    return None


def _normal_quantile(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(confidence))


def across_runs(objective: Objective, per_run: list[Verdict], confidence: float) -> Verdict:
    """The objective judged on the N runs' statistics with a t-interval: what captures a
    machine that is slower this hour."""
    from aiperf.statistics import across_runs_interval, decide

    values = np.asarray([v.measured for v in per_run if v.measured is not None],
                        dtype=np.float64)
    sent = sum(v.sent for v in per_run)
    label = f"across {len(per_run)} runs"
    if objective.server:  # a point value per run, no interval: every run must meet it
        status = "FAIL" if any(v.failed for v in per_run) else "PASS"
        measured = [v.measured for v in per_run if v.measured is not None]
        higher_is_worse = objective.op in ("<", "<=")
        worst = (max(measured) if higher_is_worse else min(measured)) if measured else None
        return Verdict(objective, worst, status, len(per_run), sent, None, None,
                       f"{SERVER_METHOD}, every run", None, label)
    if is_exact_count(objective):  # a fact about every request sent, in every run
        status = "FAIL" if any(v.failed for v in per_run) else "PASS"
        worst = max((v.measured or 0.0) for v in per_run)
        return Verdict(objective, worst, status, len(per_run), sent, None, None,
                       "observed count (exact), every run", None, label)
    if values.size < 2 or not np.all(np.isfinite(values)):
        return Verdict(objective, float(np.mean(values)) if values.size else None,
                       "INCONCLUSIVE", int(values.size), sent, (None, None), confidence,
                       "t over per-run statistics",
                       "no interval: fewer than 2 finite per-run values", label)
    interval = across_runs_interval(values, confidence)
    status = decide(interval, objective.op, objective.threshold)
    return Verdict(objective, interval.estimate, status, int(values.size), sent,
                   (interval.low, interval.high), confidence, interval.method, interval.note,
                   label)


Chunk = TypeVar("Chunk")


def extend_until_decided(first: Chunk, more: Callable[[], Chunk],
                         judge_chunks: Callable[[list[Chunk]], list[Verdict]],
                         looks: int) -> tuple[list[Verdict], list[Chunk]]:
    """``extend``: judge the chunks so far (``judge_chunks`` pools them, at the per-look
    confidence), and fetch another while an objective is INCONCLUSIVE and fewer than
    ``looks`` chunks were taken. Stops at the first look that decides everything."""
    chunks = [first]
    while True:
        verdicts = judge_chunks(chunks)
        if len(chunks) >= looks or not any(v.status == "INCONCLUSIVE" for v in verdicts):
            return verdicts, chunks
        chunks.append(more())


RelativeJudge = Callable[[Objective, Sequence["ProfileResult"], int], Verdict]


def judge_runs(objectives: list[Objective], results: Sequence[ProfileResult],
               config: UserConfig | None, steady: bool, confidence: float,
               relative: RelativeJudge | None = None) -> list[Verdict]:
    """The objectives judged on one run, or on several runs of one profile pooled (the
    chunks of ``extend``). ``steady``: on each run's steady window (``aiperf.windows``).
    The implicit error-rate objective is always the exact count of the requests sent.
    A relative objective (``< baseline + 10 %``) is judged by ``relative`` on the whole
    runs, as its baseline was stored; without one (no baseline) it has no verdict."""
    whole: list[Evidence] = [ResultEvidence(r) for r in results]
    sent = sum(e.n_ok + e.n_err for e in whole)
    parts = whole
    sketch_mode = any(is_sketched(r) for r in results)
    if steady and sketch_mode:
        # Cut from the time windows' sketches the records manager kept as the run went.
        parts = [_sketch_steady(r, config) for r in results]
    elif steady:
        from aiperf.windows import steady_state

        parts = [steady_state(r, config) for r in results]  # type: ignore[arg-type]
    evidence = _pooled(parts)
    verdicts = []
    for objective in objectives:
        if objective.server:
            verdicts.append(judge_server(objective, results, sent))
        elif objective.turns is not None:
            # Turns are cut by the timeline's times, which sketch mode does not keep: its
            # whole runs, labelled as the steady window's fallback or saying so.
            label = whole[0].label
            if steady and sketch_mode:
                label = (parts[0].label if isinstance(parts[0], ResultEvidence) else
                         "whole run (sketch mode: turns are not cut to the steady window)")
            verdicts.append(judge_turns(objective, results,
                                        None if parts is whole or sketch_mode else parts,
                                        confidence, label))
        elif objective.relative:
            if relative is not None:
                verdicts.append(relative(objective, results, sent))
        elif objective.window_s is not None and sketch_mode and (
                windows_of := _sketch_windows(results, objective.window_s)) is not None:
            verdicts.append(judge_windowed(objective, windows_of, confidence, sent))
        elif objective.window_s is not None and sketch_mode:
            verdicts.append(Verdict(
                objective, None, "INCONCLUSIVE", 0, sent, (None, None), confidence,
                "per window", "sketch mode keeps no per-request values to cut windows from",
                f"windows of {objective.window_s:g} s"))
        elif objective.window_s is not None:
            from aiperf.windows import windows

            samples = [w for r in results for w in windows(r, objective.window_s)]
            verdicts.append(judge_windowed(objective, samples, confidence, sent))
        elif objective.implicit and (planned := _planned_cancellations(results)):
            verdicts.append(_judge_implicit_with_planned_cancels(objective, whole, sent,
                                                                 planned))
        elif is_exact_count(objective):
            verdicts.append(_note_planned_cancels(
                judge(objective, _pooled(whole), confidence, sent), results, True))
        else:
            verdicts.append(_note_planned_cancels(
                judge(objective, evidence, confidence, sent), results, parts is whole))
    return verdicts


def _note_planned_cancels(verdict: Verdict, results: Sequence[ProfileResult],
                          whole_runs: bool) -> Verdict:
    """An explicit objective on the error count or rate keeps AIPerf's meaning, in which a
    cancellation the profile asked for (``request_cancellation_rate``) is an error: its
    number stays, and the note says how many of the errors were planned (the implicit
    check leaves them out instead). On a steady window the planned ones are the runs'."""
    if verdict.objective.metric not in ("request_error_rate", "error_request_count"):
        return verdict
    planned = _planned_cancellations(results)
    if not planned:
        return verdict
    from dataclasses import replace

    errors = sum(r.error_count for r in results)
    of = "these" if whole_runs else "the whole run's" if len(results) == 1 else "the runs'"
    why = (f"{planned} of {of} {errors} errors were cancellations the profile asked for "
           "(request_cancellation_rate), counted as errors as AIPerf counts them")
    return replace(verdict, note=f"{verdict.note}; {why}" if verdict.note else why)


def _sketch_steady(result: ProfileResult, config: UserConfig | None) -> Evidence:
    """Sketch mode's steady window (``aiperf.windows.sketch_steady_state``), or the whole
    run labelled with why there is none."""
    from aiperf.windows import sketch_steady_state

    if config is None:
        evidence, why = None, "no profile to find the steady state of"
    else:
        evidence, why = sketch_steady_state(result, config)
    if evidence is not None:
        return evidence  # type: ignore[no-any-return]
    whole = ResultEvidence(result)
    whole.label = "whole run (sketch mode: no steady window" + (f": {why})" if why else ")")
    return whole


def _sketch_windows(results: Sequence[ProfileResult],
                    window_s: float) -> list[Evidence] | None:
    """Every run's sketched windows of ``window_s``, or None when a run has none."""
    samples: list[Evidence] = []
    for result in results:
        offer = getattr(result, "sketch_windows", None)
        found = offer(window_s) if offer is not None else None
        if found is None:
            return None
        samples.extend(found)
    return samples


def _planned_cancellations(results: Sequence[ProfileResult]) -> int:
    # getattr: a hand-built stand-in for a result (a test's) may carry no error summary
    return sum(int(getattr(r, "planned_cancellation_count", 0)) for r in results)


def _judge_implicit_with_planned_cancels(objective: Objective, whole: Sequence[Evidence],
                                         sent: int, planned: int) -> Verdict:
    """The implicit "requests succeeded" check leaves out the cancellations the profile
    asked for (``request_cancellation_rate``): they are errors as AIPerf counts them, not
    failures of the server. Every other failure counts, exactly, as a share of the other
    requests: they are left out of the denominator too, else a tolerated rate
    (``failed_request_threshold``) would be diluted by requests never meant to succeed.

    With none left (every request sent was a planned cancellation) there is no rate: 0 %
    when nothing else failed (a planned cancellation is an error, so there are never more
    of them than errors), 100 % if the counts ever say otherwise."""
    failed = sum(e.n_err for e in whole) - planned
    judged = sent - planned
    if judged > 0:
        measured = 100.0 * failed / judged
        note = f"{failed} of the other {judged} requests failed"
    else:
        judged, measured = 0, 0.0 if failed <= 0 else 100.0
        note = "every request sent was one, none left to judge"
    note = f"{planned} cancellations the profile asked for are not counted: {note}"
    status = "PASS" if OPERATORS[objective.op](measured, objective.threshold) else "FAIL"
    return Verdict(objective, measured, status, judged, sent, None, None,
                   "observed count (exact)", note, whole[0].label)


def _pooled(parts: Sequence[Evidence]) -> Evidence:
    if len(parts) == 1:
        return parts[0]
    label = f"{parts[0].label} (+{len(parts) - 1} runs pooled)"
    # Sketch mode's steady windows: a run without one is judged whole, and the first
    # part's label alone would hide that the pool mixes the two.
    whole = sum(p.label.startswith("whole run") for p in parts)
    if 0 < whole < len(parts):
        label += f"; {whole} of the {len(parts)} runs whole: no steady window"
    return PooledEvidence(parts, label)


_SEVERITY = {"FAIL": 0, "INCONCLUSIVE": 1, "PASS": 2}


def judge_windowed(objective: Objective, samples: Sequence[Evidence], confidence: float,
                   sent: int) -> Verdict:
    """Every window must meet the objective: FAIL when one breaches it, PASS when all meet
    it. Each window is judged at confidence 1 - alpha / windows (Bonferroni), so that with
    many windows a false FAIL stays at most alpha. The verdict shows the worst window.
    A window in which no request started has nothing to judge and is left out."""
    samples = [s for s in samples if s.n_ok + s.n_err]
    if not samples:
        return Verdict(objective, None, "INCONCLUSIVE", 0, sent, (None, None), confidence,
                       "per window", f"no complete {objective.window_s:g} s window in the run",
                       f"windows of {objective.window_s:g} s")
    each = 1.0 - (1.0 - confidence) / len(samples)
    judged = [judge(objective, sample, each, sent) for sample in samples]
    higher_is_worse = objective.op in ("<", "<=")

    def badness(v: Verdict) -> tuple[int, float]:
        value = v.measured if v.measured is not None else math.inf * (1 if higher_is_worse
                                                                       else -1)
        return (_SEVERITY[v.status], -value if higher_is_worse else value)

    worst = min(judged, key=badness)
    status = min((v.status for v in judged), key=_SEVERITY.__getitem__)
    note = f"worst of {len(judged)} windows of {objective.window_s:g} s"
    if worst.note:
        note = f"{note}; {worst.note}"
    return Verdict(objective, worst.measured, status, worst.count, sent, worst.interval, each,
                   worst.method, note, f"worst: {worst.window}", worst.needed)
