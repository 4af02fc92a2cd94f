"""pytester sessions of capacity tests (real mesh, real mock server)."""

from __future__ import annotations

import pytest

# Loaded once here: pytester's inline sessions drop the modules they import, and scipy's C
# extensions cannot load twice (as tests/integration/pytest_aiperf/conftest.py does).
import scipy.special
import scipy.stats  # noqa: F401

from tests.harness.pytester_ini import INI

# A capacity claim still refuses to pass an INVALID run under aiperf_validity = warn (tested).


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester
