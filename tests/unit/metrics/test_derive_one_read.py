"""A stream is cut by one split when it is nothing but single-line ``data:`` events
(``derive._data_only_events``): whatever the bytes and however they were read, that
shortcut must give the events (and read timestamps) the general SSE cut gives, and the
same record."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, RawRecord
from aiperf.common.config import UserConfig
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.metrics import derive as derive_module
from aiperf.metrics.derive import RecordDeriver, _data_only_events, _sse_events
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


def reads(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """``data`` cut at ``cuts`` (empty reads dropped), each read stamped on its own."""
    ends = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *ends], [*ends, len(data)], strict=True)]
    return [(5 * MS + i * MS, piece) for i, piece in enumerate(pieces) if piece]


@SETTINGS
@given(data=STREAMS, cuts=st.lists(st.integers(min_value=0), max_size=5))
def test_the_one_split_gives_the_general_cut_s_events(data: bytes, cuts: list[int]) -> None:
    chunks = reads(data, cuts)
    shortcut = _data_only_events(chunks)
    if shortcut is None:
        return
    events = _sse_events(chunks)
    assert [name for _, name, _ in events] == [MESSAGE] * len(events)
    assert list(zip(*shortcut, strict=True)) == [(ts, payload) for ts, _, payload in events]


def test_servers_streams_take_the_shortcut_and_others_do_not() -> None:
    stream = b"data: " + EVENT + b"\n\ndata: " + USAGE + b"\n\ndata: [DONE]\n\n"
    assert _data_only_events([(1, stream)]) == ([1, 1, 1], [EVENT, USAGE, b"[DONE]"])
    for other in (stream.replace(b"\n", b"\r\n"), b": ping\n\n" + stream,
                  stream + b"\n\n", stream[:-1], b"event: x\n" + stream):
        assert _data_only_events([(1, other)]) is None
    # Read in two, the first event's last byte in the second read: both events stamp 2.
    first_end = len(EVENT) + 8
    assert _data_only_events([(1, stream[:first_end - 1]), (2, stream[first_end - 1:])]) \
        == ([2, 2, 2], [EVENT, USAGE, b"[DONE]"])
    assert _data_only_events([(1, stream[:first_end]), (2, stream[first_end:])]) \
        == ([1, 2, 2], [EVENT, USAGE, b"[DONE]"])


def deriver(name: str) -> RecordDeriver:
    cls = plugins.get_class(PluginType.ENDPOINT, name)
    ep = cls(UserConfig(streaming=True, endpoint_type=name),
             plugins.get_metadata(PluginType.ENDPOINT, name))
    return RecordDeriver(ep, BuiltinTokenizer(), [3])


DERIVERS = {name: deriver(name) for name in ("chat", "completions")}


@pytest.mark.parametrize("name", sorted(DERIVERS))
@SETTINGS
@given(data=STREAMS, cuts=st.lists(st.integers(min_value=0), max_size=5))
def test_the_shortcut_derives_the_record_the_general_cut_does(name: str, data: bytes,
                                                             cuts: list[int]) -> None:
    raw = RawRecord(1, PROFILING, "w", 0, 0, 1 * MS, 1, 2 * MS, 99 * MS, 200,
                    reads(data, cuts), sent_ns=int(1.5 * MS), reused=1)
    derive = DERIVERS[name].derive
    with patch.object(derive_module, "_data_only_events", lambda chunks: None):
        general = derive(raw)
    assert derive(raw) == general
