"""Transports: how a worker talks to the server. Chosen by the URL's scheme from the
``transport`` plugins (each declares the ``schemes`` it serves)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiperf.errors import ConfigError
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import TransportMetadata

DEFAULT_TRANSPORT = "http"


def make_transport(url: str, timeout_seconds: float, max_connections: int,
                   first_byte_timeout_seconds: float | None = None,
                   name: str | None = None) -> Any:
    """A transport plugin instance for ``url``'s scheme: the one called ``name``, else the
    built-in ``http`` (the lean client) when it serves the scheme, else the first (by name)
    that does. ``aiohttp`` serves http and https too. ``first_byte_timeout_seconds`` is
    passed on only when set, so a transport plugin without that option still serves runs
    that do not ask for it."""
    scheme = urlsplit(url).scheme.lower()
    entries = plugins.entries(PluginType.TRANSPORT)
    names = [entry.name for entry in entries]
    if name is not None and name not in names:
        raise ConfigError(f"transport: no transport plugin named {name!r}; "
                          f"known: {', '.join(names)}")
    wanted = [entry for entry in entries if name is None or entry.name == name]
    # Entries come sorted by name, so "aiohttp" would come first: the default is named.
    wanted.sort(key=lambda entry: entry.name != DEFAULT_TRANSPORT)
    served: list[str] = []
    for entry in wanted:
        assert isinstance(entry.metadata, TransportMetadata)
        if scheme in entry.metadata.schemes:
            cls = plugins.get_class(PluginType.TRANSPORT, entry.name)
            if first_byte_timeout_seconds is None:
                return cls(timeout_seconds, max_connections)
            return cls(timeout_seconds, max_connections,
                       first_byte_timeout_seconds=first_byte_timeout_seconds)
        served.extend(entry.metadata.schemes)
    raise ConfigError(f"url: no transport serves scheme {scheme!r} ({url}); "
                      f"allowed schemes: {', '.join(sorted(set(served)))}")
