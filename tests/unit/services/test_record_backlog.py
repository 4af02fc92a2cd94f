"""The record path's backlog as each service keeps it (the run's largest drain of its queue)
and the flag it raises: a drain that reached ``record_hwm`` batches (the queue was full)
flags the run, whatever drains with more records but fewer batches came before it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, MetricBatch, MetricRecord, encode
from aiperf.common.config import ServiceConfig
from aiperf.services.record_processor import RecordProcessor, empty_backlog, outranks
from aiperf.services.records_manager import RecordsManager

HWM = 4
RUN = 3
MS = 1_000_000


def flagged(backlog: dict[str, float], hwm: int = HWM) -> bool:
    """The records manager's rule for a warning (``RecordsManager._finish``)."""
    return bool(hwm) and backlog.get("batches", 0) >= hwm


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
