"""Hooks pytest-aiperf calls, for other plugins and conftest files to implement."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_aiperf_profile(item: pytest.Item, profile: dict[str, Any]) -> None:
    """Adjust a load test's profile in place just before it runs (e.g. point ``url`` at a
    staging host, or scale ``request_count`` down on a slow runner)."""


def pytest_aiperf_result(item: pytest.Item, result: Any) -> None:
    """Called with each load test's ``ProfileResult`` right after its run, before its
    objectives are checked."""


def pytest_aiperf_report(session: pytest.Session, results: list[Any]) -> None:
    """Called once at the end of the session with a ``LoadTestRecord`` per run of a load
    test (node id, run number, profile, result, verdicts, outcome, error, warnings). Under
    pytest-xdist it is called on the controller only, with every worker's records (those
    carry the reported numbers but no ``result``). The terminal summary, ``summary.json``
    and the GitHub step summary are implementations of this hook."""
