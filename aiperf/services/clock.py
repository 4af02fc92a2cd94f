"""A remote worker's clock against the timing manager's (the reference), NTP-style.

A worker on another host stamps its requests with its own ``perf_counter_ns`` (that host's
CLOCK_MONOTONIC), whose zero is unrelated to the driver host's. Durations inside one record
need nothing, but stamps compared across workers (benchmark duration, time slices) and the
scheduled send times the timing manager hands out must be on one clock. The worker sends
``ClockPing(t0)``, the timing manager answers at once with its own clock reading, and the
worker notes ``t3`` when the answer arrives. The reading was taken somewhere between
``t0`` and ``t3``, so whatever the two one-way delays were, the true offset lies within
half the round trip of the midpoint estimate: the fastest round trip gives the tightest
bound. Pure functions here; the exchange is in ``worker.py`` and ``timing_manager.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aiperf.common.codec import RawRecord

# Round trips per estimate: the minimum of a few filters out one delayed by a busy loop,
# and 8 cost a few hundred microseconds on a LAN.
CLOCK_ROUNDS = 8
# The whole handshake's deadline. The timing manager answers from its receive loop, so
# only a dead or unreachable timing manager takes this long.
CLOCK_SYNC_TIMEOUT_S = 5.0
# Tests only: a worker behaves as if its monotonic clock read perf_counter_ns() + this
# (what a host whose clock differs would look like). One integer for every worker, or a
# comma-separated list of which worker i takes item i (modulo its length): workers of one
# mesh on "different hosts". Read once when the worker starts (``skew_for_tests``).
CLOCK_SKEW_ENV = "AIPERF_TEST_CLOCK_SKEW_NS"

# (t0: worker clock at send, reference clock when answered, t3: worker clock at receipt)
ClockSample = tuple[int, int, int]


class ClockEstimate(BaseModel):
    """``reference = local + offset_ns``, true within ``uncertainty_ns`` either way.

    ``round_trip_ns`` is the round trip of the sample it came from, ``samples`` how many
    round trips it was chosen from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    offset_ns: int
    uncertainty_ns: int = Field(ge=0)
    round_trip_ns: int = Field(ge=0)
    samples: int = Field(ge=1)

    def to_local(self, reference_ns: int) -> int:
        """A reference-clock time on the local clock."""
        return reference_ns - self.offset_ns

    def report(self, host: str) -> dict[str, Any]:
        """What the result keeps per worker (``ProfileResult.clock_offsets``)."""
        return {"offset_ns": self.offset_ns, "uncertainty_ns": self.uncertainty_ns,
                "round_trip_ns": self.round_trip_ns, "samples": self.samples, "host": host}


def skew_for_tests(value: str | None, worker_index: int) -> int:
    """The skew of ``CLOCK_SKEW_ENV``'s value for worker ``worker_index``; 0 when unset."""
    if not value:
        return 0
    items = [int(item) for item in value.split(",")]
    return items[worker_index % len(items)]


def estimate(samples: Sequence[ClockSample]) -> ClockEstimate:
    """The offset from the sample with the smallest round trip.

    The reference reading ``r`` was taken between ``t0`` and ``t3`` (local), so the true
    offset lies in ``[r - t3, r - t0]``; the midpoint is off by at most half the round trip
    (rounded up: integer nanoseconds), however asymmetric the two delays were."""
    if not samples:
        raise ValueError("no clock samples")
    best: ClockSample | None = None
    for sample in samples:
        t0, _, t3 = sample
        if t3 < t0:
            raise ValueError(f"a clock sample ends before it starts: {sample}")
        if best is None or t3 - t0 < best[2] - best[0]:
            best = sample
    assert best is not None
    t0, reference, t3 = best
    round_trip = t3 - t0
    return ClockEstimate(offset_ns=reference - (t0 + t3) // 2,
                         uncertainty_ns=(round_trip + 1) // 2,
                         round_trip_ns=round_trip, samples=len(samples))


def shift_stamps(records: Iterable[RawRecord], delta_ns: int) -> None:
    """Add ``delta_ns`` to every absolute ``perf_counter_ns`` stamp of ``records``, in place.

    Durations (``blocked_ns``, ``dns_ns``, ``connecting_ns``) are not instants and stay, as
    does 0 (absent); ``wall_start_ns`` is the wall clock, which hosts keep in step by NTP
    already. Called once per batch, only for workers whose clock needs it."""
    for r in records:
        if r.credit_ns:
            r.credit_ns += delta_ns
        if r.start_ns:
            r.start_ns += delta_ns
        if r.sent_ns:
            r.sent_ns += delta_ns
        if r.response_ns:
            r.response_ns += delta_ns
        if r.end_ns:
            r.end_ns += delta_ns
        if r.resend_ns:
            r.resend_ns += delta_ns
        if r.chunks:
            r.chunks = [(stamp + delta_ns, data) for stamp, data in r.chunks]
        answer = r.answer
        if answer is not None:
            answer.token_ns = [stamp + delta_ns for stamp in answer.token_ns]
            answer.last_ns += delta_ns
