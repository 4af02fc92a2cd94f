"""The record path's backlog: what a service on it (the records manager, each record
processor) keeps of its largest queue, and when that queue was full enough to say the run
was held back (docs/long-runs.md). One rule for every service on the path."""

from __future__ import annotations

from collections.abc import Mapping


def empty_backlog() -> dict[str, float]:
    return {"batches": 0, "records": 0, "bytes": 0, "max_lag_ms": 0.0}


def held_back(backlog: Mapping[str, float], hwm: int) -> bool:
    """The flag's one rule, for the records manager's queue and each record processor's: a
    drain of ``hwm`` batches (the run's largest, ``outranks``) means the queue was full,
    so its senders waited. An unbounded queue (0) is never full."""
    return bool(hwm) and backlog.get("batches", 0) >= hwm


def backlog_warnings(own: Mapping[str, float],
                     processors: Mapping[str, Mapping[str, float]], hwm: int) -> list[str]:
    """The run's warnings for queues that were full (``held_back``): the records manager's
    (``own``) and each record processor's (by its id)."""
    warnings = []
    if held_back(own, hwm):
        # Its queue was full, so the record processors waited, and then the workers: this
        # process, not the server, set the pace for a while.
        warnings.append(
            f"the records manager fell behind: {own['records']} records "
            f"({own['batches']} batches) waited in its queue at once, "
            f"record_hwm={hwm}; the run was held back while it caught up")
    for name, backlog in sorted(processors.items()):
        if held_back(backlog, hwm):
            # Its queue was full: the workers' sends waited, so requests were held.
            warnings.append(
                f"{name} fell behind: {backlog['records']:.0f} records "
                f"({backlog['batches']:.0f} batches) waited in its queue at once, "
                f"record_hwm={hwm}; the workers were held back while it caught up")
    return warnings


def outranks(batches: int, records: int, kept: Mapping[str, float], hwm: int) -> bool:
    """Whether a drain of ``batches`` holding ``records`` replaces the ``kept`` backlog (the
    run's largest so far): a drain that reached the high-water mark (the queue was full,
    which flags the run) outranks any that did not, then the most records. Kept by records
    alone, a full drain of small batches would hide behind an earlier one of more records
    in fewer batches, and the run would not be flagged. A drain of none of this run's
    records (an earlier run's stragglers) held none of its requests back."""
    full = held_back({"batches": batches}, hwm) and records > 0
    return (full, records) > (held_back(kept, hwm), kept["records"])
