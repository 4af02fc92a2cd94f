"""What the report shows, read from artifact directories, and the numbers each plot is
drawn from (CDF points, time buckets, requests in flight, thresholds, windows).

A source is one of
- a **pytest artifacts root** (``--aiperf-artifacts DIR``): ``DIR/summary.json`` names each
  load test, its verdicts and its directory ``DIR/<test>/``;
- an **artifact directory** of ``aiperf profile`` or of NVIDIA AIPerf
  (``profile_export_aiperf.json`` + ``profile_export.jsonl``, see
  ``aiperf.baselines.sources``).

Several sources are overlaid: the same test of two pytest roots shares one section, and
plain artifact directories given together share one section (runs compared).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from aiperf.baselines.sources import (
    KIND_TITLES,
    RECORDS_FILE,
    SUMMARY_FILE,
    RequestRows,
    SourceError,
    _read_summary,
    load_requests,
)

SESSION_FILE = "summary.json"
SERVER_METRICS_FILE = "server_metrics_export.json"
CAPACITY_FILE = "capacity.json"  # a capacity search's result (aiperf.capacity.model)
# The distributions every test shows, in this order.
CDF_METRICS = ("time_to_first_token", "inter_token_latency", "request_latency")
ROW_TAGS = (*CDF_METRICS, "output_sequence_length")
# A CDF of more points than this is thinned (its tail kept dense, see cdf_points).
CDF_POINTS = 400
# Requests drawn one by one on a timeline; past this, a sample (errors and slowest kept).
TIMELINE_POINTS = 2000
_WINDOW = re.compile(r"(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*s\b")
_NUMBER = re.compile(r"^\s*(<=|>=|<|>|==)?\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*(.*)$")


# A value past this is no measurement (a foreign file's garbage): left out of every plot,
# whose axis arithmetic would overflow on it.
LARGEST = 1e100


def drawable(values: np.ndarray) -> np.ndarray:
    """Which of ``values`` a plot can take: finite and below ``LARGEST`` in size."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.abs(values) < LARGEST)


class ReportError(SourceError):
    """A source the report cannot read; the message names the path."""


@dataclass(eq=False)
class RunData:
    """One run of one test as the report draws it."""

    label: str  # the source as given (a legend names a run by it)
    test: str  # the pytest node id, or the directory's name
    kind: str  # "pytest", "artifacts" or "nvidia-aiperf"
    directory: Path | None
    profile: str = ""
    outcome: str | None = None  # the test's outcome; None outside pytest
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    rows: RequestRows | None = None
    baseline: dict[str, Any] | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    capacity: CapacityData | None = None  # a capacity search's probes and answer
    claim: dict[str, Any] | None = None  # a capacity claim's verdict ("status", "line")

    def values(self, tag: str) -> np.ndarray:
        """``tag``'s per-request values that can be drawn (empty when not measured)."""
        if self.rows is None or tag not in self.rows.values:
            return np.empty(0)
        data = self.rows.values[tag]
        return data[drawable(data)]

    def stat(self, tag: str, stat: str) -> float | None:
        entry = self.summary.get(tag)
        value = entry.get(stat) if isinstance(entry, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and abs(value) < LARGEST:
            return float(value)
        return None


@dataclass(eq=False)
class Section:
    """One test of the report: a run per source that has it."""

    key: str
    title: str
    runs: list[RunData]
    anchor: str = ""

    @property
    def function(self) -> str:
        """The test function (node id without its parameters): a ladder's cases share it."""
        return self.key.split("[", 1)[0]


# -- loading


def load_report(sources: Sequence[Path | str]) -> list[Section]:
    """The report's sections, in the order the sources list their tests."""
    if not sources:
        raise ReportError("no source given: name a pytest artifacts dir or an artifact dir")
    sections: dict[str, Section] = {}
    plain: list[RunData] = []
    for source in sources:
        path = Path(source)
        if (path / SESSION_FILE).is_file():
            for run in _pytest_runs(path, str(source)):
                section = sections.setdefault(run.test, Section(run.test, _label(run.test), []))
                section.runs.append(run)
        elif (path / CAPACITY_FILE).is_file():
            # a search's own section, never overlaid with plain runs: its x is the load
            run = load_capacity_dir(path, str(source))
            sections.setdefault(run.test, Section(run.test, _label(run.test), [])).runs.append(
                run)
        elif (path.parent / SESSION_FILE).is_file() and path.is_dir() \
                and (found := _pytest_runs(path.parent, str(source), only=path.name)):
            # one test's dir of a pytest session: with its verdicts, as in the whole report
            run = found[0]
            sections.setdefault(run.test, Section(run.test, _label(run.test), [])).runs.append(
                run)
        else:
            plain.append(load_artifact_dir(path, str(source)))
    if len(plain) == 1:
        run = plain[0]
        sections.setdefault(run.test, Section(run.test, run.test, [])).runs.append(run)
    elif plain:
        title = f"{len(plain)} runs compared"
        sections[title] = Section(title, title, plain)
    out = list(sections.values())
    for number, section in enumerate(out, 1):
        section.anchor = f"test-{number}"
    return out


def _label(nodeid: str) -> str:
    return nodeid.split("::", 1)[-1]


def _pytest_runs(root: Path, given: str, only: str | None = None) -> list[RunData]:
    """The runs summary.json lists (``only``: the one whose directory has that name)."""
    try:
        document = json.loads((root / SESSION_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{root / SESSION_FILE}: not readable JSON ({exc})") from None
    tests = document.get("load_tests") if isinstance(document, dict) else None
    if not isinstance(tests, list):
        raise ReportError(f"{root / SESSION_FILE}: no 'load_tests' list (not a pytest-aiperf "
                          f"summary)")
    runs = []
    for entry in tests:
        if not isinstance(entry, dict) or not isinstance(entry.get("nodeid"), str):
            raise ReportError(f"{root / SESSION_FILE}: a load test without a 'nodeid'")
        recorded = entry.get("artifacts")
        if only is not None and (not isinstance(recorded, str) or Path(recorded).name != only):
            continue
        run_number = entry.get("run", 1)
        test = entry["nodeid"] + ("" if run_number in (1, None) else f" (run {run_number})")
        objectives, metrics = entry.get("objectives"), entry.get("metrics")
        run = RunData(label=given, test=test, kind="pytest", directory=None,
                      profile=str(entry.get("profile") or ""),
                      outcome=_text_or_none(entry.get("outcome")),
                      verdicts=[v for v in objectives if isinstance(v, dict)]
                      if isinstance(objectives, list) else [],
                      metrics={k: float(v) for k, v in metrics.items()
                               if _number(v) is not None} if isinstance(metrics, dict) else {},
                      baseline=entry["baseline"] if isinstance(entry.get("baseline"), dict)
                      else None,
                      error=_text_or_none(entry.get("error")))
        _capacity_entry(run, entry.get("capacity"), f"{root / SESSION_FILE}: {entry['nodeid']}")
        directory = _test_dir(root, recorded)
        if directory is None and run.capacity is not None:
            pass  # a search's record: its probes' artifacts are in its _capacity dir
        elif directory is None:
            run.notes.append("no per-request artifacts (the test did not run, or its "
                             "directory is gone)")
        else:
            run.directory = directory
            _fill_from_dir(run, directory)
        runs.append(run)
    return runs


def _capacity_entry(run: RunData, entry: Any, where: str) -> None:
    """A record's ``capacity`` entry in summary.json: a search's whole result, a claim's
    verdict line, or the headroom step above a claim (a note)."""
    if not isinstance(entry, dict):
        return
    if isinstance(entry.get("probes"), list):
        try:
            run.capacity = read_capacity(entry, f"{where} capacity")
        except ReportError as exc:
            run.notes.append(f"capacity not drawn: {exc}")
    if isinstance(entry.get("line"), str):
        run.claim = {"status": str(entry.get("status") or ""), "line": entry["line"]}
    elif entry.get("role") == "headroom" and _number(entry.get("point")) is not None:
        run.notes.append(f"headroom step of {entry.get('claim')}: at {entry['point']:g}: "
                         f"{entry.get('status')} ({entry.get('summary')})")


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _test_dir(root: Path, recorded: Any) -> Path | None:
    """A test's directory: as summary.json recorded it, else under ``root`` by its name
    (the root was moved, e.g. downloaded as a CI artifact)."""
    if not isinstance(recorded, str) or not recorded:
        return None
    for candidate in (Path(recorded), root / Path(recorded).name):
        if (candidate / RECORDS_FILE).is_file() or (candidate / SUMMARY_FILE).is_file():
            return candidate
    return None


def load_artifact_dir(directory: Path, given: str | None = None) -> RunData:
    """A run from an ``aiperf profile`` or NVIDIA AIPerf artifact directory."""
    if directory.is_file() and directory.name in (SUMMARY_FILE, RECORDS_FILE):
        directory = directory.parent
    if not directory.exists():
        raise ReportError(f"{given or directory}: no such file or directory")
    if not directory.is_dir():
        raise ReportError(f"{given or directory}: not a directory (give a pytest artifacts "
                          f"dir with {SESSION_FILE}, or an artifact dir)")
    if not (directory / SUMMARY_FILE).is_file() and not (directory / RECORDS_FILE).is_file():
        raise ReportError(f"{given or directory}: neither {SESSION_FILE} (pytest artifacts) "
                          f"nor {SUMMARY_FILE} / {RECORDS_FILE} (an artifact dir) is there")
    run = RunData(label=given or str(directory), test=directory.resolve().name,
                  kind="artifacts", directory=directory)
    _fill_from_dir(run, directory)
    return run


def _fill_from_dir(run: RunData, directory: Path) -> None:
    summary_path = directory / SUMMARY_FILE
    if summary_path.is_file():
        document = _read_summary(summary_path)
        run.summary = {tag: entry for tag, entry in document.items()
                       if isinstance(entry, dict) and "unit" in entry}
        nvidia = "aiperf_version" in document or "schema_version" in document
        if run.kind != "pytest":
            run.kind = "nvidia-aiperf" if nvidia else "artifacts"
            version = document.get("aiperf_version") if nvidia else None
            run.profile = KIND_TITLES[run.kind] + (f" {version}" if version else "")
    else:
        run.notes.append(f"no {SUMMARY_FILE}")
    if (directory / RECORDS_FILE).is_file():
        run.rows = load_requests(directory, ROW_TAGS)
    else:
        run.notes.append(f"no {RECORDS_FILE}: no per-request plots")
    if not run.metrics:
        run.metrics = _key_metrics(run)


def _key_metrics(run: RunData) -> dict[str, float]:
    """The session table's numbers for a run without a pytest summary."""
    out: dict[str, float] = {}
    for name, tag, stat in (("request_throughput", "request_throughput", "avg"),
                            ("time_to_first_token.p99", "time_to_first_token", "p99"),
                            ("request_latency.p99", "request_latency", "p99")):
        value = run.stat(tag, stat)
        if value is not None:
            out[name] = value
    if run.rows is not None and len(run.rows):
        out["request_error_rate"] = 100.0 * float((~run.rows.ok).sum()) / len(run.rows)
    return out


def server_metrics_path(run: RunData) -> Path | None:
    if run.directory is None:
        return None
    path = run.directory / SERVER_METRICS_FILE
    return path if path.is_file() else None


# -- what the plots receive


def cdf_points(values: np.ndarray, max_points: int = CDF_POINTS) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """The empirical CDF of ``values``: sorted values and the fraction of values at or
    below each (``(i + 1) / n``). Past ``max_points`` it is thinned: half the points
    evenly over the ranks, half spaced geometrically toward the top rank, so that the tail
    a p99 objective reads stays exact; the smallest and largest values are always kept."""
    data = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    n = len(data)
    if n == 0:
        return np.empty(0), np.empty(0)
    ranks = np.arange(n)
    if n > max_points:
        even = np.linspace(0, n - 1, max_points // 2).round().astype(np.int64)
        # distance from the top rank, 1 .. n, geometrically spaced
        tail = n - np.geomspace(1, n, max_points - max_points // 2).round().astype(np.int64)
        ranks = np.unique(np.concatenate([even, tail, [0, n - 1]]))
    return data[ranks], (ranks + 1) / n


def bucket_width(duration_s: float, target: int = 60, down: bool = False) -> float:
    """A round bucket width (1, 2 or 5 times a power of ten seconds) giving about
    ``target`` buckets over ``duration_s``: the next round width up (at most ``target``
    buckets), or with ``down`` the next one down (at least ``target``)."""
    if not math.isfinite(duration_s) or duration_s <= 0:
        return 1.0
    raw = duration_s / target
    power = 10.0 ** math.floor(math.log10(raw))
    steps = [step * power for step in (1.0, 2.0, 5.0, 10.0)]
    if down:
        return max(step for step in steps if step <= raw * (1 + 1e-9))
    return next(step for step in steps if raw <= step * (1 + 1e-9))


@dataclass
class Buckets:
    """The run cut into equal time buckets: ``edges`` (n + 1 values), completed requests
    per second, mean requests in flight, and failed requests per error kind (counts)."""

    edges: np.ndarray
    throughput: np.ndarray
    in_flight: np.ndarray
    errors: dict[str, np.ndarray]

    @property
    def mids(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def time_buckets(rows: RequestRows, width: float | None = None) -> Buckets:
    """Throughput (successful completions per second, by end time), mean requests in
    flight (time-weighted over each bucket, failed requests included while they lasted)
    and errors per kind (by start time, when the failure was sent) per bucket."""
    start, end = rows.start_s, rows.end_s
    ok = rows.ok
    finish = np.where(np.isfinite(end), end, start)
    known = np.isfinite(start)
    last = float(np.nanmax(finish[known])) if known.any() else 0.0
    if not width:
        # About 40 buckets, but wide enough for ~20 completions each on average: a closed
        # loop completes in waves, and narrower buckets draw the waves, not the rate.
        completed = max(int(ok.sum()), 1)
        wide = max(last / 40, 20 * last / completed)
        width = (bucket_width(wide, target=1) if last / bucket_width(wide, target=1) >= 8
                 else bucket_width(last, target=8, down=True))  # at least 8 buckets
    count = max(1, math.ceil(last / width - 1e-9))
    edges = np.arange(count + 1) * width
    done = np.histogram(end[ok & np.isfinite(end)], bins=edges)[0]
    kinds: dict[str, list[float]] = {}
    for position, error in enumerate(rows.errors):
        if error is not None and known[position]:
            kinds.setdefault(error[0], []).append(float(start[position]))
    errors = {kind: np.histogram(np.asarray(times), bins=edges)[0]
              for kind, times in sorted(kinds.items())}
    return Buckets(edges=edges, throughput=done / width,
                   in_flight=in_flight(start[known], finish[known], edges), errors=errors)


def in_flight(start: np.ndarray, end: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean number of the intervals ``[start, end]`` open over each bucket of ``edges``:
    the integral of the count over the bucket, over its width. The integral up to ``t`` is
    ``sum(t - s for s < t) - sum(t - e for e < t)``, from sorted prefix sums, so this costs
    O(n log n) whatever the number of buckets."""
    def integral(points: np.ndarray, at: np.ndarray) -> np.ndarray:
        ordered = np.sort(points)
        prefix = np.concatenate([[0.0], np.cumsum(ordered)])
        below = np.searchsorted(ordered, at, side="left")
        return below * at - prefix[below]

    total = integral(start, edges) - integral(end, edges)
    return np.diff(total) / np.diff(edges)


def timeline_sample(rows: RequestRows, limit: int = TIMELINE_POINTS) -> np.ndarray:
    """Which rows a timeline draws one by one (indexes, in time order): all when there are
    at most ``limit``; otherwise every failed request (up to a quarter of the budget), the
    slowest tenth of the budget, and evenly spaced others, so a tail or an error burst is
    never sampled away."""
    n = len(rows)
    order = np.argsort(rows.start_s, kind="stable")
    if n <= limit:
        return order
    failed = np.flatnonzero(~rows.ok)[: limit // 4]
    latency = rows.values.get("request_latency")
    slowest = (np.argsort(np.where(np.isfinite(latency), latency, -np.inf))[-(limit // 10):]
               if latency is not None else np.empty(0, dtype=np.int64))
    chosen = np.unique(np.concatenate([failed, slowest]))
    rest = limit - len(chosen)
    others = order[np.linspace(0, n - 1, max(rest, 0)).round().astype(np.int64)]
    picked = np.unique(np.concatenate([chosen, others]))
    return picked[np.argsort(rows.start_s[picked], kind="stable")]


@dataclass(frozen=True)
class Threshold:
    """An objective as a CDF draws it: the threshold (a vertical line), the interval of
    the measured statistic (a shaded band), the percentile level (None for a mean), the
    verdict and the window it was judged on."""

    metric: str
    key: str
    value: float
    text: str
    interval: tuple[float, float] | None
    level: float | None
    verdict: str
    window: str
    span: tuple[float, float] | None  # the window's bounds in seconds, None: whole run
    # "turn>=2" for an objective on some turns of sessions ("metric.p99[turn>=2]")
    turns: str | None = None


def thresholds(verdicts: Sequence[dict[str, Any]], metric: str) -> list[Threshold]:
    """The objectives on ``metric`` (its ``adj_`` twin included) that have a numeric
    threshold; a relative one whose baseline never filled it in has none to draw.

    An objective on some turns (``time_to_first_token.p99[turn>=2]``) is drawn by its
    threshold and interval, with its ``turns``, but with no level and no window span: the
    CDFs the report draws are of every turn, so a p99 line across them (or a window's
    curve) would read as the subset's p99, which they do not show."""
    out = []
    for verdict in verdicts:
        key = str(verdict.get("objective", ""))
        plain, bracket, rest = key.partition("[")
        turns = (rest.partition("]")[0].replace(" ", "") or None) if bracket else None
        name, _, stat = plain.split("@", 1)[0].strip().partition(".")
        if name.removeprefix("adj_") != metric:
            continue
        value = threshold_value(str(verdict.get("threshold", "")))
        if value is None:
            continue
        interval = verdict.get("interval")
        bounds = None
        if isinstance(interval, list) and len(interval) == 2:
            low, high = (_number(b) for b in interval)
            if low is not None and high is not None:
                bounds = (low, high)
        level = _percentile(stat) if turns is None else None
        window = str(verdict.get("window") or "whole run")
        out.append(Threshold(metric=metric, key=key, value=value,
                             text=str(verdict.get("threshold")), interval=bounds, level=level,
                             verdict=str(verdict.get("verdict", "")), window=window,
                             span=window_span(window) if turns is None else None,
                             turns=turns))
    return out


def threshold_value(text: str) -> float | None:
    """The number of a threshold as summary.json writes it ("< 250 ms" -> 250.0): in the
    metric's display unit, which is how objectives are written and stored."""
    found = _NUMBER.match(text)
    if found is None or "baseline" in text:
        return None
    value = float(found.group(2))
    return value if abs(value) < LARGEST else None


def window_span(window: str) -> tuple[float, float] | None:
    """A verdict's window in seconds from the run's first request ("steady state
    1.2-9.8 s (...)" -> (1.2, 9.8)); None for the whole run."""
    found = _WINDOW.search(window)
    return (float(found.group(1)), float(found.group(2))) if found else None


def _percentile(stat: str) -> float | None:
    if stat in ("p50", "median"):
        return 0.5
    if stat.startswith("p"):
        try:
            return float(stat[1:].replace("_", ".")) / 100.0
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and abs(value) < LARGEST else None
    return None


@dataclass(frozen=True)
class LadderPoint:
    case: str
    throughput: float
    p50: float | None
    p99: float | None
    source: str = ""  # the run's source, when several sources are overlaid


def ladders(sections: Sequence[Section]) -> dict[str, list[LadderPoint]]:
    """Parametrized tests (two or more sections sharing a test function) as latency-
    throughput points, one per case and source, in the order they ran (a second run of a
    case in one source is left out)."""
    groups: dict[str, list[Section]] = {}
    for section in sections:
        if "[" in section.key and " (run " not in section.key:
            groups.setdefault(section.function, []).append(section)
    out = {}
    for function, members in groups.items():
        points = []
        for section in members:
            for run in section.runs:
                throughput = run.stat("request_throughput", "avg") \
                    or run.metrics.get("request_throughput")
                if throughput is None:
                    continue
                points.append(LadderPoint(case=section.key[len(function):],
                                          throughput=float(throughput),
                                          p50=run.stat("request_latency", "p50"),
                                          p99=run.stat("request_latency", "p99")
                                          or run.metrics.get("request_latency.p99"),
                                          source=run.label))
        if len({p.case for p in points}) >= 2:
            out[function] = points
    return out


def server_series(path: Path, origin_ns: int | None = None,
                  limit: int = 12) -> list[dict[str, Any]]:
    """Time series of an AIPerf-shaped ``server_metrics_export.json``: per metric,
    ``{"name", "unit", "kind", "series": [(labels, [[t_s, value], ...])]}``, from each
    series' ``timeslices`` (AIPerf with a slice duration: a gauge's slice average, a
    counter's rate, a histogram's average) or ``samples`` (this project's scrapes: a
    gauge's value, a counter's rate between scrapes). Time in seconds from ``origin_ns``
    (the run's first request on the wall clock, so the server's picture lines up with the
    requests'), else from the first point. At most ``limit`` metrics, five label sets
    each; a metric with no time series is left out."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc})") from None
    metrics = document.get("metrics") if isinstance(document, dict) else None
    if not isinstance(metrics, dict):
        raise ReportError(f"{path}: no 'metrics' object (AIPerf's server metrics shape)")
    found: list[tuple[str, str, str, list[tuple[str, list[tuple[int, float]]]]]] = []
    first_point: int | None = None
    for name, metric in metrics.items():
        if not isinstance(metric, dict):
            continue
        kind = str(metric.get("type", ""))
        lines = []
        for series in (metric.get("series") or [])[:5]:
            if not isinstance(series, dict):
                continue
            points = _slice_points(series.get("timeslices"), kind) or _sample_points(
                series.get("samples"), kind)
            if not points:
                continue
            first_point = points[0][0] if first_point is None else min(first_point,
                                                                        points[0][0])
            labels = series.get("labels") or {}
            text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or name
            lines.append((text, points))
        if lines:
            unit = str(metric.get("unit") or "")
            found.append((name, unit + ("/s" if kind == "counter" else ""), kind, lines))
        if len(found) >= limit:
            break
    base = origin_ns if origin_ns is not None else (first_point or 0)
    return [{"name": name, "unit": unit, "kind": kind,
             "series": [(text, [[round((t - base) / 1e9, 3), v] for t, v in points])
                        for text, points in lines]}
            for name, unit, kind, lines in found]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _slice_points(slices: Any, kind: str) -> list[tuple[int, float]]:
    if not isinstance(slices, list):
        return []
    name = "rate" if kind == "counter" else "avg"
    return [(int(s["start_ns"]), float(s[name])) for s in slices
            if isinstance(s, dict) and isinstance(s.get("start_ns"), int) and _finite(s.get(name))]


def _sample_points(samples: Any, kind: str) -> list[tuple[int, float]]:
    """A gauge's scraped values; a counter's increase per second between two scrapes,
    at the later one (a counter reset, a drop, is no negative rate: that gap is skipped)."""
    if not isinstance(samples, dict):
        return []
    times, values = samples.get("timestamps_ns"), samples.get("values")
    if not isinstance(times, list) or not isinstance(values, list):
        return []
    pairs = [(int(t), float(v)) for t, v in zip(times, values, strict=False)
             if isinstance(t, int) and _finite(v)]
    if kind != "counter":
        return pairs
    return [(t1, (v1 - v0) * 1e9 / (t1 - t0)) for (t0, v0), (t1, v1) in pairwise(pairs)
            if t1 > t0 and v1 >= v0]


# -- capacity

# The latency-load curve's lines: a probe's ``metrics`` key and its legend name.
CAPACITY_CURVE = (("time_to_first_token.p50", "TTFT p50"),
                  ("time_to_first_token.p99", "TTFT p99"),
                  ("request_latency.p99", "latency p99"))
CAPACITY_UNITS = {"concurrency": "concurrent requests", "request_rate": "request rate (req/s)"}


@dataclass(frozen=True)
class CapacityProbe:
    """One probe of capacity.json as the report shows it."""

    point: float
    status: str
    requests: int | None = None
    looks: int | None = None
    goodput: float | None = None  # good requests per second
    attainment: float | None = None  # a share, 0..1
    attainment_interval: tuple[float | None, float | None] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    objectives: list[dict[str, Any]] = field(default_factory=list)
    cause: str | None = None
    artifacts: str | None = None

    def summary(self) -> str:
        """What the probe's table row says: the cause, or the objectives that did not pass
        (worded as the search's own table, ``aiperf.capacity.model.Probe.summary``)."""
        if self.status in ("INVALID", "ERROR"):
            return f"{self.status}: {(self.cause or '').splitlines()[0] if self.cause else ''}"
        broken = [v for v in self.objectives if v.get("verdict") != "PASS"]
        if self.status == "PASS" or not broken:
            return "all objectives PASS" if self.status == "PASS" else self.status
        parts = []
        for v in broken:
            interval = v.get("interval")
            bounds = (f"[{_text_number(interval[0])}, {_text_number(interval[1])}]"
                      if isinstance(interval, list) and len(interval) == 2
                      else f"= {_text_number(v.get('measured'))}")
            unit = v.get("unit") if v.get("unit") not in (None, "", "ratio") else ""
            parts.append(f"{v.get('objective')} {v.get('verdict')} {bounds} {unit}".rstrip())
        return "; ".join(parts)


@dataclass
class CapacityData:
    """A capacity search's result (capacity.json, or a search record of summary.json)."""

    over: str
    probes: list[CapacityProbe]  # in the order they ran
    max_passing: float | None = None
    min_failing: float | None = None
    stopped: str = ""
    converged: bool = False
    requests: int | None = None
    seconds: float | None = None
    error: str | None = None
    client_limit: float | None = None

    @property
    def axis(self) -> str:
        return CAPACITY_UNITS.get(self.over, self.over)

    def curve(self) -> list[CapacityProbe]:
        """The probes by point, ascending (a point probed twice: its first probe)."""
        seen: dict[float, CapacityProbe] = {}
        for probe in self.probes:
            seen.setdefault(probe.point, probe)
        return [seen[point] for point in sorted(seen)]

    def headline(self) -> str:
        unit = "concurrent" if self.over == "concurrency" else "requests/s"
        found = ("no point passed" if self.max_passing is None
                 else f"capacity {self.max_passing:g} {unit}")
        if self.min_failing is not None:
            found += f" (fails at {self.min_failing:g})"
        spent = [f"{len(self.probes)} probes"]
        if self.requests is not None:
            spent.append(f"{self.requests} requests")
        if self.seconds is not None:
            spent.append(f"{self.seconds:.1f} s")
        return f"{found}: {', '.join(spent)}" + (f"; {self.stopped}" if self.stopped else "")

    def latency_objectives(self) -> list[tuple[str, str, float]]:
        """(objective key, threshold text, value in ms) of each objective in milliseconds
        (a latency, drawable on the curve's axis), once each, from the probes' verdicts."""
        out: dict[str, tuple[str, str, float]] = {}
        for probe in self.probes:
            for v in probe.objectives:
                key, text = str(v.get("objective", "")), str(v.get("threshold", ""))
                value = threshold_value(text)
                if v.get("unit") == "ms" and value is not None and key not in out:
                    out[key] = (key, text, value)
        return list(out.values())


def read_capacity(document: Any, where: str) -> CapacityData:
    """capacity.json's content (``CapacityResult.to_dict``) checked: a clear error naming
    ``where`` and the key for what cannot be drawn; a probe's missing extras are None."""
    if not isinstance(document, dict):
        raise ReportError(f"{where}: not a JSON object (a capacity search's result)")
    over = document.get("over")
    if not isinstance(over, str) or not over:
        raise ReportError(f"{where}: no 'over' (what the search varied: concurrency or "
                          "request_rate)")
    entries = document.get("probes")
    if not isinstance(entries, list):
        raise ReportError(f"{where}: no 'probes' list")
    probes = []
    for number, entry in enumerate(entries):
        point = _number(entry.get("point")) if isinstance(entry, dict) else None
        if point is None:
            raise ReportError(f"{where}: probes[{number}] has no numeric 'point'")
        interval = entry.get("slo_attainment_interval")
        metrics = entry.get("metrics")
        objectives = entry.get("objectives")
        requests, looks = entry.get("requests"), entry.get("looks")
        probes.append(CapacityProbe(
            point=point, status=str(entry.get("status") or "-"),
            requests=requests if isinstance(requests, int) else None,
            looks=looks if isinstance(looks, int) else None,
            goodput=_number(entry.get("goodput")),
            attainment=_number(entry.get("slo_attainment")),
            attainment_interval=(_number(interval[0]), _number(interval[1]))
            if isinstance(interval, list) and len(interval) == 2 else None,
            metrics={k: float(v) for k, v in metrics.items() if _number(v) is not None}
            if isinstance(metrics, dict) else {},
            objectives=[v for v in objectives if isinstance(v, dict)]
            if isinstance(objectives, list) else [],
            cause=_text_or_none(entry.get("cause")),
            artifacts=_text_or_none(entry.get("artifacts"))))
    requests = document.get("requests")
    return CapacityData(over=over, probes=probes,
                        max_passing=_number(document.get("max_passing")),
                        min_failing=_number(document.get("min_failing")),
                        stopped=str(document.get("stopped") or ""),
                        converged=document.get("converged") is True,
                        requests=requests if isinstance(requests, int) else None,
                        seconds=_number(document.get("seconds")),
                        error=_text_or_none(document.get("error")),
                        client_limit=_number(document.get("client_limit")))


def load_capacity_dir(directory: Path, given: str | None = None) -> RunData:
    """A run holding a capacity search: ``aiperf capacity``'s artifact dir, or the
    ``<test>_capacity`` dir ``aiperf.capacity(...)`` writes in a pytest artifacts dir
    (named by its test when the summary.json beside it lists the search)."""
    path = directory / CAPACITY_FILE
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc})") from None
    data = read_capacity(document, str(path))
    run = RunData(label=given or str(directory), test=_search_test(directory),
                  kind="capacity", directory=directory,
                  profile=f"capacity search over {data.over}", capacity=data)
    passing = next((p for p in data.probes if p.point == data.max_passing), None)
    if passing is not None:
        run.metrics = dict(passing.metrics)
    if data.error:
        run.error = data.error
    return run


def _search_test(directory: Path) -> str:
    name = directory.resolve().name
    summary = directory.parent / SESSION_FILE
    if not name.endswith("_capacity") or not summary.is_file():
        return name
    from pytest_aiperf.session import safe_dirname

    try:
        tests = json.loads(summary.read_bytes()).get("load_tests")
    except (OSError, ValueError, AttributeError):
        return name
    for entry in tests if isinstance(tests, list) else []:
        nodeid = entry.get("nodeid") if isinstance(entry, dict) else None
        if isinstance(nodeid, str) and f"{safe_dirname(nodeid)}_capacity" == name:
            return nodeid
    return name


def _text_number(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.4g}"
