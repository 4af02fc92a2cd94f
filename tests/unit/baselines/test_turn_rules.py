"""Regression rules on some turns of multi-turn sessions (``METRIC.STAT[turn>=2]:10%``):
the grammar, what a stored run keeps of each value's turn, and comparisons that read the
same requests the judge reads for an objective on those turns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.baselines.compare import compare, parse_rule
from aiperf.baselines.machine import MachineInfo
from aiperf.baselines.storage import StoredRun, stored_run
from aiperf.dataset.breakdowns import record_turns, turn_sample
from aiperf.errors import ConfigError
from pytest_aiperf.baseline import BaselineError, ResultValues, check_rules_applicable
from tests.harness.session_runs import session_result
from tests.harness.synthetic_runs import synthetic_result

MACHINE = MachineInfo(cpu_model="Test CPU", cores=2, python="CPython 3.11.7",
                      package_version="0.1.0", platform="Linux 6.1 x86_64",
                      git_commit="0" * 40, git_dirty=False)


def saved(result: object) -> StoredRun:
    """A stored run as a later session reads it: through its JSON."""
    run = stored_run("t.py::test", result, "main", 1, machine=MACHINE)  # type: ignore[arg-type]
    back = StoredRun.model_validate_json(run.model_dump_json())
    back.unpack_all()
    return back


@pytest.mark.parametrize("text, key, bounds", [
    ("time_to_first_token.p99[turn>=2]:10%", "time_to_first_token.p99[turn>=2]", (1, None)),
    ("request_latency[turn==3]:+5ms", "request_latency.avg[turn==3]", (2, 2)),
    ("inter_token_latency.p50 [ turn <= 2 ]:0%", "inter_token_latency.p50[turn<=2]", (0, 1)),
])
def test_a_turn_range_is_part_of_the_rules_key(text: str, key: str,
                                               bounds: tuple[int, int | None]) -> None:
    rule = parse_rule(text)
    assert rule.key == key and rule.turn_indexes == bounds
    assert parse_rule(text.split("[")[0].strip() + ":1%").turns is None


@pytest.mark.parametrize("text, problem", [
    ("time_to_first_token.p99[turn>=0]:10%", "turns are numbered from 1"),
    ("time_to_first_token.p99[turns>2]:10%", "[turns>2] is not a turn range"),
    ("time_to_first_token.p99[turn>=2]x:10%", "one turn range in brackets at the end"),
    ("[turn>=2]:10%", "one turn range in brackets at the end"),
    ("request_throughput[turn>=2]:-5%", "request_throughput is one number per run"),
    ("time_to_first_token.p99[turn>=12345678]:1%", "more turns than any session has"),
])
def test_a_bad_turn_range_names_the_rule_and_the_forms(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rule(text)
    message = str(caught.value)
    assert message.startswith(f"regression rule {text!r}: ") and problem in message
    assert "[turn>=N]" in message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_any_bracket_parses_or_is_refused_by_name(inner: str) -> None:
    text = f"time_to_first_token.p99[{inner}]:10%"
    try:
        rule = parse_rule(text)
    except ConfigError as exc:
        assert "regression rule" in str(exc)
        return
    assert rule.turns is not None and rule.key.endswith(f"[{rule.turns}]")


def test_a_stored_run_keeps_each_values_turn_and_reads_what_the_judge_reads(
        tmp_path: Path) -> None:
    result = session_result(sessions=12, turns=4, failed_turns=[(2, 1), (5, 3)],
                            export_to=tmp_path / "records.jsonl")
    run = saved(result)
    assert run.error_turns is not None
    for low, high in ((1, None), (0, 0), (0, 2), (3, 3)):
        judged = turn_sample(result.records, "time_to_first_token", low, high)
        for values in (run.turn_values("time_to_first_token", low, high),
                       ResultValues([result]).turn_values("time_to_first_token", low, high)):
            assert values is not None
            # float32 on disk, as every stored value is
            np.testing.assert_allclose(np.sort(values), np.sort(judged.values), rtol=1e-6)
        adjusted = run.turn_values("adj_time_to_first_token", low, high)
        assert adjusted is not None
        assert int(np.isinf(adjusted).sum()) == judged.err
    turns = record_turns(result.records)
    assert turns.tolist() == [t for _ in range(12) for t in range(4)]


def test_a_slower_later_turn_regresses_only_under_its_turn_range(tmp_path: Path) -> None:
    # The first turn (a cold prefix cache) is alike in both runs; later turns take twice as
    # long after the change: a gate on [turn>=2] sees it, one on [turn==1] does not.
    before = saved(session_result(sessions=40, turns=4, ttft_ms=(300.0, 20.0), seed=1,
                                  export_to=tmp_path / "before.jsonl"))
    after = ResultValues([session_result(sessions=40, turns=4, ttft_ms=(300.0, 40.0),
                                         seed=2, export_to=tmp_path / "after.jsonl")])
    later, first = compare(before, after, [parse_rule("time_to_first_token.p50[turn>=2]:10%"),
                                           parse_rule("time_to_first_token.p50[turn==1]:10%")])
    assert later.status == "REGRESSED" and later.rule.key.endswith("[turn>=2]")
    assert later.before == pytest.approx(20.0, rel=0.1)
    assert later.after == pytest.approx(40.0, rel=0.1)
    assert first.status != "REGRESSED"
    assert first.before == pytest.approx(300.0, rel=0.1)


def test_runs_without_per_turn_values_are_inconclusive_saying_why(tmp_path: Path) -> None:
    multi = ResultValues([session_result(sessions=10, turns=3,
                                         export_to=tmp_path / "m.jsonl")])
    single = saved(synthetic_result(200, seed=1))
    assert single.value_turns == {} and single.error_turns is None
    rule = parse_rule("time_to_first_token.p50[turn>=2]:10%")
    (row,) = compare(single, multi, [rule])
    assert row.status == "INCONCLUSIVE"
    assert "per turn (turn>=2" in row.method and "before run" in row.method
    # a file saved before turns were kept reads as one without them
    data = saved(session_result(sessions=10, turns=3, export_to=tmp_path / "o.jsonl"))
    old = StoredRun.model_validate(data.model_dump(exclude={"value_turns", "error_turns"}))
    (row,) = compare(old, multi, [rule])
    assert row.status == "INCONCLUSIVE" and "before run" in row.method
    # a turn no session reached: nothing to compare, and it says so
    (row,) = compare(data, multi, [parse_rule("time_to_first_token.p50[turn>=9]:10%")])
    assert row.status == "INCONCLUSIVE" and "no request of turn>=9" in row.method


def test_a_turn_gate_on_a_single_request_profile_is_refused_at_collection() -> None:
    rule = parse_rule("time_to_first_token.p99[turn>=2]:10%")
    with pytest.raises(BaselineError, match=r"turn>=2.*single requests.*conversation_num"):
        check_rules_applicable([rule], True, True, "chat", multi_turn=False)
    check_rules_applicable([rule], True, True, "chat", multi_turn=True)
    check_rules_applicable([rule], True, True, "chat")  # not known: left to the comparison


def test_artifact_directories_and_stored_files_read_the_same_turns(tmp_path: Path) -> None:
    from aiperf.baselines.sources import load_source
    from aiperf.baselines.storage import Storage
    from aiperf.exporters.base import export_files

    result = session_result(sessions=12, turns=4, failed_turns=[(2, 1), (5, 3)],
                            export_to=tmp_path / "records.jsonl")
    export_files(result, tmp_path / "art")
    directory = load_source(tmp_path / "art")
    stored = load_source(Storage(tmp_path / ".aiperf").save("t.py::test", result, "main"))
    for low, high in ((1, None), (0, 0), (2, 3)):
        judged = turn_sample(result.records, "request_latency", low, high)
        for run in (directory, stored):
            values = run.turn_values("request_latency", low, high)
            assert values is not None
            np.testing.assert_allclose(np.sort(values), np.sort(judged.values), rtol=1e-6)
            adjusted = run.turn_values("adj_request_latency", low, high)
            assert adjusted is not None and int(np.isinf(adjusted).sum()) == judged.err
    (row,) = compare(stored, directory, [parse_rule("request_latency.p50[turn>=2]:10%")])
    assert row.status == "UNCHANGED" and "not compared" not in row.method
    # a single-turn directory keeps no turns
    export_files(synthetic_result(100, seed=1), tmp_path / "single")
    assert load_source(tmp_path / "single").turn_values("request_latency", 1, None) is None
