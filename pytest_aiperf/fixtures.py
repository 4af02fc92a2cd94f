"""The fixtures: ``aiperf_mesh``, ``aiperf_result``, ``aiperf`` and ``aiperf_mock_server``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.profile import LoadTestSpec, LoadTestSpecError, normalise_keys
from pytest_aiperf.session import AIPerfSession
from pytest_aiperf.slo import SLOError, Verdict, evaluate, format_table, parse_objectives

if TYPE_CHECKING:
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerThread
    from aiperf.results import ProfileResult

SESSION_KEY = pytest.StashKey[AIPerfSession]()
SPEC_KEY = pytest.StashKey[LoadTestSpec]()
RESULT_KEY = pytest.StashKey["ProfileResult"]()


class SLOBreach(AssertionError):
    """One or more objectives were not met; the message is the verdict table."""

    def __init__(self, verdicts: list[Verdict]) -> None:
        self.verdicts = verdicts
        failed = sum(1 for v in verdicts if not v.passed)
        super().__init__(f"{failed} of {len(verdicts)} objectives breached\n"
                         f"{format_table(verdicts)}")


def _session(config: pytest.Config) -> AIPerfSession:
    return config.stash[SESSION_KEY]


def _skip_if_disabled(config: pytest.Config) -> None:
    if _session(config).settings.disable:
        pytest.skip("load tests are disabled by --aiperf-disable")


@pytest.fixture(scope="session")
def aiperf_mesh(pytestconfig: pytest.Config) -> Mesh:
    """The session's service mesh, started on first use and shut down at session end."""
    _skip_if_disabled(pytestconfig)
    return _session(pytestconfig).mesh()


@pytest.fixture
def aiperf_result(request: pytest.FixtureRequest) -> ProfileResult:
    """The result of this test's ``@pytest.mark.aiperf`` run (run once per test or case)."""
    item = request.node
    if RESULT_KEY in item.stash:
        return item.stash[RESULT_KEY]
    spec = item.stash.get(SPEC_KEY, None)
    if spec is None:
        raise pytest.UsageError(f"{item.nodeid}: aiperf_result needs an @pytest.mark.aiperf "
                                "marker on the test, its class or its module")
    _skip_if_disabled(request.config)
    result = _session(request.config).run(item, spec)
    item.stash[RESULT_KEY] = result
    record_properties(item, result)
    return result


def record_properties(item: pytest.Item, result: ProfileResult) -> None:
    """Key metrics and verdicts as JUnit XML properties (``--junitxml``)."""
    for name in ("request_throughput", "request_error_rate", "time_to_first_token.p99",
                 "inter_token_latency.p50", "request_latency.p99", "output_token_throughput"):
        try:
            item.user_properties.append((f"aiperf.{name}", round(result.metric(name), 4)))
        except KeyError:
            continue
    item.user_properties.append(("aiperf.request_count", result.request_count))
    item.user_properties.append(("aiperf.error_request_count", result.error_count))
    for verdict in result.slo:
        measured = "n/a" if verdict.measured is None else f"{verdict.measured:.4g}"
        item.user_properties.append(
            (f"aiperf.slo.{verdict.objective.key}",
             f"{verdict.status} {measured} {verdict.objective.unit} "
             f"({verdict.objective.text})"))


class AIPerfHelper:
    """What the ``aiperf`` fixture gives a test: ad-hoc runs and checks."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def run(self, **profile: Any) -> ProfileResult:
        """Run a profile (the marker's keys) on the session mesh and return its result."""
        item = self._request.node
        session = _session(self._request.config)
        base = session.settings.profile_base()
        slo = profile.pop("slo", None)
        spec = LoadTestSpec({**base, **normalise_keys(profile)},
                            parse_objectives(slo) if slo else [])
        spec.user_config()  # raises ConfigError naming the key before any load is sent
        return session.run(item, spec)

    def check(self, result: ProfileResult, slo: dict[str, str]) -> list[Verdict]:
        """Evaluate objectives; raise the same failure as the marker when one is breached."""
        try:
            objectives = parse_objectives(slo)
        except SLOError as exc:
            raise pytest.UsageError(str(exc)) from None
        verdicts = evaluate(objectives, result)
        record = _session(self._request.config).records.get(self._request.node.nodeid)
        if record is not None:
            record.verdicts = [*record.verdicts, *verdicts]
        if not all(v.passed for v in verdicts):
            raise SLOBreach(verdicts)
        return verdicts


@pytest.fixture
def aiperf(request: pytest.FixtureRequest) -> AIPerfHelper:
    """Run profiles from a test: ``aiperf.run(concurrency=4, request_count=50)`` and
    ``aiperf.check(result, {"request_latency.p99": "< 500 ms"})``."""
    _skip_if_disabled(request.config)
    return AIPerfHelper(request)


class MockServerFactory:
    def __init__(self) -> None:
        self.servers: list[MockServerThread] = []

    def __call__(self, responders: list[Any] | None = None, **behaviour: Any) -> str:
        """Start a mock endpoint (``MockServerConfig`` keys: ttft_ms, itl_ms, tokens,
        error_rate, fault, ...; ``responders`` for other protocols) and return its URL; it
        stops when the test ends."""
        from aiperf.mock_server import MockServerThread

        server = MockServerThread(responders=responders, **behaviour)
        server.start()
        self.servers.append(server)
        return server.url

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def aiperf_mock_server() -> Iterator[MockServerFactory]:
    """A factory of mock endpoints for one test: ``url = aiperf_mock_server(ttft_ms=50)``."""
    factory = MockServerFactory()
    yield factory
    factory.close()


__all__ = ["LoadTestSpecError", "SLOBreach"]
