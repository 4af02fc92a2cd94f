"""Transports: how a worker talks to the server. Chosen by the URL's scheme from the
``transport`` plugins (each declares the ``schemes`` it serves)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiperf.errors import ConfigError
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import TransportMetadata


def make_transport(url: str, timeout_seconds: float, max_connections: int,
                   first_byte_timeout_seconds: float | None = None,
                   name: str | None = None) -> Any:
    """A transport plugin instance for ``url``'s scheme: the first that serves it, or the
    one called ``name`` (two serve http and https: ``http``, the lean client, and
    ``aiohttp``). ``first_byte_timeout_seconds`` is passed on only when set, so a transport
    plugin without that option still serves runs that do not ask for it."""
    scheme = urlsplit(url).scheme.lower()
    served: list[str] = []
    names: list[str] = []
    for entry in plugins.entries(PluginType.TRANSPORT):
        assert isinstance(entry.metadata, TransportMetadata)
        names.append(entry.name)
        if name is not None and entry.name != name:
            continue
        if scheme in entry.metadata.schemes:
            cls = plugins.get_class(PluginType.TRANSPORT, entry.name)
            if first_byte_timeout_seconds is None:
                return cls(timeout_seconds, max_connections)
            return cls(timeout_seconds, max_connections,
                       first_byte_timeout_seconds=first_byte_timeout_seconds)
        served.extend(entry.metadata.schemes)
    if name is not None and name not in names:
        raise ConfigError(f"http_client: no transport plugin named {name!r}; "
                          f"known: {', '.join(names)}")
    raise ConfigError(f"url: no transport serves scheme {scheme!r} ({url}); "
                      f"allowed schemes: {', '.join(sorted(set(served)))}")
