"""A record processor's own backlog reaches the result: the most raw batches it found queued
at once, and the longest a record waited for it, next to the records manager's; a
processor whose queue filled flags the run. Real processes, sockets and a mock server."""

from __future__ import annotations

import pytest

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType, plugins
from aiperf.services.worker import RECORD_BATCH, RECORD_BATCH_BYTES
from tests.harness.slow_processor import DELAY_ENV, SlowRecordProcessor

REQUESTS = 600
HWM = 2


def test_a_slowed_record_processor_reports_its_backlog_bounded_by_the_hwm(
        mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 ms a record: about 250 records/s, far below what the mock and a worker do.
    monkeypatch.setenv(DELAY_ENV, "4")
    with plugins.registered(PluginType.SERVICE, "record_processor", SlowRecordProcessor), \
            Mesh(workers=1, record_hwm=HWM) as mesh:
        result = mesh.run(url=mock_server.url, streaming=True, concurrency=16,
                          request_count=REQUESTS)
    assert result.invariant["ok"] and result.request_count == REQUESTS
    backlog = result.record_backlog["record_processor_0"]
    # Its queue filled (the hwm at each end), so the workers waited: flagged.
    assert backlog["batches"] >= HWM, backlog
    assert any("record_processor_0 fell behind" in w for w in result.warnings)
    # Bounded, whatever the run's length: the high-water marks at both ends (ZeroMQ lets
    # a pipe run up to about twice its mark before the reader's count catches up), and
    # what the kernel's socket buffers hold (a few hundred KB: a batch or two of these
    # large ones, more if the worker sent small ones). A batch holds at most
    # RECORD_BATCH records or about RECORD_BATCH_BYTES.
    assert backlog["batches"] <= 4 * HWM + 4 or backlog["bytes"] < 1 << 20, backlog
    assert 0 < backlog["records"] <= backlog["batches"] * RECORD_BATCH, backlog
    assert backlog["bytes"] <= backlog["batches"] * 2 * RECORD_BATCH_BYTES, backlog
    # Records waited for it longer than the worker's own batching (20 ms at most) and
    # at least as long as parsing the largest backlog took, 4 ms a record.
    assert backlog["max_lag_ms"] > 20, backlog
    assert "records_manager" in result.record_backlog


def test_a_normal_run_reports_a_small_processor_backlog(
        mock_server: MockServerProcess) -> None:
    with Mesh(workers=1, record_processors=2) as mesh:
        result = mesh.run(url=mock_server.url, streaming=True, concurrency=8,
                          request_count=200)
        hwm = mesh.service_config.record_hwm
    assert result.invariant["ok"]
    # A processor's report comes within the records manager's 2 s wait for the workers'
    # load reports; on a starved machine one may miss it (left out, never waited for).
    reported = set(result.record_backlog)
    assert "records_manager" in reported
    assert reported - {"records_manager"} <= {"record_processor_0", "record_processor_1"}
    assert len(reported) >= 2, reported
    for name, backlog in result.record_backlog.items():
        # A processor that keeps up finds a few batches queued at most, far below the bound.
        assert 0 <= backlog["batches"] < hwm and backlog["records"] <= 200, (name, backlog)
    assert not any("fell behind" in w for w in result.warnings)
