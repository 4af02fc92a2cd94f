"""Objectives on some turns of multi-turn sessions (``metric.stat[turn>=2]``): parsing,
collection checks, and verdicts on real aggregated results (``tests/harness/session_runs``:
a cold first turn at ~300 ms TTFT, warm later turns at ~20 ms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aiperf.dataset.breakdowns import turn_sample, turn_values
from aiperf.records_file import NoRecords
from aiperf.results import ProfileResult
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.slo import (
    SLOError,
    TurnRange,
    Verdict,
    check_applicable,
    evaluate,
    format_table,
    parse_objective,
    parse_objectives,
)
from tests.harness.session_runs import session_result

MULTI_TURN = {"conversation_num": 10, "conversation_turn_mean": 3}


@pytest.fixture(scope="module")
def cold_first_turn(tmp_path_factory: pytest.TempPathFactory) -> ProfileResult:
    """40 sessions of 4 turns, the table in a file as a mesh run has it."""
    return session_result(export_to=tmp_path_factory.mktemp("turns") / "records.jsonl")


def verdicts_of(result: ProfileResult, slo: dict[str, str]) -> dict[str, Verdict]:
    return {v.objective.key: v for v in evaluate(parse_objectives(slo), result)}


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "op", "turn", "low", "high"), [
    ("turn>=2", ">=", 2, 1, None),
    ("turn==1", "==", 1, 0, 0),
    ("turn<=3", "<=", 3, 0, 2),
    (" turn >= 12 ", ">=", 12, 11, None),
])
def test_a_turn_filter_is_one_based_and_maps_to_turn_index(
        text: str, op: str, turn: int, low: int, high: int | None) -> None:
    objective = parse_objective(f"time_to_first_token.p99[{text}]", "< 250 ms")
    assert objective.turns == TurnRange(op, turn)
    assert (objective.turns.low_index, objective.turns.high_index) == (low, high)
    # the rest is the plain objective's
    plain = parse_objective("time_to_first_token.p99", "< 250 ms")
    assert (objective.metric, objective.stat, objective.op, objective.threshold,
            objective.unit) == (plain.metric, plain.stat, plain.op, plain.threshold,
                                plain.unit)
    assert objective.key == f"time_to_first_token.p99[{text}]"


@pytest.mark.parametrize(("key", "value", "says"), [
    ("time_to_first_token.p99[turn>2]", "< 1 s", "[turn==N], [turn>=N], [turn<=N]"),
    ("time_to_first_token.p99[turns>=2]", "< 1 s", "is not a turn filter"),
    ("time_to_first_token.p99[turn>=0]", "< 1 s", "numbered from 1"),
    ("time_to_first_token.p99[turn>=2", "< 1 s", "one bracket at the end"),
    ("time_to_first_token.p99[turn>=2][turn<=3]", "< 1 s", "one bracket at the end"),
    ("time_to_first_token.p99[turn>=2]@10s", "< 1 s", "takes no window"),
    ("time_to_first_token.p99@10s[turn>=2]", "< 1 s", "takes no window"),
    ("time_to_first_token.p99[turn>=2]", "< baseline + 10 %", "takes no baseline"),
    ("request_throughput[turn>=2]", "> 1 requests/s", "per-request metric"),
    ("time_to_frist_token.p99[turn>=2]", "< 1 s", "unknown metric"),
])
def test_a_bad_turn_objective_names_the_allowed_forms(key: str, value: str,
                                                      says: str) -> None:
    with pytest.raises(SLOError, match=r".*") as caught:
        parse_objective(key, value)
    assert says in str(caught.value)
    assert repr(key) in str(caught.value)


@given(st.text(max_size=20))
def test_any_filter_text_parses_or_is_an_slo_error(text: str) -> None:
    try:
        objective = parse_objective(f"request_latency.p90[{text}]", "< 1 s")
    except SLOError:
        return
    assert objective.turns is not None and objective.turns.turn >= 1


def test_collection_refuses_a_turn_objective_on_single_requests() -> None:
    objectives = parse_objectives({"time_to_first_token.p99[turn>=2]": "< 250 ms"})
    with pytest.raises(SLOError, match="sends single requests"):
        check_applicable(objectives, {"request_count": 10}, streams=True,
                         produces_tokens=True)
    for multi in (MULTI_TURN, {"conversation_num": 4},
                  {"input_file": "s.jsonl", "custom_dataset_type": "multi_turn"},
                  {"input_file": "s.json", "custom_dataset_type": "sharegpt"}):
        check_applicable(objectives, multi, streams=True, produces_tokens=True)


@pytest.mark.parametrize("kind", ["multi-turn", "MULTI_TURN", "ShareGPT"])
def test_collection_takes_a_session_file_type_as_the_config_spells_it(kind: str) -> None:
    # UserConfig takes a loader's name in any case, with '-' or '_' (normalize_name): a
    # multi-turn file named so is sessions, not "single requests"
    from aiperf.common.config import UserConfig

    profile = {"input_file": "s.jsonl", "custom_dataset_type": kind}
    UserConfig.build(where="profile", **{**profile, "input_file": __file__})
    objectives = parse_objectives({"time_to_first_token.p99[turn>=2]": "< 250 ms"})
    check_applicable(objectives, profile, streams=True, produces_tokens=True)


def test_collection_refuses_a_turn_objective_without_the_per_request_table() -> None:
    objectives = parse_objectives({"request_latency.p50[turn==1]": "< 1 s"})
    for profile, says in (({**MULTI_TURN, "sketch": True}, "sketch mode keeps"),
                          ({**MULTI_TURN, "export_records": False}, "export_records=False")):
        with pytest.raises(SLOError, match=says):
            check_applicable(objectives, profile, streams=True, produces_tokens=True)
    check_applicable(objectives, {**MULTI_TURN, "sketch": True, "export_records": True},
                     streams=True, produces_tokens=True)


def test_collection_still_checks_the_metric_against_the_profile() -> None:
    objectives = parse_objectives({"time_to_first_token.p99[turn>=2]": "< 250 ms"})
    with pytest.raises(SLOError, match="streaming"):
        check_applicable(objectives, MULTI_TURN, streams=False, produces_tokens=True)


# -- verdicts ---------------------------------------------------------------------------------


def test_all_turns_fail_where_later_turns_pass_and_the_converse(
        cold_first_turn: ProfileResult) -> None:
    verdicts = verdicts_of(cold_first_turn, {
        "time_to_first_token.p90": "< 150 ms",
        "time_to_first_token.p90[turn>=2]": "< 150 ms",
        "time_to_first_token.p50": "< 150 ms",
        "time_to_first_token.p50[turn==1]": "< 150 ms",
    })
    assert verdicts["time_to_first_token.p90"].status == "FAIL"
    assert verdicts["time_to_first_token.p90[turn>=2]"].status == "PASS"
    assert verdicts["time_to_first_token.p50"].status == "PASS"
    assert verdicts["time_to_first_token.p50[turn==1]"].status == "FAIL"
    # n is the subset's: 40 sessions, 3 later turns each; one first turn each
    assert verdicts["time_to_first_token.p90"].count == 160
    assert verdicts["time_to_first_token.p90[turn>=2]"].count == 120
    assert verdicts["time_to_first_token.p50[turn==1]"].count == 40
    assert verdicts["time_to_first_token.p50[turn==1]"].sent == 40


def test_the_interval_is_the_order_statistics_of_the_turn_subset(
        cold_first_turn: ProfileResult) -> None:
    from aiperf.statistics import quantile_interval

    later = turn_values(cold_first_turn.records, "time_to_first_token", 1)
    verdict = verdicts_of(cold_first_turn, {"time_to_first_token.p99[turn>=2]": "< 150 ms"})
    expected = quantile_interval(later, 99, 0.95)
    v = verdict["time_to_first_token.p99[turn>=2]"]
    assert v.measured == pytest.approx(expected.estimate)
    assert v.interval == (expected.low, expected.high)
    assert v.method == expected.method
    # 120 values cannot bound a p99 from above: the verdict says how many would
    assert v.status == "INCONCLUSIVE" and v.needed is not None and v.needed > 120


def test_the_row_json_and_round_trip_name_the_turns(cold_first_turn: ProfileResult) -> None:
    verdict = verdicts_of(cold_first_turn,
                          {"time_to_first_token.p90[turn>=2]": "< 150 ms"})[
        "time_to_first_token.p90[turn>=2]"]
    table = format_table([verdict])
    assert "time_to_first_token.p90[turn>=2]" in table and "whole run, turn>=2" in table
    data = verdict.to_dict()
    assert data["objective"] == "time_to_first_token.p90[turn>=2]"
    assert data["window"] == "whole run, turn>=2" and data["n"] == 120
    again = Verdict.from_dict(data)
    assert again.objective.turns == TurnRange(">=", 2)
    assert again.status == verdict.status and again.count == verdict.count


def test_the_file_scan_and_the_dict_scan_agree(tmp_path: Path) -> None:
    in_file = session_result(export_to=tmp_path / "r.jsonl",
                             failed_turns=[(0, 0), (3, 2)])
    in_memory = session_result(failed_turns=[(0, 0), (3, 2)])
    assert isinstance(in_memory.records, list)
    for low, high in ((0, None), (1, None), (0, 0), (0, 2)):
        a = turn_sample(in_file.records, "time_to_first_token", low, high)
        b = turn_sample(in_memory.records, "time_to_first_token", low, high)
        np.testing.assert_array_equal(a.values, b.values)
        assert (a.ok, a.err) == (b.ok, b.err)
    # and both are the run's own values of those turns
    every = turn_sample(in_file.records, "time_to_first_token")
    np.testing.assert_array_equal(np.sort(every.values),
                                  np.sort(in_file["time_to_first_token"].values))
    assert (every.ok, every.err) == (158, 2)
    # a list-valued metric pools its values, as its statistics do
    gaps = turn_sample(in_file.records, "inter_chunk_latency", 1)
    assert gaps.values.size == gaps.ok * 3


def test_failed_turns_count_in_the_subset_and_as_infinite_for_adj(tmp_path: Path) -> None:
    result = session_result(export_to=tmp_path / "r.jsonl",
                            failed_turns=[(s, 1) for s in range(10)])
    verdicts = verdicts_of(result, {"adj_time_to_first_token.p50[turn==2]": "< 150 ms",
                                    "time_to_first_token.p50[turn==2]": "< 150 ms",
                                    "adj_time_to_first_token.count[turn==2]": "<= 40"})
    adjusted = verdicts["adj_time_to_first_token.p50[turn==2]"]
    plain = verdicts["time_to_first_token.p50[turn==2]"]
    assert adjusted.count == 40 and adjusted.sent == 40
    assert plain.count == 30 and plain.sent == 40
    assert verdicts["adj_time_to_first_token.count[turn==2]"].measured == 40


def test_no_turn_in_range_fails_saying_so(cold_first_turn: ProfileResult) -> None:
    verdict = verdicts_of(cold_first_turn, {"request_latency.p50[turn>=9]": "< 1 s"})[
        "request_latency.p50[turn>=9]"]
    assert verdict.status == "FAIL" and verdict.count == 0
    assert "no request of turn>=9" in (verdict.note or "")


def test_no_turn_in_range_fails_whatever_the_statistic(cold_first_turn: ProfileResult) -> None:
    # A count of nothing is 0, which meets "< 5": but no request of those turns ran, so
    # the objective measured nothing and must not PASS (as docs/sessions.md says).
    verdicts = verdicts_of(cold_first_turn, {
        "time_to_first_token.count[turn>=9]": "< 5",
        "adj_time_to_first_token.count[turn==9]": "<= 0",
    })
    for verdict in verdicts.values():
        assert verdict.status == "FAIL" and verdict.count == 0, verdict
        assert "no request of turn" in (verdict.note or "")
    # a range that ran keeps its exact count
    ran = verdicts_of(cold_first_turn, {"time_to_first_token.count[turn==1]": "<= 40"})
    assert ran["time_to_first_token.count[turn==1]"].status == "PASS"


def test_a_run_without_its_table_is_inconclusive(tmp_path: Path) -> None:
    result = session_result(export_to=tmp_path / "r.jsonl")
    result.records = NoRecords()
    verdict = verdicts_of(result, {"request_latency.p50[turn>=2]": "< 1 s"})[
        "request_latency.p50[turn>=2]"]
    assert verdict.status == "INCONCLUSIVE" and verdict.measured is None
    assert "export_records=True" in (verdict.note or "")


def test_pooled_runs_add_their_turns(tmp_path: Path) -> None:
    runs = [session_result(10, export_to=tmp_path / f"r{i}.jsonl", seed=i) for i in range(3)]
    objectives = parse_objectives({"time_to_first_token.p90[turn>=2]": "< 150 ms"})
    verdict = judge_runs(objectives, runs, runs[0].config, False, 0.95)[0]
    assert verdict.count == 3 * 10 * 3
    assert verdict.window == "whole run, turn>=2 (+2 runs pooled)"


def test_steady_state_keeps_the_turns_inside_its_window(tmp_path: Path) -> None:
    from aiperf.windows import steady_state

    result = session_result(export_to=tmp_path / "r.jsonl")
    objectives = parse_objectives({"time_to_first_token.p90[turn>=2]": "< 150 ms"})
    verdict = judge_runs(objectives, [result], result.config, True, 0.95)[0]
    sample = steady_state(result, result.config)
    # the requests of turns >= 2 that the steady sample holds, counted from the timeline
    starts = (result.timeline.start_ns - result.timeline.start_ns.min()) / 1e9
    ends = (result.timeline.end_ns - result.timeline.start_ns.min()) / 1e9
    later = np.array([r["metadata"]["turn_index"] >= 1 for r in result.records])
    inside = (starts >= sample.start_s) & (ends <= sample.end_s)
    # the window as the whole-run objectives name it (its bounds), then the turns
    assert sample.label.startswith("steady state ")
    assert verdict.window == f"{sample.label}, turn>=2"
    assert 0 < verdict.count == int((later & inside).sum()) < 120


def test_sketch_mode_asked_for_the_steady_state_says_it_judged_the_whole_run(
        tmp_path: Path) -> None:
    result = session_result(20, sketch=True, export_records=True,
                            export_to=tmp_path / "r.jsonl")
    objectives = parse_objectives({"time_to_first_token.p90[turn>=2]": "< 150 ms",
                                   "time_to_first_token.p90": "< 400 ms"})
    later, every = judge_runs(objectives, [result], result.config, True, 0.95)
    assert every.window == "whole run (sketch mode: no steady window)"
    assert later.window == "whole run (sketch mode: no steady window), turn>=2"
    assert later.count == 60


def test_sketch_mode_with_the_table_judges_the_turns_on_exact_values(tmp_path: Path) -> None:
    result = session_result(20, sketch=True, export_records=True,
                            export_to=tmp_path / "r.jsonl")
    assert result["time_to_first_token"].sketch is not None  # the run itself is sketched
    verdict = verdicts_of(result, {"time_to_first_token.p90[turn>=2]": "< 150 ms"})[
        "time_to_first_token.p90[turn>=2]"]
    later = turn_values(result.records, "time_to_first_token", 1)
    assert verdict.status == "PASS" and verdict.count == 60 == later.size
    assert verdict.method.startswith("order statistics")  # not the sketch's widened bounds
    assert verdict.measured is not None and later.min() <= verdict.measured <= later.max()


def test_judge_result_judges_a_turn_objective_on_its_turns(
        cold_first_turn: ProfileResult) -> None:
    # judge_result (one result, no config) once judged "[turn==1]" on every turn: the
    # warm later turns made a cold first turn's p50 PASS.
    from pytest_aiperf.judge import judge_result

    objectives = parse_objectives({"time_to_first_token.p50[turn==1]": "< 150 ms",
                                   "time_to_first_token.p90[turn>=2]": "< 150 ms"})
    first, later = judge_result(objectives, cold_first_turn)
    expected = {v.objective.key: v for v in evaluate(objectives, cold_first_turn)}
    assert first.status == "FAIL" and first.count == 40
    assert first.window == "whole run, turn==1"
    assert later.status == "PASS" and later.count == 120
    for verdict in (first, later):
        assert verdict.to_dict() == expected[verdict.objective.key].to_dict()


def test_the_report_draws_a_turn_objective_on_its_metric_and_says_which_turns(
        tmp_path: Path) -> None:
    # summary.json's verdicts, as the HTML report reads them back
    from aiperf.report.data import thresholds

    result = session_result(export_to=tmp_path / "r.jsonl")
    verdicts = [v.to_dict() for v in evaluate(parse_objectives({
        "time_to_first_token.p90[turn>=2]": "< 150 ms",
        "time_to_first_token.p90": "< 400 ms",
        "request_latency[turn==1]": "< 1 s",  # no statistic: the mean
    }), result, steady=True)]
    drawn = {t.key: t for t in thresholds(verdicts, "time_to_first_token")}
    assert set(drawn) == {"time_to_first_token.p90[turn>=2]", "time_to_first_token.p90"}
    later, every = drawn["time_to_first_token.p90[turn>=2]"], drawn["time_to_first_token.p90"]
    assert (later.turns, every.turns) == ("turn>=2", None)
    assert later.value == 150.0 and every.level == 0.9
    # The CDF and a window's dotted CDF are of every turn: a p90 line across them, or the
    # window's curve, would read as the subset's p90. The window still names its bounds.
    assert later.level is None and later.span is None
    assert later.window.startswith("steady state") and later.window.endswith(", turn>=2")
    mean = thresholds(verdicts, "request_latency")
    assert [(t.key, t.turns, t.level) for t in mean] == [
        ("request_latency[turn==1]", "turn==1", None)]


@given(st.text(alphabet="0123456789", min_size=1, max_size=6000),
       st.sampled_from(["==", ">=", "<="]))
@example("9" * 5000, ">=")
def test_any_turn_number_parses_or_is_an_slo_error(digits: str, op: str) -> None:
    # Python refuses int() of more than 4,300 digits with a bare ValueError: a turn number
    # that long is still a clear SLOError naming the key, never a crash at collection.
    key = f"time_to_first_token.p99[turn{op}{digits}]"
    try:
        objective = parse_objective(key, "< 1 s")
    except SLOError as exc:
        assert repr(key)[:60] in str(exc) or key[:60] in str(exc)
        return
    assert objective.turns is not None and objective.turns.turn == int(digits) >= 1


def test_a_bracket_without_a_metric_says_so() -> None:
    with pytest.raises(SLOError) as caught:
        parse_objective(" [turn>=2]", "< 1 s")
    message = str(caught.value)
    assert "' [turn>=2]'" in message and "names no metric" in message
    assert "objective ''" not in message


def test_an_inconclusive_turn_objective_says_how_many_requests_of_the_run_would_decide(
        cold_first_turn: ProfileResult) -> None:
    # The plugin prints "about N requests would decide it": N is what a user sets as the
    # run's request count, and only 3 requests in 4 are later turns here.
    import math

    from aiperf.statistics import requests_to_decide

    later = turn_values(cold_first_turn.records, "time_to_first_token", 1)
    verdict = verdicts_of(cold_first_turn, {"time_to_first_token.p99[turn>=2]": "< 150 ms"})[
        "time_to_first_token.p99[turn>=2]"]
    turns_needed = requests_to_decide(later, 99, "<", 150.0, 0.95)
    assert verdict.status == "INCONCLUSIVE" and turns_needed is not None
    assert verdict.needed == math.ceil(turns_needed * 160 / 120)
    assert "of the run's requests" in (verdict.note or "")


@pytest.fixture(scope="module")
def some_failed(tmp_path_factory: pytest.TempPathFactory) -> ProfileResult:
    """12 sessions of 5 turns, a few of them failed, the table in a file."""
    return session_result(12, 5, failed_turns=[(0, 0), (1, 1), (2, 1), (5, 4), (7, 2)],
                          export_to=tmp_path_factory.mktemp("failed") / "r.jsonl")


@given(st.sampled_from(["==", ">=", "<="]), st.integers(1, 7),
       st.sampled_from(["request_latency", "adj_request_latency"]))
def test_any_range_judges_exactly_its_turns(some_failed: ProfileResult, op: str, turn: int,
                                            metric: str) -> None:
    # n and sent from the table's own metadata, the range counted by hand
    stat = "count" if metric.startswith("adj_") else "max"  # adj_: percentiles and count
    key = f"{metric}.{stat}[turn{op}{turn}]"
    verdict = verdicts_of(some_failed, {key: "<= 100" if stat == "count" else "< 10 s"})[key]
    rows = [(r["metadata"]["turn_index"] + 1, "error" in r) for r in some_failed.records]
    chosen = [failed for number, failed in rows
              if {"==": number == turn, ">=": number >= turn, "<=": number <= turn}[op]]
    if not chosen:
        assert verdict.status == "FAIL" and verdict.count == 0
        return
    ok = chosen.count(False)
    assert verdict.sent == len(chosen)
    assert verdict.count == (len(chosen) if metric.startswith("adj_") else ok)
    if metric.startswith("adj_"):  # each failed turn of the range is one more value
        assert verdict.measured == len(chosen)
    elif not ok:  # every turn of the range failed: nothing measured, never a PASS
        assert verdict.status == "FAIL"


# -- the planner ------------------------------------------------------------------------------


def _plan(slo: dict[str, str], **profile: object) -> list[str]:
    from aiperf.common.config import UserConfig
    from pytest_aiperf.planner import plan
    from pytest_aiperf.policy import VerdictPolicy

    config = UserConfig.build(where="profile", streaming=True, concurrency=4, **profile)
    return plan(parse_objectives(slo), config, VerdictPolicy())


def test_the_planner_counts_the_turns_of_whole_sessions() -> None:
    # conversation_num alone runs every turn of 200 sessions of 4: 800 requests, of which
    # 200 first turns (a p99 bound needs n >= 299) and 600 later ones; not "10 x concurrency"
    sessions = {"conversation_num": 200, "conversation_turn_mean": 4}
    slo = {"time_to_first_token.p99": "< 1 s",
           "time_to_first_token.p99[turn>=2]": "< 1 s",
           "time_to_first_token.p99[turn==1]": "< 1 s"}
    warned = _plan(slo, **sessions)
    assert len(warned) == 1, warned
    assert warned[0].startswith("time_to_first_token.p99[turn==1] < 1 s can never PASS "
                                "with 200 requests of turn==1")


def test_the_planner_bounds_a_turn_objective_by_the_run_when_its_share_is_unknown() -> None:
    # a request count cuts sessions where it ends: the range has at most that many
    warned = _plan({"time_to_first_token.p99[turn>=2]": "< 1 s"}, conversation_num=50,
                   conversation_turn_mean=4, request_count=100)
    assert len(warned) == 1 and "can never PASS with at most 100 requests of turn>=2" in \
        warned[0]
    # drawn turn counts: the run's length is not known ahead, so nothing is claimed
    assert _plan({"time_to_first_token.p99": "< 1 s"}, conversation_num=20,
                 conversation_turn_mean=4, conversation_turn_stddev=1) == []
