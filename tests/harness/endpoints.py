"""An endpoint plugin as the worker builds one, for the endpoint unit tests."""

from __future__ import annotations

from typing import Any

from aiperf.common.config import UserConfig
from aiperf.endpoints.base import BaseEndpoint
from aiperf.plugin import PluginType, plugins


def make_endpoint(name: str, **config: Any) -> Any:
    """The ``name`` endpoint plugin over ``UserConfig(endpoint_type=name, **config)`` and
    its registered metadata. ``Any``: each test calls its own plugin's methods."""
    cls: type[BaseEndpoint] = plugins.get_class(PluginType.ENDPOINT, name)
    return cls(UserConfig(endpoint_type=name, **config),
               plugins.get_metadata(PluginType.ENDPOINT, name))
