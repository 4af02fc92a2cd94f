"""CPU per request of the work off the worker, in one process: what a record processor
does per record (decode the worker's batch, derive, encode), and what the records manager
does per record at the end of a run (``compute_results`` with the per-request table).

On 2 cores this work competes with the worker and the server even though it runs niced,
so it shows in the throughput ratio (benchmarks/client_throughput.py), but a busy machine
hides it there. Here it is CPU time of this process only (the best of ``--rounds``), on
the mock server's own chat bodies and streams (16 tokens, usage, phases traced), so an
A/B of two checkouts holds on a busy machine:

    PYTHONPATH=<checkout> .venv/bin/python benchmarks/processing_cpu.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiperf.common.codec import PROFILING, MetricBatch, RawBatch, RawRecord, encode, raw_decoder
from aiperf.common.config import UserConfig
from aiperf.dataset.tokenizer import make_tokenizer
from aiperf.endpoints.base import make_endpoint
from aiperf.metrics.aggregate import compute_results
from aiperf.metrics.derive import RecordDeriver
from aiperf.mock_server.responders import ChatResponder, RequestPlan

TOKENS = 16
BATCH = 256  # the worker's RECORD_BATCH
TEXT = " ".join(["token"] * TOKENS)


def raw_record(credit_id: int, streaming: bool, read_per_event: bool = False) -> RawRecord:
    """One request as a worker records it: reads with their stamps, phases traced. A
    stream arrives in one read (the mock sends the chunks due together in one write, as
    in client_throughput.py) or, ``read_per_event``, in a read per event (a server with
    an inter-token latency)."""
    responder = ChatResponder()
    request_id = "chatcmpl-1"
    start = 1_000_000 * credit_id
    if streaming:
        events = [*responder.first_events(request_id),
                  *(responder.token_event(request_id, "token ") for _ in range(TOKENS)),
                  *responder.last_events(request_id, 32, TOKENS, True), b"data: [DONE]\n\n"]
        chunks = [(start + 200_000 + 5_000 * i, event) for i, event in enumerate(events)]
        if not read_per_event:
            chunks = [(chunks[-1][0], b"".join(event for event in events))]
    else:
        plan = RequestPlan(stream=False, output_tokens=TOKENS, prompt_tokens=32)
        chunks = [(start + 300_000, responder.body(request_id, TEXT, plan))]
    record = RawRecord(credit_id, PROFILING, "worker-0", 0, start - 50, start, 10**18 + start,
                       start + 150_000, chunks[-1][0] + 1_000, 200, chunks)
    record.sent_ns, record.reused, record.blocked_ns = start + 20_000, 1, 0
    record.dns_ns = record.connecting_ns = 0
    return record


def best_cpu_us(work: Callable[[], None], per: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best / per * 1e6


def measure(streaming: bool, read_per_event: bool, rounds: int,
            batches: int) -> tuple[float, float]:
    """(record processor, records manager) CPU us per request."""
    config = UserConfig(streaming=streaming)
    endpoint = make_endpoint(config)
    deriver = RecordDeriver(endpoint, make_tokenizer(config.tokenizer), [32])
    raws = [raw_record(i, streaming, read_per_event) for i in range(BATCH)]
    wire = encode(RawBatch(1, raws))

    def processor() -> None:
        for _ in range(batches):
            batch = raw_decoder.decode(wire)
            encode(MetricBatch(batch.run, [deriver.derive(raw) for raw in batch.records]))

    records = [deriver.derive(raw) for _ in range(batches) for raw in raws]
    for credit_id, record in enumerate(records):
        record.credit_id = credit_id
    count = len(records)

    def manager() -> None:
        with tempfile.TemporaryDirectory() as folder:
            compute_results(records, config, endpoint.metadata, [(0, count)],
                            endpoint.streaming, export_to=Path(folder) / "r.msgpack",
                            count=count)

    return best_cpu_us(processor, count, rounds), best_cpu_us(manager, count, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    modes = {"non-streaming": (False, False), "streaming, one read": (True, False),
             "streaming, a read per event": (True, True)}
    for mode, (streaming, read_per_event) in modes.items():
        processor, manager = measure(streaming, read_per_event, args.rounds, args.batches)
        print(f"{mode:28}: record processor {processor:5.2f} us/request, records manager "
              f"{manager:5.2f} us/request (CPU time, best of {args.rounds})")


if __name__ == "__main__":
    main()
