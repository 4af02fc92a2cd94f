"""From what a worker saw (``RawRecord``) to what one request measured (``MetricRecord``).

Only token events count for timing: answer text and reasoning text (``reasoning_content``
/ ``reasoning``) are tokens; role-only deltas, usage trailers, empty deltas and ``[DONE]``
are not. TTFT is the first token of any kind, TTFO the first answer token, and request
latency ends at the response's last byte. Token counts prefer the server's ``usage`` (its
``completion_tokens`` include reasoning, ``completion_tokens_details.reasoning_tokens`` is
the reasoning part); the tokenizer fills in when the server sends none, and the two are
compared (``usage_mismatch``) when both exist.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiperf.common.codec import MAX_ERROR_MESSAGE, ErrorInfo, MetricRecord, RawRecord
from aiperf.endpoints.base import BaseEndpoint, InvalidResponse, ParsedResponse
from aiperf.transports.http import DONE
from aiperf.transports.redact import scrub_error, secret_values
from aiperf.transports.sse import MESSAGE, SSEParser, parse_block

MISMATCH_TOLERANCE = 0.10
NO_USAGE = (-1, -1, -1, -1)


def _usage_of(parsed: ParsedResponse) -> tuple[int, int, int, int] | None:
    """(prompt, completion, total, reasoning) of one event or body, -1 for each it lacks;
    None when it carried no usage count at all. The endpoint read them as counts
    (``base.token_count``, as for ISL and OSL); the records manager keeps only plausible
    ones (``parity.add_usage_values``). Four None checks: this runs for every request
    (validating each here cost three times as much)."""
    p, c, t, r = (parsed.prompt_tokens, parsed.completion_tokens, parsed.total_tokens,
                  parsed.reasoning_tokens)
    if p is None and c is None and t is None and r is None:
        return None
    return (-1 if p is None else p, -1 if c is None else c, -1 if t is None else t,
            -1 if r is None else r)


def usage_numbers(events: list[ParsedResponse]) -> tuple[int, int, int, int]:
    """(prompt, completion, total, reasoning) of the last event that carried any usage
    count, -1 for each it lacks; all -1 when none did. As AIPerf reads usage: the last
    non-empty usage wins whole, no field is merged from an earlier event (a stream sends
    usage once at its end, or running totals whose last is final)."""
    for parsed in reversed(events):
        usage = _usage_of(parsed)
        if usage is not None:
            return usage
    return NO_USAGE


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


_SEPARATOR = b"\n\ndata: "


def _data_only_events(
    chunks: list[tuple[int, bytes]],
) -> tuple[list[int], list[bytes]] | None:
    """(each event's read timestamp, each event's data), as ``_sse_events`` gives them,
    when the reads are nothing but single-line ``data: `` events each closed by a blank
    line (what servers send); None for anything else (``_sse_events`` then).

    One split in C instead of a slice and a tuple per event: exactly the events'
    separators are found because no line break is left over for anything else (an
    ``event:`` or comment line, a multi-line event, an empty block all add one)."""
    if not chunks:
        return None
    data = chunks[0][1] if len(chunks) == 1 else b"".join(read for _, read in chunks)
    if not (data.startswith(b"data: ") and data.endswith(b"\n\n")) or b"\r" in data:
        return None
    payloads = data[6:-2].split(_SEPARATOR)
    if data.count(b"\n") != 2 * len(payloads):
        return None
    if len(chunks) == 1:
        return [chunks[0][0]] * len(payloads), payloads
    ends = list(itertools.accumulate(len(read) for _, read in chunks))
    last = len(ends) - 1
    read_index = 0
    offset = 0
    stamps: list[int] = []
    for payload in payloads:
        offset += len(payload) + 8  # "data: ", the payload, the blank line
        while read_index < last and ends[read_index] < offset:
            read_index += 1
        stamps.append(chunks[read_index][0])
    return stamps, payloads


def _sse_events_incremental(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes, bytes]]:
    parser = SSEParser()
    events = [(ts, name, data) for ts, read in chunks for name, data in parser.feed(read)]
    end_ts = chunks[-1][0] if chunks else 0
    events.extend((end_ts, name, data) for name, data in parser.close())
    return events


class RecordDeriver:
    """Turns one ``RawRecord`` into one ``MetricRecord``, whatever the server sent: a
    response that breaks the protocol is an error record, never an exception."""

    def __init__(
        self, endpoint: BaseEndpoint, tokenizer: Any, input_tokens: list[int]
    ) -> None:
        self.endpoint = endpoint
        self.tokenizer = tokenizer
        self.input_tokens = input_tokens
        self.produces_tokens = endpoint.metadata.produces_tokens
        self.streaming = endpoint.streaming
        # A server's error event may echo the API key: scrubbed before it is stored.
        self.secrets = secret_values(endpoint.headers(), endpoint.config.url)

    def derive(self, raw: RawRecord) -> MetricRecord:
        if raw.error is not None:
            # The worker scrubbed it already (it knows the same headers): not again.
            return self._error(raw, raw.error, scrubbed=True)
        try:
            return self._derive(raw)
        except InvalidResponse as exc:
            return self._error(raw, ErrorInfo(raw.status or None, "InvalidResponse", str(exc)))
        except Exception as exc:
            # A plugin's parser, or a response no rule above foresaw: this request failed,
            # the record processor goes on.
            message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_MESSAGE]
            return self._error(raw, ErrorInfo(raw.status or None, "InvalidResponse", message))

    def _derive(self, raw: RawRecord) -> MetricRecord:
        # Timestamps of the events that carry a token of any kind (answer or reasoning),
        # and of the first answer token.
        token_ts: list[int] = []
        first_answer_ts = -1
        texts: list[str] = []
        reasoning_texts: list[str] = []
        prompt_tokens = completion_tokens = reasoning_tokens = None
        read = raw.answer
        if read is not None:
            # A session turn's plain chat answer, read by its worker (answers.py) as the
            # branches below would read it: taken as read, not parsed a second time.
            token_ts, texts, last_byte = read.token_ns, read.texts, read.last_ns
            first_answer_ts = token_ts[0] if token_ts else -1
            if read.prompt_tokens >= 0:
                prompt_tokens = read.prompt_tokens
            if read.completion_tokens >= 0:
                completion_tokens = read.completion_tokens
            if read.reasoning_tokens >= 0:
                reasoning_tokens = read.reasoning_tokens
            usage = read.usage
            if self.streaming and self.produces_tokens and not token_ts:
                return self._error(raw, ErrorInfo(raw.status, "EmptyResponse",
                                                  "the stream carried no content"))
        elif not raw.chunks:
            return self._error(raw, ErrorInfo(raw.status, "EmptyResponse", "no body"))
        elif self.streaming:
            done = False
            stamps: list[int] = []
            payloads: list[bytes] = []
            data_only = _data_only_events(raw.chunks)
            if data_only is not None and DONE not in data_only[1][:-1]:  # the common case
                stamps, payloads = data_only
                done = payloads[-1] == DONE
                if done:
                    stamps, payloads = stamps[:-1], payloads[:-1]
            else:
                for ts, name, data in _sse_events(raw.chunks):
                    if name == b"error":
                        return self._error(raw, ErrorInfo(raw.status, "SSEError",
                            data.decode("utf-8", "replace")[:MAX_ERROR_MESSAGE]))
                    if data == DONE:
                        done = True
                        continue
                    stamps.append(ts)
                    payloads.append(data)
            # Kept lean: this runs for every streamed event. Reasoning is rare, so its
            # bookkeeping stays off the common path (a plain answer event).
            reasoning_only: list[int] = []  # token_ts indexes of reasoning-only events
            events = self.endpoint.parse_events(payloads)
            for ts, parsed in zip(stamps, events, strict=True):
                if parsed.error is not None:
                    return self._error(raw, ErrorInfo(raw.status, "ServerError", parsed.error))
                if parsed.prompt_tokens is not None or parsed.completion_tokens is not None:
                    if parsed.prompt_tokens is not None:
                        prompt_tokens = parsed.prompt_tokens
                    if parsed.completion_tokens is not None:
                        completion_tokens = parsed.completion_tokens
                    if parsed.reasoning_tokens is not None:
                        reasoning_tokens = parsed.reasoning_tokens
                content = parsed.content
                reasoning = parsed.reasoning
                if reasoning:
                    reasoning_texts.append(reasoning)
                    if not content:
                        reasoning_only.append(len(token_ts))
                        token_ts.append(ts)
                        continue
                elif not content:
                    continue
                token_ts.append(ts)
                texts.append(content)
            # The first token event that is not reasoning-only (the indexes ascend).
            first_answer = next((i for i, r in enumerate(reasoning_only) if i != r),
                                len(reasoning_only)) if reasoning_only else 0
            first_answer_ts = token_ts[first_answer] if first_answer < len(token_ts) else -1
            if not done and not (payloads and self.endpoint.stream_ended(payloads[-1])):
                return self._error(raw, ErrorInfo(raw.status, "IncompleteStream",
                    f"stream ended without [DONE] after {len(token_ts)} content events"))
            if self.produces_tokens and not token_ts:
                return self._error(raw, ErrorInfo(raw.status, "EmptyResponse",
                                                  "the stream carried no content"))
            # Found from the end, after the loop: the usage event is (nearly) always last,
            # so this costs the per-event loop nothing.
            usage = usage_numbers(events)
            last_byte = raw.chunks[-1][0]
        else:
            ts = last_byte = raw.chunks[-1][0]
            body = raw.chunks[0][1] if len(raw.chunks) == 1 else b"".join(
                read for _, read in raw.chunks)
            parsed = self.endpoint.parse_body(body)
            if parsed.error is not None:
                return self._error(raw, ErrorInfo(raw.status, "ServerError", parsed.error))
            prompt_tokens, completion_tokens = parsed.prompt_tokens, parsed.completion_tokens
            reasoning_tokens = parsed.reasoning_tokens
            usage = _usage_of(parsed) or NO_USAGE
            token_ts.append(ts)
            texts.append(parsed.content or "")
            if parsed.reasoning:
                reasoning_texts.append(parsed.reasoning)
        osl = 0
        reasoning_count = -1
        mismatch = False
        if self.produces_tokens:
            count = self.tokenizer.count
            counted_reasoning = count("".join(reasoning_texts)) if reasoning_texts else 0
            counted = count("".join(texts)) + counted_reasoning
            osl = completion_tokens if completion_tokens is not None else counted
            if completion_tokens:
                mismatch = abs(counted - completion_tokens) > MISMATCH_TOLERANCE * completion_tokens
            if reasoning_tokens is not None:
                reasoning_count = reasoning_tokens
            elif reasoning_texts:
                reasoning_count = counted_reasoning
        isl = prompt_tokens if prompt_tokens is not None else (
            raw.isl if raw.isl >= 0 else self._input_tokens(raw.conversation))
        start = raw.start_ns
        if self.streaming:
            ttft = token_ts[0] - start
            ttst = token_ts[1] - token_ts[0] if len(token_ts) > 1 else -1
            gaps = [b - a for a, b in itertools.pairwise(token_ts)]
            ttfo = first_answer_ts - start if first_answer_ts >= 0 else -1
        else:
            ttft = ttst = ttfo = -1
            gaps = []
        if raw.reused < 0 or not raw.sent_ns or not raw.response_ns:  # phases not traced
            return MetricRecord(
                raw.credit_id, raw.phase, raw.worker_id, raw.credit_ns, start,
                raw.wall_start_ns, raw.end_ns, ttft, ttst, last_byte - start, isl, osl, gaps,
                usage_mismatch=mismatch, ttfo_ns=ttfo, reasoning_tokens=reasoning_count,
                session=raw.session, turn_index=raw.turn_index, url_index=raw.url_index,
                usage_prompt=usage[0], usage_completion=usage[1], usage_total=usage[2],
                usage_reasoning=usage[3], conversation=raw.conversation,
            )
        # The HTTP phases (k6's names). Sending, waiting and receiving add up to the
        # answered exchange: its start -> the response's last byte (the request latency,
        # unless a stale connection made the transport resend: the time lost on it is then
        # in ``blocked``). Positional, in MetricRecord's field order: setting them one by
        # one after construction cost twice as much.
        begun = raw.resend_ns or start
        sent = raw.sent_ns
        response = raw.response_ns
        return MetricRecord(
            raw.credit_id, raw.phase, raw.worker_id, raw.credit_ns, start, raw.wall_start_ns,
            raw.end_ns, ttft, ttst, last_byte - start, isl, osl, gaps, mismatch, None, False,
            ttfo, reasoning_count, raw.blocked_ns, raw.dns_ns, raw.connecting_ns,
            max(0, sent - begun), max(0, response - max(sent, begun)),
            max(0, last_byte - max(response, begun)), raw.reused, raw.session, raw.turn_index,
            raw.url_index, *usage, raw.conversation,
        )

    def _input_tokens(self, conversation: int) -> int:
        if 0 <= conversation < len(self.input_tokens):
            return self.input_tokens[conversation]
        return 0

    def _error(self, raw: RawRecord, error: ErrorInfo, scrubbed: bool = False) -> MetricRecord:
        if self.secrets and not scrubbed:
            error = scrub_error(error, self.secrets)
        return MetricRecord(
            raw.credit_id, raw.phase, raw.worker_id, raw.credit_ns, raw.start_ns,
            raw.wall_start_ns, raw.end_ns, -1, -1, -1,
            raw.isl if raw.isl >= 0 else self._input_tokens(raw.conversation), 0,
            [], error=error, cancelled=raw.cancelled, session=raw.session,
            turn_index=raw.turn_index, url_index=raw.url_index, conversation=raw.conversation,
        )


def answer_of(endpoint: BaseEndpoint, raw: RawRecord) -> tuple[str, int | None] | None:
    """The answer text of a finished request and the server's count of its tokens (None
    when it gave none), for the next turn of its session; None when the request failed or
    its response is not an answer. Reasoning is not part of the answer a client keeps."""
    if raw.error is not None or not raw.chunks or not 200 <= raw.status < 300:
        return None
    try:
        completion: int | None = None
        if endpoint.streaming:
            data_only = _data_only_events(raw.chunks)
            payloads = (data_only[1] if data_only is not None
                        else [data for _, name, data in _sse_events(raw.chunks)
                              if name == MESSAGE])
            payloads = [p for p in payloads if p != DONE]
            texts = []
            for parsed in endpoint.parse_events(payloads):
                if parsed.error is not None:
                    return None
                if parsed.content:
                    texts.append(parsed.content)
                if parsed.completion_tokens is not None:
                    completion = parsed.completion_tokens
            return "".join(texts), completion
        body = raw.chunks[0][1] if len(raw.chunks) == 1 else b"".join(
            read for _, read in raw.chunks)
        parsed = endpoint.parse_body(body)
        if parsed.error is not None:
            return None
        return parsed.content or "", parsed.completion_tokens
    except Exception:
        return None  # a malformed answer: the record processor reports it, not this
