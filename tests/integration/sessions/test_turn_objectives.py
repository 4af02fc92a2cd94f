"""Objectives on later turns from a user's seat: a pytest session against a multi-turn
server whose first turns are slow and later turns fast (a prefix cache's shape), where an
objective over all turns FAILs and the same over turn>=2 PASSes, and the converse (the
median over all turns PASSes, over turn==1 FAILs). The test outcomes, the table's verdict
column, JUnit properties and summary.json must all agree."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

# Imported before the inline session, which drops the modules it imported (scipy's C
# extensions cannot load twice): see tests/integration/pytest_aiperf/conftest.py.
import scipy.special
import scipy.stats  # noqa: F401

from tests.harness.pytester_ini import INI
from tests.harness.turn_latency_server import TurnLatencyServer

# The first turn waits 800 ms before answering, later ones 10 ms; the thresholds sit at
# 400 ms, so a fast turn stays fast unless the loaded box delays it by ~390 ms, and a slow
# one cannot get faster than its 800 ms sleep. The weakest check is the p90 of the 60 later
# turns: its upper bound at 95 % is their 59th value, so one fast turn in 60 may be held
# up that long, not two.
FIRST_MS, LATER_MS, THRESHOLD = 800, 10, "< 400 ms"
# 20 sessions of 4 turns: 60 later turns (enough to bound a p90 from above: n >= 35 at
# 95 %) and 20 first turns (a quarter: the p90 of all turns is a first turn's).
PROFILE = ("streaming=True, concurrency=5, conversation_num=20, conversation_turn_mean=4, "
           "isl=6, osl=4, session_header='X-Session-ID'")


def test_all_turns_fail_and_later_turns_pass_in_the_table_junit_and_summary(
        pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    with TurnLatencyServer([FIRST_MS, LATER_MS], header="X-Session-ID") as server:
        pytester.makepyfile(f"""
            import pytest

            @pytest.mark.aiperf(url="{server.url}", {PROFILE}, slo={{
                "time_to_first_token.p90[turn>=2]": "{THRESHOLD}",
                "time_to_first_token.p50": "{THRESHOLD}"}})
            def test_later_turns(aiperf_result):
                pass

            @pytest.mark.aiperf(url="{server.url}", {PROFILE}, slo={{
                "time_to_first_token.p90": "{THRESHOLD}",
                "time_to_first_token.p50[turn==1]": "{THRESHOLD}"}})
            def test_all_turns(aiperf_result):
                pass
        """)
        result = pytester.runpytest_inprocess("--aiperf-artifacts", "out",
                                              "--junitxml", "j.xml")
        stats = server.stats()
    assert stats["violations"] == []
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()

    def row(key: str) -> list[str]:
        lines = [line for line in out.splitlines() if line.strip().startswith(key + " ")]
        assert lines, f"no table row for {key}"
        return lines[0].split()

    # the failed test's verdict table: each objective as written, the turns in its window
    assert row("time_to_first_token.p90")[8:10] == ["FAIL", "n=80"]
    assert row("time_to_first_token.p50[turn==1]")[8:] == ["FAIL", "n=20", "whole", "run,",
                                                           "turn==1"]
    assert "(whole run, turn==1)" in out  # the session summary's FAIL line

    props = {p.get("name"): p.get("value")
             for p in ET.parse(pytester.path / "j.xml").iter("property")}
    assert props["aiperf.slo.time_to_first_token.p90[turn>=2].verdict"] == "PASS"
    assert props["aiperf.slo.time_to_first_token.p90[turn>=2]"].startswith(
        "PASS time_to_first_token.p90[turn>=2] = ")
    assert props["aiperf.slo.time_to_first_token.p50.verdict"] == "PASS"
    assert props["aiperf.slo.time_to_first_token.p90.verdict"] == "FAIL"
    assert props["aiperf.slo.time_to_first_token.p50[turn==1].verdict"] == "FAIL"

    tests = json.loads((pytester.path / "out" / "summary.json").read_text())["load_tests"]
    by_test = {t["nodeid"].rpartition("::")[2]: t for t in tests}
    assert by_test["test_later_turns"]["outcome"] == "PASS"
    assert by_test["test_all_turns"]["outcome"] == "FAIL"
    verdicts = {v["objective"]: v for t in tests for v in t["objectives"]}
    later = verdicts["time_to_first_token.p90[turn>=2]"]
    assert (later["verdict"], later["n"], later["window"]) == ("PASS", 60, "whole run, turn>=2")
    first = verdicts["time_to_first_token.p50[turn==1]"]
    assert (first["verdict"], first["n"], first["window"]) == ("FAIL", 20, "whole run, turn==1")
    # a first turn cannot answer before its sleep: its median is at least that
    assert first["measured"] >= FIRST_MS


def test_a_turn_objective_on_single_requests_is_a_collection_error(
        pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    # one module each: a module's first collection error stops its collection
    pytester.makepyfile(test_single="""
        import pytest

        @pytest.mark.aiperf(url="http://127.0.0.1:9", streaming=True, request_count=4,
                            slo={"time_to_first_token.p99[turn>=2]": "< 250 ms"})
        def test_single(aiperf_result):
            pass
    """, test_bad_filter="""
        import pytest

        @pytest.mark.aiperf(url="http://127.0.0.1:9", streaming=True, conversation_num=2,
                            conversation_turn_mean=2,
                            slo={"time_to_first_token.p99[turn>2]": "< 250 ms"})
        def test_bad_filter(aiperf_result):
            pass
    """)
    result = pytester.runpytest_inprocess()
    out = result.stdout.str()
    result.assert_outcomes(errors=2)
    assert "sends single requests" in out
    assert "[turn==N], [turn>=N], [turn<=N]" in out
