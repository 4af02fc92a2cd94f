"""A load test's latency distribution on one terminal line, in block characters.

``-v`` prints it under the test's outcome, and each run's report section carries it next to
the objective table: min, the buckets, max, then n, p50 and p99, then the verdicts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from pytest_aiperf.session import LoadTestRecord

BLOCKS = "▁▂▃▄▅▆▇█"
BINS = 24
# Which metric a line shows: the first of these that an objective judges, else the first
# the run has values of.
LATENCY_METRICS = ("request_latency", "time_to_first_token", "inter_token_latency",
                   "time_to_second_token", "time_to_first_output_token")


def buckets(values: Sequence[float] | np.ndarray,
            bins: int = BINS) -> tuple[np.ndarray, float, float]:
    """Counts of the finite values in ``bins`` equal buckets from their min to their max
    (both included), with that min and max; one value, or all equal, fill the first
    bucket. No finite value: all counts 0, and NaN bounds."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if not data.size:
        return np.zeros(bins, dtype=np.int64), math.nan, math.nan
    low, high = float(data.min()), float(data.max())
    if high == low:
        counts = np.zeros(bins, dtype=np.int64)
        counts[0] = data.size
        return counts, low, high
    # Halves first: high - low overflows for values near the float limits (numpy's own
    # histogram refuses such a range, and one of a few subnormal values wide).
    span = high / 2 - low / 2
    with np.errstate(over="ignore", invalid="ignore"):
        position = (data / 2 - low / 2) / span
    index = np.clip(np.floor(np.nan_to_num(position) * bins), 0, bins - 1).astype(np.int64)
    return np.bincount(index, minlength=bins).astype(np.int64), low, high


def blocks(counts: Sequence[int] | np.ndarray) -> str:
    """One character a bucket, its height proportional to its count (the fullest is █);
    an empty bucket is a space, and any non-empty one at least ▁, so a lone outlier shows."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.int64)
    top = int(counts.max()) if counts.size else 0
    if top <= 0:
        return " " * counts.size
    levels = np.ceil(counts * len(BLOCKS) / top).astype(np.int64)
    return "".join(BLOCKS[level - 1] if level else " " for level in levels)


def number(value: float) -> str:
    """About three significant digits, without an exponent for everyday latencies."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def histogram_line(name: str, values: Sequence[float] | np.ndarray, unit: str,
                   bins: int = BINS) -> str | None:
    """``name  min unit ▁▃█▅▂ max unit  (n=…, p50 …, p99 …)``; None without a finite value."""
    import numpy as np

    counts, low, high = buckets(values, bins)
    if not int(counts.sum()):
        return None
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    p50, p99 = (float(x) for x in np.percentile(data, [50, 99]))
    return _line(name, counts, low, high, p50, p99, unit)


def sketch_buckets(sketch: Any, bins: int = BINS) -> tuple[np.ndarray, float, float]:
    """``buckets`` of a sketch-mode metric (``aiperf.statistics.sketch.MetricSketch``): its
    exact min and max, and per bucket how many of its values the sketch puts there (each
    value within the sketch's relative accuracy of its true one), so the counts add up to
    the real number of values."""
    import numpy as np

    n = int(sketch.count)
    if not n:
        return np.zeros(bins, dtype=np.int64), math.nan, math.nan
    low, high = float(sketch.min), float(sketch.max)
    counts = np.zeros(bins, dtype=np.int64)
    if high == low:
        counts[0] = n
        return counts, low, high
    # As ``buckets`` cuts them: a value on an inner edge belongs to the bucket above it.
    edges = [low + (high - low) * i / bins for i in range(1, bins)]
    below = [round(sketch.fraction_below(edge) * n) for edge in edges]
    return np.diff(np.array([0, *below, n], dtype=np.int64)), low, high


def sketch_line(name: str, sketch: Any, unit: str, bins: int = BINS) -> str | None:
    """``histogram_line`` of a sketch-mode metric: n is its real count, the buckets and
    percentiles the sketch's."""
    counts, low, high = sketch_buckets(sketch, bins)
    if not int(counts.sum()):
        return None
    return _line(name, counts, low, high, sketch.quantile(50), sketch.quantile(99), unit)


def _line(name: str, counts: np.ndarray, low: float, high: float, p50: float, p99: float,
          unit: str) -> str:
    unit = f" {unit}" if unit else ""
    return (f"{name}  {number(low)}{unit} {blocks(counts)} {number(high)}{unit}  "
            f"(n={int(counts.sum())}, p50 {number(p50)}, p99 {number(p99)})")


def _metric_line(metric: Any) -> str | None:
    """A metric's line: from its values, else (sketch mode) from its sketch."""
    if len(metric.values):
        return histogram_line(metric.header, metric.values, metric.unit)
    sketch = getattr(metric, "sketch", None)
    if sketch is None:
        return None
    return sketch_line(metric.header, sketch, metric.unit)


def _metric_order(record: LoadTestRecord) -> list[str]:
    judged = [v.objective.key.split(".", 1)[0].removeprefix("adj_") for v in record.verdicts]
    return ([m for m in dict.fromkeys(judged) if m in LATENCY_METRICS]
            + [m for m in LATENCY_METRICS if m not in judged])


def verdict_summary(record: LoadTestRecord) -> str:
    """``2 PASS, 1 FAIL`` in the order the statuses first appear; empty without objectives."""
    counts: dict[str, int] = {}
    for verdict in record.verdicts:
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def record_line(record: LoadTestRecord) -> str | None:
    """The histogram line of one run, with its verdicts; None when the run has no latency
    values (it errored, or its result came from an xdist worker without them)."""
    result = record.result
    if result is None:
        return None
    for tag in _metric_order(record):
        metric = result.metrics.get(tag)
        if metric is None:
            continue
        line = _metric_line(metric)
        if line is None:
            continue
        summary = verdict_summary(record)
        return f"{line}  verdicts: {summary}" if summary else line
    return None
