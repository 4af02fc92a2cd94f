"""AIPerf 0.13's metrics that follow from the ones already measured (issue 13, "Metric
parity"). Formulas as AIPerf defines them (its ``metrics/types`` and ``analysis/sweepline``
modules, read for facts); the tags, units and flags are in ``definitions.SPECS``.

Per request, from one request's values in display units (``add_request_values``):

- ``decode_duration`` = request_latency - time_to_first_token (streaming; ms)
- ``e2e_output_token_throughput`` = output_sequence_length / request_latency in seconds
  (TTFT and everything else included, unlike 1/ITL; none when the latency is 0)
- ``prefill_throughput_per_user`` = input_sequence_length / TTFT in seconds (streaming;
  none when TTFT is 0)
- ``usage_prompt_tokens`` / ``usage_completion_tokens`` / ``usage_total_tokens`` /
  ``usage_reasoning_tokens``: the server's own ``usage`` fields as it sent them (the total
  is its ``total_tokens``, never prompt + completion), only for a response that carried
  them (``add_usage_values``, from the record's ``usage_*`` fields)

Per run, from the run's statistics (``run_metrics``): ``total_isl`` / ``total_osl`` (sums of
ISL / OSL), ``input_token_throughput`` = total_isl / benchmark_duration, and
``total_usage_*`` (sums of the usage metrics).

Over time (``sweep_metrics``, from when each request ran): ``effective_concurrency`` is the
number of requests in flight, ``tokens_in_flight`` the tokens a server holds for them (the
input tokens from request start, plus the output tokens from the first token to the end:
AIPerf's KV-cache load model), each a step function summarised time-weighted over the span
from the first request start to the last request end: avg = integral / span, min, max, std,
and p50/p90/p95/p99 as the smallest value the function is at or below for that fraction of
the span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from aiperf.metrics.definitions import BY_TAG, NS_PER_MS

if TYPE_CHECKING:
    from aiperf.results import ProfileResult

# A usage count at or past this is not one (endpoints.base.MAX_TOKEN_COUNT; not imported:
# the metrics do not depend on the endpoint package).
MAX_COUNT = 1 << 31
USAGE_TAGS = ("usage_prompt_tokens", "usage_completion_tokens", "usage_total_tokens",
              "usage_reasoning_tokens")
# Time-weighted over the whole run's timeline (result_sweep_metrics): no window or steady
# sample recomputes them.
SWEEP_TAGS = ("effective_concurrency", "tokens_in_flight")
SWEEP_PERCENTILES = (50, 90, 95, 99)


def add_request_values(values: dict[str, Any]) -> None:
    """Add one successful request's derived per-request metrics to ``values`` (its metrics
    in display units, as ``aggregate.per_request_values`` makes them)."""
    latency_ms = values.get("request_latency")
    if latency_ms is None:
        return
    osl = values.get("output_sequence_length")
    if osl is not None and latency_ms > 0:
        values["e2e_output_token_throughput"] = osl * 1000.0 / latency_ms
    ttft_ms = values.get("time_to_first_token")
    if ttft_ms is None:
        return
    if latency_ms >= ttft_ms:
        # Rounded to the nanosecond both came from, so that the records manager keeps it in
        # 4 bytes like every latency (a float difference rarely converts back bit for bit).
        values["decode_duration"] = round((latency_ms - ttft_ms) * NS_PER_MS) / NS_PER_MS
    isl = values.get("input_sequence_length")
    if isl is not None and ttft_ms > 0:
        values["prefill_throughput_per_user"] = isl * 1000.0 / ttft_ms


def add_usage_values(values: dict[str, Any], prompt: int, completion: int, total: int,
                     reasoning: int = -1, produces_tokens: bool = True) -> None:
    """The server's usage counts of one successful request (-1: the response had none).
    Only the prompt count where the endpoint produces no tokens (embeddings, rankings):
    AIPerf's other usage metrics are for token-producing endpoints only. A count out of
    range (an endpoint plugin's) is no count: the records manager keeps them in 4 bytes."""
    if 0 <= prompt < MAX_COUNT:
        values["usage_prompt_tokens"] = prompt
    if produces_tokens:
        if 0 <= completion < MAX_COUNT:
            values["usage_completion_tokens"] = completion
        if 0 <= total < MAX_COUNT:
            values["usage_total_tokens"] = total
        if 0 <= reasoning < MAX_COUNT:
            values["usage_reasoning_tokens"] = reasoning


def run_metrics(metrics: dict[str, Any], duration_s: float) -> dict[str, dict[str, Any]]:
    """The run-level parity metrics from a run's statistics (``metrics``: tag -> stats with
    ``sum`` for per-request metrics) and its ``benchmark_duration`` in seconds."""
    out: dict[str, dict[str, Any]] = {}

    def total(source: str) -> float | None:
        stats = metrics.get(source)
        return None if stats is None or stats.get("sum") is None else float(stats["sum"])

    for tag, source in (("total_isl", "input_sequence_length"),
                        ("total_osl", "output_sequence_length"),
                        *((f"total_{tag}", tag) for tag in USAGE_TAGS)):
        value = total(source)
        if value is not None:
            out[tag] = {"unit": BY_TAG[tag].unit, "avg": value}
    if "total_isl" in out and duration_s > 0:
        out["input_token_throughput"] = {"unit": BY_TAG["input_token_throughput"].unit,
                                         "avg": out["total_isl"]["avg"] / duration_s}
    return out


def time_weighted_stats(times: np.ndarray, levels: np.ndarray, start: float,
                        end: float) -> dict[str, float]:
    """Statistics of the step function that is ``levels[i]`` from ``times[i]`` to
    ``times[i + 1]`` (0 before the first time, the last level after the last), over
    [start, end], each level weighted by how long it held."""
    span = end - start
    if span <= 0 or not times.size:
        return {}
    edges = np.clip(np.append(times, end), start, end)
    held = np.diff(edges)
    before = levels[times <= start]
    # The level already in force at ``start`` (the last change at or before it).
    lead = float(before[-1]) if before.size else 0.0
    first_change = float(edges[0])
    durations = np.concatenate([[first_change - start], held])
    values = np.concatenate([[lead], levels.astype(np.float64)])
    keep = durations > 0
    durations, values = durations[keep], values[keep]
    avg = float(np.dot(values, durations) / span)
    stats = {"avg": avg, "min": float(values.min()), "max": float(values.max()),
             "std": float(np.sqrt(np.dot(durations, (values - avg) ** 2) / span))}
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(durations[order]) / durations.sum()
    for q in SWEEP_PERCENTILES:
        index = min(int(np.searchsorted(reached, q / 100.0)), order.size - 1)
        stats[f"p{q}"] = float(values[order[index]])
    return stats


def _levels(times: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A step function from its changes: (each distinct change time, the level from it).
    Changes at the same instant collapse into one, so the level between them, held for
    no time, never shows; in particular a request ending when another starts never
    counts as overlapping it."""
    if not times.size:
        return np.empty(0), np.empty(0)
    order = np.argsort(times, kind="stable")
    times, levels = times[order], np.cumsum(deltas[order])
    last = np.append(times[1:] != times[:-1], True)
    return times[last], levels[last]


def sweep_metrics(start_ns: np.ndarray, end_ns: np.ndarray,
                  first_token_ns: np.ndarray | None = None,
                  isl: np.ndarray | None = None,
                  osl: np.ndarray | None = None,
                  chunk_gaps: tuple[np.ndarray, np.ndarray] | None = None,
                  ) -> dict[str, dict[str, Any]]:
    """``effective_concurrency`` over the requests [start, end) and, given each request's
    first-token time (NaN: none), ISL and OSL, ``tokens_in_flight``.

    Tokens in flight are AIPerf's KV-cache load: a request holds its input tokens from
    its start to its end when its first token came after its start (streamed). Its output
    tokens arrive as it streams them: with ``chunk_gaps`` (the inter-chunk gaps in ns and
    the request each belongs to, in order), one token at the first token and
    (OSL - 1) / gaps at each later chunk; without, all at the first token (AIPerf's own
    fallback). A request with no first token, or (with gaps) no gap, holds no output
    tokens. Everything a request holds is freed at its end."""
    start = np.asarray(start_ns, dtype=np.float64)
    end = np.asarray(end_ns, dtype=np.float64)
    ran = end > start
    if not ran.any():
        return {}
    begin, finish = float(start[ran].min()), float(end[ran].max())
    out: dict[str, dict[str, Any]] = {}
    ones = np.ones(int(ran.sum()))
    times, levels = _levels(np.concatenate([start[ran], end[ran]]),
                            np.concatenate([ones, -ones]))
    out["effective_concurrency"] = {"unit": BY_TAG["effective_concurrency"].unit,
                                    **time_weighted_stats(times, levels, begin, finish)}
    if first_token_ns is None or isl is None or osl is None:
        return out
    first = np.asarray(first_token_ns, dtype=np.float64)
    inputs = np.asarray(isl, dtype=np.float64)
    outputs = np.asarray(osl, dtype=np.float64)
    streamed = ran & ~np.isnan(first)
    prefill = streamed & (first > start)
    parts_t = [start[prefill], end[prefill]]
    parts_d = [inputs[prefill], -inputs[prefill]]
    if chunk_gaps is None:
        decode = streamed & (end > first)
        parts_t += [first[decode], end[decode]]
        parts_d += [outputs[decode], -outputs[decode]]
    else:
        gaps = np.asarray(chunk_gaps[0], dtype=np.float64)
        owner = np.asarray(chunk_gaps[1], dtype=np.int64)
        if gaps.size:
            # Each chunk's time: the request's first token plus its gaps so far (a
            # cumulative sum restarted at each request's first gap).
            total = np.cumsum(gaps)
            opens = np.flatnonzero(np.append(True, owner[1:] != owner[:-1]))
            before = np.where(opens > 0, total[np.maximum(opens - 1, 0)], 0.0)
            run_length = np.diff(np.append(opens, owner.size))
            chunk_t = first[owner] + total - np.repeat(before, run_length)
            count = np.bincount(owner, minlength=start.size).astype(np.float64)
            valid = streamed[owner] & (gaps >= 0) & (outputs[owner] >= 1)
            has_gaps = np.bincount(owner[valid], minlength=start.size) > 0
            # A chunk stamped at or after its request's end (rounding) still counts
            # within it.
            chunk_t = np.minimum(chunk_t, end[owner])[valid]
            per_chunk = ((outputs[owner] - 1.0) / count[owner])[valid]
            parts_t += [first[has_gaps], chunk_t, end[has_gaps]]
            parts_d += [np.ones(int(has_gaps.sum())), per_chunk, -outputs[has_gaps]]
    times = np.concatenate(parts_t)
    if not times.size:
        return out
    times, levels = _levels(times, np.concatenate(parts_d))
    out["tokens_in_flight"] = {"unit": BY_TAG["tokens_in_flight"].unit,
                               **time_weighted_stats(times, levels, begin, finish)}
    return out


def result_sweep_metrics(result: ProfileResult) -> dict[str, dict[str, Any]]:
    """``sweep_metrics`` of a run's profiling requests, from its timeline, TTFT and
    inter-chunk latencies (a run without a timeline, in sketch mode, has none)."""
    timeline = result.timeline
    if not len(timeline):
        return {}
    ttft = result.metrics.get("time_to_first_token")
    if ttft is None or not len(ttft.values):
        return sweep_metrics(timeline.start_ns, timeline.end_ns)
    first = np.full(len(timeline), np.nan)
    index = np.asarray(ttft.record_index)
    first[index] = timeline.start_ns[index] + np.asarray(ttft.values) * NS_PER_MS
    icl = result.metrics.get("inter_chunk_latency")
    gaps = None
    if icl is not None and len(icl.values) and len(icl.record_index):
        gaps = (np.asarray(icl.values) * NS_PER_MS, np.asarray(icl.record_index))
    return sweep_metrics(timeline.start_ns, timeline.end_ns, first, timeline.isl,
                         timeline.osl, gaps)


def _aligned(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The values of two per-request metrics for the requests that carry both, and those
    requests' timeline indexes (each metric's values are in its record_index order)."""
    index_a = np.asarray(a.record_index)
    index_b = np.asarray(b.record_index)
    both, at_a, at_b = np.intersect1d(index_a, index_b, assume_unique=True,
                                      return_indices=True)
    return np.asarray(a.values)[at_a], np.asarray(b.values)[at_b], both


def result_request_values(metrics: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The per-request parity metrics of a whole run at once, from its per-request values
    on the host (``ProfileResult.metrics``: each a ``MetricResult`` with ``values`` and
    ``record_index``), as (values, timeline index) per tag: the same numbers
    ``add_request_values`` gives request by request, without the records manager keeping
    three more values a request. Empty when the run kept no values (sketch mode)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    latency = metrics.get("request_latency")
    if latency is None or not len(latency.values) or not len(latency.record_index):
        return out
    osl = metrics.get("output_sequence_length")
    if osl is not None and len(osl.values):
        tokens, ms, index = _aligned(osl, latency)
        keep = ms > 0
        out["e2e_output_token_throughput"] = (tokens[keep] * 1000.0 / ms[keep], index[keep])
    ttft = metrics.get("time_to_first_token")
    if ttft is None or not len(ttft.values):
        return out
    ms, first, index = _aligned(latency, ttft)
    keep = ms >= first
    out["decode_duration"] = (ms[keep] - first[keep], index[keep])
    isl = metrics.get("input_sequence_length")
    if isl is not None and len(isl.values):
        tokens, first, index = _aligned(isl, ttft)
        keep = first > 0
        out["prefill_throughput_per_user"] = (tokens[keep] * 1000.0 / first[keep],
                                              index[keep])
    return out
