from __future__ import annotations

import pytest

from aiperf.errors import ConfigError
from aiperf.transports import make_transport
from aiperf.transports.http import HttpTransport
from aiperf.transports.lean import LeanHttpTransport


def test_the_transport_plugin_is_chosen_by_url_scheme() -> None:
    transport = make_transport("https://example.invalid/v1", 5, 8)
    assert isinstance(transport, HttpTransport) and transport.timeout_seconds == 5


def test_an_unserved_scheme_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"no transport serves scheme 'grpc'.*allowed "
                                          r"schemes: http, https"):
        make_transport("grpc://127.0.0.1:1", 5, 8)


def test_the_first_byte_timeout_reaches_the_transport() -> None:
    transport = make_transport("http://127.0.0.1:1", 5, 8, first_byte_timeout_seconds=0.5)
    assert transport.first_byte_timeout_seconds == 0.5
    assert make_transport("http://127.0.0.1:1", 5, 8).first_byte_timeout_seconds is None


def test_the_lean_client_is_the_default_and_aiohttp_can_be_named() -> None:
    assert type(make_transport("http://127.0.0.1:1", 5, 8)) is LeanHttpTransport
    assert type(make_transport("https://example.invalid/", 5, 8)) is LeanHttpTransport
    assert type(make_transport("http://127.0.0.1:1", 5, 8, name="aiohttp")) is HttpTransport
    with pytest.raises(ConfigError, match="no transport serves scheme 'grpc'"):
        make_transport("grpc://127.0.0.1:1", 5, 8, name="aiohttp")
    with pytest.raises(ConfigError, match=r"transport: no transport plugin named 'nope'; "
                                          r"known: .*http"):
        make_transport("http://127.0.0.1:1", 5, 8, name="nope")


def test_the_config_names_the_transport_key_and_the_known_ones() -> None:
    from pydantic import ValidationError

    from aiperf.common.config import UserConfig

    assert UserConfig(model="m", transport="aiohttp").transport == "aiohttp"
    with pytest.raises(ValidationError, match=r"transport[\s\S]*unknown transport 'nope'; "
                                              r"allowed: .*aiohttp.*http"):
        UserConfig(model="m", transport="nope")
