"""A load-test record survives the trip from an xdist worker to the controller."""

from __future__ import annotations

from pytest_aiperf.session import LoadTestRecord
from pytest_aiperf.slo import Verdict, implicit_objectives, parse_objective


def test_a_record_round_trips_through_its_dict() -> None:
    verdicts = [Verdict(parse_objective("request_latency.p99", "< 1 s"), 1200.0, False, 8, 10),
                Verdict(implicit_objectives(None)[0], 20.0, False, 8, 10)]
    record = LoadTestRecord("t.py::test_x", "chat c=2 n=10", run=2, verdicts=verdicts,
                            outcome="FAIL", error=None, warnings=["late records"],
                            metrics={"request_throughput": 12.5}, sent=10)
    back = LoadTestRecord.from_dict(record.to_dict())
    assert back.to_dict() == record.to_dict()
    assert [str(v) for v in back.verdicts] == [str(v) for v in verdicts]
    assert back.label == "test_x (run 2)" and back.verdicts[1].objective.implicit


def test_a_sessions_only_profile_is_labelled_by_its_sessions_not_a_request_count() -> None:
    from pytest_aiperf.profile import LoadTestSpec

    spec = LoadTestSpec(profile={"concurrency": 4, "conversation_num": 10,
                                 "conversation_turn_mean": 3})
    assert spec.short() == "chat c=4 sessions=10"
    assert LoadTestSpec(profile={"concurrency": 4, "request_count": 40}).short() == (
        "chat c=4 n=40")
