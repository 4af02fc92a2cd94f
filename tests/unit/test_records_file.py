"""The per-request table on the host (aiperf/records_file.py): streamed from its JSONL file
in bounded memory, read at random through an offset index, moved out of the mesh's run dir
and cleaned up with its process."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest

from aiperf.exporters.jsonl_export import JsonlExporter
from aiperf.records_file import (
    NoRecords,
    RecordsFile,
    _sweep_stale_result_dirs,
    host_dir,
)
from aiperf.results import ProfileResult


def row(i: int) -> dict[str, Any]:
    """A record shaped like the records manager's export line."""
    out: dict[str, Any] = {
        "metadata": {"credit_id": i, "benchmark_phase": "profiling", "worker_id": f"w{i % 4}",
                     "request_start_ns": 1_000 * i, "request_end_ns": 1_000 * i + 700,
                     "was_cancelled": False},
        "metrics": {"request_latency": {"value": 0.5 + i / 7, "unit": "ms"},
                    "output_sequence_length": {"value": 16, "unit": "tokens"}},
    }
    if i % 97 == 0:
        out["error"] = {"code": 500, "type": "Internal", "message": "boom é"}
    return out


def write_jsonl(path: Path, n: int) -> Path:
    encode = msgspec.json.Encoder().encode
    with open(path, "wb") as handle:
        for i in range(n):
            handle.write(encode(row(i)) + b"\n")
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("big") / "records.jsonl", 100_000)


def test_iterating_100k_records_keeps_memory_bounded(big: Path) -> None:
    records = RecordsFile(big, 100_000)
    tracemalloc.start()
    try:
        seen = 0
        for i, record in enumerate(records):
            seen += record["metadata"]["credit_id"] == i
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 100_000
    # The decoded table is about 150 MB of dicts; a streamed loop holds one line and one
    # record at a time. 2 MiB is generous and still 50x below holding the table.
    assert peak < 2 * 2**20, f"iteration peaked at {peak / 2**20:.1f} MiB"


def test_length_comes_from_the_count_or_one_scan(big: Path) -> None:
    assert len(RecordsFile(big, 100_000)) == 100_000
    counted = RecordsFile(big)
    assert len(counted) == 100_000
    assert len(RecordsFile(write_jsonl(big.parent / "empty.jsonl", 0))) == 0


def test_random_access_reads_lines_through_an_8_byte_offset_index(big: Path) -> None:
    records = RecordsFile(big, 100_000)
    assert records[0] == row(0) and records[-1] == row(99_999)
    assert records[54_321] == row(54_321) and records[-100_000] == row(0)
    assert records._offsets is not None and records._offsets.nbytes == 8 * 100_001
    assert records[10:14] == [row(i) for i in range(10, 14)]
    assert records[99_998:200_000] == [row(99_998), row(99_999)]
    assert records[5:0] == [] and records[::25_000] == [row(i) for i in (0, 25_000, 50_000,
                                                                         75_000)]
    assert records[-3::-40_000] == [row(99_997), row(59_997), row(19_997)]
    for bad in (100_000, -100_001):
        with pytest.raises(IndexError):
            records[bad]
    assert row(7) in records[:10] and records.index(row(3)) == 3


def test_a_last_line_without_its_newline_is_still_a_record(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}')
    records = RecordsFile(path)
    assert len(records) == 2 and records[1] == {"a": 2} and list(records) == [{"a": 1},
                                                                              {"a": 2}]


def test_equality_with_lists_and_other_tables(tmp_path: Path) -> None:
    rows = [row(i) for i in range(50)]
    records = RecordsFile(write_jsonl(tmp_path / "a.jsonl", 50), 50)
    assert records == rows and rows == records
    assert records != rows[:-1] and records != [*rows[:-1], row(99)]
    assert records == RecordsFile(write_jsonl(tmp_path / "b.jsonl", 50))
    assert records != "not a table"
    assert repr(records) == "<50 per-request records in a.jsonl>"


def test_adopt_moves_the_file_out_of_the_run_dir_and_deletes_it_with_the_table(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "aiperf-mesh-x"
    run_dir.mkdir()
    source = write_jsonl(run_dir / "records-r1.jsonl", 10)
    records = RecordsFile.adopt(source, 10)
    assert not source.exists()
    assert records.path.parent == host_dir()
    assert host_dir().name.startswith(f"aiperf-results-{os.getpid()}-")
    run_dir.rmdir()  # the mesh removes its run dir: the table is elsewhere
    assert records == [row(i) for i in range(10)]
    kept = records.path
    del records
    gc.collect()
    assert not kept.exists()


def test_the_result_dir_goes_at_exit_and_a_killed_hosts_is_swept(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from aiperf.records_file import RecordsFile, host_dir\n"
        "r = RecordsFile.adopt(sys.argv[1], 1)\n"
        "print(host_dir(), flush=True)\n"
        "if sys.argv[2] == 'wait':\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_bytes(b'{"a":1}\n')
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.jsonl"), "exit"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    assert not Path(done.stdout.strip()).exists()  # removed by its atexit hook

    killed = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "b.jsonl"),
                               "wait"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout is not None
        left = Path(killed.stdout.readline().strip())
        alive = tmp_path / f"aiperf-results-{os.getpid()}-mine"
        alive.mkdir()
        _sweep_stale_result_dirs(tmp_path)
        assert left.is_dir() and alive.is_dir()  # their processes are alive
    finally:
        killed.kill()
        killed.wait(30)
    assert left.is_dir() and any(left.iterdir())  # SIGKILL: no atexit
    _sweep_stale_result_dirs(tmp_path)
    assert not left.exists() and alive.is_dir()


def result_of(data: dict[str, Any]) -> ProfileResult:
    return ProfileResult.from_dict({"run_id": "r", "metrics": {}, **data})


def test_a_result_streams_its_table_from_the_records_managers_jsonl(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "records-r.jsonl", 30)
    result = result_of({"records_path": str(source), "records_count": 30})
    assert isinstance(result.records, RecordsFile) and not source.exists()
    assert len(result.records) == 30 and result.records == [row(i) for i in range(30)]


def test_a_run_that_kept_no_table_says_so() -> None:
    records = result_of({"records_path": None}).records
    assert isinstance(records, NoRecords) and len(records) == 0 and records == []
    assert list(records) == [] and records[:5] == []
    with pytest.raises(IndexError, match="export_records"):
        records[0]
    assert "sketch mode" in repr(records)


def test_the_jsonl_artifact_from_the_file_equals_the_one_from_memory(tmp_path: Path) -> None:
    rows = [row(i) for i in range(300)]
    in_memory = JsonlExporter(result_of({"records": rows}), tmp_path / "memory").export()
    source = write_jsonl(tmp_path / "records-r.jsonl", 300)
    from_file = result_of({"records_path": str(source), "records_count": 300})
    streamed = JsonlExporter(from_file, tmp_path / "file").export()
    assert in_memory is not None and streamed is not None
    assert streamed.read_bytes() == in_memory.read_bytes()
    # Exporting again, or another table over it, replaces the artifact, never writes
    # through it into the result's own file.
    assert JsonlExporter(from_file, tmp_path / "file").export() == streamed
    JsonlExporter(result_of({"records": rows[:2]}), tmp_path / "file").export()
    assert len(streamed.read_bytes().splitlines()) == 2 and from_file.records == rows
    assert JsonlExporter(result_of({"records_path": None}), tmp_path / "none").export() \
        is None
