"""The ``aiperf`` command: ``profile``, ``mock-server``, ``plugins``, ``mesh``, ``compare``,
``history``, ``plot`` (aiperf/report/cli.py) and ``capacity`` (aiperf/capacity/cli.py).

Exit codes of ``aiperf profile``: 0 success; 2 invalid configuration (the message names the
flag); 3 every request failed; 4 ``--failed-request-threshold`` tripped; 5 the credit
invariant broke (a request unaccounted for); 1 the mesh itself failed; 130 interrupted
(Ctrl-C: the results of what was sent are still written, marked ``was_cancelled``).
``aiperf compare``: 6 when a ``--fail`` rule is REGRESSED, 2 for a bad source or rule, else
0. ``aiperf history``: 2 when the test is unknown or ambiguous, else 0.

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiperf.baselines.compare import RegressionRule
    from aiperf.baselines.sources import LoadedRun
    from aiperf.baselines.storage import Storage, StoredRun

EXIT_OK, EXIT_MESH, EXIT_CONFIG, EXIT_ALL_FAILED, EXIT_THRESHOLD, EXIT_INVARIANT = range(6)
EXIT_REGRESSED = 6
EXIT_INTERRUPTED = 130
API_KEY_ENV = ("AIPERF_API_KEY", "OPENAI_API_KEY")

# (flags, UserConfig key, argparse options). The flag names are AIPerf's.
PROFILE_FLAGS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--url", "-u"), "url", {"action": "append", "help": "base URL of the OpenAI-compatible "
                              "server (http:// when it has no scheme)"}),
    (("--model-names", "--model", "-m"), "model", {"help": "model name sent in each request"}),
    (("--custom-endpoint", "--endpoint"), "custom_endpoint", {
        "help": "request path used instead of the endpoint type's own (/v1/custom)"}),
    (("--endpoint-type",), "endpoint_type", {"help": "endpoint plugin: chat, completions, "
                                                     "embeddings, ..."}),
    (("--wait-for-model-timeout",), "wait_for_model_timeout", {
        "help": "before the run, wait up to this long for the model to answer; 0 "
                "(default) skips the wait"}),
    (("--wait-for-model-mode",), "wait_for_model_mode", {
        "choices": ["models", "inference", "both"],
        "help": "what the wait checks: models (its id in /v1/models), inference (a "
                "one-token request answered; the default) or both"}),
    (("--wait-for-model-interval",), "wait_for_model_interval", {
        "help": "seconds between two attempts of the wait (default 0.5)"}),
    (("--streaming",), "streaming", {"action": "store_true", "default": None,
                                     "help": "request streamed responses (SSE)"}),
    (("--concurrency",), "concurrency", {"type": int, "help": "requests in flight (closed "
                                         "loop); with --request-rate, a cap"}),
    (("--request-rate",), "request_rate", {"type": float, "help": "requests per second "
                                           "(open loop)"}),
    (("--arrival-pattern", "--request-rate-mode"), "arrival_pattern", {
        "help": "constant, poisson (default), gamma"}),
    (("--arrival-smoothness", "--vllm-burstiness"), "arrival_smoothness", {
        "type": float, "help": "gamma shape (1 = poisson)"}),
    (("--request-count", "--num-requests"), "request_count", {"type": int,
                                                              "help": "profiling requests"}),
    (("--benchmark-duration",), "benchmark_duration", {
        "help": "load for this long instead of a request count: 30, 30s, 500ms, 2m"}),
    (("--benchmark-grace-period",), "benchmark_grace_period", {
        "help": "time in-flight requests may finish after the duration (default 30s)"}),
    (("--warmup-request-count", "--num-warmup-requests"), "warmup_request_count", {
        "type": int, "help": "requests sent first and excluded from every result"}),
    (("--prompt-input-tokens-mean", "--synthetic-input-tokens-mean", "--isl"), "isl", {
        "type": int, "help": "mean input tokens (synthetic prompts)"}),
    (("--prompt-input-tokens-stddev", "--synthetic-input-tokens-stddev", "--isl-stddev"),
     "isl_stddev", {"type": float, "help": "stddev of input tokens"}),
    (("--prompt-output-tokens-mean", "--output-tokens-mean", "--osl"), "osl", {
        "type": int, "help": "mean output tokens requested"}),
    (("--prompt-output-tokens-stddev", "--output-tokens-stddev", "--osl-stddev"),
     "osl_stddev", {"type": float, "help": "stddev of output tokens"}),
    (("--input-file",), "input_file", {"help": "dataset file: JSONL (single_turn, trace, "
                                              "multi_turn) or ShareGPT JSON"}),
    (("--custom-dataset-type",), "custom_dataset_type", {
        "help": "single_turn, mooncake_trace, multi_turn, sharegpt"}),
    (("--fixed-schedule",), "fixed_schedule", {"action": "store_true", "default": None,
        "help": "replay the input file's timestamps"}),
    # AIPerf switches a timestamped trace to fixed schedule by itself unless told not to;
    # here a trace is replayed on its timestamps only when asked, so this is the default.
    (("--no-fixed-schedule",), "fixed_schedule", {"action": "store_const", "const": False,
        "help": "send a trace's requests at the profile's load, not on its timestamps "
                "(the default here)"}),
    (("--extra-inputs",), "extra_inputs", {"action": "extend", "nargs": "+",
        "metavar": "KEY:VALUE", "help": "merged into every request body (repeatable, several "
                                        "per flag; or a JSON object)"}),
    (("--header", "-H"), "headers", {"action": "extend", "nargs": "+",
                                     "metavar": "NAME:VALUE",
                                     "help": "extra HTTP header (repeatable, several per "
                                             "flag; or a JSON object)"}),
    (("--api-key",), "api_key", {"help": "sent as a Bearer token; never printed (default: "
                                         "$AIPERF_API_KEY, then $OPENAI_API_KEY)"}),
    (("--goodput",), "goodput", {"nargs": "+", "metavar": "TAG:VALUE",
                                 "help": "e.g. time_to_first_token:200 request_latency:1000"}),
    (("--request-timeout-seconds",), "request_timeout_seconds", {"type": float,
        "help": "a request still unanswered after this is an error (default 600)"}),
    (("--request-first-byte-timeout-seconds",), "request_first_byte_timeout_seconds", {
        "type": float, "help": "a request without a first response byte after this is an "
                               "error (default: no separate limit)"}),
    (("--transport", "--transport-type"), "transport", {
        "help": "http (default: a lean HTTP/1.1 client) or aiohttp (follows redirects)"}),
    (("--failed-request-threshold",), "failed_request_threshold", {"type": float,
        "help": "exit 4 when more than this percent of requests fail"}),
    (("--slice-duration",), "slice_duration", {
        "help": "also export metrics per time slice this long: 5, 5s, 1m (AIPerf's "
                "profile_export_aiperf_timeslices.{json,csv})"}),
    (("--sketch",), "sketch", {"action": "store_true", "default": None,
        "help": "keep each metric in a relative-error quantile sketch instead of every "
                "value: flat memory for runs of any length (per-request JSONL off unless "
                "--export-records)"}),
    (("--sketch-relative-accuracy",), "sketch_relative_accuracy", {"type": float,
        "help": "the sketch's relative error on every percentile (default 0.01: 1 %%)"}),
    (("--export-records",), "export_records", {"action": argparse.BooleanOptionalAction,
        "default": None, "help": "write profile_export.jsonl, streamed to disk (default: "
                                 "on, off with --sketch)"}),
    (("--random-seed",), "random_seed", {"type": int,
                                         "help": "seed of prompts and arrivals (default 0)"}),
    (("--tokenizer",), "tokenizer", {"help": "path to a local tokenizer.json"}),
    (("--server-metrics",), "server_metrics", {"nargs": "*", "metavar": "URL",
        "help": "scrape Prometheus /metrics before, during and after the run: the "
                "endpoint's base URL + /metrics without a URL, else these URLs"}),
    (("--no-server-metrics",), "server_metrics", {"action": "store_const", "const": False,
                                                  "help": "no server metrics (the default)"}),
    (("--server-metrics-interval",), "server_metrics_interval", {
        "help": "seconds between two scrapes during the run (default 1)"}),
    (("--conversation-num", "--num-conversations", "--num-sessions"), "conversation_num", {
        "type": int, "help": "multi-turn sessions: how many (the synthetic pool; alone, "
                             "the run is that many whole sessions)"}),
    (("--conversation-turn-mean", "--session-turns-mean"), "conversation_turn_mean", {
        "type": float, "help": "mean turns per synthetic session (default 1)"}),
    (("--conversation-turn-stddev", "--session-turns-stddev"), "conversation_turn_stddev", {
        "type": float, "help": "stddev of turns per synthetic session"}),
    (("--conversation-turn-delay-mean", "--session-turn-delay-mean"),
     "conversation_turn_delay_mean", {"type": float,
                                      "help": "mean think time before a turn, in ms"}),
    (("--conversation-turn-delay-stddev", "--session-turn-delay-stddev"),
     "conversation_turn_delay_stddev", {"type": float, "help": "stddev of the think time, ms"}),
    (("--conversation-turn-delay-ratio", "--session-delay-ratio"),
     "conversation_turn_delay_ratio", {"type": float,
                                       "help": "every turn delay is multiplied by this"}),
    (("--session-header",), "session_header", {
        "help": "header carrying each session's id (default X-Correlation-ID)"}),
    (("--request-cancellation-rate",), "request_cancellation_rate", {
        "type": float, "help": "percent of requests the client cancels (recorded as "
                               "cancelled, code 499)"}),
    (("--request-cancellation-delay",), "request_cancellation_delay", {
        "type": float, "help": "seconds after a request is sent before it is cancelled"}),
    (("--concurrency-ramp-duration",), "concurrency_ramp_duration", {
        "type": float, "help": "seconds to ramp the closed loop from 1 to --concurrency"}),
    (("--request-rate-ramp-duration",), "request_rate_ramp_duration", {
        "type": float, "help": "seconds to ramp the request rate up to --request-rate"}),
    (("--prompt-prefix-pool-size", "--prefix-prompt-pool-size", "--num-prefix-prompts"),
     "prompt_prefix_pool_size", {"type": int,
                                 "help": "distinct prompt prefixes (prefix caching)"}),
    (("--prompt-prefix-length", "--prefix-prompt-length"), "prompt_prefix_length", {
        "type": int, "help": "tokens of each prefix"}),
    (("--shared-system-prompt-length",), "shared_system_prompt_length", {
        "type": int, "help": "tokens of one system prompt shared by every request"}),
    (("--url-strategy",), "url_strategy", {
        "choices": ["round_robin"], "type": lambda value: value.replace("-", "_"),
        "help": "how requests spread over several --url (round_robin)"}),
    *((("--" + key.replace("_", "-"),), key, {"help": f"rankings endpoints: {what}"})
      for key, what in (
          ("rankings_passages_mean", "mean passages per request"),
          ("rankings_passages_stddev", "stddev of passages per request"),
          ("rankings_passages_prompt_token_mean", "mean tokens of a passage"),
          ("rankings_passages_prompt_token_stddev", "stddev of a passage's tokens"),
          ("rankings_query_prompt_token_mean", "mean tokens of the query"),
          ("rankings_query_prompt_token_stddev", "stddev of the query's tokens"))),
]
FLAG_OF: dict[str, str] = {}
for _flags, _key, _ in PROFILE_FLAGS:
    FLAG_OF.setdefault(_key, _flags[0])  # --server-metrics, not --no-server-metrics


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
    urls = values.pop("url", None)
    if urls:
        values["url"] = urls[0]
        if len(urls) > 1:
            values["urls"] = urls  # round robin (--url-strategy)
    model = values.get("model")
    if model is not None and "," in model:
        raise SystemExit("aiperf: error: several models in --model-names is not supported "
                         "yet: give one")
    if "goodput" in values:
        values["goodput"] = " ".join(values["goodput"])
    if values.get("server_metrics") is False:
        values["server_metrics"] = None
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
    from aiperf.progress import ProgressLine

    try:
        config = UserConfig.build(name_of=lambda k: FLAG_OF.get(k, k), **_profile_values(args))
    except ConfigError as exc:
        print(f"aiperf: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    overrides = _mesh_overrides(args)
    if config.wait_for_model_timeout > 0:
        from aiperf.readiness import ModelNotReady, wait_for_model

        try:
            ready = wait_for_model(config)
        except ModelNotReady as exc:
            print(f"aiperf: {exc}", file=sys.stderr)
            return EXIT_MESH
        if ready is not None and ready.attempts > 1:
            print(f"model ready after {ready.waited_s:.1f} s ({ready.attempts} attempts)",
                  file=sys.stderr)
    show_progress = sys.stderr.isatty() and args.ui_type != "none"
    progress = ProgressLine(config) if show_progress else None
    log_level = "DEBUG" if args.log_level == "TRACE" else args.log_level
    interrupted = False
    try:
        with Mesh(log_level=log_level, capture_logs=False, **overrides) as mesh:
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
    if config.sketch:  # the table's percentiles are not exact: say by how much
        print(f"percentiles from quantile sketches: each within "
              f"{config.sketch_relative_accuracy * 100:g} % (relative) of the exact value")
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


def cmd_mock_server(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from aiperf.common.config import format_validation_error
    from aiperf.common.process import run_event_loop
    from aiperf.mock_server.config import MockServerConfig
    from aiperf.mock_server.server import serve_forever

    values = dict(
        host=args.host, port=args.port, ttft_ms=args.ttft_ms, ttft_stddev_ms=args.ttft_stddev_ms,
        itl_ms=args.itl_ms, itl_stddev_ms=args.itl_stddev_ms, tokens=args.tokens,
        tokens_per_chunk=args.tokens_per_chunk, error_rate=args.error_rate,
        error_codes=[int(c) for c in args.error_codes.split(",")], fault=args.fault,
        fault_rate=args.fault_rate, seed=args.seed,
    )
    # The distribution keys: only those given, so the model's own defaults and checks hold.
    values.update({key: getattr(args, key) for key in _MOCK_DISTRIBUTION_KEYS
                   if getattr(args, key) is not None})
    try:
        config = MockServerConfig(**values)
    except ValidationError as exc:
        message = format_validation_error(exc, MockServerConfig, "aiperf mock-server",
                                          lambda key: "--" + key.replace("_", "-"))
        print(f"aiperf: invalid configuration: {message}", file=sys.stderr)
        return EXIT_CONFIG
    run_event_loop(serve_forever(config))
    return EXIT_OK


_MOCK_DISTRIBUTION_KEYS = ("ttft_distribution", "ttft_sigma", "ttft_p99_ms", "latency_ms",
                           "latency_stddev_ms", "latency_distribution", "latency_sigma",
                           "latency_p99_ms", "slots")


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
    if getattr(args, "record_processors", None):
        overrides["record_processors"] = args.record_processors
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


# -- aiperf compare / aiperf history (issue 11: baselines outside pytest)

# What `aiperf history` shows of each stored run: (summary tag, statistic, column title).
HISTORY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("time_to_first_token", "p99", "TTFT p99 ms"),
    ("request_latency", "p50", "latency p50 ms"),
    ("request_throughput", "avg", "req/s"),
)
DEFAULT_STORAGE = ".aiperf"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Aligned text columns, two spaces apart; ``right``: the right-aligned columns."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                          strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
                         ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _num(value: float | None) -> str:
    """A value in its display unit, to a precision a reader compares: two decimals from 1
    to 100, one to 1000, thousands separated above, three significant digits below 1."""
    import math

    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _signed(value: float, percent: bool) -> str:
    import math

    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    if percent:
        return f"{value * 100:+.1f} %"
    text = _num(value)
    return text if text.startswith("-") else f"+{text}"


def _metric_rules(text: str) -> list[RegressionRule]:
    """The rules ``--metric`` asks for: ``TAG`` (p50 and p99 of a per-request metric, or a
    throughput), ``TAG.STAT``, or a whole rule ``TAG[.STAT]:MARGIN`` (shown, not a gate)."""
    from aiperf.baselines.compare import THROUGHPUTS, parse_rule

    if ":" in text:
        return [parse_rule(text)]
    if "." in text or text.removeprefix("adj_") in THROUGHPUTS:
        return [parse_rule(f"{text}:0%")]
    return [parse_rule(f"{text}.p50:0%"), parse_rule(f"{text}.p99:0%")]


def _compare_plan(args: argparse.Namespace) -> list[tuple[RegressionRule, bool]]:
    """(rule, is a gate) in table order: the shown rules (``--metric``, else the defaults),
    a gate taking the place of a shown rule of the same statistic, then the other gates."""
    from aiperf.baselines.compare import DEFAULT_RULES, parse_rule

    gates = [parse_rule(text) for text in args.fail or []]
    shown = [r for text in args.metric or [] for r in _metric_rules(text)] if args.metric \
        else list(DEFAULT_RULES)
    by_key: dict[str, RegressionRule] = {}
    for gate in gates:
        by_key.setdefault(gate.key, gate)
    plan: list[tuple[RegressionRule, bool]] = []
    seen: set[str] = set()
    for rule in shown:
        if rule.key in seen:
            continue
        seen.add(rule.key)
        plan.append((by_key[rule.key], True) if rule.key in by_key else (rule, False))
    placed = {rule.key for rule, gate in plan if gate}
    for gate in gates:
        if gate.key not in placed or gate is not by_key[gate.key]:
            plan.append((gate, True))
    return plan


def _profile_warnings(base: LoadedRun, other: LoadedRun) -> list[str]:
    from aiperf.baselines.fingerprint import differing_keys
    from aiperf.baselines.machine import machine_differences

    out = []
    if base.fingerprint is None or other.fingerprint is None:
        unknown = [run for run in (base, other) if run.fingerprint is None]
        for run in unknown:
            why = f": {run.fingerprint_note}" if run.fingerprint_note else ""
            out.append(f"note: {run.label}: profile unknown{why}; not checked")
    else:
        keys = differing_keys(base.fingerprint, other.fingerprint)
        if keys:
            shown = ", ".join(
                f"{k} ({base.fingerprint.keys.get(k)!r} -> {other.fingerprint.keys.get(k)!r})"
                for k in keys[:6])
            more = f", and {len(keys) - 6} more" if len(keys) > 6 else ""
            out.append(f"warning: {other.label}: its profile differs from the baseline's in "
                       f"{shown}{more}; compared anyway")
        out.extend(f"note: {run.label}: profile {run.fingerprint_note} (keys it does not "
                   f"state count as this project's defaults)"
                   for run in (base, other) if run.fingerprint_note)
    if base.machine is not None and other.machine is not None:
        differences = machine_differences(base.machine, other.machine)
        if differences:
            out.append(f"note: {other.label}: another machine than the baseline's: "
                       f"{'; '.join(differences)}")
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    import math

    from aiperf.baselines.compare import compare
    from aiperf.baselines.sources import SourceError, load_source
    from aiperf.errors import ConfigError

    if len(args.sources) < 2:
        print("aiperf compare: give at least two sources: the baseline, then one or more "
              "runs to compare with it", file=sys.stderr)
        return EXIT_CONFIG
    if not 0.5 <= args.confidence < 1.0:
        print(f"aiperf compare: --confidence must be in [0.5, 1), got {args.confidence}",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        plan = _compare_plan(args)
    except ConfigError as exc:
        print(f"aiperf compare: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    tags = {rule.metric for rule, _ in plan}
    runs = []
    for source in args.sources:
        try:
            runs.append(load_source(source, tags))
        except SourceError as exc:
            print(f"aiperf compare: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    base, others = runs[0], runs[1:]
    print(f"baseline: {base.label} ({base.title})")
    for run in others:
        print(f"compared: {run.label} ({run.title})")
    for run in runs:
        for note in run.notes:
            print(f"note: {run.label}: {note}")
    # dict: a note about the baseline would repeat once per compared run
    for line in dict.fromkeys(line for run in others for line in _profile_warnings(base, run)):
        print(line)
    percent = f"{args.confidence * 100:g} %"
    regressed: list[str] = []
    unchecked: list[str] = []
    for rule, gate in plan:
        results = []
        for run in others:
            found = compare(base, run, [rule], args.confidence, skip_unmeasured=not gate)
            if found:
                results.append((run, found[0]))
        if not results:
            continue  # a shown metric neither run measured (streaming-only, say)
        unit = rule.unit
        print(f"\n{rule.key} ({unit})")
        rows = []
        for run, c in results:
            rel = c.difference.relative
            change = _signed(c.delta, False)
            if c.before and not math.isnan(c.before):
                change += f" ({_signed(rel[0], True)})"
            low, high = (rel[1], rel[2]) if c.relative else (c.low, c.high)
            interval = ("no bound" if low == -float("inf") and high == float("inf")
                        else f"{_signed(low, c.relative)} .. {_signed(high, c.relative)}")
            rows.append([run.label, _num(c.before), _num(c.after), change, interval,
                         c.status])
            if gate and c.status == "REGRESSED":
                regressed.append(f"{rule.text} ({run.label})")
            if gate and c.method.startswith("not compared"):
                unchecked.append(f"{rule.text} ({run.label}): {c.method}")
        for line in _table(["run", "before", "after", "change", f"{percent} interval",
                            "status"], rows, {1, 2, 3}):
            print(f"  {line}")
        methods = list(dict.fromkeys(c.method for _, c in results))
        if len(methods) == 1:
            print(f"  method: {methods[0]}")
        else:
            for run, c in results:
                print(f"  method ({run.label}): {c.method}")
        margin = rule.margin_text
        if gate:
            worse = "up" if rule.worse == "up" else "down"
            print(f"  gate --fail {rule.text}: REGRESSED when the whole interval is worse "
                  f"({worse}) than {margin}")
        elif rule.margin:
            print(f"  margin: {margin}")
    for line in unchecked:
        # Not a regression, so exit 0; but a gate that checked nothing must not pass unseen.
        print(f"\nwarning: --fail {line}")
    if regressed:
        print(f"\nREGRESSED: {', '.join(regressed)}")
        return EXIT_REGRESSED
    return EXIT_OK


def _resolve_test(storage: Storage, wanted: str) -> tuple[str | None, str]:
    """(node id, "") of ``wanted`` (a node id, its directory's slug, or a substring of one
    node id), or (None, why not)."""
    from aiperf.baselines.storage import node_slug

    tests = storage.tests()
    if wanted in tests:
        return wanted, ""
    by_slug = [t for t in tests if node_slug(t) == wanted.rstrip("/").rsplit("/", 1)[-1]]
    if by_slug:
        return by_slug[0], ""
    matches = [t for t in tests if wanted in t]
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        listed = "".join(f"\n  {t}" for t in matches[:20])
        return None, f"{wanted!r} matches {len(matches)} stored tests; be more specific:{listed}"
    known = "".join(f"\n  {t}" for t in tests[:20]) or " none"
    return None, f"no stored test matches {wanted!r} in {storage.root}; stored tests:{known}"


def _stored_count(directory: Path) -> int:
    """Runs in a test's directory, by the documented file names (``NNNN_<name>.json``)."""
    import re

    pattern = re.compile(r"^\d{4,}_[A-Za-z0-9._-]+\.json$")
    try:
        return sum(1 for p in directory.iterdir() if pattern.match(p.name))
    except OSError:
        return 0


def _trend(value: float | None, previous: float | None) -> str:
    import math

    if value is None or previous is None or not math.isfinite(value) \
            or not math.isfinite(previous) or previous == 0:
        return ""
    return f"{(value - previous) / abs(previous) * 100:+.1f} %"


def cmd_history(args: argparse.Namespace) -> int:
    from aiperf.baselines.fingerprint import differing_keys
    from aiperf.baselines.machine import machine_differences
    from aiperf.baselines.storage import Storage, StorageError, node_slug

    storage = Storage(Path(args.storage))
    if not storage.root.is_dir():
        print(f"aiperf history: no storage directory {storage.root} (pytest --aiperf-save "
              f"or --aiperf-autosave creates it; --storage DIR reads another)",
              file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.test is None:
            tests = storage.tests()
            if not tests:
                print(f"no stored runs in {storage.root}")
                return EXIT_OK
            print(f"stored runs in {storage.root}:")
            rows = []
            for test in tests:
                latest = storage.load(test)
                rows.append([str(_stored_count(storage.root / node_slug(test))),
                             latest.saved_at if latest else "", test])
            for line in _table(["runs", "latest (UTC)", "test"], rows, {0}):
                print(f"  {line}")
            return EXIT_OK
        test, why = _resolve_test(storage, args.test)
        if test is None:
            print(f"aiperf history: {why}", file=sys.stderr)
            return EXIT_CONFIG
        history = storage.history(test)
    except StorageError as exc:
        print(f"aiperf history: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{test}: {len(history)} stored runs, oldest first "
          f"({storage.root / node_slug(test)})")
    headers = ["#", "name", "saved (UTC)", "commit", "requests"]
    for _, _, title in HISTORY_METRICS:
        headers += [title, "trend"]
    rows = []
    notes = []
    previous: StoredRun | None = None
    for run in history:
        commit = (run.machine.git_commit or "")[:10]
        if commit and run.machine.git_dirty:
            commit += "+dirty"
        row = [str(run.number), run.name, run.saved_at, commit or "-", str(run.request_count)]
        for tag, stat, _ in HISTORY_METRICS:
            value = run.summary.get(tag, {}).get(stat)
            before = previous.summary.get(tag, {}).get(stat) if previous is not None else None
            row += [_num(value) if value is not None else "-", _trend(value, before)]
        rows.append(row)
        if previous is not None:
            keys = differing_keys(previous.fingerprint, run.fingerprint)
            if keys:
                notes.append(f"#{run.number}: profile changed since #{previous.number} "
                             f"({', '.join(keys)}): its trend compares other loads")
            moved = machine_differences(previous.machine, run.machine)
            if moved:
                notes.append(f"#{run.number}: another machine than #{previous.number} "
                             f"({'; '.join(moved)})")
        previous = run
    right = {0, 4, *range(5, len(headers))}
    for line in _table(headers, rows, right):
        print(f"  {line}")
    for note in notes:
        print(f"  note: {note}")
    if len(history) > 1:
        print("  trend: change from the run above (no interval; `aiperf compare A B` on two "
              "stored files gives one)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiperf", description="Benchmark OpenAI-compatible inference servers on a "
                                   "ZeroMQ service mesh (AIPerf's metrics and artifacts).")
    sub = parser.add_subparsers(dest="command", required=True)

    profile = sub.add_parser(
        # No abbreviations: AIPerf's --endpoint (a path) must never be taken for
        # --endpoint-type, nor its --stream (telemetry) for --streaming.
        "profile", help="run one load profile and print its metrics", allow_abbrev=False,
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
    profile.add_argument("--output-artifact-dir", "--artifact-dir", default="artifacts",
                         help="where the JSON, CSV and JSONL exports go (default: artifacts)")
    profile.add_argument("--workers-max", "--max-workers", type=int,
                         help="worker processes (default: half the cores, at least 1)")
    profile.add_argument("--record-processor-service-count", "--record-processors",
                         dest="record_processors", type=int,
                         help="record processor processes (default 1)")
    _add_mesh_arguments(profile)
    profile.add_argument("--log-level", default="WARNING", type=str.upper,
                         choices=["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"],
                         help="log level of the mesh's services (default WARNING; TRACE "
                              "is DEBUG)")
    profile.add_argument("--verbose", "-v", dest="log_level", action="store_const",
                         const="DEBUG", help="--log-level DEBUG")
    profile.add_argument("--extra-verbose", "-vv", dest="log_level", action="store_const",
                         const="DEBUG", help="--log-level DEBUG (there is no TRACE level)")
    profile.add_argument("--ui-type", "--ui", choices=["dashboard", "simple", "none"],
                         help="progress on a terminal: dashboard and simple draw one "
                              "progress line, none draws nothing (default: simple on a "
                              "terminal, else none)")
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
    mock.add_argument("--ttft-distribution", choices=["normal", "fixed", "lognormal"],
                      help="normal (default; clamped at 0), fixed, or lognormal (median "
                      "--ttft-ms, with --ttft-sigma or --ttft-p99-ms)")
    mock.add_argument("--ttft-sigma", type=float, help="lognormal sigma of TTFT")
    mock.add_argument("--ttft-p99-ms", type=float, help="lognormal TTFT's p99")
    mock.add_argument("--latency-ms", type=float,
                      help="non-streaming latency (default: TTFT + ITL x tokens)")
    mock.add_argument("--latency-stddev-ms", type=float)
    mock.add_argument("--latency-distribution", choices=["normal", "fixed", "lognormal"])
    mock.add_argument("--latency-sigma", type=float)
    mock.add_argument("--latency-p99-ms", type=float)
    mock.add_argument("--slots", type=int,
                      help="serve at most N requests at once; the rest queue in FIFO order")
    mock.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    mock.set_defaults(func=cmd_mock_server)

    plugins_cmd = sub.add_parser("plugins", help="list plugin categories and entries")
    plugins_cmd.set_defaults(func=cmd_plugins)

    mesh = sub.add_parser("mesh", help="start the mesh, list its services, run a no-op, stop")
    mesh.add_argument("--workers-max", type=int)
    _add_mesh_arguments(mesh)
    mesh.set_defaults(func=cmd_mesh)

    compare = sub.add_parser(
        "compare", help="compare runs with a baseline: a table per metric with the change "
                        "and its interval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="a SOURCE is a stored run (.aiperf/<test>/NNNN_<name>.json), an artifact "
               "directory of\n  aiperf profile or pytest-aiperf, or an NVIDIA AIPerf "
               "artifact directory\n  (profile_export_aiperf.json + profile_export.jsonl)\n\n"
               "example:\n  aiperf compare artifacts/main artifacts/pr --fail "
               "time_to_first_token.p99:10%\n\n"
               "exit codes: 0 no --fail rule REGRESSED, 6 one is, 2 a bad source or rule")
    compare.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="the baseline first, then each run compared with it")
    compare.add_argument("--fail", action="append", metavar="EXPR",
                         help="exit 6 when this rule is REGRESSED, e.g. "
                              "time_to_first_token.p99:10%%, request_throughput:-5%%, "
                              "request_latency.p50:+20ms (repeatable)")
    compare.add_argument("--confidence", type=float, default=0.95,
                         help="of each interval on a change (default 0.95)")
    compare.add_argument("--metric", action="append", metavar="TAG",
                         help="show this metric instead of the defaults (TTFT, ITL, request "
                              "latency p50/p99, throughput): TAG (p50 and p99), TAG.STAT "
                              "(repeatable)")
    compare.set_defaults(func=cmd_compare)

    history = sub.add_parser("history", help="the stored runs of a test, with a trend of its "
                                             "key metrics")
    history.add_argument("test", nargs="?", metavar="TEST",
                         help="a node id, its storage directory's name, or a unique part of "
                              "a node id; without it, every stored test")
    history.add_argument("--storage", default=DEFAULT_STORAGE, metavar="DIR",
                         help="the storage directory (default: .aiperf, as pytest's "
                              "aiperf_storage)")
    history.set_defaults(func=cmd_history)

    # Commands that live with what they drive; each module is light to import (the
    # plotting assets and the capacity search load when the command runs).
    from aiperf.capacity.cli import register as register_capacity
    from aiperf.report.cli import register as register_plot

    register_plot(sub)
    register_capacity(sub)
    return parser


def profile_option_strings() -> set[str]:
    """Every option string ``aiperf profile`` takes (what docs/cli.md is checked against)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices["profile"]._option_string_actions)
    raise AssertionError("aiperf has no profile command")


def _unsupported(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 extra: list[str]) -> int | None:
    """Exit 2 for arguments the parser did not take: "not supported yet" (with why) for
    AIPerf 0.13 options of ``aiperf profile``, argparse's own error for anything else."""
    if not extra:
        return None
    if args.command == "profile":
        from aiperf import aiperf013_options

        known = aiperf013_options.names()
        for item in extra:
            name = item.split("=", 1)[0]
            if name in known:
                print(f"aiperf profile: {name} (an AIPerf 0.13 option) is not supported "
                      f"yet: {aiperf013_options.reason(name)}; see docs/cli.md",
                      file=sys.stderr)
                return EXIT_CONFIG
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return EXIT_CONFIG  # parser.error exits; for type checkers


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    refused = _unsupported(parser, args, extra)
    if refused is not None:
        return refused
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("aiperf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
