"""Clopper-Pearson bounds on a proportion (error rate, good-request fraction).

Exact: each bound inverts the binomial test, so it holds at its confidence for every n and every
true proportion (conservatively, as the binomial is discrete). Wilson's interval is shorter but
can under-cover near 0 and 1, exactly where error-rate objectives live ("<= 1 %").
"""

from __future__ import annotations

from aiperf.statistics._interval import Interval, check_confidence

PROPORTION_METHOD = "Clopper-Pearson (exact binomial)"


def proportion_interval(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Bounds on a proportion observed as ``k`` successes in ``n`` trials, as a fraction."""
    confidence = check_confidence(confidence)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Interval(None, None, None, confidence, PROPORTION_METHOD, 0, "no trials")
    from scipy.special import betaincinv  # lazy: scipy costs a noticeable import

    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha))
    high = 1.0 if k == n else float(betaincinv(k + 1, n - k, confidence))
    return Interval(k / n, low, high, confidence, PROPORTION_METHOD, n)
