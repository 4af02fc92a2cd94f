"""aiperf_validity: a run the client could not deliver is an error, a warning, or ignored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_aiperf.session import InvalidRunError, LoadTestRecord, check_validity


@dataclass
class FakeValidity:
    """The shape of ``aiperf.validity.Validity``."""

    valid: bool

    def reason(self) -> str:
        return ("schedule_lag_p99: 85.0 ms > 10.0 ms limit: the workers could not keep the "
                "schedule; add workers or lower the rate")

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "signals": []}


@dataclass
class FakeResult:
    validity: FakeValidity | None


def _record() -> LoadTestRecord:
    return LoadTestRecord("t.py::test_x", "chat c=1 n=1")


def test_an_invalid_run_is_an_error_with_the_reason_and_suggestion() -> None:
    record = _record()
    with pytest.raises(InvalidRunError, match=r"(?s)INVALID: the client could not deliver.*"
                                              r"add workers or lower the rate"):
        check_validity(FakeResult(FakeValidity(False)), None, "error", record)  # type: ignore[arg-type]
    assert record.invalid and "schedule_lag_p99" in record.invalid
    assert record.validity == {"valid": False, "signals": []}


def test_warn_judges_anyway_and_off_does_not_look() -> None:
    record = _record()
    check_validity(FakeResult(FakeValidity(False)), None, "warn", record)  # type: ignore[arg-type]
    assert record.invalid is None and record.warnings[0].startswith("INVALID run")
    quiet = _record()
    check_validity(FakeResult(FakeValidity(False)), None, "off", quiet)  # type: ignore[arg-type]
    assert quiet.warnings == [] and quiet.validity is None


def test_a_valid_run_or_one_without_validity_passes_the_gate() -> None:
    record = _record()
    check_validity(FakeResult(FakeValidity(True)), None, "error", record)  # type: ignore[arg-type]
    check_validity(FakeResult(None), None, "error", record)  # type: ignore[arg-type]
    assert record.invalid is None and record.validity == {"valid": True, "signals": []}
