"""The ini of every pytester session that runs load tests.

aiperf_validity = warn: these sessions test the plugin, not the machine; on a busy 2-core
box a worker's event loop can lag past its limit and make a run INVALID (a test error).
Tests of INVALID ask for the default (error) explicitly."""

from __future__ import annotations

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
aiperf_workers = 1
aiperf_validity = warn
"""
