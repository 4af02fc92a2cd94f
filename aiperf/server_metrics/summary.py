"""A run's server metrics: what ``ProfileResult.server`` holds.

    result.server["vllm:gpu_cache_usage_perc"].max       # gauge: over the run's scrapes
    result.server["llamacpp:prompt_tokens_total"].total  # counter: increase over the run
    result.server["vllm:e2e_request_latency_seconds"].avg  # histogram: delta sum / count
    result.server.stat("vllm:num_requests_running", "p90")

As AIPerf 0.13 computes them (``server_metrics_export.json``):

- **counter**: ``total`` = last value in the window - the reference (the last scrape before
  the run started; a counter that went down, a server restart, gives 0 and a warning;
  ``ServerMetric.restarted`` says so, and an objective on it FAILs: the increase across a
  restart is not known),
  ``rate`` = total / the seconds between those two scrapes;
- **gauge** (and untyped): ``avg``, ``min``, ``max``, ``std`` (n-1) and ``p1``..``p99`` over
  the scrapes taken from the run's start to its end plus the final one;
- **histogram**: deltas of every bucket, of ``sum`` and of ``count`` between the same two
  scrapes as a counter; ``avg`` = sum / count, ``count_rate``, ``sum_rate``, and
  ``pNN_estimate`` read off the delta buckets by linear interpolation within a bucket (as
  Prometheus' ``histogram_quantile``).

A metric with several series (label sets, or several URLs) is one series each in
``.series``; its statistics pool them: gauges over every sample, counters and histograms
summed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from aiperf.server_metrics.parse import Family, Histogram, LabelKey
from aiperf.server_metrics.scraper import Scrape

GAUGE_STATS = ("avg", "min", "max", "std", "p1", "p5", "p10", "p25", "p50", "p75", "p90",
               "p95", "p99")
COUNTER_STATS = ("total", "rate")
HISTOGRAM_STATS = ("count", "sum", "avg", "count_rate", "sum_rate", "p50_estimate",
                   "p90_estimate", "p95_estimate", "p99_estimate")
_PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
_ESTIMATED = (50, 90, 95, 99)


def stats_of(metric_type: str) -> tuple[str, ...]:
    """The statistics a metric of this Prometheus type has."""
    return {"counter": COUNTER_STATS, "histogram": HISTOGRAM_STATS}.get(metric_type,
                                                                         GAUGE_STATS)


def default_stat(metric_type: str) -> str:
    """The statistic of an objective that names none: a counter's increase, else avg."""
    return "total" if metric_type == "counter" else "avg"


_UNIT_SUFFIXES = (("_seconds_total", "seconds"), ("_seconds", "seconds"), ("_ms", "ms"),
                  ("_bytes_total", "bytes"), ("_bytes", "bytes"), ("_perc", "ratio"),
                  ("_ratio", "ratio"), ("_percent", "percent"), ("_tokens_total", "tokens"),
                  ("_tokens", "tokens"), ("_requests_total", "requests"),
                  ("_requests", "requests"), ("_total", "count"))


def infer_unit(name: str, metric_type: str) -> str | None:
    """The unit a metric's name says it has (``_seconds``, ``_bytes``, ``_perc``...)."""
    probe = f"{name}_total" if metric_type == "counter" and not name.endswith("_total") \
        else name
    for suffix, unit in _UNIT_SUFFIXES:
        if probe.endswith(suffix):
            return unit
    return None


@dataclass(frozen=True)
class Samples:
    """A series' values at its scrapes (wall clock ns), every scrape that had it."""

    timestamps_ns: tuple[int, ...]
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, list[Any]]:
        return {"timestamps_ns": list(self.timestamps_ns), "values": list(self.values)}


@dataclass(frozen=True)
class Series:
    """One label set of one metric at one URL, with its statistics over the run."""

    endpoint_url: str
    labels: dict[str, str]
    stats: dict[str, float | None]
    samples: Samples | None = None  # gauges and counters: the time series
    buckets: dict[str, int] | None = None  # histograms: delta count per upper bound
    # Gauges: the values the statistics came from (the run's scrapes and the final one),
    # what a metric with several series pools.
    window_values: tuple[float, ...] = field(default=(), repr=False)
    # Counters and histograms: the cumulative value went down between two of the scrapes
    # used (a server restart), so the increase over the run is not known. The statistics
    # stay AIPerf's (a drop counts 0); an objective on them FAILs instead of judging them.
    restarted: bool = False
    # Gauges: whether any of those values was scraped during the run (not only the final
    # scrape after it, when the server is idle again).
    in_run: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint_url": self.endpoint_url}
        if self.labels:
            out["labels"] = dict(self.labels)
        out["stats"] = {k: v for k, v in self.stats.items() if v is not None}
        if self.buckets is not None:
            out["buckets"] = dict(self.buckets)
        if self.samples is not None:
            out["samples"] = self.samples.to_dict()
        return out


@dataclass(frozen=True)
class ServerMetric:
    """One Prometheus metric over the run: ``.max``, ``.total``, ``stat("p90")``..."""

    name: str
    type: str  # counter, gauge, histogram or unknown (untyped: treated as a gauge)
    description: str
    unit: str | None
    series: tuple[Series, ...]
    _pooled: dict[str, float | None] = field(default_factory=dict, repr=False,
                                             compare=False)

    @property
    def stat_names(self) -> tuple[str, ...]:
        return stats_of(self.type)

    @property
    def restarted(self) -> bool:
        """A series of this counter or histogram went down during the run: its increase,
        and every statistic drawn from it, is not known."""
        return any(s.restarted for s in self.series)

    @property
    def scraped_in_run(self) -> bool:
        """A gauge was scraped during the run at least once (else its values are the
        idle server's after it); always true of counters and histograms, whose deltas
        span the run."""
        return any(s.in_run for s in self.series)

    def stat(self, name: str) -> float | None:
        """The statistic over every series (None: no series had a value in the run)."""
        if name not in self.stat_names:
            raise KeyError(f"server metric {self.name!r} is a {self.type}: no statistic "
                           f"{name!r}; available: {', '.join(self.stat_names)}")
        if not self._pooled:
            self._pooled.update(_pool(self))
        return self._pooled.get(name)

    def __getattr__(self, name: str) -> float | None:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.stat(name)
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def select(self, labels: dict[str, str] | None = None, **more: str) -> ServerMetric:
        """The metric over the series whose labels include ``labels``
        (``select(model_name="m")``); KeyError naming the label sets there are when none
        does."""
        wanted = {**(labels or {}), **more}
        chosen = tuple(s for s in self.series
                       if all(s.labels.get(k) == v for k, v in wanted.items()))
        if not chosen:
            have = sorted({_label_text(s.labels) or "{}" for s in self.series})
            raise KeyError(f"server metric {self.name!r} has no series with labels "
                           f"{_label_text(wanted)}; its label sets: {', '.join(have)}")
        return ServerMetric(self.name, self.type, self.description, self.unit, chosen)

    def to_dict(self) -> dict[str, Any]:
        """AIPerf's per-metric shape: type, description, unit and the series."""
        out: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.unit:
            out["unit"] = self.unit
        out["series"] = [s.to_dict() for s in self.series]
        return out


@dataclass(frozen=True)
class EndpointInfo:
    """How collection went at one URL."""

    url: str
    total_fetches: int
    failed_fetches: int
    first_fetch_ns: int | None
    last_fetch_ns: int | None
    avg_fetch_latency_ms: float | None
    errors: tuple[str, ...]  # distinct error texts, first seen first

    @property
    def successful(self) -> bool:
        return self.total_fetches > self.failed_fetches

    def to_dict(self) -> dict[str, Any]:
        return {"total_fetches": self.total_fetches, "failed_fetches": self.failed_fetches,
                "first_fetch_ns": self.first_fetch_ns, "last_fetch_ns": self.last_fetch_ns,
                "avg_fetch_latency_ms": self.avg_fetch_latency_ms,
                "errors": list(self.errors)}


@dataclass(frozen=True)
class ServerMetrics:
    """Every metric scraped in a run, by name; ``endpoints`` says how each URL went."""

    metrics: dict[str, ServerMetric]
    endpoints: dict[str, EndpointInfo]
    interval: float
    start_ns: int | None
    end_ns: int | None
    warnings: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> ServerMetric:
        found = self.get(name)
        if found is None:
            raise KeyError(self.missing(name))
        return found

    def get(self, name: str) -> ServerMetric | None:
        """The metric by its family name, or as the exposition spells a counter
        (``..._total``)."""
        if name in self.metrics:
            return self.metrics[name]
        base = name.removesuffix("_total")
        metric = self.metrics.get(base)
        return metric if metric is not None and metric.type == "counter" else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Any:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def stat(self, name: str, stat: str) -> float | None:
        return self[name].stat(stat)

    def missing(self, name: str) -> str:
        """Why ``name`` has no value: what was scraped instead, or why nothing was."""
        failed = [f"{url}: {info.errors[0] if info.errors else 'no scrape'}"
                  for url, info in self.endpoints.items() if not info.successful]
        if not self.metrics:
            return (f"no server metric {name!r}: no scrape succeeded"
                    + (f" ({'; '.join(failed)})" if failed else ""))
        return f"no server metric {name!r} was scraped; {suggest(name, self.metrics)}"

    @property
    def endpoints_successful(self) -> list[str]:
        return [url for url, info in self.endpoints.items() if info.successful]

    def to_export_dict(self) -> dict[str, Any]:
        """``server_metrics_export.json``'s content, AIPerf 0.13's shape (``metrics`` keyed
        by name, each with its ``series``), each gauge and counter series with its
        ``samples`` (timestamps_ns, values) added for plotting."""
        import datetime as dt

        def iso(ns: int | None) -> str | None:
            return None if ns is None else dt.datetime.fromtimestamp(
                ns / 1e9, tz=dt.UTC).isoformat()

        summary: dict[str, Any] = {
            "endpoints_configured": list(self.endpoints),
            "endpoints_successful": self.endpoints_successful,
            "start_time": iso(self.start_ns), "end_time": iso(self.end_ns),
            "scrape_interval_s": self.interval,
            "endpoint_info": {url: info.to_dict() for url, info in self.endpoints.items()},
        }
        if self.start_ns is not None and self.end_ns is not None:
            summary["phase_time_ranges"] = {"profiling": {"start_ns": self.start_ns,
                                                          "end_ns": self.end_ns}}
        if self.warnings:
            summary["warnings"] = list(self.warnings)
        return {"schema_version": "1.1", "summary": summary, "metrics_phase": "profiling",
                "metrics": {name: m.to_dict() for name, m in sorted(self.metrics.items())}}

    def __repr__(self) -> str:
        ok = len(self.endpoints_successful)
        return (f"<ServerMetrics: {len(self.metrics)} metrics from {ok} of "
                f"{len(self.endpoints)} endpoints>")


def suggest(name: str, names: Iterable[str]) -> str:
    """'did you mean ...' and a few of the names there are."""
    import difflib

    known = sorted(names)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)" if len(known) > 30
                                     else "")
    return f"{hint}scraped: {shown}"


# -- computing them ------------------------------------------------------------------------


def summarize(urls: Sequence[str], scrapes: Sequence[Scrape], interval: float,
              start_ns: int | None = None, end_ns: int | None = None) -> ServerMetrics:
    """The statistics of every series from the scrapes of one run; see the module doc for
    which scrapes each type uses."""
    metrics: dict[str, dict[str, Any]] = {}
    endpoints: dict[str, EndpointInfo] = {}
    warnings: list[str] = []
    from aiperf.common.config import mask_url

    for given in urls:
        mine = sorted((s for s in scrapes if s.url == given), key=lambda s: s.timestamp_ns)
        url = mask_url(given)  # what the result and its artifacts show: no credentials
        endpoints[url] = _endpoint_info(url, mine)
        ok = [s for s in mine if s.ok]
        if not ok:
            continue
        window, reference = _window(ok, start_ns, end_ns)
        if not any(s.phase == "run" for s in window):
            warnings.append(f"no scrape of {url} fell inside the run (interval {interval:g} "
                            "s): its gauges come from the scrape after the run alone; "
                            "lower server_metrics_interval to sample them during it")
        for name, family in _families(ok):
            entry = metrics.setdefault(name, {"type": family.type, "help": family.help,
                                              "series": []})
            if entry["type"] != family.type:
                warnings.append(f"{name} is a {family.type} at {url} but a "
                                f"{entry['type']} elsewhere; {url}'s series left out")
                continue
            for key in _keys(ok, name):
                series = _series(url, name, family.type, key, ok, window, reference,
                                 warnings)
                if series is not None:
                    entry["series"].append(series)
    out = {}
    for name, entry in metrics.items():
        series = sorted(entry["series"], key=lambda s: (s.endpoint_url,
                                                        sorted(s.labels.items())))
        out[name] = ServerMetric(name, entry["type"], entry["help"],
                                 infer_unit(name, entry["type"]), tuple(series))
    return ServerMetrics(out, endpoints, interval, start_ns, end_ns, tuple(warnings))


def _endpoint_info(url: str, scrapes: list[Scrape]) -> EndpointInfo:
    errors = tuple(dict.fromkeys(s.error for s in scrapes if s.error))
    latencies = [s.latency_ns / 1e6 for s in scrapes]
    return EndpointInfo(url, len(scrapes), sum(1 for s in scrapes if not s.ok),
                        scrapes[0].timestamp_ns if scrapes else None,
                        scrapes[-1].timestamp_ns if scrapes else None,
                        float(np.mean(latencies)) if latencies else None, errors)


def _window(ok: list[Scrape], start_ns: int | None, end_ns: int | None
            ) -> tuple[list[Scrape], Scrape]:
    """(the scrapes the run's statistics use, the reference scrape of the deltas).
    The window: scrapes during the run (in the profiling window when it is known) and the
    final one; the reference: the last scrape before the window, else its first."""
    finals = [s for s in ok if s.phase == "final"]
    during = [s for s in ok if s.phase == "run"
              and (start_ns is None or s.timestamp_ns >= start_ns)
              and (end_ns is None or s.timestamp_ns <= end_ns)]
    window = sorted(during + finals, key=lambda s: s.timestamp_ns) or [ok[-1]]
    first = window[0].timestamp_ns
    if start_ns is not None:
        # A run with no scrape inside it: its window is the final scrape alone, and a
        # scrape taken after the run's end but before the final one (while the results
        # came back) already holds the run's counts; the reference comes before the run.
        first = min(first, start_ns)
    before = [s for s in ok if s.timestamp_ns < first and s.phase != "final"]
    return window, (before[-1] if before else window[0])


def _families(ok: list[Scrape]) -> list[tuple[str, Family]]:
    """Each family name seen at this URL with its latest declaration."""
    seen: dict[str, Family] = {}
    for scrape in ok:
        assert scrape.snapshot is not None
        seen.update(scrape.snapshot)
    return sorted(seen.items())


def _keys(ok: list[Scrape], name: str) -> list[LabelKey]:
    keys: dict[LabelKey, None] = {}
    for scrape in ok:
        assert scrape.snapshot is not None
        family = scrape.snapshot.get(name)
        if family is not None:
            keys.update(dict.fromkeys(family.series_keys()))
    return list(keys)


def _value(scrape: Scrape, name: str, key: LabelKey) -> float | None:
    assert scrape.snapshot is not None
    family = scrape.snapshot.get(name)
    return None if family is None else family.values.get(key)


def _hist(scrape: Scrape, name: str, key: LabelKey) -> Histogram | None:
    assert scrape.snapshot is not None
    family = scrape.snapshot.get(name)
    return None if family is None else family.histograms.get(key)


def _series(url: str, name: str, metric_type: str, key: LabelKey, ok: list[Scrape],
            window: list[Scrape], reference: Scrape, warnings: list[str]) -> Series | None:
    labels = dict(key)
    where = f"{name}{_label_text(labels)} at {url}"
    if metric_type == "histogram":
        return _histogram_series(url, name, key, window, reference, warnings, where)
    points = [(s.timestamp_ns, v) for s in ok if (v := _value(s, name, key)) is not None]
    samples = Samples(tuple(t for t, _ in points), tuple(v for _, v in points))
    if metric_type == "counter":
        counted = _counter_stats(name, key, window, reference, warnings, where)
        if counted is None:
            return None
        stats, restarted = counted
        return Series(url, labels, stats, samples, restarted=restarted)
    values = np.array([v for s in window if (v := _value(s, name, key)) is not None],
                      dtype=np.float64)
    stats = _gauge_stats(values)
    if stats is None:
        return None
    in_run = any(s.phase == "run" and _value(s, name, key) is not None for s in window)
    return Series(url, labels, stats, samples, None, tuple(values.tolist()), in_run=in_run)


def _label_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _gauge_stats(values: np.ndarray) -> dict[str, float | None] | None:
    if not values.size:
        return None
    percentiles = np.percentile(values, _PERCENTILES)
    stats: dict[str, float | None] = {
        "avg": float(np.mean(values)), "min": float(np.min(values)),
        "max": float(np.max(values)),
        "std": float(np.std(values, ddof=1)) if values.size > 1 else 0.0,
    }
    stats.update({f"p{p}": float(v) for p, v in zip(_PERCENTILES, percentiles, strict=True)})
    return stats


def _pair(name: str, key: LabelKey, window: list[Scrape], reference: Scrape,
          read: Any) -> tuple[tuple[int, Any], tuple[int, Any]] | None:
    """(reference (time, value), last in window (time, value)) of a cumulative series; the
    reference falls back to the window's first scrape that has the series (a series born
    during the run counts from its first sighting, as AIPerf does)."""
    found = [(s.timestamp_ns, v) for s in window if (v := read(s, name, key)) is not None]
    if not found:
        return None
    ref = read(reference, name, key)
    start = (reference.timestamp_ns, ref) if ref is not None and \
        reference.timestamp_ns <= found[0][0] else found[0]
    return start, found[-1]


def _counter_stats(name: str, key: LabelKey, window: list[Scrape], reference: Scrape,
                   warnings: list[str], where: str,
                   ) -> tuple[dict[str, float | None], bool] | None:
    """(total and rate, whether the counter went down on the way: a restart)."""
    pair = _pair(name, key, window, reference, _value)
    if pair is None:
        return None
    (t0, v0), (t1, v1) = pair
    delta = v1 - v0
    restarted = _went_down(_path(name, key, window, t0, v0, _value))
    if delta < 0:
        warnings.append(f"{where} went down ({v0:g} -> {v1:g}): a server restart? its "
                        "total is counted as 0")
    elif restarted:
        warnings.append(f"{where} went down during the run: a server restart? its total "
                        f"({delta:g}) is not the increase")
    total = max(delta, 0.0)
    seconds = (t1 - t0) / 1e9
    return {"total": total, "rate": total / seconds if seconds > 0 else 0.0}, restarted


def _path(name: str, key: LabelKey, window: list[Scrape], t0: int, v0: Any,
          read: Any) -> list[Any]:
    """The cumulative values a delta spans: the reference's, then the window's after it."""
    return [v0, *(v for s in window if s.timestamp_ns > t0
                  and (v := read(s, name, key)) is not None)]


def _went_down(values: Sequence[float]) -> bool:
    return any(b < a for a, b in pairwise(values))


def _histogram_series(url: str, name: str, key: LabelKey, window: list[Scrape],
                      reference: Scrape, warnings: list[str], where: str) -> Series | None:
    pair = _pair(name, key, window, reference, _hist)
    if pair is None:
        return None
    (t0, h0), (t1, h1) = pair
    assert h0.sum is not None and h0.count is not None
    assert h1.sum is not None and h1.count is not None
    count = h1.count - h0.count
    total = h1.sum - h0.sum
    buckets: dict[str, int] | None = {}
    for le, cumulative in h1.buckets.items():
        change = cumulative - h0.buckets.get(le, 0.0)
        if change < 0:
            buckets = None
            break
        buckets[le] = round(change)
    path = _path(name, key, window, t0, h0, _hist)
    restarted = (_went_down([h.count for h in path]) or _went_down([h.sum for h in path])
                 or any(h1.buckets.get(le, 0.0) < h0.buckets.get(le, 0.0)
                        for h0, h1 in pairwise(path) for le in h0.buckets))
    if count < 0 or total < 0 or buckets is None:
        warnings.append(f"{where} went down between scrapes: a server restart? its "
                        "deltas are counted as 0")
        count, total = max(count, 0.0), max(total, 0.0)
    elif restarted:
        warnings.append(f"{where} went down during the run: a server restart? its deltas "
                        "are not the run's")
    seconds = (t1 - t0) / 1e9
    stats: dict[str, float | None] = {"count": float(count), "sum": float(total)}
    if count > 0:
        stats["avg"] = total / count
        if seconds > 0:
            stats["count_rate"] = count / seconds
            stats["sum_rate"] = total / seconds
        if buckets:
            for p in _ESTIMATED:
                stats[f"p{p}_estimate"] = bucket_quantile(buckets, p / 100.0)
    return Series(url, dict(key), stats, None, buckets, restarted=restarted)


def _le(bound: str) -> float:
    return math.inf if bound in ("+Inf", "Inf", "inf") else float(bound)


def bucket_quantile(buckets: dict[str, int | float], q: float) -> float | None:
    """The q-quantile of cumulative ``buckets`` (upper bound -> count of values at or
    below it), interpolated linearly within its bucket from the previous bound (0 for the
    first, as Prometheus' histogram_quantile; the highest finite bound when it falls in
    +Inf). None without observations."""
    ordered = sorted(((_le(le), float(n)) for le, n in buckets.items()), key=lambda b: b[0])
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in ordered:
        if cumulative >= rank and cumulative > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = (bound if not math.isinf(bound) else lower), cumulative
    return lower


def _pool(metric: ServerMetric) -> dict[str, float | None]:
    """A metric's statistics over all its series."""
    series = metric.series
    if not series:
        return {}
    if metric.type == "counter":
        return {"total": sum(s.stats["total"] or 0.0 for s in series),
                "rate": sum(s.stats["rate"] or 0.0 for s in series)}
    if metric.type == "histogram":
        count = sum(s.stats.get("count") or 0.0 for s in series)
        total = sum(s.stats.get("sum") or 0.0 for s in series)
        out: dict[str, float | None] = {"count": count, "sum": total,
                                        "avg": total / count if count else None}
        for rate in ("count_rate", "sum_rate"):
            found = [s.stats.get(rate) for s in series if s.stats.get(rate) is not None]
            out[rate] = float(sum(found)) if found else None  # type: ignore[arg-type]
        merged: dict[str, float] = {}
        for s in series:
            if s.buckets is None:
                continue
            for le, n in s.buckets.items():
                merged[le] = merged.get(le, 0.0) + n
        for p in _ESTIMATED:
            out[f"p{p}_estimate"] = bucket_quantile(merged, p / 100.0) if count else None
        return out
    if len(series) == 1:
        return dict(series[0].stats)
    # Several gauge series (label sets, URLs): every sample of each, pooled.
    values = np.concatenate([np.asarray(s.window_values, dtype=np.float64) for s in series])
    return _gauge_stats(values) or {}
