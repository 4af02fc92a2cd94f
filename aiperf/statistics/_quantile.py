"""Distribution-free confidence bounds on a quantile from order statistics.

If X_(1) <= ... <= X_(n) are n independent draws and xi_p is the true p-quantile, the number of
draws below xi_p is Binomial(n, p) for a continuous distribution (stochastically smaller for a
discrete one), so P(X_(k) >= xi_p) = P(Binomial(n, p) <= k - 1). The upper bound is X_(k) with k
the least rank making that probability reach the confidence; the lower bound is the mirror image.
No assumption about the shape of the distribution is needed, only independence.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from aiperf.statistics._interval import Interval, check_confidence

QUANTILE_METHOD = "order statistics (binomial, distribution-free)"
#: A binomial probability this close below the confidence counts as reaching it, so exact ties
#: (0.5 by symmetry) do not flip on the last bit of a floating-point sum.
ROUNDING = 1e-12


def quantile_interval(values: np.ndarray, q: float, confidence: float = 0.95) -> Interval:
    """Bounds on the ``q``-th percentile (q in (0, 100), "p99" -> 99) of ``values``.

    ``values`` may hold +inf (error-adjusted: one per failed request); the estimate then uses
    numpy's ``method="nearest"`` as the error-adjusted statistics do, otherwise linear.
    """
    _fraction(q)  # refuses a percentile outside (0, 100) before any work
    confidence = check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {values.shape}")
    n = int(values.size)
    if n == 0:
        return Interval(None, None, None, confidence, QUANTILE_METHOD, 0, "no values")
    if np.isnan(values).any():
        raise ValueError("values contain NaN")
    lower_rank, upper_rank = order_statistic_ranks(n, q, confidence)
    wanted = [rank - 1 for rank in (lower_rank, upper_rank) if rank is not None]
    low = high = None
    if wanted:
        # One partition places both order statistics: O(n), where a sort is O(n log n).
        placed = np.partition(values, wanted)
        low = None if lower_rank is None else float(placed[lower_rank - 1])
        high = None if upper_rank is None else float(placed[upper_rank - 1])
    has_inf = bool(np.isinf(values).any())
    estimate = float(np.percentile(values, q, method="nearest" if has_inf else "linear"))
    note = _missing_bound_note(q, confidence, n, lower_rank is None, upper_rank is None)
    if has_inf and not all(math.isfinite(x) for x in (estimate, low, high) if x is not None):
        infinite = "failed requests count as infinitely slow, and a +inf is written as null"
        note = infinite if note is None else f"{note}; {infinite}"
    return Interval(estimate, low, high, confidence, QUANTILE_METHOD, n, note)


def order_statistic_ranks(
    n: int, q: float, confidence: float = 0.95
) -> tuple[int | None, int | None]:
    """1-based ranks (lower, upper) of the order statistics bounding the q-th percentile of n
    values, each one-sided at ``confidence``; None where n is too small for that bound."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return _ranks(int(n), _fraction(q), check_confidence(confidence))


def min_samples_for_quantile(q: float, confidence: float = 0.95, side: str = "upper") -> int:
    """The least n for which the bound(s) on ``side`` ("upper" | "lower" | "both") exist.

    The upper bound exists once X_(n) qualifies: P(Binomial(n, p) <= n - 1) = 1 - p**n >=
    confidence, i.e. p**n <= 1 - confidence; the lower bound needs (1 - p)**n <= 1 - confidence.
    """
    p = _fraction(q)
    confidence = check_confidence(confidence)
    if side == "upper":
        return _least_n(p, confidence)
    if side == "lower":
        return _least_n(1.0 - p, confidence)
    if side == "both":
        return max(_least_n(p, confidence), _least_n(1.0 - p, confidence))
    raise ValueError(f"side must be 'upper', 'lower' or 'both', got {side!r}")


def requests_to_decide(
    values: np.ndarray,
    q: float,
    op: str,
    threshold: float,
    confidence: float = 0.95,
    limit: int = 10_000_000,
) -> int | None:
    """About how many values would decide ``op threshold`` on the q-th percentile, if more
    values kept the share on each side of the threshold that ``values`` has; None when no n up
    to ``limit`` would (the threshold sits at the estimated quantile).

    A hint for a user (and for how long ``extend`` may take), not a promise: the share itself
    is uncertain.
    """
    from aiperf.statistics._interval import OPERATORS

    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}: expected one of {', '.join(OPERATORS)}")
    _fraction(q)
    confidence = check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    # Every verdict is a count condition: "high < T" <=> at least k values are below T, and
    # "low >= T" <=> at most j - 1 are; "<=" and ">" count the values at or below T instead.
    at_or_below = op in ("<=", ">")
    counted = values <= threshold if at_or_below else values < threshold
    share = float(np.count_nonzero(counted)) / values.size
    return requests_to_decide_from_share(share, int(values.size), q, confidence, limit)


def requests_to_decide_from_share(share: float, n: int, q: float, confidence: float = 0.95,
                                  limit: int = 10_000_000) -> int | None:
    """``requests_to_decide`` from the share of values below the threshold (at or below it
    for ``<=`` and ``>``) in a sample of ``n``: what a quantile sketch can tell."""
    p = _fraction(q)
    confidence = check_confidence(confidence)
    if n <= 0:
        return None
    size = n

    def decided(m: int) -> bool:
        lower, upper = _ranks(m, p, confidence)
        count = math.floor(share * m)
        return (upper is not None and count >= upper) or (lower is not None and count <= lower - 1)

    if decided(size):
        return size
    low = n = size  # low: a size known not to decide
    while not decided(n):
        if n >= limit:
            return None
        low, n = n, min(2 * n, limit)
    while n - low > 1:
        mid = (low + n) // 2
        if decided(mid):
            n = mid
        else:
            low = mid
    return n


@lru_cache(maxsize=4096)
def _ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    if n == 0:
        return None, None
    upper = _least_rank(n, p, confidence)
    # Mirror: X_(j) <= xi_p  <=>  at least j draws are <= xi_p; n - that count is
    # Binomial(n, 1 - p), so j = n + 1 - (the upper rank for 1 - p).
    mirrored = _least_rank(n, 1.0 - p, confidence)
    lower = None if mirrored is None else n + 1 - mirrored
    return lower, upper


def _least_rank(n: int, p: float, confidence: float) -> int | None:
    """Least k in 1..n with P(Binomial(n, p) <= k - 1) >= confidence, or None."""
    from scipy.special import bdtr  # lazy: scipy costs a noticeable import

    # bdtr(k, n, p) = P(Binomial(n, p) <= k); monotone in k, so bisect on it. A probability
    # equal to the confidence up to rounding (e.g. exactly 0.5 by symmetry) counts as reaching it.
    confidence -= ROUNDING
    if bdtr(n - 1, n, p) < confidence:
        return None
    lo, hi = 0, n - 1  # the answer k - 1 lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if bdtr(mid, n, p) >= confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo + 1


def _least_n(p: float, confidence: float) -> int:
    """Least n for which the top order statistic bounds the p-quantile: the closed form
    p**n <= 1 - confidence, then fixed to agree exactly with the rank search."""
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(p)))
    while n > 1 and _least_rank(n - 1, p, confidence) is not None:
        n -= 1
    while _least_rank(n, p, confidence) is None:
        n += 1
    return n


def _fraction(q: float) -> float:
    if not 0.0 < q < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {q!r}")
    return float(q) / 100.0


def _missing_bound_note(
    q: float, confidence: float, n: int, no_lower: bool, no_upper: bool
) -> str | None:
    missing = [
        (side, min_samples_for_quantile(q, confidence, side))
        for side, absent in (("upper", no_upper), ("lower", no_lower))
        if absent
    ]
    if not missing:
        return None
    needs = " and ".join(
        f"n >= {need} for {'an' if side == 'upper' else 'a'} {side} bound" for side, need in missing
    )
    return f"p{q:g} needs {needs} at {confidence * 100:g} % (n = {n})"
