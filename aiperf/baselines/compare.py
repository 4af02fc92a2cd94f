"""Regression rules, and the comparison of two runs under them.

A rule is written ``METRIC[.STAT]:[+|-]N%`` (relative to the earlier run) or
``METRIC[.STAT]:[+|-]N<unit>`` (absolute, in any unit of the metric's family):

    time_to_first_token.p99:10%      p99 TTFT may not grow by more than 10 %
    request_latency.p50:+20ms        the median latency may not grow by more than 20 ms
    request_throughput:-5%           throughput may not drop by more than 5 %
    inter_token_latency:0%           any significant change of the mean ITL counts

- METRIC is a per-request metric (its STAT ``avg``, the default as in an SLO, or a
  percentile ``pNN``: ``p50``, ``p99``, ``p99.9``/``p999``), or a throughput
  (``request_throughput``, ``output_token_throughput``, ``total_token_throughput``),
  which takes no STAT (``.rate``, or ``.avg`` as the SLO keys write it, are accepted).
- The sign says which way is worse: ``+`` up, ``-`` down. Without one, the metric's natural
  direction: worse is down for a metric where higher is better (throughputs), else up.
- N >= 0. A unit is required, so that ``:20`` cannot mean ms to one reader and s to another.
- A per-request metric may end in a turn range of multi-turn sessions, as an SLO key does
  (``time_to_first_token.p99[turn>=2]:10%``; ``[turn==N]``, ``[turn>=N]``, ``[turn<=N]``,
  turns from 1): both runs' values of those turns only (a stored run keeps each value's
  turn, ``StoredRun.turn_values``), as the judge reads ``[turn>=2]``.

``judge_change`` turns a ``Difference`` into a status; ``compare`` runs every rule on two
runs' per-request values. The intervals are ``aiperf.statistics.difference``'s; the meaning
of each status is in docs/statistics.md ("Comparing runs").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiperf.errors import ConfigError
from aiperf.metrics.definitions import BY_TAG, parse_percentile
from aiperf.statistics.difference import Difference, difference_interval, rate_difference

Status = Literal["REGRESSED", "IMPROVED", "UNCHANGED", "INCONCLUSIVE"]
STATUSES: tuple[Status, ...] = ("REGRESSED", "IMPROVED", "UNCHANGED", "INCONCLUSIVE")

FORMS = (
    "METRIC[.STAT]:[+|-]N% (relative) or METRIC[.STAT]:[+|-]N<unit> (absolute), a "
    "per-request METRIC[.STAT] optionally ending in a turn range [turn==N], [turn>=N] or "
    "[turn<=N], e.g. 'time_to_first_token.p99:10%', 'request_throughput:-5%', "
    "'request_latency.p50:+20ms', 'time_to_first_token.p99[turn>=2]:10%'"
)
TURN_FORMS = ("[turn==N]", "[turn>=N]", "[turn<=N]")
# The key's last bracket, a turn range: "time_to_first_token.p99[turn>=2]".
_TURNS = re.compile(r"^(?P<body>[^\[\]]*)\[(?P<filter>[^\[\]]*)\]$")
_TURN_FILTER = re.compile(r"^\s*turn\s*(==|>=|<=)\s*([0-9]+)\s*$")
DEFAULT_STATISTIC = "avg"

#: Throughputs are compared through each request's end time (batch means); the value is
#: what weighs each request: None counts requests, else per-request token counts.
THROUGHPUTS: dict[str, tuple[str, ...] | None] = {
    "request_throughput": None,
    "output_token_throughput": ("output_sequence_length",),
    "total_token_throughput": ("output_sequence_length", "input_sequence_length"),
}
_THROUGHPUT_STATS = ("rate", "avg")

# A metric's display unit -> every spelling a margin may use -> factor to the display unit.
_TIME_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "sec": 1e3}
_TOKENS_PER_S = {"tokens/s": 1.0, "tokens/sec": 1.0, "tok/s": 1.0}
UNITS: dict[str, dict[str, float]] = {
    "ms": _TIME_MS,
    "sec": {spelling: factor / 1e3 for spelling, factor in _TIME_MS.items()},
    "tokens/sec": _TOKENS_PER_S,
    "tokens/sec/user": {"tokens/s/user": 1.0, "tokens/sec/user": 1.0, **_TOKENS_PER_S},
    "requests/sec": {"requests/s": 1.0, "requests/sec": 1.0, "req/s": 1.0, "rps": 1.0},
    "ratio": {"ratio": 1.0},
    "tokens": {"tokens": 1.0, "token": 1.0},
    "requests": {"requests": 1.0},
}

# ASCII digits only: re's \d would also take other scripts' digits, which float() accepts.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_MARGIN = re.compile(rf"^(?P<sign>[+-]?)\s*(?P<number>{_NUMBER})\s*(?P<unit>.*?)$")


class RegressionRule(BaseModel):
    """One parsed ``METRIC[.STAT]:[+|-]N(%|unit)``; ``margin`` is in the metric's display
    unit, or a fraction (0.1 for 10 %) when ``relative``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    text: str
    metric: str
    statistic: str
    margin: float = Field(ge=0.0)
    relative: bool
    worse: Literal["up", "down"]
    # "turn>=2": the rule reads those turns of multi-turn sessions only (1-based, as
    # written); None: every request.
    turns: str | None = Field(default=None, pattern=r"^turn(==|>=|<=)[1-9][0-9]{0,5}$")

    @property
    def key(self) -> str:
        """``metric.stat`` as a table names it (``[turn>=2]`` after it for a turn range);
        a throughput is named alone."""
        key = self.metric if self.statistic == "rate" else f"{self.metric}.{self.statistic}"
        return key if self.turns is None else f"{key}[{self.turns}]"

    @property
    def turn_indexes(self) -> tuple[int, int | None] | None:
        """The turn range as 0-based ``turn_index`` bounds (low, high; high None: no
        last), or None for a rule on every request."""
        if self.turns is None:
            return None
        op, number = self.turns[4:6], int(self.turns[6:])
        return ((number - 1 if op in ("==", ">=") else 0),
                (number - 1 if op in ("==", "<=") else None))

    @property
    def unit(self) -> str:
        return BY_TAG[self.metric].unit

    @property
    def margin_text(self) -> str:
        return f"{self.margin * 100:g} %" if self.relative else f"{self.margin:g} {self.unit}"

    def __str__(self) -> str:
        return self.text


def comparable_metrics() -> list[str]:
    """Every metric a rule may name."""
    per_request = [tag for tag, spec in BY_TAG.items() if spec.per_request]
    return sorted([*per_request, *THROUGHPUTS])


def parse_rule(text: str) -> RegressionRule:
    """A ``RegressionRule`` from its text, or a ``ConfigError`` that quotes the text, says
    what is wrong and lists the allowed forms."""
    if not isinstance(text, str):
        raise ConfigError(f"regression rule {text!r} is not a string; write {FORMS}")
    written = text.strip()

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"regression rule {written!r}: {problem}; write {FORMS}")

    name, colon, margin_text = written.partition(":")
    if not colon:
        raise fail("no ':' between the metric and its margin")
    name, turns = _turn_range(name.strip(), fail)
    metric, dot, statistic = name.strip().partition(".")
    if metric not in BY_TAG or (metric not in THROUGHPUTS and not BY_TAG[metric].per_request):
        raise fail(f"{metric!r} is not a metric that can be compared; "
                   f"metrics: {', '.join(comparable_metrics())}")
    if metric in THROUGHPUTS and turns is not None:
        raise fail(f"{metric} is one number per run, not a per-request metric: a turn "
                   f"range [{turns}] selects requests, so it takes a per-request metric "
                   f"such as 'time_to_first_token.p99[{turns}]'")
    if metric in THROUGHPUTS:
        if dot and statistic not in _THROUGHPUT_STATS:
            raise fail(f"{metric} is one number per run: write it without a statistic")
        statistic = "rate"
    else:
        statistic = statistic if dot else DEFAULT_STATISTIC
        if statistic != "avg" and parse_percentile(statistic) is None:
            raise fail(f"unknown statistic {statistic!r} of {metric}; statistics: avg or a "
                       f"percentile pNN such as p50, p90, p99, p99.9")
    match = _MARGIN.match(margin_text.strip())
    if match is None:
        raise fail(f"margin {margin_text.strip()!r} is not [+|-], a number, "
                   f"then % or a unit")
    sign, number, unit = match.group("sign", "number", "unit")
    margin = float(number)
    if not math.isfinite(margin):
        raise fail(f"margin {number!r} is not a finite number")
    spec = BY_TAG[metric]
    units = UNITS.get(spec.unit, {spec.unit: 1.0})
    relative = unit == "%"
    if not relative:
        if not unit:
            raise fail(f"margin {number!r} has no unit: give % or one of {', '.join(units)}")
        if unit not in units:
            raise fail(f"unit {unit!r} does not fit {metric} (measured in {spec.unit}); "
                       f"units: %, {', '.join(units)}")
        margin *= units[unit]
    else:
        margin /= 100.0
    if not math.isfinite(margin):
        raise fail(f"margin {number!r} {unit} is too large")
    natural = "down" if spec.higher_is_better else "up"
    worse = {"+": "up", "-": "down"}.get(sign, natural)
    try:
        return RegressionRule(text=written, metric=metric, statistic=statistic,
                              margin=margin, relative=relative, worse=worse, turns=turns)
    except ValidationError as exc:  # e.g. a lone surrogate pydantic cannot take as a str
        raise fail(f"not a valid rule ({exc.error_count()} field errors)") from None


def _turn_range(name: str, fail: Callable[[str], ConfigError]) -> tuple[str, str | None]:
    """(``METRIC[.STAT]``, ``"turn>=2"`` or None) of a rule's name; a bracket that is not
    a turn range is refused naming the forms allowed."""
    if "[" not in name and "]" not in name:
        return name, None
    parts = _TURNS.match(name)
    example = "'time_to_first_token.p99[turn>=2]:10%'"
    if parts is None or not parts.group("body").strip():
        raise fail(f"write one turn range in brackets at the end of METRIC.STAT, one of "
                   f"{', '.join(TURN_FORMS)}, e.g. {example}")
    found = _TURN_FILTER.match(parts.group("filter"))
    if found is None:
        raise fail(f"[{parts.group('filter')}] is not a turn range; write one of "
                   f"{', '.join(TURN_FORMS)} (N: a turn number, 1 is a session's first "
                   f"turn), e.g. {example}")
    if len(found.group(2)) > 6:
        raise fail(f"turn number {found.group(2)} is more turns than any session has")
    op, number = found.group(1), int(found.group(2))
    if number < 1:
        raise fail(f"turns are numbered from 1 (a session's first turn), got {number}")
    return parts.group("body"), f"turn{op}{number}"


def judge_change(diff: Difference, rule: RegressionRule) -> Status:
    """The status of one change under one rule, read off the interval in the rule's terms
    (relative or absolute) and oriented so that "worse" is positive:

    - REGRESSED: the whole interval is worse than +margin (low > margin);
    - IMPROVED: the whole interval is better than -margin (high < -margin);
    - UNCHANGED: the interval lies within [-margin, +margin], or, with margin 0, contains
      0 (no change detected); it needs two finite bounds;
    - INCONCLUSIVE: anything else (the interval straddles a margin, or there is none).
    """
    delta, low, high = diff.relative if rule.relative else (diff.delta, diff.low, diff.high)
    del delta  # the status rests on the interval alone, never on the point estimate
    if rule.worse == "down":
        low, high = -high, -low
    margin = rule.margin
    if low > margin:
        return "REGRESSED"
    if high < -margin:
        return "IMPROVED"
    finite = math.isfinite(low) and math.isfinite(high)
    if finite and -margin <= low and high <= margin:
        return "UNCHANGED"
    if finite and margin == 0.0 and low <= 0.0 <= high:
        return "UNCHANGED"
    return "INCONCLUSIVE"


class RunValues(Protocol):
    """What a comparison reads from a run: per-request values by metric tag (in the
    metric's display unit), and each request's end in seconds from the run's first start
    (for throughputs), in the same request order as the values."""

    def metric_values(self, tag: str) -> np.ndarray | None: ...

    def end_times(self) -> np.ndarray | None: ...

    # Optional (a rule on some turns; a run without it has no per-turn values):
    # def turn_values(self, tag: str, low_index: int,
    #                 high_index: int | None) -> np.ndarray | None: ...


class Comparison(BaseModel):
    """One rule applied to two runs. ``before``/``after``/``delta``/``low``/``high`` are in
    the metric's display unit; ``relative`` echoes the rule (how the status was judged)."""

    model_config = ConfigDict(frozen=True)

    rule: RegressionRule
    status: Status
    before: float
    after: float
    delta: float
    low: float
    high: float
    relative: bool
    method: str
    confidence: float

    @property
    def difference(self) -> Difference:
        return Difference(self.rule.statistic, self.before, self.after, self.delta, self.low,
                          self.high, self.confidence, self.method)

    def describe(self) -> str:
        """One line, e.g. ``time_to_first_token.p99 180.2 -> 231.0 ms (+28.2 %, 95 %
        interval +19.9 .. +36.5 %): REGRESSED (> +10 %)``."""
        unit = self.rule.unit
        head = f"{self.rule.key} {_number(self.before)} -> {_number(self.after)} {unit}"
        delta, low, high = self.difference.relative if self.relative else (
            self.delta, self.low, self.high)
        suffix = " %" if self.relative else f" {unit}"
        show = _signed_percent if self.relative else _signed
        if math.isfinite(low) or math.isfinite(high):
            interval = (f"{self.confidence * 100:g} % interval {show(low)} .. {show(high)}"
                        f"{suffix}")
        else:
            interval = f"no interval: {_reason(self.method)}"
        change = "no change measured" if math.isnan(delta) else f"{show(delta)}{suffix}"
        return f"{head} ({change}, {interval}): {self.status} ({self._why()})"

    def _why(self) -> str:
        rule = self.rule
        margin = rule.margin_text
        up = rule.worse == "up"
        plus, minus = ("", "") if rule.margin == 0 else ("+", "-")
        if self.status == "REGRESSED":
            return f"> {plus}{margin}" if up else f"< {minus}{margin}"
        if self.status == "IMPROVED":
            return f"< {minus}{margin}" if up else f"> {plus}{margin}"
        if self.status == "UNCHANGED":
            return "interval contains 0" if rule.margin == 0 else f"within ±{margin}"
        if math.isfinite(self.low) and math.isfinite(self.high):
            return f"interval crosses ±{margin}"
        return "no interval"


def compare(
    before: RunValues,
    after: RunValues,
    rules: list[RegressionRule],
    confidence: float = 0.95,
    *,
    skip_unmeasured: bool = False,
) -> list[Comparison]:
    """Each rule judged on the change from ``before`` to ``after``, in the rules' order.

    A metric one run lacks is INCONCLUSIVE (the method names the run). With
    ``skip_unmeasured`` (for default rules, which name streaming metrics a
    non-streaming run never has) a rule neither run measured is left out instead.
    Non-finite values (a NaN a foreign source wrote) are dropped, and the method says so.
    """
    out: list[Comparison] = []
    for rule in rules:
        if rule.statistic == "rate":
            diff = _rate(before, after, rule, confidence, skip_unmeasured)
        else:
            diff = _statistic(before, after, rule, confidence, skip_unmeasured)
        if diff is None:
            continue
        out.append(Comparison(rule=rule, status=judge_change(diff, rule), before=diff.before,
                              after=diff.after, delta=diff.delta, low=diff.low,
                              high=diff.high, relative=rule.relative, method=diff.method,
                              confidence=diff.confidence))
    return out


def _statistic(before: RunValues, after: RunValues, rule: RegressionRule,
               confidence: float, skip_unmeasured: bool) -> Difference | None:
    found = [_values(run, rule) for run in (before, after)]
    if skip_unmeasured and all(values is None for values in found):
        return None
    missing = [label for label, v in zip(("before", "after"), found, strict=True) if v is None]
    if missing:
        what = rule.metric if rule.turns is None else (
            f"{rule.metric} per turn ({rule.turns}: the run kept no per-request table, is "
            f"not multi-turn, or was stored before turns were kept)")
        return _not_measured(rule, found, confidence,
                             f"{what} was not measured in the {' and '.join(missing)} run")
    empty = [label for label, v in zip(("before", "after"), found, strict=True)
             if v is not None and not v.size]
    if rule.turns is not None and empty:
        return _not_measured(rule, found, confidence,
                             f"no request of {rule.turns} in the {' and '.join(empty)} run")
    cleaned, dropped = zip(*(_finite(v) for v in found if v is not None), strict=True)
    diff = difference_interval(cleaned[0], cleaned[1], rule.statistic, confidence)
    return _noting_dropped(diff, dropped)


def _values(run: RunValues, rule: RegressionRule) -> np.ndarray | None:
    bounds = rule.turn_indexes
    if bounds is None:
        return run.metric_values(rule.metric)
    per_turn = getattr(run, "turn_values", None)
    return None if per_turn is None else per_turn(rule.metric, *bounds)


def _rate(before: RunValues, after: RunValues, rule: RegressionRule, confidence: float,
          skip_unmeasured: bool) -> Difference | None:
    if rule.metric not in THROUGHPUTS:  # a rule built by hand, past parse_rule's check
        return _not_measured(rule, [None, None], confidence,
                             f"{rule.metric} is not a throughput; rates of "
                             f"{', '.join(THROUGHPUTS)} are compared")
    ends = [run.end_times() for run in (before, after)]
    weights: list[np.ndarray | None] = [None, None]
    parts = THROUGHPUTS[rule.metric]
    problems: list[str] = []
    for i, (label, run) in enumerate((("before", before), ("after", after))):
        end = ends[i]
        if end is None:
            problems.append(f"the {label} run has no request end times")
            continue
        if parts is None:
            continue
        counts = [run.metric_values(part) for part in parts]
        present = [c for c in counts if c is not None]
        if len(present) < len(counts) or any(c.size != end.size for c in present):
            problems.append(f"the {label} run's token counts do not match its requests")
            continue
        weights[i] = np.sum(present, axis=0, dtype=np.float64)
    if problems:
        if skip_unmeasured and all(e is None for e in ends):
            return None
        return _not_measured(rule, [None, None], confidence, "; ".join(problems))
    cleaned = []
    dropped = []
    for end, weight in zip(ends, weights, strict=True):
        end = np.asarray(end, dtype=np.float64)
        keep = np.isfinite(end) if weight is None else np.isfinite(end) & np.isfinite(weight)
        cleaned.append((end[keep], None if weight is None else weight[keep]))
        dropped.append(int(end.size - np.count_nonzero(keep)))
    diff = rate_difference(cleaned[0][0], cleaned[1][0], confidence,
                           before_weights=cleaned[0][1], after_weights=cleaned[1][1])
    return _noting_dropped(diff, tuple(dropped))


def _not_measured(rule: RegressionRule, found: list[np.ndarray | None], confidence: float,
                  why: str) -> Difference:
    estimates = []
    for values in found:
        finite = None if values is None else _finite(values)[0]
        estimates.append(math.nan if finite is None or not finite.size else
                         _point(finite, rule.statistic))
    return Difference(rule.statistic, estimates[0], estimates[1], estimates[1] - estimates[0],
                      -math.inf, math.inf, confidence, f"not compared: {why}")


def _point(values: np.ndarray, statistic: str) -> float:
    q = parse_percentile(statistic)
    return float(np.mean(values)) if q is None else float(np.percentile(values, q))


def _finite(values: np.ndarray) -> tuple[np.ndarray, int]:
    array = np.asarray(values, dtype=np.float64).ravel()
    keep = np.isfinite(array)
    return array[keep], int(array.size - np.count_nonzero(keep))


def _noting_dropped(diff: Difference, dropped: tuple[int, ...]) -> Difference:
    if not any(dropped):
        return diff
    note = ", ".join(f"{n} in the {label} run"
                     for label, n in zip(("before", "after"), dropped, strict=True) if n)
    return Difference(diff.statistic, diff.before, diff.after, diff.delta, diff.low, diff.high,
                      diff.confidence, f"{diff.method} (non-finite values dropped: {note})")


def _reason(method: str) -> str:
    # The method's text after its name says why no bound exists ("...: p99 needs n >= 368").
    return method.split(": ", 1)[1] if ": " in method else method


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _signed_percent(fraction: float) -> str:
    if math.isnan(fraction):
        return "n/a"
    if math.isinf(fraction):
        return "+inf" if fraction > 0 else "-inf"
    return f"{fraction * 100.0:+.1f}"


def _signed(value: float) -> str:
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    text = _number(value)
    return text if text.startswith("-") or text == "n/a" else f"+{text}"


DEFAULT_RULES: list[RegressionRule] = [
    parse_rule(text)
    for text in (
        "time_to_first_token.p50:0%",
        "time_to_first_token.p99:0%",
        "inter_token_latency.p50:0%",
        "inter_token_latency.p99:0%",
        "request_latency.p50:0%",
        "request_latency.p99:0%",
        "request_throughput:0%",
    )
]
