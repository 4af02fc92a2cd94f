"""The statistics of verdicts: confidence bounds and the rule that decides PASS, FAIL or
INCONCLUSIVE from them; intervals on the change between two runs (``difference``); the same
intervals read from a quantile sketch in sketch mode (``sketch``: ``MetricSketch``, imported
on first use since it needs ``ddsketch``). Pure numpy; scipy's special functions are imported
on first use.
docs/statistics.md explains each method, its assumptions and its measured error rates."""

from aiperf.statistics._interval import OPERATORS, Interval, Verdict, decide
from aiperf.statistics._mean import (
    MIN_WINDOWS,
    across_runs_interval,
    batch_means_interval,
    mean_interval,
    mean_interval_from_moments,
)
from aiperf.statistics._proportion import proportion_interval
from aiperf.statistics._quantile import (
    min_samples_for_quantile,
    order_statistic_ranks,
    quantile_interval,
    requests_to_decide,
    requests_to_decide_from_share,
)
from aiperf.statistics._sequential import bonferroni
from aiperf.statistics._sketch_interval import (
    QuantileSketch,
    sketch_mean_interval,
    sketch_quantile_interval,
)
from aiperf.statistics._warmup import mser5
from aiperf.statistics.difference import Difference, difference_interval, rate_difference

__all__ = [
    "MIN_WINDOWS",
    "OPERATORS",
    "Difference",
    "Interval",
    "MetricSketch",
    "QuantileSketch",
    "Verdict",
    "across_runs_interval",
    "batch_means_interval",
    "bonferroni",
    "decide",
    "difference_interval",
    "mean_interval",
    "mean_interval_from_moments",
    "min_samples_for_quantile",
    "mser5",
    "order_statistic_ranks",
    "proportion_interval",
    "quantile_interval",
    "rate_difference",
    "requests_to_decide",
    "requests_to_decide_from_share",
    "sketch_mean_interval",
    "sketch_quantile_interval",
    "sketch_summary",
]

_SKETCH_NAMES = ("MetricSketch", "sketch_summary")


def __getattr__(name: str) -> object:
    # The sketch itself needs ddsketch: loaded when sketch mode first asks for it.
    if name in _SKETCH_NAMES:
        from aiperf.statistics import sketch

        return getattr(sketch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
