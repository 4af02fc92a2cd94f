"""A rankings endpoint plugin (Hugging Face TEI ``/rerank``), built with pytest-aiperf's kit."""

from pathlib import Path

from rankings_plugin.endpoint import RankingsEndpoint
from rankings_plugin.responder import RankingsResponder

__all__ = ["RankingsEndpoint", "RankingsResponder", "manifest_path"]


def manifest_path() -> Path:
    """The ``aiperf.plugins`` entry point: where this package's manifest is."""
    return Path(__file__).with_name("plugins.yaml")
