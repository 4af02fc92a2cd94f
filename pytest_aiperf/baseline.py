"""Baselines in pytest: which stored run a load test compares with, the regression gates
(``--aiperf-compare-fail``, marker key ``regress``), relative objectives
(``"< baseline + 10 %"``) and storing results (``--aiperf-save`` / ``--aiperf-autosave``).

Storage and the statistics are the engine's (``aiperf.baselines``, ``aiperf.statistics.
difference``); this module decides when they are used and turns their answers into rows of
the report and outcomes of the test. The rules it follows:

- a test compares when ``--aiperf-compare`` is given, or it has a gate (a rule) or a
  relative objective: a gate or a relative objective without ``--aiperf-compare`` compares
  with the latest stored run;
- the stored run must be of the same test id and the same profile fingerprint; a changed
  profile is not compared (the differing keys are named), another machine only warns;
- only gated rows decide the outcome: REGRESSED fails, IMPROVED fails with
  ``aiperf_fail_on_improvement``, INCONCLUSIVE follows ``aiperf_inconclusive``. Rows that
  ``--aiperf-compare`` shows without a rule are informational and say ``worse``,
  ``better``, ``unchanged`` or ``inconclusive`` in lower case, so that the word REGRESSED
  is only ever seen beside a failed test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf.metrics.definitions import BY_TAG
from pytest_aiperf.slo import Objective, Verdict

if TYPE_CHECKING:
    import numpy as np

    from aiperf.baselines.compare import Comparison, RegressionRule
    from aiperf.baselines.machine import MachineInfo
    from aiperf.baselines.storage import Storage, StoredRun
    from aiperf.common.config import UserConfig
    from aiperf.results import ProfileResult
    from aiperf.statistics.difference import Difference
    from pytest_aiperf.options import BaselineSettings

RULE_FORMS = ("time_to_first_token.p99:10%", "request_throughput:-5%",
              "request_latency.p50:+20ms")
# Words of rows no rule gates: never the statuses that decide an outcome.
INFO_WORDS = {"REGRESSED": "worse", "IMPROVED": "better", "UNCHANGED": "unchanged",
              "INCONCLUSIVE": "inconclusive"}


class BaselineError(ValueError):
    """A gate that does not parse or cannot be measured by the profile."""


class BaselineRequired(AssertionError):
    """``aiperf_require_baseline``: the test compares, and no stored run fits it."""


# -- rules --------------------------------------------------------------------------------


def parse_rules(texts: Sequence[str], where: str) -> list[RegressionRule]:
    """Gates as written (``METRIC[.STAT]:[+|-]N%`` or ``:[+|-]N<unit>``)."""
    from aiperf.baselines.compare import parse_rule
    from aiperf.errors import ConfigError

    rules = []
    for text in texts:
        try:
            rules.append(parse_rule(str(text).strip()))
        except (ConfigError, ValueError) as exc:
            raise BaselineError(f"{where}: {exc}") from None
    return rules


def regress_rules(value: Any) -> list[RegressionRule]:
    """The marker key ``regress``: ``{"time_to_first_token.p99": "10%"}`` or a list of
    ``"METRIC[.STAT]:MARGIN"`` strings."""
    if isinstance(value, dict):
        texts = [f"{key}:{margin}".replace(" ", "") for key, margin in value.items()]
    elif isinstance(value, list | tuple):
        texts = [str(v) for v in value]
    elif isinstance(value, str):
        texts = [value]
    else:
        raise BaselineError(f"regress must be a dict of METRIC[.STAT] to a margin ('10%', "
                            f"'+20ms', '-5%') or a list of expressions such as "
                            f"{', '.join(RULE_FORMS)}; got {value!r}")
    return parse_rules(texts, "regress")


def rule_key(rule: RegressionRule) -> tuple[str, str]:
    """What a gate compares: metric, and statistic with its turn range (a gate on
    ``[turn>=2]`` and one on every request are two gates)."""
    return (rule.metric, rule.statistic if rule.turns is None
            else f"{rule.statistic}[{rule.turns}]")


def merged_rules(session_rules: Sequence[RegressionRule],
                 marker_rules: Sequence[RegressionRule]) -> list[RegressionRule]:
    """A marker's gate on a metric and statistic replaces the session's on the same."""
    mine = {rule_key(r) for r in marker_rules}
    return [*(r for r in session_rules if rule_key(r) not in mine), *marker_rules]


def check_rules_applicable(rules: Sequence[RegressionRule], streams: bool,
                           produces_tokens: bool, endpoint: str,
                           multi_turn: bool | None = None) -> None:
    """A gate on a metric the profile never measures is refused at collection, and one on
    some turns (``[turn>=2]``) of a profile that sends single requests (``multi_turn``
    False; None: not known here, the comparison then says no request had a turn)."""
    for rule in rules:
        if rule.turns is not None and multi_turn is False:
            raise BaselineError(
                f"regress rule {rule.text!r} is on turns of multi-turn sessions ([{rule.turns}]"
                f"), but this profile sends single requests; add conversation_num / "
                f"conversation_turn_mean > 1, or a multi_turn or sharegpt dataset, or gate "
                f"{rule.key.partition('[')[0]} on every request")
        spec = BY_TAG.get(rule.metric)
        if spec is None:
            continue  # parse_rule names unknown metrics
        if spec.streaming_only and not streams:
            raise BaselineError(f"regress rule {rule.text!r} needs a streaming profile "
                                "(streaming=True, on an endpoint that streams)")
        if spec.tokens_only and not produces_tokens:
            raise BaselineError(f"regress rule {rule.text!r}: endpoint {endpoint!r} "
                                "produces no tokens")


# -- the "after" side ---------------------------------------------------------------------


def end_times_s(result: ProfileResult) -> np.ndarray:
    """When each successful profiling request ended, seconds from the run's first start, in
    the order of the per-request values (as ``StoredRun.end_times`` has them)."""
    import numpy as np

    timeline = result.timeline
    if not len(timeline):
        return np.empty(0)
    first = int(timeline.start_ns.min())
    return (timeline.end_ns[timeline.ok] - first) / 1e9


class ResultValues:
    """A run as B2's comparisons read it (``RunValues``): one result, or the chunks of
    ``extend`` pooled (values concatenated; each chunk's end times shifted past the
    previous chunk's, as if the runs had followed one another without a gap)."""

    def __init__(self, results: Sequence[ProfileResult]) -> None:
        self.results = list(results)
        self._turns: dict[int, np.ndarray | None] = {}  # per result: one scan of its table

    def turn_values(self, tag: str, low_index: int,
                    high_index: int | None) -> np.ndarray | None:
        """``tag``'s values of the turns in [``low_index``, ``high_index``] (0-based; None:
        no last) over the pooled runs, as ``StoredRun.turn_values`` reads a stored run; an
        ``adj_*`` tag gets one ``inf`` per failed request of those turns. None when a run
        kept no per-request table (or it does not match the timeline)."""
        import numpy as np

        from aiperf.baselines.storage import in_turn_range

        base = tag.removeprefix("adj_")
        parts: list[np.ndarray] = []
        failed = 0
        for i, result in enumerate(self.results):
            turns = self._record_turns(i, result)
            if turns is None:
                return None
            if base not in result or result[base].is_scalar:
                continue
            metric = result[base]
            index = np.asarray(metric.record_index, dtype=np.int64)
            if index.size != len(metric.values):
                return None
            chosen = in_turn_range(turns[index], low_index, high_index)
            parts.append(np.asarray(metric.values, dtype=np.float64)[chosen])
            if base != tag:
                failed += int(np.count_nonzero(in_turn_range(turns[~result.timeline.ok],
                                                         low_index, high_index)))
        if not parts:
            return None
        joined = np.concatenate(parts)
        return np.concatenate([joined, np.full(failed, np.inf)]) if base != tag else joined

    def _record_turns(self, i: int, result: ProfileResult) -> np.ndarray | None:
        if i not in self._turns:
            from aiperf.dataset.breakdowns import record_turns

            turns = record_turns(result.records) if len(result.records) else None
            self._turns[i] = (turns if turns is not None
                              and turns.size == len(result.timeline) else None)
        return self._turns[i]

    def metric_values(self, tag: str) -> np.ndarray | None:
        import numpy as np

        parts = [np.asarray(r[tag].values, dtype=np.float64) for r in self.results
                 if tag in r and not r[tag].is_scalar]
        return np.concatenate(parts) if parts else None

    def end_times(self) -> np.ndarray | None:
        import numpy as np

        pieces, offset = [], 0.0
        for result in self.results:
            ends = end_times_s(result)
            pieces.append(ends + offset)
            duration = (result.metric("benchmark_duration") if "benchmark_duration" in result
                        else 0.0)
            offset += max(duration, float(ends.max()) if ends.size else 0.0)
        joined = np.concatenate(pieces) if pieces else np.empty(0)
        return joined if joined.size else None


# -- difference intervals -----------------------------------------------------------------


def rate_metric(metric: str) -> bool:
    return not BY_TAG[metric].per_request


def difference(metric: str, statistic: str, before: Any, after: Any,
               confidence: float) -> Difference:
    """The interval on ``after - before`` of one statistic (a throughput's is "rate"), read
    the way the gates read it (``aiperf.baselines.compare``: token-weighted throughputs,
    non-finite values dropped; NaN estimates when a run lacks the metric)."""
    from aiperf.baselines.compare import RegressionRule, compare

    stat = "rate" if rate_metric(metric) else statistic
    probe = RegressionRule(text=f"{metric}.{stat}", metric=metric, statistic=stat,
                           margin=0.0, relative=False, worse="up")
    return compare(before, after, [probe], confidence)[0].difference


def judge_relative(objective: Objective, before: Any, after: Any, confidence: float,
                   sent: int, source: str) -> Verdict:
    """A relative objective on the interval of ``after - baseline``: for ``<`` PASS when
    its upper end is below the allowance, FAIL when its lower end is not, INCONCLUSIVE
    otherwise (``>`` mirrors it). ``confidence`` holds for each end on its own, as for
    every other verdict: the two-sided interval asked of the engine is at 2c - 1."""
    from dataclasses import replace

    assert objective.baseline is not None
    diff = difference(objective.metric, objective.stat, before, after,
                      2.0 * confidence - 1.0)
    if math.isnan(diff.after):  # like any objective whose metric was not measured
        return Verdict(objective, None, "FAIL", 0, sent, None, None, "not measured",
                       f"{objective.metric} was not measured in this run")
    if math.isnan(diff.before):
        return Verdict(objective, diff.after, "INCONCLUSIVE", 0, sent, (None, None),
                       confidence, "no baseline value",
                       f"the baseline {source} did not measure {objective.metric}")
    allowance = objective.baseline.allowance(diff.before)
    threshold = diff.before + allowance
    concrete = replace(objective, threshold=threshold)
    low = diff.low if math.isfinite(diff.low) else None
    high = diff.high if math.isfinite(diff.high) else None
    status = _decide_delta(objective.op, low, high, allowance)
    bounds = (None if low is None else diff.before + low,
              None if high is None else diff.before + high)
    count = after.metric_values(objective.metric)
    n = int(count.size) if count is not None else sent
    note = (f"baseline {source}: {diff.before:,.2f} {objective.unit}, so the threshold is "
            f"{objective.op} {threshold:,.2f} {objective.unit}; bounds of after - baseline "
            f"+ baseline ({diff.method})")
    return Verdict(concrete, diff.after, status, n, sent, bounds, confidence,
                   f"difference vs baseline: {diff.method}", note)


def _decide_delta(op: str, low: float | None, high: float | None, allowance: float) -> str:
    """PASS when the bound on the objective's side meets the allowance, FAIL when the bound
    on the other side breaks it (the rule of ``aiperf.statistics.decide``)."""
    from aiperf.statistics import Interval, decide

    interval = Interval(None, low, high, 0.0, "difference", 0)
    return decide(interval, op, allowance)


# -- comparison rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonRow:
    """One compared statistic as the reports show it (and as xdist workers send it)."""

    key: str              # "time_to_first_token.p99", "request_throughput"
    rule: str             # as written, "time_to_first_token.p99:10%"
    unit: str
    before: float
    after: float
    delta: float
    low: float
    high: float
    relative: bool        # the change is shown as a fraction of before
    status: str           # REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE
    gated: bool           # a rule decides the outcome with it; else informational
    confidence: float
    method: str
    text: str             # B2's one-line description

    @property
    def word(self) -> str:
        """What the status column says: the status for a gate, a lower-case word for an
        informational row."""
        return self.status if self.gated else INFO_WORDS.get(self.status, self.status.lower())

    def change_text(self) -> str:
        """``+28.2 % [+19.9, +36.5]`` or ``+50.8 ms [+39.1, +62.0]``."""
        if self.relative and self.before:
            scale, unit = 100.0 / abs(self.before), "%"
        else:
            scale, unit = 1.0, self.unit
        low, high = (_signed(v * scale) for v in (self.low, self.high))
        return f"{_signed(self.delta * scale)} {unit} [{low}, {high}]"

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for name in ("before", "after", "delta", "low", "high"):
            data[name] = _json_number(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComparisonRow:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name in ("before", "after", "delta", "low", "high"):
            values[name] = float(values[name])
        return cls(**values)


def _json_number(value: float) -> float | str:
    """JSON has no infinity or NaN (a run that did not measure a metric): as strings that
    ``float`` reads back."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _signed(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:+,.1f}"


def row_of(comparison: Comparison, gated: bool) -> ComparisonRow:
    rule = comparison.rule
    return ComparisonRow(rule.key, rule.text, rule.unit, comparison.before,
                         comparison.after, comparison.delta, comparison.low, comparison.high,
                         comparison.relative, comparison.status, gated,
                         comparison.confidence, comparison.method, comparison.describe())


@dataclass
class BaselineState:
    """What a record was compared with, or why it was not."""

    status: str  # "compared", "missing", "profile changed"
    which: str = "latest"
    source: str | None = None  # "0003_main, saved 2026-11-30T12:00:00Z"
    path: str | None = None
    differing: list[str] = field(default_factory=list)
    machine: list[str] = field(default_factory=list)
    storage: str | None = None
    problem: str | None = None  # a stored file that could not be read

    def line(self) -> str:
        if self.status == "compared":
            return f"vs baseline {self.source}"
        if self.status == "profile changed":
            return (f"not compared with baseline {self.source}: the profile changed "
                    f"({', '.join(self.differing)})")
        if self.problem:
            return f"no usable baseline ({self.which}): {self.problem}"
        return f"no stored baseline ({self.which}) for this test in {self.storage}"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# -- the session's baselines ---------------------------------------------------------------


class Baselines:
    """The session's storage and gates (one per pytest process: an xdist worker saves and
    compares its own tests; files are per test, so workers never write the same file)."""

    def __init__(self, settings: BaselineSettings) -> None:
        self.settings = settings
        self._storage: Storage | None = None
        self._machine: MachineInfo | None = None
        self._rules: list[RegressionRule] | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            from aiperf.baselines.storage import Storage

            self._storage = Storage(self.settings.storage, keep=self.settings.keep)
        return self._storage

    def machine(self) -> MachineInfo:
        if self._machine is None:  # git and /proc once per session, not once per test
            from aiperf.baselines.machine import this_machine

            self._machine = this_machine(self.settings.storage.parent)
        return self._machine

    def session_rules(self) -> list[RegressionRule]:
        if self._rules is None:
            self._rules = parse_rules(self.settings.rules, "aiperf_compare_fail")
        return self._rules

    def wanted(self, rules: Sequence[RegressionRule],
               objectives: Sequence[Objective]) -> bool:
        """Whether a test compares: asked for, or gated, or with a relative objective."""
        return (self.settings.compare is not None or bool(rules)
                or any(o.relative for o in objectives))

    def lookup(self, test_id: str, config: UserConfig) -> tuple[StoredRun | None,
                                                                BaselineState]:
        """The stored run this run compares with, or None and why."""
        from aiperf.baselines.fingerprint import differing_keys, fingerprint
        from aiperf.baselines.machine import machine_differences
        from aiperf.baselines.storage import StorageError

        which = self.settings.compare or "latest"
        state = BaselineState("missing", which=which, storage=str(self.settings.storage))
        try:
            stored = self.storage.load(test_id, which)
        except StorageError as exc:  # a damaged file is no baseline, and says why
            state.problem = str(exc)
            return None, state
        if stored is None:
            return None, state
        state.source = f"{stored.number:04d}_{stored.name}, saved {stored.saved_at}"
        differing = differing_keys(stored.fingerprint, fingerprint(config))
        if differing:
            state.status, state.differing = "profile changed", differing
            return None, state
        state.status = "compared"
        state.machine = machine_differences(stored.machine, self.machine())
        return stored, state

    def compare(self, before: Any, after: Any, rules: Sequence[RegressionRule],
                confidence: float) -> list[ComparisonRow]:
        """Gated rows for ``rules``; with ``--aiperf-compare``, informational rows for the
        default statistics no rule covers (those both runs measured)."""
        from aiperf.baselines.compare import DEFAULT_RULES, compare

        rows = [row_of(c, True) for c in compare(before, after, list(rules), confidence)]
        if self.settings.compare is None:
            return rows
        covered = {rule_key(r) for r in rules}
        extra = [r for r in DEFAULT_RULES if rule_key(r) not in covered]
        return rows + [row_of(c, False) for c in compare(before, after, extra, confidence,
                                                         skip_unmeasured=True)]

    def save(self, test_id: str, result: ProfileResult) -> Path:
        assert self.settings.save is not None
        return self.storage.save(test_id, result, self.settings.save)


RelativeJudge = Callable[[Objective, Sequence["ProfileResult"], int], Verdict]


def relative_judge(before: StoredRun, source: str) -> Callable[[float], RelativeJudge]:
    """A judge of relative objectives against ``before``, at a given confidence."""

    def at(confidence: float) -> RelativeJudge:
        def judge(objective: Objective, results: Sequence[ProfileResult],
                  sent: int) -> Verdict:
            return judge_relative(objective, before, ResultValues(results), confidence,
                                  sent, source)

        return judge

    return at


# -- outcomes -----------------------------------------------------------------------------


def gate_failures(records: Sequence[Any], fail_on_improvement: bool) -> list[str]:
    """Why the gates fail the test (empty: they do not): a REGRESSED gate always, an
    IMPROVED one with ``aiperf_fail_on_improvement``."""
    rows = [c for r in records for c in r.comparisons if c.gated]
    regressed = sum(1 for c in rows if c.status == "REGRESSED")
    improved = sum(1 for c in rows if c.status == "IMPROVED")
    heads = []
    if regressed:
        heads.append(f"{regressed} of {len(rows)} gates REGRESSED vs baseline")
    if improved and fail_on_improvement:
        heads.append(f"{improved} of {len(rows)} gates IMPROVED vs baseline "
                     "(aiperf_fail_on_improvement: store a new baseline)")
    return heads


def missing_baselines(records: Sequence[Any]) -> list[Any]:
    """Runs that wanted to compare and found no stored run that fits."""
    return [r for r in records if r.baseline is not None and r.baseline.status != "compared"]


# -- text ---------------------------------------------------------------------------------

COMPARISON_HEADER = ("Metric", "Before", "After", "Change [interval]", "Status")


def comparison_lines(rows: Sequence[ComparisonRow], state: BaselineState | None,
                     indent: str = "  ") -> list[str]:
    """The "vs baseline" block of one run: its head line, then a row per statistic."""
    lines = [] if state is None else [state.line()]
    if state is not None and state.machine:
        lines.append(f"{indent}(another machine: {'; '.join(state.machine)})")
    if not rows:
        return lines
    table = [COMPARISON_HEADER, *((r.key, _value(r.before, r.unit), _value(r.after, r.unit),
                                   r.change_text(), _status(r)) for r in rows)]
    widths = [max(len(t[i]) for t in table) for i in range(len(COMPARISON_HEADER))]
    for index, cells in enumerate(table):
        lines.append(indent + "  ".join(
            c.ljust(widths[i]) if i in (0, 4) else c.rjust(widths[i])
            for i, c in enumerate(cells)).rstrip())
        if index == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    if any(not r.gated for r in rows):
        lines.append(f"{indent}(lower-case rows are informational: no rule gates them; "
                     "add --aiperf-compare-fail or regress= to fail on them)")
    lines.append(f"{indent}intervals: two-sided at {rows[0].confidence * 100:g} % confidence "
                 "(methods in summary.json)")
    return lines


def _status(row: ComparisonRow) -> str:
    return row.word if not row.gated else f"{row.status} ({_margin(row.rule)})"


def _margin(rule_text: str) -> str:
    return "margin " + rule_text.rpartition(":")[2]


def _value(value: float, unit: str) -> str:
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:,.2f} {unit}".rstrip()
