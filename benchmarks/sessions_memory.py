"""Host memory of ``result.sessions`` and ``result.urls`` (``aiperf.dataset.breakdowns``)
on a streamed run's per-request table, against keeping each record's dict per session (the
views' first implementation, the audit's 216 MiB peak for 20,000 requests).

    .venv/bin/python benchmarks/sessions_memory.py [--requests 20000] [--tokens 100]

The table is written by the records manager's own code (``export_record`` rows through
``JsonlTable``) from synthetic streamed records: 4-turn sessions, ``--tokens`` tokens each
(so an ``inter_chunk_latency`` list of tokens - 1 values a line), 1 % failed, round robin
over 3 URLs. Each view runs once untimed (imports, caches), then under ``tracemalloc``;
printed: the peak of Python allocations while it ran, per request, and the ratio to the
dict-keeping way. No thresholds: figures to read, not a test.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiperf.common.codec import PROFILING, ErrorInfo, MetricRecord
from aiperf.dataset.breakdowns import sessions_of, urls_of
from aiperf.metrics.aggregate import JsonlTable, export_record, per_request_values
from aiperf.records_file import RecordsFile

TURNS = 4
URLS = ["http://a:1", "http://b:2", "http://c:3"]
MS = 1_000_000


def write_table(path: Path, requests: int, tokens: int) -> RecordsFile:
    table = JsonlTable(path)
    clock = 0
    for cid in range(requests):
        session, turn = cid - cid % TURNS, cid % TURNS
        gaps = [2 * MS + (cid * 7 + k) % 997 for k in range(tokens - 1)]
        first = 20 * MS + cid % 13 * MS
        end = clock + first + sum(gaps)
        failed = cid % 100 == 37
        record = MetricRecord(
            cid, PROFILING, "worker_0", clock - MS, clock, clock, end,
            -1 if failed else first, -1 if failed else first + gaps[0],
            -1 if failed else end - clock, 200, 0 if failed else tokens,
            [] if failed else gaps,
            error=ErrorInfo(500, "HTTPError", "x") if failed else None,
            session=session, turn_index=turn, url_index=(session // TURNS) % len(URLS))
        table(export_record(record, per_request_values(record, streaming=True)))
        clock = end + MS
    table.close()
    return RecordsFile(path, table.count)


def dicts_per_session(records: RecordsFile) -> dict[int, list[dict[str, Any]]]:
    """The first implementation's state: every profiling record's dict, per session."""
    by_session: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        if record["metadata"].get("session_num", -1) >= 0:
            by_session.setdefault(record["metadata"]["session_num"], []).append(record)
    return by_session


def measured(work: Callable[[], object]) -> tuple[int, int, float]:
    """Peak bytes of Python allocations while ``work`` runs, the bytes its result holds
    afterwards, and its seconds (under tracemalloc: slower than without)."""
    work()
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak, held, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sessions_memory_") as tmp:
        records = write_table(Path(tmp) / "records.jsonl", args.requests, args.tokens)
        size = records.path.stat().st_size
        print(f"{args.requests:,} streamed requests, {TURNS}-turn sessions, {args.tokens} "
              f"tokens each; table {size / 2**20:.1f} MiB ({size / args.requests:.0f} B/line)")
        base, held, base_s = measured(lambda: dicts_per_session(records))
        rows = [("dicts per session (before)", base, held, base_s),
                ("sessions_of", *measured(lambda: sessions_of(records))),
                ("urls_of", *measured(lambda: urls_of(records, URLS)))]
        for label, peak, held, seconds in rows:
            print(f"  {label:<27} peak {peak / 2**20:7.2f} MiB {peak / args.requests:7.1f} "
                  f"B/request (x{peak / base:.4f} of before); result holds "
                  f"{held / args.requests:6.1f} B/request; {seconds:5.2f} s")


if __name__ == "__main__":
    main()
