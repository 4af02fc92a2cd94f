"""``sessions_of`` and ``urls_of`` from a per-request table the records manager's own code
wrote (``export_record`` rows through ``JsonlTable``): streamed from the file into typed
arrays, they give exactly what a straightforward per-record computation over the decoded
dicts gives (the views' first implementation, kept here as the oracle)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, ErrorInfo, MetricRecord
from aiperf.dataset.breakdowns import SessionSummary, UrlSummary, sessions_of, urls_of
from aiperf.metrics.aggregate import JsonlTable, export_record, per_request_values
from aiperf.records_file import RecordsFile

URLS = ["http://a:1", "http://b:2", "http://c:3"]


def _oracle_sessions(records: list[dict[str, Any]]) -> list[SessionSummary]:
    def metric(record: dict[str, Any], tag: str) -> float | None:
        value = record.get("metrics", {}).get(tag)
        return None if value is None else float(value["value"])

    by_session: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        meta = record["metadata"]
        if meta.get("benchmark_phase") == "profiling" and meta.get("session_num", -1) >= 0:
            by_session.setdefault(meta["session_num"], []).append(record)
    out = []
    for session, turns in sorted(by_session.items()):
        turns.sort(key=lambda r: r["metadata"]["turn_index"])
        out.append(SessionSummary(
            session=session, turns=len(turns),
            errors=sum(1 for r in turns if r.get("error")),
            duration_ms=(max(r["metadata"]["request_end_ns"] for r in turns)
                         - min(r["metadata"]["request_start_ns"] for r in turns)) / 1e6,
            request_latency_ms=[metric(r, "request_latency") for r in turns],
            time_to_first_token_ms=[metric(r, "time_to_first_token") for r in turns]))
    return out


def _oracle_urls(records: list[dict[str, Any]]) -> list[tuple[int, int, list[float]]]:
    out: list[tuple[int, int, list[float]]] = [(0, 0, []) for _ in URLS]
    for record in records:
        meta = record["metadata"]
        index = meta.get("url_index", -1)
        if meta.get("benchmark_phase") != "profiling" or not 0 <= index < len(URLS):
            continue
        count, errors, latencies = out[index]
        if not record.get("error"):
            latencies.append(record["metrics"]["request_latency"]["value"])
        out[index] = (count + 1, errors + bool(record.get("error")), latencies)
    return out


requests = st.lists(st.tuples(
    st.integers(-1, 5),  # session (-1: a single request)
    st.integers(0, 3),  # turn index
    st.integers(-1, 2),  # url index
    st.booleans(),  # failed
    st.booleans(),  # streamed (has a TTFT)
    st.integers(0, 1),  # phase: warmup or profiling
    st.integers(1, 10**9),  # latency ns
    st.integers(0, 10**12),  # start ns
), max_size=40)


def _records(rows: list[tuple[int, int, int, bool, bool, int, int, int]]) -> list[MetricRecord]:
    out = []
    for i, (session, turn, url, failed, streamed, phase, latency, start) in enumerate(rows):
        out.append(MetricRecord(
            i, PROFILING if phase else 0, "w0", start - 1000, start, start, start + latency,
            latency // 3 if streamed else -1, -1, latency, 10, 5, [],
            error=ErrorInfo(500, "HTTPError", "boom") if failed else None,
            session=session, turn_index=turn if session >= 0 else -1, url_index=url))
    return out


def _table(records: list[MetricRecord], path: Path) -> RecordsFile:
    table = JsonlTable(path)
    for record in records:
        table(export_record(record, per_request_values(record, streaming=True)))
    table.close()
    return RecordsFile(path, table.count)


@settings(max_examples=150, deadline=None)
@given(requests)
def test_views_from_the_file_equal_the_per_record_computation(
        rows: list[tuple[int, int, int, bool, bool, int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = _table(_records(rows), Path(tmp) / "records.jsonl")
        as_dicts = list(table)
        expected = _oracle_sessions(as_dicts)
        assert sessions_of(table) == expected  # streamed from the file
        assert sessions_of(as_dicts) == expected  # a table held as dicts
        views = urls_of(table, URLS)
        assert views == urls_of(as_dicts, URLS)
    for view, (count, errors, latencies) in zip(views, _oracle_urls(as_dicts), strict=True):
        assert isinstance(view, UrlSummary)
        assert (view.requests, view.errors) == (count, errors)
        p50 = float(np.percentile(latencies, 50)) if latencies else None
        p99 = float(np.percentile(latencies, 99)) if latencies else None
        assert (view.request_latency_p50_ms, view.request_latency_p99_ms) == (p50, p99)


def test_a_session_lists_its_turns_in_order_with_none_for_a_failed_one(
        tmp_path: Path) -> None:
    # Written out of order (turn 1 finished first), turn 1 failed, a warmup turn of the
    # same session and a single request that belong to no session.
    rows = [(7, 1, -1, True, True, 1, 2_000_000, 50_000_000),
            (7, 0, -1, False, True, 1, 3_000_000, 10_000_000),
            (7, 0, -1, False, True, 0, 1_000_000, 0),
            (-1, 0, -1, False, True, 1, 1_000_000, 0)]
    [summary] = sessions_of(_table(_records(rows), tmp_path / "records.jsonl"))
    assert summary.session == 7 and summary.turns == 2 and summary.errors == 1
    assert summary.request_latency_ms == [3.0, None]
    assert summary.time_to_first_token_ms == [1.0, None]
    assert summary.duration_ms == (50_000_000 + 2_000_000 - 10_000_000) / 1e6


def test_conversation_ids_are_each_entrys_session_id_from_file_or_inline(
        tmp_path: Path) -> None:
    from aiperf.dataset.breakdowns import conversation_ids
    from aiperf.dataset.models import Turn, dataset_packed, write_dataset

    path = tmp_path / "dataset.msgpack"
    write_dataset(path, [Turn("a", 1, session=0, session_id="alpha"),
                         Turn("b", 1, session=0, turn_index=1, session_id="alpha"),
                         Turn("c", 1, session=1, session_id="beta")])
    ids = conversation_ids(str(path))
    assert ids == ["alpha", "alpha", "beta"] and ids[0] is ids[1]  # one str a session
    assert conversation_ids(None, dataset_packed(path.read_bytes())) == ids
    write_dataset(path, [Turn("single", 1)])
    assert conversation_ids(str(path)) is None and conversation_ids(None) is None
