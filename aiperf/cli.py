"""The ``aiperf`` command: ``profile``, ``mock-server``, ``plugins``, ``mesh``.

Exit codes of ``aiperf profile``: 0 success; 2 invalid configuration (the message names the
flag); 3 every request failed; 4 ``--failed-request-threshold`` tripped; 5 the credit
invariant broke (a request unaccounted for); 1 the mesh itself failed; 130 interrupted
(Ctrl-C: the results of what was sent are still written, marked ``was_cancelled``).

The API key comes from ``--api-key``, else ``AIPERF_API_KEY``, else ``OPENAI_API_KEY``: the
environment keeps it off the command line (and out of ``ps``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK, EXIT_MESH, EXIT_CONFIG, EXIT_ALL_FAILED, EXIT_THRESHOLD, EXIT_INVARIANT = range(6)
EXIT_INTERRUPTED = 130
API_KEY_ENV = ("AIPERF_API_KEY", "OPENAI_API_KEY")

# (flags, UserConfig key, argparse options). The flag names are AIPerf's.
PROFILE_FLAGS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--url", "-u"), "url", {"help": "base URL of the OpenAI-compatible server"}),
    (("--model", "-m"), "model", {"help": "model name sent in each request"}),
    (("--endpoint-type",), "endpoint_type", {"help": "endpoint plugin: chat, completions, "
                                                     "embeddings, ..."}),
    (("--streaming",), "streaming", {"action": "store_true", "default": None,
                                     "help": "request streamed responses (SSE)"}),
    (("--concurrency",), "concurrency", {"type": int, "help": "requests in flight (closed "
                                         "loop); with --request-rate, a cap"}),
    (("--request-rate",), "request_rate", {"type": float, "help": "requests per second "
                                           "(open loop)"}),
    (("--arrival-pattern",), "arrival_pattern", {"help": "constant, poisson (default), gamma"}),
    (("--arrival-smoothness",), "arrival_smoothness", {"type": float,
                                                       "help": "gamma shape (1 = poisson)"}),
    (("--request-count",), "request_count", {"type": int, "help": "profiling requests"}),
    (("--benchmark-duration",), "benchmark_duration", {
        "help": "load for this long instead of a request count: 30, 30s, 500ms, 2m"}),
    (("--benchmark-grace-period",), "benchmark_grace_period", {
        "help": "time in-flight requests may finish after the duration (default 30s)"}),
    (("--warmup-request-count",), "warmup_request_count", {"type": int,
        "help": "requests sent first and excluded from every result"}),
    (("--isl",), "isl", {"type": int, "help": "mean input tokens (synthetic prompts)"}),
    (("--isl-stddev",), "isl_stddev", {"type": float, "help": "stddev of input tokens"}),
    (("--osl",), "osl", {"type": int, "help": "mean output tokens requested"}),
    (("--osl-stddev",), "osl_stddev", {"type": float, "help": "stddev of output tokens"}),
    (("--input-file",), "input_file", {"help": "JSONL dataset (single_turn or trace)"}),
    (("--custom-dataset-type",), "custom_dataset_type", {"help": "single_turn, mooncake_trace"}),
    (("--fixed-schedule",), "fixed_schedule", {"action": "store_true", "default": None,
        "help": "replay the input file's timestamps"}),
    (("--extra-inputs",), "extra_inputs", {"action": "append", "metavar": "KEY:VALUE",
        "help": "merged into every request body (repeatable; or one JSON object)"}),
    (("--header", "-H"), "headers", {"action": "append", "metavar": "NAME:VALUE",
                                     "help": "extra HTTP header (repeatable)"}),
    (("--api-key",), "api_key", {"help": "sent as a Bearer token; never printed (default: "
                                         "$AIPERF_API_KEY, then $OPENAI_API_KEY)"}),
    (("--goodput",), "goodput", {"help": "e.g. 'time_to_first_token:200 request_latency:1000'"}),
    (("--request-timeout-seconds",), "request_timeout_seconds", {"type": float,
        "help": "a request still unanswered after this is an error (default 600)"}),
    (("--request-first-byte-timeout-seconds",), "request_first_byte_timeout_seconds", {
        "type": float, "help": "a request without a first response byte after this is an "
                               "error (default: no separate limit)"}),
    (("--failed-request-threshold",), "failed_request_threshold", {"type": float,
        "help": "exit 4 when more than this percent of requests fail"}),
    (("--slice-duration",), "slice_duration", {
        "help": "also export metrics per time slice this long: 5, 5s, 1m (AIPerf's "
                "profile_export_aiperf_timeslices.{json,csv})"}),
    (("--random-seed",), "random_seed", {"type": int,
                                         "help": "seed of prompts and arrivals (default 0)"}),
    (("--tokenizer",), "tokenizer", {"help": "path to a local tokenizer.json"}),
]
FLAG_OF = {key: flags[0] for flags, key, _ in PROFILE_FLAGS}


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if item.lstrip().startswith("{"):
            out.update(json.loads(item))
            continue
        key, sep, value = item.partition(":")
        if not sep:
            raise SystemExit(f"aiperf: error: {flag} expects KEY:VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def _profile_values(args: argparse.Namespace) -> dict[str, Any]:
    values = {}
    for _, key, _ in PROFILE_FLAGS:
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if "extra_inputs" in values:
        values["extra_inputs"] = _pairs(values["extra_inputs"], "--extra-inputs")
    if "headers" in values:
        values["headers"] = {k: str(v) for k, v in _pairs(values["headers"], "--header").items()}
    if "api_key" not in values:
        for name in API_KEY_ENV:
            if os.environ.get(name):
                values["api_key"] = os.environ[name]
                break
    return values


def cmd_profile(args: argparse.Namespace) -> int:
    from aiperf.common.config import UserConfig
    from aiperf.errors import AIPerfError, ConfigError, RunInterrupted
    from aiperf.exporters.base import export_files
    from aiperf.exporters.console import ConsoleExporter
    from aiperf.mesh import Mesh

    try:
        config = UserConfig.build(name_of=lambda k: FLAG_OF.get(k, k), **_profile_values(args))
    except ConfigError as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    overrides = _mesh_overrides(args)
    progress = ProgressLine(config) if sys.stderr.isatty() else None
    interrupted = False
    try:
        with Mesh(log_level=args.log_level, capture_logs=False, **overrides) as mesh:
            try:
                result = mesh.run(config, progress=progress, partial_on_interrupt=True)
            except RunInterrupted as stop:
                # As AIPerf does: what was sent is measured and written, marked cancelled.
                interrupted = True
                result = stop.result
    except ConfigError as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AIPerfError as exc:
        print(f"aiperf: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_MESH
    finally:
        if progress is not None:
            progress.close()
    ConsoleExporter(result, None).export()
    out_dir = Path(args.output_artifact_dir)
    export_files(result, out_dir)
    print(f"\nartifacts: {out_dir.resolve()}")
    if not result.invariant.get("ok", True):
        print(f"aiperf: a request is unaccounted for: {result.invariant}", file=sys.stderr)
    if interrupted:
        print("aiperf: interrupted; partial results written", file=sys.stderr)
        return EXIT_INTERRUPTED
    total = result.request_count + result.error_count
    if not result.invariant.get("ok", True):
        return EXIT_INVARIANT
    if total and result.request_count == 0:
        print("aiperf: every request failed", file=sys.stderr)
        return EXIT_ALL_FAILED
    threshold = config.failed_request_threshold
    if threshold is not None and total and 100.0 * result.error_count / total > threshold:
        print(f"aiperf: {result.error_count} of {total} requests failed, more than "
              f"--failed-request-threshold {threshold}%", file=sys.stderr)
        return EXIT_THRESHOLD
    return EXIT_OK


class ProgressLine:
    """A bar on a terminal, redrawn as the run goes: share done, requests, errors, time, and
    the time left (by requests for a count, by the clock for a duration)."""

    WIDTH = 24

    def __init__(self, config: Any, stream: TextIO | None = None) -> None:
        self.total = (config.resolved_request_count() or 0) + config.warmup_request_count
        self.duration = config.benchmark_duration
        self.stream = stream or sys.stderr
        self.drawn = False

    def render(self, progress: Any) -> str:
        elapsed = progress.elapsed_s
        if self.duration:
            share = min(1.0, elapsed / self.duration)
            left = max(0.0, self.duration - elapsed)
        elif self.total:
            share = min(1.0, progress.records / self.total)
            left = elapsed * (1 - share) / share if share else float("nan")
        else:
            share, left = 0.0, float("nan")
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        of = f"/{self.total}" if self.total and not self.duration else ""
        eta = f", ~{left:.0f} s left" if left == left else ""  # NaN: unknown
        return (f"[{bar}] {share:4.0%}  {progress.records}{of} requests, "
                f"{progress.errors} errors, {elapsed:.0f} s{eta}")

    def __call__(self, progress: Any) -> None:
        if progress.elapsed_s < 2.0:  # short runs finish before a bar is worth drawing
            return
        # Pad to wipe what a longer previous line left behind.
        self.stream.write("\r" + self.render(progress).ljust(79))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")


def cmd_mock_server(args: argparse.Namespace) -> int:
    from aiperf.common.process import run_event_loop
    from aiperf.mock_server.config import MockServerConfig
    from aiperf.mock_server.server import serve_forever

    config = MockServerConfig(
        host=args.host, port=args.port, ttft_ms=args.ttft_ms, ttft_stddev_ms=args.ttft_stddev_ms,
        itl_ms=args.itl_ms, itl_stddev_ms=args.itl_stddev_ms, tokens=args.tokens,
        tokens_per_chunk=args.tokens_per_chunk, error_rate=args.error_rate,
        error_codes=[int(c) for c in args.error_codes.split(",")], fault=args.fault,
        fault_rate=args.fault_rate,
    )
    run_event_loop(serve_forever(config))
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from aiperf.plugin import PluginType, plugins

    for category in PluginType:
        entries = plugins.entries(category)
        if not entries:
            continue
        print(f"{category.value}:")
        for entry in entries:
            print(f"  {entry.name:<18} {entry.description}")
    return EXIT_OK


def _add_mesh_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="run the workers as Ray actors on this cluster: the head's "
                        "host:port, or 'auto' for the cluster this host belongs to "
                        "(needs pytest-aiperf[ray])")
    parser.add_argument("--workers-per-node", type=int, metavar="N",
                        help="with --ray-address: N workers on every node of the cluster")


def _mesh_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.workers_max:
        overrides["workers"] = args.workers_max
    if args.ray_address:
        overrides.update(backend="ray", ray_address=args.ray_address)
        if args.workers_per_node:
            overrides["workers_per_node"] = args.workers_per_node
    elif args.workers_per_node:
        raise SystemExit("aiperf: --workers-per-node needs --ray-address")
    return overrides


def cmd_mesh(args: argparse.Namespace) -> int:
    import time

    from aiperf.mesh import Mesh

    started = time.perf_counter()
    with Mesh(capture_logs=False, **_mesh_overrides(args)) as mesh:
        ready = time.perf_counter() - started
        print(f"mesh ready in {ready * 1000:.0f} ms (controller pid {mesh.pid}):")
        for service_id, pid in sorted(mesh.services.items()):
            print(f"  {service_id:<20} pid {pid}")
        t0 = time.perf_counter()
        mesh.run(timing_strategy="noop")
        print(f"no-op run: {(time.perf_counter() - t0) * 1000:.1f} ms round trip")
    print("mesh stopped")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiperf", description="Benchmark OpenAI-compatible inference servers on a "
                                   "ZeroMQ service mesh (AIPerf's metrics and artifacts).")
    sub = parser.add_subparsers(dest="command", required=True)

    profile = sub.add_parser(
        "profile", help="run one load profile and print its metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  aiperf mock-server --port 8000 &\n"
               "  aiperf profile -u http://127.0.0.1:8000 -m my-model --streaming "
               "--concurrency 8 --request-count 200\n\n"
               "exit codes: 0 success, 1 mesh failure, 2 invalid configuration, 3 every "
               "request failed,\n  4 --failed-request-threshold exceeded, 5 a request "
               "unaccounted for, 130 interrupted (Ctrl-C; partial\n  results "
               "are written)\n\nthe API key defaults to $AIPERF_API_KEY, then "
               "$OPENAI_API_KEY")
    for flags, key, options in PROFILE_FLAGS:
        profile.add_argument(*flags, dest=key, **options)
    profile.add_argument("--output-artifact-dir", default="artifacts",
                         help="where the JSON, CSV and JSONL exports go (default: artifacts)")
    profile.add_argument("--workers-max", type=int,
                         help="worker processes (default: half the cores, at least 1)")
    _add_mesh_arguments(profile)
    profile.add_argument("--log-level", default="WARNING",
                         help="log level of the mesh's services (default WARNING)")
    profile.set_defaults(func=cmd_profile)

    mock = sub.add_parser("mock-server", help="serve a mock OpenAI-compatible API")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8000)
    mock.add_argument("--ttft-ms", type=float, default=0.0)
    mock.add_argument("--ttft-stddev-ms", type=float, default=0.0)
    mock.add_argument("--itl-ms", type=float, default=0.0)
    mock.add_argument("--itl-stddev-ms", type=float, default=0.0)
    mock.add_argument("--tokens", type=int, default=16,
                      help="output tokens when a request sets no maximum")
    mock.add_argument("--tokens-per-chunk", type=int, default=1)
    mock.add_argument("--error-rate", type=float, default=0.0)
    mock.add_argument("--error-codes", default="500", help="comma-separated status codes")
    mock.add_argument("--fault", default="none", choices=[
        "none", "rate_limit", "disconnect", "truncate", "malformed", "stall"])
    mock.add_argument("--fault-rate", type=float, default=1.0)
    mock.set_defaults(func=cmd_mock_server)

    plugins_cmd = sub.add_parser("plugins", help="list plugin categories and entries")
    plugins_cmd.set_defaults(func=cmd_plugins)

    mesh = sub.add_parser("mesh", help="start the mesh, list its services, run a no-op, stop")
    mesh.add_argument("--workers-max", type=int)
    _add_mesh_arguments(mesh)
    mesh.set_defaults(func=cmd_mesh)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("aiperf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
