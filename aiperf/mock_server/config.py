"""How the mock server behaves: latencies, token counts, errors, faults and its queue."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aiperf.mock_server.latency import DistributionKind, Latency, sigma_from_p99

Fault = Literal["none", "rate_limit", "disconnect", "truncate", "malformed", "stall"]
QUANTILE_METRICS = ("time_to_first_token", "request_latency")


class MockServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    ttft_ms: float = Field(default=0.0, ge=0, description="TTFT mean (normal) or median "
                                                          "(lognormal)")
    ttft_stddev_ms: float = Field(default=0.0, ge=0)
    ttft_distribution: DistributionKind = Field(
        default="normal", description="normal (clamped at 0; stddev 0 is fixed), fixed or "
                                      "lognormal (median ttft_ms, with ttft_sigma or "
                                      "ttft_p99_ms)")
    ttft_sigma: float | None = Field(default=None, gt=0, description="lognormal sigma")
    ttft_p99_ms: float | None = Field(default=None, gt=0, description="lognormal p99")
    itl_ms: float = Field(default=0.0, ge=0)
    itl_stddev_ms: float = Field(default=0.0, ge=0)
    latency_ms: float | None = Field(
        default=None, ge=0, description="Non-streaming latency (mean or median); default "
                                        "ttft + itl x tokens")
    latency_stddev_ms: float = Field(default=0.0, ge=0)
    latency_distribution: DistributionKind = "normal"
    latency_sigma: float | None = Field(default=None, gt=0)
    latency_p99_ms: float | None = Field(default=None, gt=0)
    slots: int | None = Field(
        default=None, ge=1, description="At most this many requests served at once; the "
                                        "others wait in FIFO order (None: no limit)")
    tokens: int = Field(default=16, ge=1, description="Output tokens when the request sets none")
    tokens_per_chunk: int = Field(default=1, ge=1)
    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of requests failed")
    error_codes: list[int] = Field(default_factory=lambda: [500])
    fault: Fault = "none"
    fault_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests faulted")
    stall_seconds: float = Field(default=30.0, gt=0)
    retry_after_seconds: int = 1
    seed: int = 0

    @model_validator(mode="after")
    def _distributions_are_complete(self) -> MockServerConfig:
        _latency("ttft", self.ttft_distribution, self.ttft_ms, self.ttft_stddev_ms,
                 self.ttft_sigma, self.ttft_p99_ms)
        if self.latency_ms is None:
            if (self.latency_distribution != "normal" or self.latency_stddev_ms
                    or self.latency_sigma is not None or self.latency_p99_ms is not None):
                raise ValueError("latency_distribution, latency_stddev_ms, latency_sigma and "
                                 "latency_p99_ms need latency_ms")
        else:
            _latency("latency", self.latency_distribution, self.latency_ms,
                     self.latency_stddev_ms, self.latency_sigma, self.latency_p99_ms)
        return self

    def ttft_latency(self) -> Latency:
        return _latency("ttft", self.ttft_distribution, self.ttft_ms, self.ttft_stddev_ms,
                        self.ttft_sigma, self.ttft_p99_ms)

    def whole_latency(self) -> Latency | None:
        """The non-streaming latency's own distribution, when ``latency_ms`` is set."""
        if self.latency_ms is None:
            return None
        return _latency("latency", self.latency_distribution, self.latency_ms,
                        self.latency_stddev_ms, self.latency_sigma, self.latency_p99_ms)

    def true_quantile(self, metric: str, q: float, *, stream: bool = True,
                      tokens: int | None = None) -> float:
        """The exact q-quantile (ms) of ``metric`` as this server makes it, for requests that
        never wait for a slot (no ``slots``, or concurrency at most ``slots``), with no
        faults or errors; ``tokens`` is the output length (default ``self.tokens``).

        ``request_latency`` adds the token pauses to the TTFT, so it needs a fixed ITL
        (``itl_stddev_ms`` 0): a sum of random pauses has no closed-form quantile."""
        if metric not in QUANTILE_METRICS:
            raise ValueError(f"true_quantile knows {', '.join(QUANTILE_METRICS)}; not "
                             f"{metric!r}")
        count = self.tokens if tokens is None else tokens
        if count < 1:
            raise ValueError(f"tokens must be at least 1, got {count}")
        if metric == "time_to_first_token":
            if not stream:
                raise ValueError("time_to_first_token exists only for streaming requests")
            return self.ttft_latency().quantile_ms(q)
        whole = self.whole_latency()
        if not stream and whole is not None:
            return whole.quantile_ms(q)
        if self.itl_stddev_ms > 0:
            raise ValueError("request_latency has a closed-form quantile only with a fixed "
                             "ITL (itl_stddev_ms = 0)")
        if stream:
            # One pause of itl x tokens_per_chunk between consecutive chunks.
            chunks = math.ceil(count / self.tokens_per_chunk)
            tail_ms = (chunks - 1) * self.itl_ms * self.tokens_per_chunk
        else:
            tail_ms = count * self.itl_ms
        return self.ttft_latency().quantile_ms(q) + tail_ms


# A lognormal's sigma above this puts its quantiles past any real server (p99 = 1.2e5x the
# median at 5) and, far above, past what a float holds.
MAX_SIGMA = 5.0


def _latency(name: str, kind: DistributionKind, center_ms: float, stddev_ms: float,
             sigma: float | None, p99_ms: float | None) -> Latency:
    """The distribution the ``name_*`` keys describe, or a ValueError saying what is wrong."""
    if kind != "lognormal":
        if sigma is not None or p99_ms is not None:
            raise ValueError(f"{name}_sigma and {name}_p99_ms apply only to "
                             f"{name}_distribution = lognormal, not {kind}")
        if kind == "fixed" and stddev_ms > 0:
            raise ValueError(f"{name}_distribution = fixed takes no {name}_stddev_ms")
        return Latency(kind, center_ms, stddev_ms)
    if stddev_ms > 0:
        raise ValueError(f"a lognormal {name} takes {name}_sigma or {name}_p99_ms, not "
                         f"{name}_stddev_ms")
    if center_ms <= 0:
        raise ValueError(f"a lognormal {name} needs a median above 0 (its _ms key)")
    if (sigma is None) == (p99_ms is None):
        raise ValueError(f"a lognormal {name} needs exactly one of {name}_sigma and "
                         f"{name}_p99_ms")
    if p99_ms is not None:
        if p99_ms <= center_ms:
            raise ValueError(f"{name}_p99_ms ({p99_ms}) must be above the median "
                             f"({center_ms})")
        sigma = sigma_from_p99(center_ms, p99_ms)
    assert sigma is not None
    if sigma > MAX_SIGMA:
        given = f"{name}_sigma {sigma:g}" if p99_ms is None else (
            f"{name}_p99_ms {p99_ms:g} (sigma {sigma:.3g} for median {center_ms:g})")
        raise ValueError(f"{given}: a lognormal {name}'s sigma must be at most {MAX_SIGMA:g} "
                         f"(its p99 is then {math.exp(MAX_SIGMA * 2.326):.0e}x the median)")
    return Latency("lognormal", center_ms, sigma)
