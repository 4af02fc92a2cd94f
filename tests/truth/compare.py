"""Compare what a run reported with a case's truth; every mismatch is one line, measured vs truth.

Every path (the Python API, the CLI's artifacts, a pytest run) is read into the same two
shapes, AIPerf's: ``summary`` as in ``profile_export_aiperf.json`` (a metric tag to its
statistics in display units) and ``records`` as in ``profile_export.jsonl`` (one dict per
request, ``metrics`` holding ``{"value", "unit"}``). So one checker serves them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from tests.harness.reference_servers import ServerStats
from tests.truth import client_box
from tests.truth.cases import (
    EARLY_MS,
    FROM_REQUEST_START,
    NEAR_ZERO_MS,
    TOLERANCE,
    Case,
    Exact,
    Expectation,
    NearZero,
    Reported,
    Time,
    ZeroOrAbsent,
)

# Derived numbers recomputed from the run's own figures must agree to rounding only.
REL_EXACT = 1e-6
# benchmark_duration against the records' own start and end stamps: the two may be read at
# slightly different points of a request's end.
DURATION_SLACK_MS = 2.0
# A server wake-up later than this is worth a note in a failure message.
SERVER_LATE_MS = 2.0
# A server wake-up (a scheduled send or its canary's) later than this means the box starved
# the server (its wake-ups are normally about 1 ms late; this is the tightest tolerance,
# c=1's): the run says nothing about the engine and is measured again, up to
# STARVED_RETRIES times. Only the server, an independent witness, can call a retry: an
# engine that measures wrong on a quiet box fails at once, and one that starves the box
# itself fails every attempt.
STARVED_MS = 3.0
STARVED_RETRIES = 2
# The client's box is witnessed too, by the kernel (client_box.py): a client process that
# waited longer than STARVED_MS for a CPU within one sample was kept from stamping on time
# by other processes (its own CPU is not in that wait). The same bound on retries holds: an
# engine that starves itself (its processes crowding its worker off the cores) fails every
# attempt.


def check_run(case: Case, concurrency: int, requests: int, summary: dict[str, Any],
              records: Sequence[dict[str, Any]], server: ServerStats | None) -> list[str]:
    """Every way a run of ``requests`` at ``concurrency`` disagrees with the truth (empty:
    it agrees). ``server`` is what the server saw during the run, if known."""
    profiling = [r for r in records if r["metadata"].get("benchmark_phase") == "profiling"]
    problems = _check_accounting(requests, profiling, server)
    # The truth is the schedule as the server kept it: its own wake-ups run a little late
    # (epoll waits in whole milliseconds). A wait for a slow client is not added.
    late = _median(server.late_ms) if server is not None and server.late_ms else 0.0
    for tag, expected in case.per_request(concurrency).items():
        if isinstance(expected, Time) and expected.floor and expected.ms and late:
            expected = replace(expected, server_late_ms=late)
        problems += _check_per_request(tag, expected, summary, profiling, concurrency)
    for tag in case.absent:
        if tag in summary:
            problems.append(f"{tag}: reported ({_stats(summary[tag])}), but this case has none")
    for tag, expected in case.run_level(requests).items():
        problems += _check_scalar(tag, expected, summary)
    problems += _check_throughputs(case, concurrency, requests, summary, profiling)
    problems += _check_identities(profiling)
    if server is not None:
        problems += _check_reuse(profiling, server)
    return problems


def failure_message(title: str, problems: list[str], server: ServerStats | None,
                    client_wait_ms: float | None = None) -> str:
    """The assertion text: what disagreed, and whether the server (and the client's box,
    ``client_wait_ms``: ``ClientBox.worst_wait_ms``) kept time."""
    lines = [title, *problems]
    if client_wait_ms is not None and client_wait_ms > SERVER_LATE_MS:
        lines.append(f"note: a client process waited up to {client_wait_ms:.1f} ms for a CPU "
                     f"within one sample (the kernel's run delay, sampled every "
                     f"{client_box.SAMPLE_S * 1000:.0f} ms or later): the box was busy")
    if server is not None and server.late_ms and max(server.late_ms) > SERVER_LATE_MS:
        lines.append(f"note: the server's own wake-ups were up to {max(server.late_ms):.1f} ms "
                     f"late (median {_median(server.late_ms):.1f}): the box was busy")
    if server is not None and server.stalls_ms:
        lines.append(f"note: the server's loop stalled {len(server.stalls_ms)} times while "
                     f"serving, up to {max(server.stalls_ms):.1f} ms: the box was busy")
    if server is not None and server.blocked_ms and max(server.blocked_ms) > SERVER_LATE_MS:
        lines.append(f"note: the server's writes waited up to {max(server.blocked_ms):.1f} ms "
                     f"(median {_median(server.blocked_ms):.1f}) for the client to read")
    return "\n  ".join(lines)


def starved(server: ServerStats | None) -> bool:
    """The server could not keep time: a scheduled send, or its canary, woke too late."""
    if server is None:
        return False
    return max([0.0, *server.late_ms, *server.stalls_ms]) > STARVED_MS


def client_starved(client_wait_ms: float | None) -> bool:
    """The kernel kept a client process off the CPU too long (``ClientBox``)."""
    return client_wait_ms is not None and client_wait_ms > STARVED_MS


def measure_until_the_box_keeps_time(
    measure: Callable[[], tuple[list[str], ServerStats]],
) -> tuple[list[str], ServerStats, int, float | None]:
    """``measure()`` -> (problems, what the server saw); run again while it disagrees with the
    truth and the server or the client was starved. Returns the last problems, stats,
    attempts made and the client's worst wait for a CPU (``ClientBox.worst_wait_ms``)."""
    attempts = 1
    with client_box.ClientBox() as box:
        problems, seen = measure()
    while (problems and (starved(seen) or client_starved(box.worst_wait_ms))
           and attempts <= STARVED_RETRIES):
        attempts += 1
        with client_box.ClientBox() as box:
            problems, seen = measure()
    return problems, seen, attempts, box.worst_wait_ms


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def _stats(entry: dict[str, Any]) -> str:
    shown = {k: entry[k] for k in ("min", "p50", "max", "avg", "count") if k in entry}
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in shown.items())


def _value(record: dict[str, Any], tag: str) -> Any:
    metric = record.get("metrics", {}).get(tag)
    return None if metric is None else metric["value"]


def _check_accounting(n: int, profiling: Sequence[dict[str, Any]],
                      server: ServerStats | None) -> list[str]:
    problems = []
    if len(profiling) != n:
        problems.append(f"records: {len(profiling)} profiling records, truth {n}")
    errors = [r["error"] for r in profiling if r.get("error")]
    if errors:
        problems.append(f"errors: {len(errors)} of {len(profiling)} requests failed, truth "
                        f"none; first: {errors[0]}")
    if server is not None and server.requests != n:
        problems.append(f"the server answered {server.requests} requests, truth {n}")
    return problems


def _check_per_request(tag: str, expected: Expectation, summary: dict[str, Any],
                       profiling: Sequence[dict[str, Any]], concurrency: int) -> list[str]:
    entry = summary.get(tag)
    if isinstance(expected, ZeroOrAbsent):
        if entry is not None and (entry.get("max") or 0) != 0:
            return [f"{tag}: {_stats(entry)}, truth 0 or not reported"]
        return []
    if entry is None:
        return [f"{tag}: not reported, truth {_describe(expected, concurrency)}"]
    count = entry.get("count")
    values: list[float] = []
    for record in profiling:
        value = _value(record, tag)
        if isinstance(value, list):
            values += value
        elif value is not None:
            values.append(value)
    problems = []
    if isinstance(expected, Exact):
        if entry.get("min") != expected.value or entry.get("max") != expected.value:
            problems.append(f"{tag}: min {entry.get('min')}, max {entry.get('max')}, truth "
                            f"{expected.value} for every request")
        if count != len(profiling):
            problems.append(f"{tag}: count {count}, truth {len(profiling)} (every request)")
    elif isinstance(expected, Reported):
        if count != len(profiling):
            problems.append(f"{tag}: count {count}, truth {len(profiling)} (every request)")
    elif isinstance(expected, NearZero):
        limit = NEAR_ZERO_MS[concurrency]
        if not entry.get("p50", math.inf) <= limit:
            problems.append(f"{tag}: p50 {entry.get('p50')} ms, truth ~0 (within {limit} ms)")
    else:
        net = _median_less_lost(tag, profiling) if tag in FROM_REQUEST_START else None
        problems += _check_time(tag, expected, entry, concurrency, net)
    if values and count is not None and len(values) != count:
        problems.append(f"{tag}: the summary counts {count} values, the records hold "
                        f"{len(values)}")
    return problems


def _describe(expected: Expectation, concurrency: int) -> str:
    if isinstance(expected, Time):
        return f"{expected.ms:.3f} ms ± {TOLERANCE[concurrency].of(expected.ms):.3f}"
    if isinstance(expected, Exact):
        return str(expected.value)
    if isinstance(expected, Reported):
        return "a value for every request"
    return f"~0 (within {NEAR_ZERO_MS[concurrency]} ms)"


def _lost_ms(record: dict[str, Any]) -> float:
    """Time inside a request's latency before its answered exchange began: lost on a dead
    pooled connection and the fresh one's set-up when the transport resent it, else 0
    (``FROM_REQUEST_START``). Never negative: the phases are clock reads of the same
    exchange, so a difference below 0 is rounding."""
    latency = _value(record, "request_latency")
    exchange = _value(record, "http_req_duration")
    if not isinstance(latency, int | float) or not isinstance(exchange, int | float):
        return 0.0
    return max(0.0, latency - exchange)


def _median_less_lost(tag: str, profiling: Sequence[dict[str, Any]]) -> float | None:
    """The median over requests of ``tag`` less the time each lost before its answered
    exchange; None when no request lost any (the summary's own p50 is checked then)."""
    lost = [_lost_ms(record) for record in profiling]
    if not any(ms > DURATION_SLACK_MS for ms in lost):
        return None
    net = [value - ms for record, ms in zip(profiling, lost, strict=True)
           if isinstance(value := _value(record, tag), int | float)]
    return _median(net) if net else None


def _check_time(tag: str, expected: Time, entry: dict[str, Any], concurrency: int,
                net_p50: float | None = None) -> list[str]:
    """``net_p50``: the median less each request's time lost before its answered exchange,
    checked instead of the summary's p50 when given (see ``FROM_REQUEST_START``)."""
    problems = []
    tolerance = TOLERANCE[concurrency].of(expected.ms)
    if expected.with_setup:
        tolerance += NEAR_ZERO_MS[concurrency]
    # The server's late_ms is, per response, its LATEST wake-up: an event before that one
    # (the first token of a long stream) may have been on time. So each request's truth lies
    # between the schedule and the schedule plus its response's lateness, and their median
    # between the schedule and the schedule plus the median lateness.
    late = expected.server_late_ms
    shown = f"{expected.ms:.3f} ms" + (
        f" to {expected.ms + late:.3f} (schedule {expected.ms:.3f} + up to {late:.3f} the "
        f"server ran late)" if late else "")
    p50 = entry.get("p50") if net_p50 is None else net_p50
    if expected.median and (p50 is None or p50 < expected.ms - tolerance
                            or p50 > expected.ms + late + tolerance):
        which = ("p50" if net_p50 is None
                 else "p50 less each request's time lost on a dead connection")
        problems.append(f"{tag}: {which} {p50} ms, truth {shown} ± {tolerance:.3f} "
                        f"({_stats(entry)})")
    lowest = entry.get("min")
    if expected.floor and lowest is not None and lowest < expected.ms - EARLY_MS:
        problems.append(f"{tag}: min {lowest:.3f} ms, but no request can take less than "
                        f"{expected.ms:.3f} ms (the server's schedule)")
    return problems


def _check_scalar(tag: str, expected: Expectation, summary: dict[str, Any]) -> list[str]:
    entry = summary.get(tag)
    value = None if entry is None else entry.get("avg")
    if isinstance(expected, ZeroOrAbsent):
        return [] if not value else [f"{tag}: {value}, truth 0 or not reported"]
    assert isinstance(expected, Exact)
    if value is None:
        return [f"{tag}: not reported, truth {expected.value}"]
    if value != expected.value:
        return [f"{tag}: {value}, truth {expected.value}"]
    return []


def _check_throughputs(case: Case, concurrency: int, requests: int, summary: dict[str, Any],
                       profiling: Sequence[dict[str, Any]]) -> list[str]:
    """benchmark_duration is last response end - first request start (checked against the
    records' own stamps and against the schedule's minimum); the throughputs are counts
    over it."""
    entry = summary.get("benchmark_duration")
    if entry is None:
        return ["benchmark_duration: not reported"]
    duration = entry["avg"]
    problems = []
    lower = case.min_duration_s(concurrency, requests)
    if duration < lower - EARLY_MS / 1000:
        problems.append(f"benchmark_duration: {duration:.4f} s, but {requests} "
                        f"requests of {case.latency_ms} ms at c={concurrency} take at least "
                        f"{lower:.4f} s")
    starts = [r["metadata"]["request_start_ns"] for r in profiling]
    ends = [r["metadata"]["request_end_ns"] for r in profiling]
    if starts and ends:
        spanned = (max(ends) - min(starts)) / 1e9
        if abs(duration - spanned) > DURATION_SLACK_MS / 1000:
            problems.append(f"benchmark_duration: {duration:.4f} s, truth (last end - first "
                            f"start of the records) {spanned:.4f} s")
    if duration <= 0:
        return problems
    osl_sum = sum(_value(r, "output_sequence_length") or 0 for r in profiling)
    expected = {"request_throughput": len(profiling) / duration}
    if case.produces_tokens:
        expected["output_token_throughput"] = osl_sum / duration
    for tag, truth in expected.items():
        got = summary.get(tag, {}).get("avg")
        if got is None or not math.isclose(got, truth, rel_tol=REL_EXACT):
            problems.append(f"{tag}: {got}, truth {truth:.4f} (count / benchmark_duration)")
    return problems


def _check_identities(profiling: Sequence[dict[str, Any]]) -> list[str]:
    """What the definitions make equal within each request."""
    problems: list[str] = []
    for record in profiling:
        if record.get("error"):
            continue
        v = {tag: m["value"] for tag, m in record.get("metrics", {}).items()}
        where = f"request {record['metadata'].get('credit_id')}"
        if {"inter_token_latency", "time_to_first_token", "output_sequence_length",
                "request_latency"} <= set(v):
            itl = (v["request_latency"] - v["time_to_first_token"]) / (
                v["output_sequence_length"] - 1)
            if not math.isclose(v["inter_token_latency"], itl, rel_tol=1e-6, abs_tol=1e-6):
                problems.append(f"inter_token_latency: {v['inter_token_latency']:.4f} ms at "
                                f"{where}, truth (latency - TTFT) / (OSL - 1) = {itl:.4f}")
        parts = ("http_req_sending", "http_req_waiting", "http_req_receiving")
        if "http_req_duration" in v and set(parts) <= set(v):
            total = sum(v[p] for p in parts)
            if abs(v["http_req_duration"] - total) > 0.01:
                problems.append(f"http_req_duration: {v['http_req_duration']:.4f} ms at "
                                f"{where}, truth sending + waiting + receiving = {total:.4f}")
        parts = ("http_req_blocked", "http_req_dns_lookup", "http_req_connecting",
                 "http_req_duration")
        if "http_req_total" in v and set(parts) <= set(v):
            total = sum(v[p] for p in parts)
            if abs(v["http_req_total"] - total) > 0.01:
                problems.append(f"http_req_total: {v['http_req_total']:.4f} ms at {where}, "
                                f"truth blocked + dns + connecting + duration = {total:.4f}")
        if {"output_token_count", "reasoning_token_count", "output_sequence_length"} <= set(v):
            parts_sum = v["output_token_count"] + v["reasoning_token_count"]
            if parts_sum != v["output_sequence_length"]:
                problems.append(f"output_sequence_length: {v['output_sequence_length']} at "
                                f"{where}, truth reasoning + output tokens = {parts_sum}")
        if len(problems) >= 5:  # the same identity broken on every request says it once
            break
    return problems


def _check_reuse(profiling: Sequence[dict[str, Any]], server: ServerStats) -> list[str]:
    """Each connection the server accepted carried exactly one request that opened it."""
    reused = [_value(r, "http_req_connection_reused") for r in profiling]
    if any(v is None for v in reused):
        missing = sum(v is None for v in reused)
        return [f"http_req_connection_reused: missing on {missing} of {len(reused)} requests, "
                f"truth 0 or 1 on each"]
    opened = sum(1 for v in reused if v == 0)
    if opened != server.connections:
        return [f"http_req_connection_reused: {opened} requests on a new connection, truth "
                f"{server.connections} (connections the server accepted)"]
    return []
