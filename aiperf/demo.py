"""``python -m aiperf.demo``: start the mock server, run one profile through the mesh, print
the metrics table. (``make demo`` runs it.)"""

from __future__ import annotations

import sys

from aiperf.exporters.console import ConsoleExporter
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess


def main() -> int:
    with MockServerProcess(ttft_ms=20, itl_ms=5) as server, Mesh(workers=2) as mesh:
        result = mesh.run(url=server.url, streaming=True, concurrency=8, request_count=100,
                          osl=16, warmup_request_count=8)
        ConsoleExporter(result, None).export()
    return 0


if __name__ == "__main__":
    sys.exit(main())
