"""Another implementation reads the mock's protocols: NVIDIA AIPerf 0.13 profiles the mock
server for every endpoint it shares with this project (rerankers, Responses, TGI), and so
does this project, on the same server; the table shows both. The mock is the reference
server of this project's own truth tests, so this checks it against a client written by
others: zero errors from AIPerf means the mock speaks each protocol as AIPerf reads it.

    .venv/bin/python -m tests.harness.aiperf013_protocols [/tmp/aiperf013/bin/aiperf]

Minutes, not seconds (AIPerf starts its services for every run): a script, not a test.
AIPerf gets a byte-level tokenizer (no download), so its token counts are bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from benchmarks.long_run import byte_tokenizer

# (AIPerf's endpoint type, this project's, streaming)
CASES = [("hf_tei_rankings", "rankings", False), ("cohere_rankings", "cohere-rankings", False),
         ("nim_rankings", "nim-rankings", False), ("responses", "responses", False),
         ("responses", "responses", True), ("huggingface_generate", "huggingface-generate", False),
         ("huggingface_generate", "huggingface-generate", True)]
REQUESTS = 8
RUN_TIMEOUT_S = 240


def aiperf013(exe: Path, tokenizer: Path, url: str, endpoint: str,
              streaming: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aiperf013-") as out:
        command = [str(exe), "profile", "--model", "mock-model", "--url", url,
                   "--endpoint-type", endpoint, *(["--streaming"] if streaming else []),
                   "--concurrency", "2", "--request-count", str(REQUESTS), "--isl", "32",
                   "--osl", "8", "--tokenizer", str(tokenizer), "--output-artifact-dir", out,
                   "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry",
                   "--workers-max", "1"]
        # AIPerf's package is also named aiperf: this project's must not shadow it.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        proc = subprocess.run(command, capture_output=True, text=True, cwd=out, env=env,
                              timeout=RUN_TIMEOUT_S)
        found = sorted(Path(out).rglob("profile_export_aiperf.json"))
        if not found:
            return {"failed": f"exit {proc.returncode}: {proc.stderr[-300:]}"}
        summary = json.loads(found[0].read_text())
        return {"ok": _avg(summary, "request_count"), "errors": _avg(summary,
                "error_request_count") or 0, "latency": _avg(summary, "request_latency"),
                "ttft": _avg(summary, "time_to_first_token")}


def _avg(summary: dict[str, Any], tag: str) -> float | None:
    entry = summary.get(tag)
    return float(entry["avg"]) if isinstance(entry, dict) and entry.get("avg") is not None \
        else None


def ours(mesh: Mesh, url: str, endpoint: str, streaming: bool) -> dict[str, Any]:
    result = mesh.run(url=url, endpoint_type=endpoint, streaming=streaming, concurrency=2,
                      request_count=REQUESTS, isl=32, osl=8, request_timeout_seconds=20)
    latency = result["request_latency"].stat("avg") if "request_latency" in result else None
    ttft = result["time_to_first_token"].stat("avg") if "time_to_first_token" in result \
        else None
    return {"ok": result.request_count, "errors": result.error_count, "latency": latency,
            "ttft": ttft, "why": result.error_summary[:1]}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    exe = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/aiperf013/bin/aiperf")
    with tempfile.TemporaryDirectory(prefix="aiperf013-tok-") as tok_dir, \
            MockServerProcess(ttft_ms=5, itl_ms=1, latency_ms=8) as server, \
            Mesh(workers=1) as mesh:
        tokenizer = byte_tokenizer(exe, Path(tok_dir))
        print("mock: whole answer 8 ms; stream TTFT 5 ms, then 1 ms a token, 8 tokens")
        print(f"{'endpoint':34s} {'AIPerf 0.13: ok/err lat ttft':32s} "
              "this project: ok/err lat ttft")
        for theirs, mine, streaming in CASES:
            a = aiperf013(exe, tokenizer, server.url, theirs, streaming)
            b = ours(mesh, server.url, mine, streaming)
            left = a.get("failed") or (f"{a['ok']:.0f}/{a['errors']:.0f} "
                                       f"{_ms(a['latency'])} {_ms(a['ttft'])}")
            right = f"{b['ok']}/{b['errors']} {_ms(b['latency'])} {_ms(b['ttft'])}"
            if b["errors"]:
                right += f" {b['why']}"
            print(f"{theirs + (' stream' if streaming else ''):34s} {left:32s} {right}")


if __name__ == "__main__":
    main()
