"""The clock estimator (services/clock.py), its wire messages, and where its estimate shows
in a result."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common import codec
from aiperf.common.codec import ClockPing, ClockPong, RawBatch, RawRecord
from aiperf.common.config import ServiceConfig
from aiperf.errors import MeshTimeoutError
from aiperf.results import ProfileResult
from aiperf.services import worker as worker_module
from aiperf.services.clock import (
    CLOCK_ROUNDS,
    ClockEstimate,
    ClockSample,
    estimate,
    shift_stamps,
    skew_for_tests,
)
from aiperf.services.worker import Worker

S = 1_000_000_000

# One round trip: the worker sends at local t0; the ping travels ``out`` ns, the timing
# manager reads its clock after ``hold`` more, the pong travels ``back`` ns.
round_trip = st.tuples(st.integers(0, 10 * S), st.integers(0, 10**7), st.integers(0, 10 * S),
                       st.integers(0, 3600 * S))


def simulate(offset: int, trips: list[tuple[int, int, int, int]]) -> list[ClockSample]:
    """Samples as a worker whose clock reads ``reference - offset`` would take them."""
    samples = []
    for out, hold, back, t0 in trips:
        reference = t0 + out + hold + offset
        samples.append((t0, reference, t0 + out + hold + back))
    return samples


@settings(max_examples=500, deadline=None)
@given(offset=st.integers(-10**15, 10**15), trips=st.lists(round_trip, min_size=1, max_size=8))
def test_the_true_offset_is_always_within_the_stated_uncertainty(
    offset: int, trips: list[tuple[int, int, int, int]]
) -> None:
    """However asymmetric the two one-way delays, the estimate is off by at most its
    uncertainty, which is half the fastest round trip (rounded up)."""
    samples = simulate(offset, trips)
    result = estimate(samples)
    assert abs(result.offset_ns - offset) <= result.uncertainty_ns
    fastest = min(t3 - t0 for t0, _, t3 in samples)
    assert result.round_trip_ns == fastest
    assert result.uncertainty_ns == (fastest + 1) // 2
    assert result.samples == len(samples)


def test_symmetric_delays_give_the_exact_offset_from_the_fastest_round_trip() -> None:
    offset = -3 * S
    # A slow, lopsided round trip first (a busy loop), then a fast symmetric one.
    samples = simulate(offset, [(900_000, 0, 100_000, 5 * S), (20_000, 0, 20_000, 6 * S)])
    result = estimate(samples)
    assert result == ClockEstimate(offset_ns=offset, uncertainty_ns=20_000,
                                   round_trip_ns=40_000, samples=2)
    assert result.to_local(10 * S) == 13 * S
    assert result.report("node-a") == {"offset_ns": offset, "uncertainty_ns": 20_000,
                                       "round_trip_ns": 40_000, "samples": 2,
                                       "host": "node-a"}


def test_no_samples_or_a_sample_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="no clock samples"):
        estimate([])
    with pytest.raises(ValueError, match="ends before it starts"):
        estimate([(10, 5, 9)])


def test_shifting_moves_every_instant_and_leaves_durations_and_absent_stamps() -> None:
    record = RawRecord(1, codec.PROFILING, "worker_0", 0, 100, 110, 1_700_000_000, 130, 190,
                       200, [(140, b"a"), (150, b"b")], sent_ns=120, blocked_ns=7, dns_ns=8,
                       connecting_ns=9, resend_ns=0)
    shift_stamps([record], 1000)
    assert (record.credit_ns, record.start_ns, record.sent_ns, record.response_ns,
            record.end_ns) == (1100, 1110, 1120, 1130, 1190)
    assert record.chunks == [(1140, b"a"), (1150, b"b")]
    # Durations, the wall clock and 0 (absent) are not instants on the monotonic clock.
    assert (record.blocked_ns, record.dns_ns, record.connecting_ns) == (7, 8, 9)
    assert record.wall_start_ns == 1_700_000_000
    assert record.resend_ns == 0
    unstarted = RawRecord(2, codec.PROFILING, "worker_0", 0, 100, 0, 0, 0, 105, 0, [])
    shift_stamps([unstarted], -50)
    assert (unstarted.credit_ns, unstarted.start_ns, unstarted.response_ns,
            unstarted.end_ns, unstarted.chunks) == (50, 0, 0, 55, [])


def test_a_read_answer_is_shifted_as_the_reads_it_replaced_would_be() -> None:
    """A session turn's record carries the worker's read of its answer instead of its
    reads (``codec.ReadAnswer``): shifted, it derives as the shifted reads did."""
    from aiperf.dataset.answers import history_answer
    from aiperf.dataset.tokenizer import BuiltinTokenizer
    from aiperf.metrics.derive import RecordDeriver
    from tests.harness.endpoints import make_endpoint

    endpoint = make_endpoint("chat", model="m", streaming=True)
    events = [b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
              b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n', b"data: [DONE]\n\n"]

    def record() -> RawRecord:
        return RawRecord(1, codec.PROFILING, "worker_0", 0, 100, 110, 1_700_000_000, 130,
                         190, 200, [(140 + i, event) for i, event in enumerate(events)],
                         sent_ns=120)

    as_bytes, as_read = record(), record()
    assert history_answer(endpoint, as_read) is not None and as_read.answer is not None
    shift_stamps([as_bytes, as_read], 1000)
    assert as_read.answer.token_ns == [1140, 1141] and as_read.answer.last_ns == 1142
    deriver = RecordDeriver(endpoint, BuiltinTokenizer(), [0])
    assert deriver.derive(as_read) == deriver.derive(as_bytes)


def test_the_test_skew_is_one_value_for_all_or_one_per_worker() -> None:
    assert skew_for_tests(None, 3) == skew_for_tests("", 0) == 0
    assert skew_for_tests("-7", 5) == -7
    assert [skew_for_tests("1,-2", i) for i in range(3)] == [1, -2, 1]


def test_clock_messages_travel_in_the_credit_channel_unions() -> None:
    assert codec.from_worker_decoder.decode(codec.encode(ClockPing(123))) == ClockPing(123)
    pong = ClockPong(123, -456)
    assert codec.to_worker_decoder.decode(codec.encode(pong)) == pong


def test_a_batch_carries_its_offset_and_batches_of_the_old_shape_still_decode() -> None:
    record = RawRecord(1, codec.PROFILING, "worker_0", 0, 100, 110, 0, 130, 190, 200, [])
    batch = codec.decode_raw_frames([codec.encode(RawBatch(7, [record], clock_offset_ns=-5))])
    assert batch.clock_offset_ns == -5
    # A batch as encoded before the field existed: [run, records, detached].
    old = codec.encode([7, [record], []])
    assert codec.raw_decoder.decode(old) == RawBatch(7, [record])


def result_dict(**extra: object) -> dict[str, object]:
    return {"run_id": "r", "metrics": {}, "records": [], **extra}


def test_the_offsets_reach_the_result_and_its_export_only_when_clocks_were_synced() -> None:
    offsets = {"worker_0": {"offset_ns": -3 * S, "uncertainty_ns": 40_000,
                            "round_trip_ns": 80_000, "samples": 8, "host": "node-a"}}
    synced = ProfileResult.from_dict(result_dict(clock_offsets=offsets))
    assert synced.clock_offsets == offsets
    assert synced.to_dict()["clock_offsets"] == offsets
    local = ProfileResult.from_dict(result_dict())
    assert local.clock_offsets == {}
    assert "clock_offsets" not in local.to_dict()


# -- the worker's side of the handshake, against a real ROUTER socket -----------------------


def handshaking_worker(address: str, context: zmq.asyncio.Context) -> Worker:
    """A worker with only what the handshake uses: its credit channel and clock state."""
    worker = Worker(ServiceConfig(run_dir=os.path.dirname(address[len("ipc://"):]),
                                  clock_sync=True), "worker_0")
    channel = context.socket(zmq.DEALER)
    channel.setsockopt(zmq.LINGER, 0)
    channel.setsockopt(zmq.IDENTITY, b"worker_0")
    channel.connect(address)
    worker._channel = channel
    worker._run = 0
    worker._skew_ns = 0
    worker._ping = None
    worker._clock = None
    worker._clock_offset_ns = 0
    worker._to_perf_ns = 0
    return worker


async def answer_pings(router: zmq.asyncio.Socket, shift_ns: int) -> None:
    """A timing manager whose clock reads ``shift_ns`` away from this process's; each real
    answer follows a stale one (an earlier ping's), which the worker must ignore."""
    while True:
        identity, data = await router.recv_multipart()
        ping = codec.from_worker_decoder.decode(data)
        assert isinstance(ping, ClockPing)
        stale = ClockPong(ping.t0 - 1, 0)
        await router.send_multipart([identity, codec.encode(stale)])
        pong = ClockPong(ping.t0, time.perf_counter_ns() + shift_ns)
        await router.send_multipart([identity, codec.encode(pong)])


@pytest.mark.asyncio
async def test_a_worker_estimates_a_timing_manager_clock_seconds_away(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/credits.sock"
    context = zmq.asyncio.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(address)
    worker = handshaking_worker(address, context)
    tasks = [asyncio.create_task(answer_pings(router, -5 * S)),
             asyncio.create_task(worker._receive())]
    try:
        await worker._sync_clock()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        context.destroy(linger=0)
    clock = worker._clock
    assert clock is not None and clock.samples == CLOCK_ROUNDS
    assert abs(clock.offset_ns + 5 * S) <= clock.uncertainty_ns
    assert worker._clock_offset_ns == clock.offset_ns
    # A send time on the timing manager's clock, on this process's: 5 s later.
    assert worker._to_perf_ns == -clock.offset_ns


@pytest.mark.asyncio
async def test_a_timing_manager_that_never_answers_is_a_fatal_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "CLOCK_SYNC_TIMEOUT_S", 0.2)
    context = zmq.asyncio.Context()
    worker = handshaking_worker(f"ipc://{tmp_path}/credits.sock", context)  # nobody binds
    try:
        with pytest.raises(MeshTimeoutError, match=r"timing manager answered 0 of 8 clock"):
            await worker._sync_clock()
    finally:
        context.destroy(linger=0)
    assert worker._ping is None and worker._clock is None
