"""pytest-aiperf: LLM-serving performance as pytest tests.

The supported API is what this module exports; everything else is a module path.
"""

from aiperf.errors import AIPerfError, ConfigError, EndpointError, MeshError
from aiperf.results import MetricResult, ProfileResult
from pytest_aiperf.fixtures import AIPerfHelper, MockServerFactory, SLOBreach
from pytest_aiperf.session import LoadTestRecord
from pytest_aiperf.slo import Objective, SLOError, Verdict

__all__ = [
    "AIPerfError",
    "AIPerfHelper",
    "ConfigError",
    "EndpointError",
    "LoadTestRecord",
    "MeshError",
    "MetricResult",
    "MockServerFactory",
    "Objective",
    "ProfileResult",
    "SLOBreach",
    "SLOError",
    "Verdict",
]
