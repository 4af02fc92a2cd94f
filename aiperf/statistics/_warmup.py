"""MSER-5: where a warm-up transient ends in a series of observations (White, 1997).

The series is cut into batches of 5 and averaged. For each candidate cut d (in batches), MSER is
the variance of the mean of what remains, sum((Z_i - mean)^2) / (m - d)^2: dropping a biased
start lowers it, dropping good data raises it through the shrinking denominator. The cut is the
d that minimises it, searched over the first half only, as a minimum in the second half means
the run is too short to tell.
"""

from __future__ import annotations

import numpy as np

BATCH = 5


def mser5(series: np.ndarray) -> int:
    """Number of leading observations to drop (a multiple of 5; 0 for fewer than 10)."""
    values = np.asarray(series, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"series must be one-dimensional, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("series must be finite")
    m = values.size // BATCH
    if m < 2:
        return 0
    # Trailing observations that do not fill a batch are left out, as MSER-5 prescribes.
    batches = values[: m * BATCH].reshape(m, BATCH).mean(axis=1)
    batches -= batches.mean()  # centred, so the sums below do not cancel catastrophically
    suffix_sum = np.cumsum(batches[::-1])[::-1]
    suffix_squares = np.cumsum((batches * batches)[::-1])[::-1]
    remaining = np.arange(m, 0, -1, dtype=np.float64)  # m - d for d = 0..m-1
    sse = np.maximum(suffix_squares - suffix_sum * suffix_sum / remaining, 0.0)
    candidates = m // 2 + 1  # d = 0..m//2
    mser = sse[:candidates] / remaining[:candidates] ** 2
    return int(np.argmin(mser)) * BATCH
