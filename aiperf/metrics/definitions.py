"""Every metric tag, its display unit and header, as in AIPerf (see docs/metrics.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

NS_PER_MS = 1e6


@dataclass(frozen=True)
class MetricSpec:
    tag: str
    header: str
    unit: str
    per_request: bool = True
    streaming_only: bool = False
    tokens_only: bool = False
    higher_is_better: bool = False
    error_adjusted: bool = False
    # Several values per request (one per chunk gap): statistics pool them, but no single
    # per-request number exists to compare with a goodput threshold.
    list_valued: bool = False
    # In the console table; off for the detail metrics AIPerf also keeps out of it (they
    # are still exported and usable in SLOs).
    console: bool = True


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("time_to_first_token", "Time to First Token", "ms", streaming_only=True,
               tokens_only=True, error_adjusted=True),
    MetricSpec("time_to_second_token", "Time to Second Token", "ms", streaming_only=True,
               tokens_only=True, error_adjusted=True),
    MetricSpec("time_to_first_output_token", "Time to First Output Token", "ms",
               streaming_only=True, tokens_only=True),
    MetricSpec("request_latency", "Request Latency", "ms", error_adjusted=True),
    MetricSpec("inter_token_latency", "Inter Token Latency", "ms", streaming_only=True,
               tokens_only=True, error_adjusted=True),
    MetricSpec("inter_chunk_latency", "Inter Chunk Latency", "ms", streaming_only=True,
               tokens_only=True, list_valued=True),
    MetricSpec("output_token_throughput_per_user", "Output Token Throughput Per User",
               "tokens/sec/user", streaming_only=True, tokens_only=True, higher_is_better=True),
    MetricSpec("input_sequence_length", "Input Sequence Length", "tokens"),
    MetricSpec("output_sequence_length", "Output Sequence Length", "tokens", tokens_only=True),
    MetricSpec("reasoning_token_count", "Reasoning Token Count", "tokens", tokens_only=True,
               higher_is_better=True),
    MetricSpec("output_token_count", "Output Token Count", "tokens", tokens_only=True,
               higher_is_better=True, console=False),
    MetricSpec("decode_duration", "Decode Duration", "ms", streaming_only=True,
               tokens_only=True, error_adjusted=True, console=False),
    MetricSpec("e2e_output_token_throughput", "E2E Output Token Throughput",
               "tokens/sec/user", tokens_only=True, higher_is_better=True, console=False),
    MetricSpec("prefill_throughput_per_user", "Prefill Throughput Per User",
               "tokens/sec/user", streaming_only=True, tokens_only=True,
               higher_is_better=True, console=False),
    # The server's own usage fields, only for responses that carried them (AIPerf keeps
    # them beside ISL/OSL, which fall back to the tokenizer; its flags: larger is better).
    MetricSpec("usage_prompt_tokens", "Usage Prompt Tokens", "tokens",
               higher_is_better=True, console=False),
    MetricSpec("usage_completion_tokens", "Usage Completion Tokens", "tokens",
               tokens_only=True, higher_is_better=True, console=False),
    MetricSpec("usage_total_tokens", "Usage Total Tokens", "tokens", tokens_only=True,
               higher_is_better=True, console=False),
    MetricSpec("usage_reasoning_tokens", "Usage Reasoning Tokens", "tokens",
               tokens_only=True, higher_is_better=True, console=False),
    MetricSpec("credit_to_start_latency", "Credit To Start Latency", "ms"),
    MetricSpec("effective_latency", "Effective Latency", "ms", error_adjusted=True),
    *(MetricSpec(tag, header, "ms", console=False) for tag, header in (
        ("http_req_blocked", "HTTP Blocked"),
        ("http_req_dns_lookup", "HTTP DNS Lookup"),
        ("http_req_connecting", "HTTP Connecting"),
        ("http_req_sending", "HTTP Sending"),
        ("http_req_waiting", "HTTP Waiting (TTFB)"),
        ("http_req_receiving", "HTTP Receiving"),
        ("http_req_duration", "HTTP Duration (excl. conn)"),
        ("http_req_total", "HTTP Total Time"),
    )),
    MetricSpec("http_req_connection_reused", "HTTP Connection Reused", "ratio", console=False),
    MetricSpec("benchmark_duration", "Benchmark Duration", "sec", per_request=False),
    MetricSpec("request_count", "Request Count", "requests", per_request=False),
    MetricSpec("error_request_count", "Error Request Count", "requests", per_request=False),
    MetricSpec("request_error_rate", "Request Error Rate", "%", per_request=False),
    MetricSpec("request_throughput", "Request Throughput", "requests/sec", per_request=False,
               higher_is_better=True),
    MetricSpec("output_token_throughput", "Output Token Throughput", "tokens/sec",
               per_request=False, tokens_only=True, higher_is_better=True),
    MetricSpec("total_token_throughput", "Total Token Throughput", "tokens/sec",
               per_request=False, higher_is_better=True),
    MetricSpec("total_output_tokens", "Total Output Tokens", "tokens", per_request=False,
               tokens_only=True, higher_is_better=True, console=False),
    MetricSpec("total_reasoning_tokens", "Total Reasoning Tokens", "tokens", per_request=False,
               tokens_only=True, higher_is_better=True, console=False),
    MetricSpec("total_isl", "Total Input Sequence Length", "tokens", per_request=False,
               console=False),
    MetricSpec("total_osl", "Total Output Sequence Length", "tokens", per_request=False,
               tokens_only=True, console=False),
    MetricSpec("input_token_throughput", "Input Token Throughput", "tokens/sec",
               per_request=False, higher_is_better=True),
    *(MetricSpec(f"total_{tag}", f"Total {header}", "tokens", per_request=False,
                 tokens_only=tokens_only, console=False) for tag, header, tokens_only in (
        ("usage_prompt_tokens", "Usage Prompt Tokens", False),
        ("usage_completion_tokens", "Usage Completion Tokens", True),
        ("usage_total_tokens", "Usage Total Tokens", True),
        ("usage_reasoning_tokens", "Usage Reasoning Tokens", True),
    )),
    # Time-weighted over the run (avg, min, max, std, p50/p90/p95/p99), not per request.
    MetricSpec("effective_concurrency", "Effective Concurrency", "requests",
               per_request=False),
    MetricSpec("tokens_in_flight", "Tokens In Flight", "tokens", per_request=False,
               streaming_only=True, tokens_only=True, console=False),
    MetricSpec("good_request_count", "Good Request Count", "requests", per_request=False,
               higher_is_better=True),
    MetricSpec("goodput", "Goodput", "requests/sec", per_request=False, higher_is_better=True),
    MetricSpec("good_request_fraction", "Good Request Fraction", "ratio", per_request=False,
               higher_is_better=True),
)

BY_TAG = {spec.tag: spec for spec in SPECS}

# Per-request metrics defined but not yet in a run's results: a goodput threshold on one
# would make no request good. Empty now: the parity metrics (aiperf/metrics/parity.py) are
# computed per request in aggregate.per_request_values, the usage ones from the record's
# usage_* fields.
AWAITING_AGGREGATION: frozenset[str] = frozenset()


def goodput_problem(tag: str, streams: bool, produces_tokens: bool) -> str | None:
    """Why ``tag`` cannot be a goodput threshold of a profile that streams (or not) and
    produces tokens (or not); None when it can. A request is good only when every threshold
    holds, so a metric the profile never measures would make no request good."""
    spec = BY_TAG.get(tag)
    if spec is None:
        return "is not a metric"
    if not spec.per_request:
        return "is one number per run, not one per request"
    if tag in AWAITING_AGGREGATION:
        return "is not measured per request by this build yet"
    if spec.list_valued:
        return "has many values per request (one per chunk), not one"
    if spec.streaming_only and not streams:
        return "needs a streaming profile (streaming=True, on an endpoint that streams)"
    if spec.tokens_only and not produces_tokens:
        return "is not measured: this endpoint produces no tokens"
    return None


def goodput_metrics(streams: bool, produces_tokens: bool) -> list[str]:
    """The tags a goodput threshold may name in such a profile."""
    return sorted(t for t in BY_TAG if goodput_problem(t, streams, produces_tokens) is None)
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
STAT_NAMES = ("avg", "min", "max", "std", *(f"p{p}" for p in PERCENTILES), "count", "sum")

_PNN = re.compile(r"^p(\d{1,2}(?:\.\d+)?|\d{3,})$")


def parse_percentile(stat: str) -> float | None:
    """``p99`` -> 99, ``p999`` -> 99.9, ``p99.9`` -> 99.9; None if not a percentile."""
    if stat.startswith("p0"):
        return None
    match = _PNN.match(stat)
    if not match:
        return None
    digits = match.group(1)
    if "." not in digits and len(digits) >= 3:
        # p999 is 99.9 and p9999 is 99.99; any other three digits (p100) is a typo.
        return float("99." + digits[2:]) if digits.startswith("99") else None
    value = float(digits)
    return value if 0 < value < 100 else None
