"""A profile's fingerprint: the settings that shape the load a run offered, hashed.

Two runs are compared only when their fingerprints are equal: a change in concurrency or
prompt length moves every latency for a reason that is not a regression. The keys are kept
in clear beside the digest, so a mismatch can name what changed.

What is in (``LOAD_KEYS``), each under its ``UserConfig`` name:

- the endpoint and what is asked of it: ``endpoint_type``, ``streaming``, ``model``,
  ``extra_inputs`` (request body parameters such as ``max_tokens``);
- the load: the resolved ``timing_strategy``, ``concurrency`` and ``request_count`` (the
  defaults a profile leaves unset are filled in, so ``concurrency=1`` and an unset
  concurrency are the same load), ``request_rate``, ``arrival_pattern`` (only for a
  rate-driven run: a closed loop has no arrivals), ``arrival_smoothness`` (only for a gamma
  arrival pattern), ``benchmark_duration``, ``benchmark_grace_period`` (only for a duration
  run: it decides which requests in flight at the end are cancelled),
  ``warmup_request_count``, ``fixed_schedule``;
- the prompts: the resolved ``dataset``, ``input_file`` (the SHA-256 of its content, not its
  path: a CI checkout lives at another path on every runner), ``custom_dataset_type``,
  ``isl``, ``isl_stddev``, ``osl``, ``osl_stddev``, ``random_seed``, ``tokenizer`` (its
  content hash when it names a file);
- ``goodput``: it does not change the load, but it defines the goodput metrics, and two
  runs with other thresholds report different quantities under one name.

What is out: the target (``url``: the mock server's port differs in every session, and
comparing two servers under one profile is the point), credentials (``api_key``,
``headers``: never stored anywhere), ``request_timeout_seconds`` and
``request_first_byte_timeout_seconds`` (they bound requests, they do not shape the load),
and what only summarizes a run (``failed_request_threshold``, ``slice_duration``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aiperf.common.config import UserConfig, mask_url

LOAD_KEYS: tuple[str, ...] = (
    "endpoint_type",
    "streaming",
    "model",
    "extra_inputs",
    "timing_strategy",
    "concurrency",
    "request_rate",
    "arrival_pattern",
    "arrival_smoothness",
    "request_count",
    "benchmark_duration",
    "benchmark_grace_period",
    "warmup_request_count",
    "fixed_schedule",
    "dataset",
    "input_file",
    "custom_dataset_type",
    "isl",
    "isl_stddev",
    "osl",
    "osl_stddev",
    "random_seed",
    "tokenizer",
    "goodput",
)

DIGEST_CHARS = 16


class Fingerprint(BaseModel):
    """``digest``: the first 16 hex digits of the SHA-256 of the keys' canonical JSON;
    ``keys``: those keys in clear (JSON values only, so a stored fingerprint read back
    equals the one computed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    keys: dict[str, Any]


def fingerprint(config: UserConfig) -> Fingerprint:
    keys = load_keys(config)
    return Fingerprint(digest=digest_of(keys), keys=keys)


def digest_of(keys: dict[str, Any]) -> str:
    canonical = json.dumps(keys, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:DIGEST_CHARS]


def load_keys(config: UserConfig) -> dict[str, Any]:
    """The ``LOAD_KEYS`` of ``config``, canonical: resolved defaults, files by content."""
    from aiperf.plugin import normalize_name

    # mode="json": the keys must be exactly what a stored file gives back after a JSON
    # round trip (tuples as lists, no SecretStr), or a loaded fingerprint would differ.
    dumped = config.model_dump(mode="json")
    keys: dict[str, Any] = {name: dumped.get(name) for name in LOAD_KEYS}
    strategy = config.resolved_timing_strategy()
    keys["endpoint_type"] = normalize_name(config.endpoint_type)
    keys["timing_strategy"] = normalize_name(strategy)
    keys["concurrency"] = config.resolved_concurrency()
    keys["request_count"] = config.resolved_request_count()
    keys["dataset"] = normalize_name(config.resolved_dataset())
    rate_driven = config.request_rate is not None and not config.fixed_schedule
    if not rate_driven:
        keys["arrival_pattern"] = None
    if not rate_driven or config.arrival_pattern != "gamma":
        keys["arrival_smoothness"] = None
    if config.benchmark_duration is None:
        keys["benchmark_grace_period"] = None
    if config.input_file is not None:
        keys["input_file"] = _content_hash(config.input_file)
    if config.tokenizer is not None and Path(config.tokenizer).is_file():
        keys["tokenizer"] = _content_hash(config.tokenizer)
    elif config.tokenizer is not None:
        # A hub name or URL rather than a file: kept as written, without credentials.
        keys["tokenizer"] = mask_url(config.tokenizer)
    return keys


def differing_keys(a: Fingerprint, b: Fingerprint) -> list[str]:
    """The names whose values differ, sorted; a key only one side has counts (a run stored
    by a version that fingerprinted other keys)."""
    names = set(a.keys) | set(b.keys)
    missing = object()
    return sorted(n for n in names if a.keys.get(n, missing) != b.keys.get(n, missing))


# (path, size, mtime_ns) -> hash: a trace file of hundreds of MB is hashed once a session,
# not once per saved test.
_HASHES: dict[tuple[str, int, int], str] = {}


def _content_hash(name: str) -> str:
    """``sha256:<16 hex>`` of a file's bytes; ``unreadable:<file name>`` when it cannot be
    read (the run itself will have failed on it, or it is on another machine)."""
    path = Path(name)
    try:
        stat = path.stat()
        key = (os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            _HASHES[key] = f"sha256:{digest.hexdigest()[:DIGEST_CHARS]}"
        return _HASHES[key]
    except OSError:
        return f"unreadable:{path.name}"
