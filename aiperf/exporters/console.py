"""The metrics table: Metric | avg | min | max | p99 | p90 | p50 | std, then the run's
counts, and (unlike AIPerf) how many requests failed and why."""

from __future__ import annotations

from pathlib import Path

from aiperf.exporters.base import Exporter
from aiperf.metrics.definitions import SPECS
from aiperf.results import MetricResult, ProfileResult

COLUMNS = ("avg", "min", "max", "p99", "p90", "p50", "std")


def _fmt(value: float | None) -> str:
    if value is None:
        return "inf"
    if abs(value) >= 1e5:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def render_table(result: ProfileResult, title: str = "LLM Metrics") -> str:
    rows: list[tuple[str, ...]] = []
    for spec in SPECS:
        if not spec.console:
            continue
        metric: MetricResult | None = result.metrics.get(spec.tag)
        if metric is None:
            continue
        name = f"{metric.header} ({metric.unit})"
        if metric.is_scalar:
            rows.append((name, _fmt(metric.stats.get("avg")), *[""] * (len(COLUMNS) - 1)))
        else:
            rows.append((name, *(_fmt(metric.stats.get(c)) for c in COLUMNS)))
    header = ("Metric", *COLUMNS)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(
        h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header)
    )
    out = [f"{title}", line, "-" * len(line)]
    for row in rows:
        out.append("  ".join(
            c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
        ))
    out.extend(summary_lines(result))
    return "\n".join(out)


def summary_lines(result: ProfileResult) -> list[str]:
    total = result.request_count + result.error_count
    lines = [f"\n{result.request_count} of {total} requests succeeded, "
             f"{result.error_count} failed."]
    lines.extend(result.error_lines())
    config = result.config
    if config is not None and config.request_rate and "request_throughput" in result:
        lag = result.metrics.get("credit_to_start_latency")
        lag_text = (f"; schedule lag (credit to start) p50 {lag.stat('p50'):.2f} ms, "
                    f"p99 {lag.stat('p99'):.2f} ms" if lag is not None else "")
        lines.append(f"Achieved {result.metric('request_throughput'):.2f} requests/s of "
                     f"{config.request_rate:g} scheduled{lag_text}.")
    lines.extend(f"warning: {w}" for w in result.warnings)
    return lines


class ConsoleExporter(Exporter):
    def export(self) -> Path | None:
        title = "LLM Metrics"
        if self.result.config is not None:
            from aiperf.plugin import PluginType, plugins

            meta = plugins.get_metadata(PluginType.ENDPOINT, self.result.config.endpoint_type)
            title = getattr(meta, "metrics_title", title)
        print(render_table(self.result, title), file=self.stream)
        return None
