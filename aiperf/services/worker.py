"""Worker: turns credits into HTTP requests and reports raw records.

The hot path of the whole tool, kept short on purpose: a credit arrives (with its send time),
the request body comes from a per-entry cache, the transport fills a ``RawRecord``, and the
credit id and the record join the outgoing batches. Batches flush once per event-loop turn
(``call_soon``), so a burst of completions costs one message, and a lone completion is not
delayed waiting for company.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import zmq

from aiperf.common.codec import (
    Credit,
    ErrorInfo,
    RawBatch,
    RawRecord,
    ReturnBatch,
    credit_decoder,
    encode,
    run_number,
)
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message, on_stop
from aiperf.common.messages import (
    CancelRequestsMessage,
    ConfigureProfileCommand,
    MessageType,
)
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import Turn, read_dataset
from aiperf.endpoints.base import BaseEndpoint
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import EndpointMetadata
from aiperf.transports.http import HttpTransport

_perf_ns = time.perf_counter_ns
CANCELLED = ErrorInfo(None, "Cancelled", "in flight when the benchmark duration and grace ended")


class Worker(BaseComponentService):
    service_type = "worker"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        cfg = self.service_config
        self._credits = self.comms.socket(zmq.PULL, "credits", bind=False)
        self._returns = self.comms.socket(zmq.PUSH, "credit_returns", bind=False)
        self._records = self.comms.socket(zmq.PUSH, "raw_records", bind=False, index=0)
        for i in range(1, cfg.record_processors):
            self._records.connect(cfg.address("raw_records", i))
        self._run = 0
        self._run_id = ""
        self._turns: list[Turn] = []
        self._bodies: list[bytes | None] = []
        self._endpoint: BaseEndpoint | None = None
        self._transport: HttpTransport | None = None
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._done_ids: list[int] = []
        self._done_records: list[RawRecord] = []
        self._flush_pending = False
        self.spawn(self._receive_credits(), name="credits")

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        config = UserConfig.model_validate(command.user_config)
        endpoint_class = plugins.get_class(PluginType.ENDPOINT, config.endpoint_type)
        metadata = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
        assert isinstance(metadata, EndpointMetadata)
        self._endpoint = endpoint_class(config, metadata)
        self._turns = read_dataset(command.dataset_path) if command.dataset_path else []
        self._bodies = [None] * len(self._turns)
        self._url = self._endpoint.url
        self._headers = self._endpoint.headers()
        self._streaming = self._endpoint.streaming
        if self._transport is not None:
            await self._transport.close()
        self._transport = HttpTransport(
            config.request_timeout_seconds, self.service_config.max_connections_per_worker
        )
        await self._transport.start()
        self._run = run_number(command.run_id)
        self._run_id = command.run_id
        return {}

    @on_message(MessageType.CANCEL_REQUESTS)
    async def _cancel(self, message: CancelRequestsMessage) -> None:
        if message.run_id == self._run_id:
            for task in list(self._in_flight.values()):
                task.cancel()

    @on_stop
    async def _close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        if self._transport is not None:
            await self._transport.close()

    async def _receive_credits(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = credit_decoder.decode(await self._credits.recv())
            if batch.run != self._run:
                continue  # a credit of a run that is over; its run already finished
            for credit in batch.credits:
                self._in_flight[credit.id] = loop.create_task(self._execute(credit))

    def _body(self, conversation: int) -> bytes:
        body = self._bodies[conversation]
        if body is None:
            assert self._endpoint is not None
            body = self._bodies[conversation] = self._endpoint.encode(self._turns[conversation])
        return body

    async def _execute(self, credit: Credit) -> None:
        record = RawRecord(credit.id, credit.phase, self.service_id, credit.conversation,
                           credit.send_at_ns, 0, 0, 0, 0, 0, [])
        try:
            delay_ns = credit.send_at_ns - _perf_ns()
            if delay_ns > 0:
                await asyncio.sleep(delay_ns / 1e9)
            assert self._transport is not None
            await self._transport.send(
                record, self._url, self._headers, self._body(credit.conversation),
                self._streaming,
            )
        except asyncio.CancelledError:
            record.cancelled = True
            record.error = CANCELLED
            record.end_ns = _perf_ns()
        finally:
            self._in_flight.pop(credit.id, None)
            self._done_ids.append(credit.id)
            self._done_records.append(record)
            if not self._flush_pending:
                self._flush_pending = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        ids, self._done_ids = self._done_ids, []
        records, self._done_records = self._done_records, []
        if ids:
            self._returns.send(encode(ReturnBatch(self._run, ids)))
            self._records.send(encode(RawBatch(self._run, records)))
