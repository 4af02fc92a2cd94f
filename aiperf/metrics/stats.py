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
