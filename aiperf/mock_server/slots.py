"""The mock's server-side queue: at most N requests in service, the rest wait FIFO, and
the capacity it implies (``true_capacity``).

With a known service time S and N slots, saturation is known by construction: at a
concurrency c above N the throughput is N / mean(S), and a request waits about
(c / N - 1) x mean(S) for its slot before its own time starts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiperf.mock_server.config import MockServerConfig


class Slots:
    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> asyncio.Future[None] | None:
        """None when a slot was free (it is now held); else a future done when a slot is
        handed over. A cancelled future never gets one."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def give_back(self) -> None:
        """Hand the slot to the longest-waiting request still there, or free it."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return sum(not future.done() for future in self._waiting)


# -- the capacity model ---------------------------------------------------------------------
#
# With N slots, a fixed TTFT and a fixed ITL, every streamed request holds its slot for the
# same service time S (TTFT + the token pauses), so the largest load that keeps a TTFT
# percentile under a threshold T is known by construction:
#
# * closed loop (concurrency c): with c <= N a request never waits, so its TTFT is the
#   mock's TTFT (plus the client's own few tenths of a millisecond). At c = N + 1 every
#   slot stays busy, so by Little's law the mean wait is S / N less the client's gap
#   between a response and its next request; a wait never exceeds S (one departure frees a
#   slot), so the p-quantile of the wait is at least (mean - (1 - p) S) / p. A threshold
#   between the two makes N the capacity; more clients only wait longer.
# * open loop at a constant rate r: arrivals 1 / r apart reach slot i mod N, free again
#   when N / r >= S, so r <= N / S never waits; above it the backlog grows by
#   (S / N - 1 / r) per request, and over R requests the p-quantile wait is about
#   p R (S / N - 1 / r), far above any small margin once r is a few % over N / S.


class CapacityUndetermined(ValueError):
    """The threshold sits where the model cannot say which side a load falls on."""


def service_ms(config: MockServerConfig, tokens: int | None = None) -> float:
    """How long a streamed request holds its slot (fixed TTFT and ITL only)."""
    _require_fixed(config)
    return config.true_quantile("request_latency", 0.5, stream=True, tokens=tokens)


def true_capacity(config: MockServerConfig, threshold_ms: float, *, percentile: float = 99.0,
                  over: str = "concurrency", requests: int = 1000, client_ms: float = 2.0,
                  tokens: int | None = None) -> float:
    """The largest concurrency (or constant request rate, req/s) at which streamed requests
    keep ``time_to_first_token.p<percentile> < threshold_ms`` on this server.

    ``client_ms`` is what the client adds to a TTFT it measures, and its gap between a
    response and the next request (a loaded 2-core box: about 1-2 ms); ``requests`` is how
    many a run sends (the warm-up wave waits less). Raises ``CapacityUndetermined`` when the
    threshold is within that slack of the unqueued TTFT, or not clearly below the queued
    one, and ``ValueError`` when the mock has no slots or random latencies."""
    if config.slots is None:
        raise ValueError("the mock has no capacity limit: set slots")
    if over not in ("concurrency", "request_rate"):
        raise ValueError(f"over must be concurrency or request_rate, not {over!r}")
    p = percentile / 100.0
    if not 0 < p < 1:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    service = service_ms(config, tokens)
    slots = config.slots
    unqueued = config.ttft_latency().quantile_ms(p)
    if threshold_ms <= unqueued:
        return 0.0
    if threshold_ms <= unqueued + client_ms:
        raise CapacityUndetermined(
            f"threshold {threshold_ms:g} ms is within the client's {client_ms:g} ms of the "
            f"unqueued TTFT {unqueued:g} ms")
    if over == "request_rate":
        return slots * 1000.0 / service
    queued = queued_ttft_ms(config, percentile, requests=requests, client_ms=client_ms,
                            tokens=tokens)
    if threshold_ms >= queued:
        raise CapacityUndetermined(
            f"threshold {threshold_ms:g} ms is not below {queued:.3g} ms, the least TTFT "
            f"p{percentile:g} at concurrency {slots + 1}: choose one in "
            f"({unqueued + client_ms:.3g}, {queued:.3g}) ms")
    return float(slots)


def queued_ttft_ms(config: MockServerConfig, percentile: float = 99.0, *,
                   requests: int = 1000, client_ms: float = 2.0,
                   tokens: int | None = None) -> float:
    """A lower bound on the TTFT p<percentile> at concurrency slots + 1 (see above)."""
    if config.slots is None:
        raise ValueError("the mock has no capacity limit: set slots")
    p = percentile / 100.0
    service = service_ms(config, tokens)
    slots = config.slots
    warm = max(0.0, (requests - (slots + 1)) / requests)  # the first wave does not wait
    mean_wait = max(0.0, service / slots - client_ms) * warm
    wait_quantile = max(0.0, (mean_wait - (1 - p) * service) / p)
    return config.ttft_latency().quantile_ms(p) + wait_quantile


def rate_fail_margin(config: MockServerConfig, threshold_ms: float, *,
                     percentile: float = 99.0, requests: int = 300,
                     tokens: int | None = None) -> float:
    """The relative excess e over ``N / S`` beyond which a constant-rate run of
    ``requests`` breaks the threshold: p R (S / N) e / (1 + e) = threshold - TTFT."""
    p = percentile / 100.0
    per_slot = service_ms(config, tokens) / _slots(config)
    room = threshold_ms - config.ttft_latency().quantile_ms(p)
    x = room / (p * requests * per_slot)
    return x / (1 - x) if x < 1 else float("inf")


def _slots(config: MockServerConfig) -> int:
    if config.slots is None:
        raise ValueError("the mock has no capacity limit: set slots")
    return config.slots


def _require_fixed(config: MockServerConfig) -> None:
    if not config.ttft_latency().is_fixed or config.itl_stddev_ms > 0:
        raise ValueError("the capacity model needs a fixed TTFT and ITL (their stddev 0, "
                         "ttft_distribution normal or fixed)")
