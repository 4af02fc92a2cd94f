"""Registers the rankings plugin for this test session, unless the example package is
installed (then its ``aiperf.plugins`` entry point already did)."""

from rankings_plugin import RankingsEndpoint

from aiperf.plugin import PluginType, plugins
from pytest_aiperf.kit import register_plugin

if "rankings" not in plugins.names(PluginType.ENDPOINT):
    register_plugin(PluginType.ENDPOINT, "rankings", RankingsEndpoint, metadata={
        "endpoint_path": "/rerank", "supports_streaming": False, "produces_tokens": False,
        "metrics_title": "Rankings Metrics",
    })
