"""CPU per request of the worker's own part of multi-turn sessions, in one process: single
requests against 4-turn sessions through the real ``Worker`` code (``_execute`` and
``_session``, the answer's read, the history splice, the record queue and the batch
encode), with only the transport's network taken away: its ``_exchange`` writes the
request's head and body into one buffer, as the lean client does, and hands back the mock
server's own chat body or stream (16 tokens) at once. Sessions run one after another.

What the mesh benchmark (``multi_turn_cost.py``) cannot resolve on a 2-core box whose speed
drifts: a change of 0.3 us a request. CPU time of this process, min and median of
``--rounds``; with ``--base``, a second worker module (another checkout's
``aiperf/services/worker.py``) runs the sessions too, interleaved round by round:

    .venv/bin/python benchmarks/session_turn_cpu.py [--rounds 9] [--streaming]
        [--base <checkout>/aiperf/services/worker.py]

``PYTHONPATH=<checkout>`` runs it on another checkout's ``aiperf`` as a whole (its answer
reads and its lean client too): at 50d8c73, sessions cost 8.8 us a request more than single
requests, non-streaming; at e4acd78, 5.5 us.

The workers are built without their sockets, from the attributes that ``Worker``'s
``_open_sockets`` and ``_configure`` set: when those change, this script fails loudly
(an AttributeError) until ``_worker`` below follows them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import statistics
import sys
import time
from typing import Any

from processing_cpu import TOKENS, raw_record

from aiperf.common.codec import Lease, RawRecord
from aiperf.common.config import UserConfig
from aiperf.dataset.rankings import dataset_name
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.endpoints.base import make_endpoint
from aiperf.plugin import PluginType, plugins
from aiperf.services import worker as worker_module
from aiperf.transports.lean import LeanHttpTransport

ISL = 32
TURNS = 4
_perf_ns = time.perf_counter_ns


def answer_reads(streaming: bool) -> list[bytes]:
    """The mock's answer as the client reads it (``processing_cpu.raw_record``'s): a body in
    one read, a stream a read per event (a server with an inter-token latency)."""
    return [read for _, read in raw_record(0, streaming, read_per_event=True).chunks]


class InstantLean(LeanHttpTransport):
    """The lean client with its network taken away (see the module's docstring)."""

    reads: list[bytes] = []

    async def _exchange(self, session: Any, record: RawRecord, url: str,
                        headers: Any, body: bytes, streaming: bool) -> None:
        head = b"POST / HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (
            self._block(headers), len(body))
        _written = head + body  # the copy that the one write of a small body makes
        record.start_ns = record.sent_ns = _perf_ns()
        record.status = 200
        for read in self.reads:
            record.chunks.append((_perf_ns(), read))


class _Discard:
    """The record socket: batches are encoded as for sending, then dropped."""

    def send(self, frame: bytes, flags: int = 0) -> None:
        pass

    def send_multipart(self, frames: list[bytes], flags: int = 0, copy: bool = True) -> None:
        pass


async def _worker(worker_class: type, config: UserConfig, reads: list[bytes]) -> Any:
    """A worker configured for ``config`` as its ``_open_sockets`` and ``_configure``
    leave it, without sockets or a mesh."""
    worker = worker_class.__new__(worker_class)
    worker.service_id = "worker_0"
    worker._records = _Discard()
    worker._backlog = collections.deque()
    worker._drained = asyncio.Event()
    worker._drained.set()
    worker._run, worker._run_id, worker._session_tag = 1, "run", "00000001-"
    worker._cancelled = False
    worker._sessions, worker._planned, worker._histories = set(), set(), {}
    worker._tokenizer, worker._cancel_share, worker._cancel_delay_s = None, 0.0, 0.0
    worker._urls, worker._whole_sessions = [], False
    worker._leases, worker._slot_tasks, worker._generation = [], [], 0
    worker._wake = asyncio.Event()
    worker._in_flight, worker._pending_records, worker._pending_bytes = {}, [], 0
    worker._batch_bytes = worker_module.RECORD_BATCH_BYTES
    worker._record_bytes, worker._big_flush, worker._record_timer = 0, None, None
    worker._pending_returns, worker._skew_ns, worker._clock = [], 0, None
    worker._clock_offset_ns = worker._to_perf_ns = 0
    worker._endpoint = make_endpoint(config)
    loader = plugins.get_class(PluginType.DATASET_LOADER, dataset_name(config))
    worker._turns = loader(config, make_tokenizer(config.tokenizer)).load()
    worker._bodies = [None] * len(worker._turns)
    worker._parts = [None] * len(worker._turns)
    worker._url = worker._endpoint.url
    worker._configure_sessions(config)
    worker._streaming = worker._endpoint.streaming
    worker._headers, worker._secrets = worker._endpoint.headers(), ()
    transport = InstantLean(600, 64)
    transport.reads = reads
    await transport.start(headers=worker._headers)
    worker._transport = transport
    worker._headers_with = transport.headers_with
    return worker


async def _single(worker: Any, requests: int) -> float:
    current = asyncio.current_task()
    worker._in_flight[-1] = current  # others in flight: records leave in batches
    began = time.process_time_ns()
    for credit_id in range(requests):
        worker._in_flight[credit_id] = current
        await worker._execute(credit_id, 0, credit_id % len(worker._turns), _perf_ns())
    return (time.process_time_ns() - began) / requests / 1000


async def _sessions(worker: Any, requests: int, progress_class: type) -> float:
    current = asyncio.current_task()
    worker._in_flight[-1] = current
    progress = progress_class(Lease(1, 0, 0, requests + 1000, 32))
    worker._leases = [progress]
    began = time.process_time_ns()
    while progress.next_offset < requests:
        await worker._session(progress, progress.lease.first_id + progress.next_offset,
                              worker._generation, current)
    return (time.process_time_ns() - began) / progress.next_offset / 1000


def _load_worker_module(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("aiperf.services._worker_base", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--streaming", action="store_true")
    parser.add_argument("--base", default=None,
                        help="another checkout's aiperf/services/worker.py, for an A/B")
    args = parser.parse_args()
    common = {"url": "http://127.0.0.1:9", "streaming": args.streaming, "concurrency": 32,
              "request_count": args.requests, "osl": TOKENS, "isl": ISL}
    reads = answer_reads(args.streaming)
    single = await _worker(worker_module.Worker, UserConfig.build(**common), reads)
    multi = UserConfig.build(**common, conversation_turn_mean=TURNS)
    arms = {"new": (await _worker(worker_module.Worker, multi, reads),
                    worker_module._LeaseProgress)}
    if args.base is not None:
        base = _load_worker_module(args.base)
        arms = {"base": (await _worker(base.Worker, multi, reads), base._LeaseProgress),
                **arms}
    samples: dict[str, list[float]] = {"single": [], **{name: [] for name in arms}}
    for round_ in range(args.rounds):
        samples["single"].append(await _single(single, args.requests))
        for name in (list(arms) if round_ % 2 == 0 else list(arms)[::-1]):
            worker, progress_class = arms[name]
            samples[name].append(await _sessions(worker, args.requests, progress_class))
    mode = "streaming" if args.streaming else "non-streaming"
    for name, values in samples.items():
        label = "single requests" if name == "single" else f"{TURNS}-turn sessions ({name})"
        print(f"{mode} {label}: min {min(values):.2f} us, median "
              f"{statistics.median(values):.2f} us a request "
              f"[{', '.join(f'{v:.2f}' for v in values)}]")
    for name in arms:
        print(f"{mode} sessions ({name}) over single requests: "
              f"{min(samples[name]) - min(samples['single']):+.2f} us a request (mins)")


if __name__ == "__main__":
    asyncio.run(main())
