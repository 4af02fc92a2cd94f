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
server in tests/integration/services/test_backpressure.py). In sketch mode a batch holds
about ``comms.sketch_batch_bytes`` at most, so the record path's queues of ``record_hwm``
batches hold a few megabytes whatever the record size: backpressure holds the run back
instead of the queues holding memory.

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
from collections.abc import Callable, Mapping
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
from aiperf.common.comms import sketch_batch_bytes, sync_twin
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message, on_stop
from aiperf.common.messages import (
    CancelRequestsMessage,
    ConfigureProfileCommand,
    LoadReportRequest,
    MessageType,
    WorkerLoadReport,
)
from aiperf.common.net import with_http_scheme
from aiperf.common.service import BaseComponentService
from aiperf.dataset.answers import HistoryAnswer, history_answer
from aiperf.dataset.models import SessionLayout, Turn, dataset_of, session_layout, turn_for
from aiperf.dataset.sessions import whole_session_leases
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.endpoints.base import BaseEndpoint, make_endpoint
from aiperf.errors import ConfigError, MeshTimeoutError
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
PLANNED_CANCEL = cancellation("cancelled by the client: --request-cancellation-rate")
# The session header AIPerf sends when --session-header names none.
DEFAULT_SESSION_HEADER = "X-Correlation-ID"
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
    # Multi-turn: started ids that will never be sent, for the next report.
    skipped: list[int] | None = None


@dataclass(eq=False, slots=True)  # hashed by identity: kept in a set while it runs
class _Session:
    """One multi-turn session running in a slot: ids ``first_id`` .. + ``turns`` - 1."""

    progress: _LeaseProgress
    first_id: int
    turns: int
    sent: int = 0  # turns started so far
    stopped: bool = False


class _CancelTimer:
    """The pending timer of one planned cancellation (it re-arms itself until due)."""

    handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


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
        self._cancelled = False  # this run's CancelRequests came: start nothing more
        self._turns: list[Turn] = []
        self._bodies: list[bytes | None] = []
        self._layout: SessionLayout | None = None
        self._sessions: set[_Session] = set()
        self._session_header = DEFAULT_SESSION_HEADER
        self._session_tag = ""
        self._tokenizer: Any = None
        self._cancel_share = 0.0
        self._cancel_delay_s = 0.0
        self._planned: set[int] = set()  # credit ids cancelled on purpose, in flight
        self._urls: list[str] = []
        self._whole_sessions = False
        self._histories: dict[int, tuple[bytes, int]] = {}  # rate mode: by session
        # Per session turn: its own body, that body cut where the history goes (None: no
        # place found), and its own messages.
        self._parts: list[tuple[bytes, tuple[bytes, bytes] | None, bytes] | None] = []
        self._endpoint: BaseEndpoint | None = None
        self._transport: HttpTransport | None = None
        self._headers_with: Callable[[Mapping[str, str]], Mapping[str, str]] = _as_given
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
        # A batch's size bound, and what a record took in the last batch sent: a stream's
        # size is not known without summing its reads, which would cost every request.
        self._batch_bytes = RECORD_BATCH_BYTES
        self._record_bytes = 0
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
        self._parts = [None] * len(self._turns)
        # AIPerf's --custom-endpoint: the user's path replaces the plugin's own.
        self._url = (config.url.rstrip("/") + config.custom_endpoint
                     if config.custom_endpoint else self._endpoint.url)
        self._configure_sessions(config)
        self._streaming = self._endpoint.streaming
        headers = self._endpoint.headers()
        # A new run with the same target, timeout and headers keeps the session, its warm
        # connections and the headers mapping it was started with (which ``send`` then
        # recognises as its own).
        transport_key = (config.url, config.request_timeout_seconds,
                         config.request_first_byte_timeout_seconds, config.transport,
                         tuple(sorted(headers.items())))
        if self._transport is None or self._transport_key != transport_key:
            if self._transport is not None:
                await self._transport.close()
            self._transport = make_transport(
                config.url, config.request_timeout_seconds,
                self.service_config.max_connections_per_worker,
                first_byte_timeout_seconds=config.request_first_byte_timeout_seconds,
                name=config.transport,
            )
            self._transport_key = transport_key
            self._headers = headers
            self._secrets = tuple({s for url in (config.url, *config.urls)
                                   for s in secret_values(headers, url)})
            await self._transport.start(headers=headers)
            # Optional for a transport plugin (HttpTransport.headers_with): without it, a
            # session's headers go to send as they are.
            self._headers_with = getattr(self._transport, "headers_with", _as_given)
        self._run = run_number(command.run_id)
        # The session header's value is this and the session's number (a format spec is
        # slow to apply once a session).
        self._session_tag = f"{self._run:08x}-"
        self._run_id = command.run_id
        self._cancelled = False
        # Sketch mode bounds the record path in bytes: batches small enough that a queue
        # of record_hwm of them holds a few megabytes.
        self._batch_bytes = (sketch_batch_bytes(self.service_config.record_hwm)
                             if config.sketch else RECORD_BATCH_BYTES)
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

    def _configure_sessions(self, config: UserConfig) -> None:
        """Multi-turn sessions, planned cancellations and several URLs: all off the
        single-turn path unless asked for."""
        assert self._endpoint is not None
        self._layout = session_layout(self._turns)
        self._sessions = set()
        self._histories = {}
        self._whole_sessions = whole_session_leases(config)
        if self._layout is not None:
            probe = self._endpoint.payload(self._turns[0])
            if not isinstance(probe.get("messages"), list):
                raise ConfigError(
                    f"endpoint_type {config.endpoint_type!r}: a multi-turn dataset needs a "
                    "chat endpoint (a request with 'messages' to carry the history)")
            self._tokenizer = make_tokenizer(config.tokenizer)
        self._session_header = config.session_header or DEFAULT_SESSION_HEADER
        self._cancel_share = (config.request_cancellation_rate or 0.0) / 100.0
        self._cancel_delay_s = config.request_cancellation_delay
        self._planned = set()
        # Round robin over several servers: the same path on each base URL.
        path = self._url[len(config.url.rstrip("/")):]
        self._urls = [with_http_scheme(u).rstrip("/") + path for u in config.urls] \
            if len(config.urls) > 1 else []

    @on_message(MessageType.CANCEL_REQUESTS)
    async def _cancel(self, message: CancelRequestsMessage) -> None:
        if message.run_id != self._run_id:
            return
        self._cancelled = True
        for session in list(self._sessions):
            self._stop_session(session)
        # A copy: a report of a lease with nothing in flight removes it from the list.
        for progress in list(self._leases):
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
                progress = _LeaseProgress(message)
                self._leases.append(progress)
                if self._cancelled:
                    # Sent before the timing manager stopped, on another socket than the
                    # cancel: nothing of it is started, and the report says so at once.
                    progress.consumed = True
                    self._report(progress)
                    continue
                if message.deadline_ns:
                    # Slots stuck in slow requests would not notice the deadline: a timer does.
                    delay = max(0.0, (message.deadline_ns - _perf_ns()) / 1e9)
                    loop.call_later(delay + 0.001, self._next_lease)
                starts = message.slot_starts_ns
                while len(self._slot_tasks) < message.slots:
                    j = len(self._slot_tasks)
                    # A concurrency ramp: this slot's first request waits until its time.
                    start = starts[j] + self._to_perf_ns if j < len(starts) else 0
                    self._slot_tasks.append(loop.create_task(
                        self._slot(self._generation, start)))
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
                # The report removes a lease with nothing in flight, which would make this
                # loop skip the next one: look again from the start.
                return self._next_lease()
            return progress
        return None

    def _report(self, progress: _LeaseProgress) -> None:
        done = progress.consumed and progress.completed == progress.next_offset
        lease = progress.lease
        skipped, progress.skipped = progress.skipped, None
        self._channel.send(encode(LeaseReport(lease.run, lease.first_id, progress.next_offset,
                                              done, skipped or [])))
        if done:
            self._leases.remove(progress)

    async def _slot(self, generation: int, start_ns: int = 0) -> None:
        """One closed-loop slot: take the next leased id, send, repeat. The request runs in
        this task (no task per request); cancelling the task cancels the request in flight,
        which still ends with its record, and the loop goes on unless the run is over."""
        current = asyncio.current_task()
        assert current is not None
        if start_ns:
            delay_ns = start_ns - _perf_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)
        while generation == self._generation:
            progress = self._next_lease()
            if progress is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            lease = progress.lease
            credit_id = lease.first_id + progress.next_offset
            if self._layout is not None:
                await self._session(progress, credit_id, generation, current)
                continue
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
        if credit.session >= 0 and self._layout is not None:
            await self._scheduled_turn(credit, send_at)
        else:
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
            turn = self._turns[conversation]
            body = self._bodies[conversation] = (
                self._encode(turn, [])[0] if turn.system else self._endpoint.encode(turn))
        return body

    def _turn_body(self, flat: int, history: bytes) -> tuple[bytes, bytes]:
        """A session turn's body with ``history`` spliced in before its own messages, and
        those messages (for the next turn's history). The turn's own body is encoded once
        and the history inserted as bytes: re-encoding the whole conversation each turn
        cost more CPU than the request itself."""
        parts = self._parts[flat]
        if parts is None:
            body, user = self._encode(self._turns[flat], [])
            own = b",".join(msgspec.json.encode(m) for m in user)
            position = body.rfind(own) if own else -1
            # Cut once: slicing the body anew every turn was two copies more per request.
            cut = (body[:position], body[position:]) if position >= 0 else None
            parts = self._parts[flat] = (body, cut, own + b"," if own else b"")
        body, cut, own = parts
        if not history:
            return body, own
        if cut is None:  # no messages of its own found in the body: encode it all
            messages = msgspec.json.decode(b"[" + history[:-1] + b"]")
            return self._encode(self._turns[flat], messages)[0], own
        return b"".join((cut[0], history, cut[1])), own

    def _encode(self, turn: Turn, history: list[dict[str, str]]
                ) -> tuple[bytes, list[dict[str, str]]]:
        """A body with the system prompt and ``history`` before the turn's own messages
        (chat), or the system prompt before the prompt (completions); and those own
        messages, for the history of the next turn."""
        endpoint = self._endpoint
        assert endpoint is not None
        payload = endpoint.payload(turn)
        user = payload.get("messages")
        if isinstance(user, list):
            system = [{"role": "system", "content": turn.system}] if turn.system else []
            payload["messages"] = [*system, *history, *user]
        elif turn.system and isinstance(payload.get("prompt"), str):
            payload["prompt"] = f"{turn.system} {payload['prompt']}"
        payload.update(endpoint.config.extra_inputs)
        payload.update(turn.extra)
        return msgspec.json.encode(payload), user if isinstance(user, list) else []

    async def _execute(self, credit_id: int, phase: int, conversation: int,
                       credit_ns: int, wait_until_ns: int = 0, body: bytes | None = None,
                       headers: dict[str, str] | None = None,
                       session: tuple[int, int, int] | None = None,
                       answer: bool = False) -> HistoryAnswer | None:
        """Send one request and queue its record; with ``answer`` (a session turn with a
        next one), read its answer for that turn's history first, and return it."""
        run = self._run
        record = RawRecord(credit_id, phase, self.service_id, conversation, credit_ns,
                           0, 0, 0, 0, 0, [])
        if session is not None:
            record.session, record.turn_index, record.isl = session
        timer: _CancelTimer | None = None
        history: HistoryAnswer | None = None
        try:
            if self._cancelled:
                # Credits sent just before the timing manager stopped can arrive after the
                # cancel (another socket): each is issued and owes a record, not a request.
                raise asyncio.CancelledError
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
            if self._cancel_share and _planned_cancel(credit_id, self._cancel_share):
                timer = self._plan_cancel(credit_id, record)
            url = self._url
            if self._urls:  # round robin; a session stays on its first turn's URL
                record.url_index = (credit_id if session is None else session[0]) % len(
                    self._urls)
                url = self._urls[record.url_index]
            await self._transport.send(record, url, headers or self._headers,
                                       body or self._body(conversation), self._streaming)
        except asyncio.CancelledError:
            record.cancelled = True
            record.error = CANCELLED
            if credit_id in self._planned:
                record.error = PLANNED_CANCEL
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # ours: the slot goes on
            record.end_ns = _perf_ns()
        except Exception as exc:
            # An endpoint plugin whose encode raises, or a transport bug: this request
            # fails, the slot goes on to the next.
            record.error = ErrorInfo(None, type(exc).__name__,
                                     (str(exc) or repr(exc))[:MAX_ERROR_MESSAGE])
            record.end_ns = record.end_ns or _perf_ns()
        finally:
            if timer is not None:
                timer.cancel()
                self._planned.discard(credit_id)
            # A request of a run that ended meanwhile is no longer wanted, and its credit
            # id is reused by the next run: it must neither untrack nor join that run's.
            if run == self._run:
                self._in_flight.pop(credit_id, None)
                if record.error is not None and self._secrets:
                    record.error = scrub_error(record.error, self._secrets)
                elif answer and record.error is None:
                    # Before it is queued: a plain answer's read replaces its bytes.
                    assert self._endpoint is not None
                    history = history_answer(self._endpoint, record)
                self._queue_record(record)
        return history

    def _plan_cancel(self, credit_id: int, record: RawRecord) -> _CancelTimer:
        """Cancel this request ``request_cancellation_delay`` seconds after it was sent
        (its last byte written: the transport's ``sent_ns``), as AIPerf does."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        timer = _CancelTimer()

        def fire() -> None:
            if not record.sent_ns:  # not written yet: look again shortly
                timer.handle = loop.call_later(0.001, fire)
                return
            due = record.sent_ns + int(self._cancel_delay_s * 1e9) - _perf_ns()
            if due > 0:
                timer.handle = loop.call_later(due / 1e9, fire)
                return
            if record.end_ns == 0 and self._in_flight.get(credit_id) is task:
                self._planned.add(credit_id)
                task.cancel()

        timer.handle = loop.call_later(self._cancel_delay_s, fire)
        return timer

    # -- multi-turn sessions --------------------------------------------------------------

    def _stop_session(self, session: _Session) -> None:
        """No further turn of ``session`` is sent: its unsent ids are reported skipped."""
        if session.stopped:
            return
        session.stopped = True
        unsent = range(session.first_id + session.sent, session.first_id + session.turns)
        if unsent:
            progress = session.progress
            progress.skipped = [*(progress.skipped or ()), *unsent]
            progress.completed += len(unsent)

    def _spend_id(self, progress: _LeaseProgress) -> int:
        """The next id of ``progress``'s lease for a session's next turn; a used-up lease is
        reported (the timing manager then sends the next)."""
        lease = progress.lease
        credit_id = lease.first_id + progress.next_offset
        progress.next_offset += 1
        if progress.next_offset == lease.count:
            progress.consumed = True
            self._report(progress)
        return credit_id

    async def _wait_lease(self, generation: int) -> _LeaseProgress | None:
        """A lease with an id left for a session's next turn, waiting for one like a slot
        does; None once the run is over."""
        while generation == self._generation:
            progress = self._next_lease()
            if progress is not None:
                return progress
            self._wake.clear()
            await self._wake.wait()
        return None

    async def _session(self, progress: _LeaseProgress, credit_id: int, generation: int,
                       current: asyncio.Task[None], taken: bool = False) -> None:
        """A whole session in this slot: its turns in order, one at a time, each sending
        the conversation so far with the server's real answers. With whole-session leases
        (``whole_session_leases``) its ids are taken together now; otherwise each turn
        takes the next leased id when it is sent."""
        layout = self._layout
        assert layout is not None
        lease = progress.lease
        flat = credit_id % layout.size
        index = layout.session_at[flat]
        if self._whole_sessions:
            turns = min(layout.starts[index] + layout.lengths[index] - flat,
                        lease.count - progress.next_offset)
            progress.next_offset += turns
        else:
            flat = layout.starts[index]
            turns = layout.lengths[index]
            if not taken:  # else _spend_id took it (and reported a used-up lease)
                progress.next_offset += 1
        if progress.next_offset == lease.count and not progress.consumed:
            progress.consumed = True
            self._report(progress)  # used up: the timing manager sends the next
        session = _Session(progress, credit_id, turns if self._whole_sessions else 1)
        self._sessions.add(session)
        headers = self._headers_with({self._session_header: f"{self._session_tag}{credit_id}"})
        handoff: tuple[_LeaseProgress, int] | None = None
        history = b""  # the exchanges so far: JSON messages, each followed by a comma
        history_tokens = 0
        deadline = lease.deadline_ns
        try:
            for k in range(turns):
                turn = self._turns[flat + k]
                if k and turn.delay_ms > 0 and not session.stopped:
                    await asyncio.sleep(turn.delay_ms / 1000)
                turn_progress, cid = progress, credit_id + k
                # (Without whole-session leases the deadline is the leases': no id comes.)
                if (session.stopped or generation != self._generation
                        or (self._whole_sessions and deadline and _perf_ns() > deadline)):
                    self._stop_session(session)
                    break
                if not self._whole_sessions and k:
                    # A lease in hand is spent at once, without a coroutine to wait in.
                    ready = self._next_lease() or await self._wait_lease(generation)
                    if ready is None:
                        break  # the run is over
                    turn_progress, cid = ready, self._spend_id(ready)
                    if ready.lease.phase != lease.phase:
                        # The warmup is over: its session ends here, and the id (the
                        # profiling phase's) opens a session of its own.
                        handoff = (ready, cid)
                        break
                session.sent += 1
                body, user = self._turn_body(flat + k, history)
                self._in_flight[cid] = current
                # The last turn's answer is nobody's history: not read.
                answer = await self._execute(
                    cid, turn_progress.lease.phase, flat + k, _perf_ns(), body=body,
                    headers=headers,
                    session=(credit_id, k, turn.input_tokens + history_tokens),
                    answer=k + 1 < turns)
                turn_progress.completed += 1
                if turn_progress.consumed and not self._whole_sessions:
                    self._report_if_done(turn_progress)
                if answer is not None:
                    # A failed turn leaves no exchange in the history: the conversation
                    # goes on from the last answered one.
                    history = b"".join((history, user, answer.message, b","))
                    history_tokens += self._exchange_tokens(turn, answer)
                if session.stopped:
                    break
        except asyncio.CancelledError:
            self._stop_session(session)
            if generation == self._generation:
                task = asyncio.current_task()
                if task is not None and task.uncancel():
                    raise
            else:
                raise
        finally:
            self._sessions.discard(session)
        self._report_if_done(progress)
        if handoff is not None:
            await self._session(handoff[0], handoff[1], generation, current, taken=True)

    async def _scheduled_turn(self, credit: Credit, send_at: int) -> None:
        """One turn of a session in rate mode: the timing manager sends it only after the
        previous turn's credit returned, and to this worker, which kept the history."""
        assert self._endpoint is not None
        flat = credit.conversation
        turn = self._turns[flat]
        history, history_tokens = self._histories.pop(credit.session, (b"", 0))
        body, user = self._turn_body(flat, history)
        following = flat + 1
        has_next = (following < len(self._turns)
                    and self._turns[following].turn_index == turn.turn_index + 1)
        answer = await self._execute(
            credit.id, credit.phase, flat, send_at, wait_until_ns=send_at, body=body,
            headers=self._headers_with(
                {self._session_header: f"{self._session_tag}{credit.session}"}),
            session=(credit.session, turn.turn_index, turn.input_tokens + history_tokens),
            answer=has_next)
        if has_next:
            if answer is not None:
                history = b"".join((history, user, answer.message, b","))
                history_tokens += self._exchange_tokens(turn, answer)
            # Kept until the next turn comes (before this credit returns: see _scheduled).
            self._histories[credit.session] = (history, history_tokens)

    def _exchange_tokens(self, turn: Turn, answer: HistoryAnswer) -> int:
        """The tokens one answered exchange adds to the history: the turn's own messages
        (its system prompt is sent once, not per exchange) and the answer, by the server's
        count or, when it gave none, the tokenizer's."""
        completion = answer.completion_tokens
        return turn.input_tokens - turn.system_tokens + (
            completion if completion is not None else self._tokenizer.count(answer.text))

    def _report_if_done(self, progress: _LeaseProgress) -> None:
        if (progress.consumed and progress.completed == progress.next_offset
                and any(p is progress for p in self._leases)):
            self._report(progress)

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
        elif (self._pending_bytes >= self._batch_bytes
              or len(self._pending_records) * self._record_bytes >= self._batch_bytes):
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
        # Records that completed together (a big flush waits for the loop's next turn)
        # leave as several batches of about _batch_bytes, so a queued batch is bounded.
        per = (max(1, self._batch_bytes // self._record_bytes) if self._record_bytes
               else len(records))
        if per < len(records):
            for start in range(0, len(records), per):
                self._send_batch(records[start:start + per], large)
        else:
            self._send_batch(records, large)

    def _send_batch(self, records: list[RawRecord], large: bool) -> None:
        batch = RawBatch(self._run, records, clock_offset_ns=self._clock_offset_ns)
        # Large bodies leave as frames of their own, never copied on this loop (codec).
        frames = encode_raw_frames(batch) if large else [encode(batch)]
        self._record_bytes = sum(len(frame) for frame in frames) // len(records)
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


def _as_given(headers: Mapping[str, str]) -> Mapping[str, str]:
    return headers


def _planned_cancel(credit_id: int, share: float) -> bool:
    """Whether a request is one the client cancels: evenly spread over the ids, so that
    ids 0 .. n-1 hold exactly floor(n * share) of them (exact counts, no random draw)."""
    return int((credit_id + 1) * share) > int(credit_id * share)

