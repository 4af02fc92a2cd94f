"""A long streamed run through a real mesh: the host keeps no Python object per request.

Memory figures (100k to 1M requests, every process) are benchmarks/long_run.py's; here only
a growth bound per request with a wide margin: the host used to hold about 9 KB a request
(the whole table decoded to dicts to write profile_export.jsonl)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiperf.exporters.jsonl_export import JsonlExporter
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.records_file import RecordsFile, host_dir

REQUESTS = 20_000
SAMPLE_S = 0.05


def own_pss() -> int:
    with open("/proc/self/smaps_rollup", "rb") as handle:
        for line in handle:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Pss line in smaps_rollup")


class PeakPss(threading.Thread):
    """This process's peak PSS while the block runs, sampled every ``SAMPLE_S``."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = own_pss()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_S):
            self.peak = max(self.peak, own_pss())

    def __enter__(self) -> PeakPss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(5)
        self.peak = max(self.peak, own_pss())


@pytest.fixture(scope="module")
def server() -> Iterator[MockServerProcess]:
    with MockServerProcess(tokens=16) as running:
        yield running


def test_a_long_run_streams_its_table_and_keeps_the_host_flat(
        server: MockServerProcess, tmp_path: Path) -> None:
    profile = {"url": server.url, "streaming": True, "concurrency": 64, "osl": 16}
    with Mesh(workers=1, command_timeout=60) as mesh:
        # A small run first, exported too: what a first run imports and caches is not
        # per-request memory.
        warm = mesh.run(request_count=300, **profile)
        JsonlExporter(warm, tmp_path / "warm").export()
        del warm
        before = own_pss()
        with PeakPss() as sampled:
            result = mesh.run(request_count=REQUESTS, **profile)
            run_dir = Path(mesh.service_config.run_dir)
            artifact = JsonlExporter(result, tmp_path / "out").export()
    records = result.records
    assert isinstance(records, RecordsFile) and len(records) == REQUESTS
    # The table left the run dir (gone with the mesh) for this process's result dir.
    assert not run_dir.exists() and records.path.parent == host_dir()
    assert records.path.parent.name.startswith(f"aiperf-results-{os.getpid()}-")
    ids = {r["metadata"]["credit_id"] for r in records}
    assert len(ids) == REQUESTS and result.invariant["ok"]
    assert records[REQUESTS // 2]["metadata"]["credit_id"] in ids
    assert artifact is not None and artifact.read_bytes() == records.path.read_bytes()
    growth = sampled.peak - before
    print(f"host peak growth: {growth / REQUESTS:,.0f} B a request")
    # Values (8 B a metric) and the timeline are about 150 B a request; 2,000 B is far
    # under the 9 KB of a decoded table and loose enough for a shared machine's noise.
    assert growth / REQUESTS < 2_000, f"host grew {growth / 2**20:.1f} MiB"
