"""Each plot of the report as a chart spec: a plain JSON-able dict that both renderers
read (``report.js`` turns it into an ECharts option; ``svg.py`` draws it without script).

A spec is ``{"id", "kind", "title", "x": {"name"}, "y": {"name"}, "y2"?: {"name"},
"series": [...], "vlines": [...], "bands": [...], "hlines": [...], "note"?}``:

- a series is ``{"name", "type": "step" | "line" | "scatter" | "bar", "data", "y2"?,
  "stack"?, "dashed"?, "dotted"?}``; a timeline's scatter point is ``[start_s, value_ms,
  end_s, k, e]`` (what hovering it shows: ``k`` and ``e`` index the spec's
  ``"requests": {"ids", "errors"}``, e -1 for none), any other point ``[x, y]``;
- a vline is ``{"x", "label", "verdict"}`` (an objective's threshold), a band ``{"x0",
  "x1", "label"}`` (its interval, or the time window it was judged on), an hline
  ``{"y", "label"}`` (the percentile level it reads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aiperf.metrics.definitions import BY_TAG
from aiperf.report.data import (
    CAPACITY_CURVE,
    CDF_METRICS,
    CapacityData,
    LadderPoint,
    ReportError,
    RunData,
    Section,
    cdf_points,
    drawable,
    server_metrics_path,
    server_series,
    thresholds,
    time_buckets,
    timeline_sample,
    window_span,
)

_TITLES = {"time_to_first_token": "TTFT", "inter_token_latency": "ITL",
           "request_latency": "Request latency"}


def _r(values: np.ndarray, digits: int) -> list[float]:
    """Rounded to ``digits`` decimals for a smaller file; a huge value is kept as it is
    (rounding scales it by 10**digits first, which would overflow to infinity)."""
    data = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.round(data, digits)
    return np.where(np.isfinite(rounded), rounded, data).tolist()


def _pairs(x: np.ndarray, y: np.ndarray, dx: int = 4, dy: int = 4) -> list[list[float]]:
    return [list(p) for p in zip(_r(x, dx), _r(y, dy), strict=True)]


def _spec(chart_id: str, kind: str, title: str, x: str, y: str) -> dict[str, Any]:
    return {"id": chart_id, "kind": kind, "title": title, "x": {"name": x}, "y": {"name": y},
            "series": [], "vlines": [], "bands": [], "hlines": []}


def _run_name(run: RunData, runs: Sequence[RunData]) -> str:
    return "this run" if len(runs) == 1 else run.label


def cdf_chart(section: Section, metric: str, baseline: np.ndarray | None = None,
              baseline_name: str = "baseline") -> dict[str, Any] | None:
    """One metric's CDF: a step line per run (and the baseline's, dashed), each objective
    on the metric as its threshold line with its interval shaded and its window named."""
    unit = BY_TAG[metric].unit if metric in BY_TAG else ""
    spec = _spec(f"{section.anchor}-cdf-{metric}", "cdf", f"{_TITLES[metric]} CDF",
                 f"{_TITLES[metric]} ({unit})", "fraction of requests")
    for run in section.runs:
        x, p = cdf_points(run.values(metric))
        if len(x):
            spec["series"].append({"name": _run_name(run, section.runs), "type": "step",
                                   "data": _pairs(x, p, 4, 5)})
    if not spec["series"]:
        return None
    for run in section.runs:
        spec["series"].extend(_window_cdfs(run, metric, _run_name(run, section.runs)))
    if baseline is not None and len(baseline):
        x, p = cdf_points(baseline[drawable(baseline)])
        spec["series"].append({"name": baseline_name, "type": "step", "dashed": True,
                               "data": _pairs(x, p, 4, 5)})
    drawn: set[tuple[str, float]] = set()
    for run in section.runs:
        for t in thresholds(run.verdicts, metric):
            where = "" if t.window == "whole run" else f" ({t.window})"
            label = f"{t.key} {t.text}{where}"
            if (label, t.value) not in drawn:  # overlaid runs of one test share objectives
                drawn.add((label, t.value))
                spec["vlines"].append({"x": t.value, "label": label, "verdict": t.verdict})
            if t.interval is not None:
                spec["bands"].append({"x0": t.interval[0], "x1": t.interval[1],
                                      "label": f"{t.key} interval"})
            level = t.key.split("@")[0].rpartition(".")[2]
            if t.level is not None and all(h["y"] != t.level for h in spec["hlines"]):
                spec["hlines"].append({"y": t.level, "label": level})
    return fit_x(spec)


def _window_cdfs(run: RunData, metric: str, name: str,
                 limit: int = 3) -> list[dict[str, Any]]:
    """The CDFs of the windows objectives on ``metric`` were judged on (steady state, an
    ``@10s`` window), dotted, so a verdict's line is read against the values it judged:
    a window's requests are those that started in it (steady state: and ended in it, as
    ``aiperf.windows`` selects them). At most ``limit`` windows a run."""
    rows = run.rows
    if rows is None or metric not in rows.values:
        return []
    out: list[dict[str, Any]] = []
    seen: set[tuple[float, float]] = set()
    for t in thresholds(run.verdicts, metric):
        if t.span is None or t.span in seen or len(out) >= limit:
            continue
        seen.add(t.span)
        low, high = t.span
        chosen = (rows.start_s >= low) & (rows.start_s < high)
        if t.window.startswith("steady"):
            chosen &= rows.end_s <= high
        values = rows.values[metric][chosen]
        x, p = cdf_points(values[drawable(values)])
        if len(x):
            out.append({"name": f"{name} · {t.window.split(' (')[0]}", "type": "step",
                        "dotted": True, "data": _pairs(x, p, 4, 5)})
    return out


def fit_x(spec: dict[str, Any]) -> dict[str, Any]:
    """Sets the x range to the data and the thresholds near it. A threshold farther
    beyond the data than the data's span, or than its own distance from zero, would squash
    the distribution into a sliver: it moves to ``spec["offscale"]`` (shown as text, "p99
    < 250 ms: off scale, right") instead."""
    xs = [p[0] for item in spec["series"] for p in item["data"]]
    if not xs:
        return spec
    low, high = min(xs), max(xs)
    span = (high - low) or abs(high) or 1.0
    floor, ceiling = low - max(span, abs(low)), high + max(span, abs(high))
    kept, offscale = [], []
    for line in spec["vlines"]:
        if floor <= line["x"] <= ceiling:
            kept.append(line)
            low, high = min(low, line["x"]), max(high, line["x"])
        else:
            side = "right" if line["x"] > high else "left"
            offscale.append({**line, "label": f"{line['label']}: off scale, {side}"})
    spec["vlines"] = kept
    spec["bands"] = [b for b in spec["bands"] if floor <= b["x0"] and b["x1"] <= ceiling]
    for band in spec["bands"]:
        low, high = min(low, band["x0"]), max(high, band["x1"])
    if offscale:
        spec["offscale"] = offscale
    pad = (high - low) * 0.02
    spec["x"].update(min=round(low - pad, 6), max=round(high + pad, 6))
    return spec


def baseline_values(run: RunData, metric: str) -> tuple[np.ndarray | None, str]:
    """The stored baseline's per-request values of ``metric`` when summary.json says the
    run was compared with one and its file is still there."""
    state = run.baseline or {}
    if state.get("status") != "compared" or not state.get("path"):
        return None, ""
    from aiperf.baselines.sources import SourceError, load_source

    try:
        stored = load_source(state["path"])
    except SourceError as exc:
        run.notes.append(f"baseline not drawn: {exc}")
        run.baseline = {**state, "status": "unreadable"}
        return None, ""
    values = stored.metric_values(metric)
    return values, f"baseline {state.get('source') or ''}".strip()


def latency_timeline(section: Section) -> dict[str, Any] | None:
    """Each request's latency and TTFT against its start; a failed request at its
    duration, named by its error; the windows objectives were judged on, shaded.

    A point is ``[start_s, ms, end_s, k, e]``: ``k`` indexes the request's id in
    ``spec["requests"]["ids"]`` and ``e`` its error in ``spec["requests"]["errors"]``
    (-1: none), so a UUID or a long message is written once, not once per series."""
    spec = _spec(f"{section.anchor}-timeline", "latency", "Per-request latency and TTFT",
                 "request start (s)", "ms")
    all_ids: list[str] = []
    messages: dict[str, int] = {}
    for run in section.runs:
        rows = run.rows
        if rows is None or not len(rows):
            continue
        chosen = timeline_sample(rows)
        name = "" if len(section.runs) == 1 else f" · {run.label}"
        start, end = _r(rows.start_s[chosen], 4), _r(rows.end_s[chosen], 4)
        first = len(all_ids)
        all_ids.extend(rows.ids[i] for i in chosen)
        keys = range(first, len(all_ids))
        ends = [e if math.isfinite(e) else None for e in end]
        for tag, title in (("request_latency", "latency"), ("time_to_first_token", "TTFT")):
            values = rows.values[tag][chosen]
            keep = (drawable(values) & np.isfinite(rows.start_s[chosen])).tolist()
            if not any(keep):
                continue
            spec["series"].append({"name": title + name, "type": "scatter", "data": [
                [s, v, e, k, -1] for s, v, e, k, ok in zip(start, _r(values, 3), ends, keys,
                                                           keep, strict=True) if ok]})
        failed = []
        for s, e, k, position in zip(start, ends, keys, chosen.tolist(), strict=True):
            error = rows.errors[position]
            if error is None or not math.isfinite(s):
                continue
            text = f"{error[0]}: {error[1]}"
            index = messages.setdefault(text, len(messages))
            failed.append([s, round((e - s) * 1000, 3) if e is not None else 0.0, e, k,
                           index])
        if failed:
            spec["series"].append({"name": "failed" + name, "type": "scatter",
                                   "data": failed})
        for verdict in run.verdicts:
            span = window_span(str(verdict.get("window") or ""))
            if span is not None and not any(b["x0"] == span[0] and b["x1"] == span[1]
                                            for b in spec["bands"]):
                spec["bands"].append({"x0": span[0], "x1": span[1],
                                      "label": str(verdict.get("window"))})
    spec["requests"] = {"ids": all_ids, "errors": list(messages)}
    return spec if spec["series"] else None


def load_timeline(section: Section) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Throughput and requests in flight over time (two axes), and failed requests per
    bucket stacked by error kind (a chart even without errors: it says there were none)."""
    flow = _spec(f"{section.anchor}-load", "throughput", "Throughput and requests in flight",
                 "time (s)", "completed requests/s")
    flow["y2"] = {"name": "in flight"}
    errors = _spec(f"{section.anchor}-errors", "errors", "Errors over time", "request start (s)",
                   "failed requests")
    total = 0
    for run in section.runs:
        if run.rows is None or not len(run.rows):
            continue
        buckets = time_buckets(run.rows)
        name = "" if len(section.runs) == 1 else f" · {run.label}"
        mids = buckets.mids
        flow["series"].append({"name": "throughput" + name, "type": "line",
                               "data": _pairs(mids, buckets.throughput, 4, 3)})
        flow["series"].append({"name": "in flight" + name, "type": "line", "y2": True,
                               "dashed": True, "data": _pairs(mids, buckets.in_flight, 4, 3)})
        for kind, counts in buckets.errors.items():
            total += int(counts.sum())
            errors["series"].append({"name": kind + name, "type": "bar", "stack": run.label,
                                     "data": _pairs(mids, counts, 4, 0)})
    if not flow["series"]:
        return None
    if total == 0:
        errors["note"] = "no failed requests"
        errors["title"] = "Errors over time: none"
    return flow, errors


def ladder_chart(function: str, points: Sequence[LadderPoint], number: int) -> dict[str, Any]:
    """The latency-throughput curve of a parametrized test: a point per case."""
    spec = _spec(f"ladder-{number}", "ladder", f"{function.split('::')[-1]}: latency vs "
                 "throughput", "request throughput (req/s)", "request latency (ms)")
    sources = list(dict.fromkeys(p.source for p in points))
    for source in sources:
        name = "" if len(sources) == 1 else f" · {source}"
        for stat in ("p50", "p99"):
            data = [[round(p.throughput, 3), round(getattr(p, stat), 3), p.case]
                    for p in points if p.source == source and getattr(p, stat) is not None]
            if data:
                spec["series"].append({"name": f"latency {stat}{name}", "type": "line",
                                       "data": data})
    return spec


def server_charts(section: Section) -> list[dict[str, Any]]:
    """The server's metrics over time, when a run's directory has them."""
    charts = []
    for run in section.runs:
        path = server_metrics_path(run)
        if path is None:
            continue
        origin = run.rows.wall_origin_ns if run.rows is not None else None
        axis = "time since the first " + ("request (s)" if origin is not None else "scrape (s)")
        try:
            metrics = server_series(path, origin)
        except ReportError as exc:
            run.notes.append(f"server metrics not drawn: {exc}")
            continue
        for metric in metrics:
            spec = _spec(f"{section.anchor}-server-{len(charts)}", "server",
                         f"server: {metric['name']}"
                         + ("" if len(section.runs) == 1 else f" · {run.label}"),
                         axis, metric["unit"] or "value")
            spec["series"] = [{"name": text, "type": "line", "data": points}
                              for text, points in metric["series"]]
            charts.append(spec)
    return charts


def capacity_chart(data: CapacityData, chart_id: str, name: str = "") -> dict[str, Any] | None:
    """The latency-load curve of a capacity search: TTFT p50 / p99 and request latency
    p99 (the first run at each point) against the probed point; each probe marked by its
    status (a series per status, ``"verdict"`` colours it) on the line its first latency
    objective reads (else TTFT p99); each latency objective's threshold a horizontal line;
    ``max_passing`` and ``min_failing`` vertical lines. A point is ``[x, ms, text]``, the
    text what hovering it shows. None when no probe measured a latency."""
    title = f"Capacity: latency vs {data.over.replace('_', ' ')}" + (f" · {name}" if name else "")
    spec = _spec(chart_id, "capacity", title, data.axis, "ms")
    curve = data.curve()
    for key, label in CAPACITY_CURVE:
        points = [[p.point, round(p.metrics[key], 3), _probe_text(p, data.over)]
                  for p in curve if key in p.metrics]
        if points:
            spec["series"].append({"name": label, "type": "line", "data": points})
    objectives = data.latency_objectives()
    # A latency objective on a statistic the curve has no line for (a p90, a steady-state
    # window): its measured values, the numbers its threshold was compared with.
    measured: dict[str, dict[float, float]] = {}
    for key, _, _ in objectives:
        if key in dict(CAPACITY_CURVE):
            continue
        values = {p.point: value for p in curve for v in p.objectives
                  if v.get("objective") == key and (value := _finite(v.get("measured")))
                  is not None}
        if values:
            measured[key] = values
            spec["series"].append({"name": f"{_short(key)} (measured)", "type": "line", "data": [
                [p.point, round(values[p.point], 3), _probe_text(p, data.over)]
                for p in curve if p.point in values]})
    if not spec["series"]:
        return None
    drawn = [key for key, _ in CAPACITY_CURVE if any(key in p.metrics for p in curve)]
    read = next((key for key, _, _ in objectives if key in drawn or key in measured),
                "time_to_first_token.p99" if "time_to_first_token.p99" in drawn
                else (drawn or list(measured))[0])
    by_status: dict[str, list[list[Any]]] = {}
    for probe in curve:
        value = measured[read].get(probe.point) if read in measured \
            else probe.metrics.get(read)
        if value is not None:
            by_status.setdefault(probe.status, []).append(
                [probe.point, round(value, 3), _probe_text(probe, data.over)])
    for status, points in by_status.items():
        spec["series"].append({"name": f"{status} probes", "type": "scatter",
                               "verdict": status, "data": points})
    for key, text, value in objectives:
        spec["hlines"].append({"y": value, "label": f"{key} {text}", "threshold": True})
    if data.max_passing is not None:
        spec["vlines"].append({"x": data.max_passing, "verdict": "PASS",
                               "label": f"max passing {data.max_passing:g}"})
    if data.min_failing is not None:
        spec["vlines"].append({"x": data.min_failing, "verdict": "FAIL",
                               "label": f"min failing {data.min_failing:g}"})
    return spec


def goodput_chart(data: CapacityData, chart_id: str, name: str = "") -> dict[str, Any] | None:
    """Throughput and goodput (left axis) and SLO attainment in % (right axis) against the
    probed point: the search read both ways."""
    title = f"Capacity: goodput vs {data.over.replace('_', ' ')}" + (f" · {name}" if name else "")
    spec = _spec(chart_id, "capacity", title, data.axis, "requests/s")
    spec["y2"] = {"name": "SLO attainment (%)"}
    curve = data.curve()
    throughput = [[p.point, round(p.metrics["request_throughput"], 3), _probe_text(p, data.over)]
                  for p in curve if "request_throughput" in p.metrics]
    goodput = [[p.point, round(p.goodput, 3), _probe_text(p, data.over)]
               for p in curve if p.goodput is not None]
    attained = [[p.point, round(p.attainment * 100, 2), _probe_text(p, data.over)]
                for p in curve if p.attainment is not None]
    for label, points, extra in (("request throughput", throughput, {}),
                                 ("goodput", goodput, {}),
                                 ("SLO attainment", attained, {"y2": True, "dashed": True})):
        if points:
            spec["series"].append({"name": label, "type": "line", "data": points, **extra})
    return spec if spec["series"] else None


def _short(key: str) -> str:
    """``time_to_first_token.p90`` -> ``TTFT p90``: a legend entry that fits."""
    name, _, rest = key.partition(".")
    return f"{_TITLES.get(name.removeprefix('adj_'), name)} {rest}".strip()


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _probe_text(probe: Any, over: str) -> str:
    unit = "concurrent" if over == "concurrency" else "req/s"
    parts = [f"at {probe.point:g} {unit}: {probe.status}"]
    if "request_throughput" in probe.metrics:
        parts.append(f"achieved {probe.metrics['request_throughput']:.4g} req/s")
    if probe.goodput is not None:
        parts.append(f"goodput {probe.goodput:.4g} req/s")
    if probe.requests is not None:
        parts.append(f"{probe.requests} requests")
    parts.append(probe.summary())
    return "; ".join(parts)


def capacity_charts(section: Section) -> list[dict[str, Any]]:
    """Each search of the section's runs: its latency-load and goodput charts."""
    charts: list[dict[str, Any]] = []
    searches = [run for run in section.runs if run.capacity is not None]
    for number, run in enumerate(searches):
        assert run.capacity is not None
        name = "" if len(searches) == 1 else run.label
        for make, what in ((capacity_chart, "latency"), (goodput_chart, "goodput")):
            spec = make(run.capacity, f"{section.anchor}-capacity-{what}-{number}", name)
            if spec is not None:
                charts.append(spec)
    return charts


def section_charts(section: Section) -> list[dict[str, Any]]:
    """Every chart of one test's section, in reading order."""
    charts: list[dict[str, Any]] = capacity_charts(section)
    for metric in CDF_METRICS:
        spec = cdf_chart(section, metric)
        if spec is not None:
            charts.append(spec)
    first = section.runs[0]
    for metric in CDF_METRICS:
        values, name = baseline_values(first, metric)
        if values is None or not len(first.values(metric)):
            continue
        spec = cdf_chart(Section(section.key, section.title, [first], section.anchor), metric,
                         values, name)
        if spec is not None:
            spec["id"] = f"{section.anchor}-before-after-{metric}"
            spec["kind"] = "baseline"
            spec["title"] = f"{_TITLES[metric]}: before / after"
            charts.append(spec)
    timeline = latency_timeline(section)
    if timeline is not None:
        charts.append(timeline)
    flows = load_timeline(section)
    if flows is not None:
        charts.extend(flows)
    charts.extend(server_charts(section))
    return charts
