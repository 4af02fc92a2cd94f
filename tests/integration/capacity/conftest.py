"""pytester sessions of capacity tests (real mesh, real mock server)."""

from __future__ import annotations

import pytest

# Loaded once here: pytester's inline sessions drop the modules they import, and scipy's C
# extensions cannot load twice (as tests/integration/pytest_aiperf/conftest.py does).
import scipy.special
import scipy.stats  # noqa: F401

# aiperf_validity = warn, as the plugin's other pytester sessions: they test the plugin,
# not the machine. A capacity claim still refuses to pass an INVALID run (tested).
INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
aiperf_workers = 1
aiperf_validity = warn
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester
