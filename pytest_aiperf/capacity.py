"""Capacity in pytest: the marker's claim (``capacity={"concurrency": ">= 16"}``, with
``headroom``) and the ``aiperf.capacity(...)`` search of the ``aiperf`` fixture.

A claim runs the profile at the claimed point and decides the SLOs there with confidence
(``extend`` unless the marker sets ``inconclusive``): PASS means the claim holds. With
``headroom`` (x1.25 by default) one more run goes a step above; it does not gate the test,
it shows how much room is left. A FAIL, an INCONCLUSIVE left undecided, or an INVALID run
at the claimed point never passes. The verdict line reads

    capacity >= 16 concurrent: PASS (at 16: all objectives PASS; at 20:
    time_to_first_token.p99 FAIL [312, 355] ms)

and goes to the test's report section, its failure message and ``summary.json``
(``LoadTestRecord.capacity``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiperf.capacity.model import CapacityResult
    from pytest_aiperf.session import AIPerfSession
    from pytest_aiperf.slo import Verdict

CAPACITY = "capacity"
HEADROOM = "headroom"
DEFAULT_HEADROOM = 1.25
_CLAIM = re.compile(r"^\s*(>=)?\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*$")


class CapacityClaimError(ValueError):
    """A ``capacity`` / ``headroom`` marker value that does not validate."""


@dataclass(frozen=True)
class CapacityClaim:
    over: str  # concurrency or request_rate
    point: float
    headroom: float | None = None  # the factor of the step above, when asked

    @property
    def text(self) -> str:
        from aiperf.capacity.model import UNITS

        return f"capacity >= {self.point:g} {UNITS[self.over]}"

    def headroom_point(self) -> float | None:
        if self.headroom is None:
            return None
        if self.over == "concurrency":
            return float(max(int(self.point) + 1, math.ceil(self.point * self.headroom)))
        return self.point * self.headroom

    def value(self, point: float) -> int | float:
        return int(point) if self.over == "concurrency" else float(point)


def parse_claim(capacity: Any, headroom: Any = None) -> CapacityClaim:
    """``{"concurrency": ">= 16"}`` (or a bare number) and ``headroom`` (True, False, a
    factor above 1) -> a claim; CapacityClaimError names what is wrong."""
    if not isinstance(capacity, dict) or len(capacity) != 1:
        raise CapacityClaimError(f"capacity must be one of {{'concurrency': '>= N'}} or "
                                 f"{{'request_rate': '>= R'}}, got {capacity!r}")
    (over, value), = capacity.items()
    if over not in ("concurrency", "request_rate"):
        raise CapacityClaimError(f"capacity is claimed over concurrency or request_rate, not "
                                 f"{over!r}")
    match = _CLAIM.match(str(value))
    if not match:
        raise CapacityClaimError(f"capacity {over}: {value!r} is not '>= N' (a capacity is a "
                                 f"lower bound: the load it serves at least)")
    point = float(match.group(2))
    if point <= 0 or (over == "concurrency" and point != int(point)):
        raise CapacityClaimError(f"capacity {over}: {value!r} must be a positive "
                                 f"{'whole number' if over == 'concurrency' else 'number'}")
    factor: float | None
    if headroom is None or headroom is False:
        factor = None
    elif headroom is True:
        factor = DEFAULT_HEADROOM
    elif isinstance(headroom, int | float) and headroom > 1:
        factor = float(headroom)
    else:
        raise CapacityClaimError(f"headroom must be True, False or a factor above 1 (1.25: "
                                 f"a step 25 % above the claim), got {headroom!r}")
    return CapacityClaim(over, point, factor)


def pop_claim(values: dict[str, Any]) -> CapacityClaim | None:
    """Take ``capacity`` and ``headroom`` out of marker keywords (the merged ones)."""
    headroom = values.pop(HEADROOM, None)
    if CAPACITY not in values:
        if headroom not in (None, False):
            raise CapacityClaimError("headroom needs a capacity claim (capacity={...})")
        return None
    return parse_claim(values.pop(CAPACITY), headroom)


def claim_line(claim: CapacityClaim, status: str, at_claim: str,
               headroom: tuple[float, str] | None) -> str:
    parts = [f"at {claim.point:g}: {at_claim}"]
    if headroom is not None:
        parts.append(f"at {headroom[0]:g}: {headroom[1]}")
    return f"{claim.text}: {status} ({'; '.join(parts)})"


def probe_summary(point: float, verdicts: list[Verdict], over: str,
                  status: str | None = None, cause: str | None = None) -> tuple[str, str]:
    """(status, summary) of one point, as the search's probes word it."""
    from aiperf.capacity.model import Probe, status_of

    probe = Probe(point, status or status_of(verdicts), verdicts=verdicts, cause=cause)
    return probe.status, probe.summary()


def claim_status(claimed: str, invalid: bool) -> str:
    """The claim's verdict from the claimed point's: only a PASS there passes it."""
    if invalid:
        return "INVALID"
    return claimed


def search(session: AIPerfSession, nodeid: str, base_dir: Path, over: str,
           slo: dict[str, Any] | None, *, low: float = 1, high: float = 512,
           tolerance: float = 0.1, max_requests: int | None = None,
           max_seconds: float | None = None, max_probes: int | None = 20,
           inconclusive: str = "fail", policy_keys: dict[str, Any] | None = None,
           profile: dict[str, Any] | None = None) -> CapacityResult:
    """The search on the session's mesh (the ``aiperf.capacity`` fixture method)."""
    from aiperf.capacity.probe import ProbeRunner
    from aiperf.capacity.search import Budget, run_search
    from pytest_aiperf.profile import normalise_keys, resolve_paths
    from pytest_aiperf.slo import parse_objectives

    objectives = [o for o in parse_objectives(slo) if not o.relative]
    if not objectives:
        raise ValueError("aiperf.capacity needs objectives that are not relative to a "
                         "baseline (slo={...})")
    values = {**session.settings.profile_base(),
              **resolve_paths(normalise_keys(dict(profile or {})), base_dir)}
    policy = session.settings.policy.merged(
        "aiperf.capacity", **{"inconclusive": "extend", **(policy_keys or {})})
    artifacts: Path | None = None
    if session.settings.artifacts is not None:
        from pytest_aiperf.session import safe_dirname

        artifacts = session.settings.artifacts / f"{safe_dirname(nodeid)}_capacity"

    def run(config: Any) -> Any:
        return session.mesh().run(config)

    if "url" not in values:
        values["url"] = session.default_url()
    api_key = values.get("api_key")
    if api_key is not None:
        from pydantic import SecretStr

        if not isinstance(api_key, SecretStr):
            values["api_key"] = api_key = SecretStr(str(api_key))
        session.secrets.add(api_key.get_secret_value())
    if max_seconds is None:  # the test's deadline bounds a search as it does one run
        max_seconds = session.settings.test_timeout
    runner = ProbeRunner(run, values, objectives, over=over, policy=policy,
                         on_run=_exporter(artifacts, over) if artifacts else None)
    result = run_search(runner, over=over, low=low, high=high, tolerance=tolerance,
                        budget=Budget(max_requests, max_seconds, max_probes),
                        inconclusive_counts_as=inconclusive)
    if artifacts is not None:
        result.write(artifacts)
    return result


def _exporter(root: Path, over: str) -> Any:
    seen: list[float] = []

    def export(point: float, chunk: int, result: Any) -> str:
        from aiperf.exporters.base import export_files

        if chunk == 1:
            seen.append(point)
        name = f"probe{len(seen):02d}_{over}_{point:g}"
        export_files(result, root / (name if chunk == 1 else f"{name}_chunk{chunk}"))
        return str(root / name)

    return export
