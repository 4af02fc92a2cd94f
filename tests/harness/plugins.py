"""``mock_plugin``: register a class under a plugin name for the length of a ``with``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiperf.plugin import PluginEntry, PluginType, plugins


@contextmanager
def mock_plugin(
    category: PluginType | str, name: str, cls: type, metadata: dict[str, Any] | None = None
) -> Iterator[PluginEntry]:
    with plugins.registered(category, name, cls, metadata=metadata) as entry:
        yield entry
