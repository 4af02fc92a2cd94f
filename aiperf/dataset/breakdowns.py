"""Per-session and per-URL views of a run's per-request table (``result.records``).

Each record's ``metadata`` carries ``session_num`` and ``turn_index`` for a multi-turn
request and ``url_index`` for a request of a run over several URLs (the records manager's
``export_record``). These views are computed on the host from the table, one pass, only
when asked for: the records manager keeps no per-session state.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import msgspec
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
    return turn_sample(records, tag, first_turn).values


class TurnSample(NamedTuple):
    """The profiling requests of some turns: ``tag``'s values of the successful ones (a
    list-valued metric's values pooled, as its statistics are), how many succeeded and how
    many failed."""

    values: np.ndarray
    ok: int
    err: int


class _TurnMeta(msgspec.Struct):
    benchmark_phase: str = ""
    turn_index: int = -1
    credit_issued_ns: int = 0
    request_start_ns: int = 0
    request_end_ns: int = 0


class _Value(msgspec.Struct):
    value: Any = None


_NULL = msgspec.Raw(b"null")


@functools.lru_cache(maxsize=64)
def _line_type(tag: str) -> type[msgspec.Struct]:
    """A record line's decode type that reads the metadata and ``tag`` only: msgspec skips
    every other metric without building it, so a scan of a million lines stays cheap."""
    metrics = msgspec.defstruct("_TurnMetrics", [(tag, _Value | None, None)])
    return msgspec.defstruct("_TurnLine", [("metadata", _TurnMeta),
                                           ("metrics", metrics | None, None),
                                           ("error", msgspec.Raw, _NULL)])


def _scan(records: Iterable[dict[str, Any]],
          tag: str) -> Iterator[tuple[_TurnMeta, Any, bool]]:
    """(metadata, value of ``tag`` or None, failed) per record: from the table's file when
    it has one (``RecordsFile``: one line decoded at a time into the narrow type above),
    else from the records as dicts."""
    path = getattr(records, "path", None)
    if path is not None:
        line_type = _line_type(tag)
        decode = msgspec.json.Decoder(line_type).decode
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                row: Any = decode(line)
                found = getattr(row.metrics, tag, None) if row.metrics is not None else None
                failed = bytes(row.error).strip() != b"null"  # left raw: never parsed
                yield row.metadata, None if found is None else found.value, failed
        return
    for record in records:
        meta = record.get("metadata", {})
        value = record.get("metrics", {}).get(tag)
        yield (msgspec.convert(meta, _TurnMeta, strict=False),
               None if value is None else value.get("value"), bool(record.get("error")))


def turn_sample(records: Iterable[dict[str, Any]], tag: str, first_index: int = 0,
                last_index: int | None = None,
                within_ns: tuple[int, int] | None = None) -> TurnSample:
    """``tag`` over the profiling requests whose ``turn_index`` (0-based) is in
    [``first_index``, ``last_index``] (None: no last), and, with ``within_ns``, that started
    at or after its first bound and ended by its second (a steady window; a request that
    was never sent counts at its credit time, as the timeline has it). One streaming pass:
    the values go to a float array as they are read, no object per request is kept."""
    values = array("d")
    ok = err = 0
    for meta, value, failed in _scan(records, tag):
        turn = meta.turn_index
        if meta.benchmark_phase != "profiling" or turn < first_index or (
                last_index is not None and turn > last_index):
            continue
        if within_ns is not None:
            start = meta.request_start_ns or meta.credit_issued_ns
            end = meta.request_end_ns or start
            if start < within_ns[0] or end > within_ns[1]:
                continue
        if failed:
            err += 1
            continue
        ok += 1
        if isinstance(value, list):
            values.extend(float(v) for v in value)
        elif value is not None and not isinstance(value, bool):
            values.append(float(value))
    return TurnSample(np.frombuffer(values, dtype=np.float64) if values else np.empty(0),
                      ok, err)


class _MetaLine(msgspec.Struct):
    metadata: _TurnMeta


def record_turns(records: Iterable[dict[str, Any]]) -> np.ndarray:
    """Each profiling record's ``turn_index`` (-1: not a turn of a session), int32, in the
    table's order, which is the timeline's (the records manager writes a record to the
    table as it adds it to the timeline): ``turns[metric.record_index]`` is then the turn
    of each of a metric's values. One streaming pass that decodes the metadata only."""
    turns = array("i")
    path = getattr(records, "path", None)
    if path is not None:
        decode = msgspec.json.Decoder(_MetaLine).decode
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                meta = decode(line).metadata
                if meta.benchmark_phase == "profiling":
                    turns.append(meta.turn_index)
    else:
        for record in records:
            meta = record.get("metadata", {})
            if meta.get("benchmark_phase") == "profiling":
                turn = meta.get("turn_index")
                turns.append(-1 if turn is None else int(turn))
    return np.frombuffer(turns, dtype=np.int32) if turns else np.empty(0, dtype=np.int32)


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
