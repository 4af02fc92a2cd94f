"""INVALID: did the client deliver the profile it was asked for?

A run whose client fell behind measures the client: an overloaded worker stamps responses
late and sends requests late, so latencies inflate and rates sag while every number still
looks like a measurement of the server. ``assess`` checks five signals of that, each
against a limit (``ValidityLimits``; the defaults and the measurements behind them are in
docs/validity.md):

- ``schedule_lag_p99`` (open loop): p99 of ``credit_to_start_latency``, how late requests
  left against their scheduled time;
- ``achieved_rate`` (request rate): requests started per second against the rate asked,
  allowing for the randomness of a Poisson or gamma schedule of this many requests;
- ``achieved_concurrency`` (closed loop): the time-weighted count of requests in flight
  between ramp-up (every slot's first request finished) and ramp-down (the first end
  after the last start: a slot that stopped issuing);
- ``event_loop_lag_p99``: in every worker, p99 of a 10 ms timer's drift during the run;
- ``worker_cpu``: in every worker, process CPU seconds over the run's wall seconds.

The worker signals come from each worker's ``LoadProbe`` report (``result.worker_load``),
cut to the run's span: first request start to last response end.

Sketch mode keeps no per-request timeline: the signals are read from what the records
manager kept in its place (``ProfileResult._end_bins``: exact start counts, first and last
start and end, the closed loop's ramp times; per bin of at most 1/2048 of the run, the
starts and the time in flight), and schedule lag's p99 from its quantile sketch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from aiperf.results import ProfileResult

NS_PER_S = 1e9
NS_PER_MS = 1e6
MORE_WORKERS = "more workers (ServiceConfig.workers)"


@dataclass(frozen=True)
class Signal:
    """One measured sign of whether the client kept up; ``measured`` None: not measured."""

    name: str
    measured: float | None
    limit: float
    unit: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Validity:
    valid: bool
    signals: list[Signal] = field(default_factory=list)

    def reason(self) -> str:
        """The failing signals, one line each, with what to change."""
        return "\n".join(f"{s.name}: {s.detail}" for s in self.signals if not s.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "signals": [s.to_dict() for s in self.signals]}


@dataclass(frozen=True)
class ValidityLimits:
    """Where a signal says the client did not deliver (docs/validity.md: measurements)."""

    # Open loop: requests leaving this late at p99 are not the schedule asked for.
    schedule_lag_p99_ms: float = 50.0
    # Achieved request rate below this fraction of the requested rate (the 95 %).
    min_rate_fraction: float = 0.95
    # A random (Poisson, gamma) schedule of n requests spans longer than its mean by
    # chance; the rate limit allows the span that such a schedule exceeds only this often.
    rate_chance: float = 1e-3
    # Closed loop: time-weighted in-flight requests below this fraction of the target.
    min_concurrency_fraction: float = 0.5
    # ...measured only on a steady part this long holding this many requests per slot:
    # on a shorter one a single scheduler preemption (milliseconds on a busy box) outweighs
    # the run, and the loop-lag and CPU signals still watch the worker.
    min_steady_s: float = 0.1
    min_steady_requests_per_slot: int = 4
    # A worker's 10 ms timer firing this late at p99: its event loop was not keeping up.
    event_loop_lag_p99_ms: float = 50.0
    # ...judged on at least this many ticks (0.5 s): on fewer the p99 is the one worst
    # tick, and one scheduler preemption on a busy box would decide the run.
    min_lag_ticks: int = 50
    # A worker busier than this fraction of one core (the 90 %).
    max_worker_cpu: float = 0.90


def assess(result: ProfileResult, config: UserConfig,
           limits: ValidityLimits | None = None) -> Validity:
    """Every signal that applies to this profile, measured on ``result``."""
    limits = limits or ValidityLimits()
    strategy = config.resolved_timing_strategy()
    signals: list[Signal] = []
    if strategy in ("request_rate", "fixed_schedule"):
        signals.append(schedule_lag(result, limits))
    if strategy == "request_rate" and config.request_rate:
        signals.append(achieved_rate(result, config, limits))
    if strategy == "concurrency":
        signals.append(achieved_concurrency(result, config.resolved_concurrency() or 1,
                                            limits))
    signals.extend(worker_signals(result, limits))
    return Validity(all(s.ok for s in signals), signals)


# -- open loop ---------------------------------------------------------------------------


def _bins(result: ProfileResult) -> dict[str, Any] | None:
    """Sketch mode's timeline in bins, when the result has one and no per-request one."""
    bins = getattr(result, "_end_bins", None)
    return bins if bins and not len(result.timeline) and bins.get("n_starts") else None


def schedule_lag(result: ProfileResult, limits: ValidityLimits) -> Signal:
    limit = limits.schedule_lag_p99_ms
    metric = result.metrics.get("credit_to_start_latency")
    values = np.asarray(metric.values if metric is not None else (), dtype=np.float64)
    sketch = getattr(metric, "sketch", None)
    if values.size == 0 and sketch is not None and sketch.count:
        p99, n = float(sketch.quantile(99)), int(sketch.count)
        how = f" (its sketch: within {sketch.relative_accuracy:.0%})"
    elif values.size == 0:
        return Signal("schedule_lag_p99", None, limit, "ms", True,
                      "not measured: no request started")
    else:
        p99, n, how = float(np.percentile(values, 99)), int(values.size), ""
    ok = p99 <= limit
    detail = (f"credit_to_start_latency p99 {p99:.1f} ms{how} (limit {limit:g} ms) over "
              f"{n} requests")
    if not ok:
        detail += (": requests left later than scheduled; use " + MORE_WORKERS +
                   " or a lower request_rate")
    return Signal("schedule_lag_p99", p99, limit, "ms", ok, detail)


def rate_limit(rate: float, n: int, pattern: str, smoothness: float,
               limits: ValidityLimits) -> float:
    """The lowest achieved rate (requests/s, from n starts) a client that kept up could
    show: ``min_rate_fraction`` of ``rate``, lowered for a random schedule to the rate of
    the span it exceeds by chance only ``rate_chance`` of the time. n-1 gaps of a gamma
    schedule of shape k sum to Gamma((n-1)k, 1/(k rate)); Poisson is k = 1."""
    fraction_limit = limits.min_rate_fraction * rate
    if pattern == "constant" or n < 2:
        return fraction_limit
    from scipy.stats import gamma  # lazily: scipy is slow to import

    shape = 1.0 if pattern == "poisson" else smoothness
    long_span = float(gamma.ppf(1.0 - limits.rate_chance, (n - 1) * shape,
                                scale=1.0 / (shape * rate)))
    return min(fraction_limit, (n - 1) / long_span)


def achieved_rate(result: ProfileResult, config: UserConfig,
                  limits: ValidityLimits) -> Signal:
    rate = float(config.request_rate or 0.0)
    start = result.timeline.start_ns
    n = int(start.size)
    bins = _bins(result)
    if bins is not None:  # sketch mode: the exact count and first and last start
        n = int(bins["n_starts"])
        span_s = (bins["last_start_ns"] - bins["first_start_ns"]) / NS_PER_S
    else:
        span_s = (int(start.max()) - int(start.min())) / NS_PER_S if n else 0.0
    limit = rate_limit(rate, n, str(config.arrival_pattern), config.arrival_smoothness,
                       limits)
    if n < 2 or span_s <= 0:
        return Signal("achieved_rate", None, limit, "requests/s", True,
                      f"not measured: {n} request(s) started")
    achieved = (n - 1) / span_s
    ok = achieved >= limit
    detail = (f"{achieved:.1f} requests/s started of {rate:g} requested (limit "
              f"{limit:.1f} for {n} requests, {config.arrival_pattern} arrivals)")
    if not ok:
        cap = (f"; the concurrency cap of {config.concurrency} may hold it back"
               if config.concurrency else "")
        detail += f": use {MORE_WORKERS} or a lower request_rate{cap}"
    return Signal("achieved_rate", achieved, limit, "requests/s", ok, detail)


# -- closed loop -------------------------------------------------------------------------


def steady_span_ns(start_ns: np.ndarray, end_ns: np.ndarray,
                   target: int) -> tuple[int, int] | None:
    """(end of ramp-up, start of ramp-down) in ns: ramp-up ends when each of the first
    ``target`` requests (one per slot) has finished; ramp-down starts when the first slot
    stops issuing, the first end after the last start. Unlike
    ``aiperf.windows.steady_state`` this never needs the target to have been reached,
    which is what this signal asks."""
    if start_ns.size <= target:
        return None
    order = np.argsort(start_ns, kind="stable")
    up = int(end_ns[order[:target]].max())
    last_start = int(start_ns[order[-1]])
    down = int(end_ns[end_ns >= last_start].min())
    return (up, down) if down > up else None


def time_weighted_in_flight(start_ns: np.ndarray, end_ns: np.ndarray, low: int,
                            high: int) -> float:
    """Mean count of requests in flight over [low, high]."""
    overlap = np.minimum(end_ns, high) - np.maximum(start_ns, low)
    return float(np.clip(overlap, 0, None).sum()) / (high - low)


def achieved_concurrency(result: ProfileResult, target: int,
                         limits: ValidityLimits) -> Signal:
    limit = limits.min_concurrency_fraction * target
    timeline = result.timeline
    bins = _bins(result)
    if bins is not None:
        return _binned_concurrency(bins, target, limit, limits)
    span = steady_span_ns(timeline.start_ns, timeline.end_ns, target)
    if span is None:
        return Signal("achieved_concurrency", None, limit, "requests", True,
                      f"not measured: the run had no steady part (more than {target} "
                      "requests, one past ramp-up, are needed)")
    low, high = span
    inside = int(((timeline.start_ns >= low) & (timeline.start_ns <= high)).sum())
    if (high - low) / NS_PER_S < limits.min_steady_s or \
            inside < limits.min_steady_requests_per_slot * target:
        return Signal("achieved_concurrency", None, limit, "requests", True,
                      f"not measured: the steady part ({(high - low) / NS_PER_S:.3f} s, "
                      f"{inside} requests) is shorter than {limits.min_steady_s:g} s or "
                      f"{limits.min_steady_requests_per_slot} requests per slot")
    mean = time_weighted_in_flight(timeline.start_ns, timeline.end_ns, low, high)
    origin = int(timeline.start_ns.min())
    ok = mean >= limit
    detail = (f"{mean:.2f} requests in flight on average of the {target} asked (limit "
              f"{limit:.2f}) from {(low - origin) / NS_PER_S:.2f} to "
              f"{(high - origin) / NS_PER_S:.2f} s")
    if not ok:
        detail += f": use {MORE_WORKERS} or a lower concurrency per worker"
    return Signal("achieved_concurrency", mean, limit, "requests", ok, detail)


def _binned_concurrency(bins: dict[str, Any], target: int, limit: float,
                        limits: ValidityLimits) -> Signal:
    """``achieved_concurrency`` in sketch mode: the same steady span (the records manager
    found its ends exactly), the requests started in it and their time in flight read
    from the bins it covers, a bin at its edge counted by the share it covers."""
    up, down = bins.get("ramp_up_ns"), bins.get("ramp_down_ns")
    if up is None or down is None or down <= up or bins.get("slots") != target:
        return Signal("achieved_concurrency", None, limit, "requests", True,
                      f"not measured: the run had no steady part (more than {target} "
                      "requests, one past ramp-up, are needed)")
    width = bins["width_s"] * NS_PER_S
    edges = bins["origin_ns"] + np.arange(len(bins["busy_ns"]) + 1) * width
    share = np.clip((np.minimum(edges[1:], down) - np.maximum(edges[:-1], up)) / width,
                    0.0, 1.0)
    inside = float(share @ np.asarray(bins["starts"], dtype=np.float64))
    if (down - up) / NS_PER_S < limits.min_steady_s or \
            inside < limits.min_steady_requests_per_slot * target:
        return Signal("achieved_concurrency", None, limit, "requests", True,
                      f"not measured: the steady part ({(down - up) / NS_PER_S:.3f} s, "
                      f"about {inside:.0f} requests) is shorter than "
                      f"{limits.min_steady_s:g} s or {limits.min_steady_requests_per_slot} "
                      "requests per slot")
    mean = float(share @ np.asarray(bins["busy_ns"], dtype=np.float64)) / (down - up)
    origin = bins["first_start_ns"]
    ok = mean >= limit
    detail = (f"{mean:.2f} requests in flight on average of the {target} asked (limit "
              f"{limit:.2f}) from {(up - origin) / NS_PER_S:.2f} to "
              f"{(down - origin) / NS_PER_S:.2f} s (sketch mode: time in flight in bins "
              f"of {bins['width_s']:.3g} s)")
    if not ok:
        detail += f": use {MORE_WORKERS} or a lower concurrency per worker"
    return Signal("achieved_concurrency", mean, limit, "requests", ok, detail)


# -- the workers' own load ---------------------------------------------------------------


def _ints(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.int64, count=len(raw) // 8)


def _pair(report: dict[str, Any], times: str, values: str) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of a report, cut to a common length: a malformed report judges less,
    it never raises out of ``result.validity``."""
    at, value = _ints(report.get(times) or b""), _ints(report.get(values) or b"")
    n = min(at.size, value.size)
    return at[:n], value[:n]


def lag_p99_ms(report: dict[str, Any], low: int, high: int, min_ticks: int = 1
               ) -> float | None:
    """p99 of the timer's drift for ticks within [low, high]; None with fewer than
    ``min_ticks`` ticks there."""
    ticks, lag = _pair(report, "tick_ns", "lag_ns")
    inside = (ticks >= low) & (ticks <= high)
    if int(inside.sum()) < max(1, min_ticks):
        return None
    return float(np.percentile(np.clip(lag[inside], 0, None), 99)) / NS_PER_MS


def cpu_fraction(report: dict[str, Any], low: int, high: int) -> float | None:
    """Process CPU seconds per wall second over [low, high], the cumulative CPU time
    interpolated between the probe's samples (every 100 ms); None outside them."""
    at, cpu = _pair(report, "cpu_at_ns", "cpu_ns")
    if at.size < 2 or high <= low or low < at[0] or high > at[-1]:
        return None
    spent = np.interp([low, high], at.astype(np.float64), cpu.astype(np.float64))
    return float(spent[1] - spent[0]) / (high - low)


def worker_signals(result: ProfileResult, limits: ValidityLimits) -> list[Signal]:
    lag_limit, cpu_limit = limits.event_loop_lag_p99_ms, limits.max_worker_cpu
    timeline = result.timeline
    loads = getattr(result, "worker_load", None) or {}
    bins = _bins(result)
    ran = bool(len(timeline)) or bins is not None
    if not ran or not loads:
        why = "not measured: " + ("no request ran" if not ran
                                  else "no worker reported its load")
        return [Signal("event_loop_lag_p99", None, lag_limit, "ms", True, why),
                Signal("worker_cpu", None, cpu_limit, "cores", True, why)]
    if bins is not None:
        low, high = int(bins["first_start_ns"]), int(bins["last_end_ns"])
    else:
        low, high = int(timeline.start_ns.min()), int(timeline.end_ns.max())
    lags = {w: lag_p99_ms(r, low, high, limits.min_lag_ticks) for w, r in loads.items()}
    cpus = {w: cpu_fraction(r, low, high) for w, r in loads.items()}
    return [_worst("event_loop_lag_p99", lags, lag_limit, "ms",
                   "event-loop lag p99 (a 10 ms timer's drift)", "{:.1f} ms",
                   "the worker's loop was too busy to time requests; use " + MORE_WORKERS +
                   " or a lower concurrency per worker / request_rate",
                   f"the run was shorter than {limits.min_lag_ticks} ticks of the probe"),
            _worst("worker_cpu", cpus, cpu_limit, "cores", "CPU", "{:.0%} of a core",
                   "a worker saturated its core; use " + MORE_WORKERS +
                   " or a lower concurrency per worker / request_rate",
                   "the run was shorter than the probe's CPU samples (100 ms)")]


def _worst(name: str, by_worker: dict[str, float | None], limit: float, unit: str,
           what: str, fmt: str, advice: str, too_short: str) -> Signal:
    measured = {w: v for w, v in by_worker.items() if v is not None}
    if not measured:
        return Signal(name, None, limit, unit, True, f"not measured: {too_short}")
    worker = max(measured, key=lambda w: measured[w])
    value = measured[worker]
    ok = value <= limit
    detail = (f"worker {worker}: {what} {fmt.format(value)} (limit {fmt.format(limit)}), "
              f"the highest of {len(measured)} worker(s)")
    unmeasured = len(by_worker) - len(measured)
    if unmeasured:
        detail += f"; {unmeasured} not measured"
    if not ok:
        detail += f": {advice}"
    return Signal(name, value, limit, unit, ok, detail)
