"""Run one service in the current (freshly forked) process."""

from __future__ import annotations

import gc
import os

from aiperf.common.config import ServiceConfig
from aiperf.common.logging import configure_logging
from aiperf.common.process import die_with_parent, run_event_loop


def bootstrap_service(
    service_class: type, service_config: ServiceConfig, service_id: str, index: int,
    parent_pid: int, nice: int = 0,
) -> None:
    die_with_parent(parent_pid, forked=True)
    # What the fork inherited stays shared: the collector never walks (and so never
    # writes to, and copies) the controller's objects in this process.
    gc.freeze()
    configure_logging(service_config.log_level, service_id)
    service = service_class(service_config, service_id, index)
    service.nice = nice
    code = run_event_loop(service.run())
    # os._exit: the fork inherited the controller's atexit handlers; none of them are ours.
    os._exit(code)
