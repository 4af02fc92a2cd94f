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
_SKETCH_SAMPLES = 1000  # quantiles standing in for the values of a sketch-mode metric


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
    total = int(counts.sum())
    if not total:
        return None
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    p50, p99 = (float(x) for x in np.percentile(data, [50, 99]))
    unit = f" {unit}" if unit else ""
    return (f"{name}  {number(low)}{unit} {blocks(counts)} {number(high)}{unit}  "
            f"(n={total}, p50 {number(p50)}, p99 {number(p99)})")


def _values(metric: Any) -> Sequence[float] | np.ndarray:
    """The metric's values; for a sketch-mode metric, evenly spaced quantiles of its sketch
    (they fall into the buckets as the values would, within the sketch's accuracy)."""
    if len(metric.values):
        return metric.values
    sketch = getattr(metric, "sketch", None)
    if sketch is None or not getattr(sketch, "count", 0):
        return ()
    step = 100.0 / _SKETCH_SAMPLES
    return [sketch.quantile(step * (i + 0.5)) for i in range(_SKETCH_SAMPLES)]


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
        line = histogram_line(metric.header, _values(metric), metric.unit)
        if line is None:
            continue
        summary = verdict_summary(record)
        return f"{line}  verdicts: {summary}" if summary else line
    return None
