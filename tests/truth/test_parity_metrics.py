"""AIPerf 0.13's derived metrics (aiperf/metrics/parity.py) on a real run against a reference
server whose schedule is the truth: 17 prompt tokens, the first token 20 ms after the
request, then 7 more 5 ms apart (8 tokens, 55 ms a request), 4 requests in flight.

The per-request and run-level values are computed here from the run's own records and
statistics with the functions the records manager is to call (see docs/metrics.md: until
it does, they are not in ``result.metrics``), so this checks the formulas on real data."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from aiperf.mesh import Mesh
from aiperf.metrics.parity import (
    add_request_values,
    result_request_values,
    result_sweep_metrics,
    run_metrics,
)
from tests.harness.reference_servers import PROMPT_TOKENS, Behaviour, ServerStats
from tests.truth.compare import measure_until_the_box_keeps_time
from tests.truth.conftest import ServerPool

BEHAVIOUR = Behaviour(content_after_ms=20.0, answer_tokens=8, chunk_gap_ms=5.0)
CONCURRENCY = 4
REQUESTS = 24
TTFT_MS = 20.0
DECODE_MS = 7 * 5.0
LATENCY_MS = TTFT_MS + DECODE_MS
OSL = 8
# What a loaded 2-core box adds to a schedule: the server's late wake-ups (it reports
# them) and the client's own path. Generous for the medians checked below.
SLACK_MS = 4.0


def test_derived_metrics_match_the_schedule(truth_mesh: Mesh,
                                            reference_servers: ServerPool) -> None:
    server = reference_servers.get(BEHAVIOUR)

    def measure() -> tuple[list[str], ServerStats]:
        before = server.stats()
        result = truth_mesh.run(url=server.url, model="ref", streaming=True,
                                concurrency=CONCURRENCY, request_count=REQUESTS,
                                request_timeout_seconds=20)
        seen = server.stats() - before
        late = max(seen.late_ms, default=0.0)
        problems: list[str] = []
        rows = [record["metrics"] for record in result.records
                if record["metadata"]["benchmark_phase"] == "profiling"]
        assert len(rows) == REQUESTS and result.error_count == 0
        values = [{tag: m["value"] for tag, m in row.items()} for row in rows]
        for row in values:
            add_request_values(row)
        decode = statistics.median(v["decode_duration"] for v in values)
        if abs(decode - DECODE_MS) > SLACK_MS + late:
            problems.append(f"decode_duration p50 {decode:.2f} ms, truth {DECODE_MS}")
        e2e = statistics.median(v["e2e_output_token_throughput"] for v in values)
        truth_e2e = OSL * 1000 / LATENCY_MS
        low, high = OSL * 1000 / (LATENCY_MS + SLACK_MS + late), OSL * 1000 / LATENCY_MS
        if not low * 0.98 <= e2e <= high * 1.02:
            problems.append(f"e2e_output_token_throughput p50 {e2e:.1f}, truth "
                            f"{truth_e2e:.1f} (at most {high:.1f})")
        prefill = statistics.median(v["prefill_throughput_per_user"] for v in values)
        low, high = PROMPT_TOKENS * 1000 / (TTFT_MS + SLACK_MS + late), \
            PROMPT_TOKENS * 1000 / TTFT_MS
        if not low * 0.98 <= prefill <= high * 1.02:
            problems.append(f"prefill_throughput_per_user p50 {prefill:.1f}, truth at "
                            f"most {high:.1f}")
        for row in values:  # exact identities with the record's own values
            assert row["decode_duration"] == pytest.approx(
                row["request_latency"] - row["time_to_first_token"])
            assert row["e2e_output_token_throughput"] == pytest.approx(
                row["output_sequence_length"] * 1000 / row["request_latency"])

        # The same values computed on the host from the run's per-request arrays.
        arrays = result_request_values(result.metrics)
        for tag in ("decode_duration", "e2e_output_token_throughput",
                    "prefill_throughput_per_user"):
            host, index = arrays[tag]
            assert len(index) == REQUESTS
            assert sorted(host) == pytest.approx(sorted(v[tag] for v in values))

        summary = result.to_dict()
        duration = result.metric("benchmark_duration")
        totals = run_metrics(summary, duration)
        assert totals["total_isl"]["avg"] == PROMPT_TOKENS * REQUESTS  # the server's usage
        assert totals["total_osl"]["avg"] == OSL * REQUESTS
        assert totals["input_token_throughput"]["avg"] == pytest.approx(
            PROMPT_TOKENS * REQUESTS / duration)

        sweeps = result_sweep_metrics(result)
        conc = sweeps["effective_concurrency"]
        # A closed loop of 4 never has more; between a response and the next request of
        # its slot only the client's own path passes (well under a ms each time).
        if conc["max"] != CONCURRENCY or not 3.3 <= conc["avg"] <= CONCURRENCY:
            problems.append(f"effective_concurrency avg {conc['avg']:.3f} max "
                            f"{conc['max']}, truth 4 (avg a little under)")
        # Each request holds its 17 prompt tokens throughout, and each output token from
        # its chunk on (20, 25, ... 55 ms): on average over its 55 ms,
        per_request = PROMPT_TOKENS + sum(LATENCY_MS - (TTFT_MS + 5.0 * k)
                                          for k in range(OSL)) / LATENCY_MS
        tif = sweeps["tokens_in_flight"]
        if abs(tif["avg"] - conc["avg"] * per_request) > 0.08 * conc["avg"] * per_request:
            problems.append(f"tokens_in_flight avg {tif['avg']:.1f}, truth "
                            f"{conc['avg'] * per_request:.1f} at the measured concurrency")
        if tif["max"] > CONCURRENCY * (PROMPT_TOKENS + OSL):
            problems.append(f"tokens_in_flight max {tif['max']} above 4 x 25")
        # Once the records manager and the result compute these themselves, they must
        # be exactly what the functions give on the same run.
        for tag in ("decode_duration", "e2e_output_token_throughput",
                    "prefill_throughput_per_user"):
            if tag in result.metrics:
                mine = np.array([v[tag] for v in values])
                assert result.metrics[tag].stat("p50") == pytest.approx(
                    float(np.percentile(mine, 50)))
                assert result.metrics[tag].stat("sum") == pytest.approx(float(mine.sum()))
        for tag, stats in [*totals.items(), *sweeps.items()]:
            if tag in result.metrics:
                for name, value in stats.items():
                    if name != "unit":
                        assert result.metrics[tag].stat(name) == pytest.approx(value), tag
        return problems, seen

    problems, seen, attempts, client_wait = measure_until_the_box_keeps_time(measure)
    assert not problems, (f"attempt {attempts}: {problems}; server late {seen.late_ms[:8]}; "
                          f"client's worst wait for a CPU {client_wait} ms")
