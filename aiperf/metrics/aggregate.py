"""Run-level results from the per-request records of one run, in numpy.

Warmup records are excluded from every statistic (they still appear in the per-request
export, marked ``warmup``). Before anything is computed the credit invariant is checked:
every credit issued has exactly one record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from aiperf.common.codec import PHASE_NAMES, PROFILING, MetricRecord
from aiperf.common.config import UserConfig
from aiperf.metrics.definitions import BY_TAG, NS_PER_MS
from aiperf.metrics.stats import summarize, summarize_adjusted
from aiperf.plugin.metadata import EndpointMetadata


def _arr(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def check_invariant(
    records: list[MetricRecord], issued_ranges: list[tuple[int, int]]
) -> dict[str, Any]:
    """Every issued credit id has exactly one record, and no record is of another id."""
    counts = Counter(r.credit_id for r in records)
    issued = {cid for first, count in issued_ranges for cid in range(first, first + count)}
    credits_issued = len(issued)
    duplicates = sorted(cid for cid, n in counts.items() if n > 1)
    missing = sorted(issued - set(counts))
    unexpected = sorted(set(counts) - issued)
    return {
        "credits_issued": credits_issued,
        "records_received": len(records),
        "ok": not (duplicates or missing or unexpected),
        "missing_credit_ids": missing[:100],
        "duplicate_credit_ids": duplicates[:100],
        "unexpected_credit_ids": unexpected[:100],
    }


def per_request_values(rec: MetricRecord, streaming: bool) -> dict[str, Any]:
    """One request's metrics in display units (what the JSONL export and SLOs read)."""
    values: dict[str, Any] = {
        "credit_to_start_latency": (rec.start_ns - rec.credit_ns) / NS_PER_MS,
    }
    if rec.error is not None:
        return values
    values["request_latency"] = rec.latency_ns / NS_PER_MS
    values["effective_latency"] = (rec.end_ns - rec.credit_ns) / NS_PER_MS
    values["input_sequence_length"] = rec.isl
    if rec.osl:
        values["output_sequence_length"] = rec.osl
    if streaming and rec.ttft_ns >= 0:
        values["time_to_first_token"] = rec.ttft_ns / NS_PER_MS
        if rec.ttst_ns >= 0:
            values["time_to_second_token"] = rec.ttst_ns / NS_PER_MS
        if rec.osl >= 2:
            itl_ns = (rec.latency_ns - rec.ttft_ns) / (rec.osl - 1)
            values["inter_token_latency"] = itl_ns / NS_PER_MS
            if itl_ns > 0:
                values["output_token_throughput_per_user"] = 1e9 / itl_ns
        if rec.chunk_gaps_ns:
            values["inter_chunk_latency"] = [g / NS_PER_MS for g in rec.chunk_gaps_ns]
    return values


def export_record(rec: MetricRecord, values: dict[str, Any]) -> dict[str, Any]:
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
        "metrics": {tag: {"value": v, "unit": BY_TAG[tag].unit} for tag, v in values.items()},
    }
    if rec.error is not None:
        out["error"] = {"code": rec.error.code, "type": rec.error.type,
                        "message": rec.error.message}
    return out


def compute_results(
    records: list[MetricRecord], config: UserConfig, metadata: EndpointMetadata,
    issued_ranges: list[tuple[int, int]], streaming: bool, export_to: Path | None = None,
) -> dict[str, Any]:
    """The run's results. The per-request table goes to ``export_to`` (a msgpack array,
    written one record at a time so the whole table never sits in memory; the result then
    holds its path under ``records_path``), or, without a path, into ``records``."""
    invariant = check_invariant(records, issued_ranges)
    credits_issued = invariant["credits_issued"]
    values = []  # per request, profiling phase only (what every statistic reads)
    profiling: list[MetricRecord] = []
    exported: list[dict[str, Any]] = []
    with table_writer(export_to, len(records)) as write:
        for record in records:
            record_values = per_request_values(record, streaming)
            row = export_record(record, record_values)
            if write is None:
                exported.append(row)
            else:
                write(row)
            if record.phase == PROFILING:
                profiling.append(record)
                values.append(record_values)
    ok = [(r, v) for r, v in zip(profiling, values, strict=True) if r.error is None]
    failed = [r for r in profiling if r.error is not None and not r.cancelled]
    cancelled = [r for r in profiling if r.cancelled]
    metrics: dict[str, Any] = {}

    def per_request(tag: str) -> np.ndarray:
        if tag == "inter_chunk_latency":
            return _arr([g for _, v in ok for g in v.get(tag, ())])
        return _arr([v[tag] for _, v in ok if tag in v])

    for spec in BY_TAG.values():
        if not spec.per_request:
            continue
        if spec.streaming_only and not streaming:
            continue
        if spec.tokens_only and not metadata.produces_tokens:
            continue
        data = per_request(spec.tag)
        if spec.tag == "credit_to_start_latency":
            data = _arr([v[spec.tag] for r, v in zip(profiling, values, strict=True)
                         if not r.cancelled])
        if data.size:
            metrics[spec.tag] = summarize(data, spec.unit)
        if spec.error_adjusted and data.size + len(failed):
            metrics[f"adj_{spec.tag}"] = summarize_adjusted(data, len(failed), spec.unit)

    measured = [r for r in profiling if not r.cancelled]
    duration_s = 0.0
    if measured:
        duration_s = (max(r.end_ns for r in measured) - min(r.start_ns for r in measured)) / 1e9
    n_ok, n_err = len(ok), len(failed)
    sum_isl = float(sum(r.isl for r, _ in ok))
    sum_osl = float(sum(r.osl for r, _ in ok))

    def scalar(tag: str, value: float) -> None:
        metrics[tag] = {"unit": BY_TAG[tag].unit, "avg": value}

    scalar("request_count", n_ok)
    scalar("error_request_count", n_err)
    scalar("request_error_rate", 100.0 * n_err / (n_ok + n_err) if n_ok + n_err else 0.0)
    if duration_s > 0:
        scalar("benchmark_duration", duration_s)
        scalar("request_throughput", n_ok / duration_s)
        if metadata.produces_tokens:
            scalar("output_token_throughput", sum_osl / duration_s)
        scalar("total_token_throughput", (sum_isl + sum_osl) / duration_s)
    if config.goodput:
        good = sum(1 for _, v in ok if _is_good(v, config.goodput))
        scalar("good_request_count", good)
        if duration_s > 0:
            scalar("goodput", good / duration_s)
        scalar("good_request_fraction", good / (n_ok + n_err) if n_ok + n_err else 0.0)

    mismatches = sum(1 for r, _ in ok if r.usage_mismatch)
    warnings = []
    if mismatches:
        warnings.append(
            f"server usage and the tokenizer disagree by more than 10% on {mismatches} of "
            f"{n_ok} requests; token counts use the server's usage"
        )
    if not invariant["ok"]:
        warnings.append(
            f"credit invariant broken: {credits_issued} credits issued, "
            f"{len(records)} records; missing {invariant['missing_credit_ids'][:10]}, "
            f"duplicated {invariant['duplicate_credit_ids'][:10]}"
        )
    walls = [r.wall_start_ns for r in profiling if r.wall_start_ns]
    table = {"records": exported} if export_to is None else {"records_path": str(export_to)}
    return {
        "metrics": metrics,
        "error_summary": error_summary(failed),
        **table,
        "invariant": invariant,
        "warnings": warnings,
        "was_cancelled": bool(cancelled),
        "cancelled_request_count": len(cancelled),
        "start_time": _iso(min(walls)) if walls else None,
        "end_time": _iso(max(walls) + int(duration_s * 1e9)) if walls else None,
    }


@contextlib.contextmanager
def table_writer(path: Path | None, count: int) -> Iterator[Callable[[Any], None] | None]:
    """Write a msgpack array of ``count`` items one item at a time: the array header,
    then each item encoded on its own (the concatenation is the same bytes as encoding the
    whole list)."""
    if path is None:
        yield None
        return
    encode = msgspec.msgpack.Encoder().encode
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(b"\xdd" + count.to_bytes(4, "big"))  # array 32
        yield lambda item: out.write(encode(item))


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


def error_summary(failed: list[MetricRecord]) -> list[dict[str, Any]]:
    counts = Counter(
        (r.error.code, r.error.type, r.error.message) for r in failed if r.error is not None
    )
    return [
        {"error_details": {"code": code, "type": kind, "message": message}, "count": n}
        for (code, kind, message), n in counts.most_common()
    ]


def _iso(wall_ns: int) -> str:
    return dt.datetime.fromtimestamp(wall_ns / 1e9, tz=dt.UTC).isoformat()
