"""Multi-turn sessions from a user's seat: a pytest session with the marker's keys."""

from __future__ import annotations

import pytest

# Imported before the inline session, which drops the modules it imported (scipy's C
# extensions cannot load twice): see tests/integration/pytest_aiperf/conftest.py.
import scipy.special
import scipy.stats  # noqa: F401

from tests.harness.session_server import SessionServer

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
aiperf_workers = 1
aiperf_validity = warn
"""


def test_a_marker_runs_sessions_the_server_finds_consistent(
        pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    with SessionServer(header="X-Session-ID") as server:
        pytester.makepyfile(f"""
            import pytest

            @pytest.mark.aiperf(url="{server.url}", streaming=True, concurrency=2,
                                conversation_num=4, conversation_turn_mean=3, isl=6,
                                conversation_turn_delay_mean=5,
                                session_header="X-Session-ID",
                                slo={{"request_error_rate": "<= 0 %"}})
            def test_chat_sessions(aiperf_result):
                assert len(aiperf_result.records) == 12
                assert aiperf_result.error_count == 0
        """)
        result = pytester.runpytest_inprocess()
        stats = server.stats()
    result.assert_outcomes(passed=1)
    assert stats["violations"] == []
    assert sorted(stats["sessions"].values()) == [3, 3, 3, 3]
