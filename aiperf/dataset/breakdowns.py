"""Per-session and per-URL views of a run's per-request table (``result.records``).

Each record's ``metadata`` carries ``session_num`` and ``turn_index`` for a multi-turn
request and ``url_index`` for a request of a run over several URLs (the records manager's
``export_record``). These views are computed on the host from the table, one pass, only
when asked for: the records manager keeps no per-session state.
"""

from __future__ import annotations

import functools
import os
import zlib
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


def _profiling(records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (r for r in records if r["metadata"].get("benchmark_phase") == "profiling")


class _SessionMeta(msgspec.Struct):
    benchmark_phase: str = ""
    session_num: int = -1
    turn_index: int = -1
    request_start_ns: int = 0
    request_end_ns: int = 0
    url_index: int = -1


class _SessionMetrics(msgspec.Struct):
    request_latency: _Value | None = None
    time_to_first_token: _Value | None = None


class _SessionLine(msgspec.Struct):
    metadata: _SessionMeta
    metrics: _SessionMetrics | None = None
    error: msgspec.Raw = msgspec.Raw(b"null")


# JSON values a record's error may hold that count as no error (the dict path's ``bool``).
_NO_ERROR = frozenset((b"null", b"false", b"0", b'""', b"{}", b"[]"))


def _value(value: Any) -> float | None:
    return None if value is None else float(value)


def _decoded_lines(path: str | os.PathLike[str], line_type: type) -> Iterator[Any]:
    """The table file's rows one at a time, each decoded into ``line_type`` (a narrow
    struct: every field it does not name is skipped unbuilt)."""
    decode = msgspec.json.Decoder(line_type).decode
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield decode(line)


def _profiling_rows(records: Iterable[dict[str, Any]]) -> Iterator[
        tuple[_SessionMeta, float | None, float | None, bool]]:
    """(metadata, request latency, TTFT, failed) of each profiling record: from the table's
    file when it has one (one line at a time, decoded into the narrow type above: every
    other metric is skipped unbuilt), else from the records as dicts."""
    path = getattr(records, "path", None)
    if path is not None:
        for row in _decoded_lines(path, _SessionLine):
            meta = row.metadata
            if meta.benchmark_phase != "profiling":
                continue
            metrics = row.metrics
            latency = ttft = None
            if metrics is not None:
                if metrics.request_latency is not None:
                    latency = _value(metrics.request_latency.value)
                if metrics.time_to_first_token is not None:
                    ttft = _value(metrics.time_to_first_token.value)
            yield meta, latency, ttft, bytes(row.error).strip() not in _NO_ERROR
        return
    for record in _profiling(records):
        metrics = record.get("metrics", {})
        latency, ttft = metrics.get("request_latency"), metrics.get("time_to_first_token")
        yield (msgspec.convert(record["metadata"], _SessionMeta, strict=False),
               None if latency is None else _value(latency["value"]),
               None if ttft is None else _value(ttft["value"]), bool(record.get("error")))


def _present(values: np.ndarray, mask: np.ndarray) -> list[float | None]:
    return [v if ok else None for v, ok in zip(values.tolist(), mask.tolist(), strict=True)]


def sessions_of(records: Iterable[dict[str, Any]]) -> list[SessionSummary]:
    """Every session of the run's profiling requests, by session number.

    One streaming pass keeps seven numbers a request in typed arrays (about 45 bytes, not a
    record's dict: 11 KB a streamed request); the summaries are built from them at the end,
    a session at a time."""
    session, turn = array("q"), array("q")
    start, end = array("q"), array("q")
    latency, ttft = array("d"), array("d")
    flags = bytearray()  # bit 0: failed, 1: has a latency, 2: has a TTFT
    for meta, lat, first, failed in _profiling_rows(records):
        if meta.session_num < 0:
            continue
        session.append(meta.session_num)
        turn.append(meta.turn_index)
        start.append(meta.request_start_ns)
        end.append(meta.request_end_ns)
        latency.append(0.0 if lat is None else lat)
        ttft.append(0.0 if first is None else first)
        flags.append(failed | (lat is not None) << 1 | (first is not None) << 2)
    if not session:
        return []
    sessions = np.frombuffer(session, dtype=np.int64)
    # lexsort is stable: a session's turns by turn index, ties in the table's order.
    order = np.lexsort((np.frombuffer(turn, dtype=np.int64), sessions))
    sessions = sessions[order]
    starts = np.frombuffer(start, dtype=np.int64)[order]
    ends = np.frombuffer(end, dtype=np.int64)[order]
    latencies = np.frombuffer(latency, dtype=np.float64)[order]
    ttfts = np.frombuffer(ttft, dtype=np.float64)[order]
    bits = np.frombuffer(bytes(flags), dtype=np.uint8)[order]
    failed, has_latency, has_ttft = bits & 1 > 0, bits & 2 > 0, bits & 4 > 0
    bounds = np.flatnonzero(np.diff(sessions)) + 1
    firsts = np.concatenate(([0], bounds))
    lasts = np.concatenate((bounds, [sessions.size]))
    errors = np.add.reduceat(failed.astype(np.int64), firsts)
    durations = (np.maximum.reduceat(ends, firsts) - np.minimum.reduceat(starts, firsts))
    out = []
    for i, (a, b) in enumerate(zip(firsts.tolist(), lasts.tolist(), strict=True)):
        # model_construct: every field is already of its type (no per-session validation).
        out.append(SessionSummary.model_construct(
            session=int(sessions[a]), turns=b - a, errors=int(errors[i]),
            duration_ms=int(durations[i]) / _NS_PER_MS,
            request_latency_ms=_present(latencies[a:b], has_latency[a:b]),
            time_to_first_token_ms=_present(ttfts[a:b], has_ttft[a:b]),
        ))
    return out


class _TurnSessionId(msgspec.Struct):
    session: int = -1
    session_id: str = ""


_SESSION_IDS = msgspec.msgpack.Decoder(list[_TurnSessionId])


def conversation_ids(path: str | None, inline: bytes | None = None) -> list[str] | None:
    """Each dataset entry's session id by its flat index (AIPerf's ``conversation_id`` of a
    record: a ``multi_turn`` file's ``session_id``, a ShareGPT conversation's ``id``,
    ``session_<n>`` for a synthetic session), read from the dataset as a configure command
    carries it (``dataset_of``'s arguments); None for a dataset of single requests.
    Decodes those two fields only (no prompt text), and a session's turns share one str."""
    if inline is not None:
        data = zlib.decompress(inline)
    elif path:
        with open(path, "rb") as handle:
            data = handle.read()
    else:
        return None
    turns = _SESSION_IDS.decode(data)
    if not turns or turns[0].session < 0:
        return None
    ids: list[str] = []
    last = ""
    for turn in turns:
        if turn.session_id != last:
            last = turn.session_id
        ids.append(last)
    return ids


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
        for row in _decoded_lines(path, _line_type(tag)):
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
        for row in _decoded_lines(path, _MetaLine):
            meta = row.metadata
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
    """What each of ``urls`` (the config's, in order) served of the profiling requests.
    One streaming pass; the successful requests' latencies go to one float array with
    their URL's index beside it (12 bytes a request, no Python float each)."""
    counts = [0] * len(urls)
    errors = [0] * len(urls)
    latency, index_of = array("d"), array("i")
    for meta, lat, _, failed in _profiling_rows(records):
        index = meta.url_index
        if not 0 <= index < len(urls):
            continue
        counts[index] += 1
        if failed:
            errors[index] += 1
        elif lat is not None:
            latency.append(lat)
            index_of.append(index)
    values = np.frombuffer(latency, dtype=np.float64) if latency else np.empty(0)
    which = np.frombuffer(index_of, dtype=np.int32) if index_of else np.empty(0, np.int32)
    out = []
    for i, url in enumerate(urls):
        served = values[which == i]
        out.append(UrlSummary(
            url=mask_url(url), requests=counts[i], errors=errors[i],
            request_latency_p50_ms=float(np.percentile(served, 50)) if served.size else None,
            request_latency_p99_ms=float(np.percentile(served, 99)) if served.size else None,
        ))
    return out
