"""Where a server's Prometheus metrics are: URL normalisation as AIPerf 0.13 does it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from aiperf.common.net import with_http_scheme

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
