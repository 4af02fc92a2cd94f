"""A chart spec (``aiperf.report.figures``) drawn as static SVG, with no script: for the
pytest-html extras, which insert HTML without running its scripts. A point's ``<title>``
is its hover text; scatter series are thinned to ``SCATTER_POINTS`` to keep a fragment
small."""

from __future__ import annotations

import math
from html import escape
from itertools import pairwise
from typing import Any

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
          "#bcbd22", "#7f7f7f", "#d62728")
VERDICT_COLORS = {"PASS": "#2e7d32", "FAIL": "#c62828", "INCONCLUSIVE": "#ef6c00"}
SCATTER_POINTS = 600
_W, _H = 640, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 58, 28, 56


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering
    ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 5, 10) if raw <= s * power)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class _Scale:
    def __init__(self, low: float, high: float, start: float, end: float) -> None:
        if not high > low:  # one value: a unit around it (relative, for a huge value)
            pad = max(abs(low) * 1e-3, 0.5)
            low, high = low - pad, high + pad
        self.low, self.high, self.start, self.end = low, high, start, end
        self.span = (high - low) or 1.0

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / self.span * (self.end - self.start)


def _extent(values: list[float], pad_zero: bool = False) -> tuple[float, float]:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if pad_zero:
        low = min(low, 0.0)
    return low, high


def render(spec: dict[str, Any], width: int = _W, height: int = _H) -> str:
    """``spec`` as one ``<svg>`` element."""
    series = spec["series"]
    left_series = [s for s in series if not s.get("y2")]
    right_series = [s for s in series if s.get("y2")]
    xs = [p[0] for s in series for p in s["data"]]
    xs += [v["x"] for v in spec["vlines"]] + [b[k] for b in spec["bands"] for k in ("x0", "x1")]
    x_low, x_high = _extent(xs)
    x_low, x_high = spec["x"].get("min", x_low), spec["x"].get("max", x_high)
    stacked = _stacks(left_series)
    y_values = [p[1] for s in left_series for p in s["data"]] + stacked
    kind = spec["kind"]
    if kind in ("cdf", "baseline"):
        y_low, y_high = 0.0, 1.0
    else:
        y_low, y_high = _extent(y_values, pad_zero=True)
    x_scale = _Scale(x_low, x_high, _LEFT, width - _RIGHT)
    y_scale = _Scale(y_low, y_high, height - _BOTTOM, _TOP)
    y2_scale = _Scale(*_extent([p[1] for s in right_series for p in s["data"]], True),
                      height - _BOTTOM, _TOP) if right_series else None
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="aiperf-chart" '
           f'data-kind="{escape(kind)}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" font-family="sans-serif" font-size="10">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="12" '
           f'font-weight="bold">{escape(spec["title"])}</text>']
    out.extend(_axes(spec, x_scale, y_scale, y2_scale, width, height))
    for band in spec["bands"]:
        x0, x1 = sorted((x_scale(band["x0"]), x_scale(band["x1"])))
        out.append(f'<rect x="{x0:.1f}" y="{_TOP}" width="{max(x1 - x0, 1):.1f}" '
                   f'height="{height - _TOP - _BOTTOM}" fill="#ffa000" fill-opacity="0.18">'
                   f'<title>{escape(band["label"])}</title></rect>')
    bottoms: dict[float, float] = {}
    for number, item in enumerate(series):
        color = COLORS[number % len(COLORS)]
        if item["name"].startswith("failed"):
            color = "#d62728"
        color = VERDICT_COLORS.get(item.get("verdict", ""), color)  # a capacity probe
        scale = y2_scale if item.get("y2") and y2_scale else y_scale
        out.extend(_series(item, color, x_scale, scale, bottoms, spec.get("requests")))
    for line in spec["hlines"]:
        y = y_scale(line["y"])
        out.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#999" stroke-dasharray="2,3"/>')
    for number, line in enumerate(spec["vlines"]):
        x = x_scale(line["x"])
        color = VERDICT_COLORS.get(line.get("verdict", ""), "#555")
        out.append(f'<line class="threshold" data-value="{line["x"]}" x1="{x:.1f}" '
                   f'x2="{x:.1f}" y1="{_TOP}" y2="{height - _BOTTOM}" stroke="{color}" '
                   f'stroke-width="2"><title>{escape(line["label"])}</title></line>')
        out.append(f'<text x="{x + 3:.1f}" y="{_TOP + 10 + 11 * number}" fill="{color}">'
                   f'{escape(line["label"])}</text>')
    for number, line in enumerate(spec.get("offscale", [])):
        out.append(f'<text x="{width - _RIGHT}" y="{_TOP + 10 + 11 * number}" '
                   f'text-anchor="end" fill="#c62828">{escape(line["label"])}</text>')
    if spec.get("note"):
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                   f'fill="#777">{escape(spec["note"])}</text>')
    out.extend(_legend(series, width, height))
    out.append("</svg>")
    return "".join(out)


def _stacks(series: list[dict[str, Any]]) -> list[float]:
    totals: dict[float, float] = {}
    for item in series:
        if item["type"] == "bar":
            for x, y, *_ in item["data"]:
                totals[x] = totals.get(x, 0.0) + y
    return list(totals.values())


def _axes(spec: dict[str, Any], x_scale: _Scale, y_scale: _Scale, y2_scale: _Scale | None,
          width: int, height: int) -> list[str]:
    bottom, right = height - _BOTTOM, width - _RIGHT
    out = [f'<line x1="{_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#333"/>',
           f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}" stroke="#333"/>']
    for tick in nice_ticks(x_scale.low, x_scale.high):
        if x_scale.low - 1e-12 <= tick <= x_scale.high + 1e-12:
            x = x_scale(tick)
            out.append(f'<text x="{x:.1f}" y="{bottom + 12}" text-anchor="middle">'
                       f'{_fmt(tick)}</text>')
    for tick in nice_ticks(y_scale.low, y_scale.high):
        if y_scale.low - 1e-12 <= tick <= y_scale.high + 1e-12:
            y = y_scale(tick)
            out.append(f'<line x1="{_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#eee"/><text x="{_LEFT - 4}" y="{y + 3:.1f}" '
                       f'text-anchor="end">{_fmt(tick)}</text>')
    if y2_scale is not None:
        for tick in nice_ticks(y2_scale.low, y2_scale.high):
            if y2_scale.low - 1e-12 <= tick <= y2_scale.high + 1e-12:
                out.append(f'<text x="{right + 4}" y="{y2_scale(tick) + 3:.1f}">'
                           f'{_fmt(tick)}</text>')
        out.append(f'<text x="{right + 4}" y="{_TOP - 6}">{escape(spec["y2"]["name"])}</text>')
    out.append(f'<text x="{(_LEFT + right) / 2}" y="{bottom + 26}" text-anchor="middle">'
               f'{escape(spec["x"]["name"])}</text>')
    out.append(f'<text x="{_LEFT - 4}" y="{_TOP - 6}" text-anchor="start">'
               f'{escape(spec["y"]["name"])}</text>')
    return out


def _series(item: dict[str, Any], color: str, x_scale: _Scale, y_scale: _Scale,
            bottoms: dict[float, float], requests: dict[str, list[str]] | None
            ) -> list[str]:
    data = item["data"]
    kind = item["type"]
    dash = (' stroke-dasharray="5,3"' if item.get("dashed") else
            ' stroke-dasharray="1,2"' if item.get("dotted") else "")
    if kind in ("line", "step"):
        points: list[str] = []
        previous_y: float | None = None
        for x, y, *_ in data:
            sx, sy = x_scale(x), y_scale(y)
            if kind == "step" and previous_y is not None:
                points.append(f"{sx:.1f},{previous_y:.1f}")
            points.append(f"{sx:.1f},{sy:.1f}")
            previous_y = sy
        return [f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} '
                f'points="{" ".join(points)}"><title>{escape(item["name"])}</title></polyline>']
    if kind == "scatter":
        step = max(1, math.ceil(len(data) / SCATTER_POINTS))
        out = []
        for point in data[::step]:
            x, y = point[0], point[1]
            tip = escape(_tip(item, point, requests))
            out.append(f'<circle cx="{x_scale(x):.1f}" cy="{y_scale(y):.1f}" r="2" '
                       f'fill="{color}" fill-opacity="0.7"><title>{tip}</title></circle>')
        return out
    out = []
    xs = sorted({p[0] for p in data})
    gap = min((b - a for a, b in pairwise(xs)), default=1.0)
    bar = max(1.0, abs(x_scale(xs[0] + gap) - x_scale(xs[0])) * 0.8) if xs else 1.0
    for x, y, *_ in data:
        if not y:
            continue
        base = bottoms.get(x, 0.0)
        top, low = y_scale(base + y), y_scale(base)
        bottoms[x] = base + y
        left = max(x_scale(x) - bar / 2, x_scale.start)
        right = min(x_scale(x) + bar / 2, x_scale.end)
        out.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{max(right - left, 0.5):.1f}" '
                   f'height="{max(low - top, 0.5):.1f}" fill="{color}"><title>'
                   f'{escape(item["name"])}: {_fmt(y)} at {_fmt(x)} s</title></rect>')
    return out


def _tip(item: dict[str, Any], point: list[Any], requests: dict[str, list[str]] | None
         ) -> str:
    start, value, end, key, error = (list(point) + [None] * 5)[:5]
    ident = requests["ids"][key] if requests and isinstance(key, int) else key
    error = requests["errors"][error] if requests and isinstance(error, int) \
        and error >= 0 else None
    text = f"{item['name']}: request {ident}, start {start} s"
    if end is not None:
        text += f", end {end} s"
    text += f", {value} ms"
    return text + (f", {error}" if error else "")


def _legend(series: list[dict[str, Any]], width: int, height: int) -> list[str]:
    out, x = [], _LEFT
    for number, item in enumerate(series[:8]):
        color = "#d62728" if item["name"].startswith("failed") else COLORS[number % len(COLORS)]
        name = item["name"][:40]
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 13}" y="{height - 5}">{escape(name)}</text>')
        x += 22 + 6 * len(name)
        if x > width - 60:
            break
    return out
