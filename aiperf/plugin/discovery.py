"""Where manifests come from: the built-in ``plugins.yaml`` and the ``aiperf.plugins`` group.

A third-party package contributes a manifest with an entry point whose object is either a
path (str or Path) to a YAML file, or a callable returning one::

    [project.entry-points."aiperf.plugins"]
    my_plugins = "my_package.plugins:manifest_path"
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from pathlib import Path

import aiperf

ENTRY_POINT_GROUP = "aiperf.plugins"


def builtin_manifest_path() -> Path:
    """In a wheel the manifest sits in the package; in a source checkout, at the root."""
    package_dir = Path(aiperf.__file__).resolve().parent
    for candidate in (package_dir / "plugins.yaml", package_dir.parent / "plugins.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"built-in plugins.yaml not found next to {package_dir}")


def third_party_manifests() -> list[Path]:
    paths: list[Path] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
            path = Path(obj() if callable(obj) else obj)
        except Exception as exc:  # a broken third-party package must not break every run
            warnings.warn(f"plugins entry point {ep.name!r} ({ep.value}) failed: {exc}",
                          stacklevel=2)
            continue
        paths.append(path)
    return paths
