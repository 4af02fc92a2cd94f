"""The plugin registry: ``plugins.get_class(PluginType.ENDPOINT, "chat")``."""

from aiperf.plugin.enums import PluginType
from aiperf.plugin.registry import PluginEntry, Registry, normalize_name

plugins = Registry()

__all__ = ["PluginEntry", "PluginType", "Registry", "normalize_name", "plugins"]
