"""``wait_for_model_timeout`` in a pytest session: the first load test against a server
still loading its weights waits for it (once per server and model), and a model that never
answers is that test's error naming the URL, never a run of failed requests."""

from __future__ import annotations

import pytest

from tests.harness.loading_server import LoadingServer

TESTS = """
import pytest

URL = {url!r}

@pytest.mark.aiperf(url=URL, model="m", concurrency=1, request_count=4,
                    wait_for_model_timeout={timeout}, wait_for_model_interval=0.1)
def test_first():
    pass

@pytest.mark.aiperf(url=URL, model="m", concurrency=1, request_count=4,
                    wait_for_model_timeout={timeout}, wait_for_model_interval=0.1)
def test_second():
    pass
"""


def test_the_first_load_test_waits_for_the_model_and_the_next_does_not(
    project: pytest.Pytester,
) -> None:
    with LoadingServer(ready_after_s=1.5) as server:
        project.makepyfile(TESTS.format(url=server.url, timeout=60))
        outcome = project.runpytest_subprocess("-p", "no:cacheprovider")
        probes = [path for method, path, _ in server.seen if method == "POST"]
    outcome.assert_outcomes(passed=2)
    # Every request of both runs succeeded (a 503 would have failed the implicit objective);
    # the wait probed before the first run only: 503s while loading, then one answer.
    assert len(probes) >= 2 + 8
    statuses_before_load = len(probes) - 8
    assert statuses_before_load >= 2


def test_a_model_that_never_answers_is_the_tests_error_naming_the_url(
    project: pytest.Pytester,
) -> None:
    with LoadingServer(ready_after_s=3600) as server:
        project.makepyfile(TESTS.format(url=server.url, timeout=1))
        outcome = project.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(errors=2)
    text = outcome.stdout.str()
    assert "ModelNotReady" in text and server.url in text
