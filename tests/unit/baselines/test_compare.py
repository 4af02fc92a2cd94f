"""Regression rules: the grammar and its errors, the four statuses and which way is worse,
error rates and power by simulation, and ``compare`` on in-memory and stored runs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.baselines.compare import (
    DEFAULT_RULES,
    FORMS,
    Comparison,
    RegressionRule,
    comparable_metrics,
    compare,
    judge_change,
    parse_rule,
)
from aiperf.errors import ConfigError
from aiperf.statistics import Difference, difference_interval, rate_difference
from tests.unit.statistics._simulation import (
    ALPHA,
    Distribution,
    allowed_excess,
    bimodal,
    lognormal,
)
from tests.unit.statistics.test_difference import closed_loop_ends

N = 500


class Run:
    """Per-request values in memory, as a stored run or an artifact directory gives them."""

    def __init__(self, values: dict[str, np.ndarray], ends: np.ndarray | None = None) -> None:
        self.values = values
        self.ends = ends

    def metric_values(self, tag: str) -> np.ndarray | None:
        return self.values.get(tag)

    def end_times(self) -> np.ndarray | None:
        return self.ends


# -- the grammar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "statistic", "margin", "relative", "worse"),
    [
        ("time_to_first_token.p99:10%", "time_to_first_token", "p99", 0.1, True, "up"),
        ("request_throughput:-5%", "request_throughput", "rate", 0.05, True, "down"),
        ("request_throughput:5%", "request_throughput", "rate", 0.05, True, "down"),
        ("request_throughput:+5%", "request_throughput", "rate", 0.05, True, "up"),
        ("request_throughput.rate:2 req/s", "request_throughput", "rate", 2.0, False, "down"),
        ("output_token_throughput.avg:3 tok/s", "output_token_throughput", "rate", 3.0,
         False, "down"),
        ("request_latency.p50:+20ms", "request_latency", "p50", 20.0, False, "up"),
        ("request_latency:1.5s", "request_latency", "avg", 1500.0, False, "up"),
        ("request_latency.p90:250us", "request_latency", "p90", 0.25, False, "up"),
        ("  inter_token_latency.p99.9 : 0 % ", "inter_token_latency", "p99.9", 0.0, True,
         "up"),
        ("inter_token_latency.p999:.5%", "inter_token_latency", "p999", 0.005, True, "up"),
        ("output_token_throughput_per_user.p50:-10%", "output_token_throughput_per_user",
         "p50", 0.1, True, "down"),
        ("output_sequence_length.avg:-8 tokens", "output_sequence_length", "avg", 8.0, False,
         "down"),
        ("total_token_throughput:1e2 tokens/s", "total_token_throughput", "rate", 100.0, False,
         "down"),
    ],
)
def test_valid_rules(text: str, metric: str, statistic: str, margin: float, relative: bool,
                     worse: str) -> None:
    rule = parse_rule(text)
    assert (rule.metric, rule.statistic, rule.relative, rule.worse) == (
        metric, statistic, relative, worse)
    assert rule.margin == pytest.approx(margin)
    assert rule.text == text.strip() == str(rule)
    assert parse_rule(rule.text) == rule


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("request_latency", "no ':'"),
        ("request_latncy.p99:10%", "'request_latncy' is not a metric that can be compared"),
        ("request_count:10%", "'request_count' is not a metric that can be compared"),
        ("adj_request_latency.p99:10%", "is not a metric that can be compared"),
        ("request_latency.max:10%", "unknown statistic 'max'"),
        ("request_latency.p100:10%", "unknown statistic 'p100'"),
        ("request_latency.:10%", "unknown statistic ''"),
        ("request_throughput.p99:5%", "one number per run"),
        ("request_latency.p99:", "is not [+|-], a number"),
        ("request_latency.p99:ten%", "is not [+|-], a number"),
        ("request_latency.p99:+-5%", "is not [+|-], a number"),
        ("request_latency.p99:20", "has no unit: give % or one of ns, us"),
        ("request_latency.p99:20 tokens", "unit 'tokens' does not fit request_latency"),
        ("request_throughput:5 ms", "unit 'ms' does not fit request_throughput"),
        ("request_latency.p99:1e999%", "not a finite number"),
        ("request_latency.p99:nan%", "is not [+|-], a number"),
        ("request_latency.p99:5٣%", "unit '٣%' does not fit"),  # another script's digit
    ],
)
def test_errors_name_the_rule_and_the_allowed_forms(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rule(text)
    message = str(caught.value)
    assert message.startswith(f"regression rule {text.strip()!r}: ")
    assert problem in message
    assert message.endswith(FORMS)
    assert "METRIC[.STAT]:[+|-]N%" in message and "METRIC[.STAT]:[+|-]N<unit>" in message


def test_an_unknown_metric_lists_the_comparable_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rule("ttft.p99:10%")
    assert ", ".join(comparable_metrics()) in str(caught.value)
    assert "request_throughput" in comparable_metrics()
    assert "request_count" not in comparable_metrics()


def test_a_non_string_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not a string"):
        parse_rule(10)  # type: ignore[arg-type]


def _outcome(text: str) -> RegressionRule | None:
    try:
        rule = parse_rule(text)
    except ConfigError as exc:
        assert "regression rule" in str(exc) and FORMS in str(exc)
        return None
    assert isinstance(rule, RegressionRule)
    assert rule.margin >= 0 and math.isfinite(rule.margin)
    return rule


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_string_is_a_rule_or_a_config_error(text: str) -> None:
    _outcome(text)


_PIECES = st.tuples(
    st.sampled_from([*comparable_metrics(), "nope", "", "adj_request_latency"]),
    st.sampled_from(["", ".avg", ".p50", ".p99.9", ".p999", ".rate", ".max", ".", ".p0"]),
    st.sampled_from([":", " : ", "", "::"]),
    st.sampled_from(["", "+", "-", "+-", " "]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
              st.integers(-5, 10**400).map(str), st.sampled_from(["", ".", "1e", "0x10"])),
    st.sampled_from(["%", " %", "ms", " s", "tokens/s", "req/s", "", "%%", "furlongs"]),
)


@settings(max_examples=400, deadline=None)
@given(_PIECES)
def test_near_miss_rules_are_rules_or_config_errors(pieces: tuple[str, ...]) -> None:
    rule = _outcome("".join(pieces))
    metric, sign = pieces[0], pieces[3]
    if rule is not None:  # what parsed is what was written
        assert rule.metric == metric
        assert rule.worse == {"+": "up", "-": "down"}.get(sign.strip(), rule.worse)


# -- judging one change -----------------------------------------------------------------


def _diff(low: float, high: float, before: float = 100.0) -> Difference:
    return Difference("p99", before, before + (low + high) / 2, (low + high) / 2, low, high,
                      0.95, "test")


@pytest.mark.parametrize(
    ("low", "high", "status"),
    [
        (11.0, 30.0, "REGRESSED"),     # the whole interval is worse than +10
        (-30.0, -11.0, "IMPROVED"),    # the whole interval is better than -10
        (-9.0, 9.0, "UNCHANGED"),      # within [-10, +10]
        (-10.0, 10.0, "UNCHANGED"),    # the margins themselves are inside
        (5.0, 15.0, "INCONCLUSIVE"),   # straddles +10
        (-15.0, -5.0, "INCONCLUSIVE"),  # straddles -10
        (-20.0, 20.0, "INCONCLUSIVE"),  # wider than the margins
        (10.0, 30.0, "INCONCLUSIVE"),  # low == margin is not worse than the margin
        (11.0, math.inf, "REGRESSED"),  # one bound is enough to be sure
        (-math.inf, math.inf, "INCONCLUSIVE"),
    ],
)
def test_the_four_outcomes(low: float, high: float, status: str) -> None:
    assert judge_change(_diff(low, high), parse_rule("request_latency.p99:10ms")) == status
    # The same interval in percent of before = 100 gives the same answers.
    assert judge_change(_diff(low, high), parse_rule("request_latency.p99:10%")) == status


@pytest.mark.parametrize(
    ("low", "high", "status"),
    [(-30.0, -11.0, "REGRESSED"), (11.0, 30.0, "IMPROVED"), (-9.0, 9.0, "UNCHANGED"),
     (5.0, 15.0, "INCONCLUSIVE")],
)
def test_throughput_is_worse_down(low: float, high: float, status: str) -> None:
    assert judge_change(_diff(low, high), parse_rule("request_throughput:10%")) == status
    assert judge_change(_diff(low, high), parse_rule("request_throughput:-10%")) == status
    # "+" turns it round: a rise in throughput is then what regresses.
    flipped = {"REGRESSED": "IMPROVED", "IMPROVED": "REGRESSED"}.get(status, status)
    assert judge_change(_diff(low, high), parse_rule("request_throughput:+10%")) == flipped


def test_with_margin_zero_every_finite_interval_decides() -> None:
    rule = parse_rule("request_latency.p50:0%")
    assert judge_change(_diff(0.5, 3.0), rule) == "REGRESSED"
    assert judge_change(_diff(-3.0, -0.5), rule) == "IMPROVED"
    assert judge_change(_diff(-3.0, 0.5), rule) == "UNCHANGED"
    assert judge_change(_diff(0.0, 3.0), rule) == "UNCHANGED"  # contains 0
    assert judge_change(_diff(-math.inf, math.inf), rule) == "INCONCLUSIVE"
    assert judge_change(_diff(-1.0, 1.0, before=0.0), rule) == "INCONCLUSIVE"  # no scale
    assert judge_change(_diff(-1.0, 1.0, before=0.0), parse_rule(
        "request_latency.p50:0ms")) == "UNCHANGED"


# -- error rates and power, by simulation -----------------------------------------------


def _statuses(dist: Distribution, rule: RegressionRule, slower: float, trials: int,
              seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    before = dist.draw(rng, (trials, N))
    after = dist.draw(rng, (trials, N)) * slower
    return [judge_change(difference_interval(b, a, rule.statistic, seed=i), rule)
            for i, (b, a) in enumerate(zip(before, after, strict=True))]


@pytest.mark.parametrize("statistic", ["p50", "p99", "avg"])
@pytest.mark.parametrize("dist", [lognormal(1.0), bimodal(0.9)], ids=lambda d: d.name)
def test_no_change_is_flagged_at_most_at_alpha(dist: Distribution, statistic: str) -> None:
    trials = 400
    rule = parse_rule(f"request_latency.{statistic}:0%")
    statuses = _statuses(dist, rule, 1.0, trials, seed=20)
    flagged = sum(s in ("REGRESSED", "IMPROVED") for s in statuses) / trials
    assert flagged <= ALPHA + allowed_excess(ALPHA, trials)
    assert set(statuses) <= {"REGRESSED", "IMPROVED", "UNCHANGED"}  # margin 0 decides


@pytest.mark.parametrize(
    ("dist", "statistic"),
    [(lognormal(0.5), "p50"), (lognormal(0.5), "avg"), (bimodal(0.9), "p50"),
     (bimodal(0.9), "p99"), (bimodal(0.9), "avg")],
    ids=lambda x: x.name if isinstance(x, Distribution) else x,
)
def test_a_20_percent_slowdown_on_500_requests_is_found(dist: Distribution,
                                                        statistic: str) -> None:
    """Measured power (400 trials): lognormal sigma 0.5 p50 0.995, avg 1.0; bimodal p50, p99
    1.0, avg 0.975. Not asserted, because no method could: lognormal sigma 1 (p50 0.65, avg
    0.63) and any p99 of a lognormal (sigma 0.5: 0.35), where 500 requests do not pin the
    statistic within 20 %."""
    trials = 200
    rule = parse_rule(f"request_latency.{statistic}:0%")
    statuses = _statuses(dist, rule, 1.2, trials, seed=21)
    assert sum(s == "REGRESSED" for s in statuses) / trials >= 0.95
    assert "IMPROVED" not in statuses


@pytest.mark.parametrize("statistic", ["p50", "avg"])
@pytest.mark.parametrize("dist", [lognormal(0.5), lognormal(1.0)], ids=lambda d: d.name)
def test_a_5_percent_slowdown_does_not_break_a_10_percent_margin(dist: Distribution,
                                                                 statistic: str) -> None:
    trials = 300
    rule = parse_rule(f"request_latency.{statistic}:10%")
    statuses = _statuses(dist, rule, 1.05, trials, seed=22)
    assert sum(s == "REGRESSED" for s in statuses) / trials <= ALPHA + allowed_excess(
        ALPHA, trials)


def test_a_slower_server_regresses_throughput_and_a_faster_one_improves_it() -> None:
    rule = parse_rule("request_throughput:0%")
    rng = np.random.default_rng(23)
    base = Run({}, closed_loop_ends(rng, N))
    slower = Run({}, closed_loop_ends(rng, N, slower=1.25))
    faster = Run({}, closed_loop_ends(rng, N, slower=0.8))
    [worse] = compare(base, slower, [rule])
    [better] = compare(base, faster, [rule])
    assert (worse.status, better.status) == ("REGRESSED", "IMPROVED")
    assert worse.delta < 0 < better.delta
    assert worse.describe().endswith("REGRESSED (< 0 %)")


# -- compare ---------------------------------------------------------------------------


def _latency_run(rng: np.random.Generator, scale: float, n: int = 1000) -> Run:
    latency = rng.lognormal(4.0, 0.5, n) * scale
    return Run({"request_latency": latency, "time_to_first_token": latency / 5,
                "output_sequence_length": rng.integers(50, 150, n).astype(float),
                "input_sequence_length": np.full(n, 100.0)},
               closed_loop_ends(rng, n, sigma=0.5, slower=scale))


def test_compare_judges_every_rule_in_order() -> None:
    rng = np.random.default_rng(24)
    before, after = _latency_run(rng, 1.0), _latency_run(rng, 1.3)
    rules = [parse_rule(t) for t in ("time_to_first_token.p99:10%", "request_latency.p50:+1s",
                                     "output_token_throughput:-5%",
                                     "total_token_throughput:-5%")]
    results = compare(before, after, rules)
    assert [c.rule for c in results] == rules
    assert [c.status for c in results] == ["REGRESSED", "UNCHANGED", "REGRESSED", "REGRESSED"]
    ttft = results[0]
    assert ttft.before == pytest.approx(np.percentile(before.values["time_to_first_token"], 99))
    assert ttft.relative and ttft.confidence == 0.95
    assert ttft.method.startswith("exact bootstrap")
    assert "middle 90 %" in results[2].method
    # Token throughput weighs each request by its tokens.
    expected = rate_difference(before.ends, after.ends,
                               before_weights=before.values["output_sequence_length"],
                               after_weights=after.values["output_sequence_length"])
    assert results[2].before == expected.before and results[2].low == expected.low


def test_describe_states_the_change_its_interval_and_the_margin() -> None:
    rule = parse_rule("time_to_first_token.p99:10%")
    comparison = Comparison(rule=rule, status="REGRESSED", before=180.2, after=231.0,
                            delta=50.8, low=35.86, high=65.77, relative=True, method="m",
                            confidence=0.95)
    assert comparison.describe() == ("time_to_first_token.p99 180.2 -> 231.0 ms (+28.2 %, "
                                     "95 % interval +19.9 .. +36.5 %): REGRESSED (> +10 %)")
    absolute = comparison.model_copy(update={
        "rule": parse_rule("request_latency.p50:+20ms"), "status": "INCONCLUSIVE",
        "relative": False})
    assert absolute.describe() == ("request_latency.p50 180.2 -> 231.0 ms (+50.80 ms, 95 % "
                                   "interval +35.86 .. +65.77 ms): INCONCLUSIVE (interval "
                                   "crosses ±20 ms)")
    improved = comparison.model_copy(update={
        "rule": parse_rule("request_throughput:-5%"), "status": "IMPROVED"})
    assert improved.describe().endswith("requests/sec (+28.2 %, 95 % interval +19.9 .. "
                                        "+36.5 %): IMPROVED (> +5 %)")
    unchanged = comparison.model_copy(update={"rule": DEFAULT_RULES[0],
                                              "status": "UNCHANGED"})
    assert unchanged.describe().endswith("UNCHANGED (interval contains 0)")


def test_a_metric_one_run_lacks_is_inconclusive_and_says_which() -> None:
    rng = np.random.default_rng(25)
    streaming = _latency_run(rng, 1.0)
    plain = Run({"request_latency": rng.lognormal(4.0, 0.5, 1000)}, None)
    results = compare(plain, streaming, [parse_rule("time_to_first_token.p50:5%"),
                                         parse_rule("request_throughput:5%"),
                                         parse_rule("output_token_throughput:5%")])
    assert [c.status for c in results] == ["INCONCLUSIVE"] * 3
    assert "time_to_first_token was not measured in the before run" in results[0].method
    assert math.isnan(results[0].before) and results[0].after > 0
    assert "the before run has no request end times" in results[1].method
    assert "no interval: " in results[0].describe()
    assert results[0].describe().endswith("INCONCLUSIVE (no interval)")


def test_default_rules_skip_what_neither_run_measured_when_asked() -> None:
    rng = np.random.default_rng(26)
    plain = [Run({"request_latency": rng.lognormal(4.0, 0.5, 1000)}, closed_loop_ends(rng, 1000))
             for _ in range(2)]
    kept = compare(plain[0], plain[1], DEFAULT_RULES, skip_unmeasured=True)
    assert [c.rule.key for c in kept] == ["request_latency.p50", "request_latency.p99",
                                          "request_throughput"]
    assert len(compare(plain[0], plain[1], DEFAULT_RULES)) == len(DEFAULT_RULES)


def test_token_counts_that_do_not_match_the_requests_are_not_used() -> None:
    rng = np.random.default_rng(27)
    before, after = _latency_run(rng, 1.0), _latency_run(rng, 1.0)
    after.values["output_sequence_length"] = after.values["output_sequence_length"][:-1]
    [result] = compare(before, after, [parse_rule("output_token_throughput:5%")])
    assert result.status == "INCONCLUSIVE"
    assert "the after run's token counts do not match its requests" in result.method


def test_non_finite_values_are_dropped_and_named() -> None:
    rng = np.random.default_rng(28)
    before, after = _latency_run(rng, 1.0), _latency_run(rng, 1.0)
    latency = after.values["request_latency"].copy()
    latency[:3] = np.nan
    after.values["request_latency"] = latency
    [result] = compare(before, after, [parse_rule("request_latency.p50:10%")])
    assert result.after == pytest.approx(np.percentile(latency[3:], 50))
    assert result.method.endswith("(non-finite values dropped: 3 in the after run)")


def test_a_hand_built_rate_rule_on_a_run_level_count_is_inconclusive() -> None:
    rule = RegressionRule(text="request_count.rate", metric="request_count", statistic="rate",
                          margin=0.0, relative=False, worse="up")
    run = Run({}, np.arange(1.0, 501.0))
    [result] = compare(run, run, [rule])
    assert result.status == "INCONCLUSIVE"
    assert "request_count is not a throughput" in result.method


def test_default_rules() -> None:
    assert [r.key for r in DEFAULT_RULES] == [
        "time_to_first_token.p50", "time_to_first_token.p99", "inter_token_latency.p50",
        "inter_token_latency.p99", "request_latency.p50", "request_latency.p99",
        "request_throughput"]
    assert all(r.margin == 0 and r.relative for r in DEFAULT_RULES)
    assert DEFAULT_RULES[-1].worse == "down"


def test_stored_runs_compare() -> None:
    """B1's StoredRun is a RunValues: a run whose TTFT grew 50 % regresses."""
    from aiperf.baselines.machine import MachineInfo
    from aiperf.baselines.storage import stored_run
    from tests.harness.synthetic_runs import synthetic_result

    machine = MachineInfo(cpu_model="test", cores=2, python="3.11", package_version="0",
                          platform="linux")
    runs = [stored_run("t::x", synthetic_result(1000, ttft_ms=ttft, seed=seed), "auto", i,
                       machine=machine)
            for i, (ttft, seed) in enumerate(((40.0, 1), (60.0, 2)))]
    results = {c.rule.key: c for c in compare(runs[0], runs[1], DEFAULT_RULES)}
    assert results["time_to_first_token.p50"].status == "REGRESSED"
    assert results["time_to_first_token.p50"].relative
    low, high = results["time_to_first_token.p50"].difference.relative[1:]
    assert low < 0.5 < high  # the 50 % the runs were built with
    assert results["inter_token_latency.p50"].status == "UNCHANGED"
    # Each request took ~65 ms, then ~85 ms, in 4 back-to-back slots: ~24 % fewer a second.
    assert results["request_throughput"].status == "REGRESSED"
    assert re.match(r"^time_to_first_token\.p50 \d", results[
        "time_to_first_token.p50"].describe())
