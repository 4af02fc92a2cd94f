"""From a test item's ``aiperf`` markers (and parametrize values) to a validated load test.

Markers merge outward-in: module (``pytestmark``), then class, then function, each key of
an inner marker replacing the outer one, ``slo`` merged key by key. A parametrize argument
named like a profile key (``concurrency``) sets that key for its case, so
``@pytest.mark.parametrize("concurrency", [1, 8, 32])`` is a ladder of three runs.
Objectives from the SLO file come first; marker objectives override them. A test with no
objectives at all checks that its requests succeeded (``slo.implicit_objectives``).

A relative ``input_file`` (or ``tokenizer``) in a marker is relative to the test file that
names it; paths from options are made absolute in ``pytest_aiperf.options``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.capacity import CAPACITY, HEADROOM, CapacityClaim, CapacityClaimError, pop_claim
from pytest_aiperf.durations import parse_duration
from pytest_aiperf.policy import PolicyError, VerdictPolicy, pop_policy
from pytest_aiperf.slo import (
    Objective,
    SLOError,
    check_applicable,
    check_goodput,
    implicit_objectives,
    parse_objectives,
)

if TYPE_CHECKING:
    from aiperf.baselines.compare import RegressionRule
    from aiperf.common.config import UserConfig

# The engine (pydantic, plugins) is imported only once a test carries the marker, so a
# session without load tests does not pay for it.

MARKER = "aiperf"
ALIASES = {"endpoint": "endpoint_type", "duration": "benchmark_duration"}
# Marker keys that belong to the plugin, not to the engine's profile.
TEST_TIMEOUT = "test_timeout"
REGRESS = "regress"  # regression gates against the stored baseline (pytest_aiperf.baseline)
_DURATION_KEYS = ("benchmark_duration", "benchmark_grace_period")
_PATH_KEYS = ("input_file", "tokenizer")


class LoadTestSpecError(Exception):
    """A marker, parametrize value or SLO entry that does not validate."""


@dataclass(frozen=True)
class LoadTestSpec:
    profile: dict[str, Any]  # an api_key in it is a SecretStr, so its repr shows no key
    objectives: list[Objective] = field(default_factory=list)
    test_timeout: float | None = None  # seconds; None: derived from the profile
    policy: VerdictPolicy = field(default_factory=VerdictPolicy)
    plan: list[str] = field(default_factory=list)  # the planner's warnings
    # the session's gates merged with the marker's ``regress`` (pytest_aiperf.baseline)
    rules: tuple[RegressionRule, ...] = ()
    # ``capacity={"concurrency": ">= 16"}``: the profile runs at the claimed point
    capacity: CapacityClaim | None = None

    def user_config(self) -> UserConfig:
        from aiperf.common.config import UserConfig

        return UserConfig.build(**self.profile)

    def short(self) -> str:
        """The profile in a few words, for summaries."""
        p = self.profile
        parts = [p.get("endpoint_type", "chat") + (" stream" if p.get("streaming") else "")]
        if p.get("request_rate"):
            parts.append(f"rate={p['request_rate']}/s")
        if p.get("concurrency") or not p.get("request_rate"):
            parts.append(f"c={p.get('concurrency', 1)}")
        if p.get("benchmark_duration"):
            parts.append(f"{p['benchmark_duration']:g}s")
        elif p.get("conversation_num") and not p.get("request_count"):
            # sessions alone: that many whole conversations, however many turns they hold
            parts.append(f"sessions={p['conversation_num']}")
        else:
            parts.append(f"n={self.user_config().resolved_request_count()}")
        return " ".join(parts)


def normalise_keys(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        key = ALIASES.get(key, key)
        if key in _DURATION_KEYS and value is not None:
            try:
                value = parse_duration(value, key,
                                       allow_zero=key == "benchmark_grace_period")
            except ValueError as exc:
                raise LoadTestSpecError(str(exc)) from None
        out[key] = value
    return out


def pop_test_timeout(values: dict[str, Any]) -> float | None:
    """Take the plugin's ``test_timeout`` key out of marker or ``aiperf.run`` keywords."""
    if TEST_TIMEOUT not in values:
        return None
    try:
        return parse_duration(values.pop(TEST_TIMEOUT), TEST_TIMEOUT)
    except ValueError as exc:
        raise LoadTestSpecError(str(exc)) from None


def resolve_paths(values: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative dataset paths, relative to ``base_dir``; a missing file is an error that
    shows the absolute path looked at."""
    for key in _PATH_KEYS:
        value = values.get(key)
        if isinstance(value, str | Path):
            path = Path(value).expanduser()
            path = path if path.is_absolute() else (base_dir / path).resolve()
            if not path.is_file():
                raise LoadTestSpecError(f"{key} {str(path)!r} does not exist (relative "
                                        f"paths are relative to {base_dir})")
            values[key] = str(path)
    return values


def load_slo_file(path: Path) -> list[tuple[str, dict[str, Any]]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise pytest.UsageError(f"--aiperf-slo-file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise pytest.UsageError(f"--aiperf-slo-file {path}: expected a mapping of node id "
                                "pattern to a mapping of objectives")
    for pattern, objectives in data.items():
        try:
            parse_objectives(objectives)
        except SLOError as exc:
            raise pytest.UsageError(f"--aiperf-slo-file {path}: {pattern}: {exc}") from None
    return [(str(k), v) for k, v in data.items()]


def pattern_matches(nodeid: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(
        nodeid.split("::", 1)[-1], pattern)


def file_objectives(nodeid: str, slo_file: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for pattern, objectives in slo_file:
        if pattern_matches(nodeid, pattern):
            merged.update(objectives)
    return merged


def build_spec(item: pytest.Item, base: dict[str, Any],
               slo_file: list[tuple[str, dict[str, Any]]],
               policy: VerdictPolicy | None = None,
               session_rules: Sequence[RegressionRule] = ()) -> LoadTestSpec | None:
    """The item's load test, or None when it has no ``aiperf`` marker."""
    markers = list(item.iter_markers(MARKER))
    if not markers:
        return None
    from aiperf.common.config import UserConfig
    from aiperf.errors import ConfigError

    profile = dict(base)
    slo = file_objectives(item.nodeid, slo_file)
    test_timeout = None
    policy_keys: dict[str, Any] = {}
    marker_rules: list[RegressionRule] = []
    claim_keys: dict[str, Any] = {}
    for marker in reversed(markers):
        if marker.args:
            raise LoadTestSpecError("the aiperf marker takes keyword arguments only, "
                                    f"got positional {marker.args!r}")
        kwargs = dict(marker.kwargs)
        marker_slo = kwargs.pop("slo", None) or {}
        if not isinstance(marker_slo, dict):
            raise LoadTestSpecError(f"slo must be a dict, got {marker_slo!r}")
        slo.update(marker_slo)
        test_timeout = pop_test_timeout(kwargs) or test_timeout
        if REGRESS in kwargs:  # an inner marker's gate replaces an outer one on its key
            marker_rules = merged_rules(marker_rules, pop_regress(kwargs))
        policy_keys.update(pop_policy(kwargs))
        claim_keys.update({k: kwargs.pop(k) for k in (CAPACITY, HEADROOM) if k in kwargs})
        profile.update(resolve_paths(normalise_keys(kwargs), item.path.parent))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        params = normalise_keys(dict(callspec.params))
        profile.update({k: v for k, v in params.items() if k in UserConfig.model_fields})
    claim = claimed_profile(profile, claim_keys, policy_keys)
    try:
        config = UserConfig.build(where="profile", **profile)
        objectives = validated_objectives(config, profile, slo)
        verdicts = (policy or VerdictPolicy()).merged("marker", **policy_keys)
        rules = validated_rules(config, merged_rules(session_rules, marker_rules))
    except (ConfigError, SLOError, PolicyError) as exc:
        raise LoadTestSpecError(str(exc)) from None
    if not any(not o.relative for o in objectives):
        # Relative objectives may go unjudged (no baseline): the implicit one stays.
        objectives = [*implicit_objectives(config.failed_request_threshold), *objectives]
    from pytest_aiperf.planner import plan

    return LoadTestSpec(profile, objectives, test_timeout, verdicts,
                        plan(objectives, config, verdicts), tuple(rules), claim)


def claimed_profile(profile: dict[str, Any], claim_keys: dict[str, Any],
                    policy_keys: dict[str, Any]) -> CapacityClaim | None:
    """A capacity claim sets its load key in ``profile`` (a different value there is an
    error) and, unless the marker chose, ``inconclusive="extend"``: a claim is decided, not
    assumed."""
    try:
        claim = pop_claim(dict(claim_keys))
    except CapacityClaimError as exc:
        raise LoadTestSpecError(str(exc)) from None
    if claim is None:
        return None
    given = profile.get(claim.over)
    if given is not None and float(given) != claim.point:
        raise LoadTestSpecError(f"capacity claims {claim.over} >= {claim.point:g} but the "
                                f"profile sets {claim.over}={given!r}: leave it to the claim")
    if claim.over == "concurrency" and profile.get("request_rate") is not None:
        raise LoadTestSpecError("a concurrency capacity claim takes no request_rate")
    profile[claim.over] = claim.value(claim.point)
    policy_keys.setdefault("inconclusive", "extend")
    return claim


def pop_regress(values: dict[str, Any]) -> list[RegressionRule]:
    """Take the ``regress`` key out of marker or ``aiperf.run`` keywords, parsed."""
    if REGRESS not in values:
        return []
    from pytest_aiperf.baseline import BaselineError, regress_rules

    try:
        return regress_rules(values.pop(REGRESS))
    except BaselineError as exc:
        raise LoadTestSpecError(str(exc)) from None


def merged_rules(outer: Sequence[RegressionRule],
                 inner: Sequence[RegressionRule]) -> list[RegressionRule]:
    if not outer or not inner:
        return [*outer, *inner]
    from pytest_aiperf.baseline import merged_rules as merge

    return merge(outer, inner)


def validated_rules(config: UserConfig,
                    rules: Sequence[RegressionRule]) -> list[RegressionRule]:
    """Gates checked against what this profile measures (SLOError at collection)."""
    if not rules:
        return []
    from aiperf.plugin import PluginType, plugins
    from pytest_aiperf.baseline import BaselineError, check_rules_applicable
    from pytest_aiperf.slo import is_multi_turn_profile

    meta = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
    streams = config.streaming and bool(getattr(meta, "supports_streaming", False))
    tokens = bool(getattr(meta, "produces_tokens", True))
    try:
        check_rules_applicable(rules, streams, tokens, config.endpoint_type,
                               multi_turn=is_multi_turn_profile(config.model_dump(
                                   exclude_none=True)))
    except BaselineError as exc:
        raise SLOError(str(exc)) from None
    return list(rules)


def validated_objectives(config: UserConfig, profile: dict[str, Any],
                         slo: dict[str, Any] | None) -> list[Objective]:
    """Objectives parsed and checked against what this profile measures (SLOError)."""
    from aiperf.plugin import PluginType, plugins

    objectives = parse_objectives(slo)
    meta = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
    streams = config.streaming and bool(getattr(meta, "supports_streaming", False))
    tokens = bool(getattr(meta, "produces_tokens", True))
    check_goodput(config.goodput, streams, tokens)
    check_applicable(objectives, profile, streams, tokens)
    return objectives
