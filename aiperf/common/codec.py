"""The hot-path codec: msgspec structs encoded as msgpack arrays.

Credits, credit returns and records are the only messages whose count grows with the
request count, so they skip pydantic: msgspec encodes a typed struct as a compact array
about an order of magnitude faster than ``model_dump_json`` (``benchmarks/codec_bench.py``).
One encoder/decoder pair per message kind, created once per process.
"""

from __future__ import annotations

import zlib

import msgspec

WARMUP = 0
PROFILING = 1
PHASE_NAMES = {WARMUP: "warmup", PROFILING: "profiling"}


def run_number(run_id: str) -> int:
    """A compact tag for a run, carried by every hot-path batch so that a late record of
    one run is never counted in the next."""
    return zlib.crc32(run_id.encode())


class Credit(msgspec.Struct, array_like=True, frozen=True):
    """Permission to send one request. ``send_at_ns`` (the timing manager's perf_counter_ns,
    the reference clock) is when the request is due: 0 means now. Workers fire credits on
    their own clock, converted by their clock offset when the mesh syncs clocks, so no IPC
    hop sits between the schedule and the request."""

    id: int
    phase: int
    conversation: int
    send_at_ns: int = 0
    # Multi-turn in rate mode: the session (its first turn's credit id) this turn belongs
    # to; the timing manager sends a turn only after the previous one returned, to the
    # same worker, which keeps the session's history. -1: a single request.
    session: int = -1


# How much of an error's message a record keeps (an error body, an exception's text).
MAX_ERROR_MESSAGE = 2000


class ErrorInfo(msgspec.Struct, array_like=True, frozen=True):
    code: int | None
    type: str
    message: str


# AIPerf's code and type for a request given up by the client: cut off at the end of a
# duration run, past its request timeout or its first-byte timeout. Such a request is an
# error like any other (it counts in error_request_count and request_error_rate).
CANCELLATION_CODE = 499
CANCELLATION_TYPE = "RequestCancellationError"


def cancellation(reason: str) -> ErrorInfo:
    """The error record of a request the client gave up on; ``reason`` says which limit."""
    return ErrorInfo(CANCELLATION_CODE, CANCELLATION_TYPE, reason)


# The reasons of the two cancellations a result tells apart from other errors: the ones the
# profile asked for (--request-cancellation-rate) and the request timeout.
PLANNED_CANCEL_REASON = "cancelled by the client: --request-cancellation-rate"
REQUEST_TIMEOUT_REASON = "request timeout"


def is_cancellation(error: ErrorInfo | None) -> bool:
    return error is not None and error.type == CANCELLATION_TYPE


class ReadAnswer(msgspec.Struct, array_like=True):
    """A plain chat stream that a worker read itself for the next turn of its session: what
    the record processor would otherwise parse out of the same bytes a second time. The
    record then travels without its ``chunks`` (``aiperf/dataset/answers.py`` reads it,
    ``RecordDeriver`` takes it as read). Counts are -1 where the response gave none."""

    token_ns: list[int]  # the stamp of the read that completed each event with answer text
    texts: list[str]  # that text, event by event
    last_ns: int  # the stamp of the response's last read
    prompt_tokens: int = -1
    completion_tokens: int = -1
    reasoning_tokens: int = -1
    usage: tuple[int, int, int, int] = (-1, -1, -1, -1)  # derive.usage_numbers's


class RawRecord(msgspec.Struct, array_like=True):
    """What a worker saw for one credit: timestamps and the undecoded response events.

    ``start_ns`` is when the connection was in hand, right before the request was written
    (pool wait and connection set-up excluded: those are ``blocked_ns``, ``dns_ns`` and
    ``connecting_ns``); ``sent_ns`` when its last chunk was being written;
    ``response_ns`` when the status line and headers had arrived. ``reused`` is 1 when the
    connection came from the pool, 0 when it was opened for this request, -1 unknown
    (a transport that does not trace)."""

    credit_id: int
    phase: int
    worker_id: str
    conversation: int
    credit_ns: int
    start_ns: int
    wall_start_ns: int
    response_ns: int
    end_ns: int
    status: int
    # (perf_counter_ns of the network read, raw SSE data payload or whole body)
    chunks: list[tuple[int, bytes]]
    error: ErrorInfo | None = None
    cancelled: bool = False
    sent_ns: int = 0
    blocked_ns: int = 0
    dns_ns: int = 0
    connecting_ns: int = 0
    reused: int = -1
    # After a resend on a fresh connection: that attempt's start (``start_ns`` stays the
    # first attempt's); 0 when the first attempt was answered.
    resend_ns: int = 0
    # Multi-turn: the session (the credit id of its first turn: unique in a run) and the
    # turn's index in it, -1 for a single request; ``isl`` the tokens of the whole
    # conversation sent (history and system prompt included), -1: the dataset entry's.
    session: int = -1
    turn_index: int = -1
    isl: int = -1
    # Several URLs (round robin): which one this request went to; -1 with one URL.
    url_index: int = -1
    # A session turn's answer the worker read (``chunks`` then empty); None: not read.
    answer: ReadAnswer | None = None


class MetricRecord(msgspec.Struct, array_like=True):
    """One request's measured values, as the record processor derived them. Durations in
    ns; -1 where a value does not apply (no second token, not streaming, an error).

    ``latency_ns`` ends at the last byte of the response. ``ttft_ns`` is the first token of
    any kind (reasoning included), ``ttfo_ns`` the first answer (non-reasoning) token.
    ``osl`` counts every generated token, ``reasoning_tokens`` the reasoning part of it (-1:
    the response carried no reasoning). The ``http_*`` fields are the request's HTTP phases
    (k6's names; ``http_reused`` 1/0, -1 when the transport does not trace them)."""

    credit_id: int
    phase: int
    worker_id: str
    credit_ns: int
    start_ns: int
    wall_start_ns: int
    end_ns: int
    ttft_ns: int
    ttst_ns: int
    latency_ns: int
    isl: int
    osl: int
    chunk_gaps_ns: list[int]
    usage_mismatch: bool = False
    error: ErrorInfo | None = None
    cancelled: bool = False
    ttfo_ns: int = -1
    reasoning_tokens: int = -1
    http_blocked_ns: int = -1
    http_dns_ns: int = -1
    http_connecting_ns: int = -1
    http_sending_ns: int = -1
    http_waiting_ns: int = -1
    http_receiving_ns: int = -1
    http_reused: int = -1
    # Multi-turn (RawRecord's): the session's first credit id and the turn's index; -1
    # for a single request. Two small integers: a few bytes a record on the wire.
    session: int = -1
    turn_index: int = -1
    url_index: int = -1
    # The server's own usage numbers, as its last usage-bearing event or body sent them
    # (AIPerf's usage_* metrics); -1: the response carried none. -1 is one msgpack byte,
    # so a record without usage grows by 4 bytes, not by an optional object.
    usage_prompt: int = -1
    usage_completion: int = -1
    usage_total: int = -1
    usage_reasoning: int = -1
    # The dataset entry sent (RawRecord's ``conversation``): at export, a session's turn
    # gets its dataset session id from it (``conversation_id``), no string on the wire.
    conversation: int = -1


# -- the credit channel (timing manager ROUTER <-> worker DEALER) -----------------------------


class Lease(msgspec.Struct, array_like=True, tag=1):
    """Closed-loop credits in bulk: the worker may start requests ``first_id`` ..
    ``first_id + count - 1`` itself, at most ``slots`` at once, none after ``deadline_ns``
    (reference clock, like ``Credit.send_at_ns``; 0: no deadline). Leasing keeps
    the timing manager and every IPC hop out of the per-request loop in concurrency mode."""

    run: int
    phase: int
    first_id: int
    count: int
    slots: int
    deadline_ns: int = 0
    # A concurrency ramp: when each of the worker's slots may start its first request
    # (reference clock, like the deadline); empty: all at once. Only the lease that
    # creates a worker's slots carries it.
    slot_starts_ns: list[int] = []


class CreditBatch(msgspec.Struct, array_like=True, tag=2):
    """Scheduled credits (rate and trace modes), sent ahead of their send times."""

    run: int
    credits: list[Credit]


class WorkerHello(msgspec.Struct, array_like=True, tag=3):
    """A worker announcing itself on the credit channel (its DEALER identity is its id)."""

    worker_id: str


class LeaseReport(msgspec.Struct, array_like=True, tag=4):
    """``started`` ids of a lease were used (the rest never will be: deadline or cancel);
    ``done`` once every started request has its record on the way."""

    run: int
    first_id: int
    started: int
    done: bool
    # Multi-turn: ids among the started ones that were never sent (a session's later turns
    # when the run ended, a duration's deadline or a cancel, before them). A session's ids
    # are taken together when it starts.
    skipped: list[int] = []


class ReturnBatch(msgspec.Struct, array_like=True, tag=5):
    """Scheduled credits whose requests finished (they free concurrency-cap slots)."""

    run: int
    credit_ids: list[int]


class ClockPing(msgspec.Struct, array_like=True, tag=6):
    """A worker's clock reading ``t0`` (its perf_counter_ns), asking for the timing
    manager's: one round trip of the clock handshake (``services/clock.py``)."""

    t0: int


class ClockPong(msgspec.Struct, array_like=True, tag=7):
    """The answer to a ``ClockPing``: its ``t0`` back and the timing manager's
    perf_counter_ns (the reference clock) when it answered."""

    t0: int
    reference_ns: int


ToWorker = Lease | CreditBatch | ClockPong
FromWorker = WorkerHello | LeaseReport | ReturnBatch | ClockPing


class RawBatch(msgspec.Struct, array_like=True):
    run: int
    records: list[RawRecord]
    # (record index, chunk index) of every read sent as a frame of its own, in frame order
    # (see encode_raw_frames); empty for a batch sent as one frame.
    detached: list[tuple[int, int]] = []
    # Add this to the records' stamps for the reference (timing manager's) clock: the
    # worker's estimated offset, set per batch when the mesh syncs clocks (remote workers);
    # 0 for a local mesh, whose services share one clock.
    clock_offset_ns: int = 0


class MetricBatch(msgspec.Struct, array_like=True):
    run: int
    records: list[MetricRecord]


_ENCODER = msgspec.msgpack.Encoder()
encode = _ENCODER.encode

to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)
raw_decoder = msgspec.msgpack.Decoder(RawBatch)

# A read at least this large leaves a batch of large bodies as a frame of its own.
DETACH_BYTES = 1 << 14


def encode_raw_frames(batch: RawBatch) -> list[bytes]:
    """``batch`` as message frames: the batch itself, then each read of ``DETACH_BYTES`` or
    more as a frame of its own, in place of which the batch carries b"" and its position.

    For batches of large bodies: packing megabytes into one buffer is a copy on the
    worker's event loop (0.4-3 ms per 4 MB, page faults included), during which the reads
    of every other response in flight wait for their timestamps; frames sent without a
    copy cost nothing there. The batch's records are changed in place (they are sent)."""
    detached: list[tuple[int, int]] = []
    frames: list[bytes] = [b""]
    for r, record in enumerate(batch.records):
        chunks = record.chunks
        for c, (stamp, data) in enumerate(chunks):
            if len(data) >= DETACH_BYTES:
                chunks[c] = (stamp, b"")
                detached.append((r, c))
                frames.append(data)
    batch.detached = detached
    frames[0] = encode(batch)
    return frames


def decode_raw_frames(frames: list[bytes]) -> RawBatch:
    """The batch of ``encode_raw_frames`` (or of a plain ``encode``: one frame)."""
    batch = raw_decoder.decode(frames[0])
    if len(batch.detached) != len(frames) - 1:
        raise ValueError(f"a record batch names {len(batch.detached)} detached reads but "
                         f"came with {len(frames) - 1}")
    records = batch.records
    for (r, c), data in zip(batch.detached, frames[1:], strict=True):
        chunks = records[r].chunks
        chunks[c] = (chunks[c][0], data)
    batch.detached = []
    return batch
metric_decoder = msgspec.msgpack.Decoder(MetricBatch)
