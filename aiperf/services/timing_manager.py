"""Timing manager: runs the configured timing strategy and issues credits to workers.

Credits go out on a PUSH socket that workers share (zmq round-robins them); returned credit
ids come back in batches on a PULL socket and free the strategy's in-flight slots. When a
run's last credit is issued it publishes ``CreditsComplete`` with the count, which the
records manager uses to know when every record is in. In duration mode it then waits the
grace period for stragglers and asks workers to cancel what is still in flight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zmq

from aiperf.common.codec import CreditBatch, encode, return_decoder, run_number
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message
from aiperf.common.messages import (
    CancelRequestsMessage,
    ConfigureProfileCommand,
    CreditsCompleteMessage,
    MessageType,
    StartProfileCommand,
)
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import read_dataset
from aiperf.plugin import PluginType, plugins
from aiperf.timing.base import TimingStrategy


class TimingManager(BaseComponentService):
    service_type = "timing_manager"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        self._credits = self.comms.socket(zmq.PUSH, "credits", bind=True)
        self._returns = self.comms.socket(zmq.PULL, "credit_returns", bind=True)
        self._strategy: TimingStrategy | None = None
        self._run = 0
        self._run_id = ""
        self._config: UserConfig | None = None
        self.spawn(self._receive_returns(), name="credit-returns")

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        config = UserConfig.model_validate(command.user_config)
        turns = read_dataset(command.dataset_path) if command.dataset_path else []
        strategy_class = plugins.get_class(
            PluginType.TIMING_STRATEGY, config.resolved_timing_strategy()
        )
        self._run = run_number(command.run_id)
        self._run_id = command.run_id
        self._config = config
        self._strategy = strategy_class(
            config, turns, np.random.default_rng(config.random_seed), self._send_credit
        )
        return {}

    @on_message(MessageType.START_PROFILE)
    async def _start(self, command: StartProfileCommand) -> None:
        assert self._strategy is not None
        self.spawn(self._drive(self._strategy, command.run_id), name="timing-strategy")

    async def _send_credit(self, credit: Any) -> None:
        await self._credits.send(encode(CreditBatch(self._run, [credit])), copy=False)

    async def _drive(self, strategy: TimingStrategy, run_id: str) -> None:
        await strategy.run()
        await self.publish(CreditsCompleteMessage(
            run_id=run_id, credits_issued=strategy.issued, warmup_credits=strategy.warmup_issued,
        ))
        config = self._config
        if (
            config is not None
            and config.benchmark_duration is not None
            and not await strategy.wait_all_returned(config.benchmark_grace_period)
        ):
            await self.publish(CancelRequestsMessage(run_id=run_id))

    async def _receive_returns(self) -> None:
        while True:
            batch = return_decoder.decode(await self._returns.recv())
            if batch.run == self._run and self._strategy is not None:
                self._strategy.returned(batch.credit_ids)
