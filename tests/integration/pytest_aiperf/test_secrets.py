"""The API key is a secret from the moment it is read: no output, traceback (with -l, which
prints every frame's locals), artifact or report carries it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

KEY = "sk-test-SECRET123"

FAILING = """
import hashlib
import pytest

@pytest.mark.aiperf(request_count=8, concurrency=4, slo={"request_latency.p50": "< 1 ns"})
def test_breached_marker(aiperf_result):
    pass

def test_body_fails_after_a_run(aiperf):
    result = aiperf.run(request_count=2, model="m")
    spec_repr = repr(result.config)
    assert result.request_count == 99

def test_unreachable(aiperf):
    aiperf.run(url="http://127.0.0.1:9", request_count=2)

def test_hook_raises(aiperf):
    aiperf.run(request_count=2, model="explode")

def test_hook_echoes_the_key(aiperf):
    aiperf.run(request_count=2, model="echo")

@pytest.mark.aiperf(request_count=2)
def test_passes_with_the_key(aiperf_result):  # the file compares a hash, not the key
    key = aiperf_result.config.api_key.get_secret_value()
    assert hashlib.sha256(key.encode()).hexdigest() == "KEY_SHA256"
""".replace("KEY_SHA256", hashlib.sha256(KEY.encode()).hexdigest())

CONFTEST = """
def pytest_aiperf_profile(item, profile):
    if profile.get("model") == "explode":
        raise ValueError(f"no such model; profile was {profile!r}")

def pytest_aiperf_result(item, result):
    if result.config.model == "echo":  # a careless hook: the summary must not show it
        raise ValueError("rejected key " + result.config.api_key.get_secret_value())
"""


@pytest.mark.parametrize("source", ["AIPERF_API_KEY", "OPENAI_API_KEY", "--aiperf-api-key",
                                    "aiperf_api_key"])
def test_the_key_never_reaches_output_tracebacks_or_artifacts(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    for env in ("AIPERF_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    args = ["-l", "--tb=long", "-rA", "-v", "--aiperf-artifacts", "out", "--junitxml", "j.xml"]
    if source.endswith("_KEY") and source.isupper():
        monkeypatch.setenv(source, KEY)
    elif source.startswith("--"):
        args += [source, KEY]
    else:
        project.makeini(f"""
            [pytest]
            asyncio_default_fixture_loop_scope = function
            aiperf_workers = 1
            aiperf_api_key = {KEY}
        """)
    project.makeconftest(CONFTEST)
    project.makepyfile(FAILING)
    result = project.runpytest_inprocess(*args)
    result.assert_outcomes(passed=1, failed=5)
    output = result.stdout.str() + result.stderr.str()
    assert "SecretStr('**********')" in output  # -l printed the locals that hold the key
    assert KEY not in output
    for path in Path(project.path).rglob("*"):
        if path.is_file() and path.name not in ("pytest.ini", "tox.ini"):
            assert KEY not in path.read_text(errors="ignore"), path


def test_the_settings_and_spec_reprs_mask_the_key(project: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIPERF_API_KEY", KEY)
    project.makepyfile("""
        import pytest
        from pytest_aiperf.fixtures import SESSION_KEY, SPEC_KEY

        @pytest.mark.aiperf(request_count=2)
        def test_reprs(request, aiperf_result):
            session = request.config.stash[SESSION_KEY]
            print("REPRS", repr(session.settings), repr(request.node.stash[SPEC_KEY]),
                  session.settings.profile_base())
    """)
    result = project.runpytest_inprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*REPRS *api_key=SecretStr('**********')*"])
    assert KEY not in result.stdout.str()


def test_the_report_header_shows_the_url_without_its_password(
        project: pytest.Pytester) -> None:
    project.makepyfile("def test_nothing(): pass")
    result = project.runpytest_inprocess("--aiperf-url", "http://me:hunter22@127.0.0.1:9")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["aiperf: target http://***@127.0.0.1:9, *"])
    assert "hunter22" not in result.stdout.str()
