"""The result of one profile run, as the host (CLI, pytest) sees it.

    result["time_to_first_token"].p99      # display unit (ms)
    result.metric("time_to_first_token.p99")
    result.metric("request_latency.p999")  # any pNN, computed from the per-request records
    result.metric("adj_request_latency.p90")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from aiperf.common.config import UserConfig
from aiperf.metrics.definitions import BY_TAG, STAT_NAMES, parse_percentile

if TYPE_CHECKING:
    import numpy as np

    from aiperf.server_metrics import ServerMetrics  # server metrics: ProfileResult.server


@dataclass(frozen=True)
class MetricResult:
    """Statistics of one metric in its display unit. A scalar metric has only ``avg``."""

    tag: str
    unit: str
    stats: dict[str, float | None]
    # Read-only float64 arrays, compared by the statistics they produced (an array has no
    # single truth value to compare by).
    values: Sequence[float] = field(default=(), repr=False, compare=False)
    failures: int = 0
    # Which profiling record (an index into ``ProfileResult.timeline``) each value came
    # from, int32; a list-valued metric repeats its record's index once per value.
    # Shared between the metrics that the same requests carried: read it, never write it.
    record_index: Sequence[int] | np.ndarray = field(default=(), repr=False, compare=False)
    # Sketch mode: the metric's ``aiperf.statistics.sketch.MetricSketch`` (its percentiles
    # within ``sketch.relative_accuracy``, its mean, std, min, max, sum and count exact),
    # in place of ``values``, which is then empty.
    sketch: Any = field(default=None, repr=False, compare=False)

    @property
    def header(self) -> str:
        base = self.tag.removeprefix("adj_")
        spec = BY_TAG.get(base)
        title = spec.header if spec else base
        return f"{title} (error-adjusted)" if self.tag.startswith("adj_") else title

    @property
    def is_scalar(self) -> bool:
        return set(self.stats) <= {"avg"}

    def stat(self, name: str) -> float:
        if self.is_scalar and name in ("avg", "value"):
            return _num(self.stats.get("avg"))
        if name in self.stats:
            return _num(self.stats[name])
        q = parse_percentile(name)
        if q is not None and self.sketch is not None:
            if self.tag.startswith("adj_"):
                from aiperf.statistics.sketch import adjusted_quantile

                return adjusted_quantile(self.sketch, self.failures, q)
            return _num(self.sketch.quantile(q)) if self.sketch.count else math.inf
        if q is not None and (len(self.values) or self.failures):
            import numpy as np  # here: a host that only reads stored statistics skips it

            data = np.asarray(self.values, dtype=np.float64)
            if self.tag.startswith("adj_"):
                data = np.concatenate([data, np.full(self.failures, np.inf)])
                return float(np.percentile(data, q, method="nearest"))
            return float(np.percentile(data, q))
        allowed = ", ".join(s for s in STAT_NAMES if s in self.stats or s.startswith("p"))
        raise KeyError(f"{self.tag}: no statistic {name!r}; available: {allowed}, or any pNN")

    def __getattr__(self, name: str) -> float:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.stat(name)
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    @property
    def count(self) -> int:
        return int(self.stats.get("count") or 0)

    @property
    def relative_accuracy(self) -> float | None:
        """The relative error of this metric's percentiles: None when they are exact."""
        return None if self.sketch is None else float(self.sketch.relative_accuracy)


def _num(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _sketch(base: str, raw: dict[str, bytes], decoded: dict[str, Any]) -> Any:
    """The metric's sketch (sketch mode) or None; ddsketch is imported only when one came."""
    if base not in raw:
        return None
    if base not in decoded:
        from aiperf.statistics.sketch import MetricSketch

        decoded[base] = MetricSketch.from_bytes(raw[base])
    return decoded[base]


class _TimelineFile(msgspec.Struct):
    """The values file's timeline, its arrays read in place (``_ValuesFile``)."""

    start_ns: memoryview
    end_ns: memoryview
    pattern: memoryview
    patterns: list[Any] = []
    list_lengths: dict[str, tuple[int, memoryview]] = {}


class _ValuesFile(msgspec.Struct):
    """What the records manager writes to the values file. Decoded from a read-only
    mapping of the file, each array is a view of the mapping: the host holds no copy of a
    run's values, and only the pages a statistic or window reads are ever loaded."""

    values: dict[str, memoryview]
    timeline: _TimelineFile | None = None
    worker_load: dict[str, dict[str, Any]] | None = None
    clock_offsets: dict[str, dict[str, Any]] | None = None
    sketches: dict[str, bytes] | None = None
    sketch_windows: dict[str, Any] | None = None
    end_bins: dict[str, Any] | None = None


# A values file at least this large is mapped rather than read. A mapping holds a file
# descriptor for as long as a view of it lives (Python's mmap keeps a duplicate), and a
# pytest session keeps every test's result: small runs' files are read instead.
MAP_BYTES = 4 << 20


def _read_values_file(path: Path) -> dict[str, Any]:
    """The values file's contents, its arrays as views of a read-only mapping of it (or of
    its bytes, read whole, when small), and the file removed (the mapping keeps its pages
    until the last view is gone)."""
    import mmap

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise ValueError(f"{path}: the values file is empty")
        mapped: Any = (mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                       if size >= MAP_BYTES else handle.read())
    path.unlink(missing_ok=True)
    try:
        stored = msgspec.msgpack.decode(mapped, type=_ValuesFile)
    except msgspec.ValidationError:  # values alone (a file written before the timeline)
        return {"values": msgspec.msgpack.decode(mapped)}
    out = msgspec.structs.asdict(stored)
    if stored.timeline is not None:
        out["timeline"] = msgspec.structs.asdict(stored.timeline)
    return out


class _RepeatedIndex:
    """A list-valued metric's record index (each record's index once per value it had),
    built on first use: 4 bytes a value (60 MB for the chunk gaps of a million streamed
    requests) that most results never read."""

    def __init__(self, index: np.ndarray, counts: np.ndarray) -> None:
        self._index, self._counts = index, counts
        self._built: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._built is None:
            import numpy as np

            built = np.repeat(self._index, self._counts)
            built.setflags(write=False)
            self._built = built
        return self._built

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        built = self._array()
        if dtype is not None and built.dtype != dtype:
            return built.astype(dtype)
        return built.copy() if copy else built

    def __len__(self) -> int:
        return int(self._counts.sum(dtype="int64"))

    def __iter__(self) -> Any:
        return iter(self._array())

    def __getitem__(self, key: Any) -> Any:
        return self._array()[key]


def _merge_windows(shipped: dict[str, Any], m: int, window_s: float) -> list[Any]:
    """``m`` base windows at a time merged into one SketchEvidence (see
    ``ProfileResult.sketch_windows``)."""
    from aiperf.statistics.sketch import merged_window_sketches
    from pytest_aiperf.judge import SketchEvidence

    offset, end = float(shipped.get("offset_s", 0.0)), float(shipped["end_s"])
    base_windows = shipped["windows"]
    if not base_windows:
        return []
    groups: dict[int, list[dict[str, Any]]] = {}
    first = min(w["index"] for w in base_windows) // m
    # The last window ends at the run's end; a start on or past it (a request failed at
    # the very end) joins it, as aiperf.windows clips it into the last window.
    last = max(first, math.ceil((end - offset) / window_s) - 1)
    for w in base_windows:
        groups.setdefault(min(max(w["index"] // m, first), last), []).append(w)
    out = []
    for j in sorted(groups):
        low = offset + j * window_s
        high = min(low + window_s, end) if j == last else low + window_s
        n_ok = sum(w["n_ok"] for w in groups[j])
        n_err = sum(w["n_err"] for w in groups[j])
        sketches = merged_window_sketches(groups[j])
        duration = max(0.0, high - max(low, 0.0))
        scalars = {"request_count": float(n_ok), "error_request_count": float(n_err),
                   "request_error_rate": 100.0 * n_err / (n_ok + n_err) if n_ok + n_err
                   else 0.0, "benchmark_duration": duration}
        if duration > 0:
            scalars["request_throughput"] = n_ok / duration
        out.append(SketchEvidence(f"window {_fmt_s(max(low, 0.0))}-{_fmt_s(high)} s", n_ok,
                                  n_err, duration, sketches, scalars))
    return out


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3g}" if abs(seconds) < 100 else f"{seconds:.0f}"


@dataclass(frozen=True, repr=False)
class Timeline:
    """The profiling requests of a run, one entry per request in the order the records
    manager received them: when each ran (``perf_counter`` ns; a request that failed before
    it was sent has its credit time as start and end), whether it succeeded, its token
    counts (0 for a failed request) and its closed-loop slot (-1: records do not carry a
    slot, so steady state derives the closed-loop ramp from the in-flight count)."""

    start_ns: np.ndarray
    end_ns: np.ndarray
    ok: np.ndarray
    osl: np.ndarray
    isl: np.ndarray
    slot: np.ndarray

    def __len__(self) -> int:
        return int(self.start_ns.size)

    def __repr__(self) -> str:
        return f"<Timeline of {len(self)} requests>"

    @classmethod
    def empty(cls) -> Timeline:
        import numpy as np

        none = np.empty(0, dtype=np.int64)
        return cls(none, none, np.empty(0, dtype=bool), none, none, np.empty(0, dtype=np.int8))

    @classmethod
    def from_wire(cls, wire: dict[str, Any],
                  raw_values: dict[str, Any]) -> tuple[Timeline, dict[str, Any]]:
        """The timeline and each metric's record index, from what ``_RunTotals.timeline``
        shipped: a pattern id per record says which metrics it carried."""
        import numpy as np

        start = np.frombuffer(wire["start_ns"], dtype=np.int64)
        end = np.frombuffer(wire["end_ns"], dtype=np.int64)
        pattern = np.frombuffer(wire["pattern"], dtype=np.uint16)
        patterns: list[tuple[bool, list[str]]] = wire["patterns"]
        ok = np.array([p[0] for p in patterns], dtype=bool)[pattern] if patterns \
            else np.zeros(start.size, dtype=bool)
        tags = {tag for _, names in patterns for tag in names}
        record_index: dict[str, Any] = {}
        # Metrics carried by the same requests share one index array (most metrics of a
        # successful request do): a few arrays per run, not one per metric.
        shared: dict[bytes, np.ndarray] = {}
        for tag in sorted(tags):
            carries = np.array([tag in names for _, names in patterns], dtype=bool)
            lengths = wire.get("list_lengths", {}).get(tag)
            if lengths is None:
                key = carries.tobytes()
                if key not in shared:
                    shared[key] = np.flatnonzero(carries[pattern]).astype(np.int32)
                    shared[key].setflags(write=False)
                record_index[tag] = shared[key]
            else:
                index = np.flatnonzero(carries[pattern]).astype(np.int32)
                itemsize, raw = lengths
                counts = np.frombuffer(raw, dtype=np.uint16 if itemsize == 2 else np.uint32)
                record_index[tag] = _RepeatedIndex(index, counts)
        tokens = {}
        for name, tag in (("osl", "output_sequence_length"), ("isl", "input_sequence_length")):
            counts = np.zeros(start.size, dtype=np.int32)
            if tag in record_index and tag in raw_values:
                counts[record_index[tag]] = np.frombuffer(raw_values[tag], dtype=np.float64)
            tokens[name] = counts
        slot = np.full(start.size, -1, dtype=np.int8)
        return cls(start, end, ok, tokens["osl"], tokens["isl"], slot), record_index


@dataclass(repr=False)
class ProfileResult:
    """Everything one run produced. ``records`` is the per-request table (JSONL shape).
    Its repr is a one-line summary: a failed assertion on a result shows what run it was,
    not every statistic and the whole config."""

    run_id: str
    metrics: dict[str, MetricResult]
    records: Sequence[dict[str, Any]]
    error_summary: list[dict[str, Any]]
    invariant: dict[str, Any]
    warnings: list[str]
    was_cancelled: bool
    start_time: str | None
    end_time: str | None
    config: UserConfig | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    slo: list[Any] = field(default_factory=list)
    # The servers' Prometheus metrics over the run (server_metrics=...): gauges' min/avg/max,
    # counters' and histograms' deltas; None when not asked for. aiperf/server_metrics.
    server: ServerMetrics | None = field(default=None, compare=False)
    # The record path's largest backlog per service that reported one ("records_manager",
    # each record processor's id): batches / records / bytes queued at once (and, for a
    # processor, max_lag_ms from a request's end to its parsing). STEADY's block.
    record_backlog: dict[str, dict[str, float]] = field(default_factory=dict, compare=False)
    _timeline: Timeline | None = field(default=None, repr=False)
    _slices: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    # Each worker's LoadProbe report (event-loop lag, CPU), by worker id: validity's input.
    _worker_load: dict[str, dict[str, Any]] | None = field(default=None, repr=False,
                                                           compare=False)
    _validity: Any = field(default=None, repr=False, compare=False)
    # Each worker's clock estimate, by worker id, when the mesh synced clocks (remote
    # workers); None for a local mesh, whose services share one clock.
    _clock_offsets: dict[str, dict[str, Any]] | None = field(default=None, repr=False,
                                                            compare=False)
    # Sketch mode: the records manager's base windows (``_SketchWindows.finish``), their
    # sketches as bytes until ``sketch_windows`` reads them; and what it built, by length.
    _sketch_windows: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _window_cache: dict[float, list[Any]] = field(default_factory=dict, repr=False,
                                                  compare=False)
    # Sketch mode: successful requests and their tokens per bin of end time
    # (``_EndBins.finish``), what throughput's batch means split the run by.
    _end_bins: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    # The earliest warm-up stamp (perf_counter ns, the timeline's clock), where a
    # concurrency ramp began; None without a warm-up or from a result that predates it.
    _warmup_start_ns: int | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: UserConfig | None = None) -> ProfileResult:
        records: Sequence[dict[str, Any]] = data.get("records") or []
        if "records" not in data and data.get("records_path"):
            from aiperf.records_file import RecordsFile

            # Moved out of the run dir, which goes when the mesh shuts down; streamed.
            records = RecordsFile.adopt(data["records_path"], data.get("records_count"))
        elif "records" not in data and "records_path" in data:  # None: the run kept none
            from aiperf.records_file import NoRecords

            records = NoRecords()
        # Bytes-like per metric; a records manager's own result (tests) has FloatColumns.
        raw_values: dict[str, Any] = {
            tag: raw.floats() if hasattr(raw, "floats") else raw
            for tag, raw in (data.get("values") or {}).items()}
        wire_timeline: dict[str, Any] | None = data.get("timeline")
        worker_load: dict[str, dict[str, Any]] | None = data.get("worker_load")
        clock_offsets: dict[str, dict[str, Any]] | None = data.get("clock_offsets")
        raw_sketches: dict[str, bytes] = data.get("sketches") or {}
        sketch_windows: dict[str, Any] | None = data.get("sketch_windows")
        end_bins: dict[str, Any] | None = data.get("end_bins")
        if "values" not in data and data.get("values_path"):
            stored = _read_values_file(Path(data["values_path"]))
            if isinstance(stored.get("values"), dict):  # values and timeline
                raw_values, wire_timeline = stored["values"], stored.get("timeline")
                worker_load = stored.get("worker_load")
                clock_offsets = stored.get("clock_offsets")
                raw_sketches = stored.get("sketches") or {}
                sketch_windows = stored.get("sketch_windows")
                end_bins = stored.get("end_bins")
            else:  # values alone (a file written before the timeline)
                raw_values = stored
        timeline, record_index = (Timeline.from_wire(wire_timeline, raw_values)
                                  if wire_timeline else (None, {}))
        failures = int(data.get("metrics", {}).get("error_request_count", {}).get("avg") or 0)
        sketches: dict[str, Any] = {}  # one decoded sketch per base tag, shared with adj_
        # 8 bytes a value, read in place from the decoded bytes (no copy), one array per
        # base tag shared with its adj_ twin: a million-request result holds each metric's
        # values once (read-only arrays).
        arrays: dict[str, Any] = {}
        metrics = {}
        for tag, stats in data.get("metrics", {}).items():
            base = tag.removeprefix("adj_")
            if base not in arrays:
                import numpy as np

                arrays[base] = np.frombuffer(raw_values.get(base, b""), dtype=np.float64)
            values = arrays[base]
            sketch = _sketch(base, raw_sketches, sketches)
            stats = dict(stats)
            unit = stats.pop("unit", BY_TAG[base].unit if base in BY_TAG else "")
            metrics[tag] = MetricResult(
                tag, unit, stats, values, failures if tag.startswith("adj_") else 0,
                () if sketch is not None else record_index.get(base, ()), sketch,
            )
        result = cls(
            run_id=data.get("run_id", ""),
            metrics=metrics,
            records=records,
            error_summary=data.get("error_summary", []),
            invariant=data.get("invariant", {}),
            warnings=data.get("warnings", []),
            was_cancelled=data.get("was_cancelled", False),
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            config=config,
            _timeline=timeline,
            _worker_load=worker_load,
            _clock_offsets=clock_offsets,
            _sketch_windows=sketch_windows,
            _end_bins=end_bins,
            _warmup_start_ns=data.get("warmup_start_ns"),
            record_backlog=dict(data.get("record_backlogs") or {}),
        )
        # AIPerf's time-weighted sweep metrics, from the timeline (none in sketch mode).
        from aiperf.metrics.parity import result_sweep_metrics

        for tag, stats in result_sweep_metrics(result).items():
            stats = dict(stats)
            result.metrics.setdefault(tag, MetricResult(tag, stats.pop("unit"), stats))
        return result

    @property
    def timeline(self) -> Timeline:
        """The run's profiling requests in time (empty for a result built without one)."""
        return self._timeline if self._timeline is not None else Timeline.empty()

    @property
    def slices(self) -> list[dict[str, Any]]:
        """Per-slice metrics (AIPerf's time-slice export rows) when the profile set
        ``slice_duration``; empty otherwise."""
        seconds = getattr(self.config, "slice_duration", None) if self.config else None
        if not seconds or self._timeline is None:
            return []
        if self._slices is None:
            from aiperf.windows import slices

            self._slices = slices(self, seconds)
        return self._slices

    def sketch_windows(self, window_s: float) -> list[Any] | None:
        """Sketch mode: consecutive windows of ``window_s`` as
        ``pytest_aiperf.judge.SketchEvidence`` (each window's requests by start, its
        sketches of ``aiperf.metrics.aggregate.WINDOW_METRICS``, its counts, and its
        request rate, error rate and length as scalars), merged from the records manager's
        base windows. None when the run kept none, or ``window_s`` is not a whole number of
        base windows (a window cut across a base window cannot be rebuilt). The windows
        start at the run's first start and end at its last end, as ``aiperf.windows`` cuts
        them; windows without requests are left out."""
        shipped = self._sketch_windows
        if not shipped or not (isinstance(window_s, int | float) and window_s > 0
                               and math.isfinite(window_s)):
            return None
        base = float(shipped["base_s"])
        ratio = window_s / base
        m = round(ratio)
        if m < 1 or abs(ratio - m) > 1e-9 * ratio:
            return None
        key = float(window_s)
        if key not in self._window_cache:
            self._window_cache[key] = _merge_windows(shipped, m, float(window_s))
        return list(self._window_cache[key])

    @property
    def validity(self) -> Any:
        """Whether the client delivered the profile (``aiperf.validity.Validity``), judged
        with the default limits; None for a result without its config. Call
        ``aiperf.validity.assess`` for other limits."""
        if self.config is None:
            return None
        if self._validity is None:
            from aiperf.validity import assess

            self._validity = assess(self, self.config)
        return self._validity

    @property
    def worker_load(self) -> dict[str, dict[str, Any]]:
        """Each worker's load probe report for this run (empty when none was shipped)."""
        return self._worker_load or {}

    @property
    def clock_offsets(self) -> dict[str, dict[str, Any]]:
        """Each remote worker's clock against the timing manager's, by worker id:
        ``offset_ns`` (reference = worker + offset), ``uncertainty_ns`` (the true offset is
        within it either way), ``round_trip_ns``, ``samples`` and ``host``. Empty for a
        local mesh (one clock) or a worker whose report did not come."""
        return self._clock_offsets or {}

    def __repr__(self) -> str:
        cancelled = ", cancelled" if self.was_cancelled else ""
        invariant = "" if self.invariant.get("ok", True) else ", credit invariant broken"
        return (f"<ProfileResult {self.run_id!r}: {self.request_count} requests, "
                f"{self.error_count} errors{cancelled}{invariant}; "
                f"metrics: {', '.join(self.metrics) or 'none'}>")

    def __getitem__(self, tag: str) -> MetricResult:
        try:
            return self.metrics[tag]
        except KeyError:
            available = ", ".join(sorted(self.metrics))
            raise KeyError(f"no metric {tag!r} in this run; available: {available}") from None

    def __contains__(self, tag: object) -> bool:
        return tag in self.metrics

    @property
    def sessions(self) -> list[Any]:
        """Multi-turn runs: each session's turns, errors, duration and per-turn latency and
        TTFT (``aiperf.dataset.breakdowns.SessionSummary``), from the per-request table."""
        from aiperf.dataset.breakdowns import sessions_of

        return sessions_of(self.records)

    @property
    def urls(self) -> list[Any]:
        """Runs over several URLs: what each served (``UrlSummary``); empty with one."""
        from aiperf.dataset.breakdowns import urls_of

        if self.config is None or len(self.config.urls) < 2:
            return []
        return urls_of(self.records, self.config.urls)

    def metric(self, name: str) -> float:
        """``"tag"`` (avg) or ``"tag.stat"``, in the metric's display unit."""
        tag, _, stat = name.partition(".")
        return self[tag].stat(stat or "avg")

    @property
    def request_count(self) -> int:
        return int(self.metric("request_count")) if "request_count" in self else 0

    @property
    def error_count(self) -> int:
        return int(self.metric("error_request_count")) if "error_request_count" in self else 0

    def _cancellations(self, reason: str) -> int:
        from aiperf.common.codec import CANCELLATION_TYPE

        return sum(item["count"] for item in self.error_summary
                   if item["error_details"]["type"] == CANCELLATION_TYPE
                   and item["error_details"]["message"].startswith(reason))

    @property
    def planned_cancellation_count(self) -> int:
        """Errors the profile asked for (``request_cancellation_rate``): in the error count
        as AIPerf counts them, but not a failure of the server."""
        from aiperf.common.codec import PLANNED_CANCEL_REASON

        return self._cancellations(PLANNED_CANCEL_REASON)

    @property
    def timeout_count(self) -> int:
        """Requests given up on at the request timeout."""
        from aiperf.common.codec import REQUEST_TIMEOUT_REASON

        return self._cancellations(REQUEST_TIMEOUT_REASON)

    def error_lines(self, limit: int = 10, width: int = 120) -> list[str]:
        """``  count x [code] type: message`` for the most common errors."""
        lines = []
        for item in self.error_summary[:limit]:
            d = item["error_details"]
            code = f"{d['code']} " if d.get("code") is not None else ""
            lines.append(f"  {item['count']:>6} x {code}{d['type']}: {d['message'][:width]}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The ``profile_export_aiperf.json`` shape."""
        out: dict[str, Any] = {}
        for tag, metric in self.metrics.items():
            out[tag] = {"unit": metric.unit, **metric.stats}
        out["input_config"] = self.config.safe_dump() if self.config else {}
        out["error_summary"] = self.error_summary
        out["was_cancelled"] = self.was_cancelled
        out["start_time"] = self.start_time
        out["end_time"] = self.end_time
        if self._clock_offsets is not None:  # only when the mesh synced clocks
            out["clock_offsets"] = self._clock_offsets
        return out
