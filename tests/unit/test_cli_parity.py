"""The URL and custom-endpoint rules of issue 13's command line, for any input: a value is
taken (normalised as AIPerf does) or refused by name, never a crash."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.errors import ConfigError
from aiperf.readiness import request_url


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_a_url_without_a_scheme_gets_http(url: str) -> None:
    try:
        config = UserConfig.build(url=url)
    except ConfigError as exc:  # pragma: no cover - the field takes any string
        raise AssertionError(f"url {url!r} refused: {exc}") from None
    stripped = url.strip()
    if not stripped or "://" in stripped:
        assert config.url == stripped
    else:
        assert config.url == "http://" + stripped


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_a_custom_endpoint_is_a_path_or_refused_by_name(path: str) -> None:
    try:
        config = UserConfig.build(name_of=lambda k: "--" + k.replace("_", "-"),
                                  url="http://h:1", custom_endpoint=path)
    except ConfigError as exc:
        assert str(exc).startswith("--custom-endpoint: ")
        return
    assert config.custom_endpoint is not None
    assert config.custom_endpoint.startswith("/")
    assert config.custom_endpoint.strip("/")
    assert request_url(config) == "http://h:1" + config.custom_endpoint


def test_the_request_url_is_the_plugins_without_a_custom_endpoint() -> None:
    assert request_url(UserConfig(url="h:1/")) == "http://h:1/v1/chat/completions"
    assert request_url(UserConfig(url="h:1", endpoint_type="embeddings",
                                  custom_endpoint="/embed")) == "http://h:1/embed"
