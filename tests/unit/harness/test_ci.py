"""skip_or_fail: a missing prerequisite skips on a developer's box and fails under CI."""

from __future__ import annotations

import pytest

from tests.harness.ci import skip_or_fail


def test_nothing_missing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert skip_or_fail(None, "the x tests") is None


def test_missing_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^no x here$"):
        skip_or_fail("no x here", "the x tests")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match=r"^CI must run the x tests, but no x here$"):
        skip_or_fail("no x here", "the x tests")
