"""Record processor: parses raw responses into per-request metrics, off the request path.

Replicable: each instance binds its own ``raw_records_<i>`` address and workers spread their
batches over all of them, so parsing JSON and counting tokens scales with processors while
workers spend their CPU on sending requests.

A batch from a worker on another host carries that worker's clock offset; its records'
stamps are moved onto the reference clock (the timing manager's) before deriving, so that
stamps of different workers compare (benchmark duration, time slices).

Its own backlog is measured as the records manager measures its: each time it takes a
batch, whatever else is already queued is taken too (``record_hwm`` batches at most, the
socket's own bound) and counted; the run's largest such backlog (one that filled the
queue first, then the most records: ``aiperf.services.backlog.outranks``), and the longest
a record waited from its request's end to its parsing, are sent on the bus when the
records manager asks for the workers' load (``ProcessorBacklogReport``), and end up in
``ProfileResult.record_backlog``.

That wait is measured on the reference clock: a record processor always runs on the driver
host (only workers are ``remote_capable``), so its ``perf_counter_ns`` is the timing
manager's clock, onto which a remote worker's stamps are moved first. A local worker's
stamps are on it already; a remote one's are off by at most the offset estimate's
uncertainty (``ProfileResult.clock_offsets``), where before the move they would be off by
the whole offset between the hosts' clocks.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from aiperf.common.codec import MetricBatch, decode_raw_frames, encode, run_number
from aiperf.common.comms import sync_twin
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message
from aiperf.common.messages import (
    ConfigureProfileCommand,
    LoadReportRequest,
    MessageType,
    ProcessorBacklogReport,
)
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import dataset_of
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.endpoints.base import make_endpoint
from aiperf.metrics.derive import RecordDeriver
from aiperf.services.backlog import empty_backlog, outranks
from aiperf.services.clock import shift_stamps

# Batches taken at once at most (as the records manager's drain): the queue is bounded by
# the high-water mark anyway, but a drain must end even if the workers keep up with it.
DRAIN_MAX_BATCHES = 1024


class RecordProcessor(BaseComponentService):
    service_type = "record_processor"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        self._raw = self.comms.socket(zmq.PULL, "raw_records", bind=True, index=self.index)
        # Send-only: the blocking twin skips an asyncio future per batch.
        self._out = sync_twin(self.comms.socket(zmq.PUSH, "records", bind=False))
        self._run = 0
        self._run_id = ""
        self._deriver: RecordDeriver | None = None
        self._backlog = empty_backlog()
        self.spawn(self._process_loop(), name="raw-records")

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        config = UserConfig.from_wire(command.user_config)
        turns = dataset_of(command.dataset_path, command.dataset_inline)
        self._deriver = RecordDeriver(
            make_endpoint(config), make_tokenizer(config.tokenizer),
            [t.input_tokens for t in turns],
        )
        self._run = run_number(command.run_id)
        self._run_id = command.run_id
        self._backlog = empty_backlog()
        return {}

    @on_message(MessageType.LOAD_REPORT_REQUEST)
    async def _report_backlog(self, message: LoadReportRequest) -> None:
        """The records manager asks once every record is in: this run's largest backlog."""
        if message.run_id != self._run_id:
            return
        await self.publish(ProcessorBacklogReport(run_id=message.run_id,
                                                  backlog=dict(self._backlog)))

    async def _process_loop(self) -> None:
        while True:
            waiting = [await self._raw.recv_multipart()]
            # What else is queued arrived while the last batches were parsed: the backlog.
            # (A ready socket's receive completes at once, without a turn of the loop.)
            # At most a high-water mark's worth: what it takes off the socket, the
            # workers refill, so a larger drain would hold the backlog twice over.
            limit = self.service_config.record_hwm or DRAIN_MAX_BATCHES
            while len(waiting) < limit and self._raw.get(zmq.EVENTS) & zmq.POLLIN:
                waiting.append(await self._raw.recv_multipart())
            count, size, records = len(waiting), sum(len(f) for w in waiting for f in w), 0
            waiting.reverse()
            while waiting:  # one batch decoded at a time, each dropped once sent on
                batch = decode_raw_frames(waiting.pop())
                if batch.run == self._run:
                    records += len(batch.records)
                self._process(batch)
                del batch
            self._note_backlog(count, records, size)

    def _note_backlog(self, batches: int, records: int, size: int) -> None:
        if outranks(batches, records, self._backlog, self.service_config.record_hwm):
            self._backlog.update(batches=batches, records=records, bytes=size)

    def _process(self, batch: Any) -> None:
        if batch.run != self._run or self._deriver is None:
            return
        if batch.clock_offset_ns:
            shift_stamps(batch.records, batch.clock_offset_ns)
        # From the latest end in the batch (0: failed before it was sent): how long the
        # freshest record waited (the worker's batching, up to 20 ms, and this queue).
        # After the shift: this process shares the timing manager's clock, not a remote
        # worker's (module docstring).
        last_end = max((r.end_ns for r in batch.records), default=0)
        if last_end > 0:
            lag_ms = (time.perf_counter_ns() - last_end) / 1e6
            if lag_ms > self._backlog["max_lag_ms"]:
                self._backlog["max_lag_ms"] = round(lag_ms, 3)
        derive = self._deriver.derive
        out = MetricBatch(batch.run, [derive(raw) for raw in batch.records])
        self._out.send(encode(out))

