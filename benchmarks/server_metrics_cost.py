"""The host's CPU for scraping server metrics during a run (target: < 1 % of one core at a
1 s interval).

    .venv/bin/python benchmarks/server_metrics_cost.py [--seconds 30] [--interval 1.0]
                                                       [--url http://host:port/metrics]

Without ``--url``, a vLLM-sized exposition (the families and histogram buckets vLLM
exports, labelled by model, plus the Python process metrics), with every value changing
at each scrape as a busy server's do, is served by a child process (this script with
``--serve PORT``), so the server's CPU is not counted. What is
measured is this process's CPU time (psutil: every thread, user + system) while a
``ServerMetricsCollector`` runs for ``--seconds`` (baseline scrape, the scrapes, final
scrape), against the same process idling as long; then, separately, the ``summary`` that
the host computes once after the run. Prints the figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

import psutil

from aiperf.server_metrics import ServerMetricsCollector

PARENT_ENV = "AIPERF_PARENT_PID"  # the exposition server watches this pid and dies with it

_VLLM_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                         0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                                         40.0, 80.0, 160.0, 640.0, 2560.0],
    "vllm:time_per_output_token_seconds": [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                                           0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                                           40.0, 80.0],
    "vllm:e2e_request_latency_seconds": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                                         20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
                                         960.0, 1920.0, 7680.0],
    "vllm:request_queue_time_seconds": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                                        20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
                                        960.0, 1920.0, 7680.0],
    "vllm:request_inference_time_seconds": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
                                            15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0],
    "vllm:request_prefill_time_seconds": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0],
    "vllm:request_decode_time_seconds": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0],
    "vllm:request_prompt_tokens": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                   10000, 20000, 50000, 100000],
    "vllm:request_generation_tokens": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                       10000, 20000, 50000, 100000],
    "vllm:iteration_tokens_total": [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                    16384],
    "vllm:request_params_max_tokens": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                       10000, 20000, 50000, 100000],
}
_VLLM_GAUGES = ["vllm:num_requests_running", "vllm:num_requests_waiting",
                "vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc",
                "vllm:gpu_prefix_cache_hit_rate", "vllm:lora_requests_info",
                "process_virtual_memory_bytes", "process_resident_memory_bytes",
                "process_start_time_seconds", "process_open_fds", "process_max_fds"]
_VLLM_COUNTERS = ["vllm:num_preemptions_total", "vllm:prompt_tokens_total",
                  "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total",
                  "vllm:prefix_cache_hits_total", "process_cpu_seconds_total",
                  "python_gc_objects_collected_total", "python_gc_collections_total"]


def vllm_like_exposition(step: int = 1000) -> str:
    label = 'engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"'
    lines: list[str] = []
    for name in _VLLM_GAUGES:
        lines += [f"# HELP {name} {name} gauge.", f"# TYPE {name} gauge",
                  f"{name}{{{label}}} {step * 0.37:.4f}"]
    for name in _VLLM_COUNTERS:
        lines += [f"# HELP {name} {name} counter.", f"# TYPE {name} counter",
                  f"{name}{{{label}}} {step * 11.0}"]
        lines.append(f"{name.removesuffix('_total')}_created{{{label}}} 1.7e9")
    for finish in ("stop", "length", "abort"):
        lines.append(f'vllm:request_success_total{{{label},finished_reason="{finish}"}} '
                     f"{step}")
    for name, bounds in _VLLM_HISTOGRAMS.items():
        lines += [f"# HELP {name} {name} histogram.", f"# TYPE {name} histogram"]
        for k, le in enumerate(bounds):
            lines.append(f'{name}_bucket{{{label},le="{le}"}} {step * (k + 1)}.0')
        lines.append(f'{name}_bucket{{{label},le="+Inf"}} {step * (len(bounds) + 1)}.0')
        lines.append(f"{name}_sum{{{label}}} {step * 3.14159:.3f}")
        lines.append(f"{name}_count{{{label}}} {step * (len(bounds) + 1)}.0")
        lines.append(f"{name}_created{{{label}}} 1.7e9")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the exposition server did not listen on {port} within {deadline_s} s")


def _cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def measure(url: str, seconds: float, interval: float) -> None:
    from aiperf.server_metrics import scrape_once

    scrape_once(url, "baseline", 5.0)  # imports (http.client, prometheus_client) done
    idle0 = _cpu()
    time.sleep(seconds)
    idle = _cpu() - idle0
    cpu0, wall0 = _cpu(), time.monotonic()
    collector = ServerMetricsCollector([url], interval).start()
    time.sleep(seconds)
    collector.stop()
    cpu, wall = _cpu() - cpu0, time.monotonic() - wall0
    t0 = time.process_time()
    server = collector.summary()  # the bodies parsed, then the statistics
    summary_s = time.process_time() - t0
    scrapes = collector.scrapes
    failed = [s.error for s in scrapes if not s.ok]
    share = (cpu - idle) / wall * 100
    print(f"scrapes: {len(scrapes)} over {wall:.1f} s at a {interval:g} s interval "
          f"({len(failed)} failed{': ' + failed[0] if failed else ''})")
    print(f"metrics: {len(server)} families, "
          f"{sum(len(m.series) for m in server.metrics.values())} series")
    print(f"CPU while scraping: {cpu * 1000:.1f} ms, idle as long: {idle * 1000:.1f} ms -> "
          f"{share:.3f} % of one core ({(cpu - idle) / max(len(scrapes), 1) * 1000:.2f} ms "
          f"a scrape)")
    print(f"after the run (not during it): parsing and summary {summary_s * 1000:.1f} ms "
          f"({summary_s / max(len(scrapes), 1) * 1000:.2f} ms a scrape)")
    print(f"target < 1 % of one core at 1 s: {'met' if share < 1.0 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--url", help="scrape this /metrics instead of the vLLM-sized one")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.url:
        measure(args.url, args.seconds, args.interval)
        return 0
    if args.serve:
        serve(args.serve)
        return 0
    body = vllm_like_exposition()
    print(f"exposition: {len(body) / 1024:.1f} KiB, {body.count(chr(10))} lines "
          f"(vLLM-sized), every value new at each scrape")
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, PARENT_ENV: str(os.getpid())})
    try:
        _wait_listening(port)
        measure(f"http://127.0.0.1:{port}/metrics", args.seconds, args.interval)
    finally:
        server.terminate()
        server.wait(5)
    return 0


def serve(port: int) -> None:
    """The exposition server (a child process): a new body at every GET. It dies with the
    benchmark, even a SIGKILLed one."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from aiperf.common.process import die_with_parent

    parent = os.environ.get(PARENT_ENV)
    die_with_parent(int(parent) if parent else None)

    count = [1000]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            count[0] += 1
            data = vllm_like_exposition(count[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    sys.exit(main())
