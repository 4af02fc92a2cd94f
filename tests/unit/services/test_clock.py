"""The clock estimator (services/clock.py), its wire messages, and where its estimate shows
in a result."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common import codec
from aiperf.common.codec import ClockPing, ClockPong, RawBatch, RawRecord
from aiperf.results import ProfileResult
from aiperf.services.clock import ClockEstimate, ClockSample, estimate, shift_stamps

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
