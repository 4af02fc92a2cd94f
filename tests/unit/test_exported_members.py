"""The public surfaces export exactly their ``__all__``, sorted (as httpx checks its own)."""

from __future__ import annotations

import aiperf
import pytest_aiperf


def test_pytest_aiperf_exports_what_all_names() -> None:
    public = sorted(n for n in vars(pytest_aiperf) if not n.startswith("_")
                    and not isinstance(getattr(pytest_aiperf, n), type(pytest_aiperf)))
    assert pytest_aiperf.__all__ == sorted(pytest_aiperf.__all__)
    assert set(public) == set(pytest_aiperf.__all__)


def test_aiperf_exports_resolve_lazily() -> None:
    assert aiperf.__all__ == sorted(aiperf.__all__)
    for name in aiperf.__all__:
        assert getattr(aiperf, name).__name__ == name
