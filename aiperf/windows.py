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
# How late a ramp's slot may start and still count as on time: the schedule lag a valid run
# allows (aiperf/validity.py); a later one makes the run INVALID anyway.
RAMP_SLACK_S = 0.05
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
        """Sketch mode: from the run's completions counted per bin of end time as it went
        (``binned_throughput``)."""
        return binned_throughput(getattr(self.result, "_end_bins", None), self.start_s,
                                 self.start_s + width * n_windows, tag, n_windows)

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
        warmup_ns = getattr(result, "_warmup_start_ns", None)
        ramp_s = _concurrency_ramp_s(config, None if warmup_ns is None
                                     else (warmup_ns - _origin_ns(result)) / NS_PER_S)
        ramp = _closed_loop_ramp(start_s, end_s, target, ramp_s)
        if ramp is None:
            members = np.zeros(start_s.size, dtype=bool)
            why = (_ramp_left_none(ramp_s)
                   if ramp_s and _closed_loop_ramp(start_s, end_s, target) is not None
                   else f"never {target} requests in flight at once")
            return _sample(result, members, f"steady state: none ({why})", 0.0, 0.0)
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


def _concurrency_ramp_s(config: UserConfig, warmup_s: float | None = None) -> float:
    """When the last slot of a ``concurrency_ramp_duration`` starts, in seconds from the
    profiling phase's first request, with the scheduling slack a slot may start late by;
    0 without a ramp (none either with fewer than two slots: ``timing/concurrency.py``
    ``_ramp`` makes none).

    The ramp runs once a run, from the first phase's start: with a warm-up it starts there,
    and a slot not yet started when the warm-up's requests are done starts inside the
    profiling phase. ``warmup_s`` is the warm-up's earliest stamp (credit or start) from
    the profiling phase's first start (negative): no slot starts before the ramp does, so
    the ramp ends at most ``ramp`` after it, and a warm-up that outlasted the ramp leaves
    none in profiling. Unknown (None: no warm-up, or a result that does not carry it), the
    ramp is taken as if it began at the profiling phase's first start: never shorter than
    the part of it that reaches into profiling."""
    ramp = config.concurrency_ramp_duration or 0.0
    if not ramp or (config.concurrency or 1) < 2:
        return 0.0
    began = 0.0 if warmup_s is None else min(warmup_s, 0.0)
    return max(0.0, began + float(ramp) + RAMP_SLACK_S)


def _ramp_left_none(ramp_s: float) -> str:
    """Why a closed loop that did fill its slots has no steady part: the ramp's end."""
    return f"the concurrency ramp, to {_fmt(ramp_s)} s, left no steady part"


def _closed_loop_ramp(start_s: np.ndarray, end_s: np.ndarray, target: int,
                      ramp_s: float = 0.0) -> tuple[float, float] | None:
    """(end of ramp-up, start of ramp-down) in seconds, or None when the run never had
    ``target`` requests in flight or the two meet. With a concurrency ramp that ends at
    ``ramp_s``, ramp-up also lasts until every request started during it has ended: its
    last slot's first request is among them."""
    if start_s.size < target:
        return None
    by_start = np.argsort(start_s, kind="stable")
    starts = start_s[by_start]
    up = float(end_s[by_start[:target]].max())
    if ramp_s:
        during = end_s[start_s < ramp_s]
        up = max(up, ramp_s, float(during.max()) if during.size else 0.0)
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


# -- sketch mode's steady window ---------------------------------------------------------

#: MSER-5's batch: five requests in start order (aiperf.statistics._warmup).
_MSER_BATCH = 5


class SteadyTracker:
    """Sketch mode's steady span, found by the records manager as the run goes, from a
    few numbers per time bin and a bounded tail, never a value per request kept for the
    run (``steady_state`` needs the whole timeline, which sketch mode does not keep).

    Closed loop (``slots`` = the concurrency): ramp-up ends at the last end of the
    ``slots`` earliest starts (kept: ``slots`` pairs), exactly as ``steady_state``.
    Ramp-down starts at the last end that left ``slots`` requests in flight: the (start,
    end) of the ``keep`` latest-ending requests are kept (older ones dropped, the latest
    dropped end remembered as the floor). A request that ended at or before the floor
    started before it too, so it counts neither as started nor as ended at any later time:
    the in-flight count just before each kept end past the floor is exact, and so is the
    ramp-down found among them. Only if the run left full concurrency before the last
    ``keep`` requests is it unknown (the host then judges the whole run and says so).

    Open loop: per bin of start time (absolute grid, ``FIRST_WIDTH_NS`` wide and doubling
    so that at most ``MAX_BINS`` are held), the successful requests' count and latency sum:
    MSER-5 is then run on bins merged into batches of at least five requests (each batch's
    mean weighted by its count), which is MSER-5 itself when each batch holds five, and
    truncates at a batch's first bin instead of its first request."""

    MAX_BINS = 4096
    FIRST_WIDTH_NS = 1_000_000
    TAIL_RECORDS = 16_384

    def __init__(self, config: UserConfig) -> None:
        closed = config.resolved_timing_strategy() == "concurrency"
        self.slots = (config.resolved_concurrency() or 1) if closed else 0
        self.keep = max(self.TAIL_RECORDS, 64 * self.slots)
        self.n = 0
        self.first: int | None = None  # the earliest start (a failed one's credit time)
        self.last_end: int | None = None
        self._earliest = np.empty((2, 0), dtype=np.int64)  # (start, end), slots of them
        self._tail = np.empty((2, 0), dtype=np.int64)  # (start, end), latest ends
        self._floor: int | None = None
        self.width_ns = self.FIRST_WIDTH_NS
        # Bins lo, lo + 1, ... of the absolute grid (time // width_ns): ok requests, and
        # their latency sum in ms.
        self._lo = 0
        self._counts = np.zeros(0)
        self._sums = np.zeros(0)

    def add(self, records: list[Any]) -> None:
        """A batch's records (``MetricRecord``); warm-up ones are left out."""
        from aiperf.common.codec import PROFILING

        profiling = [r for r in records if r.phase == PROFILING]
        if not profiling:
            return
        # As the timeline has them: a request that failed before it was sent (no start)
        # stands at its credit time.
        sent = [r.error is None or r.start_ns != 0 for r in profiling]
        starts = np.array([r.start_ns if s else r.credit_ns
                           for r, s in zip(profiling, sent, strict=True)], dtype=np.int64)
        ends = np.array([r.end_ns if s else max(r.end_ns, r.credit_ns)
                         for r, s in zip(profiling, sent, strict=True)], dtype=np.int64)
        self.n += int(starts.size)
        low, high = int(starts.min()), int(ends.max())
        self.first = low if self.first is None else min(self.first, low)
        self.last_end = high if self.last_end is None else max(self.last_end, high)
        if self.slots:
            self._add_closed(starts, ends)
        else:
            ok = [(r.start_ns, r.latency_ns) for r in profiling if r.error is None]
            if ok:
                self._add_latencies(np.array(ok, dtype=np.int64))

    def _add_closed(self, starts: np.ndarray, ends: np.ndarray) -> None:
        both = np.concatenate([self._earliest, np.stack([starts, ends])], axis=1)
        if both.shape[1] > self.slots:
            both = both[:, np.argpartition(both[0], self.slots - 1)[:self.slots]]
        self._earliest = both
        tail = np.concatenate([self._tail, np.stack([starts, ends])], axis=1)
        if tail.shape[1] > 2 * self.keep:  # trimmed now and then, not per batch
            order = np.argpartition(tail[1], tail.shape[1] - self.keep)
            dropped = int(tail[1, order[:tail.shape[1] - self.keep]].max())
            self._floor = dropped if self._floor is None else max(self._floor, dropped)
            tail = tail[:, order[tail.shape[1] - self.keep:]]
        self._tail = tail

    def _add_latencies(self, pairs: np.ndarray) -> None:
        keys = pairs[:, 0] // self.width_ns
        if not self._counts.size:
            self._lo = int(keys.min())
        low = min(self._lo, int(keys.min()))
        high = max(self._lo + self._counts.size - 1, int(keys.max()))
        while high - low >= self.MAX_BINS:  # pairs of bins merged: twice as wide
            self._coarsen()
            keys //= 2
            low, high = low // 2, high // 2
        if low < self._lo or high >= self._lo + self._counts.size:
            size = high - low + 1
            grown_counts, grown_sums = np.zeros(size), np.zeros(size)
            at = self._lo - low
            grown_counts[at:at + self._counts.size] = self._counts
            grown_sums[at:at + self._sums.size] = self._sums
            self._lo, self._counts, self._sums = low, grown_counts, grown_sums
        index = keys - self._lo
        size = self._counts.size
        self._counts += np.bincount(index, minlength=size)
        self._sums += np.bincount(index, weights=pairs[:, 1] / 1e6, minlength=size)

    def _coarsen(self) -> None:
        self.width_ns *= 2
        if not self._counts.size:
            return
        index = (self._lo + np.arange(self._counts.size)) // 2 - self._lo // 2
        self._counts = np.bincount(index, weights=self._counts)
        self._sums = np.bincount(index, weights=self._sums)
        self._lo //= 2

    def nbytes(self) -> int:
        return int(self._earliest.nbytes + self._tail.nbytes + self._counts.nbytes
                   + self._sums.nbytes)

    def finish(self, warmup_start_ns: int | None = None) -> dict[str, Any]:
        """What ``sketch_steady_state`` reads: seconds since the run's first start (the
        sketch windows' origin too). ``warmup_start_ns``: the warm-up's earliest stamp, as
        the run's totals keep it (``RunAggregator``'s ``warmup_start_ns``), where a
        concurrency ramp began."""
        first = self.first or 0
        out: dict[str, Any] = {"slots": self.slots, "requests": self.n,
                               "end_s": ((self.last_end or first) - first) / NS_PER_S}
        if warmup_start_ns is not None and self.first is not None:
            out["warmup_s"] = (warmup_start_ns - first) / NS_PER_S
        if self.slots:
            out.update(self._closed_span(first))
        else:
            out.update(self._open_span(first))
        return out

    def _closed_span(self, first: int) -> dict[str, Any]:
        slots = self.slots
        none = {"why": f"never {slots} requests in flight at once"}
        if self.n < slots:
            return none
        up = int(self._earliest[1].max())
        starts = np.sort(self._tail[0])
        ends = np.sort(self._tail[1])
        before = np.searchsorted(starts, ends, side="right") - np.arange(ends.size)
        known = ends > self._floor if self._floor is not None else np.ones(ends.size, bool)
        full = np.flatnonzero((before >= slots) & known)
        if full.size == 0:
            # A ramp-down at or before the floor could only matter after ramp-up.
            if self._floor is None or self._floor <= up:
                return none
            return {"unknown": True,
                    "why": f"the run left full concurrency before its last {self.keep:,} "
                           "requests, which are all the records manager keeps to find it"}
        down = int(ends[full[-1]])
        if down <= up:
            return none
        # A window holds the requests that started in it: one that ends by the first start
        # of a request still running at ramp-down holds no request that ended after it.
        running = self._tail[0][(self._tail[0] <= down) & (self._tail[1] > down)]
        cut = min(down, int(running.min())) if running.size else down
        return {"up_s": (up - first) / NS_PER_S, "down_s": (down - first) / NS_PER_S,
                "cut_s": (cut - first) / NS_PER_S}

    def _open_span(self, first: int) -> dict[str, Any]:
        used = np.flatnonzero(self._counts)
        if not used.size:
            return {"kept_from_s": 0.0, "dropped": 0}
        dropped, kept = binned_mser5(self._counts[used], self._sums[used])
        if dropped == 0:
            return {"kept_from_s": 0.0, "dropped": 0}
        kept_from = max((self._lo + int(used[kept])) * self.width_ns, first)
        return {"kept_from_s": (kept_from - first) / NS_PER_S, "dropped": dropped,
                "bin_s": self.width_ns / NS_PER_S}


def binned_mser5(counts: np.ndarray, sums: np.ndarray) -> tuple[int, int]:
    """MSER-5 on bins of requests in start order (each bin's count and value sum): bins are
    merged into consecutive batches of at least five requests (a trailing batch of fewer is
    left out, as MSER-5 leaves out a partial batch), each batch's mean weighted by its
    count, and the truncation that minimises the weighted variance of the kept batch means
    over the kept requests squared is taken, dropping at most half the requests. With five
    requests a bin this is MSER-5 exactly. (requests dropped, index of the first kept bin)."""
    batch_n: list[float] = []
    batch_sum: list[float] = []
    batch_first: list[int] = []
    n = total = 0.0
    start = 0
    for i, (c, s) in enumerate(zip(counts.tolist(), sums.tolist(), strict=True)):
        if n == 0:
            start = i
        n += c
        total += s
        if n >= _MSER_BATCH:
            batch_n.append(n)
            batch_sum.append(total)
            batch_first.append(start)
            n = total = 0.0
    if len(batch_n) < 2:
        return 0, 0
    w = np.asarray(batch_n)
    means = np.asarray(batch_sum) / w
    means -= float(np.average(means, weights=w))  # centred: the sums below do not cancel
    kept_n = np.cumsum(w[::-1])[::-1]
    kept_sum = np.cumsum((w * means)[::-1])[::-1]
    kept_squares = np.cumsum((w * means * means)[::-1])[::-1]
    sse = np.maximum(kept_squares - kept_sum * kept_sum / kept_n, 0.0)
    candidates = int(np.searchsorted(-kept_n, -kept_n[0] / 2, side="right"))
    d = int(np.argmin(sse[:candidates] / kept_n[:candidates] ** 2))
    return int(w[:d].sum()), batch_first[d]


def sketch_steady_state(result: ProfileResult, config: UserConfig) -> tuple[Any, str]:
    """Sketch mode's steady window: the base windows the records manager kept
    (``ProfileResult.sketch_windows``) that lie wholly inside the steady span its
    ``SteadyTracker`` found, merged into one ``pytest_aiperf.judge.SketchEvidence``.
    Rounding is inward (a window cut by the span's edge is left out, never a ramp one),
    and the label says what was merged. (evidence, "") or (None, why it cannot be; "" for
    a result that carries no steady span: built without the records manager's tracker)."""
    from aiperf.statistics.sketch import merged_window_sketches
    from pytest_aiperf.judge import SketchEvidence

    shipped = getattr(result, "_sketch_windows", None)
    steady = shipped.get("steady") if shipped else None
    if steady is None:  # a result built without the records manager's tracker: no why
        return None, ""
    base, offset = float(shipped["base_s"]), float(shipped.get("offset_s", 0.0))
    run_end = float(shipped["end_s"])
    kept = list(shipped["windows"])
    closed = bool(steady.get("slots"))
    if closed:
        if "up_s" not in steady:
            if steady.get("unknown"):
                return None, steady["why"]
            # As exact mode: a sample of nothing, which no objective passes on.
            return SketchEvidence(f"steady state: none ({steady['why']})", 0, 0, 0.0), ""
        low, high, cut = float(steady["up_s"]), float(steady["down_s"]), float(steady["cut_s"])
        # The tracker keeps no requests of the ramp: its end is the bound (and windows
        # are rounded inward from it).
        ramp_s = _concurrency_ramp_s(config, steady.get("warmup_s"))
        low = max(low, ramp_s)
        if low >= high:
            return SketchEvidence(f"steady state: none ({_ramp_left_none(ramp_s)})",
                                  0, 0, 0.0), ""
        span = f"steady state {_fmt(low)}-{_fmt(high)} s"
    else:
        low = float(steady.get("kept_from_s", 0.0))
        dropped = int(steady.get("dropped", 0))
        how = (f"MSER-5 on {_fmt(steady['bin_s'] * 1e3)} ms bins' mean latency dropped the "
               f"first {dropped} requests, up to {_fmt(low)} s" if dropped
               else "MSER-5 on bins' mean latency dropped none")
        ramp = float(config.request_rate_ramp_duration or 0.0)
        if ramp > low:  # the rate ramp is never steady (as exact mode)
            low, how = ramp, f"the request-rate ramp up to {_fmt(ramp)} s"
        high = cut = run_end
        span = f"steady state {_fmt(low)}-{_fmt(high)} s ({how})"
    first_k = math.ceil((low - offset) / base - 1e-9)
    last_k = (math.floor((cut - offset) / base + 1e-9) - 1 if closed
              else max([w["index"] for w in kept], default=first_k - 1))
    if last_k < first_k:
        return None, (f"no whole {base:g} s window lies inside the {span}; a shorter "
                      "slice_duration gives finer windows")
    inside = [w for w in kept if first_k <= w["index"] <= last_k]
    start_s = max(offset + first_k * base, 0.0)
    # Open loop: to the run's end, as exact mode (the last window ends there).
    end_s = min(offset + (last_k + 1) * base, run_end) if closed else run_end
    n_ok = sum(int(w["n_ok"]) for w in inside)
    n_err = sum(int(w["n_err"]) for w in inside)
    sketches = merged_window_sketches(inside)
    duration = max(0.0, end_s - start_s)
    scalars = {"request_count": float(n_ok), "error_request_count": float(n_err),
               "request_error_rate": 100.0 * n_err / (n_ok + n_err) if n_ok + n_err else 0.0,
               "benchmark_duration": duration}
    if duration > 0:
        scalars["request_throughput"] = n_ok / duration
    label = (f"steady window {_fmt(start_s)}-{_fmt(end_s)} s (sketch: "
             f"{last_k - first_k + 1} merged {base:g} s windows of the {span}, rounded "
             "inward)")
    evidence = SketchEvidence(label, n_ok, n_err, duration, sketches, scalars,
                              getattr(result, "_end_bins", None), start_s, end_s)
    return evidence, ""


def binned_throughput(bins: dict[str, Any] | None, start_s: float, end_s: float,
                      tag: str, n_windows: int) -> np.ndarray:
    """Sketch mode's throughput in ``n_windows`` equal sub-windows of [start_s, end_s],
    from the run's completions per bin of end time (``ProfileResult._end_bins``), each
    bin put in the sub-window holding its middle (bins are at most 1/2048 of the run).
    NaN, so not measured, when there are none or for goodput (not binned)."""
    width = (end_s - start_s) / n_windows
    if not bins or tag == "goodput" or width <= 0:
        return np.full(n_windows, np.nan)
    requests = np.asarray(bins["requests"], dtype=np.float64)
    middles = bins["offset_s"] + (np.arange(requests.size) + 0.5) * bins["width_s"]
    index = np.clip(((middles - start_s) // width).astype(np.int64), 0, n_windows - 1)
    # A bin that begins before the end counts (the run's last one holds its last end).
    inside = (middles >= start_s) & (middles - bins["width_s"] / 2 < end_s)
    weights = {
        "request_throughput": requests,
        "output_token_throughput": np.asarray(bins["output_tokens"], np.float64),
        "total_token_throughput": (np.asarray(bins["output_tokens"], np.float64)
                                   + np.asarray(bins["input_tokens"], np.float64)),
    }[tag]
    totals = np.bincount(index[inside], weights=weights[inside], minlength=n_windows)
    return totals / width
