"""The record path's backlog as each service keeps it (the run's largest drain of its queue)
and the flag it raises: a drain that reached ``record_hwm`` batches (the queue was full)
flags the run, whatever drains with more records but fewer batches came before it. And a
record processor's ``max_lag_ms``, for batches of local and of remote (skewed) workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
import zmq.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import (
    PROFILING,
    MetricBatch,
    MetricRecord,
    RawBatch,
    RawRecord,
    encode,
    metric_decoder,
)
from aiperf.common.config import ServiceConfig, UserConfig
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.endpoints.base import make_endpoint
from aiperf.metrics.derive import RecordDeriver
from aiperf.services.backlog import backlog_warnings, empty_backlog, held_back, outranks
from aiperf.services.record_processor import RecordProcessor
from aiperf.services.records_manager import DRAIN_MAX_BATCHES, RecordsManager

HWM = 4
RUN = 3
MS = 1_000_000


def flagged(backlog: dict[str, float], hwm: int = HWM) -> bool:
    """Whether the run's warnings (``backlog_warnings``, what ``RecordsManager._finish``
    adds) flag this backlog, kept by the records manager or by a record processor."""
    as_manager = backlog_warnings(backlog, {}, hwm)
    as_processor = backlog_warnings({"batches": 0, "records": 0},
                                    {"record_processor_0": backlog}, hwm)
    assert bool(as_manager) == bool(as_processor) == held_back(backlog, hwm)
    return bool(as_manager)


def processor(hwm: int = HWM) -> RecordProcessor:
    service = RecordProcessor(ServiceConfig(record_hwm=hwm), "record_processor_0")
    service._backlog = empty_backlog()  # what its on_init sets, without opening sockets
    return service


def manager(hwm: int = HWM) -> RecordsManager:
    service = RecordsManager(ServiceConfig(record_hwm=hwm), "records_manager")
    service._run = RUN  # what its on_init and configure set, without sockets or a run
    service._backlog = {"batches": 0, "records": 0, "bytes": 0}
    return service


def metric_batches(sizes: list[int]) -> tuple[list[bytes], list[MetricBatch]]:
    """Real encoded batches of ``sizes`` records each, as record processors push them."""
    batches = [MetricBatch(RUN, [MetricRecord(i, PROFILING, "w", 0, MS, 0, 2 * MS, MS, -1, MS,
                                              10, 5, []) for i in range(n)])
               for n in sizes]
    return [encode(b) for b in batches], batches


def test_a_full_drain_of_small_batches_is_kept_over_an_earlier_larger_one() -> None:
    service = processor()
    service._note_backlog(batches=2, records=500, size=90_000)  # two big batches
    service._note_backlog(batches=HWM, records=40, size=8_000)  # full queue, small batches
    service._note_backlog(batches=3, records=900, size=150_000)  # more records, not full
    assert service._backlog["batches"] == HWM and flagged(service._backlog)
    assert (service._backlog["records"], service._backlog["bytes"]) == (40, 8_000)


def test_the_records_manager_keeps_the_full_drain_too() -> None:
    service = manager()
    service._note_backlog(*metric_batches([250, 250]))
    service._note_backlog(*metric_batches([10] * HWM))
    service._note_backlog(*metric_batches([300, 300, 300]))
    assert service._backlog["batches"] == HWM and flagged(service._backlog)
    assert service._backlog["records"] == 10 * HWM


def test_without_a_full_drain_the_most_records_are_kept_and_nothing_is_flagged() -> None:
    service = manager()
    for sizes in ([5, 5, 5], [200], [20, 20]):
        service._note_backlog(*metric_batches(sizes))
    assert (service._backlog["batches"], service._backlog["records"]) == (1, 200)
    assert not flagged(service._backlog)
    # Another run's batches count for nothing.
    other = MetricBatch(RUN + 1, metric_batches([999])[1][0].records)
    service._note_backlog([encode(other)], [other])
    assert service._backlog["records"] == 200


drains = st.lists(st.tuples(st.integers(1, 2 * HWM), st.integers(0, 2_000)), min_size=1,
                  max_size=30)


@settings(max_examples=300, deadline=None)
@given(drains, st.sampled_from([0, 1, HWM]))
def test_a_full_queue_is_always_flagged_and_the_kept_drain_is_one_that_happened(
        seen: list[tuple[int, int]], hwm: int) -> None:
    service = processor(hwm)
    for batches, records in seen:
        service._note_backlog(batches, records, records * 100)
    kept = (service._backlog["batches"], service._backlog["records"])
    # A drain of no record of this run (an earlier run's stragglers) held none of it back.
    full = [d for d in seen if hwm and d[0] >= hwm and d[1] > 0]
    assert flagged(service._backlog, hwm) == bool(full)
    if kept != (0, 0):
        assert kept in seen  # one drain's figures, never mixed from several
    assert kept[1] == max(r for _, r in (full or seen))  # a full one first, then records


def test_outranks_reads_an_unbounded_queue_as_never_full() -> None:
    kept = {"batches": 5000, "records": 10}
    assert outranks(1, 11, kept, hwm=0) and not outranks(9000, 9, kept, hwm=0)


def test_the_warnings_name_each_service_whose_queue_was_full() -> None:
    full = {"batches": HWM, "records": 40, "bytes": 8_000}
    short = {"batches": HWM - 1, "records": 900, "bytes": 150_000}
    warnings = backlog_warnings(full, {"record_processor_1": short,
                                       "record_processor_0": full}, HWM)
    assert len(warnings) == 2
    assert warnings[0].startswith("the records manager fell behind: 40 records (4 batches)")
    assert warnings[1].startswith("record_processor_0 fell behind: 40 records (4 batches)")
    assert all(f"record_hwm={HWM}" in w for w in warnings)
    assert backlog_warnings(full, {"record_processor_0": full}, 0) == []  # unbounded


@pytest.mark.asyncio
async def test_the_records_manager_drains_a_whole_high_water_mark() -> None:
    """A record_hwm above DRAIN_MAX_BATCHES: a full queue holds more batches than the old
    cap took at once, so the drain never reached the mark and a full queue never flagged
    the run. ``_collect`` on a real ZeroMQ PULL queue holding a high-water mark's batches."""
    hwm = DRAIN_MAX_BATCHES + 76
    service = manager(hwm)
    # What on_init and a finished run leave: batches are noted, not aggregated.
    service._finished, service._aggregator, service._spool = True, None, None
    service._slice, service._expected, service._count, service._errors = None, None, 0, 0
    context = zmq.asyncio.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    for sock in (pull, push):
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
    address = f"inproc://records-drain-{id(service)}"
    pull.bind(address)
    push.connect(address)
    service._in = pull
    raws, _ = metric_batches([1] * hwm)
    for raw in raws:  # inproc: each is in the queue once sent
        await push.send(raw)
    task = asyncio.create_task(service._collect())
    try:
        deadline = time.monotonic() + 10.0
        while pull.getsockopt(zmq.EVENTS) & zmq.POLLIN and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for _ in range(5):  # a receive already completed resumes the drain
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        push.close(linger=0)
        pull.close(linger=0)
        context.term()
    assert (service._backlog["batches"], service._backlog["records"]) == (hwm, hwm)
    assert flagged(service._backlog, hwm)


# -- max_lag_ms: from a request's end to its parsing, on the processor's own clock ---------

S = 1_000_000_000
SKEW_NS = 3600 * S  # a remote host's monotonic clock an hour away from the driver's
WAITED_NS = 50 * MS  # how long ago each request "ended"


@pytest.fixture
def parsing() -> Iterator[tuple[RecordProcessor, zmq.Socket[Any]]]:
    """A processor that derives and sends on a real ZeroMQ pair (what it sends is read)."""
    config = UserConfig(streaming=False)
    service = processor()
    service._run = RUN
    service._deriver = RecordDeriver(make_endpoint(config), make_tokenizer(None), [16])
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    address = f"inproc://processor-lag-{id(service)}"
    pull.bind(address)
    push = context.socket(zmq.PUSH)
    push.connect(address)
    service._out = push
    try:
        yield service, pull
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        context.term()


def raw_batch(end_on_worker_ns: int, offset_ns: int) -> RawBatch:
    body = json.dumps({"choices": [{"message": {"content": "x y z"}}]}).encode()
    end = end_on_worker_ns
    record = RawRecord(1, PROFILING, "worker_0", 0, end - 9 * MS, end - 8 * MS, 0, end - MS,
                       end, 200, [(end, body)])
    return RawBatch(RUN, [record], clock_offset_ns=offset_ns)


@pytest.mark.parametrize("skew_ns", [0, SKEW_NS, -SKEW_NS],
                         ids=["local worker", "clock ahead", "clock behind"])
def test_the_lag_is_the_true_wait_whatever_the_workers_clock(
        parsing: tuple[RecordProcessor, zmq.Socket[Any]], skew_ns: int) -> None:
    """A worker stamps with its own clock (``skew_ns`` from the driver host's); its batch
    carries the offset to the timing manager's clock, on whose host (the driver's) every
    record processor runs. Stamps moved onto that clock compare with the processor's own
    ``perf_counter_ns``: the lag is the real wait, for a local worker (no offset) and a
    remote one alike. (Compared before the shift, it would be off by the skew.)"""
    service, pull = parsing
    before = time.perf_counter_ns()
    true_end = before - WAITED_NS
    service._process(raw_batch(true_end + skew_ns, -skew_ns))
    after = time.perf_counter_ns()
    lag_ms = service._backlog["max_lag_ms"]
    # Exact bounds from this test's own readings of the same clock (rounded to 1 us).
    assert (before - true_end) / 1e6 - 1e-3 <= lag_ms <= (after - true_end) / 1e6 + 1e-3
    [record] = metric_decoder.decode(pull.recv()).records
    assert record.error is None and record.end_ns == true_end  # on the reference clock
