"""How verdicts are drawn for one load test: confidence, what INCONCLUSIVE does, validity,
repeats and the steady window. Each key is an ini key ``aiperf_<key>``, an option
``--aiperf-<key>`` and a marker key; the marker wins, then the command line, then the ini.

``extend`` keeps running the same profile in chunks (separate runs on the same mesh whose
records are pooled: values and windows concatenated, counts added) until every objective is
decided or the budget is spent: ``max_request_count`` / ``max_duration``, by default 4x the
profile. It looks at most K = budget / chunk times and judges every look at confidence
1 - alpha / K (Bonferroni), so the chance that any look is wrong stays at most alpha. When the
budget is spent, ``inconclusive_final`` decides (default ``fail``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_aiperf.durations import parse_duration

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig

EXTEND_FACTOR = 4  # the default budget of ``extend``: four times the profile
POLICY_KEYS = ("confidence", "inconclusive", "inconclusive_final", "validity", "repeat",
               "steady_state", "max_request_count", "max_duration")


class PolicyError(ValueError):
    """A verdict setting that does not validate; the message names it and the choices."""


class VerdictPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    inconclusive: Literal["pass", "fail", "xfail", "extend"] = "pass"
    inconclusive_final: Literal["pass", "fail", "xfail"] = "fail"
    validity: Literal["error", "warn", "off"] = "error"
    repeat: int = Field(1, ge=1, le=100)
    steady_state: bool = False
    max_request_count: int | None = Field(None, ge=1)
    max_duration: float | None = Field(None, gt=0)

    @field_validator("max_duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value, "max_duration")

    @field_validator("steady_state", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0",
                                                                "yes", "no", "on", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        return value

    @classmethod
    def build(cls, where: str, **values: Any) -> VerdictPolicy:
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            raise PolicyError(f"{where}: {problems}") from None

    def merged(self, where: str, **overrides: Any) -> VerdictPolicy:
        return VerdictPolicy.build(where, **{**self.model_dump(), **overrides})

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def looks(self, config: UserConfig) -> int:
        """How many looks ``extend`` may take (1 for any other policy): the budget over one
        chunk (the profile as written)."""
        if self.inconclusive != "extend":
            return 1
        duration = config.benchmark_duration
        if duration:
            budget = self.max_duration or EXTEND_FACTOR * duration
            return max(1, math.floor(budget / duration + 1e-9))
        chunk = config.resolved_request_count()
        budget_requests = self.max_request_count or EXTEND_FACTOR * chunk
        return max(1, budget_requests // chunk)

    def look_confidence(self, looks: int) -> float:
        """Each look's confidence: alpha shared by all of them (Bonferroni)."""
        from aiperf.statistics import bonferroni

        return 1.0 - bonferroni(self.alpha, looks) if looks > 1 else self.confidence


def pop_policy(values: dict[str, Any]) -> dict[str, Any]:
    """Take the verdict keys out of marker or ``aiperf.run`` keywords."""
    return {key: values.pop(key) for key in POLICY_KEYS if key in values}
