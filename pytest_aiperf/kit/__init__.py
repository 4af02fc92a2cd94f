"""The plugin author's kit: prove an endpoint plugin correct and measurable before shipping.

    from pytest_aiperf.kit import EndpointContract

    class TestMyEndpoint(EndpointContract):
        endpoint = "my_endpoint"            # its name in a plugins manifest
        responder = MyProtocolResponder()   # only for a protocol that is not OpenAI's

``mock_plugin`` registers a class for a ``with`` block; ``register_plugin`` for the rest of
the session (call it at the top of a ``conftest.py``). The mock server's protocol is
pluggable through ``Responder``: match a path, plan the answer, frame it.
"""

from aiperf.mock_server.responders import RequestPlan, Responder, sse, token_texts
from pytest_aiperf.kit.contract import ContractBreach, EndpointContract
from pytest_aiperf.kit.registration import mock_plugin, register_plugin

__all__ = [
    "ContractBreach",
    "EndpointContract",
    "RequestPlan",
    "Responder",
    "mock_plugin",
    "register_plugin",
    "sse",
    "token_texts",
]
