"""Registers the example rankings plugin for this test session, unless the example package
is installed (then its ``aiperf.plugins`` entry point already did). It has a name of its
own: the built-in ``rankings`` endpoint speaks the same protocol, and this example shows how
an out-of-tree plugin is written and tested."""

from rankings_plugin import RankingsEndpoint

from aiperf.plugin import PluginType, plugins
from pytest_aiperf.kit import register_plugin

if "example_rankings" not in plugins.names(PluginType.ENDPOINT):
    register_plugin(PluginType.ENDPOINT, "example_rankings", RankingsEndpoint, metadata={
        "endpoint_path": "/rerank", "supports_streaming": False, "produces_tokens": False,
        "metrics_title": "Rankings Metrics",
    })
