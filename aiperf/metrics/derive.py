"""From what a worker saw (``RawRecord``) to what one request measured (``MetricRecord``).

Only content events count for timing: role-only deltas, usage trailers, empty deltas and
``[DONE]`` are not tokens. Token counts prefer the server's ``usage``; the tokenizer fills
in when the server sends none, and the two are compared (``usage_mismatch``) when both exist.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiperf.common.codec import ErrorInfo, MetricRecord, RawRecord
from aiperf.endpoints.base import BaseEndpoint, InvalidResponse
from aiperf.transports.http import DONE
from aiperf.transports.sse import MESSAGE, SSEParser, parse_block

MISMATCH_TOLERANCE = 0.10


def _sse_events(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes, bytes]]:
    """(timestamp of the read that completed it, event name, data) for every SSE event.

    The reads are joined and cut once, each event's end offset mapped back to its read;
    the incremental parser (which handles CR line ends) is the fallback."""
    data = b"".join(read for _, read in chunks)
    if b"\r" in data:
        return _sse_events_incremental(chunks)
    events: list[tuple[int, bytes, bytes]] = []
    blocks = data.split(b"\n\n")
    if len(chunks) == 1:  # one read (a short or coalesced stream): one timestamp for all
        ts = chunks[0][0]
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:  # the common case
                events.append((ts, MESSAGE, block[6:]))
            elif block:
                event = parse_block(block.strip(b"\n"))
                if event is not None:
                    events.append((ts, event[0], event[1]))
        return events
    ends = list(itertools.accumulate(len(read) for _, read in chunks))
    last = len(ends) - 1
    read_index = 0
    offset = 0
    for block in blocks:
        offset += len(block) + 2  # where this event's blank line ends
        while read_index < last and ends[read_index] < offset:
            read_index += 1
        if block:
            event = parse_block(block.strip(b"\n"))
            if event is not None:
                events.append((chunks[read_index][0], event[0], event[1]))
    return events


def _sse_events_incremental(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes, bytes]]:
    parser = SSEParser()
    events = [(ts, name, data) for ts, read in chunks for name, data in parser.feed(read)]
    end_ts = chunks[-1][0] if chunks else 0
    events.extend((end_ts, name, data) for name, data in parser.close())
    return events


class RecordDeriver:
    def __init__(
        self, endpoint: BaseEndpoint, tokenizer: Any, input_tokens: list[int]
    ) -> None:
        self.endpoint = endpoint
        self.tokenizer = tokenizer
        self.input_tokens = input_tokens
        self.produces_tokens = endpoint.metadata.produces_tokens
        self.streaming = endpoint.streaming

    def derive(self, raw: RawRecord) -> MetricRecord:
        if raw.error is not None:
            return self._error(raw, raw.error)
        try:
            return self._derive(raw)
        except InvalidResponse as exc:
            return self._error(raw, ErrorInfo(raw.status or None, "InvalidResponse", str(exc)))

    def _derive(self, raw: RawRecord) -> MetricRecord:
        content_ts: list[int] = []
        texts: list[str] = []
        prompt_tokens = completion_tokens = None
        if self.streaming:
            done = False
            stamps: list[int] = []
            payloads: list[bytes] = []
            for ts, name, data in _sse_events(raw.chunks):
                if name == b"error":
                    return self._error(raw, ErrorInfo(raw.status, "SSEError",
                                                      data.decode("utf-8", "replace")[:2000]))
                if data == DONE:
                    done = True
                    continue
                stamps.append(ts)
                payloads.append(data)
            for ts, parsed in zip(stamps, self.endpoint.parse_events(payloads), strict=True):
                if parsed.error is not None:
                    return self._error(raw, ErrorInfo(raw.status, "ServerError", parsed.error))
                if parsed.prompt_tokens is not None:
                    prompt_tokens = parsed.prompt_tokens
                if parsed.completion_tokens is not None:
                    completion_tokens = parsed.completion_tokens
                if parsed.content:
                    content_ts.append(ts)
                    texts.append(parsed.content)
            if not done:
                return self._error(raw, ErrorInfo(raw.status, "IncompleteStream",
                    f"stream ended without [DONE] after {len(content_ts)} content events"))
        else:
            if not raw.chunks:
                return self._error(raw, ErrorInfo(raw.status, "EmptyResponse", "no body"))
            ts, body = raw.chunks[0]
            parsed = self.endpoint.parse_body(body)
            if parsed.error is not None:
                return self._error(raw, ErrorInfo(raw.status, "ServerError", parsed.error))
            prompt_tokens, completion_tokens = parsed.prompt_tokens, parsed.completion_tokens
            content_ts.append(ts)
            texts.append(parsed.content or "")
        if self.produces_tokens and self.streaming and not content_ts:
            return self._error(raw, ErrorInfo(raw.status, "EmptyResponse",
                                              "the stream carried no content"))
        osl = 0
        mismatch = False
        if self.produces_tokens:
            counted = self.tokenizer.count("".join(texts))
            osl = completion_tokens if completion_tokens is not None else counted
            if completion_tokens:
                mismatch = abs(counted - completion_tokens) > MISMATCH_TOLERANCE * completion_tokens
        isl = prompt_tokens if prompt_tokens is not None else self._input_tokens(raw.conversation)
        start = raw.start_ns
        if self.streaming:
            ttft = content_ts[0] - start
            ttst = content_ts[1] - content_ts[0] if len(content_ts) > 1 else -1
            gaps = [b - a for a, b in itertools.pairwise(content_ts)]
        else:
            ttft = ttst = -1
            gaps = []
        return MetricRecord(
            raw.credit_id, raw.phase, raw.worker_id, raw.credit_ns, start, raw.wall_start_ns,
            raw.end_ns, ttft, ttst, content_ts[-1] - start, isl, osl, gaps,
            usage_mismatch=mismatch,
        )

    def _input_tokens(self, conversation: int) -> int:
        if 0 <= conversation < len(self.input_tokens):
            return self.input_tokens[conversation]
        return 0

    def _error(self, raw: RawRecord, error: ErrorInfo) -> MetricRecord:
        return MetricRecord(
            raw.credit_id, raw.phase, raw.worker_id, raw.credit_ns, raw.start_ns,
            raw.wall_start_ns, raw.end_ns, -1, -1, -1, self._input_tokens(raw.conversation), 0,
            [], error=error, cancelled=raw.cancelled,
        )
