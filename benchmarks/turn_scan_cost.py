"""The cost of judging an objective on some turns (``time_to_first_token.p99[turn>=2]``)
against the same objective on the whole run, for multi-turn runs of 10,000 and 100,000
requests.

    .venv/bin/python benchmarks/turn_scan_cost.py [--requests 10000 100000] [--repeats 5]

Each run is built by the engine's own aggregation from synthetic records (4-turn sessions
on 8 back-to-back slots, lognormal TTFT: 300 ms on a session's first turn, 20 ms later,
1 % of turns failed), its per-request table written to a file as a mesh run has it
(``RecordsFile``), outside the timing. What is timed is the plugin's verdict after a run,
with scipy already imported:

- whole run: ``judge_runs`` of ``time_to_first_token.p99 < 250 ms``, which reads the
  metric's values the result already holds;
- turn>=2: the same objective on ``[turn>=2]``, which streams the per-request table once
  (``aiperf.dataset.breakdowns.turn_sample``: metadata and the one metric decoded);
- steady turn>=2: the same with ``steady=True`` (the steady window, then the table);
- gate turn>=2: a regression gate ``time_to_first_token.p99[turn>=2]:10%`` of this run
  against its own stored copy (``ResultValues.turn_values``: one scan of the table's
  metadata, then a mask over the metric's values), against the same gate on every request.

Prints each median over ``--repeats`` runs, per record, and the ratio to the whole-run
verdict. No thresholds: figures to read, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aiperf.baselines.compare import compare, parse_rule
from aiperf.baselines.machine import MachineInfo
from aiperf.baselines.storage import StoredRun, stored_run
from aiperf.results import ProfileResult
from pytest_aiperf.baseline import ResultValues
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.slo import parse_objectives
from tests.harness.session_runs import session_result

TURNS = 4
SLOTS = 8
MACHINE = MachineInfo(cpu_model="bench", cores=2, python="CPython", package_version="0",
                      platform="bench", git_commit=None, git_dirty=None)


def multi_turn_run(requests: int, directory: Path) -> ProfileResult:
    sessions = requests // TURNS
    failed = [(s, 1 + s % (TURNS - 1)) for s in range(0, sessions, 25)]  # 1 % of turns
    return session_result(sessions=sessions, turns=TURNS, ttft_ms=(300.0, 20.0),
                          failed_turns=failed, slots=SLOTS, seed=1,
                          export_to=directory / f"records_{requests}.jsonl")


def timed(repeats: int, work: Callable[[], object]) -> float:
    """Median milliseconds of ``work`` over ``repeats`` runs (after one untimed run)."""
    work()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def report(label: str, ms: float, records: int, base: float | None) -> None:
    ratio = "" if base is None else f"  x{ms / base:6.1f} of whole run"
    print(f"  {label:<28} median {ms:8.2f} ms  {ms * 1e3 / records:6.2f} µs/record{ratio}")


def bench(requests: int, repeats: int, directory: Path) -> None:
    result = multi_turn_run(requests, directory)
    config = result.config
    size = Path(result.records.path).stat().st_size / 2**20  # type: ignore[attr-defined]
    print(f"{requests:,} requests ({result.error_count} failed), {TURNS}-turn sessions, "
          f"table {size:.1f} MiB")
    whole = parse_objectives({"time_to_first_token.p99": "< 250 ms"})
    turns = parse_objectives({"time_to_first_token.p99[turn>=2]": "< 250 ms"})
    base = timed(repeats, lambda: judge_runs(whole, [result], config, False, 0.95))
    report("whole run", base, requests, None)
    report("turn>=2", timed(repeats, lambda: judge_runs(turns, [result], config, False,
                                                          0.95)), requests, base)
    report("steady turn>=2", timed(repeats, lambda: judge_runs(turns, [result], config, True,
                                                                 0.95)), requests, base)
    before = StoredRun.model_validate_json(
        stored_run("bench::turns", result, "main", 1, machine=MACHINE).model_dump_json())
    all_gate = [parse_rule("time_to_first_token.p99:10%")]
    turn_gate = [parse_rule("time_to_first_token.p99[turn>=2]:10%")]
    # a new ResultValues each time: its table scan is cached per instance, as per test
    gate_base = timed(repeats, lambda: compare(before, ResultValues([result]), all_gate))
    report("gate, every request", gate_base, requests, None)
    gate = timed(repeats, lambda: compare(before, ResultValues([result]), turn_gate))
    report("gate, turn>=2", gate, requests, None)
    print(f"  {'':<28} gate turn>=2 / every request: x{gate / gate_base:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # scipy and the verdict code imported and warm before anything is timed
    with tempfile.TemporaryDirectory(prefix="turn_scan_") as tmp:
        warm = multi_turn_run(400, Path(tmp))
        judge_runs(parse_objectives({"time_to_first_token.p99[turn>=2]": "< 1 s"}), [warm],
                   warm.config, False, 0.95)
        for requests in args.requests:
            bench(requests, args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
