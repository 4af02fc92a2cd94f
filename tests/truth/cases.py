"""The truth suite's cases: a reference server's behaviour, and what every metric must read.

Each truth is derived from the server's schedule (``Behaviour``), never from what a client
measured: a time is a sum of the schedule's delays, a count is what the server sent. A value
can only be measured late, never early, since the server starts its clock when the request
has arrived, after the client's request start: so times from request start get a lower
bound too (``floor``), gaps between events do not (an event delivered late shortens the
next gap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tests.harness.reference_servers import PROMPT_TOKENS, Behaviour

# Requests per run, by concurrency: two waves at c=16, so reuse and queueing both happen,
# and few enough that the whole suite stays within CI's budget. The Python API runs the
# full count; the other paths (a bare client, the CLI, pytest) carry the same numbers
# through other plumbing, so they run the lighter count: one wave at c=16.
REQUESTS = {1: 8, 16: 32}
LIGHT_REQUESTS = {1: 4, 16: 16}
CONCURRENCIES = tuple(REQUESTS)
# Every run gets a request timeout, so an engine that loses a response fails in seconds
# instead of waiting out the 600 s default.
REQUEST_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Tolerance:
    """How far a measured time may sit from its truth: the larger of an absolute and a
    relative margin. Why these margins: the engine, the reference server and the test
    runner share a 2-core box (in CI, and here with other test runs), so an event can be
    seen a few ms after its schedule. At c=16 one worker reads sixteen responses at once,
    so it is looser. They are not wider than that: the numbers this suite exists to catch
    were off by 100x (1.8 ms measured for a 200 ms body, 128 ms TTFT for a 20 ms one)."""

    abs_ms: float
    rel: float

    def of(self, truth: float) -> float:
        return max(self.abs_ms, self.rel * abs(truth))


TOLERANCE = {1: Tolerance(abs_ms=3.0, rel=0.10), 16: Tolerance(abs_ms=8.0, rel=0.15)}
# How much earlier than its schedule a time from request start may be measured: none in
# principle; this covers the two processes reading the clock at slightly different points.
EARLY_MS = 0.5
# Request phases the reference servers add nothing to (loopback, an IP address, a small
# body): their median must be near zero, within this.
NEAR_ZERO_MS = {1: 2.0, 16: 8.0}
# Except the set-up of a burst of connections: a loopback handshake takes microseconds, but
# a client opening sixteen at once sees each finish only when its event loop gets round to
# it, so what it measures is its own scheduling, not the server. Measured here: a bare
# aiohttp client opening 16 at once on a 2-core box, 3-6 ms median (10 max); the engine in
# a fresh CLI process on a box loaded by other test runs, up to 40 ms. At c=16 these are
# checked only for being reported and adding up (http_req_total = the phases), and the
# total for its floor: the response's own latency.
BURST_SETUP = ("http_req_blocked", "http_req_connecting")
# Times measured from the request's start. Request start is when the answered exchange's
# connection is in hand (pool wait, DNS and connect are recorded apart and are NOT inside
# these times: aiperf/transports/http.py), except when the transport resent the request
# after a pooled connection turned out dead: the first attempt's start is kept, so the time
# lost on the dead connection and the fresh connection's set-up are inside them. That time
# is the client's, not the server's schedule (a case that closes its connections while
# advertising keep-alive races the client's pool). The records say how much it was on each
# request: request_latency - http_req_duration (the answered exchange, sending + waiting +
# receiving), 0 unless resent. Such a time's median is compared less it on each request.
FROM_REQUEST_START = ("request_latency", "time_to_first_token", "time_to_first_output_token")


@dataclass(frozen=True)
class Time:
    """A time in ms: the median must be within tolerance, and if ``floor`` no value may be
    measured earlier than the truth (less ``EARLY_MS``). ``with_setup``: the time includes
    the near-zero set-up phases (pool wait, DNS, connect), so their margin is added."""

    ms: float
    floor: bool = True
    with_setup: bool = False
    median: bool = True  # False: only the floor is checked
    server_late_ms: float = 0.0  # how late the server kept this schedule at most (median)


@dataclass(frozen=True)
class NearZero:
    """A phase the case adds no time to."""


@dataclass(frozen=True)
class Reported:
    """A value whose size the server cannot know: it must be there for every request."""


@dataclass(frozen=True)
class Exact:
    """A count: every request's value (or the run's value) is exactly this."""

    value: float


@dataclass(frozen=True)
class ZeroOrAbsent:
    """A count the case has none of: either not reported or zero everywhere."""


Expectation = Time | NearZero | Reported | Exact | ZeroOrAbsent


@dataclass(frozen=True)
class Case:
    name: str
    endpoint: str
    streaming: bool
    behaviour: Behaviour
    about: str = ""
    # Per-request metrics this case must not report (streaming-only ones when not
    # streaming, token ones for embeddings).
    absent: tuple[str, ...] = field(default=())

    @property
    def latency_ms(self) -> float:
        """The schedule's last byte: the true request latency."""
        b = self.behaviour
        first = b.headers_after_ms + b.content_after_ms
        if self.streaming:
            return first + (b.content_events - 1) * b.chunk_gap_ms
        return first + (b.body_pieces - 1) * b.piece_gap_ms

    @property
    def produces_tokens(self) -> bool:
        return self.endpoint != "embeddings"

    @property
    def osl(self) -> int:
        return self.behaviour.reasoning_tokens + self.behaviour.answer_tokens

    def per_request(self, concurrency: int = 1) -> dict[str, Expectation]:
        """The truth of every per-request metric of this case at ``concurrency``."""
        b = self.behaviour
        latency = self.latency_ms
        truth: dict[str, Expectation] = {
            "request_latency": Time(latency),
            "http_req_blocked": NearZero(),
            "http_req_dns_lookup": NearZero(),
            "http_req_connecting": NearZero(),
            "http_req_sending": NearZero(),
            # The first response byte is the status line, at headers_after_ms.
            "http_req_waiting": Time(b.headers_after_ms),
            "http_req_receiving": Time(latency - b.headers_after_ms, floor=False),
            "http_req_duration": Time(latency),
            "http_req_total": Time(latency, with_setup=True),
        }
        if concurrency > 1:
            truth.update(dict.fromkeys(BURST_SETUP, Reported()))
            truth["http_req_total"] = Time(latency, median=False)
        if b.usage:
            truth["input_sequence_length"] = Exact(PROMPT_TOKENS)
        if not self.produces_tokens:
            return truth
        truth["output_sequence_length"] = Exact(self.osl)
        truth["reasoning_token_count"] = (Exact(b.reasoning_tokens) if b.reasoning_tokens
                                          else ZeroOrAbsent())
        truth["output_token_count"] = (Exact(b.answer_tokens) if b.answer_tokens
                                       else ZeroOrAbsent())
        if not self.streaming:
            return truth
        first = b.headers_after_ms + b.content_after_ms
        truth["time_to_first_token"] = Time(first)
        if b.answer_tokens:
            reasoning_events = b.reasoning_tokens // b.tokens_per_chunk
            truth["time_to_first_output_token"] = Time(first + reasoning_events * b.chunk_gap_ms)
        if b.content_events >= 2:
            truth["time_to_second_token"] = Time(b.chunk_gap_ms, floor=False)
            truth["inter_chunk_latency"] = Time(b.chunk_gap_ms, floor=False)
        if self.osl >= 2:
            itl = (latency - first) / (self.osl - 1)
            truth["inter_token_latency"] = Time(itl, floor=False)
        return truth

    def run_level(self, n: int) -> dict[str, Expectation]:
        """The truth of the run-level numbers of a run of ``n`` requests."""
        truth: dict[str, Expectation] = {
            "request_count": Exact(n),
            "error_request_count": Exact(0),
            "request_error_rate": Exact(0),
        }
        if self.produces_tokens:
            truth["total_reasoning_tokens"] = (Exact(n * self.behaviour.reasoning_tokens)
                                               if self.behaviour.reasoning_tokens
                                               else ZeroOrAbsent())
            truth["total_output_tokens"] = (Exact(n * self.behaviour.answer_tokens)
                                            if self.behaviour.answer_tokens else ZeroOrAbsent())
        return truth

    def min_duration_s(self, concurrency: int, n: int) -> float:
        """No closed loop of ``concurrency`` slots does ``n`` requests of this latency in less
        than this: ``ceil(n / c)`` of them run one after another on some slot."""
        waves = math.ceil(n / concurrency)
        return waves * self.latency_ms / 1000


_STREAMING_ONLY = ("time_to_first_token", "time_to_second_token", "inter_token_latency",
                   "inter_chunk_latency", "time_to_first_output_token")
_TOKENS = ("output_sequence_length", "reasoning_token_count", "output_token_count")


def case_of(name: str, endpoint: str, streaming: bool, behaviour: Behaviour,
            about: str = "") -> Case:
    """A case, with the metrics it must not report worked out from its kind."""
    absent = () if streaming else _STREAMING_ONLY
    if endpoint == "embeddings":
        absent = _STREAMING_ONLY + _TOKENS
    return Case(name, endpoint, streaming, behaviour, about, absent)


def _chat(name: str, streaming: bool, about: str, **behaviour: object) -> Case:
    return case_of(name, "chat", streaming, Behaviour(**behaviour), about)  # type: ignore[arg-type]


CASES: tuple[Case, ...] = (
    _chat("headers_then_body", False,
          "headers at once, the JSON body 120 ms later: latency ends at the body",
          content_after_ms=120),
    _chat("slow_first_byte_stream", True,
          "nothing for 60 ms, then a normal stream of 8 tokens 5 ms apart",
          headers_after_ms=60, answer_tokens=8, chunk_gap_ms=5),
    _chat("slow_first_byte_body", False,
          "nothing for 60 ms, then headers and body together", headers_after_ms=60),
    _chat("reasoning_content_stream", True,
          "delta.reasoning_content: first chunk at 20 ms, 10 reasoning + 5 answer tokens "
          "10 ms apart, usage.completion_tokens_details.reasoning_tokens",
          content_after_ms=20, reasoning_tokens=10, answer_tokens=5, chunk_gap_ms=10),
    _chat("reasoning_stream_counted", True,
          "delta.reasoning without reasoning_tokens in usage: the reasoning is counted; "
          "6 reasoning + 4 answer tokens 8 ms apart from 15 ms",
          content_after_ms=15, reasoning_tokens=6, answer_tokens=4, chunk_gap_ms=8,
          reasoning_field="reasoning", reasoning_details=False),
    _chat("reasoning_only_stream", True,
          "the whole budget spent on delta.reasoning, no answer: still a success",
          content_after_ms=15, reasoning_tokens=8, answer_tokens=0, chunk_gap_ms=8,
          reasoning_field="reasoning"),
    _chat("reasoning_content_body", False,
          "message.reasoning_content, body at 50 ms",
          content_after_ms=50, reasoning_tokens=10, answer_tokens=5),
    _chat("reasoning_body_counted", False,
          "message.reasoning without reasoning_tokens in usage, body at 50 ms",
          content_after_ms=50, reasoning_tokens=6, answer_tokens=4,
          reasoning_field="reasoning", reasoning_details=False),
    _chat("multi_token_chunks", True,
          "4 tokens per SSE event, events 20 ms apart from 30 ms: ITL from usage",
          content_after_ms=30, answer_tokens=16, tokens_per_chunk=4, chunk_gap_ms=20),
    case_of("completions_multi_token", "completions", True,
            Behaviour(content_after_ms=25, answer_tokens=8, tokens_per_chunk=2,
                      chunk_gap_ms=15),
            "completions: 2 tokens per event, 15 ms apart from 25 ms"),
    _chat("chunked_body", False,
          "Transfer-Encoding: chunked, 5 pieces 25 ms apart from 10 ms: ends at the last",
          content_after_ms=10, body_pieces=5, piece_gap_ms=25, chunked=True),
    _chat("closes_connections", True,
          "closes every connection after its response while advertising keep-alive",
          content_after_ms=20, answer_tokens=4, chunk_gap_ms=5, close_after_response=True),
    case_of("embeddings_4mb", "embeddings", False,
            # 30 ms apart: at c=16 that is 64 MB per 210 ms, what a 2-core box carries
            # (15 ms apart it does not, even for a bare client). The headers go alone, 30 ms
            # before the body: written with its first piece, sixteen 500 KB writes in one
            # turn of the server's loop put the last response's headers 5-10 ms late, which
            # is the server's time, not the client's waiting.
            Behaviour(embedding_bytes=4_000_000, content_after_ms=30, body_pieces=8,
                      piece_gap_ms=30),
            "a 4 MB embeddings body in 8 pieces 30 ms apart after the headers: latency "
            "covers reading it"),
)
BY_NAME = {case.name: case for case in CASES}
