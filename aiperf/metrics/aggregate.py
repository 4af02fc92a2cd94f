"""Run-level results from the per-request records of one run, in numpy.

Warmup records are excluded from every statistic (they still appear in the per-request
export, marked ``warmup``). Before anything is computed the credit invariant is checked:
every credit issued has exactly one record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np

from aiperf.common.codec import PHASE_NAMES, PROFILING, MetricRecord, is_cancellation
from aiperf.common.config import UserConfig
from aiperf.metrics.definitions import BY_TAG, NS_PER_MS
from aiperf.metrics.parity import add_request_values, add_usage_values, run_metrics
from aiperf.metrics.stats import (
    LEAN_VALUES,
    summarize,
    summarize_adjusted,
    summarize_adjusted_scaled,
    summarize_scaled,
)
from aiperf.plugin.metadata import EndpointMetadata


def check_invariant(
    credit_ids: np.ndarray, issued_ranges: list[tuple[int, int]]
) -> dict[str, Any]:
    """Every issued credit id has exactly one record, and no record is of another id."""
    ids, counts = np.unique(credit_ids, return_counts=True)
    issued = np.unique(np.concatenate(
        [np.arange(first, first + count, dtype=np.int64) for first, count in issued_ranges]
        or [np.empty(0, dtype=np.int64)]))
    duplicates = ids[counts > 1]
    missing = np.setdiff1d(issued, ids, assume_unique=True)
    unexpected = np.setdiff1d(ids, issued, assume_unique=True)
    return {
        "credits_issued": int(issued.size),
        "records_received": int(credit_ids.size),
        "ok": not (duplicates.size or missing.size or unexpected.size),
        "missing_credit_ids": missing[:100].tolist(),
        "duplicate_credit_ids": duplicates[:100].tolist(),
        "unexpected_credit_ids": unexpected[:100].tolist(),
    }


def per_request_values(rec: MetricRecord, streaming: bool,
                       produces_tokens: bool = True) -> dict[str, Any]:
    """One request's metrics in display units (what the JSONL export and SLOs read)."""
    values: dict[str, Any] = {}
    if rec.error is not None:
        if _started(rec):
            values["credit_to_start_latency"] = (rec.start_ns - rec.credit_ns) / NS_PER_MS
        return values
    values["credit_to_start_latency"] = (rec.start_ns - rec.credit_ns) / NS_PER_MS
    values["request_latency"] = rec.latency_ns / NS_PER_MS
    values["effective_latency"] = (rec.end_ns - rec.credit_ns) / NS_PER_MS
    values["input_sequence_length"] = rec.isl
    if produces_tokens:  # 0 is a value: a response of no tokens
        values["output_sequence_length"] = rec.osl
        values["output_token_count"] = max(0, rec.osl - max(0, rec.reasoning_tokens))
        if rec.reasoning_tokens >= 0:
            values["reasoning_token_count"] = rec.reasoning_tokens
    if rec.usage_prompt >= 0 or rec.usage_completion >= 0 or rec.usage_total >= 0 or \
            rec.usage_reasoning >= 0:
        add_usage_values(values, rec.usage_prompt, rec.usage_completion, rec.usage_total,
                         rec.usage_reasoning, produces_tokens)
    if streaming and rec.ttft_ns >= 0:
        values["time_to_first_token"] = rec.ttft_ns / NS_PER_MS
        if rec.ttst_ns >= 0:
            values["time_to_second_token"] = rec.ttst_ns / NS_PER_MS
        if rec.ttfo_ns >= 0:
            values["time_to_first_output_token"] = rec.ttfo_ns / NS_PER_MS
        if rec.osl >= 2:
            itl_ns = (rec.latency_ns - rec.ttft_ns) / (rec.osl - 1)
            values["inter_token_latency"] = itl_ns / NS_PER_MS
            if itl_ns > 0:
                values["output_token_throughput_per_user"] = 1e9 / itl_ns
        if rec.chunk_gaps_ns:
            values["inter_chunk_latency"] = [g / NS_PER_MS for g in rec.chunk_gaps_ns]
    if rec.http_reused >= 0:
        connection = rec.http_blocked_ns + rec.http_dns_ns + rec.http_connecting_ns
        duration = rec.http_sending_ns + rec.http_waiting_ns + rec.http_receiving_ns
        values["http_req_blocked"] = rec.http_blocked_ns / NS_PER_MS
        values["http_req_dns_lookup"] = rec.http_dns_ns / NS_PER_MS
        values["http_req_connecting"] = rec.http_connecting_ns / NS_PER_MS
        values["http_req_sending"] = rec.http_sending_ns / NS_PER_MS
        values["http_req_waiting"] = rec.http_waiting_ns / NS_PER_MS
        values["http_req_receiving"] = rec.http_receiving_ns / NS_PER_MS
        values["http_req_duration"] = duration / NS_PER_MS
        values["http_req_total"] = (connection + duration) / NS_PER_MS
        values["http_req_connection_reused"] = rec.http_reused
    add_request_values(values)
    return values


def _started(rec: MetricRecord) -> bool:
    """False for a request that failed before it was sent (cancelled before its send
    time, or its body could not be built): it has no start (0)."""
    return rec.error is None or rec.start_ns != 0


_UNITS = {tag: spec.unit for tag, spec in BY_TAG.items()}


def export_record(rec: MetricRecord, values: dict[str, Any],
                  sessions: _SessionIds | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {
            "credit_id": rec.credit_id,
            "benchmark_phase": PHASE_NAMES[rec.phase],
            "worker_id": rec.worker_id,
            "credit_issued_ns": rec.credit_ns,
            "request_start_ns": rec.start_ns,
            "request_end_ns": rec.end_ns,
            "timestamp_ns": rec.wall_start_ns,
            "was_cancelled": rec.cancelled,
        },
        "metrics": {tag: {"value": v, "unit": _UNITS[tag]} for tag, v in values.items()},
    }
    if rec.session >= 0:  # a multi-turn request: its session and turn (AIPerf's keys)
        out["metadata"]["session_num"] = rec.session
        out["metadata"]["turn_index"] = rec.turn_index
        if sessions is not None:
            sessions.add_to(out["metadata"], rec)
    if rec.url_index >= 0:  # one of several --url (round robin)
        out["metadata"]["url_index"] = rec.url_index
    if rec.error is not None:
        out["error"] = {"code": rec.error.code, "type": rec.error.type,
                        "message": rec.error.message}
    return out


class _SessionIds:
    """What a multi-turn record's metadata says of its session besides its number, as
    AIPerf's records have it: ``conversation_id``, the dataset's session id (by the dataset
    entry the record sent), and ``x_correlation_id``, the session header's value the worker
    sent (the run's tag and the session number). Looked up when the row is exported, so
    nothing of it travels with the record."""

    def __init__(self, conversation_ids: Sequence[str] | None, run: int) -> None:
        self._ids = conversation_ids or ()
        self._run = f"{run:08x}-"

    def add_to(self, metadata: dict[str, Any], rec: MetricRecord) -> None:
        if 0 <= rec.conversation < len(self._ids):
            metadata["conversation_id"] = self._ids[rec.conversation]
        metadata["x_correlation_id"] = f"{self._run}{rec.session}"


class _CreditIds:
    """Which credit ids came, a bit each (not 8 bytes): a bitmap from a little below the
    first id seen, grown by doubling; an id below it (an early record arriving late) or
    absurdly far above goes to a plain array, and an id seen again is counted apart.
    ``all`` rebuilds the ids with their repeats; ``check`` gives ``check_invariant``'s
    answer from the bitmap itself, a chunk of ids at a time."""

    SLACK = 1 << 16  # ids this far below the first one seen still go in the bitmap
    SPAN = 1 << 31  # bits at most (256 MiB): ids past it are kept as they are

    def __init__(self) -> None:
        self.count = 0
        self.base: int | None = None
        self.bits = bytearray()
        self.others = array("q")
        self.repeats: Counter[int] = Counter()

    def add(self, cid: int) -> None:
        self.count += 1
        base = self.base
        if base is None:
            base = self.base = max(0, cid - self.SLACK)
        offset = cid - base
        if not 0 <= offset < self.SPAN:
            self.others.append(cid)
            return
        byte, bit = offset >> 3, 1 << (offset & 7)
        bits = self.bits
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits), 64)))
        if bits[byte] & bit:
            self.repeats[cid] += 1
        else:
            bits[byte] |= bit

    def all(self) -> np.ndarray:
        seen = np.flatnonzero(np.unpackbits(np.frombuffer(self.bits, dtype=np.uint8),
                                            bitorder="little"))
        repeats = np.repeat(np.fromiter(self.repeats.keys(), dtype=np.int64, count=len(
            self.repeats)), np.fromiter(self.repeats.values(), dtype=np.int64,
                                        count=len(self.repeats)))
        return np.concatenate([seen.astype(np.int64) + (self.base or 0),
                               np.frombuffer(self.others, dtype=np.int64), repeats])

    def nbytes(self) -> int:
        return len(self.bits) + 8 * len(self.others) + 100 * len(self.repeats)

    CHUNK_IDS = 1 << 20  # ids unpacked at a time (a byte each)
    LIST = 100  # ids listed at most per kind, as check_invariant lists them

    def _bits(self, lo: int, hi: int, value: int) -> Iterator[int]:
        """Ids in [lo, hi) (within the bitmap) whose bit is ``value``, ascending."""
        base = self.base or 0
        for start in range(lo, hi, self.CHUNK_IDS):
            end = min(hi, start + self.CHUNK_IDS)
            first, last = (start - base) >> 3, (end - 1 - base) >> 3
            unpacked = np.unpackbits(np.frombuffer(self.bits, dtype=np.uint8,
                                                   count=last - first + 1, offset=first),
                                     bitorder="little")
            skip = (start - base) & 7
            found = np.flatnonzero(unpacked[skip:skip + end - start] == value)
            yield from (found[:self.LIST] + start).tolist()

    def check(self, issued_ranges: list[tuple[int, int]]) -> dict[str, Any]:
        """``check_invariant(self.all(), issued_ranges)``, without an 8-byte array of every
        id (and numpy's sorted copies of it: 50 MB at a million requests)."""
        merged: list[list[int]] = []
        for first, count in sorted((f, c) for f, c in issued_ranges if c > 0):
            if merged and first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], first + count)
            else:
                merged.append([first, first + count])
        base = self.base if self.base is not None else 0
        # Ids from here to base + SPAN: none seen. The bitmap may be longer than its span
        # (grown by doubling), but ids past the span are always kept apart.
        top = base + min(8 * len(self.bits), self.SPAN)
        others, other_counts = np.unique(np.frombuffer(self.others, dtype=np.int64),
                                         return_counts=True)
        seen_outside = set(others.tolist())
        duplicates = sorted({*self.repeats, *others[other_counts > 1].tolist()})
        missing: list[int] = []
        for lo, hi in merged:
            for part_lo, part_hi in ((lo, min(hi, base)), (max(lo, base), min(hi, top)),
                                     (max(lo, top), hi)):
                if len(missing) >= self.LIST or part_lo >= part_hi:
                    continue
                if part_lo >= base and part_hi <= top:
                    missing.extend(itertools.islice(self._bits(part_lo, part_hi, 0),
                                                    self.LIST - len(missing)))
                    continue
                ids = itertools.count(part_lo)  # outside the bitmap: seen only as others
                while len(missing) < self.LIST and (i := next(ids)) < part_hi:
                    if i not in seen_outside:
                        missing.append(i)
        unexpected = [i for i in others.tolist() if not any(
            lo <= i < hi for lo, hi in merged)][:self.LIST]
        edges = [base, *(x for lo, hi in merged for x in (lo, hi)), top]
        inside: list[int] = []
        for lo, hi in zip(edges[::2], edges[1::2], strict=True):  # the gaps between ranges
            lo, hi = max(lo, base), min(hi, top)
            if lo < hi and len(inside) < self.LIST:
                inside.extend(itertools.islice(self._bits(lo, hi, 1),
                                               self.LIST - len(inside)))
        unexpected = sorted(unexpected + inside)[:self.LIST]
        return {
            "credits_issued": sum(hi - lo for lo, hi in merged),
            "records_received": self.count,
            "ok": not (duplicates or missing or unexpected),
            "missing_credit_ids": missing,
            "duplicate_credit_ids": duplicates[:self.LIST],
            "unexpected_credit_ids": unexpected,
        }


# Integer-valued metrics, kept as 4-byte ints (1 for a flag) while the run goes, and
# turned into float64 (exactly: they are far below 2**53) when it ends.
_INT_METRICS = {"input_sequence_length": "i", "output_sequence_length": "i",
                "output_token_count": "i", "reasoning_token_count": "i",
                # The server's usage counts: below 2**31 (endpoints.base.MAX_TOKEN_COUNT).
                "usage_prompt_tokens": "i", "usage_completion_tokens": "i",
                "usage_total_tokens": "i", "usage_reasoning_tokens": "i",
                "http_req_connection_reused": "b"}
# Inter-chunk gaps are kept as the record's integer nanoseconds, 4 bytes a gap (8 once a gap
# passed 4.29 s), and divided into ms at the end: the same float64 division the per-request
# value gets, so the numbers are the ones a float64 array of ms would hold.
_GAPS = "inter_chunk_latency"
# A float metric's values wait in its float64 array this many records at most before they
# are moved to 4-byte nanoseconds (``_RunTotals.settle``).
SETTLE_RECORDS = 4096


class FloatColumn:
    """One metric's per-request values as the float64 array the host reads, kept as the
    records manager holds them until written: a float64 array (read in place), or integers
    that divided by ``scale`` (ns to ms) or as they are (token counts) give the values,
    identically. Converted a chunk at a time into the values file (``write_msgpack``), and
    whole only for the statistics of a column of at most ``LEAN_VALUES`` values: the end of
    a million-request run holds no float64 copy of its 15 million chunk gaps."""

    CHUNK = 1 << 20

    def __init__(self, data: np.ndarray, scale: float | None = None) -> None:
        self.data = data
        self.scale = scale

    def __len__(self) -> int:
        return int(self.data.size)

    @property
    def nbytes(self) -> int:
        return 8 * int(self.data.size)

    def _convert(self, part: np.ndarray) -> np.ndarray:
        floats = part.astype(np.float64)
        if self.scale is not None:
            floats /= self.scale
        return floats

    def floats(self) -> np.ndarray:
        """The values as float64: the array itself when it is one (read-only use)."""
        if self.data.dtype == np.float64:
            return self.data
        return self._convert(self.data)

    def __bytes__(self) -> bytes:
        return self.floats().tobytes()

    def write_into(self, out: IO[bytes]) -> None:
        if self.data.dtype == np.float64:
            out.write(memoryview(self.data).cast("B"))
            return
        for first in range(0, self.data.size, self.CHUNK):
            out.write(self._convert(self.data[first:first + self.CHUNK]).data)

    def _lean(self) -> bool:
        return self.data.dtype != np.float64 and self.data.size > LEAN_VALUES

    def summary(self, unit: str) -> dict[str, Any]:
        if self._lean():
            with contextlib.suppress(ValueError):  # values spanning over 62 bits
                return summarize_scaled(self.data, self.scale, unit)
        return summarize(self.floats(), unit)

    def adjusted_summary(self, failures: int, unit: str) -> dict[str, Any]:
        if self._lean():
            with contextlib.suppress(ValueError):
                return summarize_adjusted_scaled(self.data, self.scale, failures, unit)
        return summarize_adjusted(self.floats(), failures, unit)


class _RunTotals:
    """One pass over a run's records keeps only what the statistics need: per-metric
    values in compact arrays and counters (a record's own objects are dropped as soon as it
    is exported), so the records manager's memory grows by about 230 bytes a streamed
    request (18 for the timeline, 8 for its credit id, the rest its values).

    Every profiling record is a success or an error, once: a request the client gave up
    on (cut off at the end of a duration run, past its request or first-byte timeout) is
    an error, and ``cancelled`` also counts those cut off at the end of the run. The
    benchmark spans the first request start to the last response end; the end of a
    request given up on is not a response's, so it counts only when no request got one."""

    def __init__(self, goodput: dict[str, float] | None, keep_timeline: bool = True,
                 batch_timeline: bool = False) -> None:
        self.goodput = goodput
        self.credit_ids = _CreditIds()
        # Without the timeline (sketch mode) nothing here grows with the run but the
        # credit bitmap: the values are drained into sketches after each batch.
        self.keep_timeline = keep_timeline
        # Sketch mode's windows: the timeline's arrays are kept for one batch at a time
        # (``drain_timeline``), never for the run.
        self._timeline_on = keep_timeline or batch_timeline
        self.values: dict[str, array[Any]] = {}
        # Float metrics whose values are whole nanoseconds over NS_PER_MS (latencies, HTTP
        # phases), moved out of ``values`` by ``settle`` as those integers: 4 bytes a value
        # (8 past 4.29 s) instead of 8. ``_float_only``: metrics found not to be.
        self.ns: dict[str, array[Any]] = {}
        self._float_only: set[str] = set()
        self._record: MetricRecord | None = None  # the record being added (its gaps)
        self.errors: Counter[tuple[int | None, str, str]] = Counter()
        self.n_ok = self.n_err = self.cancelled = self.good = self.mismatches = 0
        self.planned_cancelled = 0
        self.sum_isl = self.sum_osl = self.sum_output = self.sum_reasoning = 0
        self.first_start: int | None = None
        self.first_wall: int | None = None
        # The earliest warm-up stamp (credit or start): a concurrency ramp starts with the
        # run's first phase, so steady state bounds the ramp from here (aiperf.windows).
        self.warmup_first: int | None = None
        # (perf end, wall end) of the last response end, and of the last given-up request.
        self.last_end: tuple[int, int] | None = None
        self.last_given_up: tuple[int, int] | None = None
        # The timeline of the profiling records, in arrival order: 18 bytes a record (20
        # with a list-valued metric). Which metrics a record carried is one 2-byte pattern
        # id (records share a handful of patterns), and a list-valued metric keeps its
        # per-record length, so the host rebuilds each metric's record index without a
        # 4-byte index per value.
        self.start_ns = array("q")
        self.end_ns = array("q")
        self.pattern = array("H")
        self.pattern_ids: dict[tuple[bool, tuple[str, ...]], int] = {}
        # Per pattern, where each of its values goes (in the values' order): found once per
        # pattern, not once per value of every record.
        self._sinks: list[list[Callable[[Any], None]]] = []
        # 2 bytes a length, widened to 4 only if a request had more than 65,535 values.
        self.list_lengths: dict[str, array[int]] = defaultdict(lambda: array("H"))

    def add(self, record: MetricRecord, values: dict[str, Any]) -> None:
        self.credit_ids.add(record.credit_id)
        if record.phase != PROFILING:
            stamps = [t for t in (record.credit_ns, record.start_ns) if t]
            if stamps and (self.warmup_first is None or min(stamps) < self.warmup_first):
                self.warmup_first = min(stamps)
            return
        start = record.start_ns
        if _started(record):
            if self.first_start is None or start < self.first_start:
                self.first_start = start
                self.first_wall = record.wall_start_ns or None
            wall = record.wall_start_ns
            end = (record.end_ns, wall + (record.end_ns - start) if wall else 0)
            if is_cancellation(record.error):
                if self.last_given_up is None or end > self.last_given_up:
                    self.last_given_up = end
            elif self.last_end is None or end > self.last_end:
                self.last_end = end
            if self._timeline_on:
                self.start_ns.append(start)
                self.end_ns.append(record.end_ns)
        elif self._timeline_on:  # failed before it was sent: its credit time stands in
            self.start_ns.append(record.credit_ns)
            self.end_ns.append(max(record.end_ns, record.credit_ns))
        key = (record.error is None, tuple(values))
        pattern = self.pattern_ids.get(key)
        if pattern is None:
            pattern = self.pattern_ids[key] = len(self.pattern_ids)
            self._sinks.append(self._sinks_for(values))
        if self._timeline_on:
            self.pattern.append(pattern)
        sinks = self._sinks[pattern]
        self._record = record
        self.cancelled += record.cancelled
        if record.cancelled and record.error is not None and \
                record.error.message.endswith("--request-cancellation-rate"):
            self.planned_cancelled += 1
        if record.error is not None:
            self.n_err += 1
            self.errors[(record.error.code, record.error.type, record.error.message)] += 1
            # A failed request's only value: its client-side queueing, if it started.
            for sink, value in zip(sinks, values.values(), strict=True):
                sink(value)
            return
        self.n_ok += 1
        self.sum_isl += record.isl
        self.sum_osl += record.osl
        self.sum_reasoning += values.get("reasoning_token_count", 0)
        self.sum_output += values.get("output_token_count", 0)
        self.mismatches += record.usage_mismatch
        if self.goodput and _is_good(values, self.goodput):
            self.good += 1
        for sink, value in zip(sinks, values.values(), strict=True):
            sink(value)

    def _sinks_for(self, values: dict[str, Any]) -> list[Callable[[Any], None]]:
        """Where each value of a record like this goes: a metric's array, or (a list-valued
        metric) its array and its per-record lengths. A metric is list-valued in every
        record or in none (``per_request_values``)."""
        return [functools.partial(self._add_list, tag) if isinstance(value, list)
                else self._array(tag).append for tag, value in values.items()]

    def _array(self, tag: str) -> array[Any]:
        if tag not in self.values:
            self.values[tag] = array(_INT_METRICS.get(tag, "I" if tag == _GAPS else "d"))
        return self.values[tag]

    def _add_list(self, tag: str, value: list[float]) -> None:
        if tag == _GAPS:
            assert self._record is not None
            gaps = self._record.chunk_gaps_ns
            kept = self._array(tag)
            before = len(kept)
            try:
                kept.extend(gaps)
            except OverflowError:  # a gap past 4.29 s (or negative): 8 bytes a gap
                # extend stopped at the gap that did not fit, the ones before it appended.
                wide = self.values[tag] = array("q", kept[:before])
                wide.extend(gaps)
        else:
            self._array(tag).extend(value)
        if not self.keep_timeline:
            return
        lengths = self.list_lengths[tag]
        if len(value) > 0xFFFF and lengths.typecode == "H":
            lengths = self.list_lengths[tag] = array("I", lengths)
        lengths.append(len(value))

    def timeline(self) -> dict[str, Any]:
        """The timeline and the pattern table, as the host reads them back
        (``aiperf.results.Timeline.from_wire``). The arrays go as views, not copies: they
        are encoded (as msgpack bin) straight from the arrays."""
        return {
            "start_ns": memoryview(self.start_ns),
            "end_ns": memoryview(self.end_ns),
            "pattern": memoryview(self.pattern),
            "patterns": [[ok, list(tags)] for ok, tags in self.pattern_ids],
            "list_lengths": {tag: [n.itemsize, memoryview(n)]
                             for tag, n in self.list_lengths.items()},
        }

    def span(self) -> tuple[float, int | None]:
        """(benchmark duration in s, wall clock ns of its end)."""
        last = self.last_end or self.last_given_up
        if self.first_start is None or last is None:
            return 0.0, None
        return max(0, last[0] - self.first_start) / 1e9, last[1] or None

    def settle(self) -> None:
        """Move each float metric's values added since the last call to its array of
        integer nanoseconds, when every one is exactly such a value: converted back (the
        division a float64 copy gets at the end) it must give the same float64 bit for bit,
        else the metric stays float64 for the rest of the run (its nanoseconds so far
        turned back into floats ahead of it). Exact mode, every ``SETTLE_RECORDS``."""
        for tag, staged in self.values.items():
            if staged.typecode != "d" or not len(staged) or tag in self._float_only:
                continue
            new = np.frombuffer(staged, dtype=np.float64)
            ns = np.rint(new * NS_PER_MS)
            exact = bool(np.isfinite(ns).all()) and float(np.abs(ns).max()) < 2.0**53
            ints = ns.astype(np.int64) if exact else None
            if ints is not None and not np.array_equal(ints / NS_PER_MS, new):
                ints = None
            del new, ns
            if ints is None:
                self._float_only.add(tag)
                kept = self.ns.pop(tag, None)
                if kept is not None:
                    staged[0:0] = array("d", (np.frombuffer(kept, dtype=np.dtype(
                        kept.typecode)) / NS_PER_MS).tobytes())
                continue
            kept = self.ns.get(tag)
            narrow = int(ints.min()) >= 0 and int(ints.max()) < 1 << 32
            if kept is None:
                kept = self.ns[tag] = array("I" if narrow else "q")
            elif kept.typecode == "I" and not narrow:  # a value past 4.29 s: 8 bytes
                kept = self.ns[tag] = array("q", np.frombuffer(
                    kept, dtype=np.uint32).astype(np.int64).tobytes())
            kept.frombytes(ints.astype(np.uint32 if kept.typecode == "I" else np.int64
                                       ).tobytes())
            del staged[:]

    def column(self, tag: str) -> FloatColumn | None:
        """A metric's values, once the run is over (after a last ``settle``)."""
        compact = self.values.get(tag)
        if compact is None:
            return None
        kept = self.ns.get(tag)
        if kept is not None:
            return FloatColumn(np.frombuffer(kept, dtype=np.dtype(kept.typecode)), NS_PER_MS)
        data = np.frombuffer(compact, dtype=np.dtype(compact.typecode))
        return FloatColumn(data, NS_PER_MS if tag == _GAPS else None)

    def close(self) -> None:
        """No more records: the sinks (bound to this object) are dropped."""
        self._sinks.clear()
        self._record = None

    def drain_values(self) -> dict[str, np.ndarray]:
        """The values added since the last drain, as float64 copies, the compact arrays
        emptied (kept: the sinks append to them): sketch mode, after each batch."""
        out: dict[str, np.ndarray] = {}
        for tag, compact in self.values.items():
            if not len(compact):
                continue
            data = np.frombuffer(compact, dtype=np.dtype(compact.typecode)).astype(np.float64)
            if tag == _GAPS:
                data /= NS_PER_MS
            out[tag] = data
            del compact[:]
        return out

    def drain_timeline(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, end, pattern id) of the records added since the last drain, as copies,
        the arrays emptied: sketch mode's windows, after each batch."""
        out = (np.array(self.start_ns, dtype=np.int64), np.array(self.end_ns, dtype=np.int64),
               np.array(self.pattern, dtype=np.intp))
        del self.start_ns[:], self.end_ns[:], self.pattern[:]
        return out

    def pattern_table(self, tags: Iterable[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Per pattern id: whether its records succeeded, and whether they carry each tag."""
        keys = list(self.pattern_ids)  # in id order: ids are given in insertion order
        ok = np.array([key[0] for key in keys], dtype=bool)
        return ok, {tag: np.array([tag in key[1] for key in keys], dtype=bool)
                    for tag in tags}

    def nbytes(self) -> int:
        arrays: list[array[Any]] = [self.start_ns, self.end_ns, self.pattern,
                                    *self.values.values(), *self.ns.values(),
                                    *self.list_lengths.values()]
        return self.credit_ids.nbytes() + sum(a.itemsize * len(a) for a in arrays)


# Per successful record, the token counts sketch mode's throughput timeline adds up.
_TOKEN_TAGS = ("output_sequence_length", "input_sequence_length")
# Sketch mode's per-window metrics: the per-request latencies that soak objectives name.
# Not inter_chunk_latency (a value per chunk: the settling buffer would hold osl values a
# request, and ITL already says how chunks are paced), not the token counts or HTTP phases.
WINDOW_METRICS = ("request_latency", "time_to_first_token", "time_to_second_token",
                  "time_to_first_output_token", "inter_token_latency",
                  "output_token_throughput_per_user", "effective_latency")
#: Base window length when the profile sets no ``slice_duration``.
DEFAULT_WINDOW_S = 10.0


class _SketchWindows:
    """Sketch mode's time windows, kept as the run goes: per base window (``base_s``, by
    each record's start relative to the run's first start, as ``aiperf.windows`` cuts
    them) a ``MetricSketch`` per metric of ``WINDOW_METRICS`` and the ok / error counts.
    Longer windows of a multiple of ``base_s`` are merged from these by the host.

    Records arrive out of order (a request is recorded when it ends), so the grid's origin
    (the earliest start) is settled first: the first ``SETTLE_RECORDS`` records, or those
    spanning ``SETTLE_S``, are held as arrays (about 60 bytes a record) and the
    grid starts at the earliest of them. A later record that started even earlier lands in
    a window before the grid's first (negative index): the windows then stand
    ``offset_s`` after the run's first start instead of at it, which the labels show.

    Memory: the windows a record can still reach in the ordinary course (the newest
    ``LIVE_WINDOWS``) keep live sketches; older ones are frozen into their serialized
    bytes (about 8 bytes a bucket in use: 1-2 KB for a latency spanning one or two
    decades at 1 % accuracy) and thawed only if a late record reaches them. A 2-hour run
    at 50 requests/s and 10 s windows held 720 x 7 frozen sketches in 4.3 MB (854 bytes a
    sketch on average, 1.9 KB at most: lognormal TTFT and token gaps). The run's own relative
    accuracy is kept (a coarser one would turn more windows near a threshold
    INCONCLUSIVE for a few megabytes)."""

    SETTLE_RECORDS = 4096
    BIN_RECORDS = 2048  # once settled, records are binned this many at a time
    SETTLE_S = 30.0
    LIVE_WINDOWS = 3

    def __init__(self, base_s: float, relative_accuracy: float) -> None:
        self.base_s = float(base_s)
        self._base_ns = round(self.base_s * 1e9)
        self._alpha = relative_accuracy
        self.anchor: int | None = None  # the grid's origin, perf_counter ns, once settled
        self.origin: int | None = None  # the earliest time seen
        self.last_end: int | None = None
        # Batches held until the grid's origin settles: each record's time and outcome,
        # each metric's (times, values).
        self._pending: list[tuple[np.ndarray, np.ndarray,
                                  dict[str, tuple[np.ndarray, np.ndarray]]]] = []
        self._pending_records = 0
        self._counts: dict[int, list[int]] = {}  # window -> [n_ok, n_err]
        self._live: dict[int, dict[str, Any]] = {}  # window -> tag -> MetricSketch
        self._frozen: dict[int, dict[str, bytes]] = {}
        self._newest = 0

    def add(self, times: np.ndarray, ends: np.ndarray, ok: np.ndarray,
            metrics: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """A batch of profiling records: each one's time (its start; a request that failed
        before it was sent, its credit time), end and success, and per metric of
        ``WINDOW_METRICS`` the times of the records that carried it and their values."""
        if not times.size:
            return
        first, last = int(times.min()), int(ends.max())
        self.origin = first if self.origin is None else min(self.origin, first)
        self.last_end = last if self.last_end is None else max(self.last_end, last)
        self._pending.append((times, ok, metrics))
        self._pending_records += int(times.size)
        if self.anchor is None:
            if (self._pending_records < self.SETTLE_RECORDS
                    and self.last_end - self.origin < self.SETTLE_S * 1e9):
                return
            self.anchor = self.origin
        elif self._pending_records < self.BIN_RECORDS:
            return  # a sketch's add costs ~30 us whatever its size: fewer, larger ones
        self._bin()

    def _bin(self) -> None:
        from aiperf.statistics.sketch import MetricSketch  # ddsketch: only in sketch mode

        anchor, width = self.anchor, self._base_ns
        assert anchor is not None
        pending, self._pending, self._pending_records = self._pending, [], 0
        index = np.concatenate([(times - anchor) // width for times, _, _ in pending])
        ok = np.concatenate([ok for _, ok, _ in pending])
        for outcome, mask in ((0, ok), (1, ~ok)):
            windows, counts = np.unique(index[mask], return_counts=True)
            for k, n in zip(windows.tolist(), counts.tolist(), strict=True):
                self._counts.setdefault(k, [0, 0])[outcome] += n
        for tag in WINDOW_METRICS:
            parts = [metrics[tag] for _, _, metrics in pending if tag in metrics]
            if not parts:
                continue
            bins = np.concatenate([(times - anchor) // width for times, _ in parts])
            data = np.concatenate([values for _, values in parts])
            order = np.argsort(bins, kind="stable")
            bins, data = bins[order], data[order]
            edges = np.flatnonzero(np.diff(bins)) + 1
            for k, chunk in zip(bins[np.r_[0, edges]].tolist(), np.split(data, edges),
                                strict=True):
                sketches = self._thawed(k)
                sketch = sketches.get(tag)
                if sketch is None:
                    sketch = sketches[tag] = MetricSketch(self._alpha)
                sketch.add(chunk)
        self._newest = max(self._newest, int(index.max()))
        for k in [k for k in self._live if k < self._newest - self.LIVE_WINDOWS + 1]:
            self._frozen[k] = {tag: s.to_bytes() for tag, s in self._live.pop(k).items()}

    def _thawed(self, k: int) -> dict[str, Any]:
        sketches = self._live.get(k)
        if sketches is not None:
            return sketches
        from aiperf.statistics.sketch import MetricSketch

        frozen = self._frozen.pop(k, {})
        sketches = self._live[k] = {tag: MetricSketch.from_bytes(raw)
                                    for tag, raw in frozen.items()}
        return sketches

    def nbytes(self) -> int:
        """Bytes of the settling buffer and the frozen windows (live sketches aside)."""
        held = sum(times.nbytes + ok.nbytes + sum(t.nbytes + v.nbytes
                                                  for t, v in metrics.values())
                   for times, ok, metrics in self._pending)
        return held + sum(len(b) for w in self._frozen.values() for b in w.values())

    def finish(self) -> dict[str, Any]:
        """The values file's ``sketch_windows``: every base window that holds a request,
        ``start_s`` since the run's first start (``index``: its place on the grid, whose
        window 0 starts ``offset_s`` after the first start), and ``end_s``, the run's last
        end, where the last window ends."""
        if self._pending:
            if self.anchor is None:
                self.anchor = self.origin
            self._bin()
        origin = self.origin if self.origin is not None else 0
        anchor = self.anchor if self.anchor is not None else origin
        offset_s = (anchor - origin) / 1e9
        windows = []
        for k in sorted(self._counts):
            n_ok, n_err = self._counts[k]
            live = self._live.get(k)
            sketches = ({tag: s.to_bytes() for tag, s in live.items()} if live is not None
                        else self._frozen.get(k, {}))
            windows.append({"index": k, "start_s": offset_s + k * self.base_s,
                            "n_ok": n_ok, "n_err": n_err, "sketches": sketches})
        self._live.clear()
        self._frozen.clear()
        end_s = (self.last_end - origin) / 1e9 if self.last_end is not None else 0.0
        return {"base_s": self.base_s, "offset_s": offset_s, "end_s": max(0.0, end_s),
                "windows": windows}


class _EndBins:
    """Sketch mode's timeline, in bins instead of a row per request: per bin, the
    successful requests that ended in it and their output and input tokens (what
    throughput's batch means are split by: ``aiperf.windows.Sample.throughput_windows``),
    the requests that started in it and the time requests spent in flight in it (what the
    validity signals need: ``aiperf.validity``). Bins start ``FIRST_WIDTH_NS`` wide and
    double (pairs merged) whenever the run outgrows ``MAX_BINS``, so a run of any length
    holds at most ``MAX_BINS`` x 5 counts (160 KB), at a width of at most 1/2048 of the
    run. Time zero is the first batch's earliest start; a time before it (a batch of
    another worker, late by its 20 ms at most) counts in the first bin.

    Beside the bins, exactly: how many requests started, the first and last start and the
    last end, and for a closed loop of ``slots`` the ends of the ``slots`` earliest starts
    (ramp-up ends at the last of them) and of the requests in flight at the latest start
    (ramp-down starts at the first of those): both bounded by ``slots``."""

    MAX_BINS = 4096
    FIRST_WIDTH_NS = 10_000_000
    ROWS = ("requests", "output_tokens", "input_tokens", "starts", "busy_ns")

    def __init__(self, slots: int = 0) -> None:
        self.origin: int | None = None
        self.width_ns = self.FIRST_WIDTH_NS
        self.counts = np.zeros((len(self.ROWS), 0), dtype=np.int64)
        self.slots = slots
        self.n_starts = 0
        self.first_start: int | None = None
        self.last_start: int | None = None
        self.last_end: int | None = None
        self._earliest = np.empty((2, 0), dtype=np.int64)  # (start, end), by start
        self._tail = np.empty(0, dtype=np.int64)  # ends at or after the latest start

    def add(self, starts: np.ndarray, ends: np.ndarray, ok: np.ndarray, osl: np.ndarray,
            isl: np.ndarray) -> None:
        """A batch's profiling records: start (a request that failed before it was sent:
        its credit time) and end, success, and token counts (of the successful ones)."""
        if not starts.size:
            return
        if self.origin is None:
            self.origin = int(starts.min())
        self._exact(starts, ends)
        since_start = np.maximum(starts - self.origin, 0)
        since_end = np.maximum(ends - self.origin, since_start)
        while int(since_end.max()) // self.width_ns >= self.MAX_BINS:
            self._coarsen()
        width = self.width_ns
        first, last = since_start // width, since_end // width
        self._grow(int(last.max()) + 1)
        # Only the bins this batch reaches (a few: its requests ran about together) are
        # counted, then added in place: not the whole row per batch.
        low = int(first.min())
        size = int(last.max()) + 1 - low
        first, last = first - low, last - low
        counts = self.counts[:, low:low + size]
        ended = last[ok]
        for row, weights in ((0, None), (1, osl), (2, isl)):
            counts[row] += np.bincount(ended, weights=weights, minlength=size
                                       ).astype(np.int64)
        counts[3] += np.bincount(first, minlength=size)
        # Time in flight per bin: the part of the first and last bin a request covers,
        # and every bin between in full (a difference array, summed once per batch).
        since_start -= low * width
        since_end -= low * width
        same = first == last
        busy = np.zeros(size)
        busy += np.bincount(first[same], weights=(since_end - since_start)[same],
                            minlength=size)
        spans = ~same
        busy += np.bincount(first[spans], weights=((first + 1) * width - since_start)[spans],
                            minlength=size)
        busy += np.bincount(last[spans], weights=(since_end - last * width)[spans],
                            minlength=size)
        full = np.bincount(first[spans] + 1, minlength=size + 1)
        full -= np.bincount(last[spans], minlength=size + 1)
        busy += np.cumsum(full[:size]) * float(width)
        counts[4] += np.rint(busy).astype(np.int64)

    def _exact(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.n_starts += int(starts.size)
        low, high, end = int(starts.min()), int(starts.max()), int(ends.max())
        self.first_start = low if self.first_start is None else min(self.first_start, low)
        self.last_start = high if self.last_start is None else max(self.last_start, high)
        self.last_end = end if self.last_end is None else max(self.last_end, end)
        if self.slots:
            both = np.concatenate([self._earliest, np.stack([starts, ends])], axis=1)
            if both.shape[1] > self.slots:
                keep = np.argpartition(both[0], self.slots - 1)[:self.slots]
                both = both[:, keep]
            self._earliest = both
            tail = np.concatenate([self._tail, ends])
            self._tail = tail[tail >= self.last_start]

    def _grow(self, size: int) -> None:
        if size > self.counts.shape[1]:
            grown = np.zeros((len(self.ROWS), min(self.MAX_BINS, max(
                size, 2 * self.counts.shape[1]))), dtype=np.int64)
            grown[:, :self.counts.shape[1]] = self.counts
            self.counts = grown

    def _coarsen(self) -> None:
        counts = self.counts
        if counts.shape[1] % 2:
            counts = np.concatenate([counts, np.zeros((len(self.ROWS), 1), np.int64)], 1)
        self.counts = counts[:, 0::2] + counts[:, 1::2]
        self.width_ns *= 2

    def nbytes(self) -> int:
        return int(self.counts.nbytes + self._earliest.nbytes + self._tail.nbytes)

    def finish(self, first_start: int | None) -> dict[str, Any]:
        """The values file's ``end_bins``: bin k spans ``offset_s + k * width_s`` to the
        next, in seconds since the run's first start; the exact times in perf_counter ns
        (``ramp_up_ns`` and ``ramp_down_ns`` None unless a closed loop had more requests
        than slots)."""
        used = int(np.flatnonzero(self.counts.any(axis=0)).max()) + 1 \
            if self.counts.any() else 0
        offset = ((self.origin - first_start) / 1e9
                  if self.origin is not None and first_start is not None else 0.0)
        ramp_up = ramp_down = None
        if self.slots and self.n_starts > self.slots and self._tail.size:
            ramp_up, ramp_down = int(self._earliest[1].max()), int(self._tail.min())
        return {"offset_s": offset, "width_s": self.width_ns / 1e9,
                **{row: self.counts[i, :used].tolist() for i, row in enumerate(self.ROWS)},
                "origin_ns": self.origin, "n_starts": self.n_starts,
                "first_start_ns": self.first_start, "last_start_ns": self.last_start,
                "last_end_ns": self.last_end, "slots": self.slots,
                "ramp_up_ns": ramp_up, "ramp_down_ns": ramp_down}


class RunAggregator:
    """A run's results, built batch by batch as its records arrive: ``add`` each batch,
    ``finish`` once. Between batches it holds only the compact arrays of ``_RunTotals``
    (8 bytes a value, about 20 a record for the timeline, 8 for the credit id) and the
    counters; each record's own objects are dropped once it is exported and added.

    ``table`` receives each record's export row (``export_record``) as it is added: a
    ``JsonlTable``, a list's append, or None to keep no table.

    Sketch mode (``config.sketch``): each per-request metric goes into a ``MetricSketch``
    after each batch instead of an array, and no timeline is kept, so memory stays flat
    whatever the run's length (a bit a request for the credit invariant aside). The result
    then has no per-request ``values`` and no ``timeline`` (None: windows, steady state and
    time slices need per-request times), ``sketches`` holds each metric's serialized
    sketch, and ``sketch_windows`` the per-window sketches of ``WINDOW_METRICS`` with
    their counts (``_SketchWindows``: windows of ``slice_duration``, else 10 s)."""

    def __init__(self, config: UserConfig, metadata: EndpointMetadata, streaming: bool,
                 table: Callable[[dict[str, Any]], None] | None = None,
                 conversation_ids: Sequence[str] | None = None, run: int = 0) -> None:
        self._config = config
        self._metadata = metadata
        self._streaming = streaming
        self._table = table
        # A multi-turn run's rows name each session (``conversation_ids``: the dataset's
        # session id of each entry, ``breakdowns.conversation_ids``; ``run``: the run's tag).
        self._sessions = _SessionIds(conversation_ids, run) if conversation_ids else None
        self._totals = _RunTotals(config.goodput, keep_timeline=not config.sketch,
                                  batch_timeline=config.sketch)
        self._sketches: dict[str, Any] | None = {} if config.sketch else None
        self._windows = (_SketchWindows(config.slice_duration or DEFAULT_WINDOW_S,
                                        config.sketch_relative_accuracy)
                         if config.sketch else None)
        closed_loop = config.resolved_timing_strategy() == "concurrency"
        self._end_bins = (_EndBins(config.resolved_concurrency() or 1 if closed_loop else 0)
                          if config.sketch else None)
        self.count = 0
        self._unsettled = 0  # records added since the float values last settled

    def add(self, records: Iterable[MetricRecord]) -> None:
        streaming, tokens = self._streaming, self._metadata.produces_tokens
        write, add, sessions = self._table, self._totals.add, self._sessions
        n = 0
        for record in records:
            values = per_request_values(record, streaming, tokens)
            if write is not None:
                write(export_record(record, values, sessions))
            add(record, values)
            n += 1
        self.count += n
        if self._sketches is not None:
            self._drain_to_sketches()
            return
        self._unsettled += n
        if self._unsettled >= SETTLE_RECORDS:
            self._totals.settle()
            self._unsettled = 0

    def _drain_to_sketches(self) -> None:
        from aiperf.statistics.sketch import MetricSketch  # ddsketch: only in sketch mode

        assert self._sketches is not None
        totals = self._totals
        drained = totals.drain_values()
        for tag, data in drained.items():
            sketch = self._sketches.get(tag)
            if sketch is None:
                sketch = self._sketches[tag] = MetricSketch(
                    self._config.sketch_relative_accuracy)
            sketch.add(data)
        if self._windows is None:
            return
        # The batch's values are in its records' order, each metric's of the records that
        # carried it: the pattern ids say which, so each value gets its record's start.
        start, end, pattern = totals.drain_timeline()
        if not start.size:
            return
        windowed = [t for t in WINDOW_METRICS if t in drained]
        tokens = [t for t in _TOKEN_TAGS if t in drained]
        ok, carries = totals.pattern_table([*windowed, *tokens])
        record_ok = ok[pattern]
        self._windows.add(start, end, record_ok, {
            tag: (start[carries[tag][pattern]], drained[tag]) for tag in windowed})
        if self._end_bins is not None:
            counts = []
            for tag in _TOKEN_TAGS:
                per_record = np.zeros(start.size)
                if tag in drained:
                    per_record[carries[tag][pattern]] = drained[tag]
                counts.append(per_record[record_ok])
            self._end_bins.add(start, end, record_ok, *counts)

    def buffer_bytes(self) -> int:
        """Bytes held in the per-record arrays (what grows with the run)."""
        return self._totals.nbytes()

    def window_bytes(self) -> int:
        """Sketch mode: bytes of the time windows' settling buffer (bounded), frozen
        sketches (a few kilobytes a window) and the timeline's bins (bounded); 0
        otherwise."""
        held = self._windows.nbytes() if self._windows is not None else 0
        return held + (self._end_bins.nbytes() if self._end_bins is not None else 0)

    def finish(self, issued_ranges: list[tuple[int, int]]) -> dict[str, Any]:
        """The run's results as ``compute_results`` gives them, without the table's key
        (``records`` or ``records_path``: the caller's) and with ``values`` as views of
        the arrays rather than copies (bytes-like: encoded or ``bytes()``-ed by the
        caller). Called once. ``values`` holds a ``FloatColumn`` per metric: the compact
        arrays, converted to float64 one metric (for its statistics) or one chunk (into
        the values file) at a time, so the end of a run never holds them all as float64."""
        totals, metadata, streaming = self._totals, self._metadata, self._streaming
        # The sinks refer back to the totals (a cycle): without them, the arrays go as soon
        # as the caller drops the result, not at the cyclic collector's next full pass.
        totals.close()
        sketches = self._sketches
        if sketches is None:
            totals.settle()
        columns = ({tag: column for tag in totals.values
                    if (column := totals.column(tag)) is not None}
                   if sketches is None else {})
        invariant = totals.credit_ids.check(issued_ranges)
        n_ok, n_err = totals.n_ok, totals.n_err
        metrics: dict[str, Any] = {}
        for spec in BY_TAG.values():
            if not spec.per_request:
                continue
            if spec.streaming_only and not streaming:
                continue
            if spec.tokens_only and not metadata.produces_tokens:
                continue
            if sketches is not None:
                self._sketch_stats(metrics, spec.tag, spec.unit, spec.error_adjusted, n_err)
                continue
            column = columns.get(spec.tag)
            size = len(column) if column is not None else 0
            if column is not None and size:
                metrics[spec.tag] = column.summary(spec.unit)
            if spec.error_adjusted and size + n_err:
                metrics[f"adj_{spec.tag}"] = (
                    column.adjusted_summary(n_err, spec.unit) if column is not None
                    else summarize_adjusted(np.empty(0), n_err, spec.unit))

        duration_s, end_wall = totals.span()

        def scalar(tag: str, value: float) -> None:
            metrics[tag] = {"unit": BY_TAG[tag].unit, "avg": value}

        scalar("request_count", n_ok)
        scalar("error_request_count", n_err)
        scalar("request_error_rate", 100.0 * n_err / (n_ok + n_err) if n_ok + n_err else 0.0)
        if metadata.produces_tokens:
            scalar("total_output_tokens", totals.sum_output)
            scalar("total_reasoning_tokens", totals.sum_reasoning)
        if duration_s > 0:
            scalar("benchmark_duration", duration_s)
            scalar("request_throughput", n_ok / duration_s)
            if metadata.produces_tokens:
                scalar("output_token_throughput", totals.sum_osl / duration_s)
            scalar("total_token_throughput", (totals.sum_isl + totals.sum_osl) / duration_s)
        metrics.update(run_metrics(metrics, duration_s))
        if self._config.goodput:
            scalar("good_request_count", totals.good)
            if duration_s > 0:
                scalar("goodput", totals.good / duration_s)
            scalar("good_request_fraction",
                   totals.good / (n_ok + n_err) if n_ok + n_err else 0.0)

        warnings = []
        if totals.mismatches:
            warnings.append(
                f"server usage and the tokenizer disagree by more than 10% on "
                f"{totals.mismatches} of {n_ok} requests; token counts use the server's "
                f"usage"
            )
        if not invariant["ok"]:
            warnings.append(
                f"credit invariant broken: {invariant['credits_issued']} credits issued, "
                f"{invariant['records_received']} records; missing "
                f"{invariant['missing_credit_ids'][:10]}, duplicated "
                f"{invariant['duplicate_credit_ids'][:10]}"
            )
        first_wall = totals.first_wall
        extra: dict[str, Any] = {}
        if sketches is not None:
            extra["sketches"] = {tag: sketch.to_bytes() for tag, sketch in sketches.items()}
        if self._windows is not None:
            # Per-window sketches, what windowed objectives are judged on (the host merges
            # base windows into longer ones: ``ProfileResult.sketch_windows``).
            extra["sketch_windows"] = self._windows.finish()
        if self._end_bins is not None:
            extra["end_bins"] = self._end_bins.finish(totals.first_start)
        return {
            "metrics": metrics,
            # Every per-request value behind the statistics, float64 per metric once
            # written (``FloatColumn``): what the host computes any other percentile from.
            "values": columns,
            # Which profiling request each value came from, and when it ran: what windows,
            # steady state and time slices select requests by.
            "timeline": totals.timeline() if totals.keep_timeline else None,
            **extra,
            "error_summary": error_summary(totals.errors),
            "invariant": invariant,
            "warnings": warnings,
            # The run was cut short, not just requests the client cancelled on purpose
            # (--request-cancellation-rate: their message says so; worker.PLANNED_CANCEL).
            "was_cancelled": bool(totals.cancelled - totals.planned_cancelled),
            "cancelled_request_count": totals.cancelled,
            # perf_counter ns, the timeline's clock; None without a warm-up phase.
            "warmup_start_ns": totals.warmup_first,
            "start_time": _iso(first_wall) if first_wall else None,
            "end_time": _iso(end_wall) if end_wall else None,
        }


    def _sketch_stats(self, metrics: dict[str, Any], tag: str, unit: str, adjusted: bool,
                      failures: int) -> None:
        from aiperf.statistics.sketch import sketch_summary, sketch_summary_adjusted

        assert self._sketches is not None
        sketch = self._sketches.get(tag)
        count = sketch.count if sketch is not None else 0
        if count:
            metrics[tag] = sketch_summary(sketch, unit)
        if adjusted and count + failures:
            if sketch is None:
                from aiperf.statistics.sketch import MetricSketch

                sketch = MetricSketch(self._config.sketch_relative_accuracy)
            metrics[f"adj_{tag}"] = sketch_summary_adjusted(sketch, failures, unit)


def compute_results(
    records: Iterable[MetricRecord], config: UserConfig, metadata: EndpointMetadata,
    issued_ranges: list[tuple[int, int]], streaming: bool, export_to: Path | None = None,
    count: int | None = None,
) -> dict[str, Any]:
    """The run's results from all its records at once: ``RunAggregator`` fed one batch.
    The per-request table goes to ``export_to`` (JSON Lines, as the records manager writes
    it; the result then holds its path under ``records_path`` and its line count under
    ``records_count``) or, without a path, into ``records``. ``values`` holds each
    metric's per-request values as float64 bytes. ``count`` is accepted for callers that
    announced a one-pass stream's length; nothing needs it now."""
    del count
    exported: list[dict[str, Any]] = []
    table = JsonlTable(export_to) if export_to is not None else None
    try:
        aggregator = RunAggregator(config, metadata, streaming,
                                   table=exported.append if table is None else table)
        aggregator.add(records)
    finally:
        if table is not None:
            table.close()
    out = aggregator.finish(issued_ranges)
    out["values"] = {tag: bytes(column) for tag, column in out["values"].items()}
    out.update({"records": exported} if table is None
               else {"records_path": str(table.path), "records_count": table.count})
    return out


class JsonlTable:
    """The per-request table as JSON Lines, one export row a line, appended as rows come
    (profile_export.jsonl's lines, so the host streams it to the artifact as is). Rows
    are encoded into one growing buffer, written out every ``FLUSH_BYTES``: a batch of
    records costs one write, not two a row."""

    FLUSH_BYTES = 1 << 18

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._out = open(path, "wb")  # noqa: SIM115 - closed by close()/discard()
        self._buf = bytearray()
        self._encode_into = msgspec.json.Encoder().encode_into

    def __call__(self, row: dict[str, Any]) -> None:
        buf = self._buf
        self._encode_into(row, buf, -1)
        buf += b"\n"
        self.count += 1
        if len(buf) >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._out.write(self._buf)
            self._buf = bytearray()

    def close(self) -> None:
        if not self._out.closed:
            self.flush()
            self._out.close()

    def discard(self) -> None:
        """Close and remove the file (a run dropped before its results)."""
        self._buf = bytearray()
        self._out.close()
        self.path.unlink(missing_ok=True)


def _is_good(values: dict[str, Any], thresholds: dict[str, float]) -> bool:
    for tag, limit in thresholds.items():
        value = values.get(tag)
        if value is None:
            return False
        if BY_TAG[tag].higher_is_better:
            if value < limit:
                return False
        elif value > limit:
            return False
    return True


def error_summary(errors: Counter[tuple[int | None, str, str]]) -> list[dict[str, Any]]:
    return [
        {"error_details": {"code": code, "type": kind, "message": message}, "count": n}
        for (code, kind, message), n in errors.most_common()
    ]


def _iso(wall_ns: int) -> str:
    return dt.datetime.fromtimestamp(wall_ns / 1e9, tz=dt.UTC).isoformat()


_ENCODE = msgspec.msgpack.Encoder().encode


def _write_length(out: IO[bytes], n: int, fixed: int, sixteen: bytes,
                  thirty_two: bytes) -> None:
    """A msgpack container's header: the shortest of its three forms that holds ``n``."""
    if n < 16:
        out.write(bytes([fixed | n]))
    elif n < 1 << 16:
        out.write(sixteen + n.to_bytes(2, "big"))
    else:
        out.write(thirty_two + n.to_bytes(4, "big"))


def _write_bin_header(out: IO[bytes], n: int) -> None:
    if n < 1 << 8:
        out.write(b"\xc4" + n.to_bytes(1, "big"))
    elif n < 1 << 16:
        out.write(b"\xc5" + n.to_bytes(2, "big"))
    else:
        out.write(b"\xc6" + n.to_bytes(4, "big"))


def write_msgpack(out: IO[bytes], obj: Any) -> None:
    """Encode ``obj`` to ``out`` as ``msgspec.msgpack.encode`` would, but write each
    bytes-like leaf (the value arrays' views) straight from its buffer: encoding the whole
    dict first would copy every array once more at the end of the run."""
    if isinstance(obj, Mapping):
        _write_length(out, len(obj), 0x80, b"\xde", b"\xdf")  # fixmap, map 16, map 32
        for key, value in obj.items():
            out.write(_ENCODE(key))
            write_msgpack(out, value)
    elif isinstance(obj, list):
        _write_length(out, len(obj), 0x90, b"\xdc", b"\xdd")  # fixarray, array 16, 32
        for item in obj:
            write_msgpack(out, item)
    elif isinstance(obj, memoryview | bytearray | bytes):
        view = memoryview(obj).cast("B")
        _write_bin_header(out, view.nbytes)
        out.write(view)
    elif isinstance(obj, FloatColumn):  # float64 bytes, converted as they are written
        _write_bin_header(out, obj.nbytes)
        obj.write_into(out)
    else:
        out.write(_ENCODE(obj))
