"""Multi-turn's cost: client CPU per request of sessions against single requests, c=32.

Both runs send the same requests to the same mock server (its own process): ``--turns``
turns per session, no think time, each turn 32 prompt tokens and 16 answer tokens. The
multi-turn run also parses every answer in the worker (for the next turn's history) and
encodes each body afresh (the history grows), which the single-turn run does not.
CPU is the whole mesh process tree's, per request; medians over ``--repeats``, the two
kinds alternating which goes first (the box's speed drifts). Issue 13's figure: multi-turn
costs at most 10 % more per request.

    .venv/bin/python benchmarks/multi_turn_cost.py [--repeats 5] [--requests 4000] [--turns 4]
"""

from __future__ import annotations

import argparse

from _common import median, tree_cpu_seconds

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess

CONCURRENCY = 32
TOKENS = 16
TARGET = 1.10


def run(mesh: Mesh, url: str, requests: int, streaming: bool, turns: int) -> float:
    assert mesh.pid is not None
    sessions = {"conversation_turn_mean": turns} if turns > 1 else {}
    cpu0 = tree_cpu_seconds(mesh.pid)
    result = mesh.run(url=url, streaming=streaming, concurrency=CONCURRENCY,
                      request_count=requests, osl=TOKENS, isl=32, **sessions)
    cpu1 = tree_cpu_seconds(mesh.pid)
    assert result.error_count == 0 and result.invariant["ok"], result.invariant
    return (cpu1 - cpu0) / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    with MockServerProcess(tokens=TOKENS) as server, Mesh() as mesh:
        run(mesh, server.url, 500, True, args.turns)  # warm: connections, imports
        for streaming in (False, True):
            single, multi = [], []
            for repeat in range(args.repeats):
                order = (1, args.turns) if repeat % 2 == 0 else (args.turns, 1)
                for turns in order:
                    ms = run(mesh, server.url, args.requests, streaming, turns)
                    (single if turns == 1 else multi).append(ms)
            ratio = median(multi) / median(single)
            mode = "streaming    " if streaming else "non-streaming"
            print(f"{mode} c={CONCURRENCY}: CPU per request single-turn {median(single):.3f} ms, "
                  f"{args.turns}-turn sessions {median(multi):.3f} ms, ratio {ratio:.2f} "
                  f"(target <= {TARGET:.2f}) [single: "
                  f"{', '.join(f'{v:.3f}' for v in single)}; multi: "
                  f"{', '.join(f'{v:.3f}' for v in multi)}]")


if __name__ == "__main__":
    main()
