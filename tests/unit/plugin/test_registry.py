from __future__ import annotations

from pathlib import Path

import pytest

from aiperf.endpoints.chat import ChatEndpoint
from aiperf.errors import PluginError
from aiperf.plugin import PluginType, Registry, plugins
from aiperf.plugin.metadata import EndpointMetadata, ServiceMetadata
from tests.harness import mock_plugin


class FakeEndpoint:
    """A stand-in endpoint."""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plugins.yaml"
    path.write_text(text)
    return path


def test_get_class_imports_the_builtin_chat_endpoint() -> None:
    assert plugins.get_class(PluginType.ENDPOINT, "chat") is ChatEndpoint


def test_names_normalise_dashes_and_case() -> None:
    assert plugins.get_class("endpoint", "Chat") is ChatEndpoint
    assert plugins.get_class(PluginType.TIMING_STRATEGY, "request-rate").__name__ == (
        "RequestRateStrategy"
    )


def test_metadata_is_validated_per_category() -> None:
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    assert isinstance(meta, EndpointMetadata)
    assert meta.endpoint_path == "/v1/chat/completions" and meta.supports_streaming
    worker = plugins.get_metadata(PluginType.SERVICE, "worker")
    assert isinstance(worker, ServiceMetadata) and worker.replicable


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(PluginError,
                       match=r"unknown endpoint plugin 'chatt'.*chat, .*completions, embeddings"):
        plugins.get_class(PluginType.ENDPOINT, "chatt")


def test_unknown_category_lists_the_categories() -> None:
    with pytest.raises(PluginError, match=r"unknown plugin category 'endpoints'.*endpoint"):
        plugins.get_class("endpoints", "chat")


def test_classes_load_lazily_on_first_use(tmp_path: Path) -> None:
    registry = Registry()
    registry.load_manifest(write(tmp_path, """
endpoint:
  lazy:
    class: tests.unit.plugin.lazy_module:LazyEndpoint
    description: imported only when asked for
    metadata: {endpoint_path: /x}
"""))
    import sys

    assert "tests.unit.plugin.lazy_module" not in sys.modules
    assert registry.get_class("endpoint", "lazy").__name__ == "LazyEndpoint"
    assert "tests.unit.plugin.lazy_module" in sys.modules


@pytest.mark.parametrize(("body", "message"), [
    ("endpoint:\n  x:\n    class: no_colon\n    description: d\n    metadata: {endpoint_path: /}",
     r"endpoint\.x: field 'class': 'no_colon' is not of the form 'module:Class'"),
    ("endpoint:\n  x:\n    class: not_a_module_anywhere:C\n    description: d\n"
     "    metadata: {endpoint_path: /}",
     r"endpoint\.x: field 'class': module 'not_a_module_anywhere' is not importable"),
    ("endpoint:\n  x:\n    class: aiperf.endpoints.chat:ChatEndpoint\n"
     "    metadata: {endpoint_path: /}",
     r"endpoint\.x: missing field 'description'"),
    ("endpoint:\n  x:\n    class: aiperf.endpoints.chat:ChatEndpoint\n    description: d\n"
     "    metadata: {endpoint_path: /, suports_streaming: true}",
     r"endpoint\.x: metadata\.suports_streaming: Extra inputs are not permitted"),
    ("endpoint:\n  x:\n    class: aiperf.endpoints.chat:ChatEndpoint\n    description: d\n"
     "    metadata: {}",
     r"endpoint\.x: metadata\.endpoint_path: Field required"),
    ("endpoint:\n  x:\n    class: aiperf.endpoints.chat:ChatEndpoint\n    description: d\n"
     "    colour: red",
     r"endpoint\.x: unknown field\(s\) \['colour'\]"),
    ("endpoints:\n  x: {}", r"unknown plugin category 'endpoints'"),
])  # fmt: skip
def test_a_bad_manifest_fails_at_load_naming_file_entry_and_field(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(PluginError, match=message) as info:
        Registry().load_manifest(path)
    assert str(path) in str(info.value)


def test_a_bad_metadata_error_lists_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "service:\n  s:\n    class: aiperf.services.worker:Worker\n"
                           "    description: d\n    metadata: {replicas: 2}")
    with pytest.raises(PluginError, match=r"allowed metadata keys: required, auto_start"):
        Registry().load_manifest(path)


def test_register_and_undo_restore_the_builtin() -> None:
    previous = plugins.register(PluginType.ENDPOINT, "chat", FakeEndpoint)
    assert plugins.get_class(PluginType.ENDPOINT, "chat") is FakeEndpoint
    plugins.unregister(PluginType.ENDPOINT, "chat", restore=previous)
    assert plugins.get_class(PluginType.ENDPOINT, "chat") is ChatEndpoint


def test_mock_plugin_registers_for_the_with_block_only() -> None:
    with mock_plugin(PluginType.ENDPOINT, "my-endpoint", FakeEndpoint,
                     metadata={"endpoint_path": "/mine"}) as entry:
        assert plugins.get_class(PluginType.ENDPOINT, "My_Endpoint") is FakeEndpoint
        assert entry.description == "A stand-in endpoint."
    with pytest.raises(PluginError):
        plugins.get_class(PluginType.ENDPOINT, "my_endpoint")


def builtin_then_replacement_of_chat(tmp_path: Path, priority: int) -> Registry:
    """The built-in manifest, then a third-party one defining ``chat`` again."""
    registry = Registry()
    registry.load_manifest(Path(__file__).parents[3] / "plugins.yaml")
    registry.load_manifest(write(tmp_path, f"""
endpoint:
  chat:
    class: tests.unit.plugin.test_registry:FakeEndpoint
    description: replacement
    priority: {priority}
    metadata: {{endpoint_path: /v1/chat/completions}}
"""), origin="third-party")
    return registry


def test_third_party_manifest_replaces_builtin_at_equal_priority(tmp_path: Path) -> None:
    registry = builtin_then_replacement_of_chat(tmp_path, priority=0)
    assert registry.get_class("endpoint", "chat") is FakeEndpoint


def test_between_two_third_party_manifests_the_first_wins_with_a_warning(
    tmp_path: Path,
) -> None:
    registry = Registry()
    body = ("endpoint:\n  dup:\n    class: {cls}\n    description: d\n"
            "    metadata: {{endpoint_path: /}}\n")
    first = tmp_path / "a.yaml"
    first.write_text(body.format(cls="tests.unit.plugin.test_registry:FakeEndpoint"))
    second = tmp_path / "b.yaml"
    second.write_text(body.format(cls="aiperf.endpoints.chat:ChatEndpoint"))
    registry.load_manifest(first, origin="a")
    with pytest.warns(UserWarning, match="keeping .*a.yaml"):
        registry.load_manifest(second, origin="b")
    assert registry.get_class("endpoint", "dup") is FakeEndpoint


def test_a_higher_priority_wins(tmp_path: Path) -> None:
    registry = builtin_then_replacement_of_chat(tmp_path, priority=-1)
    assert registry.get_class("endpoint", "chat") is ChatEndpoint


def test_runtime_manifest_round_trips_registrations() -> None:
    with mock_plugin(PluginType.ENDPOINT, "fake", FakeEndpoint, {"endpoint_path": "/f"}):
        manifest = plugins.runtime_manifest()
    registry = Registry()
    registry.load_mapping(manifest, source="host", origin="runtime")
    assert registry.get_class("endpoint", "fake") is FakeEndpoint
    assert registry.get_metadata("endpoint", "fake").endpoint_path == "/f"  # type: ignore[attr-defined]
