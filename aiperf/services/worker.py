"""Worker: turns credits into HTTP requests and reports raw records.

The hot path of the whole tool, kept as close to a bare aiohttp loop as the measurements
need. In closed-loop mode a worker runs ``slots`` loops that spend leased credit ids
themselves (no IPC between one request ending and the next starting); scheduled credits
(rate and trace modes) each get a task that sleeps until its send time. Request bodies are
encoded once per dataset entry. Records leave in batches of up to ``RECORD_BATCH`` or every
``RECORD_FLUSH_S``, so one message carries many requests; returns of scheduled credits
leave once per event-loop turn, since they free concurrency-cap slots.

Backpressure never blocks the event loop: when the record socket is full (a record
processor behind), batches wait in a backlog sent as room appears, and new requests wait
for it to drain, while requests in flight keep being read and timed. A blocking send there
froze every in-flight request's timestamps (latency p90 about 200 ms against a 50 ms
server in tests/integration/services/test_backpressure.py).

A worker of a mesh whose services do not share one host's clock (``clock_sync``: the ray
and external backends) estimates its clock's offset from the timing manager's right after
its hello, before it registers and so before it can get credits, and again at each run's
configure (``services/clock.py``). Scheduled send times and lease deadlines come on the
timing manager's clock and are converted once per credit or lease; records keep this
host's stamps and their batch carries the offset, applied by the record processor. Without
``clock_sync`` the offset is 0 and nothing of this runs.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import zmq

from aiperf.common.codec import (
    MAX_ERROR_MESSAGE,
    ClockPing,
    ClockPong,
    Credit,
    CreditBatch,
    ErrorInfo,
    Lease,
    LeaseReport,
    RawBatch,
    RawRecord,
    ReturnBatch,
    WorkerHello,
    cancellation,
    encode,
    encode_raw_frames,
    run_number,
    to_worker_decoder,
)
from aiperf.common.comms import sync_twin
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message, on_stop
from aiperf.common.messages import (
    CancelRequestsMessage,
    ConfigureProfileCommand,
    LoadReportRequest,
    MessageType,
    WorkerLoadReport,
)
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import Turn, dataset_of, turn_for
from aiperf.endpoints.base import BaseEndpoint, make_endpoint
from aiperf.errors import MeshTimeoutError
from aiperf.services.clock import (
    CLOCK_ROUNDS,
    CLOCK_SKEW_ENV,
    CLOCK_SYNC_TIMEOUT_S,
    ClockEstimate,
    ClockSample,
    estimate,
    shift_stamps,
    skew_for_tests,
)
from aiperf.services.load_probe import LoadProbe
from aiperf.transports import make_transport
from aiperf.transports.http import HttpTransport
from aiperf.transports.redact import scrub_error, secret_values

_perf_ns = time.perf_counter_ns
CANCELLED = cancellation("cancelled: in flight when the benchmark duration and grace ended")
RECORD_BATCH = 256
RECORD_BATCH_BYTES = 1 << 20
ZERO_COPY_BYTES = 1 << 16
RECORD_FLUSH_S = 0.02


@dataclass
class _LeaseProgress:
    lease: Lease
    next_offset: int = 0
    completed: int = 0
    consumed: bool = False


class Worker(BaseComponentService):
    service_type = "worker"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        cfg = self.service_config
        # Sent and received on the event loop through the asyncio socket: a blocking twin
        # would consume the socket's edge-triggered wake-ups and stall the receive loop.
        self._channel = self.comms.socket(zmq.DEALER, "credits", bind=False,
                                          identity=self.service_id.encode())
        records = self.comms.socket(zmq.PUSH, "raw_records", bind=False, index=0)
        for i in range(1, cfg.record_processors):
            records.connect(cfg.address("raw_records", i))
        # Send-only: the blocking twin is safe, and skips an asyncio future per batch. It is
        # used without blocking, though: see _flush_records.
        self._records_async = records
        self._records = sync_twin(records)
        # Batches waiting for room on a full record socket (a processor behind), in order.
        self._backlog: collections.deque[list[bytes]] = collections.deque()
        self._drained = asyncio.Event()
        self._drained.set()
        self._run = 0
        self._run_id = ""
        self._turns: list[Turn] = []
        self._bodies: list[bytes | None] = []
        self._endpoint: BaseEndpoint | None = None
        self._transport: HttpTransport | None = None
        self._transport_key: tuple[object, ...] | None = None
        self._headers: dict[str, str] = {}
        self._secrets: tuple[str, ...] = ()
        self._leases: list[_LeaseProgress] = []
        self._slot_tasks: list[asyncio.Task[None]] = []
        self._generation = 0  # bumped when a run ends: its slot loops then return
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._pending_records: list[RawRecord] = []
        self._pending_bytes = 0
        self._big_flush: asyncio.TimerHandle | None = None
        self._record_timer: asyncio.TimerHandle | None = None
        self._pending_returns: list[int] = []
        # Event-loop lag and CPU during each run, for aiperf.validity: one 10 ms timer.
        self._load = LoadProbe()
        # Tests only: this process acts as if its monotonic clock read perf_counter_ns() +
        # skew, as a host with another clock would (tests/integration/services/
        # test_clock_sync.py). Unset, every use below is a skipped branch per batch.
        self._skew_ns = skew_for_tests(os.environ.get(CLOCK_SKEW_ENV), self.index)
        self._clock: ClockEstimate | None = None
        # reference = local + offset: carried by every record batch (0 without clock sync).
        self._clock_offset_ns = 0
        # Added to a reference-clock time for this process's perf_counter_ns.
        self._to_perf_ns = -self._skew_ns
        self._ping: tuple[int, asyncio.Future[tuple[int, int]]] | None = None
        self._channel.send(encode(WorkerHello(self.service_id)))
        self.spawn(self._receive(), name="credit-channel")
        if cfg.clock_sync:
            await self._sync_clock()  # before registering: no credit comes before it

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        config = UserConfig.from_wire(command.user_config)
        if self.service_config.clock_sync:
            # Pending records leave under the estimate they were stamped with; then a fresh
            # one keeps drift over a long session bounded by one run's worth. Before
            # _end_run, so no cancelled request can queue a record during the handshake.
            self._flush_records()
            await self._sync_clock()
        self._end_run()
        self._flush_records()  # what is pending belongs to the run that is ending
        self._endpoint = make_endpoint(config)
        self._turns = dataset_of(command.dataset_path, command.dataset_inline)
        self._bodies = [None] * len(self._turns)
        # AIPerf's --custom-endpoint: the user's path replaces the plugin's own.
        self._url = (config.url.rstrip("/") + config.custom_endpoint
                     if config.custom_endpoint else self._endpoint.url)
        self._streaming = self._endpoint.streaming
        headers = self._endpoint.headers()
        # A new run with the same target, timeout and headers keeps the session, its warm
        # connections and the headers mapping it was started with (which ``send`` then
        # recognises as its own).
        transport_key = (config.url, config.request_timeout_seconds,
                         config.request_first_byte_timeout_seconds,
                         tuple(sorted(headers.items())))
        if self._transport is None or self._transport_key != transport_key:
            if self._transport is not None:
                await self._transport.close()
            self._transport = make_transport(
                config.url, config.request_timeout_seconds,
                self.service_config.max_connections_per_worker,
                first_byte_timeout_seconds=config.request_first_byte_timeout_seconds,
            )
            self._transport_key = transport_key
            self._headers = headers
            self._secrets = secret_values(headers, config.url)
            await self._transport.start(headers=headers)
        self._run = run_number(command.run_id)
        self._run_id = command.run_id
        self._load.start()
        return {}

    @on_message(MessageType.LOAD_REPORT_REQUEST)
    async def _report_load(self, message: LoadReportRequest) -> None:
        if message.run_id != self._run_id or not self._load.running:
            return
        report = self._load.report()
        self._load.stop()
        clock: dict[str, Any] = {}
        if self._clock is not None:
            # The probe's stamps are compared with the run's requests (reference clock).
            shift = self._skew_ns + self._clock.offset_ns
            for key in ("tick_ns", "cpu_at_ns"):
                report[key] = (np.frombuffer(report[key], dtype=np.int64) + shift).tobytes()
            clock = {"clock_offset_ns": self._clock.offset_ns,
                     "clock_uncertainty_ns": self._clock.uncertainty_ns,
                     "clock_round_trip_ns": self._clock.round_trip_ns,
                     "clock_samples": self._clock.samples, "host": socket.gethostname()}
        await self.publish(WorkerLoadReport(run_id=message.run_id, **report, **clock))

    @on_message(MessageType.CANCEL_REQUESTS)
    async def _cancel(self, message: CancelRequestsMessage) -> None:
        if message.run_id != self._run_id:
            return
        for progress in self._leases:
            progress.consumed = True
            self._report(progress)
        for task in list(self._in_flight.values()):
            task.cancel()

    @on_stop
    async def _close(self) -> None:
        self._load.stop()
        self._end_run()
        if self._transport is not None:
            await self._transport.close()

    def _end_run(self) -> None:
        self._generation += 1
        for task in self._slot_tasks:
            task.cancel()
        for task in self._in_flight.values():
            task.cancel()
        self._slot_tasks.clear()
        self._in_flight.clear()
        self._leases.clear()

    # -- the clock handshake -------------------------------------------------------------

    async def _sync_clock(self) -> None:
        """CLOCK_ROUNDS round trips with the timing manager, one at a time, and the
        estimate from the fastest (``clock.estimate``). A timing manager that does not
        answer by the deadline is fatal: at start-up this fails the mesh, at configure the
        run, naming it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOCK_SYNC_TIMEOUT_S
        samples: list[ClockSample] = []
        try:
            async with asyncio.timeout_at(deadline):
                for _ in range(CLOCK_ROUNDS):
                    waiter: asyncio.Future[tuple[int, int]] = loop.create_future()
                    t0 = _perf_ns() + self._skew_ns
                    self._ping = (t0, waiter)
                    self._channel.send(encode(ClockPing(t0)))
                    reference, t3 = await waiter
                    samples.append((t0, reference, t3))
        except TimeoutError:
            raise MeshTimeoutError(
                f"worker {self.service_id}: the timing manager answered {len(samples)} of "
                f"{CLOCK_ROUNDS} clock pings within {CLOCK_SYNC_TIMEOUT_S:g} s "
                f"({self.service_config.address('credits')})") from None
        finally:
            self._ping = None
        self._clock = estimate(samples)
        self._clock_offset_ns = self._clock.offset_ns
        self._to_perf_ns = -self._clock.offset_ns - self._skew_ns
        self.debug(lambda: f"clock offset {self._clock}")

    def _pong(self, pong: ClockPong) -> None:
        t3 = _perf_ns() + self._skew_ns
        ping = self._ping
        # A pong for an earlier handshake's ping (one that timed out) is not this one's.
        if ping is not None and ping[0] == pong.t0 and not ping[1].done():
            ping[1].set_result((pong.reference_ns, t3))

    # -- receiving credits --------------------------------------------------------------

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = to_worker_decoder.decode(await self._channel.recv())
            if type(message) is ClockPong:
                self._pong(message)
                continue
            if message.run != self._run:
                continue  # from a run that is over
            if isinstance(message, Lease):
                if message.deadline_ns and self._to_perf_ns:
                    # The deadline is on the timing manager's clock: once per lease.
                    message = msgspec.structs.replace(
                        message, deadline_ns=message.deadline_ns + self._to_perf_ns)
                self._leases.append(_LeaseProgress(message))
                if message.deadline_ns:
                    # Slots stuck in slow requests would not notice the deadline: a timer does.
                    delay = max(0.0, (message.deadline_ns - _perf_ns()) / 1e9)
                    loop.call_later(delay + 0.001, self._next_lease)
                while len(self._slot_tasks) < message.slots:
                    self._slot_tasks.append(loop.create_task(self._slot(self._generation)))
                self._wake.set()
            elif isinstance(message, CreditBatch):
                for credit in message.credits:
                    self._in_flight[credit.id] = loop.create_task(self._scheduled(credit))

    def _next_lease(self) -> _LeaseProgress | None:
        now = _perf_ns()
        for progress in self._leases:
            if progress.consumed:
                continue
            deadline = progress.lease.deadline_ns
            if deadline and now > deadline:
                progress.consumed = True
                self._report(progress)
                continue
            return progress
        return None

    def _report(self, progress: _LeaseProgress) -> None:
        done = progress.consumed and progress.completed == progress.next_offset
        lease = progress.lease
        self._channel.send(encode(LeaseReport(lease.run, lease.first_id, progress.next_offset,
                                              done)))
        if done:
            self._leases.remove(progress)

    async def _slot(self, generation: int) -> None:
        """One closed-loop slot: take the next leased id, send, repeat. The request runs in
        this task (no task per request); cancelling the task cancels the request in flight,
        which still ends with its record, and the loop goes on unless the run is over."""
        current = asyncio.current_task()
        assert current is not None
        while generation == self._generation:
            progress = self._next_lease()
            if progress is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            lease = progress.lease
            credit_id = lease.first_id + progress.next_offset
            progress.next_offset += 1
            if progress.next_offset == lease.count:
                progress.consumed = True
                self._report(progress)  # used up: the timing manager sends the next
            conversation = turn_for(credit_id, len(self._turns))
            self._in_flight[credit_id] = current
            await self._execute(credit_id, lease.phase, conversation, _perf_ns())
            progress.completed += 1
            if progress.consumed and progress.completed == progress.next_offset:
                self._report(progress)

    async def _scheduled(self, credit: Credit) -> None:
        send_at = credit.send_at_ns
        if send_at and self._to_perf_ns:
            send_at += self._to_perf_ns  # from the timing manager's clock to this process's
        await self._execute(credit.id, credit.phase, credit.conversation, send_at,
                            wait_until_ns=send_at)
        self._pending_returns.append(credit.id)
        if len(self._pending_returns) == 1:
            asyncio.get_running_loop().call_soon(self._flush_returns)

    # -- one request ----------------------------------------------------------------------

    def _body(self, conversation: int) -> bytes:
        body = self._bodies[conversation]
        if body is None:
            assert self._endpoint is not None
            body = self._bodies[conversation] = self._endpoint.encode(self._turns[conversation])
        return body

    async def _execute(self, credit_id: int, phase: int, conversation: int,
                       credit_ns: int, wait_until_ns: int = 0) -> None:
        run = self._run
        record = RawRecord(credit_id, phase, self.service_id, conversation, credit_ns,
                           0, 0, 0, 0, 0, [])
        try:
            if wait_until_ns:
                delay_ns = wait_until_ns - _perf_ns()
                if delay_ns > 0:
                    await asyncio.sleep(delay_ns / 1e9)
                    # The loop's timers round to the millisecond and may fire early; never
                    # send before the scheduled time.
                    while _perf_ns() < wait_until_ns:
                        await asyncio.sleep(0)
            if self._backlog:
                # Backpressure: a record processor is behind, so no new request goes out
                # until its records have room (the wait is client-side queueing, in
                # credit_to_start_latency). Requests in flight are not held up.
                await self._drained.wait()
            assert self._transport is not None
            await self._transport.send(record, self._url, self._headers,
                                       self._body(conversation), self._streaming)
        except asyncio.CancelledError:
            record.cancelled = True
            record.error = CANCELLED
            record.end_ns = _perf_ns()
        except Exception as exc:
            # An endpoint plugin whose encode raises, or a transport bug: this request
            # fails, the slot goes on to the next.
            record.error = ErrorInfo(None, type(exc).__name__,
                                     (str(exc) or repr(exc))[:MAX_ERROR_MESSAGE])
            record.end_ns = record.end_ns or _perf_ns()
        finally:
            # A request of a run that ended meanwhile is no longer wanted, and its credit
            # id is reused by the next run: it must neither untrack nor join that run's.
            if run == self._run:
                self._in_flight.pop(credit_id, None)
                if record.error is not None and self._secrets:
                    record.error = scrub_error(record.error, self._secrets)
                self._queue_record(record)

    # -- batching -------------------------------------------------------------------------

    def _queue_record(self, record: RawRecord) -> None:
        self._pending_records.append(record)
        chunks = record.chunks
        if chunks:
            # A whole body's reads (few unless it is large); a stream's last read stands
            # for its size (summing a long stream's reads would cost every request).
            self._pending_bytes += (
                len(chunks[-1][1]) if self._streaming or len(chunks) == 1
                else sum(len(read) for _, read in chunks))
        if len(self._pending_records) >= RECORD_BATCH or not self._in_flight:
            self._flush_records()  # full, or nothing else in flight: the run may be ending
        elif self._pending_bytes >= RECORD_BATCH_BYTES:
            # Large bodies leave soon, but not inline: encoding megabytes would delay the
            # timestamps of the responses completing in the same loop turn and the writes
            # of the requests the slots start next. A 0 s timer runs after both (after the
            # next turn's ready callbacks and I/O), where call_soon would run before them.
            if self._big_flush is None:
                self._big_flush = asyncio.get_running_loop().call_later(
                    0, self._flush_records)
        elif self._record_timer is None:
            self._record_timer = asyncio.get_running_loop().call_later(
                RECORD_FLUSH_S, self._flush_records)

    def _flush_records(self) -> None:
        if self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        if self._big_flush is not None:
            self._big_flush.cancel()
            self._big_flush = None
        records, self._pending_records = self._pending_records, []
        large, self._pending_bytes = self._pending_bytes >= ZERO_COPY_BYTES, 0
        if not records:
            return
        if self._skew_ns:  # tests only: the stamps a host with this clock would have taken
            shift_stamps(records, self._skew_ns)
        batch = RawBatch(self._run, records, clock_offset_ns=self._clock_offset_ns)
        # Large bodies leave as frames of their own, never copied on this loop (codec).
        frames = encode_raw_frames(batch) if large else [encode(batch)]
        if self._backlog:  # behind others waiting for room: keep the order
            self._backlog.append(frames)
            return
        try:
            # Never a blocking send: a full socket (its HWM reached, a processor behind)
            # would freeze this event loop and with it the timestamps of every request in
            # flight. zmq copies a message unless told not to; for a large one the copy
            # costs more than the reference it keeps (bytes are immutable: safe to share).
            if large:
                self._records.send_multipart(frames, zmq.NOBLOCK, copy=False)
            else:
                self._records.send(frames[0], zmq.NOBLOCK)
        except zmq.Again:
            self._backlog.append(frames)
            self._drained.clear()
            self.spawn(self._drain_backlog(), name="record-backlog")

    async def _drain_backlog(self) -> None:
        """Send the waiting batches as the processors make room, without blocking the loop;
        new requests wait for this (see _execute), which is the backpressure."""
        while self._backlog:
            frames = self._backlog[0]
            await self._records_async.send_multipart(
                frames, copy=len(frames) == 1 and len(frames[0]) < ZERO_COPY_BYTES)
            self._backlog.popleft()
        self._drained.set()

    def _flush_returns(self) -> None:
        ids, self._pending_returns = self._pending_returns, []
        if ids:
            self._channel.send(encode(ReturnBatch(self._run, ids)))
