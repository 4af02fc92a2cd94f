"""Autouse fixtures for every test, as in the seed: instant ``asyncio.sleep`` (opt out with
``@pytest.mark.real_sleep``), RNG seeded 42, and the plugin registry reset between tests."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Iterator

import numpy as np
import pytest

from aiperf.plugin import plugins

pytest_plugins = ["pytester", "tests.harness.fixtures"]

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and
# so would every process it starts: the Ctrl-C tests would then wait for an interrupt that
# never comes. Python's own handler restored here is what a terminal's pytest has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_real_sleep = asyncio.sleep


@pytest.fixture(autouse=True)
def _instant_sleep(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("real_sleep") or request.node.get_closest_marker(
        "integration"
    ):
        return

    async def instant(delay: float, result: object = None) -> object:
        return await _real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", instant)


@pytest.fixture(autouse=True)
def _seeded_rng() -> None:
    random.seed(42)
    np.random.seed(42)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    plugins.reset()
    yield
    plugins.reset()
