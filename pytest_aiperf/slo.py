"""Service-level objectives: ``"<metric>[.<stat>]": "<op> <number> [unit]"``.

    "time_to_first_token.p99": "< 250 ms"
    "output_token_throughput": ">= 500 tokens/s"
    "request_error_rate": "<= 1 %"
    "adj_request_latency.p90": "< 1.5 s"

Parsing happens at collection, so a typo is a collection error that lists the valid
choices and no load is sent; evaluation compares the run's value, in the metric's display
unit, with the threshold converted to that unit.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiperf.metrics.definitions import BY_TAG, STAT_NAMES, parse_percentile

if TYPE_CHECKING:
    from aiperf.results import ProfileResult

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}

# unit family of each display unit -> {spelling: factor to the display unit}
_TIME_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "sec": 1e3}
_TIME_S = {k: v / 1e3 for k, v in _TIME_MS.items()}
_TOKENS_PER_S = {"tokens/s": 1.0, "tokens/sec": 1.0, "tok/s": 1.0}
_UNITS: dict[str, dict[str, float]] = {
    "ms": _TIME_MS,
    "sec": _TIME_S,
    "tokens/sec": _TOKENS_PER_S,
    "tokens/sec/user": {"tokens/s/user": 1.0, "tokens/sec/user": 1.0, **_TOKENS_PER_S},
    "requests/sec": {"requests/s": 1.0, "requests/sec": 1.0, "req/s": 1.0, "rps": 1.0},
    "%": {"%": 1.0},
    "ratio": {"%": 0.01, "ratio": 1.0},
    "tokens": {"tokens": 1.0},
    "requests": {"requests": 1.0},
}
_THRESHOLD = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


class SLOError(ValueError):
    """An objective that cannot be understood; the message lists the valid choices."""


@dataclass(frozen=True)
class Objective:
    key: str          # as written: "time_to_first_token.p99"
    metric: str       # "time_to_first_token" (or "adj_...")
    stat: str         # "p99"
    op: str           # "<"
    threshold: float  # in the metric's display unit
    text: str         # as written: "< 250 ms"
    unit: str         # the metric's display unit

    @property
    def base_tag(self) -> str:
        return self.metric.removeprefix("adj_")


@dataclass(frozen=True)
class Verdict:
    objective: Objective
    measured: float | None
    passed: bool
    count: int

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective.key, "threshold": self.objective.text,
                "measured": self.measured, "unit": self.objective.unit,
                "verdict": self.status, "requests": self.count}


def _known_metrics() -> list[str]:
    adjusted = [f"adj_{t}" for t, s in BY_TAG.items() if s.error_adjusted]
    return sorted([*BY_TAG, *adjusted])


def parse_objective(key: str, value: str) -> Objective:
    metric, _, stat = key.partition(".")
    if metric not in _known_metrics():
        raise SLOError(f"unknown metric {metric!r} in objective {key!r}; valid metrics: "
                       f"{', '.join(_known_metrics())}")
    spec = BY_TAG[metric.removeprefix("adj_")]
    stat = stat or "avg"
    if not spec.per_request and stat != "avg":
        raise SLOError(f"{metric!r} is one number per run; write it without a statistic "
                       f"(got {stat!r})")
    if stat not in STAT_NAMES and parse_percentile(stat) is None:
        raise SLOError(f"unknown statistic {stat!r} in objective {key!r}; valid: "
                       f"{', '.join(STAT_NAMES)}, or any pNN such as p999")
    match = _THRESHOLD.match(str(value))
    if not match:
        raise SLOError(f"objective {key!r}: {value!r} is not '<op> <number> [unit]'; "
                       f"operators: {', '.join(OPERATORS)}")
    op, number, unit = match.groups()
    units = _UNITS.get(spec.unit, {spec.unit: 1.0})
    if unit and unit not in units:
        raise SLOError(f"objective {key!r}: unit {unit!r} does not fit {metric} "
                       f"(measured in {spec.unit}); valid units: {', '.join(units)}")
    factor = units[unit] if unit else 1.0
    return Objective(key, metric, stat, op, float(number) * factor, str(value).strip(),
                     spec.unit)


def parse_objectives(slo: Mapping[str, Any] | None) -> list[Objective]:
    if slo is None:
        return []
    if not isinstance(slo, Mapping):
        raise SLOError(f"slo must be a mapping of objective to threshold, got {slo!r}")
    return [parse_objective(str(k), str(v)) for k, v in slo.items()]


def check_applicable(objectives: list[Objective], profile: Mapping[str, Any],
                     streams: bool, produces_tokens: bool) -> None:
    """Refuse objectives the profile can never measure (TTFT of a non-streaming run)."""
    for objective in objectives:
        spec = BY_TAG[objective.base_tag]
        if spec.streaming_only and not streams:
            raise SLOError(f"objective {objective.key!r} needs a streaming profile "
                           f"(streaming=True, on an endpoint that streams)")
        if spec.tokens_only and not produces_tokens:
            raise SLOError(f"objective {objective.key!r}: endpoint "
                           f"{profile.get('endpoint_type', 'chat')!r} produces no tokens")
        if objective.base_tag.startswith("good") and not profile.get("goodput"):
            raise SLOError(f"objective {objective.key!r} needs goodput thresholds in the "
                           f"profile (goodput={{...}})")


def evaluate(objectives: list[Objective], result: ProfileResult) -> list[Verdict]:
    verdicts = []
    for objective in objectives:
        measured: float | None
        count = result.request_count
        try:
            metric = result[objective.metric]
            measured = metric.stat(objective.stat)
            if not metric.is_scalar:
                count = metric.count or len(metric.values)
        except KeyError:
            measured = None
        passed = (measured is not None and not math.isnan(measured)
                  and OPERATORS[objective.op](measured, objective.threshold))
        verdicts.append(Verdict(objective, measured, passed, count))
    return verdicts


def format_table(verdicts: list[Verdict]) -> str:
    rows = [("Objective", "Measured", "Threshold", "Verdict", "Requests")]
    for v in verdicts:
        measured = "not measured" if v.measured is None else _fmt(v.measured, v.objective.unit)
        rows.append((v.objective.key, measured, v.objective.text, v.status, str(v.count)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) if j in (0, 2, 3) else c.rjust(widths[j])
                               for j, c in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float, unit: str) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:,.2f} {unit}"
