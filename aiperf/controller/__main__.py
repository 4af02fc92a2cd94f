"""Entry point of the controller process: ``python -m aiperf.controller`` (started by the
host handle, ``aiperf.mesh.Mesh``). The ServiceConfig arrives as JSON in an env var."""

from __future__ import annotations

import os
import sys

from aiperf.common.config import ServiceConfig
from aiperf.common.logging import configure_logging
from aiperf.common.process import kill_self_when_exits, open_parent_pidfd, run_event_loop

CONFIG_ENV = "AIPERF_SERVICE_CONFIG"
PARENT_ENV = "AIPERF_PARENT_PID"


def main() -> int:
    # Not the parent-death signal: it fires when the host *thread* that started this
    # process exits (an executor thread under ``asyncio.to_thread``), not the host.
    parent_pidfd = open_parent_pidfd(int(os.environ.get(PARENT_ENV, "0")) or None)
    service_config = ServiceConfig.model_validate_json(os.environ[CONFIG_ENV])
    configure_logging(service_config.log_level)
    from aiperf.controller.service_manager import ServiceManager
    from aiperf.controller.system_controller import SystemController
    from aiperf.plugin import plugins
    from aiperf.plugin.registry import RUNTIME

    if service_config.runtime_plugins:
        plugins.ensure_loaded()
        plugins.load_mapping(service_config.runtime_plugins, source="host", origin=RUNTIME)

    manager = ServiceManager(service_config)  # imports every service class before forking
    manager.start_all()
    # Watched from a thread started only now: the services are forked from a process with
    # one thread. Their own parent-death signal ties them to this process's main thread.
    kill_self_when_exits(parent_pidfd)
    controller = SystemController(service_config, manager)
    run_event_loop(controller.run())
    # Everything is stopped and removed by now; skip the interpreter's teardown of every
    # imported module (over 100 ms of the mesh's shutdown on this machine).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
