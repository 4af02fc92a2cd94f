"""Validity signals on hand-built runs whose answers are known: a schedule kept or missed, a
rate delivered or not (with a random schedule's chance allowed for), slots kept full or
left idle, a worker's loop lag and CPU cut to the run's span; and the probe itself."""

from __future__ import annotations

import asyncio
import time
from array import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import gamma

from aiperf.common.config import UserConfig
from aiperf.results import MetricResult, ProfileResult, Timeline
from aiperf.services.load_probe import CPU_EVERY, LoadProbe
from aiperf.validity import (
    Signal,
    Validity,
    ValidityLimits,
    assess,
    cpu_fraction,
    lag_p99_ms,
    rate_limit,
    steady_span_ns,
    time_weighted_in_flight,
)

MS = 1_000_000
S = 1_000_000_000
URL = "http://127.0.0.1:9"


def timeline(start_ns: np.ndarray, end_ns: np.ndarray) -> Timeline:
    n = start_ns.size
    zeros = np.zeros(n, dtype=np.int32)
    return Timeline(start_ns.astype(np.int64), end_ns.astype(np.int64), np.ones(n, bool),
                    zeros, zeros, np.full(n, -1, dtype=np.int8))


def report(tick_ns: np.ndarray, lag_ns: np.ndarray, cpu_at_ns: np.ndarray,
           cpu_ns: np.ndarray) -> dict[str, object]:
    return {"tick_ns": tick_ns.astype(np.int64).tobytes(),
            "lag_ns": lag_ns.astype(np.int64).tobytes(),
            "cpu_at_ns": cpu_at_ns.astype(np.int64).tobytes(),
            "cpu_ns": cpu_ns.astype(np.int64).tobytes(), "period_ns": 10 * MS}


def steady_worker(span_ns: int, lag_ms: float, cpu: float) -> dict[str, object]:
    """Ticks every 10 ms with a constant lag, CPU at a constant fraction of a core, from
    a second before the run to a second after it."""
    ticks = np.arange(-S, span_ns + S, 10 * MS)
    at = ticks[::CPU_EVERY]
    return report(ticks, np.full(ticks.size, lag_ms * MS), at, (at + S) * cpu)


def result(config: UserConfig, start_ns: np.ndarray, end_ns: np.ndarray,
           credit_to_start_ms: np.ndarray | None = None,
           loads: dict[str, dict[str, object]] | None = None) -> ProfileResult:
    metrics = {}
    if credit_to_start_ms is not None:
        metrics["credit_to_start_latency"] = MetricResult(
            "credit_to_start_latency", "ms", {}, array("d", credit_to_start_ms))
    return ProfileResult("run", metrics, [], [], {}, [], False, None, None, config=config,
                         _timeline=timeline(start_ns, end_ns), _worker_load=loads)


def closed_loop(slots: int, per_slot: int, latency_ns: int, gap_ns: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """``slots`` slots each sending ``per_slot`` requests of ``latency_ns`` back to back,
    ``gap_ns`` idle between one's end and the next's start."""
    starts = np.array([[k * (latency_ns + gap_ns) + slot * 1000 for k in range(per_slot)]
                       for slot in range(slots)]).ravel()
    return starts, starts + latency_ns


def by_name(validity: Validity) -> dict[str, Signal]:
    return {s.name: s for s in validity.signals}


# -- open loop ---------------------------------------------------------------------------


def test_a_schedule_kept_is_valid_and_one_missed_names_the_lag_and_a_remedy() -> None:
    config = UserConfig(url=URL, request_rate=100, arrival_pattern="constant",
                        request_count=100)
    start = np.arange(100) * 10 * MS
    loads = {"worker_0": steady_worker(int(start[-1]), 0.2, 0.1)}
    kept = result(config, start, start + MS, np.full(100, 0.5), loads)
    assert kept.validity is not None and kept.validity.valid
    assert by_name(kept.validity)["schedule_lag_p99"].measured == pytest.approx(0.5)
    missed = assess(result(config, start, start + MS, np.linspace(0, 400, 100), loads),
                    config)
    lag = by_name(missed)["schedule_lag_p99"]
    assert not missed.valid and not lag.ok and lag.measured == pytest.approx(396, abs=1)
    assert missed.reason().splitlines() == [f"schedule_lag_p99: {lag.detail}"]
    assert "more workers" in lag.detail and "lower request_rate" in lag.detail


def test_a_constant_rate_below_95_percent_is_invalid_and_at_it_valid() -> None:
    config = UserConfig(url=URL, request_rate=100, arrival_pattern="constant")
    n = 200
    for achieved, valid in ((100.0, True), (96.0, True), (90.0, False)):
        start = (np.arange(n) * S / achieved).astype(np.int64)
        signal = by_name(assess(result(config, start, start + MS), config))["achieved_rate"]
        assert signal.ok is valid and signal.measured == pytest.approx(achieved, rel=1e-6)
        assert signal.limit == pytest.approx(95.0)


def test_the_rate_limit_of_a_random_schedule_is_its_chance_span() -> None:
    limits = ValidityLimits()
    assert rate_limit(100, 30, "constant", 1.0, limits) == pytest.approx(95)
    # 29 exponential gaps at 100/s exceed this span once in a thousand runs.
    span = gamma.ppf(0.999, 29, scale=0.01)
    assert rate_limit(100, 30, "poisson", 1.0, limits) == pytest.approx(29 / span)
    # A smoother gamma schedule (shape 4) is allowed less; many requests reach 95 %.
    assert rate_limit(100, 30, "gamma", 4.0, limits) > rate_limit(100, 30, "poisson", 1.0,
                                                                  limits)
    assert rate_limit(100, 1_000_000, "poisson", 1.0, limits) == pytest.approx(95)


def test_a_client_that_kept_a_poisson_schedule_is_rarely_called_invalid() -> None:
    """Seeded: 4,000 perfectly kept Poisson schedules of 30 requests; the rate signal may
    fire by chance at most ``rate_chance`` of the time (plus simulation error)."""
    rng = np.random.default_rng(7)
    limits = ValidityLimits()
    n, rate, runs = 30, 20.0, 4000
    limit = rate_limit(rate, n, "poisson", 1.0, limits)
    spans = rng.exponential(1 / rate, size=(runs, n - 1)).sum(axis=1)
    false_invalid = np.mean((n - 1) / spans < limit)
    assert false_invalid <= limits.rate_chance + 3 * np.sqrt(limits.rate_chance / runs)
    # ...while a client that delivered half of that rate is caught most of the time.
    assert np.mean((n - 1) / (spans / 0.5) < limit) > 0.5


# -- closed loop -------------------------------------------------------------------------


def test_full_slots_are_valid_and_slots_idle_most_of_the_time_are_not() -> None:
    config = UserConfig(url=URL, concurrency=4, request_count=200)
    start, end = closed_loop(4, 50, 10 * MS, 50_000)
    full = by_name(assess(result(config, start, end), config))["achieved_concurrency"]
    assert full.ok and full.measured == pytest.approx(4 * 10 / 10.05, rel=0.01)
    start, end = closed_loop(4, 50, 10 * MS, 20 * MS)  # idle twice as long as busy
    idle = by_name(assess(result(config, start, end), config))["achieved_concurrency"]
    assert not idle.ok and idle.measured == pytest.approx(4 / 3, rel=0.02)
    assert "lower concurrency per worker" in idle.detail


def test_a_run_without_a_steady_part_is_not_measured_rather_than_judged() -> None:
    config = UserConfig(url=URL, concurrency=8, request_count=8)
    start, end = closed_loop(8, 1, 10 * MS, 0)
    signal = by_name(assess(result(config, start, end), config))["achieved_concurrency"]
    assert signal.ok and signal.measured is None and "not measured" in signal.detail


def test_a_steady_part_too_short_to_outweigh_one_stall_is_not_judged() -> None:
    config = UserConfig(url=URL, concurrency=1, request_count=2)
    # Two 0.4 ms requests with a 1 ms stall between them: 0.29 in flight, but over 1.4 ms.
    start, end = np.array([0, 1_400_000]), np.array([400_000, 1_800_000])
    signal = by_name(assess(result(config, start, end), config))["achieved_concurrency"]
    assert signal.ok and signal.measured is None and "0.1 s" in signal.detail
    config = UserConfig(url=URL, concurrency=1, request_count=400)
    start, end = closed_loop(1, 400, 400_000, 1_000_000)  # the same stall, every time
    signal = by_name(assess(result(config, start, end), config))["achieved_concurrency"]
    assert not signal.ok and signal.measured == pytest.approx(0.4 / 1.4, rel=0.01)


def test_the_steady_span_runs_from_every_slots_first_end_to_the_first_slot_stopping() -> None:
    start = np.array([0, 1, 5, 6, 9])
    end = np.array([4, 5, 8, 10, 12])
    assert steady_span_ns(start, end, 2) == (5, 10)
    assert steady_span_ns(start, end, 5) is None


@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1,
                max_size=50), st.integers(0, 10**6), st.integers(1, 10**6))
@settings(max_examples=200, deadline=None)
def test_time_weighted_in_flight_is_between_none_and_all(
    spans: list[tuple[int, int]], low: int, width: int,
) -> None:
    start = np.array([min(a, b) for a, b in spans], dtype=np.int64)
    end = np.array([max(a, b) for a, b in spans], dtype=np.int64)
    mean = time_weighted_in_flight(start, end, low, low + width)
    assert 0 <= mean <= len(spans) + 1e-9


# -- the workers' own load ---------------------------------------------------------------


def test_loop_lag_and_cpu_are_cut_to_the_runs_span() -> None:
    ticks = np.arange(0, 10 * S, 10 * MS)
    lag = np.where((ticks >= 2 * S) & (ticks <= 4 * S), 80 * MS, 100_000)
    at = ticks[::CPU_EVERY]
    # Busy (a whole core) from 2 to 4 s, idle otherwise.
    cpu = np.clip(at - 2 * S, 0, 2 * S)
    busy = report(ticks, lag, at, cpu)
    assert lag_p99_ms(busy, 2 * S, 4 * S) == pytest.approx(80)
    assert lag_p99_ms(busy, 5 * S, 9 * S) == pytest.approx(0.1)
    assert cpu_fraction(busy, 2 * S, 4 * S) == pytest.approx(1.0)
    assert cpu_fraction(busy, 5 * S, 9 * S) == pytest.approx(0.0)
    assert cpu_fraction(busy, 0, 4 * S) == pytest.approx(0.5)
    assert lag_p99_ms(busy, 20 * S, 21 * S) is None  # no tick in the span
    assert cpu_fraction(busy, 9 * S, 30 * S) is None  # past the last sample


def test_the_busiest_worker_is_named_and_a_run_without_reports_is_not_judged() -> None:
    config = UserConfig(url=URL, concurrency=2, request_count=100)
    start, end = closed_loop(2, 50, 10 * MS, 0)
    loads = {"worker_0": steady_worker(int(end.max()), 0.3, 0.4),
             "worker_1": steady_worker(int(end.max()), 80.0, 0.97)}
    signals = by_name(assess(result(config, start, end, loads=loads), config))
    lag, cpu = signals["event_loop_lag_p99"], signals["worker_cpu"]
    assert not lag.ok and lag.measured == pytest.approx(80) and "worker_1" in lag.detail
    assert not cpu.ok and cpu.measured == pytest.approx(0.97) and "worker_1" in cpu.detail
    relaxed = assess(result(config, start, end, loads=loads), config,
                     ValidityLimits(event_loop_lag_p99_ms=100, max_worker_cpu=0.99))
    assert relaxed.valid
    unreported = by_name(assess(result(config, start, end), config))
    assert unreported["worker_cpu"].measured is None and unreported["worker_cpu"].ok


def test_a_run_too_short_for_a_lag_p99_is_not_judged_on_one_tick() -> None:
    ticks = np.arange(0, 300 * MS, 10 * MS)  # 30 ticks: the p99 would be the worst one
    lag = np.where(ticks == 150 * MS, 80 * MS, 100_000)
    short = report(ticks, lag, ticks[::CPU_EVERY], ticks[::CPU_EVERY] // 10)
    assert lag_p99_ms(short, 0, 300 * MS, min_ticks=50) is None
    assert lag_p99_ms(short, 0, 300 * MS) == pytest.approx(80 * 0.71 + 0.1 * 0.29, rel=0.01)


@given(st.dictionaries(st.sampled_from(["tick_ns", "lag_ns", "cpu_at_ns", "cpu_ns"]),
                       st.binary(max_size=80)), st.integers(-S, S), st.integers(0, S))
@settings(max_examples=200, deadline=None)
def test_a_malformed_worker_report_is_judged_on_what_it_holds_and_never_raises(
    raw: dict[str, bytes], low: int, width: int,
) -> None:
    lag = lag_p99_ms(raw, low, low + width)
    cpu = cpu_fraction(raw, low, low + width)
    assert lag is None or lag >= 0
    assert cpu is None or np.isfinite(cpu)


def test_validity_to_dict_carries_every_signal() -> None:
    config = UserConfig(url=URL, concurrency=1, request_count=10)
    start, end = closed_loop(1, 10, 10 * MS, 0)
    validity = assess(result(config, start, end), config)
    data = validity.to_dict()
    assert data["valid"] is True and validity.reason() == ""
    assert {s["name"] for s in data["signals"]} == {
        "achieved_concurrency", "event_loop_lag_p99", "worker_cpu"}
    assert set(data["signals"][0]) == {"name", "measured", "limit", "unit", "ok", "detail"}


def test_a_result_without_its_config_has_no_validity() -> None:
    bare = ProfileResult("run", {}, [], [], {}, [], False, None, None)
    assert bare.validity is None


# -- the probe -------------------------------------------------------------------------


@pytest.mark.real_sleep
def test_the_probe_sees_a_blocked_loop_and_the_cpu_it_burnt() -> None:
    async def run() -> dict[str, object]:
        probe = LoadProbe()
        probe.start()
        await asyncio.sleep(0.05)
        # Hold the loop for 120 ms of CPU (at least as much wall time on a busy machine;
        # 5 s at most): the next tick comes that late.
        cpu_until, deadline = time.process_time() + 0.12, time.perf_counter() + 5
        while time.process_time() < cpu_until and time.perf_counter() < deadline:
            pass
        await asyncio.sleep(0.05)
        out = probe.report()
        probe.stop()
        assert not probe.running
        return out

    out = asyncio.run(run())
    lag = np.frombuffer(out["lag_ns"], dtype=np.int64)  # type: ignore[arg-type]
    assert lag.max() >= 100 * MS  # the 120 ms block, less the 10 ms period
    at = np.frombuffer(out["cpu_at_ns"], dtype=np.int64)  # type: ignore[arg-type]
    cpu = np.frombuffer(out["cpu_ns"], dtype=np.int64)  # type: ignore[arg-type]
    assert at.size >= 2 and np.all(np.diff(cpu) >= 0)
    assert cpu[-1] - cpu[0] >= 100 * MS  # the busy wait is process CPU


def test_the_probe_keeps_a_long_run_in_bounded_memory() -> None:
    probe = LoadProbe()
    probe._tick_ns.extend(range(10))
    probe._lag_ns.extend(range(10))
    probe._coarsen()
    assert list(probe._tick_ns) == [0, 2, 4, 6, 8] and probe._period_ns == 20 * MS


def test_the_probe_thins_its_cpu_samples_and_keeps_their_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aiperf.services import load_probe

    fake_cpu = iter(range(0, 10**9, 5))  # 5 ns of CPU per 10 ns of wall: half a core
    monkeypatch.setattr(load_probe, "_cpu_ns", lambda: next(fake_cpu))
    probe = LoadProbe()
    for now in range(0, 10 * load_probe.MAX_CPU_SAMPLES, 10):
        probe._note_cpu(now)
    report = {key: np.frombuffer(value, dtype=np.int64)
              for key, value in probe.report().items() if key.startswith("cpu")}
    assert report["cpu_at_ns"].size < load_probe.MAX_CPU_SAMPLES
    span = int(report["cpu_at_ns"][-1] - report["cpu_at_ns"][0])
    assert cpu_fraction({k: v.tobytes() for k, v in report.items()}, 0, span) == pytest.approx(0.5)


def sketch_and_exact(config: UserConfig, records: list, span_ns: int
                     ) -> tuple[ProfileResult, ProfileResult]:
    from aiperf.metrics.aggregate import RunAggregator
    from aiperf.plugin import PluginType, plugins

    meta = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
    out = []
    for sketch in (False, True):
        user = config.model_copy(update={"sketch": sketch})
        aggregator = RunAggregator(user, meta, streaming=False)  # type: ignore[arg-type]
        for first in range(0, len(records), 64):  # batches, in the order they ended
            aggregator.add(records[first:first + 64])
        data = aggregator.finish([(0, len(records))])
        data["values"] = {tag: bytes(v) for tag, v in data["values"].items()}
        data["worker_load"] = {"w0": steady_worker(span_ns, 2.0, 0.5)}
        out.append(ProfileResult.from_dict(data, user))
    return out[0], out[1]


def test_sketch_mode_measures_the_signals_the_exact_run_does() -> None:
    """No per-request timeline: the records manager's bins and exact times give the same
    verdicts, the rate and worker signals exactly, the concurrency to its bins' rounding,
    the schedule lag to the sketch's accuracy."""
    from aiperf.common.codec import PROFILING, MetricRecord

    rng = np.random.default_rng(11)
    closed = []
    for slot in range(8):  # 8 slots, back to back, 1.5 s; one slot idles half the run
        t = slot * MS
        while t < (1500 if slot else 700) * MS:
            latency = int(rng.integers(5, 40) * MS)
            closed.append((t, t + latency))
            t += latency
    closed.sort(key=lambda r: r[1])
    records = [MetricRecord(i, PROFILING, "w0", s, s, 0, e, -1, -1, e - s, 10, 5, [])
               for i, (s, e) in enumerate(closed)]
    exact, sketched = sketch_and_exact(UserConfig(url=URL, concurrency=8, request_count=10),
                                       records, 1500 * MS)
    assert len(sketched.timeline) == 0
    a, b = ({s.name: s for s in r.validity.signals} for r in (exact, sketched))
    assert a["achieved_concurrency"].measured is not None
    assert b["achieved_concurrency"].measured == pytest.approx(
        a["achieved_concurrency"].measured, rel=1e-3)
    assert b["achieved_concurrency"].ok == a["achieved_concurrency"].ok
    for name in ("event_loop_lag_p99", "worker_cpu"):
        assert (b[name].measured, b[name].ok) == (a[name].measured, a[name].ok)

    starts = np.cumsum(rng.exponential(10 * MS, 600)).astype(np.int64)  # 100/s, Poisson
    lags = rng.integers(0, 3 * MS, 600)
    open_loop = [MetricRecord(i, PROFILING, "w0", int(s - lag), int(s), 0, int(s + 20 * MS),
                              -1, -1, 20 * MS, 10, 5, [])
                 for i, (s, lag) in enumerate(zip(starts, lags, strict=True))]
    config = UserConfig(url=URL, request_rate=100, arrival_pattern="poisson",
                        request_count=600)
    exact, sketched = sketch_and_exact(config, open_loop, int(starts[-1]))
    a, b = ({s.name: s for s in r.validity.signals} for r in (exact, sketched))
    assert (b["achieved_rate"].measured, b["achieved_rate"].limit) == (
        a["achieved_rate"].measured, a["achieved_rate"].limit)
    assert b["schedule_lag_p99"].measured == pytest.approx(
        a["schedule_lag_p99"].measured, rel=0.0101)
    assert all(s.measured is not None for s in b.values())
