"""A stream read at once is cut by one split when it is nothing but single-line ``data:``
events (``derive._data_only_payloads``): whatever the bytes, that shortcut must give the
events the general SSE cut gives, and the same record."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, RawRecord
from aiperf.common.config import UserConfig
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.metrics.derive import RecordDeriver, _data_only_payloads, _sse_events
from aiperf.plugin import PluginType, plugins
from aiperf.transports.sse import MESSAGE

MS = 1_000_000
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

EVENT = json.dumps({"choices": [{"delta": {"content": " a"}}]}).encode()
USAGE = json.dumps({"choices": [], "usage": {"prompt_tokens": 3,
                                             "completion_tokens": 2}}).encode()
# Pieces a stream is made of, the tricky ones included: prefixes without the space,
# comments, named events, CR line ends, empty blocks, line breaks inside an event.
PIECES = st.sampled_from([
    b"data: ", b"data:", b"data:  ", b"\n", b"\n\n", b"\r\n", b"\r", b": c\n",
    b"event: error\n", b"[DONE]", EVENT, USAGE, b"{}", b"x", b"data: [DONE]\n\n",
])
STREAMS = st.one_of(
    st.lists(PIECES, max_size=12).map(b"".join),
    st.lists(st.sampled_from([EVENT, USAGE, b"[DONE]", b"", b"{", b"x\ny"]), max_size=6).map(
        lambda events: b"".join(b"data: " + event + b"\n\n" for event in events)),
)


@SETTINGS
@given(data=STREAMS)
def test_the_one_split_gives_the_general_cut_s_events(data: bytes) -> None:
    chunks = [(5 * MS, data)]
    payloads = _data_only_payloads(chunks)
    if payloads is None:
        return
    events = _sse_events(chunks)
    assert [name for _, name, _ in events] == [MESSAGE] * len(events)
    assert [payload for _, _, payload in events] == payloads


def test_servers_streams_take_the_shortcut_and_others_do_not() -> None:
    stream = b"data: " + EVENT + b"\n\ndata: " + USAGE + b"\n\ndata: [DONE]\n\n"
    assert _data_only_payloads([(1, stream)]) == [EVENT, USAGE, b"[DONE]"]
    for other in (stream.replace(b"\n", b"\r\n"), b": ping\n\n" + stream,
                  stream + b"\n\n", stream[:-1], b"event: x\n" + stream):
        assert _data_only_payloads([(1, other)]) is None
    assert _data_only_payloads([(1, stream[:9]), (2, stream[9:])]) is None


def deriver(name: str) -> RecordDeriver:
    cls = plugins.get_class(PluginType.ENDPOINT, name)
    ep = cls(UserConfig(streaming=True, endpoint_type=name),
             plugins.get_metadata(PluginType.ENDPOINT, name))
    return RecordDeriver(ep, BuiltinTokenizer(), [3])


DERIVERS = {name: deriver(name) for name in ("chat", "completions")}


@pytest.mark.parametrize("name", sorted(DERIVERS))
@SETTINGS
@given(data=STREAMS, cut=st.integers(min_value=1))
def test_a_read_at_once_derives_as_the_same_bytes_in_two_reads(name: str, data: bytes,
                                                               cut: int) -> None:
    if len(data) < 2:
        return
    cut = 1 + cut % (len(data) - 1)
    # Two reads with one timestamp: the general cut, the same timing.
    at_once = [(5 * MS, data)]
    in_two = [(5 * MS, data[:cut]), (5 * MS, data[cut:])]

    def record(chunks: list[tuple[int, bytes]]) -> RawRecord:
        return RawRecord(1, PROFILING, "w", 0, 0, 1 * MS, 1, 2 * MS, 9 * MS, 200, chunks,
                         sent_ns=int(1.5 * MS), reused=1)

    derive = DERIVERS[name].derive
    assert derive(record(at_once)) == derive(record(in_two))
