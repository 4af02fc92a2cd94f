"""The controller side's CPU per request as the number of workers grows (issue 12): 1, 8 and
64 simulated workers (tests/harness/sim_workers.py: real Worker services in one process,
a transport that answers at once) against one mesh of the external backend.

Measured per run: the CPU time (user + system) of the controller's process tree, i.e. the
controller, timing manager, dataset manager, record processors and records manager (the
simulated workers are not in it), each service's share, and the simulation process's CPU
for reference. One warm-up run per mesh, then ``--repeats`` runs of ``--requests`` and of
``--small`` requests, interleaved; from their medians:

- all-in: a long run's CPU divided by its requests (what a run of that size costs);
- marginal: the difference of the two sizes per extra request (the credit, lease and record
  paths), free of what every run pays once;
- fixed: what a run pays whatever its size (configure, with the dataset shipped inline to
  every remote worker; start; results).

CPU times come in 10 ms ticks per process: with the defaults a service's marginal figure
moves in steps of about 0.6 us per request, its all-in one in steps of 0.5.

    .venv/bin/python benchmarks/controller_scaling.py [--workers 1 8 64] [--repeats 3]
        [--concurrency 128] [--requests 20000] [--small 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import median

from aiperf.mesh import Mesh
from tests.harness.sim_workers import SIM_URL, simulated_mesh

GROUPS = ("system_controller", "timing_manager", "record_processor", "records_manager",
          "dataset_manager")


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def _group(service_id: str) -> str:
    for group in GROUPS:
        if service_id.startswith(group):
            return group
    return service_id


def _snapshot(controller: int, services: dict[str, int], sim: int) -> dict[str, float]:
    """CPU seconds so far: the controller's tree (the controller itself and each local
    service, grouped) and the simulation process."""
    out = dict.fromkeys(GROUPS, 0.0)
    out["system_controller"] = _cpu(controller)
    for service_id, pid in services.items():
        if pid in (controller, sim):
            continue  # remote workers report the simulation's pid
        out[_group(service_id)] = out.get(_group(service_id), 0.0) + _cpu(pid)
    tree = _cpu(controller) + sum(_cpu(p.pid) for p in psutil.Process(controller).children(
        recursive=True))
    out["tree"] = tree
    out["sim"] = _cpu(sim)
    return out


def _run(mesh: object, local: dict[str, int], sim_pid: int, concurrency: int,
         requests: int) -> dict[str, float]:
    """One run's CPU seconds by group, and its wall time."""
    assert isinstance(mesh, Mesh) and mesh.pid is not None
    before = _snapshot(mesh.pid, local, sim_pid)
    t0 = time.perf_counter()
    result = mesh.run(url=SIM_URL, concurrency=concurrency, request_count=requests)
    elapsed = time.perf_counter() - t0
    after = _snapshot(mesh.pid, local, sim_pid)
    if result.request_count != requests or not result.invariant.get("ok"):
        raise SystemExit(f"a broken run: {result!r}")
    run = {key: after[key] - before[key] for key in after}
    run["elapsed"] = elapsed
    return run


def measure(workers: int, repeats: int, concurrency: int, small: int,
            large: int) -> dict[str, dict[str, float]]:
    """Medians over ``repeats`` runs of ``small`` and of ``large`` requests (interleaved,
    so a disturbance of the machine hits both alike), on one warm mesh."""
    runs: dict[int, list[dict[str, float]]] = {small: [], large: []}
    with simulated_mesh(workers, startup_timeout=60, command_timeout=60) as (mesh, sim):
        assert sim.pid is not None
        local = {sid: pid for sid, pid in mesh.services.items() if pid != sim.pid}
        _run(mesh, local, sim.pid, concurrency, small)  # warm-up: caches, connections
        for _ in range(repeats):
            for count in (small, large):
                runs[count].append(_run(mesh, local, sim.pid, concurrency, count))
    out: dict[str, dict[str, float]] = {}
    for key in runs[large][0]:
        cpu_small = median([run[key] for run in runs[small]])
        cpu_large = median([run[key] for run in runs[large]])
        marginal = (cpu_large - cpu_small) / (large - small)
        out[key] = {"all_in_us": cpu_large / large * 1e6, "marginal_us": marginal * 1e6,
                    "fixed_ms": (cpu_small - marginal * small) * 1e3}
    out["rps"] = {"all_in_us": large / median([run["elapsed"] for run in runs[large]])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000,
                        help="the short run's requests, for the per-run fixed cost; at "
                        "least the synthetic pool (1000), so both runs ship the same dataset")
    args = parser.parse_args()
    rows = {n: measure(n, args.repeats, args.concurrency, args.small, args.requests)
            for n in args.workers}
    print(f"controller side: CPU per request (us) and per run (ms), concurrency "
          f"{args.concurrency}; medians of {args.repeats} runs of {args.requests} and of "
          f"{args.small} requests")
    cols = [("tree", "tree"), ("ctrl", "system_controller"), ("timing", "timing_manager"),
            ("rec.proc", "record_processor"), ("rec.mgr", "records_manager"),
            ("dataset", "dataset_manager"), ("sim wkrs", "sim")]
    for label, field, unit in (("all-in, per request of the long run", "all_in_us", "us"),
                               ("marginal, per extra request", "marginal_us", "us"),
                               ("fixed, per run (configure, start, results)", "fixed_ms",
                                "ms")):
        print(f"\n{label} ({unit})")
        header = f"{'workers':>7} {'req/s':>7} " + " ".join(f"{name:>8}" for name, _ in cols)
        print(header)
        print("-" * len(header))
        for n, row in rows.items():
            print(f"{n:>7} {row['rps']['all_in_us']:>7.0f} "
                  + " ".join(f"{row[key][field]:>8.1f}" for _, key in cols))
    print("\ntree: the controller's whole process tree (ctrl + timing + rec.proc + rec.mgr + "
          "dataset); sim wkrs: the simulated workers' one process, for reference, not in tree")


if __name__ == "__main__":
    main()
