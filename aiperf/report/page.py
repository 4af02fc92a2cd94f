"""The HTML: the session report (one self-contained file, ECharts and its data inlined)
and a test's fragment for pytest-html (static SVG, no script)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from aiperf.report.data import LadderPoint, RunData, Section, ladders, load_artifact_dir
from aiperf.report.figures import ladder_chart, section_charts

ASSETS = "aiperf.report.assets"
LIBRARY = "echarts.common.min.js"
VERDICT_CLASSES = ("PASS", "FAIL", "ERROR", "INCONCLUSIVE", "INVALID", "XFAIL", "XPASS",
                   "SKIP")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1400px;
padding:0 16px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 6px;padding-top:8px;
border-top:1px solid #ddd}.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.v-PASS{color:#2e7d32;font-weight:bold}.v-FAIL,.v-ERROR,.v-INVALID,.v-XPASS{color:#c62828;
font-weight:bold}.v-INCONCLUSIVE,.v-XFAIL{color:#ef6c00;font-weight:bold}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:10px}
.chart{height:340px;border:1px solid #eee}.note{color:#555;font-size:13px;margin:2px 0}
#report-errors{background:#fdecea;color:#c62828;padding:8px;white-space:pre-wrap}
.objs{font-size:12px;text-align:left}[hidden]{display:none!important}
a.top{font-size:14px;text-decoration:none;color:#888}
"""


@cache
def _asset(name: str) -> str:
    return resources.files(ASSETS).joinpath(name).read_text(encoding="utf-8")


def _v(status: str | None) -> str:
    status = status or "-"
    css = f' class="v-{status}"' if status in VERDICT_CLASSES else ""
    return f"<span{css}>{escape(status)}</span>"


def _num(value: Any, digits: str = ",.4g") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, digits)
    if value in ("inf", "-inf"):
        return "∞" if value == "inf" else "-∞"
    return "-"


def _interval(verdict: dict[str, Any]) -> str:
    interval = verdict.get("interval")
    if not isinstance(interval, list) or len(interval) != 2:
        return "no interval"
    return f"[{_num(interval[0])}, {_num(interval[1])}]"


def verdict_table(runs: Sequence[RunData]) -> str:
    """Every objective of the runs: measured, interval, threshold, verdict, window."""
    several = len(runs) > 1
    head = (["Run"] if several else []) + ["Objective", "Measured", "Interval", "Confidence",
                                           "Threshold", "Verdict", "n", "Method", "Window"]
    rows = []
    for run in runs:
        for v in run.verdicts:
            unit = v.get("unit") or ""
            cells = ([f'<td class="l">{escape(run.label)}</td>'] if several else []) + [
                f'<td class="l">{escape(str(v.get("objective")))}</td>',
                f"<td>{_num(v.get('measured'))} {escape(unit)}</td>",
                f"<td>{escape(_interval(v))}</td>",
                f"<td>{_num(v.get('confidence'))}</td>",
                f'<td class="l">{escape(str(v.get("threshold")))}</td>',
                f'<td class="l verdict" data-verdict="{escape(str(v.get("verdict")))}">'
                f'{_v(v.get("verdict"))}</td>',
                f"<td>{_num(v.get('n'), 'd') if isinstance(v.get('n'), int) else '-'}</td>",
                f'<td class="l">{escape(str(v.get("method") or ""))}</td>',
                f'<td class="l">{escape(str(v.get("window") or ""))}</td>']
            rows.append(f"<tr>{''.join(cells)}</tr>")
    if not rows:
        searches = all(r.capacity is not None for r in runs)  # their probes have them
        return "" if searches else '<p class="note">No objectives.</p>'
    header = "".join(f'<th class="l">{h}</th>' if h in ("Run", "Objective", "Threshold",
                                                           "Verdict", "Method", "Window")
                     else f"<th>{h}</th>" for h in head)
    return (f'<table class="verdicts"><thead><tr>{header}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table>')


def _claim(run: RunData) -> str:
    """A capacity claim's verdict line, its status coloured."""
    if run.claim is None:
        return ""
    status = run.claim.get("status") or ""
    return (f'<span class="capacity-claim" data-verdict="{escape(status)}">{_v(status)} '
            f'{escape(str(run.claim.get("line", "")))}</span>')


def capacity_block(runs: Sequence[RunData]) -> str:
    """Each capacity search of the runs: its answer, then a row per probe in the order
    run (point, status, requests, looks, goodput, SLO attainment, the curve's latencies,
    the objectives that did not pass)."""
    out = []
    several = len(runs) > 1
    for run in runs:
        data = run.capacity
        if data is None:
            continue
        head = ["Point", "Status", "Requests", "Looks", "Goodput (req/s)",
                "SLO attainment (%)", "req/s", "TTFT p50", "TTFT p99", "Lat p99",
                "Objectives"]
        rows = []
        for p in data.probes:
            lo, hi = p.attainment_interval or (None, None)
            attained = "-" if p.attainment is None else (
                _num(p.attainment * 100, ".1f") + ("" if lo is None or hi is None else
                                                   f" [{lo * 100:.1f}, {hi * 100:.1f}]"))
            cells = [f"<td>{p.point:g}</td>",
                     f'<td class="l verdict" data-verdict="{escape(p.status)}">'
                     f"{_v(p.status)}</td>",
                     f"<td>{'-' if p.requests is None else p.requests}</td>",
                     f"<td>{'-' if p.looks is None else p.looks}</td>",
                     f"<td>{_num(p.goodput)}</td>", f"<td>{attained}</td>",
                     *(f"<td>{_num(p.metrics.get(k), ',.1f')}</td>" for k in (
                         "request_throughput", "time_to_first_token.p50",
                         "time_to_first_token.p99", "request_latency.p99")),
                     f'<td class="l">{escape(p.summary())}</td>']
            rows.append(f'<tr data-point="{p.point:g}">{"".join(cells)}</tr>')
        header = "".join(f'<th class="l">{h}</th>' if h in ("Status", "Objectives")
                         else f"<th>{h}</th>" for h in head)
        who = f"{escape(run.label)}: " if several else ""
        limit = ("" if data.client_limit is None else
                 f'<p class="note">the client could not deliver {data.client_limit:g} '
                 "(a limit of the client, not of the server)</p>")
        out.append(f'<div class="capacity" data-over="{escape(data.over)}">'
                   f'<p class="capacity-headline"><b>{who}{escape(data.headline())}</b></p>'
                   f"{limit}"
                   f'<table class="capacity-probes"><thead><tr>{header}</tr></thead>'
                   f'<tbody>{"".join(rows)}</tbody></table></div>')
    return "".join(out)


def _objectives_cell(run: RunData) -> str:
    parts = [_claim(run)] if run.claim is not None else []
    if run.capacity is not None:
        parts.append(escape(run.capacity.headline()))
    for v in run.verdicts:
        unit = v.get("unit") or ""
        parts.append(f'{escape(str(v.get("objective")))} {_num(v.get("measured"))} '
                     f"{escape(unit)} {escape(_interval(v))} {escape(str(v.get('threshold')))} "
                     f"{_v(v.get('verdict'))}")
    return "<br>".join(parts) or "-"


def session_table(sections: Sequence[Section], several_sources: bool) -> str:
    head = ["Test"] + (["Source"] if several_sources else []) + [
        "Profile", "Sent", "req/s", "TTFT p99", "Lat p99", "Err %", "Verdict", "Objectives"]
    rows = []
    for section in sections:
        for run in section.runs:
            m = run.metrics
            sent = len(run.rows) if run.rows is not None else (
                run.capacity.requests if run.capacity is not None else None)
            status = run.outcome or "-"
            cells = [f'<td class="l"><a href="#{section.anchor}">{escape(section.title)}</a>'
                     f"</td>"]
            if several_sources:
                cells.append(f'<td class="l">{escape(run.label)}</td>')
            cells += [f'<td class="l">{escape(run.profile)}</td>',
                      f"<td>{sent if sent is not None else '-'}</td>",
                      f"<td>{_num(m.get('request_throughput'), ',.1f')}</td>",
                      f"<td>{_num(m.get('time_to_first_token.p99'), ',.1f')}</td>",
                      f"<td>{_num(m.get('request_latency.p99'), ',.1f')}</td>",
                      f"<td>{_num(m.get('request_error_rate'), '.1f')}</td>",
                      f'<td class="l verdict" data-verdict="{escape(status)}">{_v(status)}</td>',
                      f'<td class="objs">{_objectives_cell(run)}</td>']
            rows.append(f'<tr data-test="{escape(section.key)}">{"".join(cells)}</tr>')
    header = "".join(f"<th>{h}</th>" for h in head)
    return (f'<table id="session"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table>")


def _notes(section: Section) -> str:
    lines = []
    for run in section.runs:
        prefix = f"{run.label}: " if len(section.runs) > 1 else ""
        if run.profile:
            lines.append(f"{prefix}profile {run.profile}")
        if run.error:
            lines.append(f"{prefix}error: {run.error.splitlines()[0][:300]}")
        if run.baseline:
            status = run.baseline.get("status")
            source = run.baseline.get("source") or ""
            lines.append(f"{prefix}baseline: {status} {source}".rstrip())
        lines.extend(prefix + note for note in run.notes)
    return "".join(f'<p class="note">{escape(line)}</p>' for line in lines)


def _claims(section: Section) -> str:
    several = len(section.runs) > 1
    return "".join(f'<p class="note">{escape(r.label) + ": " if several else ""}{_claim(r)}</p>'
                   for r in section.runs if r.claim is not None)


def _chart_divs(specs: Sequence[dict[str, Any]]) -> str:
    return "".join(f'<div class="chart" id="{escape(s["id"])}" data-kind="{escape(s["kind"])}">'
                   f"</div>" for s in specs)


def render_page(sections: Sequence[Section], title: str, sources: Sequence[str]) -> str:
    """The whole report."""
    specs: list[dict[str, Any]] = []
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(sections)} test(s) from {escape(", ".join(sources))}; '
            f'written {time.strftime("%Y-%m-%d %H:%M:%S")}</p>',
            '<div id="report-errors" hidden></div>',
            session_table(sections, len({r.label for s in sections for r in s.runs}) > 1)]
    found: dict[str, list[LadderPoint]] = ladders(sections)
    if found:
        body.append('<h2 id="ladders">Latency vs throughput</h2><div class="charts">')
        ladder_specs = [ladder_chart(function, points, number)
                        for number, (function, points) in enumerate(found.items(), 1)]
        specs.extend(ladder_specs)
        body.append(_chart_divs(ladder_specs) + "</div>")
    for section in sections:
        charts = section_charts(section)
        specs.extend(charts)
        status = " ".join(sorted({r.outcome for r in section.runs if r.outcome}))
        body.append(f'<section class="test" id="{section.anchor}" '
                    f'data-test="{escape(section.key)}"><h2>{escape(section.title)} '
                    f"{_v(status) if status else ''} "
                    f'<a class="top" href="#session" title="back to the session table">'
                    f"&#8593;</a></h2>{_notes(section)}"
                    f"{_claims(section)}{capacity_block(section.runs)}"
                    f"{verdict_table(section.runs)}"
                    f'<div class="charts">{_chart_divs(charts)}</div></section>')
    # msgspec: 4x faster than json here; a non-finite number (none is expected) is null.
    # Every "<" escaped (JSON allows it in strings, the only place it can be), so no name
    # can close the script element or open a comment in it.
    data = msgspec.json.encode(specs).decode().replace("<", "\\u003c")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"{''.join(body)}"
            f'<script type="application/json" id="aiperf-charts">{data}</script>'
            f"<script>{_asset(LIBRARY)}</script><script>{_asset('report.js')}</script>"
            "</body></html>\n")


_FRAGMENT_STYLE = """
.aiperf-fragment table{border-collapse:collapse;font-size:12px;margin:6px 0}
.aiperf-fragment th,.aiperf-fragment td{border:1px solid #ddd;padding:2px 6px}
.aiperf-fragment .v-PASS{color:#2e7d32;font-weight:bold}
.aiperf-fragment .v-FAIL{color:#c62828;font-weight:bold}
.aiperf-fragment .v-INCONCLUSIVE{color:#ef6c00;font-weight:bold}
.aiperf-fragment svg{margin:4px;border:1px solid #eee;max-width:100%;height:auto}
"""


def render_fragment(test_dir: Path, verdicts: list[dict[str, Any]]) -> str:
    """One test's verdict table and plots as static SVG (pytest-html runs no script of an
    extra)."""
    from aiperf.baselines.sources import SourceError
    from aiperf.report.svg import render

    try:
        run = load_artifact_dir(test_dir)
    except SourceError as exc:
        # An extra must not break pytest-html's report: the verdicts, and why no plots.
        run = RunData(label=str(test_dir), test=test_dir.name, kind="pytest",
                      directory=None, verdicts=list(verdicts))
        return (f'<div class="aiperf-fragment"><style>{_FRAGMENT_STYLE}</style>'
                f"{verdict_table([run])}<p>No plots: {escape(str(exc))}</p></div>")
    run.kind, run.verdicts = "pytest", list(verdicts)
    section = Section(run.test, run.test, [run], anchor="aiperf-fragment")
    charts = section_charts(section)
    return (f'<div class="aiperf-fragment"><style>{_FRAGMENT_STYLE}</style>'
            f"{verdict_table([run])}{''.join(render(spec) for spec in charts)}</div>")
