"""AIPerf 0.13's metrics that follow from the ones already measured (issue 13, "Metric
parity"). Formulas as AIPerf defines them (its ``metrics/types`` and ``analysis/sweepline``
modules, read for facts); the tags, units and flags are in ``definitions.SPECS``.

Per request, from one request's values in display units (``add_request_values``):

- ``decode_duration`` = request_latency - time_to_first_token (streaming; ms)
- ``e2e_output_token_throughput`` = output_sequence_length / request_latency in seconds
  (TTFT and everything else included, unlike 1/ITL; none when the latency is 0)
- ``prefill_throughput_per_user`` = input_sequence_length / TTFT in seconds (streaming;
  none when TTFT is 0)
- ``usage_prompt_tokens`` / ``usage_completion_tokens`` / ``usage_total_tokens`` /
  ``usage_reasoning_tokens``: the server's own ``usage`` fields as it sent them (the total
  is its ``total_tokens``, never prompt + completion), only for a response that carried
  them (``add_usage_values``, from the record's ``usage_*`` fields)

Per run, from the run's statistics (``run_metrics``): ``total_isl`` / ``total_osl`` (sums of
ISL / OSL), ``input_token_throughput`` = total_isl / benchmark_duration, and
``total_usage_*`` (sums of the usage metrics).

Over time (``sweep_metrics``, from when each request ran): ``effective_concurrency`` is the
number of requests in flight, ``tokens_in_flight`` the tokens a server holds for them (the
input tokens from request start, plus the output tokens from the first token to the end:
AIPerf's KV-cache load model), each a step function summarised time-weighted over the span
from the first request start to the last request end: avg = integral / span, min, max, std,
and p50/p90/p95/p99 as the smallest value the function is at or below for that fraction of
the span. Swept a block of requests at a time in bounded memory: avg, min, max and std
exact, the percentiles from a histogram of time per level (exact on its grid, else within
half its step: see ``sweep_metrics``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np

from aiperf.metrics.definitions import BY_TAG, NS_PER_MS

if TYPE_CHECKING:
    from aiperf.results import ProfileResult

# A usage count at or past this is not one (endpoints.base.MAX_TOKEN_COUNT; not imported:
# the metrics do not depend on the endpoint package).
MAX_COUNT = 1 << 31
USAGE_TAGS = ("usage_prompt_tokens", "usage_completion_tokens", "usage_total_tokens",
              "usage_reasoning_tokens")
# Time-weighted over the whole run's timeline (result_sweep_metrics): no window or steady
# sample recomputes them.
SWEEP_TAGS = ("effective_concurrency", "tokens_in_flight")
SWEEP_PERCENTILES = (50, 90, 95, 99)
# Requests a block: the sweep builds one block's changes at a time (about 20 a streamed
# request with chunk gaps, two float64s each, and their sorting), so that its memory is a
# few MB whatever the run's length. benchmarks/sweep_cost.py at 100,000 streamed
# requests: 1024 takes 0.27 s and 5.9 MiB at its peak, 2048 0.22 s and 8 MiB, 512 0.37 s
# and 4.8 MiB (the host's PSS grows by more than that: freed blocks stay in its heap).
SWEEP_BLOCK = 1024
# tokens_in_flight's levels are per-chunk shares of a token: its percentiles come from a
# histogram of time per level, 1/256 token wide to begin with, its bins doubled whenever
# the levels held would need more than SWEEP_BINS of them (3 float64s a bin: 1.5 MiB).
TOKEN_STEP = 1.0 / 256
SWEEP_BINS = 1 << 16
# Blocks between two hand-backs of the values file's pages that the sweep has read (see
# ``_mappings``): 8 blocks of streamed requests with 16 tokens read about 1 MB of gaps.
RELEASE_EVERY = 8


def add_request_values(values: dict[str, Any]) -> None:
    """Add one successful request's derived per-request metrics to ``values`` (its metrics
    in display units, as ``aggregate.per_request_values`` makes them)."""
    latency_ms = values.get("request_latency")
    if latency_ms is None:
        return
    osl = values.get("output_sequence_length")
    if osl is not None and latency_ms > 0:
        values["e2e_output_token_throughput"] = osl * 1000.0 / latency_ms
    ttft_ms = values.get("time_to_first_token")
    if ttft_ms is None:
        return
    if latency_ms >= ttft_ms:
        # Rounded to the nanosecond both came from, so that the records manager keeps it in
        # 4 bytes like every latency (a float difference rarely converts back bit for bit).
        values["decode_duration"] = round((latency_ms - ttft_ms) * NS_PER_MS) / NS_PER_MS
    isl = values.get("input_sequence_length")
    if isl is not None and ttft_ms > 0:
        values["prefill_throughput_per_user"] = isl * 1000.0 / ttft_ms


def add_usage_values(values: dict[str, Any], prompt: int, completion: int, total: int,
                     reasoning: int = -1, produces_tokens: bool = True) -> None:
    """The server's usage counts of one successful request (-1: the response had none).
    Only the prompt count where the endpoint produces no tokens (embeddings, rankings):
    AIPerf's other usage metrics are for token-producing endpoints only. A count out of
    range (an endpoint plugin's) is no count: the records manager keeps them in 4 bytes."""
    if 0 <= prompt < MAX_COUNT:
        values["usage_prompt_tokens"] = prompt
    if produces_tokens:
        if 0 <= completion < MAX_COUNT:
            values["usage_completion_tokens"] = completion
        if 0 <= total < MAX_COUNT:
            values["usage_total_tokens"] = total
        if 0 <= reasoning < MAX_COUNT:
            values["usage_reasoning_tokens"] = reasoning


def run_metrics(metrics: dict[str, Any], duration_s: float) -> dict[str, dict[str, Any]]:
    """The run-level parity metrics from a run's statistics (``metrics``: tag -> stats with
    ``sum`` for per-request metrics) and its ``benchmark_duration`` in seconds."""
    out: dict[str, dict[str, Any]] = {}

    def total(source: str) -> float | None:
        stats = metrics.get(source)
        return None if stats is None or stats.get("sum") is None else float(stats["sum"])

    for tag, source in (("total_isl", "input_sequence_length"),
                        ("total_osl", "output_sequence_length"),
                        *((f"total_{tag}", tag) for tag in USAGE_TAGS)):
        value = total(source)
        if value is not None:
            out[tag] = {"unit": BY_TAG[tag].unit, "avg": value}
    if "total_isl" in out and duration_s > 0:
        out["input_token_throughput"] = {"unit": BY_TAG["input_token_throughput"].unit,
                                         "avg": out["total_isl"]["avg"] / duration_s}
    return out


def time_weighted_stats(times: np.ndarray, levels: np.ndarray, start: float,
                        end: float) -> dict[str, float]:
    """Statistics of the step function that is ``levels[i]`` from ``times[i]`` to
    ``times[i + 1]`` (``times`` in order; 0 before the first time, the last level after
    the last), over [start, end], each level weighted by how long it held. Percentiles
    within ``_Histogram``'s resolution (exact for levels on its grid of 1/256)."""
    if end - start <= 0 or not np.asarray(times).size:
        return {}
    sweep = _StepSweep(start, end, TOKEN_STEP)
    sweep.hold(np.asarray(times, dtype=np.float64), np.asarray(levels, dtype=np.float64))
    return sweep.close()


class _Histogram:
    """Time held per level, in bins ``step`` wide (bin k: [k step, (k + 1) step)), each
    with the least and greatest level it held: a percentile is the bin where the held
    time reaches its share, reported as that level when the bin held one level (always
    so for levels on the grid) and as the middle of its levels otherwise (within step /
    2). The bins double in width (pairs folded into one) whenever the levels held would
    need more than ``SWEEP_BINS`` of them, so the step is at most the range of the levels
    / 2**15 and the memory 3 float64s a bin (1.5 MiB) whatever the run's length."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.first = 0  # the bin number of index 0
        # The bins that held anything: the arrays have room around them, so that a run
        # whose levels creep up reallocates a few times, not at every batch.
        self.lowest = self.highest = 0
        self.time = np.empty(0)
        self.low = np.empty(0)
        self.high = np.empty(0)

    def add(self, values: np.ndarray, durations: np.ndarray) -> None:
        finite = np.isfinite(values)
        if not finite.all():
            values, durations = values[finite], durations[finite]
        if not values.size:
            return
        bins = np.floor(values / self.step).astype(np.int64)
        low, high = int(bins.min()), int(bins.max())
        if self.time.size:
            low, high = min(low, self.lowest), max(high, self.highest)
        while high - low + 1 > SWEEP_BINS:
            self._fold()
            bins >>= 1  # floor halving, as the folded bins
            low, high = low >> 1, high >> 1
        if not self.time.size or low < self.first or high >= self.first + self.time.size:
            self._cover(low, high)
        self.lowest, self.highest = low, high
        index = bins - self.first
        # Summed over the bins this batch touched only, not the whole histogram.
        start = int(index.min())
        added = np.bincount(index - start, weights=durations)
        self.time[start:start + added.size] += added
        np.minimum.at(self.low, index, values)
        np.maximum.at(self.high, index, values)

    def _cover(self, low: int, high: int) -> None:
        """Arrays for bins ``low`` to ``high`` (with the bins held so far): twice the
        room of the last ones, up to ``SWEEP_BINS``, centred on them."""
        needed = high - low + 1
        size = min(max(needed, 2 * self.time.size, 1024), SWEEP_BINS)
        first = low - (size - needed) // 2
        time, lows, highs = np.zeros(size), np.full(size, np.inf), np.full(size, -np.inf)
        if self.time.size:
            keep = slice(self.lowest - self.first, self.highest - self.first + 1)
            at = slice(self.lowest - first, self.highest - first + 1)
            time[at], lows[at], highs[at] = self.time[keep], self.low[keep], self.high[keep]
        self.first, self.time, self.low, self.high = first, time, lows, highs

    def _fold(self) -> None:
        """Each pair of bins into one of twice the width, in arrays of the same room."""
        if not self.time.size:
            self.step *= 2
            return
        keep = slice(self.lowest - self.first, self.highest - self.first + 1)
        index = np.arange(self.lowest, self.highest + 1) >> 1
        lowest, highest = self.lowest >> 1, self.highest >> 1
        index -= lowest
        size = highest - lowest + 1
        time = np.bincount(index, weights=self.time[keep], minlength=size)
        lows, highs = np.full(size, np.inf), np.full(size, -np.inf)
        np.minimum.at(lows, index, self.low[keep])
        np.maximum.at(highs, index, self.high[keep])
        room = self.time.size
        self.first = lowest - (room - size) // 2
        at = slice(lowest - self.first, highest - self.first + 1)
        self.time[:] = 0.0
        self.low[:], self.high[:] = np.inf, -np.inf
        self.time[at], self.low[at], self.high[at] = time, lows, highs
        self.lowest, self.highest = lowest, highest
        self.step *= 2

    def percentile(self, q: float) -> float:
        held = slice(self.lowest - self.first, self.highest - self.first + 1)
        reached = np.cumsum(self.time[held])
        reached /= reached[-1]
        at = min(int(np.searchsorted(reached, q / 100.0)), reached.size - 1)
        low, high = float(self.low[held][at]), float(self.high[held][at])
        return low if low == high else (low + high) / 2


class _StepSweep:
    """Time-weighted statistics of a step function over [begin, finish] (0 until its
    first change), fed its changes a batch at a time (``push``) and never holding more
    than the batches not yet flushed: the total time, the area, the variance merged
    batch by batch (weighted counts, means and sums of squares: Chan's parallel form),
    min and max of the levels held for some time, and a ``_Histogram`` for the
    percentiles."""

    def __init__(self, begin: float, finish: float, step: float) -> None:
        self.begin, self.finish = begin, finish
        # The last change flushed and its level: how long it holds is known only at the
        # next change (or at the end).
        self.at, self.level = begin, 0.0
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.earliest = np.inf  # of the pending changes
        self.changes = 0
        self.weight = self.area = self.mean = self.m2 = 0.0
        self.low, self.high = np.inf, -np.inf
        self.histogram = _Histogram(step)

    def push(self, times: np.ndarray, deltas: np.ndarray, bound: float) -> None:
        """Add changes (level deltas at times, in any order) and flush every change
        before ``bound``: the caller's promise that no change still to come is earlier.
        Changes at one instant are flushed together (the bound is a time), so they
        collapse into one as if all were known at once."""
        if times.size:
            self.pending.append((times, deltas))
            self.changes += times.size
            self.earliest = min(self.earliest, float(times.min()))
        if not self.pending or bound <= self.earliest:
            return  # nothing due: no concatenating what waits at every batch
        times = np.concatenate([t for t, _ in self.pending])
        deltas = np.concatenate([d for _, d in self.pending])
        due = times < bound
        if due.all():
            self.pending, self.earliest = [], np.inf
            self._flush(times, deltas)
        elif due.any():
            self.pending = [(times[~due], deltas[~due])]
            self.earliest = float(times[~due].min())
            self._flush(times[due], deltas[due])
        else:
            self.pending = [(times, deltas)]

    def _flush(self, times: np.ndarray, deltas: np.ndarray) -> None:
        order = np.argsort(times, kind="stable")
        times = times[order]
        levels = np.cumsum(np.concatenate([[self.level], deltas[order]]))[1:]
        # Changes at the same instant collapse into one, so the level between them, held
        # for no time, never shows: a request ending as another starts never overlaps it.
        last = np.append(times[1:] != times[:-1], True)
        self.hold(times[last], levels[last])

    def hold(self, times: np.ndarray, levels: np.ndarray) -> None:
        """The step function goes to ``levels[i]`` at ``times[i]`` (in order, all after
        what was held before)."""
        if not times.size:
            return
        edges = np.clip(np.concatenate([[self.at], times]), self.begin, self.finish)
        self._accumulate(np.concatenate([[self.level], levels[:-1]]), np.diff(edges))
        self.at, self.level = float(times[-1]), float(levels[-1])

    def _accumulate(self, values: np.ndarray, durations: np.ndarray) -> None:
        keep = durations > 0
        if not keep.all():
            values, durations = values[keep], durations[keep]
        if not durations.size:
            return
        # Sums of products, not np.dot: BLAS's threads cost more than they save here on
        # a busy box.
        weight = float(durations.sum())
        area = float((values * durations).sum())
        mean = area / weight
        m2 = float((durations * (values - mean) ** 2).sum())
        total = self.weight + weight
        shift = mean - self.mean
        self.m2 += m2 + shift * shift * self.weight * weight / total
        self.mean += shift * weight / total
        self.weight, self.area = total, self.area + area
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.histogram.add(values, durations)

    def close(self) -> dict[str, float]:
        """The statistics, once every change has been pushed."""
        if self.pending:
            times = np.concatenate([t for t, _ in self.pending])
            deltas = np.concatenate([d for _, d in self.pending])
            self.pending, self.earliest = [], np.inf
            self._flush(times, deltas)
        last = np.clip(np.array([self.at, self.finish]), self.begin, self.finish)
        self._accumulate(np.array([self.level]), np.diff(last))
        span = self.finish - self.begin
        if self.weight <= 0 or span <= 0:
            return {}
        avg = self.area / span
        # Deviations from avg (the area over the span), as the definition has them.
        var = (self.m2 + self.weight * (self.mean - avg) ** 2) / span
        stats = {"avg": avg, "min": self.low, "max": self.high,
                 "std": float(np.sqrt(max(var, 0.0)))}
        for q in SWEEP_PERCENTILES:
            stats[f"p{q}"] = self.histogram.percentile(q)
        return stats


def _increasing(values: np.ndarray, strict: bool) -> bool:
    """Whether ``values`` never decrease (or, ``strict``, always increase), checked a
    slice at a time so as not to make a mask of the whole array."""
    step = 1 << 16
    pairs = max(values.size - 1, 0)
    for lo in range(0, pairs, step):
        hi = min(lo + step, pairs)
        a, b = values[lo:hi], values[lo + 1:hi + 1]
        if bool(np.any(b <= a)) if strict else bool(np.any(b < a)):
            return False
    return True


class _Runs:
    """A metric's values grouped by request (each request's values in order: one TTFT,
    or its chunk gaps), read a block of requests at a time: through the requests that
    have any (sorted) and how many each has, never through an index of every value."""

    def __init__(self, values: Any, requests: np.ndarray, counts: np.ndarray | None,
                 order: np.ndarray | None = None, scale: float = 1.0) -> None:
        self.values, self.scale, self.order = values, scale, order
        # Kept in the dtypes they come in (the result's int32 index, uint16/32 counts): 4
        # bytes a request, and the offsets 4 more while the values number under 2**32.
        self.requests = np.asarray(requests)
        self.counts = None if counts is None else np.asarray(counts)  # None: one each
        self.offsets = None
        if self.counts is not None:
            wide = np.uint32 if len(values) < 2**32 else np.int64
            self.offsets = np.cumsum(self.counts, dtype=wide)
            self.offsets -= self.counts.astype(wide, copy=False)

    @classmethod
    def from_owner(cls, values: Any, owner: Any, scale: float = 1.0) -> _Runs:
        """From each value's request (each request's values in order, its runs grouped
        in any order: sorted here, stably, when they are not already)."""
        owner = np.asarray(owner)
        order = None
        if not _increasing(owner, strict=False):
            order = np.argsort(owner, kind="stable")
            owner = owner[order]
        opens = np.flatnonzero(np.append(True, owner[1:] != owner[:-1])) if owner.size \
            else np.empty(0, dtype=np.int64)
        return cls(values, owner[opens], np.diff(np.append(opens, owner.size)), order, scale)

    @classmethod
    def of_metric(cls, metric: Any, scale: float) -> _Runs:
        """A host-side ``MetricResult``'s values with its record index, read as runs
        without a copy of the index: a list-valued metric's repeated index is never
        expanded (4 bytes a value, kept by the result once built: 60 MB for a million
        streamed requests' gaps), a one-value-a-request index is used as it is."""
        from aiperf.results import _RepeatedIndex

        index = metric.record_index
        if isinstance(index, _RepeatedIndex):
            return cls(metric.values, index._index, index._counts, scale=scale)
        index = np.asarray(index)
        if index.size == len(metric.values) and _increasing(index, strict=True):
            return cls(metric.values, index, None, scale=scale)
        return cls.from_owner(metric.values, index, scale)

    def take(self, requests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The values of ``requests`` (float64, scaled), request after request, and how
        many each has."""
        if not self.requests.size:
            return np.empty(0), np.zeros(requests.size, dtype=np.int64)
        # The block's requests in the index's own dtype: searchsorted would otherwise
        # convert the whole index at each call.
        wanted = requests.astype(self.requests.dtype, copy=False)
        at = np.minimum(np.searchsorted(self.requests, wanted), self.requests.size - 1)
        found = self.requests[at] == wanted
        if self.counts is None or self.offsets is None:
            counts = found.astype(np.int64)
            gather = at[found]
        else:
            counts = np.where(found, self.counts[at], 0).astype(np.int64)
            starts = np.cumsum(counts) - counts
            gather = (np.repeat(self.offsets[at].astype(np.int64) - starts, counts)
                      + np.arange(int(counts.sum()), dtype=np.int64))
        if self.order is not None:
            gather = self.order[gather]
        values = np.asarray(self.values)[gather]
        if self.scale != 1.0:
            values = values * self.scale
        return np.asarray(values, dtype=np.float64), counts


def _first_tokens(source: np.ndarray | _Runs, requests: np.ndarray,
                  start: np.ndarray) -> np.ndarray:
    """The first-token times (ns, NaN: none) of ``requests``, whose starts are ``start``."""
    if isinstance(source, np.ndarray):
        return source[requests]
    values, counts = source.take(requests)
    first = np.full(requests.size, np.nan)
    carried = counts > 0
    first[carried] = start[carried] + values
    return first


def _block_events(start: np.ndarray, end: np.ndarray, requests: np.ndarray,
                  tokens: tuple[Any, np.ndarray, np.ndarray, _Runs | None] | None,
                  ) -> tuple[tuple[np.ndarray, np.ndarray],
                             tuple[np.ndarray, np.ndarray] | None]:
    """The changes (times, deltas) of the requests' effective concurrency and, given
    (first tokens, ISL, OSL, chunk gaps), tokens in flight (see ``sweep_metrics``)."""
    s = start[requests].astype(np.float64)
    e = end[requests].astype(np.float64)
    ran = e > s
    if not ran.all():
        requests, s, e = requests[ran], s[ran], e[ran]
    ones = np.ones(requests.size)
    conc = (np.concatenate([s, e]), np.concatenate([ones, -ones]))
    if tokens is None:
        return conc, None
    first_source, isl, osl, gaps = tokens
    first = _first_tokens(first_source, requests, start[requests])
    inputs = isl[requests].astype(np.float64)
    outputs = osl[requests].astype(np.float64)
    streamed = ~np.isnan(first)
    prefill = streamed & (first > s)
    parts_t = [s[prefill], e[prefill]]
    parts_d = [inputs[prefill], -inputs[prefill]]
    if gaps is None:
        decode = streamed & (e > first)
        parts_t += [first[decode], e[decode]]
        parts_d += [outputs[decode], -outputs[decode]]
    else:
        values, count = gaps.take(requests)
        if values.size:
            owner = np.repeat(np.arange(requests.size), count)
            # Each chunk's time: the request's first token plus its gaps so far.
            total = np.cumsum(values)
            opens = np.cumsum(count) - count
            before = np.where((count > 0) & (opens > 0),
                              total[np.maximum(opens - 1, 0)], 0.0)
            chunk_t = first[owner] + total - np.repeat(before, count)
            valid = streamed[owner] & (values >= 0) & (outputs[owner] >= 1)
            has_gaps = np.bincount(owner[valid], minlength=requests.size) > 0
            # A chunk stamped at or after its request's end (rounding) still counts
            # within it.
            chunk_t = np.minimum(chunk_t, e[owner])[valid]
            per_chunk = ((outputs[owner] - 1.0) / count[owner])[valid]
            parts_t += [first[has_gaps], chunk_t, e[has_gaps]]
            parts_d += [np.ones(int(has_gaps.sum())), per_chunk, -outputs[has_gaps]]
    return conc, (np.concatenate(parts_t), np.concatenate(parts_d))


def _mappings(*arrays: Any) -> list[Any]:
    """The read-only file mappings that ``arrays`` are views of: ``ProfileResult`` maps a
    large values file rather than reading it, so each page a reader touches stays in the
    host's memory (PSS) for as long as the result lives. The sweep reads every first
    token and chunk gap once (12 MB at 100,000 streamed requests of 16 tokens, 10 times
    that at a million): it hands those pages back as it goes (``_release``)."""
    import mmap

    found: list[Any] = []
    for array in arrays:
        base = array
        while isinstance(base, (np.ndarray, memoryview)):
            below = base.obj if isinstance(base, memoryview) else base.base
            if below is None:
                break
            base = below
        if isinstance(base, mmap.mmap) and all(base is not m for m in found):
            found.append(base)
    return found


def _release(mappings: list[Any]) -> None:
    """Drop the mapped pages from this process: a read-only shared mapping of a file
    reads them again from the page cache (or the file) if anything touches them later,
    so nothing changes but the memory this process holds."""
    import mmap

    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None:
        return
    for mapping in mappings:
        with contextlib.suppress(OSError, ValueError):  # closed, or madvise refused
            mapping.madvise(advice)


def _any_negative(values: Any, mappings: list[Any]) -> bool:
    """Whether any of ``values`` is below 0, read a slice at a time with the mapped
    pages handed back after each (all at once, a million streamed requests' gaps are
    120 MB in the host's memory)."""
    values = np.asarray(values)
    step = 1 << 19
    for lo in range(0, values.size, step):
        negative = bool((values[lo:lo + step] < 0).any())
        if mappings:
            _release(mappings)
        if negative:
            return True
    return False


def _sweep(start: np.ndarray, end: np.ndarray,
           tokens: tuple[Any, np.ndarray, np.ndarray, _Runs | None] | None,
           early: bool, block: int, mappings: list[Any] | None = None,
           ) -> dict[str, dict[str, Any]]:
    """``sweep_metrics`` a block of requests at a time, in the order they started. A
    block's changes are flushed (sorted, summed into levels, held) once they are earlier
    than every change still to come: unless ``early`` (some first token or chunk before
    its request's start: then each block's earliest change is found first), no request's
    change precedes its start, so that is the next block's first start. Held at once:
    one block's changes and those of the requests still in flight."""
    n = int(start.size)
    begin, finish = np.inf, -np.inf
    for number, lo in enumerate(range(0, n, block)):
        s, e = start[lo:lo + block], end[lo:lo + block]
        ran = e > s
        if ran.any():
            begin = min(begin, float(s[ran].min()))
            finish = max(finish, float(e[ran].max()))
        if mappings and number % (RELEASE_EVERY * 16) == RELEASE_EVERY * 16 - 1:
            _release(mappings)
    if mappings:
        _release(mappings)
    if not finish > begin:
        return {}
    # The requests in the order they started: 4 bytes a request kept (a run under 2**31
    # requests), 8 more while sorting (not a stable sort: that needs a buffer as well,
    # and which of two requests starting together comes first changes nothing).
    order = np.argsort(start)
    if n < 2**31:
        order = order.astype(np.int32)
    firsts = range(0, n, block)
    if early:
        lows = []
        for lo in firsts:
            conc, tif = _block_events(start, end, order[lo:lo + block], tokens)
            times = [t for t in (conc[0], tif[0] if tif else None) if t is not None and t.size]
            lows.append(min((float(t.min()) for t in times), default=np.inf))
            if mappings and len(lows) % RELEASE_EVERY == 0:
                _release(mappings)
        bounds = np.minimum.accumulate(np.array(lows)[::-1])[::-1]
    else:
        bounds = start[order[::block]].astype(np.float64)
    bounds = np.append(bounds[1:], np.inf)
    concurrency = _StepSweep(begin, finish, 1.0)
    in_flight = _StepSweep(begin, finish, TOKEN_STEP) if tokens is not None else None
    for number, lo in enumerate(firsts):
        conc, tif = _block_events(start, end, order[lo:lo + block], tokens)
        bound = float(bounds[number])
        concurrency.push(*conc, bound)
        if in_flight is not None and tif is not None:
            in_flight.push(*tif, bound)
        if mappings and number % RELEASE_EVERY == RELEASE_EVERY - 1:
            _release(mappings)
    if mappings:
        _release(mappings)
    out: dict[str, dict[str, Any]] = {}
    out["effective_concurrency"] = {"unit": BY_TAG["effective_concurrency"].unit,
                                    **concurrency.close()}
    if in_flight is not None and in_flight.changes:
        out["tokens_in_flight"] = {"unit": BY_TAG["tokens_in_flight"].unit,
                                   **in_flight.close()}
    return out


def sweep_metrics(start_ns: np.ndarray, end_ns: np.ndarray,
                  first_token_ns: np.ndarray | None = None,
                  isl: np.ndarray | None = None,
                  osl: np.ndarray | None = None,
                  chunk_gaps: tuple[np.ndarray, np.ndarray] | None = None,
                  *, block: int | None = None,
                  ) -> dict[str, dict[str, Any]]:
    """``effective_concurrency`` over the requests [start, end) and, given each request's
    first-token time (NaN: none), ISL and OSL, ``tokens_in_flight``.

    Tokens in flight are AIPerf's KV-cache load: a request holds its input tokens from
    its start to its end when its first token came after its start (streamed). Its output
    tokens arrive as it streams them: with ``chunk_gaps`` (the inter-chunk gaps in ns and
    the request each belongs to, each request's in order), one token at the first token
    and (OSL - 1) / gaps at each later chunk; without, all at the first token (AIPerf's
    own fallback). A request with no first token, or (with gaps) no gap, holds no output
    tokens. Everything a request holds is freed at its end.

    Computed ``block`` requests at a time (``SWEEP_BLOCK``), so its memory is a few MB
    and the requests' start order (4 bytes a request, 8 more while sorting), not the
    whole run's changes (about 2 KB a streamed request when they were built at once;
    ``benchmarks/sweep_cost.py``). avg, min, max and std are exact; the percentiles
    come from a histogram of time per level: exact for levels on its grid (whole
    requests; tokens in 1/256), and within step / 2 otherwise, the step 1/256 token
    doubled while the range of levels held would need more than ``SWEEP_BINS`` bins (so
    at most that range / 2**15)."""
    start = np.asarray(start_ns)
    end = np.asarray(end_ns)
    tokens = None
    early = False
    if first_token_ns is not None and isl is not None and osl is not None:
        first = np.asarray(first_token_ns, dtype=np.float64)
        gaps = None
        if chunk_gaps is not None:
            gaps = _Runs.from_owner(np.asarray(chunk_gaps[0], dtype=np.float64),
                                    chunk_gaps[1])
            early = bool(np.any(gaps.values < 0))
        early = early or bool(np.any(first < start))
        tokens = (first, np.asarray(isl), np.asarray(osl), gaps)
    return _sweep(start, end, tokens, early, block or SWEEP_BLOCK)


def result_sweep_metrics(result: ProfileResult) -> dict[str, dict[str, Any]]:
    """``sweep_metrics`` of a run's profiling requests, from its timeline, TTFT and
    inter-chunk latencies (a run without a timeline, in sketch mode, has none), read a
    block of requests at a time from the result's own arrays (no per-request copy)."""
    timeline = result.timeline
    if not len(timeline):
        return {}
    ttft = result.metrics.get("time_to_first_token")
    if ttft is None or not len(ttft.values):
        return _sweep(timeline.start_ns, timeline.end_ns, None, False, SWEEP_BLOCK,
                      _mappings(timeline.start_ns, timeline.end_ns))
    icl = result.metrics.get("inter_chunk_latency")
    mappings = _mappings(timeline.start_ns, timeline.end_ns, ttft.values,
                         *(() if icl is None else (icl.values,)))
    first = _Runs.of_metric(ttft, NS_PER_MS)
    early = _any_negative(ttft.values, mappings)
    gaps = None
    if icl is not None and len(icl.values) and len(icl.record_index):
        gaps = _Runs.of_metric(icl, NS_PER_MS)
        early = early or _any_negative(icl.values, mappings)
    return _sweep(timeline.start_ns, timeline.end_ns,
                  (first, timeline.isl, timeline.osl, gaps), early, SWEEP_BLOCK, mappings)


def _aligned(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The values of two per-request metrics for the requests that carry both, and those
    requests' timeline indexes (each metric's values are in its record_index order)."""
    index_a = np.asarray(a.record_index)
    index_b = np.asarray(b.record_index)
    both, at_a, at_b = np.intersect1d(index_a, index_b, assume_unique=True,
                                      return_indices=True)
    return np.asarray(a.values)[at_a], np.asarray(b.values)[at_b], both


def result_request_values(metrics: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The per-request parity metrics of a whole run at once, from its per-request values
    on the host (``ProfileResult.metrics``: each a ``MetricResult`` with ``values`` and
    ``record_index``), as (values, timeline index) per tag: the same numbers
    ``add_request_values`` gives request by request, without the records manager keeping
    three more values a request. Empty when the run kept no values (sketch mode)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    latency = metrics.get("request_latency")
    if latency is None or not len(latency.values) or not len(latency.record_index):
        return out
    osl = metrics.get("output_sequence_length")
    if osl is not None and len(osl.values):
        tokens, ms, index = _aligned(osl, latency)
        keep = ms > 0
        out["e2e_output_token_throughput"] = (tokens[keep] * 1000.0 / ms[keep], index[keep])
    ttft = metrics.get("time_to_first_token")
    if ttft is None or not len(ttft.values):
        return out
    ms, first, index = _aligned(latency, ttft)
    keep = ms >= first
    out["decode_duration"] = (ms[keep] - first[keep], index[keep])
    isl = metrics.get("input_sequence_length")
    if isl is not None and len(isl.values):
        tokens, first, index = _aligned(isl, ttft)
        keep = first > 0
        out["prefill_throughput_per_user"] = (tokens[keep] * 1000.0 / first[keep],
                                              index[keep])
    return out
