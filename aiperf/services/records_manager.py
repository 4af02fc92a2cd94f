"""Records manager: collects every per-request record of a run and computes the results.

A run is complete when the timing manager has said how many credits it issued and that
many records have arrived. If they do not all arrive within the request timeout plus
``LATE_RECORD_MARGIN_S``, the results are computed anyway and the broken invariant is
reported (which credit ids are missing), rather than waiting forever.

Records are aggregated as their batches arrive (``RunAggregator``): the manager holds the
run's compact value arrays, never its records, and appends each record's export line to
``records-<run_id>.jsonl`` in the run dir (unless the run keeps no table). Once the values
file is written the arrays are dropped, before the results go out: the host reads that
file, and the two processes' copies must not peak together. In sketch mode the values
file holds each metric's sketch instead, and per time window (``slice_duration``, else
10 s) the latencies' sketches and counts that windowed objectives are judged on.

Sketch mode also finds the run's steady span as records come (``aiperf.windows.
SteadyTracker``: a bounded tail, a few numbers per time bin) and ships it with the windows,
which the host's steady window is merged from.

The result carries the record path's largest backlog per service (``record_backlogs``): this
manager's own (batches found queued at once in its PULL queue) and each record processor's,
which it reports when asked for the workers' load at the run's end (``ProcessorBacklogReport``).
A service whose queue reached ``record_hwm`` flags the run: it held the workers back.

``CancelRunCommand`` ends a run early: dropped (the run timed out: nothing is computed and
nothing of it is kept, not even its late-record timer), or finished with what arrives for
the credits the timing manager says it issued (the host cancelled: ``was_cancelled``).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from aiperf.common.codec import PROFILING, MetricRecord, metric_decoder, run_number
from aiperf.common.config import UserConfig
from aiperf.common.heap import large_allocations_as_mappings, trim_heap
from aiperf.common.hooks import background_task, on_init, on_message
from aiperf.common.messages import (
    CancelRunCommand,
    ConfigureProfileCommand,
    CreditsCompleteMessage,
    LoadReportRequest,
    MessageType,
    ProcessorBacklogReport,
    ProfileResultsMessage,
    RunProgress,
    WorkerLoadReport,
)
from aiperf.common.service import BaseComponentService
from aiperf.dataset.breakdowns import conversation_ids as conversation_ids_of
from aiperf.metrics.aggregate import DEFAULT_WINDOW_S, JsonlTable, RunAggregator, write_msgpack
from aiperf.metrics.definitions import NS_PER_MS
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import EndpointMetadata
from aiperf.services.backlog import backlog_warnings, outranks
from aiperf.windows import SteadyTracker

LATE_RECORD_MARGIN_S = 10.0
PROGRESS_INTERVAL_S = 1.0
# Workers answer a load report request within milliseconds once their records are in; a
# worker that does not answer in time leaves its load unmeasured, never the run unfinished.
LOAD_REPORT_TIMEOUT_S = 2.0
# Batches taken off the queue at once at most: what waits there is bounded by the record
# path's high-water marks, but a drain must end even if the processors keep up with it.
DRAIN_MAX_BATCHES = 1024


class BatchSpool:
    """A run's record batches on disk, as they came (each behind its 4-byte length), to be
    aggregated once the run is over: memory stays flat, and the work waits for the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in replay

    def append(self, raw: bytes) -> None:
        self._out.write(len(raw).to_bytes(4, "little"))
        self._out.write(raw)

    def replay(self) -> Iterator[bytes]:
        self._out.close()
        with open(self.path, "rb", buffering=1 << 20) as spooled:
            while header := spooled.read(4):
                yield spooled.read(int.from_bytes(header, "little"))

    def discard(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


class LiveSlice:
    """The current time slice's latencies while the run goes, for the progress line: each
    arriving batch's request latencies and TTFTs of successful profiling requests, as
    integer ns (8 bytes a value, one slice's worth: 80 KB at 1,000 requests/s and 10 s
    slices), taken from the records the manager decodes anyway. Slices are cut by arrival
    time since the run began (a request counts when its record comes in, within a batch's
    20 ms); the result's own slices, by request start, come at the end."""

    def __init__(self, width_s: float, started: float) -> None:
        self.width_s = width_s
        self.started = started
        self.index = 0
        self._latency = array("q")
        self._ttft = array("q")
        # The last slice that held a request: (index, requests, p99 by tag).
        self._shown: tuple[int, int, dict[str, float]] | None = None

    def add(self, records: list[MetricRecord], now: float) -> None:
        self._roll(now)
        ok = [r for r in records if r.error is None and r.phase == PROFILING]
        if ok:
            self._latency.extend([r.latency_ns for r in ok])
            self._ttft.extend([r.ttft_ns for r in ok if r.ttft_ns >= 0])

    def _roll(self, now: float) -> None:
        index = max(0, int((now - self.started) // self.width_s))
        if index != self.index:
            if len(self._latency):
                self._shown = (self.index, len(self._latency), self._p99())
            self.index = index
            del self._latency[:], self._ttft[:]

    def _p99(self) -> dict[str, float]:
        out = {}
        for tag, kept in (("request_latency", self._latency),
                          ("time_to_first_token", self._ttft)):
            if len(kept):
                values = np.frombuffer(kept, dtype=np.int64)
                out[tag] = float(np.percentile(values, 99)) / NS_PER_MS
        return out

    def progress_fields(self, now: float) -> dict[str, Any]:
        """RunProgress's slice fields: the current slice once it holds a request, else the
        last one that did (none yet: no fields)."""
        self._roll(now)
        if len(self._latency):
            shown: tuple[int, int, dict[str, float]] | None = (
                self.index, len(self._latency), self._p99())
        else:
            shown = self._shown
        if shown is None:
            return {}
        index, requests, p99 = shown
        return {"slice_start_s": index * self.width_s,
                "slice_end_s": (index + 1) * self.width_s,
                "slice_requests": requests, "slice_p99_ms": p99}


class RecordsManager(BaseComponentService):
    service_type = "records_manager"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        large_allocations_as_mappings()
        self._in = self.comms.socket(zmq.PULL, "records", bind=True)
        self._run = 0
        self._run_id = ""
        self._aggregator: RunAggregator | None = None
        self._spool: BatchSpool | None = None
        self._table: JsonlTable | None = None
        # The most records found waiting in the PULL queue at once (batches that arrived
        # while the previous ones were being aggregated): the run's largest backlog here.
        self._backlog = {"batches": 0, "records": 0, "bytes": 0}
        self._count = 0
        self._errors = 0
        self._slice: LiveSlice | None = None
        self._expected: int | None = None
        self._issued_ranges: list[tuple[int, int]] = []
        self._finished = True
        self._cancelled = False
        self._config: UserConfig | None = None
        self._late_timer: asyncio.TimerHandle | None = None
        self._loads: dict[str, dict[str, Any]] = {}
        # Each remote worker's clock estimate (ProfileResult.clock_offsets), by worker id.
        self._clocks: dict[str, dict[str, Any]] = {}
        self._loads_in = asyncio.Event()
        # Each record processor's own largest backlog (ProcessorBacklogReport), by its id.
        self._processor_backlogs: dict[str, dict[str, float]] = {}
        self._backlogs_in = asyncio.Event()
        self._steady: SteadyTracker | None = None
        self.spawn(self._collect(), name="records")

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        self._config = UserConfig.from_wire(command.user_config)
        self._cancel_late_timer()  # a timer of an earlier run must not finish this one
        self._cancelled = False
        self._issued_ranges = []
        self._run = run_number(command.run_id)
        self._run_id = command.run_id
        self._start_aggregating(self._config, command.run_id,
                                command.dataset_path, command.dataset_inline)
        self._count = 0
        self._errors = 0
        self._expected = None
        self._finished = False
        self._loads = {}
        self._clocks = {}
        self._loads_in.clear()
        self._processor_backlogs = {}
        self._backlogs_in.clear()
        self._steady = SteadyTracker(self._config) if self._config.sketch else None
        self._started = time.monotonic()
        self._slice = LiveSlice(self._config.slice_duration or DEFAULT_WINDOW_S,
                                self._started)
        return {}

    @background_task(interval=PROGRESS_INTERVAL_S)
    async def _progress(self) -> None:
        if self._finished or not self._run_id:
            return
        now = time.monotonic()
        await self.send_to_controller(RunProgress(
            run_id=self._run_id, records=self._count, errors=self._errors,
            elapsed_s=now - self._started,
            **(self._slice.progress_fields(now) if self._slice is not None else {})))

    @on_message(MessageType.CANCEL_RUN)
    async def _cancel_run(self, command: CancelRunCommand) -> None:
        if command.run_id != self._run_id or self._finished:
            return
        if command.keep_results:
            self._cancelled = True  # results come once the issued credits are known
            return
        self._finished = True
        self._cancel_late_timer()
        self._drop_run()
        self._expected = None

    def _start_aggregating(self, config: UserConfig, run_id: str,
                           dataset_path: str | None = None,
                           dataset_inline: bytes | None = None) -> None:
        self._drop_run()  # an earlier run dropped before its results
        metadata = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
        assert isinstance(metadata, EndpointMetadata)
        streaming = config.streaming and metadata.supports_streaming
        conversation_ids = None
        if config.resolved_export_records():
            self._table = JsonlTable(
                Path(self.service_config.run_dir) / f"records-{run_id}.jsonl")
            # A multi-turn run's rows carry each session's dataset id (conversation_id),
            # looked up by the entry each record sent: the session ids only are decoded.
            conversation_ids = conversation_ids_of(dataset_path, dataset_inline)
        self._aggregator = RunAggregator(config, metadata, streaming, table=self._table,
                                         conversation_ids=conversation_ids,
                                         run=run_number(run_id))
        # Exact mode aggregates after the run, from batches spooled to disk as they came:
        # aggregating live (about 15 us a request, the table row half of it) took a core's
        # share from the workers and the server while they were being measured (non-
        # streamed throughput against a bare client 0.88 -> 0.74 on 2 cores). Sketch mode,
        # for runs of any length, aggregates live: its memory must stay flat.
        self._spool = None if config.sketch else BatchSpool(
            Path(self.service_config.run_dir) / f"records-{run_id}.spool")
        self._backlog = {"batches": 0, "records": 0, "bytes": 0}

    def _drop_run(self) -> None:
        self._aggregator = None
        if self._spool is not None:
            self._spool.discard()
            self._spool = None
        if self._table is not None:
            self._table.discard()
            self._table = None

    def _cancel_late_timer(self) -> None:
        if self._late_timer is not None:
            self._late_timer.cancel()
            self._late_timer = None

    @on_message(MessageType.CREDITS_COMPLETE)
    async def _credits_complete(self, message: CreditsCompleteMessage) -> None:
        if message.run_id != self._run_id or self._config is None:
            return
        self._expected = message.credits_issued
        self._issued_ranges = message.issued_ranges
        delay = self._config.request_timeout_seconds + LATE_RECORD_MARGIN_S
        run = self._run
        self._cancel_late_timer()
        self._late_timer = asyncio.get_running_loop().call_later(
            delay, lambda: self.spawn(self._finish(run), name="finish-late")
        )
        # Not awaited: finishing waits for the workers' load reports, which arrive on the
        # bus this handler is holding.
        self.spawn(self._maybe_finish(), name="finish")

    @on_message(MessageType.WORKER_LOAD_REPORT)
    async def _worker_load(self, report: WorkerLoadReport) -> None:
        if report.run_id != self._run_id or report.service_id is None:
            return
        self._loads[report.service_id] = report.model_dump(
            include={"tick_ns", "lag_ns", "cpu_at_ns", "cpu_ns", "period_ns"})
        if report.clock_offset_ns is not None:
            self._clocks[report.service_id] = {
                "offset_ns": report.clock_offset_ns,
                "uncertainty_ns": report.clock_uncertainty_ns,
                "round_trip_ns": report.clock_round_trip_ns,
                "samples": report.clock_samples, "host": report.host}
        if len(self._loads) >= self.service_config.workers:
            self._loads_in.set()

    @on_message(MessageType.PROCESSOR_BACKLOG_REPORT)
    async def _processor_backlog(self, report: ProcessorBacklogReport) -> None:
        if report.run_id != self._run_id or report.service_id is None:
            return
        self._processor_backlogs[report.service_id] = {
            key: value if key == "max_lag_ms" else int(value)  # counts travel as floats
            for key, value in report.backlog.items()}
        if len(self._processor_backlogs) >= self.service_config.record_processors:
            self._backlogs_in.set()

    async def _gather_loads(self) -> dict[str, dict[str, Any]]:
        """Each worker's load during the run (aiperf.validity) and each record processor's
        backlog, asked for (one request on the bus) now that the requests are over; what
        has not come within LOAD_REPORT_TIMEOUT_S stays out."""
        await self.publish(LoadReportRequest(run_id=self._run_id))
        try:
            async with asyncio.timeout(LOAD_REPORT_TIMEOUT_S):
                await self._loads_in.wait()
                await self._backlogs_in.wait()
        except TimeoutError:
            self.warning(f"load reports from {len(self._loads)} of "
                         f"{self.service_config.workers} workers, backlog reports from "
                         f"{len(self._processor_backlogs)} of "
                         f"{self.service_config.record_processors} record processors")
        return dict(self._loads)

    async def _collect(self) -> None:
        while True:
            waiting = [await self._in.recv()]
            # What else is already queued is the backlog: it arrived while the last
            # batches were aggregated. Taken now, so it is measured, and bounded by the
            # socket's high-water mark like the queue it came from.
            # A high-water mark's worth, as the record processors drain: a cap below it
            # could never see the queue full, and a full queue never flagged the run.
            limit = self.service_config.record_hwm or DRAIN_MAX_BATCHES
            while len(waiting) < limit:
                try:
                    waiting.append(self._in.recv(zmq.NOBLOCK).result())
                except zmq.Again:
                    break
            decoded = [metric_decoder.decode(raw) for raw in waiting]
            self._note_backlog(waiting, decoded)
            for raw, batch in zip(waiting, decoded, strict=True):
                if batch.run != self._run or self._finished or self._aggregator is None:
                    continue
                if self._spool is not None:
                    self._spool.append(raw)
                else:
                    self._aggregator.add(batch.records)
                    if self._steady is not None:
                        self._steady.add(batch.records)
                self._count += len(batch.records)
                self._errors += sum(1 for r in batch.records if r.error is not None)
            if self._slice is not None and not self._finished:
                now = time.monotonic()
                for batch in decoded:
                    if batch.run == self._run:
                        self._slice.add(batch.records, now)
            del decoded, waiting
            await self._maybe_finish()

    def _note_backlog(self, raws: list[bytes], batches: list[Any]) -> None:
        records = sum(len(b.records) for b in batches if b.run == self._run)
        if outranks(len(raws), records, self._backlog, self.service_config.record_hwm):
            self._backlog = {"batches": len(raws), "records": records,
                             "bytes": sum(len(r) for r in raws)}

    async def _maybe_finish(self) -> None:
        if self._expected is not None and self._count >= self._expected:
            await self._finish()

    async def _finish(self, run: int | None = None) -> None:
        if self._finished or self._config is None or (run is not None and run != self._run):
            return
        self._finished = True
        self._cancel_late_timer()
        run_id = self._run_id
        loads = await self._gather_loads()
        aggregator, table, spool = self._aggregator, self._table, self._spool
        self._aggregator = self._table = self._spool = None
        assert aggregator is not None
        if spool is not None:
            for raw in spool.replay():
                batch = metric_decoder.decode(raw)
                if batch.run == self._run:
                    aggregator.add(batch.records)
            spool.discard()
        results = aggregator.finish(self._issued_ranges)
        steady, self._steady = self._steady, None
        if steady is not None and "sketch_windows" in results:
            # Sketch mode's steady span rides with its windows, which it is cut from.
            results["sketch_windows"]["steady"] = steady.finish(
                results.get("warmup_start_ns"))
        # The per-request table can be hundreds of megabytes: it goes through a file in the
        # private run dir (the host is on this machine), not through the control sockets.
        if table is not None:
            table.close()
            results["records_path"] = str(table.path)
            results["records_count"] = table.count
        else:
            results["records_path"] = None
            results["records_count"] = 0
        values_path = Path(self.service_config.run_dir) / f"records-{run_id}.values"
        # Values and the timeline are bytes: a file, like the table, not JSON on a socket.
        stored: dict[str, Any] = {"values": results.pop("values"),
                                  "timeline": results.pop("timeline"), "worker_load": loads}
        if "sketches" in results:  # sketch mode: a sketch per metric instead of its values
            stored["sketches"] = results.pop("sketches")
        if "sketch_windows" in results:  # and per time window, for windowed objectives
            stored["sketch_windows"] = results.pop("sketch_windows")
        if "end_bins" in results:  # and completions over time, for throughput objectives
            stored["end_bins"] = results.pop("end_bins")
        if self.service_config.clock_sync:
            stored["clock_offsets"] = dict(self._clocks)
        with open(values_path, "wb", buffering=1 << 20) as out:
            write_msgpack(out, stored)
        # The arrays are on disk: drop them before the host starts reading its copy.
        del stored, aggregator
        trim_heap()  # the run's arrays are dropped: their pages go back
        results["values_path"] = str(values_path)
        results["run_id"] = run_id
        results["record_backlog"] = dict(self._backlog)
        results["record_backlogs"] = {"records_manager": dict(self._backlog),
                                      **dict(sorted(self._processor_backlogs.items()))}
        results["warnings"].extend(backlog_warnings(
            self._backlog, self._processor_backlogs, self.service_config.record_hwm))
        if self._cancelled:
            results["was_cancelled"] = True
        await self.send_to_controller(
            ProfileResultsMessage(run_id=run_id, results=results)
        )

