"""Transports: how a worker talks to the server. Chosen by the URL's scheme from the
``transport`` plugins (each declares the ``schemes`` it serves)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiperf.errors import ConfigError
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import TransportMetadata


def make_transport(url: str, timeout_seconds: float, max_connections: int) -> Any:
    """A transport plugin instance for ``url``'s scheme."""
    scheme = urlsplit(url).scheme.lower()
    served: list[str] = []
    for entry in plugins.entries(PluginType.TRANSPORT):
        assert isinstance(entry.metadata, TransportMetadata)
        if scheme in entry.metadata.schemes:
            cls = plugins.get_class(PluginType.TRANSPORT, entry.name)
            return cls(timeout_seconds, max_connections)
        served.extend(entry.metadata.schemes)
    raise ConfigError(f"url: no transport serves scheme {scheme!r} ({url}); "
                      f"allowed schemes: {', '.join(sorted(set(served)))}")
