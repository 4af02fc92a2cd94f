"""pytest-aiperf: LLM-serving performance as pytest tests.

The supported API is what this module exports; everything else is a module path. Exports
load on first use, so that pytest sessions that never run a load test do not pay for
importing the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiperf._lazy import lazy_getattr

if TYPE_CHECKING:
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

_LAZY = {
    "AIPerfError": "aiperf.errors",
    "ConfigError": "aiperf.errors",
    "EndpointError": "aiperf.errors",
    "MeshError": "aiperf.errors",
    "MetricResult": "aiperf.results",
    "ProfileResult": "aiperf.results",
    "AIPerfHelper": "pytest_aiperf.fixtures",
    "MockServerFactory": "pytest_aiperf.fixtures",
    "SLOBreach": "pytest_aiperf.fixtures",
    "LoadTestRecord": "pytest_aiperf.session",
    "Objective": "pytest_aiperf.slo",
    "SLOError": "pytest_aiperf.slo",
    "Verdict": "pytest_aiperf.slo",
}


__getattr__ = lazy_getattr(__name__, _LAZY)
