"""An OpenAI-compatible mock server with latency models and fault injection."""

from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.server import MockServer, MockServerProcess, MockServerThread

__all__ = ["MockServer", "MockServerConfig", "MockServerProcess", "MockServerThread"]
