"""The server's usage on the record (AIPerf's usage_* metrics): read from the last event or
body whose usage carried any count, whole, -1 for what it lacks, whatever a server put there.
"""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import MetricRecord, encode
from aiperf.common.config import UserConfig
from aiperf.endpoints.base import MAX_TOKEN_COUNT, ParsedResponse, token_count
from aiperf.metrics.aggregate import RunAggregator, per_request_values
from aiperf.metrics.derive import NO_USAGE, usage_numbers
from tests.unit.metrics.test_derive import DONE, MS, chunk, deriver, raw
from tests.unit.metrics.test_run_aggregator import META, streamed

# What a server may put in a usage count: counts, their string and float spellings, and
# everything that is not one.
odd_counts = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    st.sampled_from([0, 1, MAX_TOKEN_COUNT - 1, MAX_TOKEN_COUNT, 10**30, -1]),
    st.integers(0, 10**6).map(str),
    st.integers(0, 10**6).map(float),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
)


def usages_of(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.dictionaries(st.sampled_from(keys), odd_counts),
                     st.just([1, 2]), st.just("usage"))


# An endpoint plugin's ints, plausible or not (a built-in endpoint's are token_count's).
plugin_counts = st.one_of(st.none(), st.integers(-(2**40), 2**40),
                          st.sampled_from([0, MAX_TOKEN_COUNT - 1, MAX_TOKEN_COUNT]))
RECORD = MetricRecord(credit_id=1, phase=1, worker_id="w", credit_ns=0, start_ns=1,
                      wall_start_ns=1, end_ns=2, ttft_ns=-1, ttst_ns=-1, latency_ns=1, isl=1,
                      osl=1, chunk_gaps_ns=[])
usages = usages_of(["prompt_tokens", "completion_tokens", "total_tokens"])
# Without total_tokens: which event carried usage must not hinge on a field the endpoint
# may not read yet (see the xfail below).
stream_usages = usages_of(["prompt_tokens", "completion_tokens"])


def expected(usage: Any) -> tuple[int, int, int]:
    """(prompt, completion, total) as the record should carry them: -1 for none."""
    if not isinstance(usage, dict):
        return -1, -1, -1
    return tuple(  # type: ignore[return-value]
        -1 if (n := token_count(usage.get(key))) is None else n
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"))


def body(usage: Any) -> bytes:
    out: dict[str, Any] = {"choices": [{"message": {"content": "a b c"}}]}
    if usage is not None:
        out["usage"] = usage
    return json.dumps(out).encode()


@given(usages)
@settings(max_examples=100, deadline=None)
def test_a_body_usage_of_any_shape_is_its_counts_or_absent(usage: Any) -> None:
    record = deriver(streaming=False).derive(raw([(5 * MS, body(usage))]))
    assert record.error is None
    prompt, completion, _ = expected(usage)
    assert (record.usage_prompt, record.usage_completion) == (prompt, completion)
    values = per_request_values(record, streaming=False)
    for tag, value in (("usage_prompt_tokens", prompt),
                       ("usage_completion_tokens", completion)):
        if value < 0:
            assert tag not in values  # absent, never 0
        else:
            assert values[tag] == value
    # The tokenizer's count stands in for OSL, never for the usage metric.
    assert values["output_sequence_length"] == (completion if completion >= 0 else 3)


@given(st.lists(stream_usages, min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_a_stream_takes_the_last_event_that_carried_a_count(per_event: list[Any]) -> None:
    reads = [(5 * MS, chunk(" a b"))]
    reads += [(6 * MS + i, chunk(None, usage=u) if u is not None else chunk(None))
              for i, u in enumerate(per_event)]
    record = deriver().derive(raw([*reads, (9 * MS, DONE)]))
    assert record.error is None
    with_counts = [expected(u) for u in per_event if expected(u) != (-1, -1, -1)]
    last = with_counts[-1] if with_counts else (-1, -1, -1)
    # Whole from that event: a field it lacks is -1 even if an earlier event had it.
    assert (record.usage_prompt, record.usage_completion) == last[:2]


@pytest.mark.parametrize("streaming", [True, False])
def test_the_total_is_the_servers_not_a_sum(streaming: bool) -> None:
    usage = {"prompt_tokens": 123, "completion_tokens": 45, "total_tokens": 170}
    if streaming:
        reads = [(5 * MS, chunk(" a b")), (6 * MS, chunk(None, usage=usage)), (7 * MS, DONE)]
    else:
        reads = [(5 * MS, body(usage))]
    record = deriver(streaming=streaming).derive(raw(reads))
    assert (record.usage_prompt, record.usage_completion, record.usage_total) == (123, 45, 170)


def test_the_reasoning_count_and_an_embedding_s_prompt_count() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 4,
             "completion_tokens_details": {"reasoning_tokens": 3}}
    record = deriver().derive(raw([(5 * MS, chunk(" a b")), (6 * MS, chunk(None, usage=usage)),
                                   (7 * MS, DONE)]))
    assert record.usage_reasoning == 3
    values = per_request_values(record, streaming=True)
    assert values["usage_reasoning_tokens"] == 3 and values["usage_prompt_tokens"] == 9
    # An endpoint that produces no tokens keeps only the prompt count, as AIPerf does.
    values = per_request_values(record, streaming=True, produces_tokens=False)
    assert values["usage_prompt_tokens"] == 9
    assert not {"usage_completion_tokens", "usage_reasoning_tokens"} & set(values)


def test_an_error_record_has_no_usage() -> None:
    record = deriver().derive(raw([(5 * MS, chunk(None, usage={"prompt_tokens": 5}))]))
    assert record.error is not None
    assert (record.usage_prompt, record.usage_completion, record.usage_total,
            record.usage_reasoning) == NO_USAGE
    assert not any(tag.startswith("usage_") for tag in per_request_values(record, True))


@given(st.lists(st.builds(ParsedResponse, prompt_tokens=plugin_counts,
                          completion_tokens=plugin_counts, total_tokens=plugin_counts,
                          reasoning_tokens=plugin_counts), max_size=4))
@settings(max_examples=100, deadline=None)
def test_what_a_plugin_put_in_a_parsed_response_is_a_count_or_no_value(
        events: list[ParsedResponse]) -> None:
    numbers = usage_numbers(events)
    carried = [e for e in events if (e.prompt_tokens, e.completion_tokens, e.total_tokens,
                                     e.reasoning_tokens) != (None, None, None, None)]
    if not carried:
        assert numbers == NO_USAGE
    else:  # the last one that carried any, whole
        last = carried[-1]
        assert numbers == tuple(-1 if n is None else n for n in (
            last.prompt_tokens, last.completion_tokens, last.total_tokens,
            last.reasoning_tokens))
    record = msgspec.structs.replace(RECORD, usage_prompt=numbers[0],
                                     usage_completion=numbers[1], usage_total=numbers[2],
                                     usage_reasoning=numbers[3])
    values = per_request_values(record, streaming=False)
    for tag, number in zip(("usage_prompt_tokens", "usage_completion_tokens",
                            "usage_total_tokens", "usage_reasoning_tokens"), numbers,
                           strict=True):
        if 0 <= number < MAX_TOKEN_COUNT:
            assert values[tag] == number
        else:  # absent, never 0 nor a count the records manager cannot keep
            assert tag not in values


def test_a_record_without_usage_carries_four_one_byte_integers() -> None:
    fields: dict[str, Any] = dict(
        credit_id=1, phase=1, worker_id="w", credit_ns=0, start_ns=1, wall_start_ns=1,
        end_ns=2, ttft_ns=1, ttst_ns=-1, latency_ns=1, isl=1, osl=1, chunk_gaps_ns=[])
    plain = MetricRecord(**fields)
    # The usage fields are the last four of the array: -1 is one msgpack byte (0xff).
    assert encode(plain).endswith(b"\xff" * 4)
    with_usage = MetricRecord(**fields, usage_prompt=123, usage_completion=45,
                              usage_total=170, usage_reasoning=0)
    decoded = msgspec.msgpack.Decoder(MetricRecord).decode(encode(with_usage))
    assert decoded == with_usage
    # 123, 45 and 0 are one byte each, 170 two: one byte more than no usage at all.
    assert len(encode(with_usage)) == len(encode(plain)) + 1


@pytest.mark.parametrize("sketch", [False, True], ids=["exact", "sketch"])
def test_the_run_keeps_usage_only_from_requests_that_reported_it(sketch: bool) -> None:
    rng = random.Random(3)
    records = [streamed(i, i * MS, rng) for i in range(300)]
    # Two in three report usage; the third reports none (the -1 defaults).
    reported = [msgspec.structs.replace(r, usage_prompt=100 + i % 7, usage_completion=40,
                                        usage_total=999, usage_reasoning=i % 2)
                if i % 3 else r for i, r in enumerate(records)]
    config = UserConfig(streaming=True, sketch=sketch)
    aggregator = RunAggregator(config, META, streaming=True)
    aggregator.add(reported)
    metrics = aggregator.finish([(0, len(records))])["metrics"]
    n = sum(1 for i in range(len(records)) if i % 3)
    prompts = [100 + i % 7 for i in range(len(records)) if i % 3]
    assert metrics["usage_prompt_tokens"]["count"] == n
    assert metrics["usage_prompt_tokens"]["avg"] == pytest.approx(sum(prompts) / n)
    assert metrics["total_usage_prompt_tokens"]["avg"] == sum(prompts)
    assert metrics["total_usage_completion_tokens"]["avg"] == 40 * n
    assert metrics["total_usage_total_tokens"]["avg"] == 999 * n  # as sent, not a sum
    assert metrics["total_usage_reasoning_tokens"]["avg"] == \
        sum(i % 2 for i in range(len(records)) if i % 3)
    assert metrics["usage_total_tokens"]["min"] == metrics["usage_total_tokens"]["max"] == 999
