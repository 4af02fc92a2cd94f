"""The bounded-memory sweep (``parity.sweep_metrics``: requests a block at a time, events
flushed once no later block can precede them) against the whole-array sweep it replaced,
kept here as the reference: the same statistics on random runs, with blocks forced small
so that most runs flush many times."""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.metrics import parity
from aiperf.metrics.definitions import NS_PER_MS
from aiperf.metrics.parity import SWEEP_PERCENTILES, result_sweep_metrics, sweep_metrics
from aiperf.results import MetricResult, ProfileResult, Timeline, _RepeatedIndex

# --- the reference: the whole run's events at once (the sweep before it was bounded) ---

def _reference_stats(times: np.ndarray, levels: np.ndarray, start: float,
                     end: float) -> dict[str, float]:
    span = end - start
    if span <= 0 or not times.size:
        return {}
    edges = np.clip(np.append(times, end), start, end)
    held = np.diff(edges)
    before = levels[times <= start]
    lead = float(before[-1]) if before.size else 0.0
    durations = np.concatenate([[float(edges[0]) - start], held])
    values = np.concatenate([[lead], levels.astype(np.float64)])
    keep = durations > 0
    durations, values = durations[keep], values[keep]
    avg = float(np.dot(values, durations) / span)
    stats = {"avg": avg, "min": float(values.min()), "max": float(values.max()),
             "std": float(np.sqrt(np.dot(durations, (values - avg) ** 2) / span))}
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(durations[order]) / durations.sum()
    for q in SWEEP_PERCENTILES:
        index = min(int(np.searchsorted(reached, q / 100.0)), order.size - 1)
        stats[f"p{q}"] = float(values[order[index]])
    return stats


def _reference_levels(times: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(times, kind="stable")
    times, levels = times[order], np.cumsum(deltas[order])
    last = np.append(times[1:] != times[:-1], True)
    return times[last], levels[last]


def reference_sweep(start_ns: np.ndarray, end_ns: np.ndarray,
                    first_token_ns: np.ndarray | None = None, isl: np.ndarray | None = None,
                    osl: np.ndarray | None = None,
                    chunk_gaps: tuple[np.ndarray, np.ndarray] | None = None,
                    ) -> dict[str, dict[str, Any]]:
    """The whole-array sweep (about 2 KB a streamed request at its peak)."""
    start = np.asarray(start_ns, dtype=np.float64)
    end = np.asarray(end_ns, dtype=np.float64)
    ran = end > start
    if not ran.any():
        return {}
    begin, finish = float(start[ran].min()), float(end[ran].max())
    out: dict[str, dict[str, Any]] = {}
    ones = np.ones(int(ran.sum()))
    times, levels = _reference_levels(np.concatenate([start[ran], end[ran]]),
                                      np.concatenate([ones, -ones]))
    out["effective_concurrency"] = _reference_stats(times, levels, begin, finish)
    if first_token_ns is None or isl is None or osl is None:
        return out
    first = np.asarray(first_token_ns, dtype=np.float64)
    inputs = np.asarray(isl, dtype=np.float64)
    outputs = np.asarray(osl, dtype=np.float64)
    streamed = ran & ~np.isnan(first)
    prefill = streamed & (first > start)
    parts_t = [start[prefill], end[prefill]]
    parts_d = [inputs[prefill], -inputs[prefill]]
    if chunk_gaps is None:
        decode = streamed & (end > first)
        parts_t += [first[decode], end[decode]]
        parts_d += [outputs[decode], -outputs[decode]]
    else:
        gaps = np.asarray(chunk_gaps[0], dtype=np.float64)
        owner = np.asarray(chunk_gaps[1], dtype=np.int64)
        if gaps.size:
            total = np.cumsum(gaps)
            opens = np.flatnonzero(np.append(True, owner[1:] != owner[:-1]))
            before = np.where(opens > 0, total[np.maximum(opens - 1, 0)], 0.0)
            run_length = np.diff(np.append(opens, owner.size))
            chunk_t = first[owner] + total - np.repeat(before, run_length)
            count = np.bincount(owner, minlength=start.size).astype(np.float64)
            valid = streamed[owner] & (gaps >= 0) & (outputs[owner] >= 1)
            has_gaps = np.bincount(owner[valid], minlength=start.size) > 0
            chunk_t = np.minimum(chunk_t, end[owner])[valid]
            per_chunk = ((outputs[owner] - 1.0) / count[owner])[valid]
            parts_t += [first[has_gaps], chunk_t, end[has_gaps]]
            parts_d += [np.ones(int(has_gaps.sum())), per_chunk, -outputs[has_gaps]]
    times = np.concatenate(parts_t)
    if not times.size:
        return out
    times, levels = _reference_levels(times, np.concatenate(parts_d))
    out["tokens_in_flight"] = _reference_stats(times, levels, begin, finish)
    return out


# --- random runs ---

# Few distinct instants, so that starts, ends, first tokens and chunks often coincide.
request = st.tuples(
    st.integers(0, 400),  # start
    st.integers(0, 120),  # length: 0 is a request that never ran
    st.one_of(st.none(), st.floats(0, 1)),  # first token, as a share of the length
    st.integers(0, 60),  # ISL
    st.integers(0, 40),  # OSL
    st.lists(st.integers(0, 30), max_size=6),  # chunk gaps
)
blocks = st.sampled_from([1, 2, 3, 7, 64])


def _arrays(drawn: list[tuple[int, int, float | None, int, int, list[int]]],
            ) -> tuple[np.ndarray, ...]:
    start = np.array([r[0] for r in drawn], dtype=np.int64)
    end = start + np.array([r[1] for r in drawn], dtype=np.int64)
    first = np.array([np.nan if r[2] is None else r[0] + np.floor(r[1] * r[2])
                      for r in drawn])
    isl = np.array([r[3] for r in drawn], dtype=np.int64)
    osl = np.array([r[4] for r in drawn], dtype=np.int64)
    gaps = np.array([g for r in drawn for g in r[5]], dtype=np.float64)
    owner = np.array([i for i, r in enumerate(drawn) for _ in r[5]], dtype=np.int64)
    return start, end, first, isl, osl, gaps, owner


def assert_same(mine: dict[str, dict[str, Any]], ref: dict[str, dict[str, Any]],
                exact_percentiles: bool) -> None:
    """avg/min/max/std to float noise; percentiles equal when every level is on the
    histogram's grid, else within its step / 2 (the step as the docstring bounds it)."""
    assert mine.keys() == ref.keys()
    for tag, stats in ref.items():
        got = mine[tag]
        assert got["unit"] == parity.BY_TAG[tag].unit
        assert set(got) == {"unit", *stats}
        scale = max(abs(stats["max"]), abs(stats["min"]), 1.0)
        for name in ("avg", "min", "max", "std"):
            assert got[name] == pytest.approx(stats[name], rel=1e-9, abs=1e-9 * scale), \
                (tag, name)
        step = 1.0 if tag == "effective_concurrency" else max(
            parity.TOKEN_STEP, (stats["max"] - stats["min"]) / (2**15 - 1))
        slack = 1e-9 * scale if exact_percentiles or tag == "effective_concurrency" \
            else step / 2 + 1e-9 * scale
        for q in SWEEP_PERCENTILES:
            assert abs(got[f"p{q}"] - stats[f"p{q}"]) <= slack, (tag, q, got, stats)


@given(st.lists(request, min_size=1, max_size=40), blocks)
@settings(max_examples=300, deadline=None)
def test_the_bounded_sweep_is_the_whole_array_sweep(
    drawn: list[tuple[int, int, float | None, int, int, list[int]]], block: int
) -> None:
    start, end, first, isl, osl, gaps, owner = _arrays(drawn)
    on_grid = all(len(r[5]) in (0, 1, 2, 4) for r in drawn)  # shares in quarters
    assert_same(sweep_metrics(start, end, block=block), reference_sweep(start, end), True)
    assert_same(sweep_metrics(start, end, first, isl, osl, block=block),
                reference_sweep(start, end, first, isl, osl), True)
    assert_same(sweep_metrics(start, end, first, isl, osl, (gaps, owner), block=block),
                reference_sweep(start, end, first, isl, osl, (gaps, owner)), on_grid)


@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 120),
                          st.floats(-2, 2), st.integers(0, 60), st.integers(0, 40),
                          st.lists(st.integers(-40, 30), max_size=6)),
                min_size=1, max_size=30), blocks)
@settings(max_examples=150, deadline=None)
def test_first_tokens_and_chunks_before_the_start_still_sweep_the_same(
    drawn: list[tuple[int, int, float, int, int, list[int]]], block: int
) -> None:
    """Changes earlier than their request's start (a first token before it, a negative
    gap; after its end too) cannot come from a real clock, but must not change the
    answer: the flush bound then comes from each block's earliest change."""
    start, end, first, isl, osl, gaps, owner = _arrays(drawn)  # type: ignore[arg-type]
    assert_same(sweep_metrics(start, end, first, isl, osl, (gaps, owner), block=block),
                reference_sweep(start, end, first, isl, osl, (gaps, owner)), False)
    assert_same(sweep_metrics(start, end, first, isl, osl, block=block),
                reference_sweep(start, end, first, isl, osl), True)


@given(st.lists(request, min_size=1, max_size=30), st.randoms(use_true_random=False),
       blocks)
@settings(max_examples=100, deadline=None)
def test_each_requests_gaps_may_come_in_any_request_order(
    drawn: list[tuple[int, int, float | None, int, int, list[int]]], rng: Any, block: int
) -> None:
    """The gaps grouped by request, the groups in any order (record index not sorted):
    each request's gaps are found wherever its group is."""
    start, end, first, isl, osl, gaps, owner = _arrays(drawn)
    groups = [np.flatnonzero(owner == r) for r in np.unique(owner)]
    rng.shuffle(groups)
    shuffled = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
    assert_same(sweep_metrics(start, end, first, isl, osl,
                              (gaps[shuffled], owner[shuffled]), block=block),
                reference_sweep(start, end, first, isl, osl, (gaps, owner)), False)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 3_000),
                          st.integers(0, 200_000), st.integers(1, 7)),
                min_size=2, max_size=40), blocks)
@settings(max_examples=100, deadline=None)
def test_wide_levels_fold_the_histogram_within_its_stated_step(
    drawn: list[tuple[int, int, int, int]], block: int
) -> None:
    """Inputs up to 200,000 tokens a request: 1/256-token bins would be millions, so
    they are folded; each percentile stays within half the resulting step."""
    start = np.array([r[0] for r in drawn], dtype=np.int64)
    end = start + np.array([r[1] for r in drawn], dtype=np.int64)
    first = start + np.array([r[1] // 3 for r in drawn], dtype=np.float64)
    isl = np.array([r[2] for r in drawn], dtype=np.int64)
    osl = np.array([r[3] * 3 + 1 for r in drawn], dtype=np.int64)
    gaps = np.array([1.0 for r in drawn for _ in range(r[3])])
    owner = np.array([i for i, r in enumerate(drawn) for _ in range(r[3])])
    assert_same(sweep_metrics(start, end, first, isl, osl, (gaps, owner), block=block),
                reference_sweep(start, end, first, isl, osl, (gaps, owner)), False)


def _result(start: np.ndarray, end: np.ndarray, ttft_ms: dict[int, float], isl: np.ndarray,
            osl: np.ndarray, gaps_ms: dict[int, list[float]]) -> Any:
    """What ``result_sweep_metrics`` reads of a ``ProfileResult``, in the shapes
    ``ProfileResult.from_dict`` gives it (a shared int32 index, the gaps' repeated one)."""
    n = start.size
    ttft_index = np.array(sorted(ttft_ms), dtype=np.int32)
    icl_index = np.array(sorted(gaps_ms), dtype=np.int32)
    counts = np.array([len(gaps_ms[i]) for i in icl_index], dtype=np.uint32)
    metrics = {
        "time_to_first_token": MetricResult(
            "time_to_first_token", "ms", {},
            np.array([ttft_ms[i] for i in ttft_index], dtype=np.float64),
            record_index=ttft_index),
        "inter_chunk_latency": MetricResult(
            "inter_chunk_latency", "ms", {},
            np.array([g for i in icl_index for g in gaps_ms[i]], dtype=np.float64),
            record_index=_RepeatedIndex(icl_index, counts)),
    }
    timeline = Timeline(start, end, end > start, osl.astype(np.int32), isl.astype(np.int32),
                        np.full(n, -1, dtype=np.int8))
    return ProfileResult(run_id="r", metrics=metrics, records=[], error_summary=[],
                         invariant={}, warnings=[], was_cancelled=False, start_time=None,
                         end_time=None, _timeline=timeline)


@given(st.lists(st.tuples(st.integers(0, 400_000), st.integers(0, 120_000),
                          st.one_of(st.none(), st.floats(0, 0.12)), st.integers(0, 60),
                          st.integers(0, 40), st.lists(st.floats(0, 0.03), max_size=6)),
                min_size=1, max_size=40), blocks)
@settings(max_examples=150, deadline=None)
def test_a_results_sweep_reads_its_arrays_a_block_at_a_time(
    drawn: list[tuple[int, int, float | None, int, int, list[float]]], block: int
) -> None:
    """``result_sweep_metrics`` on a result's own arrays (TTFT and gaps in ms, the gaps'
    index never expanded) equals the whole-array sweep fed as it was before."""
    start = np.array([r[0] for r in drawn], dtype=np.int64)
    end = start + np.array([r[1] for r in drawn], dtype=np.int64)
    isl = np.array([r[3] for r in drawn], dtype=np.int64)
    osl = np.array([r[4] for r in drawn], dtype=np.int64)
    ttft_ms = {i: r[2] for i, r in enumerate(drawn) if r[2] is not None}
    gaps_ms = {i: r[5] for i, r in enumerate(drawn) if r[2] is not None and r[5]}
    result = _result(start, end, ttft_ms, isl, osl, gaps_ms)
    with patch.object(parity, "SWEEP_BLOCK", block):
        mine = result_sweep_metrics(result)
    assert not result.metrics["inter_chunk_latency"].record_index._built
    ttft = result.metrics["time_to_first_token"]
    icl = result.metrics["inter_chunk_latency"]
    first = np.full(start.size, np.nan)
    index = np.asarray(ttft.record_index)
    first[index] = start[index] + np.asarray(ttft.values) * NS_PER_MS
    gaps = None
    if len(icl.values):
        gaps = (np.asarray(icl.values) * NS_PER_MS, np.asarray(icl.record_index))
    ref = reference_sweep(start, end, first, isl, osl, gaps) if ttft_ms \
        else reference_sweep(start, end)
    assert_same(mine, ref, False)


def test_a_closed_loop_holds_a_block_and_the_requests_in_flight() -> None:
    """What the sweep keeps between flushes, on 20,000 requests recorded in the order
    they ended: at most the block being read and the changes of the requests in flight
    at its first start (64 here), never a share of the run."""
    rng = np.random.default_rng(3)
    n, slots, gaps_each = 20_000, 64, 7
    length = rng.integers(1_000, 5_000, n)
    start = np.empty(n, dtype=np.int64)
    for s in range(slots):
        start[s::slots] = np.cumsum(length[s::slots] + 10) - length[s::slots]
    end = start + length
    order = np.argsort(end, kind="stable")
    start, end = start[order], end[order]
    first = (start + 300).astype(np.float64)
    gaps = np.full(n * gaps_each, 100.0)
    owner = np.repeat(np.arange(n), gaps_each)
    most = 0
    push = parity._StepSweep.push

    def watching(sweep: Any, times: np.ndarray, deltas: np.ndarray, bound: float) -> None:
        nonlocal most
        push(sweep, times, deltas, bound)
        most = max(most, sum(t.size for t, _ in sweep.pending))

    block = 512
    with patch.object(parity._StepSweep, "push", watching):
        mine = sweep_metrics(start, end, first, np.full(n, 10), np.full(n, 8),
                             (gaps, owner), block=block)
    per_request = 2 + 2 + gaps_each + 2  # prefill, first token and end, each chunk
    assert most <= (block + slots) * per_request
    assert_same(mine, reference_sweep(start, end, first, np.full(n, 10), np.full(n, 8),
                                      (gaps, owner)), False)


@given(st.lists(st.tuples(st.floats(-50_000, 50_000), st.integers(1, 1000)), min_size=1,
                max_size=200), st.integers(1, 40))
@settings(max_examples=150, deadline=None)
def test_the_histogram_stays_within_its_bins_and_half_its_step(
    held: list[tuple[float, int]], batches: int
) -> None:
    """Levels fed in batches (creeping, jumping, negative): never more than SWEEP_BINS
    bins, each percentile within half the final step of the time-weighted one, and the
    step within the stated bound."""
    histogram = parity._Histogram(parity.TOKEN_STEP)
    values = np.array([v for v, _ in held])
    durations = np.array([float(d) for _, d in held])
    for part in np.array_split(np.arange(values.size), batches):
        if part.size:
            histogram.add(values[part], durations[part])
        assert histogram.time.size <= parity.SWEEP_BINS
    spread = float(values.max() - values.min())
    assert histogram.step <= max(parity.TOKEN_STEP, spread / (2**15 - 1))
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(durations[order]) / durations.sum()
    for q in SWEEP_PERCENTILES:
        truth = values[order][min(int(np.searchsorted(reached, q / 100)), values.size - 1)]
        assert abs(histogram.percentile(q) - truth) <= histogram.step / 2 + 1e-9 * max(
            1.0, abs(truth))


def test_a_mapped_values_files_pages_handed_back_read_the_same(tmp_path: Path) -> None:
    """A result whose arrays are views of a read-only mapping of its values file (as
    ``ProfileResult`` maps a large one): the sweep drops the pages it read after every
    block here, and still reads every value as it was."""
    rng = np.random.default_rng(11)
    n = 3000
    start = np.sort(rng.integers(0, 10**9, n)).astype(np.int64)
    end = start + rng.integers(10**5, 10**8, n)
    ttft_ms = rng.uniform(0.05, 0.1, n)
    counts = rng.integers(0, 9, n).astype(np.uint32)
    gaps_ms = rng.uniform(0, 0.05, int(counts.sum()))
    path = tmp_path / "values.bin"
    path.write_bytes(b"".join(a.tobytes() for a in (start, end, ttft_ms, gaps_ms)))
    with path.open("rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapping)
    sizes = np.cumsum([0, start.nbytes, end.nbytes, ttft_ms.nbytes, gaps_ms.nbytes])
    mapped = [np.frombuffer(view[sizes[k]:sizes[k + 1]], dtype=dtype)
              for k, dtype in enumerate((np.int64, np.int64, np.float64, np.float64))]
    every = np.arange(n, dtype=np.int32)
    osl = rng.integers(1, 40, n)
    isl = rng.integers(0, 100, n)
    result = _result(start, end, {}, isl, osl, {})
    result._timeline = Timeline(mapped[0], mapped[1], np.ones(n, dtype=bool),
                                osl.astype(np.int32), isl.astype(np.int32),
                                np.full(n, -1, dtype=np.int8))
    result.metrics = {
        "time_to_first_token": MetricResult("time_to_first_token", "ms", {}, mapped[2],
                                            record_index=every),
        "inter_chunk_latency": MetricResult("inter_chunk_latency", "ms", {}, mapped[3],
                                            record_index=_RepeatedIndex(every, counts)),
    }
    assert parity._mappings(*mapped) == [mapping]
    with patch.object(parity, "SWEEP_BLOCK", 64), patch.object(parity, "RELEASE_EVERY", 1):
        mine = result_sweep_metrics(result)
    first = start + ttft_ms * NS_PER_MS
    ref = reference_sweep(start, end, first, isl, osl,
                          (gaps_ms * NS_PER_MS, np.repeat(every, counts)))
    assert_same(mine, ref, False)
    del mapped, result, view
    mapping.close()
