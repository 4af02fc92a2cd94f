"""RunAggregator: a run's results built batch by batch equal those of all its records at
once, hold a few hundred bytes a request at most, and (sketch mode) hold no per-request
values at all. The reference values are built here straight from ``per_request_values``
in float64, as the records manager kept them before it stored values compactly."""

from __future__ import annotations

import gc
import io
import itertools
import random
import weakref
from array import array
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord, cancellation
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import (
    JsonlTable,
    RunAggregator,
    check_invariant,
    compute_results,
    export_record,
    per_request_values,
    write_msgpack,
)
from aiperf.metrics.definitions import BY_TAG
from aiperf.metrics.stats import summarize, summarize_adjusted
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import EndpointMetadata

MS = 1_000_000
META = plugins.get_metadata(PluginType.ENDPOINT, "chat")
assert isinstance(META, EndpointMetadata)


def streamed(cid: int, start_ns: int, rng: random.Random, osl: int = 16,
             phase: int = PROFILING) -> MetricRecord:
    """A streamed response of ``osl`` tokens, a chunk each, with HTTP phases traced."""
    ttft = rng.randint(1, 50) * MS + rng.randint(0, 999)
    gaps = [rng.randint(1, 20 * MS) for _ in range(osl - 1)]
    latency = ttft + sum(gaps)
    return MetricRecord(
        cid, phase, f"w{cid % 3}", start_ns - rng.randint(0, MS), start_ns,
        1_700_000_000_000_000_000 + start_ns, start_ns + latency, ttft,
        ttft + (gaps[0] if gaps else 0), latency, rng.randint(10, 500), osl, gaps,
        ttfo_ns=ttft, reasoning_tokens=rng.choice([-1, 0, 3]),
        http_blocked_ns=rng.randint(0, 1000), http_dns_ns=0, http_connecting_ns=0,
        http_sending_ns=rng.randint(1000, 9000), http_waiting_ns=ttft,
        http_receiving_ns=latency - ttft, http_reused=rng.choice([0, 1]))


def mixed_run(seed: int, n: int = 60) -> list[MetricRecord]:
    """Warmup, successes (one with a chunk gap past 4.29 s), server errors, requests
    given up on, one that never started, a repeated and an unexpected credit id, in an
    order that is not the credit ids'."""
    rng = random.Random(seed)
    records = [streamed(i, i * 3 * MS, rng, phase=WARMUP if i < 3 else PROFILING,
                        osl=rng.choice([1, 2, 16])) for i in range(n)]
    records[5] = streamed(5, 15 * MS, rng, osl=3)
    records[5].chunk_gaps_ns[1] = 5_000_000_000
    records[7] = MetricRecord(7, PROFILING, "w", 21 * MS, 21 * MS, 0, 26 * MS, -1, -1, -1,
                              10, 0, [], error=ErrorInfo(500, "Internal", "boom"))
    records[8] = MetricRecord(8, PROFILING, "w", 24 * MS, 24 * MS, 0, 99 * MS, -1, -1, -1,
                              10, 0, [], error=cancellation("cancelled: end of run"),
                              cancelled=True)
    records[9] = MetricRecord(9, PROFILING, "w", 27 * MS, 0, 0, 27 * MS, -1, -1, -1, 10, 0,
                              [], error=ErrorInfo(None, "Dataset", "no body"))
    records.append(streamed(11, 40 * MS, rng))  # 11 again
    records.append(streamed(n + 1000, 41 * MS, rng))  # never issued
    rng.shuffle(records)
    return records


def reference(records: list[MetricRecord]) -> dict[str, np.ndarray]:
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record.phase != PROFILING:
            continue
        for tag, value in per_request_values(record, streaming=True).items():
            values[tag].extend(value if isinstance(value, list) else [value])
    return {tag: np.array(v, dtype=np.float64) for tag, v in values.items()}


def batched(records: list[MetricRecord], cuts: list[int], config: UserConfig,
            rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    aggregator = RunAggregator(config, META, streaming=True,
                               table=None if rows is None else rows.append)
    edges = sorted({0, len(records), *(min(c, len(records)) for c in cuts)})
    for lo, hi in itertools.pairwise(edges):
        aggregator.add(iter(records[lo:hi]))
    out = aggregator.finish([(0, 60)])
    out["values"] = {tag: bytes(v) for tag, v in out["values"].items()}
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 62), max_size=8))
def test_fed_in_batches_it_gives_the_results_of_all_records_at_once(
        seed: int, cuts: list[int]) -> None:
    records = mixed_run(seed)
    config = UserConfig(streaming=True, goodput={"time_to_first_token": 30.0})
    rows: list[dict[str, Any]] = []
    out = batched(records, cuts, config, rows)
    whole = compute_results(records, config, META, [(0, 60)], streaming=True)
    assert rows == whole.pop("records")
    assert out == whole
    # ... and those are the numbers of float64 arrays of every per-request value.
    ref = reference(records)
    assert out["values"] == {tag: v.tobytes() for tag, v in ref.items()}
    failures = out["metrics"]["error_request_count"]["avg"]
    assert failures == 3
    for tag, data in ref.items():
        assert out["metrics"][tag] == summarize(data, BY_TAG[tag].unit)
        if BY_TAG[tag].error_adjusted:
            assert out["metrics"][f"adj_{tag}"] == summarize_adjusted(
                data, failures, BY_TAG[tag].unit)
    assert out["invariant"] == check_invariant(
        np.array([r.credit_id for r in records]), [(0, 60)])
    assert out["invariant"]["duplicate_credit_ids"] == [11]
    assert out["invariant"]["unexpected_credit_ids"] == [1060]


def test_a_streamed_request_costs_at_most_250_bytes() -> None:
    rng = random.Random(1)
    aggregator = RunAggregator(UserConfig(streaming=True), META, streaming=True)
    n = 20_000
    for first in range(0, n, 100):
        aggregator.add([streamed(i, i * MS, rng) for i in range(first, first + 100)])
    per_request = aggregator.buffer_bytes() / n
    # With up to SETTLE_RECORDS records' float values still at 8 bytes each.
    assert per_request <= 250, per_request
    aggregator._totals.settle()
    per_request = aggregator.buffer_bytes() / n
    # 15 latencies and HTTP phases of 4 bytes (whole nanoseconds; decode_duration among
    # them), ITL, per-user throughput and AIPerf's two per-user rates (e2e output, prefill)
    # of 8, 3 token counts of 4, a flag, 15 gaps of 4, the timeline's 20 and a bit for the
    # credit id: 185 bytes.
    assert 180 < per_request <= 190, per_request
    assert aggregator.finish([(0, n)])["metrics"]["request_count"]["avg"] == n


def test_sketch_mode_keeps_no_value_per_request_and_reads_percentiles_from_sketches(
        ) -> None:
    rng = random.Random(2)
    records = [streamed(i, i * MS, rng) for i in range(5000)]
    config = UserConfig(streaming=True, sketch=True, sketch_relative_accuracy=0.01)
    aggregator = RunAggregator(config, META, streaming=True)
    for first in range(0, len(records), 250):
        aggregator.add(records[first:first + 250])
        assert aggregator.buffer_bytes() <= first // 8 + 64 + 1024  # the credit bitmap
    out = aggregator.finish([(0, len(records))])
    exact = compute_results(records, UserConfig(streaming=True), META,
                            [(0, len(records))], streaming=True)
    assert out["values"] == {} and out["timeline"] is None
    assert set(out["sketches"]) == set(exact["values"])
    for tag, stats in exact["metrics"].items():
        sketched = out["metrics"][tag]
        assert sketched.get("count") == stats.get("count"), tag
        if "p99" not in stats or tag.startswith("adj_"):
            continue
        assert sketched["avg"] == pytest.approx(stats["avg"], rel=1e-9), tag
        for p in ("p50", "p90", "p99"):
            assert sketched[p] == pytest.approx(stats[p], rel=0.0101, abs=1e-12), (tag, p)
    assert out["invariant"] == exact["invariant"]


def test_the_values_file_is_the_bytes_msgpack_would_encode() -> None:
    big = array("d", range(20_000))
    stored = {
        "values": {"a": memoryview(big), "b": memoryview(array("d", [1.5])), "c": b""},
        "timeline": {"patterns": [[True, ["x", "y"]]] * 17,
                     "list_lengths": {"g": [2, memoryview(array("H", range(300)))]}},
        "worker_load": {f"w{i}": {"tick_ns": i, "lag_ns": None} for i in range(20)},
        "clock_offsets": {}, "flag": False, "x": 1.25, "neg": -7,
    }
    out = io.BytesIO()
    write_msgpack(out, stored)
    assert out.getvalue() == msgspec.msgpack.encode(stored)


def test_the_jsonl_table_is_one_export_line_a_record_and_can_be_discarded(
        tmp_path: Path) -> None:
    rng = random.Random(3)
    records = [streamed(i, i * MS, rng) for i in range(50)]
    table = JsonlTable(tmp_path / "t.jsonl")
    table.FLUSH_BYTES = 4096  # several flushes
    for record in records:
        table(export_record(record, per_request_values(record, streaming=True)))
    table.close()
    lines = (tmp_path / "t.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 51 and table.count == 50
    assert [msgspec.json.decode(line) for line in lines[:-1]] == [
        msgspec.json.decode(msgspec.json.encode(
            export_record(r, per_request_values(r, streaming=True)))) for r in records]
    dropped = JsonlTable(tmp_path / "d.jsonl")
    dropped({"metadata": {}})
    dropped.discard()
    assert not (tmp_path / "d.jsonl").exists()


def test_a_finished_run_is_freed_when_its_result_is_dropped_without_the_cyclic_collector(
        ) -> None:
    rng = random.Random(4)
    aggregator = RunAggregator(UserConfig(streaming=True), META, streaming=True)
    aggregator.add([streamed(i, i * MS, rng) for i in range(100)])
    totals = weakref.ref(aggregator._totals)
    gaps = weakref.ref(aggregator._totals.values["inter_chunk_latency"])
    gc.disable()  # the records manager's arrays must go at once, not at a later gc pass
    try:
        out = aggregator.finish([(0, 100)])
        # Kept as they are (the result's values convert them as they are written)...
        assert gaps() is not None
        del out, aggregator
        assert totals() is None and gaps() is None  # ... and gone with the result
    finally:
        gc.enable()


def test_values_settled_to_nanoseconds_give_the_float64_values_bit_for_bit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Over several settles: latencies become 4-byte nanoseconds, one passing 4.29 s
    widens its metric to 8 bytes, a metric found not to be whole nanoseconds midway goes
    back to float64; a large column's statistics come from the integers in chunks. The
    values and statistics are those of float64 arrays of every value."""
    import aiperf.metrics.aggregate as aggregate

    monkeypatch.setattr(aggregate, "SETTLE_RECORDS", 300)
    monkeypatch.setattr(aggregate, "LEAN_VALUES", 5000)  # the chunk gaps go the lean way
    rng = random.Random(5)
    records = [streamed(i, i * MS, rng) for i in range(1200)]
    records[700].latency_ns = 6_000_000_000 + 17  # request_latency: 'I' -> 'q'
    config = UserConfig(streaming=True)
    aggregator = RunAggregator(config, META, streaming=True)
    for first in range(0, len(records), 100):
        aggregator.add(records[first:first + 100])
        if first == 500:  # a float metric that is not whole ns once values have settled
            staged = aggregator._totals.values["http_req_sending"]
            staged.append(0.1234567891)
            records_sending_extra = 0.1234567891
    totals = aggregator._totals
    assert totals.ns["request_latency"].typecode == "q"
    assert totals.ns["time_to_first_token"].typecode == "I"
    assert "http_req_sending" not in totals.ns and "http_req_sending" in totals._float_only
    out = aggregator.finish([(0, len(records))])
    ref = reference(records)
    sending = list(ref["http_req_sending"])
    sending.insert(600, records_sending_extra)  # where it was appended: after 600 records
    ref["http_req_sending"] = np.array(sending)
    assert {tag: bytes(c) for tag, c in out["values"].items()} == {
        tag: v.tobytes() for tag, v in ref.items()}
    assert len(ref["inter_chunk_latency"]) > 5000
    for tag, data in ref.items():
        expected = summarize(data, BY_TAG[tag].unit)
        got = out["metrics"][tag]
        for key, value in expected.items():
            if key in ("avg", "std", "sum"):
                assert got[key] == pytest.approx(value, rel=1e-12), (tag, key)
            else:
                assert got[key] == value, (tag, key)
    # Written a chunk at a time, the values file holds the same bytes.
    column = out["values"]["inter_chunk_latency"]
    column.CHUNK = 1000
    written = io.BytesIO()
    write_msgpack(written, {"values": out["values"]})
    assert msgspec.msgpack.decode(written.getvalue())["values"] == {
        tag: v.tobytes() for tag, v in ref.items()}


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(0, 400), max_size=120),
       ranges=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 80)), max_size=4))
def test_the_credit_bitmap_checks_the_invariant_as_the_id_array_does(
        ids: list[int], ranges: list[tuple[int, int]]) -> None:
    """Ids below the bitmap's slack, past its span (kept apart), repeated; ranges that
    overlap, are empty or reach past what was seen; bits unpacked a few at a time."""
    from aiperf.metrics.aggregate import _CreditIds

    credit_ids = _CreditIds()
    credit_ids.SLACK, credit_ids.SPAN, credit_ids.CHUNK_IDS = 8, 160, 24
    credit_ids.LIST = 5
    for cid in ids:
        credit_ids.add(cid)
    expected = check_invariant(np.array(ids, dtype=np.int64), ranges)
    for key in ("missing_credit_ids", "duplicate_credit_ids", "unexpected_credit_ids"):
        expected[key] = expected[key][:5]
    assert credit_ids.check(ranges) == expected
