"""The truth through pytest: marked tests against the reference servers, as a user writes them.

One pytest session (a subprocess, as a user's would be, with the plugin loaded from its entry
point) runs a generated test file with

- for every case and concurrency, a test whose objectives the truth meets (the case's
  headline time within tolerance, no errors) and whose body compares every metric of
  ``aiperf_result`` with the truth: it must pass;
- for every case, a test whose objective the truth breaches (the headline time under half
  its truth): it must fail, as a failure (a breach), not an error;

and a test against the server that never answers, whose objective ``request_error_rate <= 1
%`` must never pass. One session for all of them: a session per case would spend most of
the suite's time starting meshes. Its JUnit XML gives each generated test's outcome to the
test of this module that owns it, so each behaviour keeps its own test id here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.reference_servers import Behaviour
from tests.truth.cases import (
    BY_NAME,
    CASES,
    CONCURRENCIES,
    EARLY_MS,
    LIGHT_REQUESTS,
    REQUEST_TIMEOUT_S,
    TOLERANCE,
    Case,
    Time,
)
from tests.truth.client_box import ClientBox
from tests.truth.compare import client_starved, starved
from tests.truth.conftest import ServerPool

REPO_ROOT = Path(__file__).resolve().parents[2]
# The whole generated session (every case at two concurrencies, the breaches, a 3 s run)
# takes about 15 s; within the 120 s per-test timeout, so this one names the cause first.
SESSION_TIMEOUT_S = 100.0
# A breach is the same verdict at any concurrency: checked once per case, in one wave.
BREACH_CONCURRENCY = 16
# Requests of a breach test: enough for a significant verdict on the p50 (a 95 % lower bound
# of a median needs n >= 5; with fewer the verdict is INCONCLUSIVE, which passes by default).
BREACH_REQUESTS = 16
NEVER_ANSWER_DURATION = "3s"
NEVER_ANSWER_GRACE = "0.5s"

# aiperf_validity = warn, as every pytester session's (tests/harness/pytester_ini.py): on a
# busy 2-core box a worker's loop lag past its limit makes a run INVALID, a test error that
# judges nothing; these tests compare every metric with the truth instead (seen: a 74 ms
# loop lag p99 erred embeddings_4mb at c=1).
INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
aiperf_validity = warn
"""

HEADER = '''
import pytest

from tests.truth.cases import BY_NAME
from tests.truth.compare import check_run


def agrees_with_the_truth(result, case, concurrency, requests):
    problems = check_run(BY_NAME[case], concurrency, requests, result.to_dict(),
                         list(result.records), None)
    assert not problems, "\\n  ".join(["measured vs truth:", *problems])
'''

MEETS = '''

@pytest.mark.aiperf({profile}, request_count={requests}, slo={{
    "{headline}.p50": "<= {upper:.3f} ms",{floor}
    "request_error_rate": "<= 1 %",
}})
def test_meets__{name}__c{concurrency}(aiperf_result):
    agrees_with_the_truth(aiperf_result, "{name}", {concurrency}, {requests})
'''

BREACHES = '''

@pytest.mark.aiperf({profile}, request_count={requests}, slo={{
    "{headline}.p50": "< {half:.3f} ms",
}})
def test_breaches__{name}__c{concurrency}():
    pass
'''

NEVER_ANSWERS = '''

@pytest.mark.aiperf(url="{url}", model="ref", concurrency=4, duration="{duration}",
                    benchmark_grace_period="{grace}",
                    request_timeout_seconds={timeout},
                    slo={{"request_error_rate": "<= 1 %"}})
def test_never_answered():
    pass
'''


def headline(case: Case) -> tuple[str, Time]:
    """The time a user would put an objective on: TTFT when streaming, else latency."""
    tag = "time_to_first_token" if case.streaming else "request_latency"
    expected = case.per_request()[tag]
    assert isinstance(expected, Time)
    return tag, expected


def generated_tests(urls: dict[str, str], never_answers_url: str) -> str:
    parts = [HEADER]
    for case in CASES:
        tag, expected = headline(case)
        profile = (f'url="{urls[case.name]}", model="ref", endpoint="{case.endpoint}", '
                   f"streaming={case.streaming}, request_timeout_seconds={REQUEST_TIMEOUT_S}")
        for concurrency in CONCURRENCIES:
            floor = (f'\n    "{tag}.min": ">= {expected.ms - EARLY_MS:.3f} ms",'
                     if expected.floor else "")
            common = {"profile": f"{profile}, concurrency={concurrency}", "headline": tag,
                      "name": case.name, "concurrency": concurrency}
            parts.append(MEETS.format(
                **common, requests=LIGHT_REQUESTS[concurrency], floor=floor,
                upper=expected.ms + TOLERANCE[concurrency].of(expected.ms)))
            if concurrency == BREACH_CONCURRENCY:
                parts.append(BREACHES.format(**common, requests=BREACH_REQUESTS,
                                             half=expected.ms / 2))
    parts.append(NEVER_ANSWERS.format(url=never_answers_url, duration=NEVER_ANSWER_DURATION,
                                      grace=NEVER_ANSWER_GRACE, timeout=REQUEST_TIMEOUT_S))
    return "\n".join(parts)


@dataclass(frozen=True)
class Outcome:
    """What became of one generated test: passed, failed, error or skipped, and why."""

    status: str
    message: str


def read_junit(path: Path) -> dict[str, Outcome]:
    outcomes = {}
    for testcase in ET.parse(path).getroot().iter("testcase"):
        status, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = testcase.find(kind)
            if node is not None:
                status = "failed" if kind == "failure" else kind
                message = (node.get("message") or "") + "\n" + (node.text or "")
                break
        outcomes[testcase.get("name", "")] = Outcome(status, message)
    return outcomes


@dataclass(frozen=True)
class Session:
    outcomes: dict[str, Outcome]
    output: str

    def of(self, name: str) -> Outcome:
        assert name in self.outcomes, f"{name} did not run:\n{self.output[-3000:]}"
        return self.outcomes[name]


def run_generated(root: Path, report: str, *select: str) -> tuple[dict[str, Outcome], str]:
    """Run the generated file (only the tests named in ``select``, if any) in a pytest
    subprocess; each test's outcome from its JUnit report, and the session's output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH"))
                                        if p)
    chosen = ["-k", " or ".join(select)] if select else []
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
             "--junitxml", str(root / report), "-q", *chosen, "test_truth_generated.py"],
            cwd=root, env=env, capture_output=True, text=True, timeout=SESSION_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the generated pytest session did not finish within {SESSION_TIMEOUT_S}s:"
                    f"\n{(exc.stdout or b'')[-3000:]!r}", pytrace=False)
    output = proc.stdout + proc.stderr
    assert (root / report).exists(), f"the session wrote no report:\n{output[-3000:]}"
    return read_junit(root / report), output


@pytest.fixture(scope="module")
def session(reference_servers: ServerPool, tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("truth_session")
    servers = {case.name: reference_servers.get(case.behaviour) for case in CASES}
    never = reference_servers.get(Behaviour(never_answer=True)).url
    (root / "pytest.ini").write_text(INI)
    (root / "test_truth_generated.py").write_text(
        generated_tests({name: server.url for name, server in servers.items()}, never))
    before = {name: server.stats() for name, server in servers.items()}
    with ClientBox() as box:
        outcomes, output = run_generated(root, "junit.xml")
    # As on the other paths, only a witness of the box can call a second measurement: the
    # tests that disagreed with the truth of a server that was starved meanwhile run once
    # more, and all that disagreed if the kernel kept a client process off the CPU (one
    # session for every case: when is not known per case).
    starved_cases = {name for name, server in servers.items()
                     if starved(server.stats() - before[name])}
    client = client_starved(box.worst_wait_ms)
    again = [name for name, outcome in outcomes.items()
             if outcome.status != "passed" and name.startswith("test_meets__")
             and (client or name.split("__")[1] in starved_cases)]
    if again:
        why = (f"a client process waited {box.worst_wait_ms:.1f} ms for a CPU" if client
               else "the server was starved")
        rerun, more = run_generated(root, "junit_again.xml", *again)
        outcomes.update({name: Outcome(o.status, f"(measured again: {why} the first time)"
                                                 f"\n{o.message}")
                         for name, o in rerun.items()})
        output += more
    return Session(outcomes, output)


@pytest.mark.parametrize("concurrency", CONCURRENCIES, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_marked_test_passes_when_the_truth_meets_its_objectives(
    session: Session, case: Case, concurrency: int
) -> None:
    outcome = session.of(f"test_meets__{case.name}__c{concurrency}")
    assert outcome.status == "passed", (
        f"{case.name} at c={concurrency} ({case.about}): {outcome.status}\n{outcome.message}")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_marked_test_fails_when_the_truth_breaches_its_objective(
    session: Session, case: Case
) -> None:
    outcome = session.of(f"test_breaches__{case.name}__c{BREACH_CONCURRENCY}")
    assert outcome.status == "failed", (
        f"{case.name}: {outcome.status}, truth: a breach\n{outcome.message}")
    assert "objectives breached" in outcome.message, outcome.message


def test_an_error_rate_objective_never_passes_when_no_request_is_answered(
    session: Session,
) -> None:
    outcome = session.of("test_never_answered")
    assert outcome.status in ("failed", "error"), (
        f"a server that never answers: the test {outcome.status}; it must fail or error\n"
        f"{outcome.message}")


def test_the_generated_file_is_valid_python() -> None:
    source = generated_tests({case.name: "http://127.0.0.1:9" for case in CASES},
                             "http://127.0.0.1:9")
    compile(textwrap.dedent(source), "test_truth_generated.py", "exec")


def test_pytester_sees_the_same_verdicts_for_the_issues_reasoning_stream(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, reference_servers: ServerPool
) -> None:
    """The same generated tests through pytester, for the case the issue measured as a
    128 ms TTFT: the truth (20 ms) meets its objectives and breaches half of it."""
    case = BY_NAME["reasoning_content_stream"]
    url = reference_servers.get(case.behaviour).url
    tag, expected = headline(case)
    profile = (f'url="{url}", model="ref", endpoint="chat", streaming=True, '
               f"request_timeout_seconds={REQUEST_TIMEOUT_S}, concurrency=1")
    common = {"profile": profile, "headline": tag, "name": case.name, "concurrency": 1}
    floor = f'\n    "{tag}.min": ">= {expected.ms - EARLY_MS:.3f} ms",'
    pytester.makeini(INI)
    pytester.makepyfile(test_reasoning="\n".join([
        HEADER,
        MEETS.format(**common, requests=LIGHT_REQUESTS[1], floor=floor,
                     upper=expected.ms + TOLERANCE[1].of(expected.ms)),
        BREACHES.format(**common, requests=BREACH_REQUESTS, half=expected.ms / 2),
    ]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    result = pytester.runpytest_subprocess("-p", "no:randomly", timeout=SESSION_TIMEOUT_S)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_breaches__reasoning_content_stream__c1*",
                                 "*1 of 1 objectives breached*"])
