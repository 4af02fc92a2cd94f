"""Where a server's Prometheus metrics are: URL normalisation as AIPerf 0.13 does it, and
which credentials a scrape carries.

The endpoint's credentials (``api_key``, a ``user:password@`` in ``url``, a credential
header such as ``api-key``) go with a scrape of the endpoint's own server (the default
URL, or a given URL on the same scheme, host and port) and with no other: a metrics URL
elsewhere is another party, which must not see the endpoint's key. A given URL carries its
own ``user:password@``, as Basic auth.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from aiperf.common.net import with_http_scheme

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig

METRICS_PATH = "/metrics"


def normalize_metrics_url(url: str) -> str:
    """``localhost:8000`` -> ``http://localhost:8000/metrics``; a URL whose path already
    ends in /metrics is kept. Raises ValueError naming the URL when it has no host or a
    scheme other than http(s)."""
    from aiperf.common.config import mask_url

    text = with_http_scheme(url)
    if not text:
        raise ValueError("a server_metrics URL is empty")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"server_metrics URL {mask_url(url)!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server_metrics URL {mask_url(url)!r} needs an http(s) scheme "
                         "and a host")
    path = parts.path.rstrip("/")
    if not path.endswith(METRICS_PATH):
        path += METRICS_PATH
    return urlunsplit(parts._replace(path=path))


def default_metrics_url(base_url: str) -> str:
    """The endpoint's own /metrics: its scheme and host, path /metrics (a base URL that
    carries a path such as /v1 keeps it out, as servers serve /metrics at the root)."""
    parts = urlsplit(with_http_scheme(base_url))
    host = parts.netloc.rsplit("@", 1)[-1]  # the endpoint's credentials stay with it
    return urlunsplit((parts.scheme, host, METRICS_PATH, "", ""))


@dataclass(frozen=True)
class ScrapeTarget:
    """A /metrics URL and the headers its scrapes send. The headers hold credentials: they
    are out of the repr and the comparison, and nothing prints them."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def scrape_targets(config: UserConfig) -> list[ScrapeTarget]:
    """What a run with ``config`` scrapes: its ``server_metrics`` URLs, or the endpoint's
    own /metrics when that is ``[]``; the endpoint's credentials on the ones of its own
    server (see the module docstring). ``[]`` when server metrics are off."""
    if config.server_metrics is None:
        return []
    endpoint = urlsplit(with_http_scheme(config.url))
    credentials = _endpoint_credentials(config, endpoint)
    urls = config.server_metrics or [default_metrics_url(config.url)]
    return [ScrapeTarget(url, credentials if _origin(urlsplit(url)) == _origin(endpoint)
                         and credentials and urlsplit(url).username is None else {})
            for url in urls]


def _endpoint_credentials(config: UserConfig, endpoint: SplitResult) -> dict[str, str]:
    """The headers by which the endpoint's requests authenticate, in the endpoint's order:
    ``api_key`` as a Bearer token, then its credential headers over it; with neither
    Authorization, its URL's userinfo as Basic auth (what aiohttp sends for it)."""
    from aiperf.common.config import is_secret_header

    headers: dict[str, str] = {}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    headers.update({name: value for name, value in config.headers.items()
                    if is_secret_header(name)})
    if endpoint.username is not None and not any(
            name.lower() == "authorization" for name in headers):
        pair = f"{unquote(endpoint.username)}:{unquote(endpoint.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return headers


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when none is written): what makes two
    URLs the same server."""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port
