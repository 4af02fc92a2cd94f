"""What a capacity search reports: each probe (its verdicts, goodput, SLO attainment) and
the result (``max_passing``, ``min_failing``, why it stopped), written as ``capacity.json``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pytest_aiperf.slo import Verdict

Over = Literal["concurrency", "request_rate"]
OVER_CHOICES: tuple[Over, ...] = ("concurrency", "request_rate")
# PASS/FAIL/INCONCLUSIVE: the objectives' verdicts; INVALID: the client could not deliver
# the load (a limit of the client, not of the server); ERROR: every request failed, or the
# run could not be accounted for.
PROBE_STATUSES = ("PASS", "FAIL", "INCONCLUSIVE", "INVALID", "ERROR")
UNITS = {"concurrency": "concurrent", "request_rate": "requests/s"}


def point_text(point: float, over: str) -> str:
    value = f"{point:g}" if over == "concurrency" else f"{point:.4g}"
    return f"{value} {UNITS.get(over, '')}".strip()


def status_of(verdicts: list[Verdict]) -> str:
    """A probe's status from its verdicts: any FAIL fails it; any undecided one leaves it
    INCONCLUSIVE; otherwise it passes."""
    statuses = {v.status for v in verdicts}
    if "FAIL" in statuses:
        return "FAIL"
    if "INCONCLUSIVE" in statuses:
        return "INCONCLUSIVE"
    return "PASS"


@dataclass
class Probe:
    """One load point of the search, judged."""

    point: float
    status: str
    requests: int = 0  # sent at this point, every extend chunk included
    verdicts: list[Verdict] = field(default_factory=list)
    looks: int = 0  # runs pooled (extend chunks)
    confidence: float | None = None  # of each look
    seconds: float = 0.0  # wall time of the probe
    goodput: float | None = None  # good requests per second
    attainment: float | None = None  # share of requests meeting every per-request SLO
    attainment_interval: tuple[float | None, float | None] | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # for the latency-load curve
    cause: str | None = None  # INVALID / ERROR: why
    warnings: list[str] = field(default_factory=list)
    artifacts: str | None = None

    def __post_init__(self) -> None:
        if self.status not in PROBE_STATUSES:
            raise ValueError(f"probe status {self.status!r} is not one of {PROBE_STATUSES}")

    def passed(self, inconclusive_counts_as: str = "fail") -> bool:
        """Whether the search takes this point as served within the SLOs."""
        return self.status == "PASS" or (self.status == "INCONCLUSIVE"
                                         and inconclusive_counts_as == "pass")

    def breaches(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status != "PASS"]

    def summary(self) -> str:
        """``all objectives PASS`` or the objectives that did not pass, with bounds."""
        if self.status in ("INVALID", "ERROR"):
            return f"{self.status}: {(self.cause or '').splitlines()[0] if self.cause else ''}"
        if self.status == "PASS":
            return "all objectives PASS"
        return "; ".join(f"{v.objective.key} {v.status} {_bounds(v)}" for v in self.breaches())

    def to_dict(self) -> dict[str, Any]:
        interval = self.attainment_interval
        return {
            "point": self.point, "status": self.status, "requests": self.requests,
            "looks": self.looks, "confidence": self.confidence,
            "seconds": round(self.seconds, 3),
            "objectives": [v.to_dict() for v in self.verdicts],
            "goodput": _number(self.goodput), "slo_attainment": _number(self.attainment),
            "slo_attainment_interval": None if interval is None else [
                _number(b) for b in interval],
            "metrics": {k: _number(v) for k, v in self.metrics.items()},
            "cause": self.cause, "warnings": self.warnings, "artifacts": self.artifacts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe:
        from pytest_aiperf.slo import Verdict

        interval = data.get("slo_attainment_interval")
        return cls(point=data["point"], status=data["status"],
                   requests=data.get("requests", 0),
                   verdicts=[Verdict.from_dict(v) for v in data.get("objectives", [])],
                   looks=data.get("looks", 0), confidence=data.get("confidence"),
                   seconds=data.get("seconds", 0.0), goodput=data.get("goodput"),
                   attainment=data.get("slo_attainment"),
                   attainment_interval=tuple(interval) if interval else None,  # type: ignore[arg-type]
                   metrics={k: v for k, v in data.get("metrics", {}).items()
                            if v is not None},
                   cause=data.get("cause"), warnings=list(data.get("warnings", [])),
                   artifacts=data.get("artifacts"))


@dataclass
class CapacityResult:
    """The search's answer: the largest point that passed and the smallest that did not
    (None when none did), every probe in the order run, and why it stopped."""

    over: str
    low: float
    high: float
    tolerance: float
    probes: list[Probe] = field(default_factory=list)
    max_passing: float | None = None
    min_failing: float | None = None
    stopped: str = ""  # why the search ended
    converged: bool = False  # min_failing within the tolerance of max_passing (or at a bound)
    client_limit: float | None = None  # the point the client could not deliver
    error: str | None = None  # the cause when a probe's requests all failed
    requests: int = 0  # sent by every probe
    seconds: float = 0.0
    budget: dict[str, Any] = field(default_factory=dict)

    @property
    def capacity(self) -> float | None:
        return self.max_passing

    def to_dict(self) -> dict[str, Any]:
        return {
            "over": self.over, "max_passing": self.max_passing,
            "min_failing": self.min_failing, "converged": self.converged,
            "stopped": self.stopped, "client_limit": self.client_limit, "error": self.error,
            "min": self.low, "max": self.high, "tolerance": self.tolerance,
            "requests": self.requests, "seconds": round(self.seconds, 3),
            "probe_count": len(self.probes), "budget": self.budget,
            "probes": [p.to_dict() for p in self.probes], "curve": self.curve(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CapacityResult:
        return cls(over=data["over"], low=data.get("min", 0), high=data.get("max", 0),
                   tolerance=data.get("tolerance", 0.1),
                   probes=[Probe.from_dict(p) for p in data.get("probes", [])],
                   max_passing=data.get("max_passing"), min_failing=data.get("min_failing"),
                   stopped=data.get("stopped", ""), converged=data.get("converged", False),
                   client_limit=data.get("client_limit"), error=data.get("error"),
                   requests=data.get("requests", 0), seconds=data.get("seconds", 0.0),
                   budget=dict(data.get("budget", {})))

    def write(self, directory: Path) -> Path:
        """``capacity.json`` in ``directory`` (made if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "capacity.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n",
                        encoding="utf-8")
        return path

    def headline(self) -> str:
        unit = UNITS.get(self.over, "")
        if self.max_passing is None:
            found = "no point passed"
        else:
            found = f"capacity {self.max_passing:g} {unit}".rstrip()
        if self.min_failing is not None:
            found += f" (fails at {self.min_failing:g})"
        return (f"{found}: {len(self.probes)} probes, {self.requests} requests, "
                f"{self.seconds:.1f} s; {self.stopped}")

    def table(self) -> list[str]:
        """One line per probe: point, status, requests, goodput, attainment, what broke."""
        header = (f"{'point':>10}  {'status':<12}  {'requests':>8}  {'goodput':>9}  "
                  f"{'SLO attainment':<24}  objectives")
        lines = [header]
        for p in self.probes:
            goodput = "-" if p.goodput is None else f"{p.goodput:.4g}/s"
            if p.attainment is None:
                attain = "-"
            else:
                lo, hi = p.attainment_interval or (None, None)
                bounds = ("" if lo is None or hi is None
                          else f" [{lo * 100:.1f}, {hi * 100:.1f}]")
                attain = f"{p.attainment * 100:.1f} %{bounds}"
            lines.append(f"{p.point:>10g}  {p.status:<12}  {p.requests:>8}  {goodput:>9}  "
                         f"{attain:<24}  {p.summary()}")
        return lines

    def curve(self) -> list[dict[str, float | None]]:
        """The latency-load curve: per probed point (ascending), what the first run at it
        measured (``Probe.metrics``), goodput and attainment."""
        rows = []
        for p in sorted(self.probes, key=lambda p: p.point):
            rows.append({"point": p.point, **{k: _number(v) for k, v in p.metrics.items()},
                         "goodput": _number(p.goodput),
                         "slo_attainment": _number(p.attainment)})
        return rows

    def curve_lines(self) -> list[str]:
        names = [("request_throughput", "req/s"), ("time_to_first_token.p50", "TTFT p50"),
                 ("time_to_first_token.p99", "TTFT p99"), ("request_latency.p99", "lat p99")]
        lines = [f"{'point':>10}" + "".join(f"  {label:>10}" for _, label in names)]
        for row in self.curve():
            cells = "".join(f"  {'-' if row.get(k) is None else format(row[k], '.4g'):>10}"
                            for k, _ in names)
            lines.append(f"{row['point']:>10g}{cells}")
        return lines

    def verdict_tables(self) -> list[str]:
        """Every probe's full verdict table."""
        from pytest_aiperf.slo import format_table

        out: list[str] = []
        for p in self.probes:
            out.append(f"at {point_text(p.point, self.over)}: {p.status}")
            if p.verdicts:
                out.extend("  " + line for line in format_table(p.verdicts).splitlines())
            if p.cause:
                out.extend("  " + line for line in p.cause.splitlines()[:6])
        return out


def _bounds(verdict: Verdict) -> str:
    text = verdict.interval_text
    if text == "no interval":
        return f"= {verdict.measured_text}"
    unit = verdict.objective.unit
    return f"{text} {unit}" if unit and unit not in ("ratio",) else text


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
