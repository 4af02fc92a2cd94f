"""A server that accepts every request and never answers: every request is an error, once.

The truth here is the server's own count of the requests it received, and how long the
client kept each one open before giving up (``ServerStats.hangs_ms``). The pytest path of
this case (an error-rate objective must never pass) is in ``test_pytest``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aiperf.mesh import Mesh
from tests.harness.reference_servers import Behaviour, ReferenceServer, ServerStats
from tests.truth.cases import CONCURRENCIES, REQUEST_TIMEOUT_S, Case
from tests.truth.conftest import ServerPool
from tests.truth.test_cli import aiperf_profile, read_artifacts

NEVER = Behaviour(never_answer=True)
DURATION_S = 3.0
GRACE_S = 0.5
FIRST_BYTE_TIMEOUT_S = 0.5
# A cancelled or timed-out request is let go within this after its deadline: a busy box
# wakes late, and the engine sweeps its deadlines periodically.
LATE_GIVE_UP_MS = 400.0
# Past duration + grace, a run must have returned within this (cancelling, collecting and
# aggregating the records).
WIND_DOWN_S = 5.0
CANCELLED = (499, "RequestCancellationError")
# The server times a hang from the request's arrival, after the client's start (the
# engine's first-byte clock starts when the request is handed to the transport): on a busy
# box the request can arrive this much into the timeout.
ARRIVAL_MS = 50.0


def wait_for_hangs(server: ReferenceServer, before: ServerStats, count: int) -> ServerStats:
    """The server notes a hang when the client closes it; the close may trail the result."""
    deadline = time.monotonic() + 5.0
    seen = server.stats() - before
    while len(seen.hangs_ms) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        seen = server.stats() - before
    return seen


def error_problems(summary: dict, records: list[dict], seen: ServerStats,
                   expected: tuple[int, str] | None) -> list[str]:
    """Every received request is one error record (of ``expected`` code and type, if
    given), and the counts and rate say so."""
    problems = []
    sent = seen.requests
    profiling = [r for r in records if r["metadata"].get("benchmark_phase") == "profiling"]
    if sent == 0:
        problems.append("the server received no request")
    if len(profiling) != sent:
        problems.append(f"records: {len(profiling)}, truth {sent} (requests the server got)")
    errors = [r.get("error") for r in profiling]
    if not all(errors):
        problems.append(f"{sum(1 for e in errors if not e)} records without an error, truth "
                        "none (no request was answered)")
    elif expected is not None:
        kinds = {(e["code"], e["type"]) for e in errors}
        if kinds != {expected}:
            problems.append(f"error kinds {sorted(kinds, key=str)}, truth {expected}")
    for tag, truth in (("error_request_count", sent), ("request_error_rate", 100.0),
                       ("request_count", 0)):
        got = summary.get(tag, {}).get("avg")
        if got != truth:
            problems.append(f"{tag}: {got}, truth {truth}")
    counted = sum(item["count"] for item in summary.get("error_summary", []))
    if counted != sent:
        problems.append(f"error_summary counts {counted} errors, truth {sent}")
    return problems


@pytest.mark.parametrize("concurrency", CONCURRENCIES, ids=lambda c: f"c{c}")
def test_a_duration_run_ends_with_every_request_a_cancellation_error(
    truth_mesh: Mesh, reference_servers: ServerPool, concurrency: int
) -> None:
    server = reference_servers.get(NEVER)
    before = server.stats()
    started = time.monotonic()
    result = truth_mesh.run(url=server.url, model="ref", concurrency=concurrency,
                            benchmark_duration=DURATION_S, benchmark_grace_period=GRACE_S,
                            request_timeout_seconds=REQUEST_TIMEOUT_S)
    took = time.monotonic() - started
    seen = wait_for_hangs(server, before, concurrency)
    problems = error_problems(result.to_dict(), list(result.records), seen, CANCELLED)
    if seen.requests != concurrency:
        problems.append(f"the server got {seen.requests} requests, truth {concurrency} (one "
                        "per slot, none answered)")
    if took > DURATION_S + GRACE_S + WIND_DOWN_S:
        problems.append(f"the run took {took:.2f} s, truth at most duration + grace + "
                        f"{WIND_DOWN_S} s")
    cutoff_ms = (DURATION_S + GRACE_S) * 1000
    # Each request went out as the run began and was let go at duration + grace.
    if seen.hangs_ms and not (cutoff_ms - LATE_GIVE_UP_MS <= min(seen.hangs_ms)
                              and max(seen.hangs_ms) <= cutoff_ms + LATE_GIVE_UP_MS):
        problems.append(f"the client held the requests {min(seen.hangs_ms):.0f}.."
                        f"{max(seen.hangs_ms):.0f} ms, truth about {cutoff_ms:.0f} ms "
                        "(duration + grace)")
    assert not problems, f"never-answering server at c={concurrency}:\n  " + "\n  ".join(
        problems)


def test_a_first_byte_timeout_fails_each_request_after_that_time(
    truth_mesh: Mesh, reference_servers: ServerPool
) -> None:
    server = reference_servers.get(NEVER)
    before = server.stats()
    requests = 4
    result = truth_mesh.run(url=server.url, model="ref", concurrency=2, request_count=requests,
                            request_first_byte_timeout_seconds=FIRST_BYTE_TIMEOUT_S,
                            request_timeout_seconds=REQUEST_TIMEOUT_S)
    seen = wait_for_hangs(server, before, requests)
    problems = error_problems(result.to_dict(), list(result.records), seen, None)
    # AIPerf records a timeout as a cancellation (499, RequestCancellationError): the type
    # may say either, the error must say it was a timeout.
    said = [f"{e['error_details']['type']}: {e['error_details']['message']}"
            for e in result.error_summary]
    if not said or not all("timeout" in text.lower() for text in said):
        problems.append(f"errors {said}, truth a timeout")
    limit_ms = FIRST_BYTE_TIMEOUT_S * 1000
    if len(seen.hangs_ms) != requests or not all(
            limit_ms - ARRIVAL_MS <= h <= limit_ms + LATE_GIVE_UP_MS for h in seen.hangs_ms):
        problems.append(f"the client held the requests {sorted(round(h) for h in seen.hangs_ms)}"
                        f" ms, truth {limit_ms:.0f} ms each (the first-byte timeout)")
    assert not problems, "first-byte timeout:\n  " + "\n  ".join(problems)


def test_the_cli_exports_every_request_as_a_cancellation_error(
    reference_servers: ServerPool, tmp_path: Path
) -> None:
    server = reference_servers.get(NEVER)
    before = server.stats()
    case = Case("never_answers", "chat", False, NEVER)
    proc = aiperf_profile(server, case, 4, None, tmp_path, "--benchmark-duration",
                          str(DURATION_S), "--benchmark-grace-period", str(GRACE_S))
    seen = wait_for_hangs(server, before, 4)
    assert proc.returncode == 3, f"exit {proc.returncode}, truth 3 (every request failed):\n" \
                                 f"{proc.stderr[-2000:]}"
    summary, records = read_artifacts(tmp_path)
    problems = error_problems(summary, records, seen, CANCELLED)
    assert summary.get("was_cancelled") is not None
    assert not problems, "never-answering server through the CLI:\n  " + "\n  ".join(problems)
