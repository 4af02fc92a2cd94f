"""What runs inside each Ray actor: one mesh service, exactly as a forked one runs."""

from __future__ import annotations

import importlib
import os
import socket
from typing import Any

from aiperf.common.config import ServiceConfig
from aiperf.common.logging import configure_logging
from aiperf.common.process import run_event_loop


class RemoteService:
    """A Ray actor class (the launcher wraps it with ``ray.remote``): ``serve`` runs the
    service until the controller shuts it down, and returns its exit code."""

    def where(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"node_ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
                "pid": os.getpid(), "actor_id": context.get_actor_id(),
                "node_id": context.get_node_id()}

    def serve(self, service_config_json: str, class_path: str, service_id: str,
              index: int) -> int:
        service_config = ServiceConfig.model_validate_json(service_config_json)
        configure_logging(service_config.log_level, service_id)
        module, _, name = class_path.partition(":")
        service_class = getattr(importlib.import_module(module), name)
        service = service_class(service_config, service_id, index)
        return int(run_event_loop(service.run()))
