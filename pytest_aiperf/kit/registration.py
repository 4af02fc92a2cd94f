"""Registering plugins from tests and conftest files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiperf.plugin import PluginEntry, PluginType, plugins


@contextmanager
def mock_plugin(category: PluginType | str, name: str, cls: type,
                metadata: dict[str, Any] | None = None) -> Iterator[PluginEntry]:
    """Register ``cls`` as plugin ``name`` for the ``with`` block, then restore what was
    there. A mesh started inside the block knows the plugin too (the class must be
    importable by its module path)."""
    with plugins.registered(category, name, cls, metadata=metadata) as entry:
        yield entry


def register_plugin(category: PluginType | str, name: str, cls: type,
                    metadata: dict[str, Any] | None = None, description: str = "") -> None:
    """Register ``cls`` for the rest of the process: call it from a ``conftest.py`` before
    the first load test starts the session's mesh."""
    plugins.register(category, name, cls, description=description, metadata=metadata)
