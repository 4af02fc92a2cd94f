"""Real ``ProfileResult``s for the baseline tests, built by the engine's own aggregation from
synthetic records (no mesh): lognormal TTFT and inter-token gaps, a share of failures."""

from __future__ import annotations

from typing import Any

import numpy as np

from aiperf.common.codec import PROFILING, ErrorInfo, MetricRecord
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import compute_results
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult

MS = 1_000_000


def synthetic_result(requests: int = 200, *, slots: int = 4, tokens: int = 6,
                     error_share: float = 0.05, ttft_ms: float = 40.0, seed: int = 1,
                     **config: Any) -> ProfileResult:
    """A streaming chat run of ``requests`` records in ``slots`` back-to-back chains."""
    rng = np.random.default_rng(seed)
    ttft = rng.lognormal(np.log(ttft_ms), 0.5, requests)
    gaps = rng.lognormal(np.log(5.0), 0.3, (requests, tokens - 1))
    failed = rng.random(requests) < error_share
    clock = np.zeros(slots)
    records = []
    for cid in range(requests):
        slot = cid % slots
        start = round(clock[slot] * MS)
        if failed[cid]:
            end = start + 5 * MS
            records.append(MetricRecord(cid, PROFILING, "w", start, start, 0, end, -1, -1, -1,
                                        10, 0, [], error=ErrorInfo(500, "Server Error", "x")))
        else:
            gap_ns = [round(g * MS) for g in gaps[cid]]
            first = round(ttft[cid] * MS)
            end = start + first + sum(gap_ns)
            records.append(MetricRecord(cid, PROFILING, "w", start - MS, start, 0, end, first,
                                        first + gap_ns[0], end - start, 10, tokens, gap_ns))
        clock[slot] = (end + MS) / MS
    user = UserConfig(**{"streaming": True, "concurrency": slots, "request_count": requests,
                         **config})
    meta = plugins.get_metadata(PluginType.ENDPOINT, user.endpoint_type)
    out = compute_results(records, user, meta, [(0, requests)], streaming=True)
    return ProfileResult.from_dict(out, user)
