"""Per-session and per-URL views of a run's per-request table (``result.records``).

Each record's ``metadata`` carries ``session_num`` and ``turn_index`` for a multi-turn
request and ``url_index`` for a request of a run over several URLs (the records manager's
``export_record``). These views are computed on the host from the table, one pass, only
when asked for: the records manager keeps no per-session state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from aiperf.common.config import mask_url

_NS_PER_MS = 1e6


class SessionSummary(BaseModel):
    """One session of a run: its turns in order and how long it took end to end."""

    model_config = ConfigDict(frozen=True)

    session: int
    turns: int
    errors: int
    duration_ms: float  # first turn's start to last turn's end (think time included)
    request_latency_ms: list[float | None]  # per turn, None for a failed one
    time_to_first_token_ms: list[float | None]


class UrlSummary(BaseModel):
    """The requests one of several URLs served."""

    model_config = ConfigDict(frozen=True)

    url: str
    requests: int
    errors: int
    request_latency_p50_ms: float | None
    request_latency_p99_ms: float | None


def _metric(record: dict[str, Any], tag: str) -> float | None:
    value = record.get("metrics", {}).get(tag)
    return None if value is None else float(value["value"])


def _profiling(records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (r for r in records if r["metadata"].get("benchmark_phase") == "profiling")


def sessions_of(records: Iterable[dict[str, Any]]) -> list[SessionSummary]:
    """Every session of the run's profiling requests, in the order they started."""
    by_session: dict[int, list[dict[str, Any]]] = {}
    for record in _profiling(records):
        session = record["metadata"].get("session_num")
        if session is not None and session >= 0:
            by_session.setdefault(session, []).append(record)
    out = []
    for session, turns in by_session.items():
        turns.sort(key=lambda r: r["metadata"]["turn_index"])
        starts = [r["metadata"]["request_start_ns"] for r in turns]
        ends = [r["metadata"]["request_end_ns"] for r in turns]
        out.append(SessionSummary(
            session=session, turns=len(turns),
            errors=sum(1 for r in turns if r.get("error")),
            duration_ms=(max(ends) - min(starts)) / _NS_PER_MS,
            request_latency_ms=[_metric(r, "request_latency") for r in turns],
            time_to_first_token_ms=[_metric(r, "time_to_first_token") for r in turns],
        ))
    out.sort(key=lambda s: s.session)
    return out


def turn_values(records: Iterable[dict[str, Any]], tag: str,
                first_turn: int = 0) -> np.ndarray:
    """``tag``'s per-request values of the turns with index >= ``first_turn`` (0-based:
    AIPerf's ``turn_index``), for an objective on later turns (where a prefix cache shows)."""
    values = [_metric(r, tag) for r in _profiling(records)
              if r["metadata"].get("turn_index", -1) >= first_turn]
    return np.array([v for v in values if v is not None], dtype=np.float64)


def urls_of(records: Iterable[dict[str, Any]], urls: Sequence[str]) -> list[UrlSummary]:
    """What each of ``urls`` (the config's, in order) served of the profiling requests."""
    latencies: list[list[float]] = [[] for _ in urls]
    counts = [0] * len(urls)
    errors = [0] * len(urls)
    for record in _profiling(records):
        index = record["metadata"].get("url_index", -1)
        if not 0 <= index < len(urls):
            continue
        counts[index] += 1
        if record.get("error"):
            errors[index] += 1
        latency = _metric(record, "request_latency")
        if latency is not None and not record.get("error"):
            latencies[index].append(latency)
    out = []
    for i, url in enumerate(urls):
        values = np.array(latencies[i])
        out.append(UrlSummary(
            url=mask_url(url), requests=counts[i], errors=errors[i],
            request_latency_p50_ms=float(np.percentile(values, 50)) if values.size else None,
            request_latency_p99_ms=float(np.percentile(values, 99)) if values.size else None,
        ))
    return out
