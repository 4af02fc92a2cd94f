"""Samples of a run: the whole run, its steady state, fixed windows and time slices.

Objectives are judged on a ``Sample``: a set of the run's profiling requests and the time
span they cover. Its per-request values come from the run's own values (selected through
each metric's record index), and its run-level metrics are recomputed with the reference
formulas on its requests and its span, so ``whole_run(result)`` reproduces the run's own
statistics exactly.

Which requests belong where:
- a window or time slice holds the requests that *started* in it (AIPerf's time-slice rule),
  so the windows of a run partition its requests;
- steady state holds the requests that started after ramp-up and (closed loop) finished
  before ramp-down.
A request that failed before it was sent counts at its credit time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aiperf.metrics.definitions import BY_TAG
from aiperf.metrics.parity import USAGE_TAGS
from aiperf.metrics.stats import summarize, summarize_adjusted

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from aiperf.results import ProfileResult

NS_PER_S = 1e9
# The throughputs `Sample.throughput_windows` splits over time (batch means need them).
_THROUGHPUTS = ("request_throughput", "output_token_throughput", "total_token_throughput",
                "goodput")


@dataclass
class Sample:
    """What objectives are judged on: the whole run or a window of it."""

    label: str
    start_s: float  # window bounds, seconds since the run's first request start
    end_s: float
    n_ok: int
    n_err: int
    duration_s: float
    result: ProfileResult = field(repr=False, compare=False)
    # bool per timeline entry: in this sample
    members: np.ndarray = field(repr=False, compare=False)
    # For a window of a series: the series' shared grouping and this window's number, so
    # that a window's values are a slice, not a pass over the whole run per window.
    group: tuple[_WindowGroups, int] | None = field(default=None, repr=False, compare=False)

    def values(self, tag: str) -> np.ndarray:
        """Per-request values of ``tag`` in display units; ``adj_<tag>`` adds one +inf per
        failed request of the sample. A metric no request of the run carried is empty; a
        name that is no per-request metric is a KeyError."""
        base = tag.removeprefix("adj_")
        spec = BY_TAG.get(base)
        if spec is None or not spec.per_request or (tag != base and not spec.error_adjusted):
            raise KeyError(f"no per-request metric {tag!r}; this run has: "
                           f"{', '.join(sorted(self.result.metrics))}")
        metric = self.result.metrics.get(base)
        own = np.empty(0) if metric is None else self._select(metric.values,
                                                               metric.record_index, base)
        if tag.startswith("adj_"):
            return np.concatenate([own, np.full(self.n_err, np.inf)])
        return own

    def _select(self, values: Any, record_index: Any, tag: str) -> np.ndarray:
        data = np.asarray(values, dtype=np.float64)
        index = np.asarray(record_index, dtype=np.int32)
        if index.size != data.size:
            raise ValueError(f"{tag}: this result has no record index for its values "
                             "(a result without a timeline can only be judged whole)")
        if self.group is not None:
            groups, number = self.group
            return groups.values(tag, data, index, number)
        return data[self.members[index]]

    def scalar(self, tag: str) -> float | None:
        """A run-level metric recomputed on this sample with the reference formulas; None
        when the run has no such metric, or a rate over a sample of no duration."""
        if tag not in _SCALARS:
            raise KeyError(f"{tag!r} is not a run-level metric; one of {', '.join(_SCALARS)}")
        if tag not in self.result.metrics:
            return None
        return _SCALARS[tag](self)

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray:
        """``tag``'s throughput in each of ``n_windows`` equal sub-windows of the sample: a
        request counts where it ended (throughput is completions per second), clipped into
        the sample's span."""
        if tag not in _THROUGHPUTS:
            raise KeyError(f"{tag!r} is not a throughput; one of {', '.join(_THROUGHPUTS)}")
        if n_windows < 1:
            raise ValueError("n_windows must be at least 1")
        width = self.duration_s / n_windows
        if width <= 0:
            return np.full(n_windows, np.nan)
        timeline = self.result.timeline
        if not len(timeline):  # sketch mode keeps no timeline: its completions' bins
            return self._binned_throughput(tag, n_windows, width)
        chosen = self.members & timeline.ok
        if tag == "goodput":
            chosen &= self._good()
        end_s = (timeline.end_ns[chosen] - _origin_ns(self.result)) / NS_PER_S
        bins = np.clip(((end_s - self.start_s) // width).astype(np.int64), 0, n_windows - 1)
        weights = {
            "request_throughput": None,
            "goodput": None,
            "output_token_throughput": timeline.osl[chosen],
            "total_token_throughput": timeline.osl[chosen] + timeline.isl[chosen],
        }[tag]
        totals = np.bincount(bins, weights=weights, minlength=n_windows)
        return totals.astype(np.float64) / width

    def _binned_throughput(self, tag: str, n_windows: int, width: float) -> np.ndarray:
        """Sketch mode: the run's completions counted per bin of end time as it went
        (``ProfileResult._end_bins``), each bin put in the sub-window holding its middle
        (bins are at most 1/2048 of the run). NaN, so not measured, when the result has
        none or for goodput (whose per-request verdict is not binned)."""
        bins = getattr(self.result, "_end_bins", None)
        if not bins or tag == "goodput":
            return np.full(n_windows, np.nan)
        requests = np.asarray(bins["requests"], dtype=np.float64)
        middles = bins["offset_s"] + (np.arange(requests.size) + 0.5) * bins["width_s"]
        index = np.clip(((middles - self.start_s) // width).astype(np.int64), 0,
                        n_windows - 1)
        inside = (middles >= self.start_s) & (middles <= self.end_s + bins["width_s"])
        weights = {
            "request_throughput": requests,
            "output_token_throughput": np.asarray(bins["output_tokens"], np.float64),
            "total_token_throughput": (np.asarray(bins["output_tokens"], np.float64)
                                       + np.asarray(bins["input_tokens"], np.float64)),
        }[tag]
        totals = np.bincount(index[inside], weights=weights[inside], minlength=n_windows)
        return totals / width

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Every metric of the run recomputed on this sample, in the run's own shape
        (``{"unit", "avg", ..., "p99", "count", "sum"}``, scalars ``{"unit", "avg"}``)."""
        out: dict[str, dict[str, Any]] = {}
        for tag, metric in self.result.metrics.items():
            base = tag.removeprefix("adj_")
            spec = BY_TAG.get(base)
            if spec is not None and spec.per_request:
                data = self.values(base) if base in self.result.metrics else np.empty(0)
                if tag.startswith("adj_"):
                    if data.size + self.n_err:
                        out[tag] = summarize_adjusted(data, self.n_err, metric.unit)
                elif data.size:
                    out[tag] = summarize(data, metric.unit)
            elif tag in _SCALARS:
                value = self.scalar(tag)
                if value is not None:
                    out[tag] = {"unit": metric.unit, "avg": value}
        return out

    def _good(self) -> np.ndarray:
        """Per timeline entry: a successful request that met every goodput threshold."""
        timeline = self.result.timeline
        good = timeline.ok.copy()
        thresholds = self.result.config.goodput if self.result.config else {}
        for tag, limit in thresholds.items():
            metric = self.result.metrics.get(tag)
            meets = np.zeros(len(timeline), dtype=bool)
            if metric is not None:
                data = np.asarray(metric.values, dtype=np.float64)
                index = np.asarray(metric.record_index, dtype=np.int32)
                passed = data >= limit if BY_TAG[tag].higher_is_better else data <= limit
                meets[index[passed]] = True
            good &= meets
        return good


def _rate(sample: Sample, amount: float) -> float | None:
    return amount / sample.duration_s if sample.duration_s > 0 else None


def _tokens(sample: Sample, which: str) -> float:
    timeline = sample.result.timeline
    chosen = sample.members & timeline.ok
    return int(getattr(timeline, which)[chosen].sum())


def _sum_values(sample: Sample, tag: str) -> float:
    if tag not in sample.result.metrics:
        return 0
    return int(sample.values(tag).sum())


def _n_good(sample: Sample) -> int:
    return int((sample.members & sample._good()).sum())


_SCALARS: dict[str, Any] = {
    "request_count": lambda s: s.n_ok,
    "error_request_count": lambda s: s.n_err,
    "request_error_rate": lambda s: (100.0 * s.n_err / (s.n_ok + s.n_err)
                                     if s.n_ok + s.n_err else 0.0),
    "total_output_tokens": lambda s: _sum_values(s, "output_token_count"),
    "total_reasoning_tokens": lambda s: _sum_values(s, "reasoning_token_count"),
    "benchmark_duration": lambda s: s.duration_s if s.duration_s > 0 else None,
    "request_throughput": lambda s: _rate(s, s.n_ok),
    "output_token_throughput": lambda s: _rate(s, _tokens(s, "osl")),
    "total_token_throughput": lambda s: _rate(s, _tokens(s, "osl") + _tokens(s, "isl")),
    # AIPerf's run totals (aiperf/metrics/parity.py: run_metrics), from the same sums
    "total_isl": lambda s: _sum_values(s, "input_sequence_length"),
    "total_osl": lambda s: _sum_values(s, "output_sequence_length"),
    "input_token_throughput": lambda s: _rate(s, _sum_values(s, "input_sequence_length")),
    **{f"total_{tag}": (lambda s, tag=tag: _sum_values(s, tag)) for tag in USAGE_TAGS},
    "good_request_count": _n_good,
    "goodput": lambda s: _rate(s, _n_good(s)),
    "good_request_fraction": lambda s: (_n_good(s) / (s.n_ok + s.n_err)
                                        if s.n_ok + s.n_err else 0.0),
}


def _origin_ns(result: ProfileResult) -> int:
    """The run's first request start: time zero of every window."""
    start = result.timeline.start_ns
    return int(start.min()) if start.size else 0


def _seconds(result: ProfileResult) -> tuple[np.ndarray, np.ndarray]:
    """Each request's start and end, in seconds since the run's first request start."""
    timeline, origin = result.timeline, _origin_ns(result)
    return ((timeline.start_ns - origin) / NS_PER_S, (timeline.end_ns - origin) / NS_PER_S)


def _sample(result: ProfileResult, members: np.ndarray, label: str, start_s: float,
            end_s: float, duration_s: float | None = None) -> Sample:
    ok = result.timeline.ok
    return Sample(label=label, start_s=start_s, end_s=end_s,
                  n_ok=int((members & ok).sum()), n_err=int((members & ~ok).sum()),
                  duration_s=max(0.0, end_s - start_s) if duration_s is None else duration_s,
                  result=result, members=members)


def _fmt(seconds: float) -> str:
    return f"{seconds:.3g}" if abs(seconds) < 100 else f"{seconds:.0f}"


def whole_run(result: ProfileResult) -> Sample:
    """Every profiling request; the span is the run's ``benchmark_duration`` (first request
    start to last response end)."""
    members = np.ones(len(result.timeline), dtype=bool)
    duration = (result.metric("benchmark_duration")
                if "benchmark_duration" in result.metrics else 0.0)
    return _sample(result, members, "whole run", 0.0, duration, duration)


def steady_state(result: ProfileResult, config: UserConfig) -> Sample:
    """The requests of the run's steady part.

    Closed loop (concurrency C): ramp-up ends when each of the first C requests (one per
    slot) has finished; ramp-down starts when the in-flight count drops below C for good
    (records carry no slot, so the first slot to stop issuing is seen as that drop). A
    request belongs if it started after ramp-up and finished before ramp-down.
    Open loop: MSER-5 on ``request_latency`` ordered by start gives how many leading
    requests are warm-up; the sample starts at the first request kept, and the label says
    where that is and how many were dropped."""
    start_s, end_s = _seconds(result)
    run_end = float(end_s.max()) if end_s.size else 0.0
    if config.resolved_timing_strategy() == "concurrency":
        target = config.resolved_concurrency() or 1
        ramp = _closed_loop_ramp(start_s, end_s, target)
        if ramp is None:
            members = np.zeros(start_s.size, dtype=bool)
            return _sample(result, members, f"steady state: none (never {target} requests "
                           "in flight at once)", 0.0, 0.0)
        up, down = ramp
        members = (start_s >= up) & (end_s <= down)
        return _sample(result, members, f"steady state {_fmt(up)}-{_fmt(down)} s", up, down)
    dropped, kept_from = _warm_up(result, start_s)
    if config.request_rate_ramp_duration:
        # The rate ramp is never steady, whatever MSER-5 makes of the latencies in it.
        kept_from = max(kept_from, float(config.request_rate_ramp_duration))
        dropped = int((start_s < kept_from).sum())
    members = start_s >= kept_from
    label = (f"steady state {_fmt(kept_from)}-{_fmt(run_end)} s (MSER-5 dropped the first "
             f"{dropped} requests, up to {_fmt(kept_from)} s)")
    return _sample(result, members, label, kept_from, run_end)


def _closed_loop_ramp(start_s: np.ndarray, end_s: np.ndarray,
                      target: int) -> tuple[float, float] | None:
    """(end of ramp-up, start of ramp-down) in seconds, or None when the run never had
    ``target`` requests in flight or the two meet."""
    if start_s.size < target:
        return None
    by_start = np.argsort(start_s, kind="stable")
    starts = start_s[by_start]
    up = float(end_s[by_start[:target]].max())
    # In flight just before each end (in time order): the starts up to it (a start at the
    # same instant counts first) less the ends before it. Ramp-down starts at the last end
    # that left ``target`` in flight: after it the count never reaches the target again,
    # since reaching it would need a start, and every start is followed by an end.
    ends = np.sort(end_s)
    before = np.searchsorted(starts, ends, side="right") - np.arange(ends.size)
    full = np.flatnonzero(before >= target)
    if full.size == 0:
        return None
    down = float(ends[full[-1]])
    return (up, down) if down > up else None


def _warm_up(result: ProfileResult, start_s: np.ndarray) -> tuple[int, float]:
    """(requests MSER-5 drops, start in s of the first kept) on request_latency by start."""
    from aiperf.statistics import mser5  # the statistics package owns the method

    metric = result.metrics.get("request_latency")
    if metric is None or not len(metric.values):
        return 0, 0.0
    index = np.asarray(metric.record_index, dtype=np.int32)
    latency = np.asarray(metric.values, dtype=np.float64)
    order = np.argsort(start_s[index], kind="stable")
    dropped = int(mser5(latency[order]))
    if dropped <= 0:
        return 0, 0.0
    dropped = min(dropped, order.size - 1)
    return dropped, float(start_s[index[order[dropped]]])


def windows(result: ProfileResult, seconds: float) -> list[Sample]:
    """Consecutive windows of ``seconds`` from the first request start to the last end,
    each holding the requests that started in it (the last window ends at the run's end,
    so it may be shorter). Empty windows are kept: they are part of the run."""
    return list(_windows(result, seconds))


# Each window holds a mask over the run's requests: a bound keeps a window length that
# is far too short for the run from building millions of them.
MAX_WINDOWS = 10_000


class _WindowGroups:
    """Each metric's values ordered by window once (per metric, on first use), so every
    window's values are one slice: judging 100 windows costs about one pass over the run
    instead of one per window."""

    def __init__(self, bins: np.ndarray, count: int) -> None:
        self.bins = bins  # window number per timeline entry
        self.count = count
        self._by_tag: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def values(self, tag: str, data: np.ndarray, index: np.ndarray, number: int) -> np.ndarray:
        grouped = self._by_tag.get(tag)
        if grouped is None:
            value_bins = self.bins[index]
            order = np.argsort(value_bins, kind="stable")
            edges = np.searchsorted(value_bins[order], np.arange(self.count + 1))
            grouped = self._by_tag[tag] = (data[order], edges)
        ordered, edges = grouped
        return ordered[edges[number]:edges[number + 1]]


def _windows(result: ProfileResult, seconds: float) -> Iterator[Sample]:
    if not (isinstance(seconds, int | float) and seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"window length must be a positive number of seconds, not {seconds!r}")
    start_s, end_s = _seconds(result)
    if start_s.size == 0:
        return
    run_end = float(end_s.max())
    count = max(1, math.ceil(run_end / seconds))
    if count > MAX_WINDOWS:
        raise ValueError(f"windows of {seconds:g} s cut this {run_end:g} s run into {count:,} "
                         f"windows; at most {MAX_WINDOWS:,}: use windows of at least "
                         f"{run_end / MAX_WINDOWS:.6g} s")
    bins = np.clip((start_s // seconds).astype(np.int64), 0, count - 1)
    groups = _WindowGroups(bins, count)
    for k in range(count):
        low, high = k * seconds, min((k + 1) * seconds, run_end)
        window = _sample(result, bins == k, f"window {_fmt(low)}-{_fmt(high)} s", low, high)
        window.group = (groups, k)
        yield window


def slices(result: ProfileResult, seconds: float) -> list[dict[str, Any]]:
    """AIPerf's time-slice export rows: per slice with requests, ``start_ns`` / ``end_ns``
    (perf_counter ns), ``is_complete: False`` on a slice cut short by the run's end, and
    every metric recomputed on the slice in the run's own shape."""
    origin = _origin_ns(result)
    rows = []
    for window in _windows(result, seconds):  # one window's mask at a time
        if window.n_ok + window.n_err == 0:
            continue
        row: dict[str, Any] = {"start_ns": origin + round(window.start_s * NS_PER_S),
                               "end_ns": origin + round(window.end_s * NS_PER_S)}
        if window.end_s - window.start_s < seconds:
            row["is_complete"] = False
        row.update(window.metrics())
        rows.append(row)
    return rows
