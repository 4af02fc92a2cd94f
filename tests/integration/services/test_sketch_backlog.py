"""Sketch mode's record path is bounded in bytes: when the record processor falls behind,
the worker's batches stay within ``comms.sketch_batch_bytes`` (a record more at most),
however many records complete together, so the queues' message HWMs bound their bytes;
the run is held back and loses no record. Memory itself is
measured by ``benchmarks/backpressure.py --stall``, not here."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiperf.common.comms import sketch_batch_bytes
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType, plugins
from tests.harness.batch_sizes import SIZES_ENV, BatchSizeProcessor, read_sizes

# Streams of 100 tokens: ~17 KB records in one read or a few, so a batch of the records
# that complete together at c=32 would be hundreds of KB; the 64 KiB bound makes it 3-4.
TOKENS = 100
REQUESTS = 400
HWM = 128


def test_a_sketch_run_behind_its_processor_sends_batches_bounded_in_bytes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sizes = tmp_path / "batches.txt"
    monkeypatch.setenv(SIZES_ENV, str(sizes))
    with MockServerProcess(tokens=TOKENS) as server, \
            plugins.registered(PluginType.SERVICE, "record_processor", BatchSizeProcessor), \
            Mesh(workers=1, record_processors=1, record_hwm=HWM) as mesh:
        result = mesh.run(url=server.url, streaming=True, concurrency=32, osl=TOKENS,
                          request_count=REQUESTS, sketch=True)
    assert result.invariant["ok"] and result.request_count == REQUESTS
    bound = sketch_batch_bytes(HWM)
    batches = read_sizes(sizes)
    # (The batch the receive loop was already waiting for at configure goes unrecorded.)
    assert REQUESTS // 2 <= sum(n for n, _ in batches) <= REQUESTS
    per_record = max(size / n for n, size in batches)
    assert per_record > bound / 8  # large records, as the test needs
    for n, size in batches:
        # Cut by the previous batch's bytes a record (the mock's records are all one
        # size, to a few digits of their ids): within the bound, one record more at most.
        assert size <= bound + per_record * 1.05, (n, size)
    # The mock answers at once and parsing 400 events a record is the slow part: records
    # completed many at a time, and still left in batches that fit.
    assert max(n for n, _ in batches) > 1
