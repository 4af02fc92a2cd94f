from __future__ import annotations

from aiperf.transports.sse import SSEParser


def feed_all(parts: list[bytes]) -> list[tuple[bytes, bytes]]:
    parser = SSEParser()
    events = []
    for part in parts:
        events.extend(parser.feed(part))
    events.extend(parser.close())
    return events


def test_one_event_per_blank_line() -> None:
    assert feed_all([b"data: a\n\ndata: b\n\n"]) == [(b"message", b"a"), (b"message", b"b")]


def test_a_data_line_split_across_reads_is_joined() -> None:
    assert feed_all([b"da", b"ta: {\"x\"", b": 1}\n", b"\n"]) == [(b"message", b'{"x": 1}')]


def test_crlf_line_ends_even_when_split_between_cr_and_lf() -> None:
    events = feed_all([b"data: a\r\n\r", b"\ndata: b\r\n\r\n"])
    assert events == [(b"message", b"a"), (b"message", b"b")]


def test_comment_lines_are_ignored() -> None:
    assert feed_all([b": ping\n\ndata: x\n\n"]) == [(b"message", b"x")]


def test_event_names_are_kept() -> None:
    assert feed_all([b"event: error\ndata: {\"m\": 1}\n\n"]) == [(b"error", b'{"m": 1}')]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert feed_all([b"data: a\ndata: b\n\n"]) == [(b"message", b"a\nb")]


def test_a_final_event_without_its_blank_line_is_flushed_on_close() -> None:
    assert feed_all([b"data: [DONE]\n"]) == [(b"message", b"[DONE]")]


def test_many_events_in_one_read() -> None:
    events = feed_all([b"".join(b"data: %d\n\n" % i for i in range(50))])
    assert [e[1] for e in events] == [str(i).encode() for i in range(50)]


def test_no_space_after_colon() -> None:
    assert feed_all([b"data:x\n\n"]) == [(b"message", b"x")]
