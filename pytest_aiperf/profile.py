"""From a test item's ``aiperf`` markers (and parametrize values) to a validated load test.

Markers merge outward-in: module (``pytestmark``), then class, then function, each key of
an inner marker replacing the outer one, ``slo`` merged key by key. A parametrize argument
named like a profile key (``concurrency``) sets that key for its case, so
``@pytest.mark.parametrize("concurrency", [1, 8, 32])`` is a ladder of three runs.
Objectives from the SLO file come first; marker objectives override them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.slo import Objective, SLOError, check_applicable, parse_objectives

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig

# The engine (pydantic, plugins) is imported only once a test carries the marker, so a
# session without load tests does not pay for it.

MARKER = "aiperf"
ALIASES = {"endpoint": "endpoint_type", "duration": "benchmark_duration"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_DURATION_FACTORS = {"ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0}


class LoadTestSpecError(Exception):
    """A marker, parametrize value or SLO entry that does not validate."""


@dataclass(frozen=True)
class LoadTestSpec:
    profile: dict[str, Any]
    objectives: list[Objective] = field(default_factory=list)

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
            parts.append(f"{p['benchmark_duration']}s")
        else:
            parts.append(f"n={self.user_config().resolved_request_count()}")
        return " ".join(parts)


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise LoadTestSpecError(f"duration {value!r} is not a number of s, ms or m")
        return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]
    return value


def normalise_keys(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        key = ALIASES.get(key, key)
        if key == "benchmark_duration":
            value = _duration(value)
        out[key] = value
    return out


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


def file_objectives(nodeid: str, slo_file: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for pattern, objectives in slo_file:
        if fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(
            nodeid.split("::", 1)[-1], pattern
        ):
            merged.update(objectives)
    return merged


def build_spec(item: pytest.Item, base: dict[str, Any],
               slo_file: list[tuple[str, dict[str, Any]]]) -> LoadTestSpec | None:
    """The item's load test, or None when it has no ``aiperf`` marker."""
    markers = list(item.iter_markers(MARKER))
    if not markers:
        return None
    from aiperf.common.config import UserConfig
    from aiperf.errors import ConfigError
    from aiperf.plugin import PluginType, plugins

    profile = dict(base)
    slo = file_objectives(item.nodeid, slo_file)
    for marker in reversed(markers):
        if marker.args:
            raise LoadTestSpecError("the aiperf marker takes keyword arguments only, "
                                    f"got positional {marker.args!r}")
        kwargs = dict(marker.kwargs)
        marker_slo = kwargs.pop("slo", None) or {}
        if not isinstance(marker_slo, dict):
            raise LoadTestSpecError(f"slo must be a dict, got {marker_slo!r}")
        slo.update(marker_slo)
        profile.update(normalise_keys(kwargs))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        params = normalise_keys(dict(callspec.params))
        profile.update({k: v for k, v in params.items() if k in UserConfig.model_fields})
    try:
        config = UserConfig.build(where="profile", **profile)
        objectives = parse_objectives(slo)
        meta = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
        streams = config.streaming and bool(getattr(meta, "supports_streaming", False))
        check_applicable(objectives, profile, streams,
                         bool(getattr(meta, "produces_tokens", True)))
    except (ConfigError, SLOError) as exc:
        raise LoadTestSpecError(str(exc)) from None
    return LoadTestSpec(profile, objectives)
