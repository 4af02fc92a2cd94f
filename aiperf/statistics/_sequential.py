"""Repeated looks at a growing sample (the ``extend`` policy) without inflating the error.

Deciding after each chunk at level alpha would raise the chance of a wrong verdict with every
look. Bonferroni bounds it for any dependence between looks: at most K looks, each at alpha / K,
so the chance that any look is wrong is at most alpha (the union bound).
"""

from __future__ import annotations


def bonferroni(alpha: float, looks: int) -> float:
    """The per-look alpha that keeps ``looks`` looks together at ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(looks, bool) or int(looks) != looks or looks < 1:
        raise ValueError(f"looks must be an integer >= 1, got {looks!r}")
    return alpha / int(looks)
