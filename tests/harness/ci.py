"""Tests that need something from the machine (root, a browser, a built engine): skipped
with the reason on a developer's box, failed under CI (env ``CI`` set, as ``.ci/run``
sets it), which provides all of them, so a skip there cannot hide that they never ran."""

from __future__ import annotations

import os

import pytest


def skip_or_fail(missing: str | None, tests: str) -> None:
    """Return when nothing is ``missing``; else skip with it, or under CI fail saying that
    CI must run ``tests`` ("the Ray tests")."""
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run {tests}, but {missing}", pytrace=False)
    pytest.skip(missing)
