"""Which credentials a scrape carries: the endpoint's, to the endpoint's own server only."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.server_metrics import ScrapeTarget, ServerMetricsCollector, scrape_targets

KEY = "sk-test-secret-3f9a"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_off_scrapes_nothing() -> None:
    assert scrape_targets(UserConfig(api_key=KEY)) == []


def test_the_default_scrape_carries_the_api_key() -> None:
    [target] = scrape_targets(UserConfig(url="http://127.0.0.1:8000/v1", api_key=KEY,
                                         server_metrics=True))
    assert target.url == "http://127.0.0.1:8000/metrics"
    assert target.headers == {"Authorization": f"Bearer {KEY}"}


def test_the_default_scrape_carries_the_endpoints_userinfo_as_basic_auth() -> None:
    [target] = scrape_targets(UserConfig(url="http://me:p%40ss@h:8000", server_metrics=True))
    assert target.url == "http://h:8000/metrics"  # the credentials are not in the URL
    assert target.headers == {"Authorization": _basic("me", "p@ss")}


def test_credential_headers_go_along_other_headers_do_not() -> None:
    config = UserConfig(url="http://h:8000", server_metrics=True,
                        headers={"api-key": KEY, "X-Route": "a"})
    assert scrape_targets(config)[0].headers == {"api-key": KEY}


def test_a_url_of_another_server_gets_no_credentials() -> None:
    config = UserConfig(url="http://h:8000", api_key=KEY, server_metrics=[
        "h:8000", "http://H:8000/x/metrics", "http://h:9000", "https://h:8000", "other:8000",
        "http://u:pw@h:8000"])
    headers = {t.url: dict(t.headers) for t in scrape_targets(config)}
    assert headers == {
        "http://h:8000/metrics": {"Authorization": f"Bearer {KEY}"},
        "http://H:8000/x/metrics": {"Authorization": f"Bearer {KEY}"},
        "http://h:9000/metrics": {},
        "https://h:8000/metrics": {},
        "http://other:8000/metrics": {},
        "http://u:pw@h:8000/metrics": {},  # its own userinfo is its Basic auth
    }


def test_default_ports_make_the_same_server() -> None:
    config = UserConfig(url="http://h", api_key=KEY, server_metrics=["http://h:80/metrics"])
    assert scrape_targets(config)[0].headers


@settings(deadline=None)  # a loaded CI box is no failure
@given(st.text(min_size=1, max_size=40).filter(lambda k: k.strip() == k and k.isprintable()))
def test_no_repr_shows_the_key(key: str) -> None:
    config = UserConfig(url="http://127.0.0.1:9", api_key=key, server_metrics=True)
    targets = scrape_targets(config)
    collector = ServerMetricsCollector(targets, interval=1.0)
    shown = repr(targets) + repr(collector) + "".join(t.name for t in collector._threads)
    assert f"Bearer {key}" not in shown
    assert all(isinstance(t, ScrapeTarget) for t in targets)


def test_a_target_without_headers_equals_its_url_with_them() -> None:
    # the headers are no part of a target's identity: one thread a URL
    assert ScrapeTarget("http://h/metrics", {"a": "b"}) == ScrapeTarget("http://h/metrics")
    collector = ServerMetricsCollector([ScrapeTarget("http://h/metrics", {"a": "b"}),
                                        "http://h/metrics"], interval=1.0)
    assert collector.urls == ["http://h/metrics"]
    assert collector._threads[0]._headers == {"a": "b"}


@pytest.mark.parametrize("value", ["line\nbreak", "nul\x00"])
def test_a_key_http_refuses_is_not_quoted_in_the_error(value: str) -> None:
    from aiperf.server_metrics.scraper import fetch

    with pytest.raises(ValueError) as info:
        fetch("http://127.0.0.1:9/metrics", 0.5, {"Authorization": f"Bearer {value}"})
    assert value not in str(info.value) and "Authorization" in str(info.value)
    assert "Bearer" not in str(info.value)
