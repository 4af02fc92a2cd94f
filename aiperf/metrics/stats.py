"""Statistics of one metric: population std (ddof=0), linear percentiles; error-adjusted
variants add +inf per failed request and use ``method="nearest"``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aiperf.metrics.definitions import PERCENTILES


def summarize(values: np.ndarray, unit: str) -> dict[str, Any]:
    if values.size == 0:
        return {"unit": unit, "count": 0}
    pcts = np.percentile(values, PERCENTILES)
    out: dict[str, Any] = {
        "unit": unit,
        "avg": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "std": float(values.std()),
    }
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, pcts, strict=True)})
    out["count"] = int(values.size)
    out["sum"] = float(values.sum())
    return out


def summarize_adjusted(values: np.ndarray, failures: int, unit: str) -> dict[str, Any]:
    """Percentiles with every failed request counted as infinitely slow."""
    combined = np.concatenate([values, np.full(failures, np.inf)])
    if combined.size == 0:
        return {"unit": unit, "count": 0}
    pcts = np.percentile(combined, PERCENTILES, method="nearest")
    out: dict[str, Any] = {"unit": unit}
    out.update({f"p{p}": _finite_or_none(v) for p, v in zip(PERCENTILES, pcts, strict=True)})
    out["count"] = int(combined.size)
    return out


def percentile(values: np.ndarray, q: float, method: str = "linear") -> float:
    return float(np.percentile(values, q, method=method))  # type: ignore[call-overload]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# A metric of more values than this (ICL at a few hundred thousand streamed requests) gets
# its statistics from its integer array in chunks (``summarize_scaled``): a float64 copy of
# it, and numpy's partition copy and std temporary on top, would each cost 8 bytes a value
# at the end of the run, when the records manager's memory peaks.
LEAN_VALUES = 1 << 21
_CHUNK = 1 << 18
_DIGIT = 16  # bits resolved per counting pass of ``order_statistics``


def _parts(data: np.ndarray) -> Any:
    for first in range(0, data.size, _CHUNK):
        yield data[first:first + _CHUNK]


def order_statistics(data: np.ndarray, ranks: Any) -> dict[int, int]:
    """The values at sorted positions ``ranks`` (0-based) of an integer array, exact, by
    radix selection: each pass counts the next 16 bits of every value whose higher bits
    match a rank's prefix, a chunk at a time, so memory stays a few chunks whatever the
    array's size (``np.partition`` would sort a copy)."""
    wanted = sorted({int(r) for r in ranks})
    if not wanted:
        return {}
    if wanted[0] < 0 or wanted[-1] >= data.size:
        raise IndexError(f"rank out of range 0..{data.size - 1}: {wanted}")
    low, high = int(data.min()), int(data.max())
    bits = (high - low).bit_length()
    if bits > 62:
        raise ValueError("order_statistics: the values span more than 62 bits")
    # Per rank: the top bits of its value (over ``low``) found so far, and its rank among
    # the values that share them.
    state = {r: (0, r) for r in wanted}
    done = 0
    while done < bits:
        width = min(_DIGIT, bits - done)
        shift = bits - done - width
        prefixes = np.array(sorted({p for p, _ in state.values()}), dtype=np.int64)
        counts = np.zeros(prefixes.size << width, dtype=np.int64)
        for part in _parts(data):
            keys = part.astype(np.int64) - low
            top = keys >> (shift + width)
            if prefixes.size == 1:
                keep = top == prefixes[0] if done else slice(None)
                slot = np.zeros(1, dtype=np.int64)
            else:
                keep = np.isin(top, prefixes)
                slot = np.searchsorted(prefixes, top[keep]) << width
            digits = (keys[keep] >> shift) & ((1 << width) - 1)
            counts += np.bincount(slot + digits, minlength=counts.size)
        for r, (prefix, within) in state.items():
            i = int(np.searchsorted(prefixes, prefix))
            cumulative = np.cumsum(counts[i << width:(i + 1) << width])
            digit = int(np.searchsorted(cumulative, within, side="right"))
            before = int(cumulative[digit - 1]) if digit else 0
            state[r] = ((prefix << width) | digit, within - before)
        done += width
    return {r: low + prefix for r, (prefix, _) in state.items()}


def _as_float(ints: np.ndarray, scale: float | None) -> np.ndarray:
    """The float64 values that integers stand for: divided by ``scale`` (ns to ms) the
    same way a float64 copy of the whole array would be, so each value is identical."""
    floats = ints.astype(np.float64)
    if scale is not None:
        floats /= scale
    return floats


def summarize_scaled(data: np.ndarray, scale: float | None, unit: str) -> dict[str, Any]:
    """``summarize(data / scale)`` for a large integer array, without a float64 copy of
    it: min, max and every percentile identical (exact order statistics, interpolated
    with numpy's own formula for its default linear method), mean, std and sum taken a
    chunk at a time (equal to the whole-array figures to floating-point rounding)."""
    n = int(data.size)
    if n == 0:
        return {"unit": unit, "count": 0}
    # numpy's linear method (np.percentile: q / 100, virtual index (n - 1) q, the
    # neighbouring order statistics and its _lerp), step for step.
    quantiles = np.true_divide(np.asarray(PERCENTILES), 100)
    virtual = (n - 1) * quantiles
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = following[above] = -1
    below = virtual < 0
    previous[below] = following[below] = 0
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    gamma = np.asanyarray(virtual - previous, dtype=virtual.dtype)
    at_prev, at_next = np.where(previous < 0, n - 1, previous), np.where(
        following < 0, n - 1, following)
    found = order_statistics(data, [*at_prev.tolist(), *at_next.tolist()])
    a = _as_float(np.array([found[int(i)] for i in at_prev], dtype=np.int64), scale)
    b = _as_float(np.array([found[int(i)] for i in at_next], dtype=np.int64), scale)
    diff = b - a
    pcts = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=pcts, where=gamma >= 0.5)
    total = 0.0
    for part in _parts(data):
        total += float(_as_float(part, scale).sum())
    mean = total / n
    squares = 0.0
    for part in _parts(data):
        deviations = _as_float(part, scale) - mean
        squares += float(np.dot(deviations, deviations))
    ends = _as_float(np.array([data.min(), data.max()], dtype=np.int64), scale)
    out: dict[str, Any] = {"unit": unit, "avg": mean, "min": float(ends[0]),
                           "max": float(ends[1]), "std": math.sqrt(squares / n)}
    out.update({f"p{p}": float(v) for p, v in zip(PERCENTILES, pcts, strict=True)})
    out["count"] = n
    out["sum"] = total
    return out


def summarize_adjusted_scaled(data: np.ndarray, scale: float | None, failures: int,
                              unit: str) -> dict[str, Any]:
    """``summarize_adjusted(data / scale, failures)`` for a large integer array, without
    copying it: numpy's nearest-rank positions over the values and the failures' +inf,
    read as exact order statistics. Identical to the whole-array figures."""
    n = int(data.size) + failures
    if n == 0:
        return {"unit": unit, "count": 0}
    positions = np.around((n - 1) * np.true_divide(np.asarray(PERCENTILES), 100)
                          ).astype(np.intp).tolist()
    found = order_statistics(data, [i for i in positions if i < data.size])
    out: dict[str, Any] = {"unit": unit}
    for p, i in zip(PERCENTILES, positions, strict=True):
        out[f"p{p}"] = (float(_as_float(np.array([found[i]], dtype=np.int64), scale)[0])
                        if i < data.size else None)
    out["count"] = n
    return out
