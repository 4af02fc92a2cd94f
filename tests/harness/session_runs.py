"""Real multi-turn ``ProfileResult``s built by the engine's own aggregation from synthetic
records (no mesh): sessions of ``turns`` turns whose time to first token depends on the
turn, as a server with a prefix cache answers (a cold first turn, warm later ones)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aiperf.common.codec import PROFILING, ErrorInfo, MetricRecord
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import compute_results
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult

MS = 1_000_000
TOKENS = 4


def session_result(sessions: int = 40, turns: int = 4, *,
                   ttft_ms: Sequence[float] = (300.0, 20.0), spread: float = 0.1,
                   failed_turns: Sequence[tuple[int, int]] = (), slots: int = 4,
                   seed: int = 3, export_to: Path | None = None,
                   **config: Any) -> ProfileResult:
    """``sessions`` sessions of ``turns`` turns on ``slots`` back-to-back chains. Turn k's
    (0-based) TTFT is lognormal around ``ttft_ms[min(k, len - 1)]``; ``failed_turns``
    (session, turn_index) pairs fail with a 500. ``export_to``: the per-request table
    goes to that file (a ``RecordsFile``, as a mesh run has it), else stays a list."""
    rng = np.random.default_rng(seed)
    clock = np.zeros(slots)
    records: list[MetricRecord] = []
    failed = set(failed_turns)
    cid = 0
    for session in range(sessions):
        slot = session % slots
        first_cid = cid
        for turn in range(turns):
            start = round(clock[slot] * MS)
            typical = ttft_ms[min(turn, len(ttft_ms) - 1)]
            if (session, turn) in failed:
                end = start + 5 * MS
                records.append(MetricRecord(
                    cid, PROFILING, "w", start, start, 0, end, -1, -1, -1, 10, 0, [],
                    error=ErrorInfo(500, "Server Error", "x"), session=first_cid,
                    turn_index=turn))
            else:
                first = round(float(rng.lognormal(np.log(typical), spread)) * MS)
                gaps = [2 * MS] * (TOKENS - 1)
                end = start + first + sum(gaps)
                records.append(MetricRecord(
                    cid, PROFILING, "w", start - MS, start, 0, end, first, first + gaps[0],
                    end - start, 10, TOKENS, gaps, session=first_cid, turn_index=turn))
            clock[slot] = (end + MS) / MS
            cid += 1
    user = UserConfig(**{"streaming": True, "concurrency": slots, "request_count": cid,
                         "conversation_num": sessions, "conversation_turn_mean": turns,
                         **config})
    meta = plugins.get_metadata(PluginType.ENDPOINT, user.endpoint_type)
    out = compute_results(records, user, meta, [(0, cid)], streaming=True,
                          export_to=export_to)
    return ProfileResult.from_dict(out, user)
