"""Record processor: parses raw responses into per-request metrics, off the request path.

Replicable: each instance binds its own ``raw_records_<i>`` address and workers spread their
batches over all of them, so parsing JSON and counting tokens scales with processors while
workers spend their CPU on sending requests.

A batch from a worker on another host carries that worker's clock offset; its records'
stamps are moved onto the reference clock (the timing manager's) before deriving, so that
stamps of different workers compare (benchmark duration, time slices).
"""

from __future__ import annotations

from typing import Any

import zmq

from aiperf.common.codec import MetricBatch, decode_raw_frames, encode, run_number
from aiperf.common.comms import sync_twin
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message
from aiperf.common.messages import ConfigureProfileCommand, MessageType
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import dataset_of
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.endpoints.base import make_endpoint
from aiperf.metrics.derive import RecordDeriver
from aiperf.services.clock import shift_stamps


class RecordProcessor(BaseComponentService):
    service_type = "record_processor"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        self._raw = self.comms.socket(zmq.PULL, "raw_records", bind=True, index=self.index)
        # Send-only: the blocking twin skips an asyncio future per batch.
        self._out = sync_twin(self.comms.socket(zmq.PUSH, "records", bind=False))
        self._run = 0
        self._deriver: RecordDeriver | None = None
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
        return {}

    async def _process_loop(self) -> None:
        while True:
            batch = decode_raw_frames(await self._raw.recv_multipart())
            if batch.run != self._run or self._deriver is None:
                continue
            if batch.clock_offset_ns:
                shift_stamps(batch.records, batch.clock_offset_ns)
            derive = self._deriver.derive
            out = MetricBatch(batch.run, [derive(raw) for raw in batch.records])
            self._out.send(encode(out))
