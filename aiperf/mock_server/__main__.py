"""``python -m aiperf.mock_server '<MockServerConfig JSON>'``: used by MockServerProcess."""

from __future__ import annotations

import os
import sys

from aiperf.common.process import die_with_parent, run_event_loop
from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.server import serve_forever

if __name__ == "__main__":
    parent = os.environ.get("AIPERF_PARENT_PID")
    die_with_parent(int(parent) if parent else None)
    run_event_loop(serve_forever(MockServerConfig.model_validate_json(sys.argv[1])))
