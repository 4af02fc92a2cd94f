"""Multi-turn's cost: client CPU per request of sessions against single requests, c=32.

Both runs send the same requests to the same mock server (its own process): ``--turns``
turns per session, no think time, each turn 32 prompt tokens and 16 answer tokens. The
multi-turn run also reads every answer but the last in the worker (for the next turn's
history) and splices the growing history into each body, which the single-turn run does
not; its requests are larger (a turn carries the earlier exchanges), so they run slower.
CPU is the whole mesh process tree's, per request, over ``--repeats`` runs of each, the two
kinds alternating which goes first (the box's speed drifts). Issue 13's figure: multi-turn
costs at most 10 % more per request, as the median of each repeat's sessions-to-single
ratio (see ``report``).

    .venv/bin/python benchmarks/multi_turn_cost.py [--repeats 5] [--requests 4000] [--turns 4]

``--base <checkout>`` (e.g. a ``git worktree`` of an earlier commit) also runs a second
mesh whose processes import that checkout's ``aiperf``, interleaved run by run with this
one's, and prints the same lines for it first (prefixed ``base``), then this tree's
(``new``): an A/B on the same loaded box.

``--same-size`` also runs single requests as large as the sessions' mean request (a
turn carries the earlier exchanges) and prints the sessions' ratio against those: the part
of multi-turn's cost that is the history's bytes themselves, apart from the session work.

``--by-process`` prints instead, per mode, each mesh process kind's CPU per request (us)
single-turn against multi-turn: where the sessions' extra cost is spent.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from _common import cpu_by_kind, median, tree_cpu_seconds

import aiperf
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess

CONCURRENCY = 32
TOKENS = 16
ISL = 32
TARGET = 1.10


# Requests per second of each run, by (tree, mode, turns, isl), printed beside the CPU:
# CPU per request depends on the rate. A slower server leaves fewer answers per event-loop
# wakeup: the same requests against a mock answering 4 +- 1.5 ms later cost the worker
# 33 -> 50 us each. On a 2-core box every process's CPU slows the rate, the mock's too
# (it counts prompts message by message, so the sessions' repeated history costs it little).
RATES: dict[tuple[str, bool, int, int], list[float]] = {}


def run(mesh: Mesh, url: str, requests: int, streaming: bool, turns: int,
        isl: int = ISL, name: str = "") -> float:
    assert mesh.pid is not None
    sessions = {"conversation_turn_mean": turns} if turns > 1 else {}
    cpu0 = tree_cpu_seconds(mesh.pid)
    start = time.perf_counter()
    result = mesh.run(url=url, streaming=streaming, concurrency=CONCURRENCY,
                      request_count=requests, osl=TOKENS, isl=isl, **sessions)
    elapsed = time.perf_counter() - start
    cpu1 = tree_cpu_seconds(mesh.pid)
    assert result.error_count == 0 and result.invariant["ok"], result.invariant
    RATES.setdefault((name, streaming, turns, isl), []).append(requests / elapsed)
    return (cpu1 - cpu0) / requests * 1000


def by_process(mesh: Mesh, url: str, requests: int, repeats: int, turns: int,
               same_isl: int | None = None) -> None:
    """Each process kind's CPU per request, single-turn against sessions (and, with
    ``same_isl``, against single requests of the sessions' mean size)."""
    arms = [(1, ISL), (turns, ISL)] + ([(1, same_isl)] if same_isl is not None else [])
    for streaming in (False, True):
        samples: dict[tuple[int, int, str], list[float]] = {}
        for repeat in range(repeats):
            for kind_turns, isl in (arms if repeat % 2 == 0 else arms[::-1]):
                sessions = {"conversation_turn_mean": kind_turns} if kind_turns > 1 else {}
                before = cpu_by_kind(mesh)
                result = mesh.run(url=url, streaming=streaming, concurrency=CONCURRENCY,
                                  request_count=requests, osl=TOKENS, isl=isl, **sessions)
                after = cpu_by_kind(mesh)
                assert result.error_count == 0 and result.invariant["ok"], result.invariant
                for kind, seconds in after.items():
                    us = (seconds - before.get(kind, 0.0)) / requests * 1e6
                    samples.setdefault((kind_turns, isl, kind), []).append(us)
        mode = "streaming" if streaming else "non-streaming"
        for kind in sorted({kind for _, _, kind in samples}):
            single = median(samples[(1, ISL, kind)])
            multi = median(samples[(turns, ISL, kind)])
            same = (f", single isl {same_isl} {median(samples[(1, same_isl, kind)]):.1f} us"
                    if same_isl is not None else "")
            print(f"{mode} {kind}: CPU per request single-turn {single:.1f} us, "
                  f"{turns}-turn sessions {multi:.1f} us ({multi - single:+.1f}){same}",
                  flush=True)


@contextlib.contextmanager
def _mesh(checkout: str | None) -> Iterator[Mesh]:
    """A started mesh; with ``checkout``, its processes import that tree's ``aiperf`` (the
    mesh hands its host's ``sys.path`` to the controller as PYTHONPATH), else this one's.
    The controller starts as ``python -m``, which puts its working directory first on its
    path, so it is started from the checkout's root: from another tree's root it would
    import that tree's ``aiperf`` whatever the path says (both arms the same code)."""
    mesh = Mesh()
    root = checkout if checkout is not None else str(Path(aiperf.__file__).parents[1])
    cwd = os.getcwd()
    if checkout is not None:
        sys.path.insert(0, checkout)
    try:
        os.chdir(root)
        mesh.launch()
    finally:
        os.chdir(cwd)
        if checkout is not None:
            sys.path.remove(checkout)
    try:
        yield mesh.wait_ready()
    finally:
        mesh.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--base", default=None,
                        help="a checkout to A/B against, e.g. a git worktree of a commit")
    parser.add_argument("--by-process", action="store_true",
                        help="CPU per request of each mesh process kind instead")
    parser.add_argument("--same-size", action="store_true",
                        help="also single requests as large as the sessions' mean request")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(MockServerProcess(tokens=TOKENS))
        meshes = {"new": stack.enter_context(_mesh(None))}
        if args.base is not None:
            meshes = {"base": stack.enter_context(_mesh(args.base)), **meshes}
        for mesh in meshes.values():
            run(mesh, server.url, 500, True, args.turns)  # warm: connections, imports
        # A session's turn k sends k earlier exchanges too (ISL + TOKENS tokens each): the
        # sessions' mean request, for single requests of the same size (--same-size).
        same_isl = round(ISL + (args.turns - 1) / 2 * (ISL + TOKENS))
        if args.by_process:
            for name, mesh in meshes.items():
                if len(meshes) > 1:
                    print(f"{name}:")
                by_process(mesh, server.url, args.requests, args.repeats, args.turns,
                           same_isl if args.same_size else None)
            return
        arms = [(1, ISL), (args.turns, ISL)] + ([(1, same_isl)] if args.same_size else [])
        for streaming in (False, True):
            cpu: dict[tuple[str, int, int], list[float]] = {}
            for repeat in range(args.repeats):
                order = arms if repeat % 2 == 0 else arms[::-1]
                # The trees alternate which goes first too.
                names = list(meshes) if repeat % 2 == 0 else list(meshes)[::-1]
                for turns, isl in order:
                    for name in names:
                        ms = run(meshes[name], server.url, args.requests, streaming, turns, isl,
                                 name)
                        cpu.setdefault((name, turns, isl), []).append(ms)
            for name in meshes:
                prefix = f"{name} " if len(meshes) > 1 else ""
                report(streaming, args.turns, cpu[(name, 1, ISL)],
                       cpu[(name, args.turns, ISL)], prefix)
                rates = {arm: f"{median(RATES[(name, streaming, *arm)]):.0f}" for arm in arms}
                print(f"{prefix}  req/s (wall, median): single-turn {rates[(1, ISL)]}, "
                      f"sessions {rates[(args.turns, ISL)]}"
                      + (f", isl {same_isl} {rates[(1, same_isl)]}" if args.same_size else ""),
                      flush=True)
                if args.same_size:
                    same = cpu[(name, 1, same_isl)]
                    ratio = paired_ratio(same, cpu[(name, args.turns, ISL)])
                    print(f"{prefix}  against single requests of the sessions' mean size "
                          f"(isl {same_isl}): {median(same):.3f} ms, paired ratio {ratio:.2f} "
                          f"[{', '.join(f'{v:.3f}' for v in same)}]", flush=True)


def paired_ratio(base: list[float], other: list[float]) -> float:
    """The median of ``other[i] / base[i]``: each repeat's runs side by side."""
    return median([b / a for a, b in zip(base, other, strict=True)])


def report(streaming: bool, turns: int, single: list[float], multi: list[float],
           prefix: str) -> None:
    """The figure is the median of the paired ratios: each repeat's sessions run against
    the single-turn run beside it. The box's speed drifts by more than the figure's margin
    over a few minutes (a slow spell raises both runs of a pair alike), so pairing cancels
    what the ratio of the medians, also printed, keeps."""
    paired = paired_ratio(single, multi)
    ratio = median(multi) / median(single)
    mode = "streaming    " if streaming else "non-streaming"
    print(f"{prefix}{mode} c={CONCURRENCY}: CPU per request single-turn {median(single):.3f} ms, "
          f"{turns}-turn sessions {median(multi):.3f} ms, ratio {paired:.2f} "
          f"(target <= {TARGET:.2f}; median of {len(single)} paired ratios; ratio of the "
          f"medians {ratio:.2f}) [single: {', '.join(f'{v:.3f}' for v in single)}; multi: "
          f"{', '.join(f'{v:.3f}' for v in multi)}]", flush=True)


if __name__ == "__main__":
    main()
