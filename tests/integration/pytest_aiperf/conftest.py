"""pytester runs real pytest sessions (real mesh, real mock server) in a temp dir."""

from __future__ import annotations

import pytest

# The verdicts import scipy lazily; imported here first, it outlives each inline pytester
# session (which drops modules it imported, and scipy's C extensions cannot load twice).
import scipy.special
import scipy.stats  # noqa: F401

# aiperf_validity = warn: these sessions test the plugin, not the machine; on a busy 2-core
# box a worker's event loop can lag past its limit and make a run INVALID (a test error).
# test_invalid.py asks for the default (error) explicitly.
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
