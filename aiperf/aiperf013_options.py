"""AIPerf 0.13's ``aiperf profile`` options, and why this project lacks the ones it lacks.

``OPTIONS_TEXT`` is tests/data/aiperf013/profile_help_flags.txt without its title line
(written by scripts/aiperf013_flags.py; a test keeps the two equal). The CLI answers an
AIPerf option it does not implement with "not supported yet" and the reason below, rather
than argparse's "unrecognized arguments"; docs/cli.md lists the same table.
"""

from __future__ import annotations

import functools

OPTIONS_TEXT = """\
# Endpoint
--model-names --model -m
--model-selection-strategy
--custom-endpoint --endpoint
--endpoint-type
--streaming
--url -u
--url-strategy
--request-timeout-seconds
--wait-for-model-timeout
--wait-for-model-mode
--wait-for-model-interval
--reset-kv-cache
--reset-kv-cache-timeout-seconds
--reset-kv-cache-path
--server-profiler
--server-profiler-timeout-seconds
--server-profiler-start-path
--server-profiler-stop-path
--api-key
--transport --transport-type
--use-legacy-max-tokens
--use-server-token-count
--per-chunk-usage
--connection-reuse-strategy
--download-video-content
--request-content-type
--session-header
--uuid-and-strip
# Input
--extra-inputs
--header -H
--input-file
--public-dataset
--hf-subset
--hf-weka-dataset
--dataset-filter
--custom-dataset-type
--ignore-trace-delays
--use-think-time-only
--max-context-length
--dataset-sampling-strategy
--allow-dataset-wrap --no-allow-dataset-wrap
--random-seed
--trace-session-sample-ratio
--config -f
# Fixed Schedule
--fixed-schedule
--no-fixed-schedule
--fixed-schedule-auto-offset
--fixed-schedule-start-offset
--fixed-schedule-end-offset
# Goodput
--goodput
# Output
--output-artifact-dir --artifact-dir
--profile-export-prefix --profile-export-file
--export-level --profile-export-level
--slice-duration
--auto-plot --no-auto-plot
--plot-required
--export-outputs-json
--otel-url
--stream
--otel-resource-attributes
--gen-ai-provider
--mlflow-tracking-uri
--mlflow-experiment
--mlflow-run-name
--mlflow-tag
--mlflow-parent-run-id
--mlflow-artifact-glob
--wandb-project
--wandb-entity
--wandb-run-name
--wandb-tag
# HTTP Trace
--export-http-trace
--show-trace-timing
# Tokenizer
--tokenizer
--tokenizer-revision
--tokenizer-trust-remote-code
--apply-chat-template
# Load Generator
--benchmark-duration
--benchmark-grace-period
--concurrency
--prefill-concurrency
--request-rate
--arrival-pattern --request-rate-mode
--arrival-smoothness --vllm-burstiness
--request-count --num-requests
--concurrency-ramp-duration
--prefill-concurrency-ramp-duration
--request-rate-ramp-duration
--request-rate-series
--failed-request-threshold
--trajectory-start-min-ratio
--trajectory-start-max-ratio
--burst-phase-starts
--trace-idle-gap-cap-seconds
--system-idle-gap-cap-seconds
# Scenario
--scenario
--unsafe-override
# Warmup
--warmup-request-count --num-warmup-requests
--warmup-duration
--agentic-cache-warmup-duration
--agentic-warmup-grace-period
--num-warmup-sessions
--warmup-concurrency
--warmup-prefill-concurrency
--warmup-request-rate
--warmup-arrival-pattern
--warmup-grace-period
--warmup-concurrency-ramp-duration
--warmup-prefill-concurrency-ramp-duration
--warmup-request-rate-ramp-duration
# User-Centric Rate
--user-centric-rate
--num-users
# Request Cancellation
--request-cancellation-rate
--request-cancellation-delay
# Conversation Input
--conversation-num --num-conversations --num-sessions
--num-dataset-entries --num-prompts
--conversation-turn-mean --session-turns-mean
--conversation-turn-stddev --session-turns-stddev
--conversation-turn-delay-mean --session-turn-delay-mean
--conversation-turn-delay-stddev --session-turn-delay-stddev
--conversation-turn-delay-ratio --session-delay-ratio
--inter-turn-delay-cap-seconds
--max-idle-gap-cap-seconds
--replay-speedup
--open-loop-replay --no-open-loop-replay
--open-loop-strict
--omit-kv-hints
--force-min-tokens --no-force-min-tokens
# Input Sequence Length (ISL)
--prompt-input-tokens-mean --synthetic-input-tokens-mean --isl
--prompt-input-tokens-stddev --synthetic-input-tokens-stddev --isl-stddev
--prompt-input-tokens-block-size --synthetic-input-tokens-block-size --isl-block-size
--seq-dist --sequence-distribution
--random-range-ratio
--random-corpus-style
# Output Sequence Length (OSL)
--prompt-output-tokens-mean --output-tokens-mean --osl
--prompt-output-tokens-stddev --output-tokens-stddev --osl-stddev
# Prompt
--prompt-batch-size --batch-size-text --batch-size -b
--prompt-corpus
# Prefix Prompt
--system-prompt
--system-prompt-file
--prompt-prefix-pool-size --prefix-prompt-pool-size --num-prefix-prompts
--prompt-prefix-length --prefix-prompt-length
--shared-system-prompt-length
--user-context-prompt-length
# Cache Bust
--cache-bust
# Rankings
--rankings-passages-mean
--rankings-passages-stddev
--rankings-passages-prompt-token-mean
--rankings-passages-prompt-token-stddev
--rankings-query-prompt-token-mean
--rankings-query-prompt-token-stddev
# Synthesis
--synthesis-speedup-ratio
--synthesis-prefix-len-multiplier
--synthesis-prefix-root-multiplier
--synthesis-prompt-len-multiplier
--synthesis-output-len-multiplier
--synthesis-max-isl
--synthesis-max-osl
# Audio Input
--audio-batch-size --batch-size-audio
--audio-length-mean
--audio-length-stddev
--audio-format
--audio-depths
--audio-sample-rates
--audio-num-channels
# Image Input
--image-width-mean
--image-width-stddev
--image-height-mean
--image-height-stddev
--image-batch-size --batch-size-image
--image-format
--image-source
--image-source-sampling
# Video Input
--video-batch-size --batch-size-video
--video-duration
--video-fps
--video-width
--video-height
--video-synth-type
--video-format
--video-codec
--video-audio-sample-rate
--video-audio-num-channels
--video-audio-codec
--video-audio-depth
# Service
--log-level
--verbose -v
--extra-verbose -vv
--record-processor-service-count --record-processors
--api-port
--api-host
--stats-interval
# Server Metrics
--server-metrics
--no-server-metrics
--server-metrics-formats
# Network Latency
--network-latency-automatic
--network-latency-mean
--network-latency-ping-interval
# GPU Telemetry
--gpu-telemetry
--no-gpu-telemetry
# UI
--ui-type --ui
# Workers
--workers-max --max-workers
# ZMQ Communication
--zmq-host
--zmq-ipc-path
--zmq-dual-bind
# Accuracy
--accuracy-benchmark
--accuracy-tasks
--accuracy-n-shots
--accuracy-enable-cot --accuracy-no-enable-cot
--accuracy-grader
--accuracy-system-prompt
--accuracy-verbose
# Multi-Run
--num-profile-runs
--profile-run-cooldown-seconds
--confidence-level
--profile-run-disable-warmup-after-first --no-profile-run-disable-warmup-after-first
--set-consistent-seed --no-set-consistent-seed
--vary-seed-per-trial --no-vary-seed-per-trial
--convergence-metric
--convergence-stat
--convergence-threshold
--convergence-mode
--parameter-sweep-cooldown-seconds
--parameter-sweep-same-seed --no-parameter-sweep-same-seed
--parameter-sweep-mode
--sweep-type
--no-sweep-table
--search-space
--search-metric
--search-stat
--search-direction
--search-max-iterations
--search-initial-points
--search-random-seed
--search-planner
--optuna-sampler
--optuna-acquisition
--optuna-terminator
--search-percentile-pooling
--bo-constraint-mode
--variant --sweep-variant
--search-sla
--search-sla-tier
--search-recipe
--ttft-sla-ms
--isl-osl-pairs
--itl-sla-ms
--tpot-sla-ms
--e2e-sla-ms
--error-rate-sla
--slo-attainment-fraction
--search-style
--degradation-threshold
--degradation-metric-tag
--degradation-stat
--isl-min
--isl-max
--isl-steps
--concurrency-min
--concurrency-max
--concurrency-steps
--osl-min
--osl-max
--osl-steps
"""

# Why a whole help panel is missing, unless a flag has a reason of its own below.
GROUP_REASONS: dict[str, str] = {
    "Endpoint": "not implemented",
    "Input": "not implemented: local single_turn / mooncake_trace / multi_turn / sharegpt "
             "files and synthetic prompts only",
    "Fixed Schedule": "not implemented: --fixed-schedule replays the whole trace",
    "Output": "not implemented: the artifact names and set are fixed",
    "HTTP Trace": "the HTTP phases are always measured (http_req_* metrics); no raw trace "
                  "export",
    "Tokenizer": "a local tokenizer.json only (--tokenizer); nothing is fetched from the Hub",
    "Load Generator": "not implemented",
    "Scenario": "no named scenarios",
    "Warmup": "warmup is --warmup-request-count requests at the profile's own load",
    "User-Centric Rate": "not implemented",
    "Request Cancellation": "not implemented",
    "Conversation Input": "not implemented: multi-turn sessions are synthetic "
                          "(--conversation-*) or local multi_turn / sharegpt files",
    "Input Sequence Length (ISL)": "not implemented: synthetic ISL is normal(mean, stddev)",
    "Output Sequence Length (OSL)": "not implemented",
    "Prompt": "not implemented: one prompt per request, no batching",
    "Prefix Prompt": "not implemented: --prompt-prefix-pool-size / --prompt-prefix-length "
                     "and --shared-system-prompt-length make the prefix workloads",
    "Cache Bust": "not implemented",
    "Rankings": "rankings endpoints are not in this build",
    "Synthesis": "no trace synthesis",
    "Audio Input": "no audio endpoints",
    "Image Input": "no image endpoints",
    "Video Input": "no video endpoints",
    "Service": "no HTTP/WebSocket API of the benchmark itself",
    "Server Metrics": "not implemented",
    "Network Latency": "not implemented: the HTTP phases (http_req_connecting, "
                       "http_req_waiting) show the network",
    "GPU Telemetry": "no GPU telemetry (use --server-metrics for the server's own gauges)",
    "UI": "not implemented",
    "Workers": "not implemented",
    "ZMQ Communication": "the mesh picks its own private IPC or 127.0.0.1 addresses",
    "Accuracy": "no accuracy benchmarks: this is a load tester",
    "Multi-Run": "no multi-run driver in `aiperf profile`: in pytest `repeat=N` runs a "
                 "profile N times and judges across runs, parametrization runs several "
                 "profiles, `aiperf compare` compares runs with intervals, and `aiperf "
                 "capacity` searches for the highest passing load",
}

FLAG_REASONS: dict[str, str] = {
    "--model-selection-strategy": "one model per run",
    "--reset-kv-cache": "no KV-cache reset hook",
    "--reset-kv-cache-timeout-seconds": "no KV-cache reset hook",
    "--reset-kv-cache-path": "no KV-cache reset hook",
    "--server-profiler": "no server profiler hook",
    "--server-profiler-timeout-seconds": "no server profiler hook",
    "--server-profiler-start-path": "no server profiler hook",
    "--server-profiler-stop-path": "no server profiler hook",
    "--use-legacy-max-tokens": "each endpoint plugin sends its API's own field (chat: "
                               "max_completion_tokens; --extra-inputs max_tokens:N adds "
                               "the legacy one)",
    "--use-server-token-count": "the server's usage is always used when present, the "
                                "tokenizer only when it is absent",
    "--per-chunk-usage": "usage is read from the stream's final usage event",
    "--connection-reuse-strategy": "pooled keep-alive connections only",
    "--download-video-content": "no video endpoints",
    "--request-content-type": "JSON request bodies only",
    "--uuid-and-strip": "no multimodal inputs",
    "--public-dataset": "no downloads at run time: give a local --input-file",
    "--hf-subset": "no downloads at run time: give a local --input-file",
    "--hf-weka-dataset": "no downloads at run time: give a local --input-file",
    "--config": "no YAML config file: pytest markers and ini keys are the config file",
    "--auto-plot": "`aiperf plot` is a command of its own",
    "--plot-required": "`aiperf plot` is a command of its own",
    "--server-metrics-formats": "JSON and CSV are always written",
    # AIPerf's --stream picks telemetry domains for OpenTelemetry; without abbreviations it
    # is never taken for --streaming, so say where streamed responses are asked for.
    "--stream": "no OpenTelemetry export (for streamed responses the flag is --streaming)",
    "--export-outputs-json": "response texts are not kept",
    **dict.fromkeys(("--otel-url", "--otel-resource-attributes", "--gen-ai-provider"),
                    "no OpenTelemetry export"),
    **dict.fromkeys(("--mlflow-tracking-uri", "--mlflow-experiment", "--mlflow-run-name",
                     "--mlflow-tag", "--mlflow-parent-run-id", "--mlflow-artifact-glob"),
                    "no MLflow upload"),
    **dict.fromkeys(("--wandb-project", "--wandb-entity", "--wandb-run-name", "--wandb-tag"),
                    "no Weights & Biases upload"),
}


@functools.cache
def options() -> list[tuple[str, tuple[str, ...]]]:
    """(help panel, names: the primary first) of every AIPerf 0.13 profile option."""
    out: list[tuple[str, tuple[str, ...]]] = []
    group = ""
    for line in OPTIONS_TEXT.splitlines():
        if line.startswith("# "):
            group = line[2:]
        elif line.strip():
            out.append((group, tuple(line.split())))
    return out


@functools.cache
def names() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every AIPerf option name -> (its panel, all names of its option)."""
    return {name: (group, all_names) for group, all_names in options()
            for name in all_names}


def reason(name: str) -> str:
    """Why AIPerf's option ``name`` (any of its names) is not implemented here."""
    group, all_names = names()[name]
    for alias in all_names:
        if alias in FLAG_REASONS:
            return FLAG_REASONS[alias]
    return GROUP_REASONS.get(group, "not implemented")
