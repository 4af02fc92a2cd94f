"""Beyond the named cases: schedules drawn by hypothesis, each served by a fresh reference
server and measured through the Python API against the truth worked out from it. The draws
are derandomised, so CI sees the same few schedules every time and a failure reproduces."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aiperf.mesh import Mesh
from tests.harness.reference_servers import Behaviour, ReferenceServer, ServerStats
from tests.truth.cases import REQUEST_TIMEOUT_S, Case, case_of
from tests.truth.compare import check_run, failure_message, measure_until_the_box_keeps_time

# Each example starts a server and runs a profile (a second or two): a handful is what the
# suite's budget allows; the named cases cover the behaviours one by one.
EXAMPLES = 8
REQUESTS = 4
CONCURRENCY = 1
# No shrinking: each step of it would be another server and run; the failing schedule is
# printed whole, and the derandomised draw replays it.
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                     phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streaming_cases(draw: st.DrawFn) -> Case:
    k = draw(st.integers(1, 3))
    reasoning = k * draw(st.integers(0, 4))
    answer = k * draw(st.integers(0 if reasoning else 1, 4))
    behaviour = Behaviour(
        headers_after_ms=draw(st.sampled_from([0.0, 15.0, 40.0])),
        content_after_ms=draw(st.sampled_from([0.0, 10.0, 30.0])),
        reasoning_tokens=reasoning, answer_tokens=answer, tokens_per_chunk=k,
        chunk_gap_ms=draw(st.sampled_from([4.0, 10.0, 20.0])),
        reasoning_field=draw(st.sampled_from(["reasoning_content", "reasoning"])),
        reasoning_details=draw(st.booleans()),
    )
    endpoint = "chat" if reasoning else draw(st.sampled_from(["chat", "completions"]))
    return case_of("drawn", endpoint, True, behaviour, repr(behaviour))


@st.composite
def body_cases(draw: st.DrawFn) -> Case:
    behaviour = Behaviour(
        headers_after_ms=draw(st.sampled_from([0.0, 20.0])),
        content_after_ms=draw(st.sampled_from([0.0, 15.0, 40.0])),
        reasoning_tokens=draw(st.integers(0, 6)), answer_tokens=draw(st.integers(1, 6)),
        reasoning_field=draw(st.sampled_from(["reasoning_content", "reasoning"])),
        reasoning_details=draw(st.booleans()),
        body_pieces=draw(st.integers(1, 4)), piece_gap_ms=draw(st.sampled_from([5.0, 20.0])),
        chunked=draw(st.booleans()), close_after_response=draw(st.booleans()),
    )
    return case_of("drawn", "chat", False, behaviour, repr(behaviour))


def _measure_and_check(mesh: Mesh, case: Case) -> None:
    with ReferenceServer(case.behaviour) as server:

        # Measured again only when the box starved the server or the client, as the named
        # cases are (compare.measure_until_the_box_keeps_time).
        def measure() -> tuple[list[str], ServerStats]:
            before = server.stats()
            result = mesh.run(url=server.url, model="ref", endpoint_type=case.endpoint,
                              streaming=case.streaming, concurrency=CONCURRENCY,
                              request_count=REQUESTS,
                              request_timeout_seconds=REQUEST_TIMEOUT_S)
            seen = server.stats() - before
            return check_run(case, CONCURRENCY, REQUESTS, result.to_dict(),
                             list(result.records), seen), seen

        problems, seen, attempts, client_wait = measure_until_the_box_keeps_time(measure)
    assert not problems, failure_message(f"drawn schedule {case.about}, attempt {attempts}:",
                                         problems, seen, client_wait)


@_SETTINGS
@given(case=streaming_cases())
def test_any_streaming_schedule_is_measured_true(truth_mesh: Mesh, case: Case) -> None:
    _measure_and_check(truth_mesh, case)


@_SETTINGS
@given(case=body_cases())
def test_any_body_schedule_is_measured_true(truth_mesh: Mesh, case: Case) -> None:
    _measure_and_check(truth_mesh, case)
