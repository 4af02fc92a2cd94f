"""The public surfaces export exactly their ``__all__``, sorted (as httpx checks its own)."""

from __future__ import annotations

import aiperf
import pytest_aiperf


def test_pytest_aiperf_exports_resolve_lazily() -> None:
    assert pytest_aiperf.__all__ == sorted(pytest_aiperf.__all__)
    for name in pytest_aiperf.__all__:
        assert getattr(pytest_aiperf, name).__name__ == name


def test_aiperf_exports_resolve_lazily() -> None:
    assert aiperf.__all__ == sorted(aiperf.__all__)
    for name in aiperf.__all__:
        assert getattr(aiperf, name).__name__ == name
