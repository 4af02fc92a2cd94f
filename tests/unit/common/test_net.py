"""One rule for a scheme-less server address, wherever a URL is read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.common.net import with_http_scheme
from aiperf.server_metrics.urls import default_metrics_url, normalize_metrics_url

# host:port text as a user types it, blanks around it included
_hosts = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)
_addresses = st.builds(lambda host, port, left, right: f"{left}{host}:{port}{right}",
                       _hosts, st.integers(1, 65535), st.sampled_from(["", " ", "\t"]),
                       st.sampled_from(["", " ", "\n"]))


def test_a_scheme_is_added_only_when_missing() -> None:
    assert with_http_scheme("localhost:8000") == "http://localhost:8000"
    assert with_http_scheme("  localhost:8000 ") == "http://localhost:8000"
    assert with_http_scheme("https://h:1/v1") == "https://h:1/v1"
    assert with_http_scheme("") == ""


@settings(deadline=None)  # a loaded CI box is no failure
@given(_addresses)
def test_url_and_urls_read_the_same_text_the_same_way(address: str) -> None:
    # urls' first entry stands in for url; it once kept the blanks url drops
    # ("http:// host:1 "), a URL no server answers.
    alone = UserConfig(url=address).url
    assert alone == with_http_scheme(address)
    assert UserConfig(urls=[address]).url == alone
    assert with_http_scheme(alone) == alone  # idempotent


@settings(deadline=None)
@given(_addresses)
def test_server_metrics_urls_follow_the_same_rule(address: str) -> None:
    base = with_http_scheme(address)
    assert normalize_metrics_url(address) == base + "/metrics"
    assert default_metrics_url(address) == base + "/metrics"
