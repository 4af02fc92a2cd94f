"""pytest-aiperf's engine: an AIPerf-style service mesh that runs LLM load profiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiperf._lazy import lazy_getattr

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aiperf.common.config import ServiceConfig, UserConfig
    from aiperf.errors import AIPerfError, ConfigError, EndpointError, MeshError
    from aiperf.mesh import Mesh
    from aiperf.results import MetricResult, ProfileResult

__all__ = [
    "AIPerfError",
    "ConfigError",
    "EndpointError",
    "Mesh",
    "MeshError",
    "MetricResult",
    "ProfileResult",
    "ServiceConfig",
    "UserConfig",
]

_LAZY = {
    "ServiceConfig": "aiperf.common.config",
    "UserConfig": "aiperf.common.config",
    "AIPerfError": "aiperf.errors",
    "ConfigError": "aiperf.errors",
    "EndpointError": "aiperf.errors",
    "MeshError": "aiperf.errors",
    "Mesh": "aiperf.mesh",
    "MetricResult": "aiperf.results",
    "ProfileResult": "aiperf.results",
}


# Lazy, so that ``import aiperf`` stays cheap for the pytest plugin's start-up.
__getattr__ = lazy_getattr(__name__, _LAZY)
