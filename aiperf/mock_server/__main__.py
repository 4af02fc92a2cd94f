"""``python -m aiperf.mock_server '<MockServerConfig JSON>' [<responders>]``: what
MockServerProcess runs. The optional second argument is ``encode_responders``' output."""

from __future__ import annotations

import os
import sys

from aiperf.common.process import die_with_parent, run_event_loop
from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.server import decode_responders, serve_forever

if __name__ == "__main__":
    parent = os.environ.get("AIPERF_PARENT_PID")
    die_with_parent(int(parent) if parent else None)
    try:
        config = MockServerConfig.model_validate_json(sys.argv[1])
        responders = decode_responders(sys.argv[2] if len(sys.argv) > 2 else "")
        run_event_loop(serve_forever(config, responders))
    except Exception as exc:  # the parent shows this line in its error (a port in use...)
        print(f"cannot start: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(2)
