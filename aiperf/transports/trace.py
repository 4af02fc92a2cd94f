"""aiohttp trace hooks that time a request's connection phases into its ``RawRecord``.

The record rides along as aiohttp's ``trace_request_ctx``, so a hook writes straight into
it: no per-request dict, no lookup. Only the hooks that give a phase boundary are
registered. The request and response phases after the connection (sending, waiting,
receiving) come from the transport's own timestamps (``start_ns``, ``sent_ns``,
``response_ns``, its reads), so no hook runs per response chunk.

aiohttp's order of events for one request (it fires ``on_request_start`` *before* the
pool, so that hook would not mark the start of the request on the wire)::

    [queued_start -> queued_end]          pool full: wait for a free connection (blocked)
    reuseconn                              a pooled connection: start
  | create_start                           a new connection
        [dns_resolvehost_start -> end]     DNS (cache misses only)
    create_end                             connected (TCP, TLS): start
    request_headers_sent, request_chunk_sent...   the last one: sent_ns
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import aiohttp

_perf_ns = time.perf_counter_ns


async def _queued_start(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    ctx.mark = _perf_ns()


async def _queued_end(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    ctx.trace_request_ctx.blocked_ns += _perf_ns() - ctx.mark


async def _create_start(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    ctx.trace_request_ctx.dns_ns = 0
    ctx.mark = _perf_ns()


async def _create_end(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    now = _perf_ns()
    record = ctx.trace_request_ctx
    # aiohttp resolves the host inside connection creation: DNS is its own phase.
    record.connecting_ns = now - ctx.mark - record.dns_ns
    record.reused = 0
    record.start_ns = now


async def _reused(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    record = ctx.trace_request_ctx
    record.reused = 1
    record.start_ns = _perf_ns()


async def _dns_start(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    ctx.dns_mark = _perf_ns()


async def _dns_end(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    ctx.trace_request_ctx.dns_ns += _perf_ns() - ctx.dns_mark


async def _sent(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    ctx.trace_request_ctx.sent_ns = _perf_ns()


def phase_trace_config() -> aiohttp.TraceConfig:
    """A trace config for a session whose requests pass their ``RawRecord`` as
    ``trace_request_ctx``."""
    config = aiohttp.TraceConfig()
    config.on_connection_queued_start.append(_queued_start)
    config.on_connection_queued_end.append(_queued_end)
    config.on_connection_create_start.append(_create_start)
    config.on_connection_create_end.append(_create_end)
    config.on_connection_reuseconn.append(_reused)
    config.on_dns_resolvehost_start.append(_dns_start)
    config.on_dns_resolvehost_end.append(_dns_end)
    config.on_request_headers_sent.append(_sent)
    config.on_request_chunk_sent.append(_sent)
    return config
