"""pytester runs real pytest sessions (real mesh, real mock server) in a temp dir."""

from __future__ import annotations

import pytest

# The verdicts import scipy lazily; imported here first, it outlives each inline pytester
# session (which drops modules it imported, and scipy's C extensions cannot load twice).
import scipy.special
import scipy.stats  # noqa: F401

from tests.harness.pytester_ini import INI


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester
