"""Service-level objectives: ``"<metric>[.<stat>]": "<op> <number> [unit]"``.

    "time_to_first_token.p99": "< 250 ms"
    "output_token_throughput": ">= 500 tokens/s"
    "request_error_rate": "<= 1 %"
    "adj_request_latency.p90": "< 1.5 s"

A relative objective compares with the test's stored baseline run (``--aiperf-save``):

    "time_to_first_token.p99": "< baseline + 10 %"
    "request_latency.p50": "<= baseline * 1.1"
    "inter_token_latency.avg": "< baseline + 2 ms"
    "request_throughput": "> baseline - 5 %"

Its threshold is computed from the baseline's statistic when the test runs, and it is
judged on the interval of the difference (``pytest_aiperf.baseline``), not on the two point
values.

A server metric (the profile scrapes the server's Prometheus /metrics: ``server_metrics``)
is named ``server.<prometheus name>[.<stat>]`` and compared, in the server's own unit, with
a bare number, as a point value of the run (``aiperf.server_metrics.summary``):

    "server.vllm:gpu_cache_usage_perc.max": "< 0.9"
    "server.llamacpp:requests_processing.max": "<= 4"
    "server.vllm:num_preemptions_total.total": "<= 0"

An objective on some turns of multi-turn sessions names them in brackets, turns counted
from 1 as a user counts them (AIPerf's ``turn_index`` is 0-based: turn 2 is index 1), and
is judged on those turns' requests only (a prefix cache shows from the second turn on):

    "time_to_first_token.p99[turn>=2]": "< 250 ms"
    "request_latency.p50[turn==1]": "< 2 s"
    "time_to_first_token.p90[turn<=3]": "< 400 ms"

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

from aiperf.metrics.definitions import (
    BY_TAG,
    STAT_NAMES,
    goodput_metrics,
    goodput_problem,
    parse_percentile,
)

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
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
_RELATIVE = re.compile(r"^\s*(<=|>=|<|>)\s*baseline\s*(?:([-+*])\s*"
                       r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(\S*))?\s*$")
RELATIVE_FORMS = ("'< baseline + 10 %'", "'<= baseline * 1.1'", "'< baseline + 20 ms'",
                  "'> baseline - 5 %'")
# Run-level metrics a relative objective may name: each has a difference interval (batch
# means of request completions, or of their tokens, over time windows of each run).
RELATIVE_RATES = ("request_throughput", "output_token_throughput", "total_token_throughput")
_THRESHOLD = re.compile(r"^\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


class SLOError(ValueError):
    """An objective that cannot be understood; the message lists the valid choices."""


# "metric.stat[turn>=2]": the bracket at the key's end, and the filter inside it.
_TURN_KEY = re.compile(r"^(?P<body>[^\[\]]*)\[(?P<filter>[^\[\]]*)\](?P<rest>.*)$")
_TURN_FILTER = re.compile(r"^\s*turn\s*(==|>=|<=)\s*(\d+)\s*$")
TURN_FORMS = ("[turn==N]", "[turn>=N]", "[turn<=N]")


@dataclass(frozen=True)
class TurnRange:
    """The turns an objective is judged on, 1-based and inclusive (``high`` None: to the
    session's last turn). AIPerf's records number turns from 0 (``turn_index``)."""

    op: str    # "==", ">=" or "<=", as written
    turn: int  # 1-based, as written

    @property
    def low_index(self) -> int:
        """The first 0-based ``turn_index`` in the range."""
        return self.turn - 1 if self.op in ("==", ">=") else 0

    @property
    def high_index(self) -> int | None:
        """The last 0-based ``turn_index`` in the range, None: no last one."""
        return self.turn - 1 if self.op in ("==", "<=") else None

    def __str__(self) -> str:
        return f"turn{self.op}{self.turn}"


def parse_turns(key: str, text: str) -> TurnRange:
    """``turn>=2`` -> TurnRange(">=", 2); SLOError naming the allowed forms otherwise."""
    example = "'time_to_first_token.p99[turn>=2]'"
    match = _TURN_FILTER.match(text)
    if match is None:
        raise SLOError(f"objective {key!r}: [{text}] is not a turn filter; write one of "
                       f"{', '.join(TURN_FORMS)} (N: a turn number, 1 is a session's first "
                       f"turn), e.g. {example}")
    try:
        op, number = match.group(1), int(match.group(2))
    except ValueError:  # more digits than int() reads (4,300): no session has that turn
        raise SLOError(f"objective {key!r}: the turn number has {len(match.group(2))} "
                       f"digits, more than any session has turns; e.g. {example}") from None
    if number < 1:
        raise SLOError(f"objective {key!r}: turns are numbered from 1 (a session's first "
                       f"turn; AIPerf's turn_index 0), got {number}; e.g. {example}")
    return TurnRange(op, number)


@dataclass(frozen=True)
class BaselineBound:
    """The allowance of a relative objective: ``+ 10 %`` is ("fraction", 0.1), ``- 20 ms``
    ("absolute", -20.0) in the metric's display unit, ``* 1.1`` ("factor", 1.1)."""

    kind: str
    amount: float

    def threshold(self, before: float) -> float:
        """The objective's threshold given the baseline's value of the statistic."""
        return before + self.allowance(before)

    def allowance(self, before: float) -> float:
        """How far ``after - before`` may go (signed)."""
        if self.kind == "fraction":
            return before * self.amount
        if self.kind == "factor":
            return before * (self.amount - 1.0)
        return self.amount


@dataclass(frozen=True)
class Objective:
    key: str          # as written: "time_to_first_token.p99"
    metric: str       # "time_to_first_token" (or "adj_...")
    stat: str         # "p99"
    op: str           # "<"
    threshold: float  # in the metric's display unit
    text: str         # as written: "< 250 ms"
    unit: str         # the metric's display unit ("requests" for a count)
    implicit: bool = False  # added by the plugin, not written by the user
    window_s: float | None = None  # "metric.p99@10s": every 10 s window must meet it
    # "< baseline + 10 %": threshold is NaN until the baseline's value fills it in
    baseline: BaselineBound | None = None
    # "metric.p99[turn>=2]": judged on those turns of multi-turn sessions only
    turns: TurnRange | None = None

    @property
    def relative(self) -> bool:
        return self.baseline is not None

    @property
    def base_tag(self) -> str:
        return self.metric.removeprefix("adj_")

    @property
    def server(self) -> bool:
        """A server metric (``server.<name>``), judged on ``ProfileResult.server``."""
        return self.metric.startswith(SERVER_PREFIX)

    @property
    def server_name(self) -> str:
        """The Prometheus name of a server objective (``vllm:gpu_cache_usage_perc``)."""
        return self.metric.removeprefix(SERVER_PREFIX).partition("{")[0]

    @property
    def server_labels(self) -> dict[str, str]:
        """The label selector of a server objective (``{model_name="m"}``): the series whose
        labels include these; empty: every series."""
        _, brace, selector = self.metric.partition("{")
        return parse_selector(selector.removesuffix("}")) if brace else {}

    def __str__(self) -> str:
        return f"{self.key} {self.text}" + (" (implicit)" if self.implicit else "")

    def __repr__(self) -> str:
        return f"Objective({str(self)!r})"


STATUSES = ("PASS", "FAIL", "INCONCLUSIVE")


@dataclass(frozen=True)
class Verdict:
    """One objective judged on one sample of a run (or across runs). ``status`` is PASS,
    FAIL or INCONCLUSIVE (a bool is read as PASS/FAIL); ``interval`` the bounds at
    ``confidence`` behind it ((None, None) where none exists at this n). ``count`` is how
    many observations the verdict rests on; ``sent`` how many requests the run sent."""

    objective: Objective
    measured: float | None
    status: str
    count: int
    sent: int = 0
    interval: tuple[float | None, float | None] | None = None
    confidence: float | None = None
    method: str = "point value"
    note: str | None = None
    window: str = "whole run"
    needed: int | None = None  # the observations that could decide an INCONCLUSIVE one

    def __post_init__(self) -> None:
        if isinstance(self.status, bool):
            object.__setattr__(self, "status", "PASS" if self.status else "FAIL")
        if self.status not in STATUSES:
            raise ValueError(f"verdict status {self.status!r} is not one of {STATUSES}")

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    @property
    def measured_text(self) -> str:
        return "not measured" if self.measured is None else _fmt(self.measured,
                                                                 self.objective.unit)

    @property
    def interval_text(self) -> str:
        if self.interval is None or self.interval == (None, None):
            return "no interval"
        low, high = (("none" if b is None else _num(b)) for b in self.interval)
        return f"[{low}, {high}]"

    def __str__(self) -> str:
        where = "" if self.window == "whole run" else f" in {self.window}"
        interval = self.interval_text
        interval = f"({interval})" if interval == "no interval" else interval
        return (f"{self.status} {self.objective.key} = {self.measured_text} "
                f"{interval}, needs {self.objective.text}{where} "
                f"(n={self.count}, {self.sent} requests sent)")

    __repr__ = __str__  # an assertion that shows a verdict shows this text, not fields

    def to_dict(self) -> dict[str, Any]:
        interval = None if self.interval in (None, (None, None)) else list(self.interval)
        return {"objective": self.objective.key, "threshold": self.objective.text,
                "measured": _json_number(self.measured), "unit": self.objective.unit,
                "verdict": self.status,
                "interval": None if interval is None else [_json_number(b) for b in interval],
                "confidence": self.confidence, "n": self.count, "method": self.method,
                "note": self.note, "window": self.window, "needed": self.needed,
                "measured_requests": self.count, "sent_requests": self.sent,
                "implicit": self.objective.implicit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        objective = parse_objective(data["objective"], data["threshold"])
        if data.get("implicit"):
            objective = Objective(**{**objective.__dict__, "implicit": True})
        interval = data.get("interval")
        return cls(objective, _from_json(data.get("measured")), data["verdict"],
                   data.get("n", data.get("measured_requests", 0)),
                   data.get("sent_requests", 0),
                   (_from_json(interval[0]), _from_json(interval[1])) if interval else None,
                   data.get("confidence"), data.get("method", "point value"),
                   data.get("note"), data.get("window", "whole run"), data.get("needed"))


def _json_number(value: float | None) -> float | str | None:
    """JSON has no infinity: an error-adjusted bound that is +inf is written "inf"."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _from_json(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def _num(value: float | str) -> str:
    value = float(value)
    return "inf" if math.isinf(value) else f"{value:,.2f}"


def _known_metrics() -> list[str]:
    adjusted = [f"adj_{t}" for t, s in BY_TAG.items() if s.error_adjusted]
    return sorted([*BY_TAG, *adjusted])


def parse_objective(key: str, value: str) -> Objective:
    if key.startswith(SERVER_PREFIX):
        return _parse_server_objective(key, value)
    if "[" in key or "]" in key:
        return _parse_turn_objective(key, value)
    name, at, window = key.partition("@")
    if not at:
        return _parse_objective(key, value)
    from pytest_aiperf.durations import parse_duration

    try:
        seconds = parse_duration(window.strip(), f"window of objective {key!r}")
    except ValueError as exc:
        raise SLOError(f"{exc}; write e.g. '{name}@10s'") from None
    objective = _parse_objective(name, value)
    if objective.relative:
        raise SLOError(f"objective {key!r}: a relative objective ({value!r}) takes no "
                       f"window; write it as {name!r}")
    if not BY_TAG[objective.base_tag].per_request:
        raise SLOError(f"objective {key!r}: a window needs a per-request metric; "
                       f"{objective.metric} is one number per run")
    return Objective(key, objective.metric, objective.stat, objective.op, objective.threshold,
                     objective.text, objective.unit, window_s=seconds)


def _parse_turn_objective(key: str, value: str) -> Objective:
    """``metric.stat[turn>=2]``: a per-request statistic over some turns of each session.
    Not with a window (``@10s``) or a baseline: neither has per-turn values to cut from."""
    parts = _TURN_KEY.match(key)
    if parts is None:
        raise SLOError(f"objective {key!r}: write the turns in one bracket at the end, "
                       f"one of {', '.join(TURN_FORMS)}, e.g. "
                       f"'time_to_first_token.p99[turn>=2]'")
    body, rest = parts.group("body").strip(), parts.group("rest").strip()
    if rest and not rest.startswith("@"):
        raise SLOError(f"objective {key!r}: write the turns in one bracket at the end, "
                       f"one of {', '.join(TURN_FORMS)}, e.g. "
                       f"'time_to_first_token.p99[turn>=2]'")
    if not body:
        raise SLOError(f"objective {key!r} names no metric before its bracket; write "
                       f"METRIC.STAT[turn>=N], e.g. 'time_to_first_token.p99[turn>=2]'")
    turns = parse_turns(key, parts.group("filter"))
    if rest or "@" in body:
        raise SLOError(f"objective {key!r}: an objective on some turns takes no window "
                       f"(@...): time windows are not cut per turn; write "
                       f"'{body.partition('@')[0]}[{turns}]'")
    try:
        objective = _parse_objective(body, value)
    except SLOError as exc:  # the key as written, brackets and all
        raise SLOError(str(exc).replace(repr(body), repr(key), 1)) from None
    if objective.relative:
        raise SLOError(f"objective {key!r}: an objective on some turns takes no baseline "
                       f"({value!r}); write an absolute threshold such as '< 250 ms', and "
                       f"hold the turns to a baseline with a regression gate: "
                       f"regress={{{key!r}: '10%'}}")
    if not BY_TAG[objective.base_tag].per_request:
        raise SLOError(f"objective {key!r}: turns select requests, so they need a "
                       f"per-request metric; {objective.metric} is one number per run")
    return Objective(key, objective.metric, objective.stat, objective.op, objective.threshold,
                     objective.text, objective.unit, turns=turns)


def _parse_objective(key: str, value: str) -> Objective:
    metric, _, stat = key.partition(".")
    if metric not in _known_metrics():
        raise SLOError(f"unknown metric {metric!r} in objective {key!r}; valid metrics: "
                       f"{', '.join(_known_metrics())}")
    spec = BY_TAG[metric.removeprefix("adj_")]
    if not spec.per_request and stat and stat != "avg":
        raise SLOError(f"{metric!r} is one number per run; write it without a statistic "
                       f"(got {stat!r})")
    valid = valid_stats(metric)
    if metric.startswith("adj_") and stat not in ADJUSTED_STATS and (
            not stat or parse_percentile(stat) is None):
        # Failed requests count as infinitely slow: an average, max or spread is undefined.
        raise SLOError(f"objective {key!r}: {metric} has only percentiles and a count "
                       f"(failed requests count as infinitely slow); valid statistics: "
                       f"{', '.join(valid)}, e.g. '{metric}.p90'")
    stat = stat or "avg"
    if stat not in STAT_NAMES and parse_percentile(stat) is None:
        raise SLOError(f"unknown statistic {stat!r} in objective {key!r}; valid: "
                       f"{', '.join(valid)}")
    if "baseline" in str(value):
        return _parse_relative(key, metric, stat, spec.unit, str(value))
    match = _THRESHOLD.match(str(value))
    if not match:
        raise SLOError(f"objective {key!r}: {value!r} is not '<op> <number> [unit]'; "
                       f"operators: {', '.join(OPERATORS)}")
    op, number, unit = match.groups()
    if stat == "count":
        if unit:
            raise SLOError(f"objective {key!r}: a count is a number of requests; write it "
                           f"without a unit (got {unit!r})")
        return Objective(key, metric, stat, op, float(number), str(value).strip(),
                         "requests")
    units = _UNITS.get(spec.unit, {spec.unit: 1.0})
    if unit and unit not in units:
        raise SLOError(f"objective {key!r}: unit {unit!r} does not fit {metric} "
                       f"(measured in {spec.unit}); valid units: {', '.join(units)}")
    factor = units[unit] if unit else 1.0
    return Objective(key, metric, stat, op, float(number) * factor, str(value).strip(),
                     spec.unit)


def _parse_relative(key: str, metric: str, stat: str, unit: str, value: str) -> Objective:
    """``"<op> baseline [+|- N [unit|%] | * F]"``: only statistics with a difference
    interval (avg and percentiles of a per-request metric, the request throughput)."""
    forms = ", ".join(RELATIVE_FORMS)
    match = _RELATIVE.match(value)
    if not match:
        raise SLOError(f"objective {key!r}: {value!r} is not a relative objective; write "
                       f"'<op> baseline [+|- N [unit|%] | * F]', e.g. {forms}")
    per_request = BY_TAG[metric.removeprefix("adj_")].per_request
    if metric.startswith("adj_") or (per_request and stat != "avg"
                                     and parse_percentile(stat) is None) or (
            not per_request and metric not in RELATIVE_RATES):
        raise SLOError(f"objective {key!r}: a relative objective needs the avg or a "
                       f"percentile of a per-request metric, or one of "
                       f"{', '.join(RELATIVE_RATES)} (no interval on the difference of "
                       f"{key!r})")
    op, sign, number, amount_unit = match.groups()
    bound = BaselineBound("absolute", 0.0)
    if sign == "*":
        if amount_unit:
            raise SLOError(f"objective {key!r}: a factor takes no unit (got "
                           f"{amount_unit!r}); e.g. {forms}")
        bound = BaselineBound("factor", float(number))
    elif sign:
        signed = float(number) * (-1.0 if sign == "-" else 1.0)
        if amount_unit == "%":
            bound = BaselineBound("fraction", signed / 100.0)
        else:
            units = _UNITS.get(unit, {unit: 1.0})
            if amount_unit and amount_unit not in units:
                raise SLOError(f"objective {key!r}: unit {amount_unit!r} does not fit "
                               f"{metric} (measured in {unit}); valid: %, "
                               f"{', '.join(units)}")
            bound = BaselineBound("absolute", signed * (units[amount_unit] if amount_unit
                                                         else 1.0))
    return Objective(key, metric, stat if per_request else "avg", op, math.nan,
                     value.strip(), unit, baseline=bound)


ADJUSTED_STATS = ("count",)

SERVER_PREFIX = "server."
# A Prometheus metric name (the data model's rule), e.g. vllm:gpu_cache_usage_perc, with an
# optional label selector {model_name="m",...} and a statistic.
_PROMETHEUS_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_SERVER_KEY = re.compile(r"^(?P<name>[^{.]*)(?:\{(?P<selector>[^}]*)\})?(?:\.(?P<stat>.*))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_selector(text: str) -> dict[str, str]:
    """``model_name="m",engine="0"`` -> {"model_name": "m", "engine": "0"}; ValueError
    on anything else."""
    labels: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"{text!r} is not a label selector such as "
                             f'model_name="m",engine="0"')
        labels[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
        position = match.end()
    return labels


def server_stats() -> tuple[str, ...]:
    """Every statistic a server objective may name (which ones a metric has depends on its
    type, known once it is scraped)."""
    from aiperf.server_metrics.summary import COUNTER_STATS, GAUGE_STATS, HISTOGRAM_STATS

    return tuple(dict.fromkeys((*GAUGE_STATS, *COUNTER_STATS, *HISTOGRAM_STATS)))


def _parse_server_objective(key: str, value: str) -> Objective:
    """``server.<name>[.<stat>]``: a point value of the run, a bare number threshold
    (the server's own unit). Without a statistic: a counter's total, else the avg."""
    rest = key.removeprefix(SERVER_PREFIX)
    if "@" in rest.rpartition("}")[2]:
        raise SLOError(f"objective {key!r}: a server metric is one value per run; it takes "
                       f"no window (scraped every server_metrics_interval)")
    parts = _SERVER_KEY.match(rest)
    name, selector, stat = (parts.group("name"), parts.group("selector"),
                            parts.group("stat") or "") if parts else (rest, None, "")
    labels: dict[str, str] = {}
    if selector is not None:
        try:
            labels = parse_selector(selector)
        except ValueError as exc:
            raise SLOError(f"objective {key!r}: {exc}") from None
    if not _PROMETHEUS_NAME.match(name):
        raise SLOError(f"objective {key!r}: {name!r} is not a Prometheus metric name; write "
                       f"'server.<name>.<stat>', e.g. 'server.vllm:gpu_cache_usage_perc.max'")
    stats = server_stats()
    if stat and stat not in stats:
        raise SLOError(f"objective {key!r}: unknown statistic {stat!r} of a server metric; "
                       f"gauges: avg, min, max, std, p1..p99; counters: total, rate; "
                       f"histograms: count, sum, avg, count_rate, sum_rate, p50_estimate.."
                       f"p99_estimate")
    if "baseline" in str(value):
        raise SLOError(f"objective {key!r}: a server metric has no interval to compare with "
                       f"a baseline; write an absolute threshold such as '< 0.9'")
    match = _THRESHOLD.match(str(value))
    if not match:
        raise SLOError(f"objective {key!r}: {value!r} is not '<op> <number>'; operators: "
                       f"{', '.join(OPERATORS)}")
    op, number, unit = match.groups()
    if unit:
        raise SLOError(f"objective {key!r}: a server metric is compared in the unit the "
                       f"server exports it in; write a bare number (got unit {unit!r})")
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    metric = f"{SERVER_PREFIX}{name}" + (f"{{{shown}}}" if labels else "")
    return Objective(key, metric, stat, op, float(number), str(value).strip(), "")


def valid_stats(metric: str) -> list[str]:
    """The statistics an objective on ``metric`` may name, for error messages."""
    spec = BY_TAG[metric.removeprefix("adj_")]
    if not spec.per_request:
        return ["(none: one number per run)"]
    percentiles = [s for s in STAT_NAMES if parse_percentile(s) is not None]
    if metric.startswith("adj_"):
        return [*percentiles, *ADJUSTED_STATS, "any pNN such as p999"]
    return [*STAT_NAMES, "any pNN such as p999"]


def parse_objectives(slo: Mapping[str, Any] | None) -> list[Objective]:
    if slo is None:
        return []
    if not isinstance(slo, Mapping):
        raise SLOError(f"slo must be a mapping of objective to threshold, got {slo!r}")
    return [parse_objective(str(k), str(v)) for k, v in slo.items()]


def check_applicable(objectives: list[Objective], profile: Mapping[str, Any],
                     streams: bool, produces_tokens: bool) -> None:
    """Refuse objectives the profile can never measure (TTFT of a non-streaming run, a
    server metric of a profile that scrapes none)."""
    for objective in objectives:
        if objective.turns is not None:
            _check_turns_applicable(objective, profile)
        if objective.server:
            if profile.get("server_metrics") in (None, False):
                raise SLOError(f"objective {objective.key!r} needs the server's metrics: add "
                               f"server_metrics=True (the endpoint's /metrics) or a list of "
                               f"/metrics URLs to the profile")
            continue
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


MULTI_TURN_DATASETS = ("multi_turn", "sharegpt")


def is_multi_turn_profile(profile: Mapping[str, Any]) -> bool:
    """Whether a profile's requests are turns of sessions: a session dataset file, or
    synthetic sessions (``aiperf.dataset.sessions.is_multi_turn``'s keys)."""
    from aiperf.plugin import normalize_name

    kind = profile.get("custom_dataset_type") or profile.get("dataset")
    # spelt as UserConfig takes a loader's name: any case, '-' or '_'
    kind = normalize_name(kind) if isinstance(kind, str) else kind
    try:
        turns = float(profile.get("conversation_turn_mean") or 1)
        spread = float(profile.get("conversation_turn_stddev") or 0)
    except (TypeError, ValueError):
        return False  # the config's own validation names the bad value
    return (kind in MULTI_TURN_DATASETS or profile.get("conversation_num") is not None
            or turns > 1 or spread > 0)


def _check_turns_applicable(objective: Objective, profile: Mapping[str, Any]) -> None:
    """A turn objective needs sessions, and the per-request table its values come from."""
    if not is_multi_turn_profile(profile):
        raise SLOError(f"objective {objective.key!r} is on turns of multi-turn sessions, "
                       f"but this profile sends single requests; add conversation_num / "
                       f"conversation_turn_mean > 1, or an input_file with "
                       f"custom_dataset_type {' or '.join(MULTI_TURN_DATASETS)}")
    if profile.get("export_records") is False or (
            profile.get("sketch") and not profile.get("export_records")):
        mode = "sketch mode keeps" if profile.get("sketch") else "export_records=False keeps"
        raise SLOError(f"objective {objective.key!r} needs each request's turn, which only "
                       f"the per-request table holds and {mode} none; set "
                       f"export_records=True")


# Collection scrapes each distinct URL list once per process: a module of tests on one
# server costs one scrape, not one per test.
_SCRAPED_NAMES: dict[tuple[str, ...], tuple[dict[str, str], list[str]]] = {}


def check_server_metric_names(objectives: list[Objective], config: UserConfig,
                              timeout: float = 2.0) -> list[str]:
    """At collection: scrape the profile's /metrics URLs once and refuse (SLOError) a
    server objective whose metric none of them exposes, or whose statistic its type lacks
    (a gauge has no ``total``), naming the close matches. When an URL cannot be reached
    (the server is not up yet), nothing is refused: the warnings returned say what was not
    checked, and the run itself still FAILs an objective whose metric stays missing."""
    server = [o for o in objectives if o.server]
    if not server or config.server_metrics is None:
        return []
    from aiperf.common.config import mask_url
    from aiperf.server_metrics import scrape_once, scrape_targets
    from aiperf.server_metrics.summary import default_stat, stats_of, suggest

    targets = scrape_targets(config)  # with the endpoint's credentials where they go
    urls = tuple(t.url for t in targets)
    if urls not in _SCRAPED_NAMES:
        types: dict[str, str] = {}
        errors: list[str] = []
        for target in targets:
            scrape = scrape_once(target, "baseline", timeout)
            if scrape.snapshot is None:
                errors.append(f"{mask_url(target.url)}: {scrape.error}")
                continue
            for name, family in scrape.snapshot.items():
                types[name] = family.type
                if family.type == "counter":
                    types[f"{name}_total"] = family.type
        _SCRAPED_NAMES[urls] = (types, errors)
    types, errors = _SCRAPED_NAMES[urls]
    if errors:
        keys = ", ".join(o.key for o in server)
        return [f"server metric objectives ({keys}) not checked at collection: "
                f"{'; '.join(errors)}"]
    where = ", ".join(mask_url(u) for u in urls)
    for objective in server:
        name = objective.server_name
        if name not in types:
            raise SLOError(f"objective {objective.key!r}: no metric {name!r} at {where}; "
                           f"{suggest(name, types)}")
        stat = objective.stat or default_stat(types[name])
        if stat not in stats_of(types[name]):
            raise SLOError(f"objective {objective.key!r}: {name} is a {types[name]}, which "
                           f"has no statistic {stat!r}; valid: "
                           f"{', '.join(stats_of(types[name]))}")
    return []


def check_goodput(goodput: Mapping[str, Any], streams: bool, produces_tokens: bool) -> None:
    """Goodput thresholds must name per-request, single-valued metrics this profile
    measures; otherwise no request could ever count as good."""
    for tag in goodput:
        problem = goodput_problem(tag, streams, produces_tokens)
        if problem is not None:
            usable = ", ".join(goodput_metrics(streams, produces_tokens))
            raise SLOError(f"goodput metric {tag!r} {problem}; usable here: {usable}")


IMPLICIT_ERROR_RATE = "request_error_rate"


def implicit_objectives(failed_request_threshold: float | None) -> list[Objective]:
    """What a load test with no objectives checks: its requests succeeded (all of them,
    or all but the profile's ``failed_request_threshold`` percent). A load test never
    passes while checking nothing."""
    limit = failed_request_threshold or 0.0
    text = f"<= {limit:g} %"
    objective = parse_objective(IMPLICIT_ERROR_RATE, text)
    return [Objective(objective.key, objective.metric, objective.stat, objective.op,
                      objective.threshold, objective.text, objective.unit, implicit=True)]


def evaluate(objectives: list[Objective], result: ProfileResult,
             confidence: float = 0.95, steady: bool = False) -> list[Verdict]:
    """Each objective judged on the run (its steady window with ``steady``; a windowed
    objective on each window), see ``pytest_aiperf.judge``."""
    from pytest_aiperf.judge import judge_runs

    return judge_runs(objectives, [result], result.config, steady, confidence)


TABLE_HEADER = ("Objective", "Measured", "Interval", "Threshold", "Verdict", "n", "Window")
_LEFT_COLUMNS = (0, 3, 4, 6)


def table_row(v: Verdict) -> tuple[str, ...]:
    key = v.objective.key + (" (implicit)" if v.objective.implicit else "")
    return (key, v.measured_text, v.interval_text, v.objective.text, v.status,
            f"n={v.count}", v.window)


def format_table(verdicts: list[Verdict]) -> str:
    rows = [TABLE_HEADER, *(table_row(v) for v in verdicts)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADER))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) if j in _LEFT_COLUMNS else c.rjust(widths[j])
                               for j, c in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {v.objective.key}: {v.note}" for v in verdicts if v.note]
    return "\n".join([*lines, *notes])


def _fmt(value: float, unit: str) -> str:
    if math.isinf(value):
        return "inf"
    if not unit:  # a server metric, in its own unit: its significant digits, not 2 decimals
        return f"{value:,.6g}"
    return f"{value:,.2f} {unit}"
