"""Timing manager: runs the configured timing strategy and hands credits to workers.

One ROUTER socket carries the whole credit channel: workers say hello when they start
(their DEALER identity is their service id), receive leases or scheduled credits, and
report back lease use and finished scheduled credits. Its ``perf_counter_ns`` is the
mesh's reference clock: workers on other hosts ask for it (``ClockPing``) to estimate their
offset (``services/clock.py``). When the set of issued credits is final it publishes
``CreditsComplete`` with the exact id ranges, against which the records manager checks
that every credit has one record. In duration mode it then waits the grace
period for stragglers and asks workers to cancel what is still in flight.

``CancelRunCommand`` (from the controller) stops the strategy at once. Dropping the run
forgets its schedule, so late reports of its workers are ignored; keeping its results
waits (``command_timeout`` at most) for the workers' last lease reports and then publishes
the credits that were really issued.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import zmq

from aiperf.common.codec import (
    ClockPing,
    ClockPong,
    Credit,
    CreditBatch,
    Lease,
    LeaseReport,
    ReturnBatch,
    WorkerHello,
    encode,
    from_worker_decoder,
    run_number,
)
from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init, on_message
from aiperf.common.messages import (
    CancelRequestsMessage,
    CancelRunCommand,
    ConfigureProfileCommand,
    CreditsCompleteMessage,
    MessageType,
    StartProfileCommand,
)
from aiperf.common.service import BaseComponentService
from aiperf.dataset.models import dataset_of
from aiperf.errors import MeshTimeoutError
from aiperf.plugin import PluginType, plugins
from aiperf.timing.base import TimingStrategy


class TimingManager(BaseComponentService):
    service_type = "timing_manager"

    @on_init
    async def _open_sockets(self) -> None:
        assert self.comms is not None
        self._router = self.comms.socket(zmq.ROUTER, "credits", bind=True)
        # Workers on other hosts must be the planned ones; a local mesh's are its children.
        cfg = self.service_config
        self._planned_workers = ({f"worker_{i}" for i in range(cfg.workers)}
                                 if cfg.remote_workers() else None)
        self.workers: list[str] = []
        self._all_workers = asyncio.Event()
        self._strategy: TimingStrategy | None = None
        self._run = 0
        self._config: UserConfig | None = None
        self._run_id = ""
        self._driver: asyncio.Task[None] | None = None
        self._credits_published = False
        self.spawn(self._receive(), name="credit-channel")

    # -- Dispatcher ---------------------------------------------------------------------

    async def send_lease(self, worker: str, lease: Lease) -> None:
        await self._router.send_multipart([worker.encode(), encode(lease)])

    async def send_credits(self, worker: str, credits: list[Credit]) -> None:
        await self._router.send_multipart(
            [worker.encode(), encode(CreditBatch(self._run, credits))])

    # -- commands -------------------------------------------------------------------------

    @on_message(MessageType.CONFIGURE_PROFILE)
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        await self._await_workers()
        self._stop_driver()
        config = UserConfig.from_wire(command.user_config)
        turns = dataset_of(command.dataset_path, command.dataset_inline)
        strategy_class = plugins.get_class(
            PluginType.TIMING_STRATEGY, config.resolved_timing_strategy()
        )
        self._run = run_number(command.run_id)
        self._run_id = command.run_id
        self._credits_published = False
        self._config = config
        self._strategy = strategy_class(
            config, turns, np.random.default_rng(config.random_seed), self, self._run
        )
        return {}

    async def _await_workers(self) -> None:
        """Hellos are sent before workers register, so they are normally all in."""
        timeout = self.service_config.command_timeout / 2
        try:
            async with asyncio.timeout(timeout):
                await self._all_workers.wait()
        except TimeoutError:
            raise MeshTimeoutError(
                f"timing manager: {len(self.workers)} of {self.service_config.workers} "
                "workers joined the credit channel"
            ) from None

    @on_message(MessageType.START_PROFILE)
    async def _start(self, command: StartProfileCommand) -> dict[str, Any]:
        assert self._strategy is not None
        self._driver = self.spawn(self._drive(self._strategy, command.run_id),
                                  name="timing-strategy")
        return {"idle_gap_s": self._strategy.idle_gap_s()}

    @on_message(MessageType.CANCEL_RUN)
    async def _cancel_run(self, command: CancelRunCommand) -> None:
        strategy = self._strategy
        if command.run_id != self._run_id or strategy is None:
            return
        self._stop_driver()
        if command.keep_results and not self._credits_published:
            self.spawn(self._publish_after_cancel(strategy, command.run_id),
                       name="credits-after-cancel")
        elif not command.keep_results:
            self._strategy = None  # reports of this run's workers are ignored from now on

    def _stop_driver(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            self._driver = None

    async def _publish_after_cancel(self, strategy: TimingStrategy, run_id: str) -> None:
        # Workers report how much of each lease they started when they cancel; until then
        # the issued set is not final.
        if not await strategy.wait_for(strategy.all_consumed,
                                       self.service_config.command_timeout):
            missing = sorted((s.worker, s.lease.first_id, s.lease.count)
                             for s in strategy.leases.values() if not s.consumed)
            self.warning(f"run {run_id}: some workers did not report their leases "
                         f"(worker, first id, count): {missing[:8]}")
        await self._publish_credits(strategy, run_id)

    async def _publish_credits(self, strategy: TimingStrategy, run_id: str) -> None:
        self._credits_published = True
        await self.publish(CreditsCompleteMessage(
            run_id=run_id, issued_ranges=strategy.issued_ranges,
            warmup_credits=strategy.warmup_issued,
        ))

    async def _drive(self, strategy: TimingStrategy, run_id: str) -> None:
        await strategy.run()
        await self._publish_credits(strategy, run_id)
        config = self._config
        if (
            config is not None
            and config.benchmark_duration is not None
            and not await strategy.wait_for(strategy.all_done, config.benchmark_grace_period)
        ):
            await self.publish(CancelRequestsMessage(run_id=run_id))

    # -- the credit channel ---------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            identity, data = await self._router.recv_multipart()
            message = from_worker_decoder.decode(data)
            strategy = self._strategy
            if isinstance(message, ClockPing):
                # Answered on the spot: any time spent here widens the worker's round
                # trip, and with it the estimate's uncertainty.
                await self._router.send_multipart(
                    [identity, encode(ClockPong(message.t0, time.perf_counter_ns()))])
            elif isinstance(message, WorkerHello):
                worker = identity.decode()
                if self._planned_workers is not None and worker not in self._planned_workers:
                    # Only remote backends let a stranger this far (and only with the
                    # mesh's keys): a stray id dealt leases would stall the run.
                    self.warning(f"ignored a hello from unplanned worker {worker!r}")
                elif worker not in self.workers:
                    self.workers.append(worker)
                    if len(self.workers) >= self.service_config.workers:
                        self._all_workers.set()
            elif strategy is None or message.run != self._run:
                continue
            elif isinstance(message, LeaseReport):
                strategy.lease_report(message.first_id, message.started, message.done,
                                      message.skipped)
            elif isinstance(message, ReturnBatch):
                strategy.returned(message.credit_ids)
