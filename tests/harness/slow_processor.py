"""A record processor slowed down on purpose, for the backpressure tests and
benchmarks/backpressure.py: it sleeps ``AIPERF_SLOW_RECORD_MS`` (the environment the mesh
inherits; default 1) per record before deriving it, blocking its event loop as real
CPU-bound parsing would."""

from __future__ import annotations

import os
import time
from typing import Any

from aiperf.common.messages import ConfigureProfileCommand
from aiperf.services.record_processor import RecordProcessor

DELAY_ENV = "AIPERF_SLOW_RECORD_MS"


class SlowRecordProcessor(RecordProcessor):
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        payload = await super()._configure(command)
        deriver = self._deriver
        assert deriver is not None
        derive = deriver.derive
        pause = float(os.environ.get(DELAY_ENV, "1")) / 1000

        def slow(raw: Any) -> Any:
            time.sleep(pause)
            return derive(raw)

        deriver.derive = slow  # type: ignore[method-assign]
        return payload
