"""How the mock server behaves: latencies, token counts, errors and faults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Fault = Literal["none", "rate_limit", "disconnect", "truncate", "malformed", "stall"]


class MockServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    ttft_ms: float = Field(default=0.0, ge=0)
    ttft_stddev_ms: float = Field(default=0.0, ge=0)
    itl_ms: float = Field(default=0.0, ge=0)
    itl_stddev_ms: float = Field(default=0.0, ge=0)
    latency_ms: float | None = Field(
        default=None, ge=0, description="Non-streaming latency; default ttft + itl x tokens"
    )
    tokens: int = Field(default=16, ge=1, description="Output tokens when the request sets none")
    tokens_per_chunk: int = Field(default=1, ge=1)
    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of requests failed")
    error_codes: list[int] = Field(default_factory=lambda: [500])
    fault: Fault = "none"
    fault_rate: float = Field(default=1.0, ge=0, le=1, description="Share of requests faulted")
    stall_seconds: float = Field(default=30.0, gt=0)
    retry_after_seconds: int = 1
    seed: int = 0
