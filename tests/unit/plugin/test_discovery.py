"""Third-party manifests arrive through the ``aiperf.plugins`` entry-point group: a real
(tiny) installed distribution is put on sys.path and found by importlib.metadata."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aiperf.plugin import Registry
from aiperf.plugin.discovery import builtin_manifest_path, third_party_manifests


@pytest.fixture
def installed_plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "acme_plugins"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "def manifest_path():\n"
        "    return Path(__file__).with_name('plugins.yaml')\n"
        "class RerankEndpoint:\n"
        "    pass\n"
    )
    (package / "plugins.yaml").write_text(
        "endpoint:\n  rerank:\n    class: acme_plugins:RerankEndpoint\n"
        "    description: Acme reranker\n    metadata: {endpoint_path: /rerank}\n"
    )
    dist = tmp_path / "acme_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[aiperf.plugins]\nacme = acme_plugins:manifest_path\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    sys.modules.pop("acme_plugins", None)


def test_the_builtin_manifest_is_found_in_a_source_checkout() -> None:
    assert builtin_manifest_path().name == "plugins.yaml"


def test_an_installed_package_contributes_its_manifest(installed_plugin_package: Path) -> None:
    assert installed_plugin_package / "plugins.yaml" in third_party_manifests()
    registry = Registry()
    assert registry.get_class("endpoint", "rerank").__name__ == "RerankEndpoint"
    assert registry.get_class("endpoint", "chat").__name__ == "ChatEndpoint"
