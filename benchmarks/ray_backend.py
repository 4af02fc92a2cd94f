"""The Ray backend's figures (issue 12), on a Ray cluster of its own (tests/harness/
ray_cluster.py: nodes in a private network namespace on this host; needs root):

a. start-up: a Ray cluster already running -> the mesh ready (``Mesh.start``: the controller
   joins the cluster, places the worker actors, they connect back and register), next to
   a local mesh's (forked workers);
b. the workers' CPU per request for the same closed-loop profile against the mock server:
   the ``ray::RemoteService`` actor processes of a ray mesh (their pids from
   ``Mesh.locations``) against the forked worker children of a local mesh's controller.
   Ray is not on the data path, so the target is the same within noise;
   A third mesh, local but on the ray mesh's wire (TCP, CURVE keys, clock sync), tells
   what the wire costs from what hosting in Ray costs;
c. requests/s of the meshes and of the bare aiohttp client (benchmarks/_common.py) on the
   same profile, in the same run, against the same mock server.

Every figure is a median of ``--repeats``; the runs of the three clients are interleaved,
so a drift of the machine hits them alike. The mock server is pinned to CPU 0, as in
client_throughput.py.

    sudo .venv/bin/python benchmarks/ray_backend.py [--repeats 3] [--requests 10000]
        [--workers 2] [--nodes 2]

The measuring driver runs inside the cluster's namespace (``RayCluster.run``), because a
mesh's host must reach the cluster and the cluster must reach the mesh's addresses.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_REPO))

from _common import bare_client, median  # noqa: E402
from client_throughput import CONCURRENCY, TOKENS, pin  # noqa: E402

MARK = "@@ray-backend "
_PID = re.compile(r"\bpid (\d+)\b")


# --------------------------------------------------------------------------- the driver


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _worker_pids(mesh: Any) -> list[int]:
    """The processes the mesh's workers run in: for a ray mesh the actors' (the pid in each
    location, checked to be a ``ray::RemoteService`` process), for a local one the
    controller's forked children."""
    import psutil

    workers = sorted(sid for sid in mesh.services if sid.startswith("worker_"))
    if mesh.service_config.backend == "local":
        return [mesh.services[sid] for sid in workers]
    pids = []
    for sid in workers:
        found = _PID.search(mesh.locations.get(sid, ""))
        if found is None:
            raise SystemExit(f"no pid in the location of {sid}: {mesh.locations.get(sid)!r}")
        pid = int(found.group(1))
        title = " ".join(psutil.Process(pid).cmdline())
        if "RemoteService" not in title:
            raise SystemExit(f"{sid}'s pid {pid} is not a Ray actor process: {title!r}")
        pids.append(pid)
    return pids


def _startup(make: Any, repeats: int) -> list[float]:
    """Seconds from ``Mesh(...).start()`` to ready, ``repeats`` times, each mesh shut down
    before the next one starts."""
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        mesh = make().start()
        seconds.append(time.perf_counter() - began)
        mesh.shutdown()
    return seconds


def _ray_daemons(netns: str, exclude: set[int]) -> list[int]:
    """Ray's own processes in the namespace (GCS, raylets, agents, idle pool workers): all
    of it but this driver's tree and the ``exclude``d actor processes."""
    import subprocess

    import psutil

    ours = {psutil.Process().pid, *(p.pid for p in psutil.Process().children(recursive=True))}
    listed = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                            timeout=10, check=True).stdout.split()
    return [int(pid) for pid in listed if int(pid) not in ours | exclude]


def _mesh_run(mesh: Any, pids: list[int], daemons: list[int], url: str,
              requests: int) -> dict[str, float]:
    cpu0, ray0 = _cpu_seconds(pids), _cpu_seconds(daemons)
    t0 = time.perf_counter()
    result = mesh.run(url=url, concurrency=CONCURRENCY, request_count=requests, osl=TOKENS,
                      isl=32)
    elapsed = time.perf_counter() - t0
    cpu1, ray1 = _cpu_seconds(pids), _cpu_seconds(daemons)
    if result.request_count != requests or result.error_count or not result.invariant["ok"]:
        raise SystemExit(f"a broken run: {result.request_count} ok, {result.error_count} "
                         f"errors, invariant {result.invariant}")
    return {"rps": result.metric("request_throughput"), "elapsed_s": elapsed,
            "cpu_ms": (cpu1 - cpu0) / requests * 1e3,
            "ray_daemons_ms": (ray1 - ray0) / requests * 1e3}


def _idle_cpu(pids: list[int], seconds: float) -> float:
    """CPU milliseconds per second the processes spend with no run in progress."""
    cpu0 = _cpu_seconds(pids)
    time.sleep(seconds)
    return (_cpu_seconds(pids) - cpu0) / seconds * 1e3


def driver(args: argparse.Namespace) -> None:
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerProcess

    def ray_mesh() -> Mesh:
        # RAY_ADDRESS (the cluster's env) names the head; startup_timeout covers the actors'
        # first start on a busy 2-core box.
        return Mesh(backend="ray", workers=args.workers, startup_timeout=120,
                    command_timeout=120)

    def local_mesh() -> Mesh:
        return Mesh(workers=args.workers)

    def wired_mesh() -> Mesh:
        from aiperf.common.curve import MeshKeys

        return Mesh(workers=args.workers, comm_backend="tcp", clock_sync=True,
                    mesh_keys=MeshKeys.generate())

    out: dict[str, Any] = {"workers": args.workers, "repeats": args.repeats,
                           "requests": args.requests, "concurrency": CONCURRENCY}
    # (a) before anything else runs, so neither start-up competes with a running mesh.
    out["startup_local_s"] = _startup(local_mesh, args.repeats)
    out["startup_ray_s"] = _startup(ray_mesh, args.repeats)

    names = ["ray", "local", "wired", "bare"]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with MockServerProcess(tokens=TOKENS) as server, ray_mesh() as ray, \
            local_mesh() as local, wired_mesh() as wired:
        pin(server.pid, 0)
        meshes = {"ray": (ray, _worker_pids(ray)), "local": (local, _worker_pids(local)),
                  "wired": (wired, _worker_pids(wired))}
        out["locations"] = dict(ray.locations)
        daemons = _ray_daemons(args.netns, set(meshes["ray"][1]))
        for mesh, _ in meshes.values():  # warm-up: connections, encoded bodies
            mesh.run(url=server.url, concurrency=CONCURRENCY, request_count=500)
        # What the worker processes burn doing nothing: Ray's threads in an actor
        # (core worker, gRPC, metrics) against a forked worker's idle loop.
        out["idle_ms_per_s"] = {name: _idle_cpu(pids, args.idle)
                                for name, (_, pids) in meshes.items()}
        out["idle_ms_per_s"]["ray_daemons"] = _idle_cpu(daemons, args.idle)
        for repeat in range(args.repeats):
            # Rotate the order: whoever goes first in a round gets a cooler machine.
            turn = repeat % len(names)
            order = names[turn:] + names[:turn]
            for name in order:
                if name == "bare":
                    bare = bare_client(server.url, CONCURRENCY, args.requests, False, TOKENS)
                    runs["bare"].append({"rps": bare.rps,
                                         "cpu_ms": bare.cpu_s / args.requests * 1e3})
                else:
                    mesh, pids = meshes[name]
                    runs[name].append(_mesh_run(mesh, pids, daemons, server.url,
                                                args.requests))
    out["runs"] = runs
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- the table


def _fmt(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def report(out: dict[str, Any]) -> None:
    local_s, ray_s = out["startup_local_s"], out["startup_ray_s"]
    runs = out["runs"]
    print(f"Ray backend, {out['workers']} workers, closed loop c={out['concurrency']}, "
          f"{out['requests']} non-streamed requests of {TOKENS} tokens per run; medians of "
          f"{out['repeats']}")
    print("\nworkers at:")
    for sid, where in sorted(out["locations"].items()):
        print(f"  {sid}: {where}")
    w = 50

    def row(label: str, values: list[float], spec: str) -> None:
        print(f"{label:<{w}}{format(median(values), spec):>9}   {_fmt(values, spec)}")

    print(f"\n{'':<{w}}{'median':>9}   runs")
    row("start-up to ready, local mesh (s)", local_s, ".2f")
    row("start-up to ready, ray mesh (s)", ray_s, ".2f")
    labels = {"local": "local mesh (IPC)", "wired": "local mesh (TCP+CURVE)",
              "ray": "ray mesh (TCP+CURVE)", "bare": "bare aiohttp"}
    for name, label in labels.items():
        row(f"{label} (req/s)", [run["rps"] for run in runs[name]], ".0f")
    for name, label in (("local", "forked workers (IPC)"), ("wired", "forked workers (TCP+CURVE)"),
                        ("ray", "ray::RemoteService workers"), ("bare", "bare client")):
        row(f"{label}, CPU per request (ms)", [run["cpu_ms"] for run in runs[name]], ".3f")
    # The actors' idle burn, taken out over each run's wall time: what is left is the work
    # the requests cost, comparable with a forked worker's.
    idle = out["idle_ms_per_s"]
    requests = out["requests"]
    net: dict[str, list[float]] = {
        name: [(run["cpu_ms"] * requests - idle[name] * run["elapsed_s"]) / requests
               for run in runs[name]]
        for name in ("local", "wired", "ray")}
    for name in ("local", "wired", "ray"):
        row(f"{name} workers, less idle burn (ms/request)", net[name], ".3f")
    for name in ("local", "wired", "ray"):
        row(f"Ray's daemons during a {name} run (ms/request)",
            [run["ray_daemons_ms"] for run in runs[name]], ".3f")
    print(f"\nidle CPU (ms per s): local workers {idle['local']:.1f}, TCP+CURVE workers "
          f"{idle['wired']:.1f}, ray workers {idle['ray']:.1f}, Ray's daemons "
          f"{idle['ray_daemons']:.1f}")
    ray_cpu = median([run["cpu_ms"] for run in runs["ray"]])
    for base, label in (("local", "local (IPC)"), ("wired", "local on the same wire")):
        base_cpu = median([run["cpu_ms"] for run in runs[base]])
        ratios = [r["cpu_ms"] / b["cpu_ms"] for r, b in zip(runs["ray"], runs[base],
                                                            strict=True)]
        print(f"worker CPU per request, ray / {label}: {ray_cpu / base_cpu:.2f} (medians; "
              f"per round {_fmt(ratios, '.2f')}); less idle burn "
              f"{median(net['ray']) / median(net[base]):.2f}; target 1.0 within noise")
    bare_rps = median([run["rps"] for run in runs["bare"]])
    for name in ("local", "wired", "ray"):
        rps = median([run["rps"] for run in runs[name]])
        print(f"{labels[name]} / bare client req/s: {rps / bare_rps:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="deadline of the whole driver (s)")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds of idle CPU measured per process group")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--netns", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        driver(args)
        return

    from tests.harness.ray_cluster import RayCluster, prerequisites_missing

    missing = prerequisites_missing()
    if missing:
        raise SystemExit(f"ray_backend.py: {missing}")
    with RayCluster(nodes=args.nodes) as cluster:
        print(f"Ray cluster of {args.nodes} nodes up in {cluster.startup_seconds:.1f}s "
              f"(not part of any figure)", flush=True)
        done = cluster.run(
            [sys.executable, str(Path(__file__).resolve()), "--driver",
             "--repeats", str(args.repeats), "--requests", str(args.requests),
             "--workers", str(args.workers), "--idle", str(args.idle),
             "--netns", cluster.netns],
            timeout=args.timeout, cwd=_REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"the driver failed (exit {done.returncode})")
    report(json.loads(lines[-1][len(MARK):]))


if __name__ == "__main__":
    main()
