"""Sketch mode: a metric's distribution in a fixed few kilobytes, whatever the run's length.

``MetricSketch`` keeps a DDSketch (the ``ddsketch`` library's logarithmic key mapping and
dense stores) for quantiles, and the exact count, sum, min, max and the first three central
moments beside it. docs/statistics.md ("Sketch mode") says why DDSketch and what it costs.

The guarantee: every value lands in a bucket (gamma**(k-1), gamma**k] whose representative
is within ``relative_accuracy`` (alpha) of it, so the value the sketch gives for the r-th
order statistic is within alpha of the true r-th value (relative). ``quantile`` interpolates
linearly between two such values, as numpy's default percentile does between the true ones,
so it is within alpha of ``np.percentile(values, q)`` for data of one sign.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec
import numpy as np
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

from aiperf.metrics.definitions import PERCENTILES

FORMAT_VERSION = 1
#: A value whose base-gamma logarithm is this close to an integer sits on a bucket edge:
#: numpy's log and the library's may round it to different buckets, so the library decides.
EDGE = 1e-9
#: Below this many values a batch goes through the library one value at a time.
SMALL_BATCH = 32
NOT_FINITE = ("a sketch takes finite values only (failed requests are counted apart, as "
              "error-adjusted statistics do)")


class MetricSketch:
    """A mergeable relative-error quantile sketch of one metric, with exact moments."""

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy!r}")
        self.relative_accuracy = float(relative_accuracy)
        self._mapping = LogarithmicMapping(self.relative_accuracy)
        self._ln_gamma = math.log(self._mapping.gamma)
        self._positive = DenseStore()
        self._negative = DenseStore()  # keys of -value
        self._zeros = 0
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        # Central moments (mean, M2 = sum of squared deviations, M3 = of cubed ones), merged
        # batch by batch with Pebay's formulas: exact std and skewness without the values.
        self._mean = 0.0
        self._m2 = 0.0
        self._m3 = 0.0

    # -- adding ------------------------------------------------------------------------

    def add(self, values: np.ndarray | list[float] | float) -> None:
        """Add a batch of finite values. Buckets are found for the whole batch at once with
        numpy and each distinct bucket is added once with its count: the records manager
        feeds a batch of a metric at a time, and a Python call per value would cost ~0.5 us."""
        data = np.asarray(values, dtype=np.float64).ravel()
        if data.size == 0:
            return
        if data.size < SMALL_BATCH:
            self._add_small(data.tolist())
            return
        if not np.isfinite(data).all():
            raise ValueError(NOT_FINITE)
        self._add_moments(data)
        tiny = self._mapping.min_possible
        positive = data[data > tiny]
        negative = -data[data < -tiny]
        self._zeros += int(data.size - positive.size - negative.size)
        self._add_to_store(self._positive, positive)
        self._add_to_store(self._negative, negative)

    def _add_small(self, values: list[float]) -> None:
        """A few values (a quiet run's batches), one at a time in Python: numpy's overhead
        per call would cost more than the values (15 us for a batch of one)."""
        if not all(math.isfinite(x) for x in values):
            raise ValueError(NOT_FINITE)
        tiny, key = self._mapping.min_possible, self._mapping.key
        for x in values:
            if x > tiny:
                self._positive.add(key(x), 1.0)
            elif x < -tiny:
                self._negative.add(key(-x), 1.0)
            else:
                self._zeros += 1
            # Welford's update, with Terriberry's third moment.
            before = self._count
            self._count = n = before + 1
            delta = x - self._mean
            delta_n = delta / n
            term = delta * delta_n * before
            self._mean += delta_n
            self._m3 += term * delta_n * (n - 2) - 3.0 * delta_n * self._m2
            self._m2 += term
            self._sum += x
            if x < self._min:
                self._min = x
            if x > self._max:
                self._max = x

    def _add_to_store(self, store: DenseStore, magnitudes: np.ndarray) -> None:
        if magnitudes.size == 0:
            return
        exponent = np.log(magnitudes) / self._ln_gamma
        edge = np.abs(exponent - np.rint(exponent)) < EDGE
        for value in magnitudes[edge].tolist():
            store.add(self._mapping.key(value), 1.0)
        inner = exponent[~edge]
        if inner.size:
            # The library's key is ceil(log_gamma(value)) (its offset is 0): off the edges,
            # numpy's ceil of the same logarithm is the same integer.
            keys, counts = np.unique(np.ceil(inner).astype(np.int64), return_counts=True)
            for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
                store.add(key, float(count))

    def _add_moments(self, data: np.ndarray) -> None:
        n_b = int(data.size)
        mean_b = float(data.mean())
        centred = data - mean_b
        squares = centred * centred
        m2_b = float(squares.sum())
        m3_b = float(np.dot(squares, centred))
        self._merge_moments(n_b, mean_b, m2_b, m3_b)
        self._sum += float(data.sum())
        self._min = min(self._min, float(data.min()))
        self._max = max(self._max, float(data.max()))

    def _merge_moments(self, n_b: int, mean_b: float, m2_b: float, m3_b: float) -> None:
        n_a = self._count
        n = n_a + n_b
        if n_b == 0:
            return
        if n_a == 0:
            self._count, self._mean, self._m2, self._m3 = n_b, mean_b, m2_b, m3_b
            return
        delta = mean_b - self._mean
        self._m3 = (self._m3 + m3_b + delta**3 * n_a * n_b * (n_a - n_b) / (n * n)
                    + 3.0 * delta * (n_a * m2_b - n_b * self._m2) / n)
        self._m2 = self._m2 + m2_b + delta * delta * n_a * n_b / n
        self._mean = self._mean + delta * n_b / n
        self._count = n

    def merge(self, other: MetricSketch) -> None:
        """Add ``other``'s values (e.g. another record processor's or run's)."""
        if other._mapping.gamma != self._mapping.gamma:
            raise ValueError(f"cannot merge sketches of relative accuracy "
                             f"{self.relative_accuracy} and {other.relative_accuracy}")
        if other._count == 0:
            return
        self._merge_moments(other._count, other._mean, other._m2, other._m3)
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        self._zeros += other._zeros
        self._positive.merge(other._positive)
        self._negative.merge(other._negative)

    # -- reading -----------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    @property
    def min(self) -> float:
        return self._min if self._count else math.nan

    @property
    def max(self) -> float:
        return self._max if self._count else math.nan

    @property
    def mean(self) -> float:
        """Exact (up to floating-point rounding): kept from the values, not the buckets."""
        return self._mean if self._count else math.nan

    def std(self, ddof: int = 0) -> float:
        """Exact standard deviation (population by default, as ``summarize``)."""
        if self._count - ddof <= 0:
            return math.nan
        return math.sqrt(max(self._m2, 0.0) / (self._count - ddof))

    @property
    def skewness(self) -> float:
        """Sample skewness (m3 / m2**1.5), exact: the mean interval's Hall correction."""
        if self._count < 2 or self._m2 <= 0.0:
            return 0.0
        n = self._count
        return (self._m3 / n) / (self._m2 / n) ** 1.5

    @property
    def bins(self) -> int:
        """Buckets in use: the sketch's size is about 8 bytes each."""
        return len(self._positive.bins) + len(self._negative.bins)

    def value_at_rank(self, rank: int) -> float:
        """The sketch's value for the ``rank``-th smallest value (1-based): within the
        relative accuracy of the true order statistic; exact at rank 1 and n."""
        if not 1 <= rank <= self._count:
            raise ValueError(f"rank must be in 1..{self._count}, got {rank}")
        if rank == 1:
            return self._min
        if rank == self._count:
            return self._max
        r = rank - 1  # 0-based
        negatives = round(self._negative.count)
        if r < negatives:
            key = self._negative.key_at_rank(negatives - 1 - r)
            value = -self._mapping.value(key)
        elif r < negatives + self._zeros:
            value = 0.0
        else:
            key = self._positive.key_at_rank(r - negatives - self._zeros)
            value = self._mapping.value(key)
        # The true value lies in [min, max]: clamping only moves the estimate towards it.
        return min(max(value, self._min), self._max)

    def quantile(self, q: float) -> float:
        """The ``q``-th percentile (0..100), numpy's linear definition on sketched order
        statistics; NaN for an empty sketch."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q!r}")
        if self._count == 0:
            return math.nan
        position = (self._count - 1) * (q / 100.0)
        below = math.floor(position)
        low = self.value_at_rank(below + 1)
        if below + 1 >= self._count or position == below:
            return low
        high = self.value_at_rank(below + 2)
        return low + (high - low) * (position - below)

    def fraction_below(self, threshold: float, inclusive: bool = False) -> float:
        """About which share of the values is below (or at) ``threshold``, from the buckets:
        a hint for how many requests would decide an objective, not a bound."""
        if self._count == 0:
            return 0.0
        lo, hi = 1, self._count  # the least rank whose value is past the threshold
        if not self._past(self.value_at_rank(hi), threshold, inclusive):
            return 1.0
        while lo < hi:
            mid = (lo + hi) // 2
            if self._past(self.value_at_rank(mid), threshold, inclusive):
                hi = mid
            else:
                lo = mid + 1
        return (lo - 1) / self._count

    @staticmethod
    def _past(value: float, threshold: float, inclusive: bool) -> bool:
        return value > threshold if inclusive else value >= threshold

    # -- wire --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """msgpack: the accuracy, the exact moments, and each store as its first key and a
        float64 array of counts (a few kilobytes for latencies spanning 1 ms to 100 s)."""
        return msgspec.msgpack.encode({
            "v": FORMAT_VERSION,
            "alpha": self.relative_accuracy,
            "count": self._count, "sum": self._sum, "min": self._min, "max": self._max,
            "mean": self._mean, "m2": self._m2, "m3": self._m3, "zeros": self._zeros,
            "pos": _store_wire(self._positive), "neg": _store_wire(self._negative),
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> MetricSketch:
        data: dict[str, Any] = msgspec.msgpack.decode(raw)
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown sketch format {data.get('v')!r}")
        sketch = cls(float(data["alpha"]))
        sketch._count = int(data["count"])
        sketch._sum, sketch._min, sketch._max = (float(data[k]) for k in ("sum", "min", "max"))
        sketch._mean, sketch._m2, sketch._m3 = (float(data[k]) for k in ("mean", "m2", "m3"))
        sketch._zeros = int(data["zeros"])
        _store_load(sketch._positive, data["pos"])
        _store_load(sketch._negative, data["neg"])
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricSketch):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<MetricSketch n={self._count} relative_accuracy={self.relative_accuracy:g} "
                f"bins={self.bins}>")


def _store_wire(store: DenseStore) -> list[Any]:
    if store.count == 0:
        return [0, b""]
    first, last = store.min_key, store.max_key
    counts = np.asarray(store.bins[first - store.offset:last - store.offset + 1],
                        dtype=np.float64)
    return [int(first), counts.tobytes()]


def _store_load(store: DenseStore, wire: list[Any]) -> None:
    first, raw = int(wire[0]), wire[1]
    counts = np.frombuffer(raw, dtype=np.float64)
    for offset in np.flatnonzero(counts).tolist():
        store.add(first + offset, float(counts[offset]))


def sketch_summary(sketch: MetricSketch, unit: str) -> dict[str, Any]:
    """The keys of ``aiperf.metrics.stats.summarize`` from a sketch: avg, min, max, std and
    sum exact; the percentiles within the sketch's relative accuracy."""
    if sketch.count == 0:
        return {"unit": unit, "count": 0}
    out: dict[str, Any] = {
        "unit": unit,
        "avg": sketch.mean,
        "min": sketch.min,
        "max": sketch.max,
        "std": sketch.std(),
    }
    out.update({f"p{p}": sketch.quantile(p) for p in PERCENTILES})
    out["count"] = sketch.count
    out["sum"] = sketch.sum
    return out


def adjusted_quantile(sketch: MetricSketch, failures: int, q: float) -> float:
    """The q-th percentile with each failed request counted as infinitely slow (numpy's
    ``method="nearest"``, as ``summarize_adjusted``): +inf once the rank reaches a failure."""
    n = sketch.count + failures
    if n == 0:
        return math.nan
    rank = int(np.rint((n - 1) * (q / 100.0))) + 1  # numpy's "nearest" rounds half to even
    return math.inf if rank > sketch.count else sketch.value_at_rank(rank)


def sketch_summary_adjusted(sketch: MetricSketch, failures: int, unit: str) -> dict[str, Any]:
    """``summarize_adjusted``'s keys from a sketch (None for an infinite percentile)."""
    n = sketch.count + failures
    if n == 0:
        return {"unit": unit, "count": 0}
    out: dict[str, Any] = {"unit": unit}
    for p in PERCENTILES:
        value = adjusted_quantile(sketch, failures, p)
        out[f"p{p}"] = value if math.isfinite(value) else None
    out["count"] = n
    return out


def merged_window_sketches(windows: Iterable[dict[str, Any]]) -> dict[str, MetricSketch]:
    """Each metric's sketch over several of the records manager's time windows (each
    window's ``sketches``: tag -> serialised sketch), merged."""
    merged: dict[str, MetricSketch] = {}
    for window in windows:
        for tag, raw in window["sketches"].items():
            sketch = MetricSketch.from_bytes(raw)
            if tag in merged:
                merged[tag].merge(sketch)
            else:
                merged[tag] = sketch
    return merged
