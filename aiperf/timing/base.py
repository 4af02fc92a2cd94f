"""What every timing strategy shares: phases, credit ids, leases, stop conditions.

A run is an optional warmup phase (all of its requests finish before profiling starts, so
no warmup request overlaps the measured window) and a profiling phase that stops after
``request_count`` credits or when ``benchmark_duration`` has passed.

Credits reach workers in one of two forms (``aiperf.common.codec``):

* **leases** (closed loop): a block of ids a worker spends itself, ``slots`` at a time. The
  strategy keeps two leases per worker in hand and sends the next when one is used up, so
  the per-request loop never waits on the timing manager;
* **scheduled credits** (open loop, traces): ids with absolute send times, sent ahead of
  time in batches; the worker fires each on its own clock and returns it when done, which
  frees a slot of the optional concurrency cap.

Every id a worker actually starts is *issued*; ids of a lease a worker could not use
(deadline) never are. ``issued_ranges`` is the exact list the records manager checks the
records against.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aiperf.common.codec import PROFILING, WARMUP, Credit, Lease
from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn, session_layout, turn_for
from aiperf.dataset.sessions import whole_session_leases
from aiperf.errors import ConfigError

_perf_ns = time.perf_counter_ns
# Added to every wait of a strategy that is bounded by a request timeout or a duration:
# dispatch and reports travel through two sockets and a busy event loop.
PHASE_TIMEOUT_MARGIN_S = 5.0


@dataclass
class LeaseState:
    worker: str
    lease: Lease
    started: int = 0
    consumed: bool = False
    done: bool = False


class Dispatcher(Protocol):
    """How a strategy reaches workers; the timing manager implements it over ZeroMQ."""

    workers: list[str]

    async def send_lease(self, worker: str, lease: Lease) -> None: ...

    async def send_credits(self, worker: str, credits: list[Credit]) -> None: ...


class TimingStrategy:
    # Whether the strategy can run a multi-turn dataset's sessions (closed loop only: a
    # session's turns are leased together to one worker).
    supports_sessions = False

    def __init__(self, config: UserConfig, turns: list[Turn], rng: np.random.Generator,
                 dispatcher: Dispatcher, run: int) -> None:
        self.config = config
        self.turns = turns
        self.rng = rng
        self.dispatcher = dispatcher
        self.run_tag = run
        self._next_id = 0
        self._ranges: list[tuple[int, int]] = []
        self._warmup_ranges: list[tuple[int, int]] = []
        # Multi-turn: started ids never sent (LeaseReport.skipped), out of the issued set.
        self._skipped: set[int] = set()
        self.layout = session_layout(turns)
        if self.layout is not None and not self.supports_sessions:
            raise ConfigError(
                f"a multi-turn dataset ({self.layout.sessions} sessions) runs in closed loop "
                f"(concurrency) only; {config.resolved_timing_strategy()} cannot run it yet")
        # Leases out, until spent and reported done: a long run issues thousands, and every
        # wait checks the open ones (a lease kept forever grew the timing manager 0.15 MiB
        # a minute in a soak at 5,800 requests/s, and each check with it).
        self.leases: dict[int, LeaseState] = {}
        # Leases first reported consumed, for the issuing loop to replace (in report order).
        self.newly_consumed: collections.deque[LeaseState] = collections.deque()
        self.scheduled: dict[int, str] = {}  # credit id -> worker, until returned
        self._progress = asyncio.Event()
        self._slots: asyncio.Semaphore | None = None
        self._round_robin = itertools.cycle(dispatcher.workers)
        self._ramped = False
        # Scheduled sessions: turns whose previous turn returned, (ready at, session,
        # dataset entry, worker) by time; and each turn in flight's (session, entry, worker).
        self._followups: list[tuple[int, int, int, str]] = []
        self._turn_of: dict[int, tuple[int, int, str]] = {}
        self._next_session = 0

    @property
    def issued_ranges(self) -> list[tuple[int, int]]:
        """The exact ids that were sent (each owes one record)."""
        return _minus(self._ranges, self._skipped)

    @property
    def warmup_issued(self) -> int:
        return sum(count for _, count in _minus(self._warmup_ranges, self._skipped))

    @property
    def issued(self) -> int:
        return sum(count for _, count in self.issued_ranges)

    # -- ids ------------------------------------------------------------------------------

    def take_ids(self, count: int) -> int:
        if self.layout is not None and whole_session_leases(self.config):
            # A lease starts on a session's first turn (after a lease cut short at the
            # request count, the ids up to the next session are never used).
            self._next_id = self.layout.align_up(self._next_id)
        first = self._next_id
        self._next_id += count
        return first

    def _record_issued(self, phase: int, first: int, count: int) -> None:
        if count:
            _extend(self._ranges, first, count)
            if phase == WARMUP:
                _extend(self._warmup_ranges, first, count)

    # -- leases (closed loop) -------------------------------------------------------------

    async def lease(self, worker: str, phase: int, count: int, slots: int,
                    deadline_ns: int = 0, slot_starts_ns: list[int] | None = None) -> None:
        lease = Lease(self.run_tag, phase, self.take_ids(count), count, slots, deadline_ns,
                      slot_starts_ns or [])
        self.leases[lease.first_id] = LeaseState(worker, lease)
        await self.dispatcher.send_lease(worker, lease)

    def lease_report(self, first_id: int, started: int, done: bool,
                     skipped: list[int] | tuple[int, ...] = ()) -> LeaseState | None:
        state = self.leases.get(first_id)
        if state is None:
            return None
        lease = state.lease
        self._skipped.update(i for i in skipped
                             if lease.first_id <= i < lease.first_id + lease.count)
        if not state.consumed:
            state.consumed = True
            state.started = started
            self._record_issued(state.lease.phase, first_id, started)
            self.newly_consumed.append(state)
        state.done = state.done or done
        if state.done:
            del self.leases[first_id]  # accounted for (issued ranges); nothing more to come
        self._progress.set()
        return state

    # -- scheduled credits (open loop) ------------------------------------------------------

    def limit_in_flight(self, slots: int | None) -> None:
        self._slots = asyncio.Semaphore(slots) if slots else None

    async def acquire_slot(self, deadline_ns: int | None = None) -> bool:
        """Wait for a free slot of the concurrency cap, if any; False when the deadline
        passed first."""
        if self._slots is None:
            return True
        if deadline_ns is None:
            await self._slots.acquire()
            return True
        timeout = (deadline_ns - _perf_ns()) / 1e9
        if timeout <= 0:
            return False
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that
            # lands as its awaitable completes (see wait_for below).
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            return False
        return True

    def pick_worker(self) -> str:
        """Round robin without a cap; with one, the worker with the fewest in flight."""
        if self._slots is None:
            return next(self._round_robin)
        load = dict.fromkeys(self.dispatcher.workers, 0)
        for worker in self.scheduled.values():
            load[worker] += 1
        return min(load, key=load.__getitem__)

    async def send_scheduled(self, phase: int, due: list[tuple[int, int | None]]) -> None:
        """Send credits ``(send_at_ns, conversation)`` grouped into one batch per worker."""
        if not due:
            return
        first = self.take_ids(len(due))
        batches: dict[str, list[Credit]] = {}
        for offset, (send_at, conversation) in enumerate(due):
            credit_id = first + offset
            if conversation is None and self.layout is not None:
                credit = self._session_turn(credit_id, phase, send_at)
                worker = self._turn_of[credit_id][2]
            else:
                if conversation is None:
                    conversation = turn_for(credit_id, len(self.turns))
                worker = self.pick_worker()
                credit = Credit(credit_id, phase, conversation, send_at)
            self.scheduled[credit_id] = worker
            batches.setdefault(worker, []).append(credit)
        self._record_issued(phase, first, len(due))
        for worker, credits in batches.items():
            await self.dispatcher.send_credits(worker, credits)

    def _session_turn(self, credit_id: int, phase: int, send_at: int) -> Credit:
        """The request a scheduled slot sends in a multi-turn run: the next turn of a
        session whose previous turn has returned and whose think time is over by
        ``send_at``, else the first turn of a new session."""
        layout = self.layout
        assert layout is not None
        if self._followups and self._followups[0][0] <= send_at:
            _, session, flat, worker = heapq.heappop(self._followups)
        else:
            session = credit_id
            flat = layout.starts[self._next_session % layout.sessions]
            self._next_session += 1
            worker = self.pick_worker()
        self._turn_of[credit_id] = (session, flat, worker)
        return Credit(credit_id, phase, flat, send_at, session)

    def returned(self, credit_ids: list[int]) -> None:
        for credit_id in credit_ids:
            if self.scheduled.pop(credit_id, None) is not None and self._slots is not None:
                self._slots.release()
            turn = self._turn_of.pop(credit_id, None) if self._turn_of else None
            if turn is not None:
                session, flat, worker = turn
                following = flat + 1
                if following < len(self.turns) and self.turns[following].turn_index == \
                        self.turns[flat].turn_index + 1:
                    ready = _perf_ns() + int(self.turns[following].delay_ms * 1e6)
                    heapq.heappush(self._followups, (ready, session, following, worker))
        self._progress.set()

    # -- waiting ----------------------------------------------------------------------------

    def all_consumed(self) -> bool:
        return all(s.consumed for s in self.leases.values())

    def all_done(self) -> bool:
        return not self.scheduled and all(s.done for s in self.leases.values())

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            try:
                # Not asyncio.wait_for: on Python 3.11 it returns normally when the task is
                # cancelled just as the event is set (a report arriving with a host's
                # cancel), so a cancelled driver went on issuing leases that the cancelled
                # workers handed straight back, until the run was lost (1 mid-run cancel in
                # about 15 under load). asyncio.timeout keeps the cancel.
                async with asyncio.timeout(remaining):
                    await self._progress.wait()
            except TimeoutError:
                return condition()
        return True

    # -- the run ------------------------------------------------------------------------------

    def idle_gap_s(self) -> float:
        """The longest the schedule itself keeps every worker idle (nothing in flight, so
        no record arrives): the controller adds it to the run's stall timeout."""
        return 0.0

    def wait_bound_s(self, end_ns: int | None = None) -> float:
        """How long one wait for the workers may last. With a phase end: until the end plus
        the grace period (workers stop starting requests at the end and finish or cancel
        in-flight ones within the grace). Without: one request timeout, the longest a
        busy slot can go without finishing a request; a strategy re-checks its state after
        each wait, and the controller cancels a run that stalls for longer."""
        cfg = self.config
        if end_ns is not None:
            left = max(0.0, (end_ns - _perf_ns()) / 1e9)
            return left + cfg.benchmark_grace_period + PHASE_TIMEOUT_MARGIN_S
        return cfg.request_timeout_seconds + PHASE_TIMEOUT_MARGIN_S

    async def run(self) -> None:
        """Issue every phase; returns once the set of issued credits is final."""
        cfg = self.config
        if cfg.warmup_request_count:
            await self.issue_phase(WARMUP, cfg.warmup_request_count, None)
            while not await self.wait_for(self.all_done, self.wait_bound_s()):
                if not self._waiting_is_useful():
                    break
        self._followups.clear()  # the warmup's sessions end with it
        end_ns = None
        if cfg.benchmark_duration is not None:
            end_ns = _perf_ns() + int(cfg.benchmark_duration * 1e9)
        await self.issue_phase(PROFILING, self.profiling_count(), end_ns)
        while not await self.wait_for(self.all_consumed, self.wait_bound_s(end_ns)):
            if end_ns is not None or not self._waiting_is_useful():
                break
        if self.layout is not None and whole_session_leases(cfg):
            # A session takes its turns' ids when it starts; which of them were never
            # sent (a cancel) is known only when its lease is done: the issued set is
            # final then.
            while not await self.wait_for(self.all_done, self.wait_bound_s(end_ns)):
                if end_ns is not None or not self._waiting_is_useful():
                    break

    def profiling_count(self) -> int | None:
        """Requests of the profiling phase: with ``conversation_num`` and neither a request
        count nor a duration, every turn of that many sessions (AIPerf's session-bounded
        run: each session to its last turn)."""
        cfg = self.config
        if (self.layout is not None and cfg.conversation_num is not None
                and cfg.request_count is None and cfg.benchmark_duration is None):
            return self.layout.ids_of_sessions(self.layout.align_up(self._next_id),
                                               cfg.conversation_num)
        return cfg.resolved_request_count()

    def _waiting_is_useful(self) -> bool:
        """After a wait timed out without a duration to end it: whether anything can still
        happen (a lease being spent or a scheduled credit in flight)."""
        return bool(self.scheduled) or any(not s.done for s in self.leases.values())

    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        raise NotImplementedError


def _extend(ranges: list[tuple[int, int]], first: int, count: int) -> None:
    """Add ids ``first`` .. ``first + count - 1``, merged into the last range when they
    continue it: an open-loop run issues its ids a few at a time, and a range for each
    batch grew the timing manager by 2.4 MiB a minute at 500 requests/s (and the records
    manager by 800 MiB when it decoded them at the end of a 2-hour run)."""
    if ranges and ranges[-1][0] + ranges[-1][1] == first:
        ranges[-1] = (ranges[-1][0], ranges[-1][1] + count)
    else:
        ranges.append((first, count))


def _minus(ranges: list[tuple[int, int]], skipped: set[int]) -> list[tuple[int, int]]:
    """``ranges`` without the ids in ``skipped``, as ranges."""
    if not skipped:
        return list(ranges)
    out: list[tuple[int, int]] = []
    for first, count in ranges:
        holes = sorted(i for i in skipped if first <= i < first + count)
        start = first
        for hole in holes:
            if hole > start:
                out.append((start, hole - start))
            start = hole + 1
        if start < first + count:
            out.append((start, first + count - start))
    return out
