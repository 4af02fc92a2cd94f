"""Mesh figures (issue "Engine foundation"): cold start to ready, a no-op run on a warm mesh,
shutdown, and the mesh's memory with 2 workers and 1 record processor. Medians of 5.

    .venv/bin/python benchmarks/mesh_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

from _common import median, tree_memory_mib, tree_union_rss_mib

from aiperf.mesh import Mesh


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ready, noop, stop, rss, pss, uss, union = [], [], [], [], [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        mesh = Mesh(workers=2, record_processors=1).start()
        ready.append(time.perf_counter() - t0)
        mesh.run(timing_strategy="noop")  # first run warms caches
        trips = []
        for _ in range(20):
            t1 = time.perf_counter()
            mesh.run(timing_strategy="noop")
            trips.append(time.perf_counter() - t1)
        noop.append(median(trips))
        assert mesh.pid is not None
        r, p, u = tree_memory_mib(mesh.pid)
        rss.append(r)
        pss.append(p)
        uss.append(u)
        union.append(tree_union_rss_mib(mesh.pid) or float("nan"))
        t2 = time.perf_counter()
        mesh.shutdown()
        stop.append(time.perf_counter() - t2)
    print(f"mesh ready (cold start)      median {median(ready) * 1000:7.0f} ms   target <= 1000 ms")
    print(f"no-op run, warm mesh (RTT)   median {median(noop) * 1000:7.1f} ms   target <= 20 ms")
    print(f"shutdown                     median {median(stop) * 1000:7.0f} ms   target <= 500 ms")
    print(f"mesh memory, RSS (each page once) median {median(union):4.0f} MiB  target <= 250 MiB"
          f" (nan: needs root to read page frames)")
    print(f"mesh memory, PSS summed      median {median(pss):7.0f} MiB  target <= 250 MiB")
    print(f"mesh memory, RSS summed      median {median(rss):7.0f} MiB  (shared pages counted "
          f"once per process)")
    print(f"mesh memory, USS summed      median {median(uss):7.0f} MiB  (pages only one "
          f"process holds)")


if __name__ == "__main__":
    main()
