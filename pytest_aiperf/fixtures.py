"""The fixtures: ``aiperf_mesh``, ``aiperf_result``, ``aiperf`` and ``aiperf_mock_server``."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.policy import PolicyError, pop_policy
from pytest_aiperf.profile import (
    LoadTestSpec,
    LoadTestSpecError,
    merged_rules,
    normalise_keys,
    pop_regress,
    pop_test_timeout,
    resolve_paths,
    validated_objectives,
    validated_rules,
)
from pytest_aiperf.session import AIPerfSession, LoadTestRecord
from pytest_aiperf.slo import (
    SLOError,
    Verdict,
    evaluate,
    format_table,
    implicit_objectives,
    parse_objectives,
)

if TYPE_CHECKING:
    from aiperf.capacity.model import CapacityResult
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerProcess
    from aiperf.results import ProfileResult

SESSION_KEY = pytest.StashKey[AIPerfSession]()
SPEC_KEY = pytest.StashKey[LoadTestSpec]()
RESULT_KEY = pytest.StashKey["ProfileResult"]()


class SLOBreach(AssertionError):
    """One or more objectives were not met, or a gate against the baseline failed; the
    message is the verdict table (one per run when the test ran more than one) and the
    "vs baseline" block of each run that was compared."""

    def __init__(self, verdicts: list[Verdict],
                 runs: list[tuple[str, list[Verdict]]] | None = None,
                 inconclusive: bool = False, details: str = "",
                 baseline: list[tuple[str, list[str]]] | None = None,
                 gates: list[str] | None = None) -> None:
        self.verdicts = verdicts
        failed = sum(1 for v in verdicts if v.failed)
        if runs and len(runs) > 1:
            tables = "\n".join(f"{label}:\n{format_table(vs)}" for label, vs in runs)
        else:
            tables = format_table(verdicts)
        heads = []
        if inconclusive and not failed:
            undecided = sum(1 for v in verdicts if v.status == "INCONCLUSIVE")
            if undecided or not gates:
                heads.append(f"{undecided} of {len(verdicts)} objectives INCONCLUSIVE (the "
                             "inconclusive policy fails the test)")
        elif failed or not gates:
            heads.append(f"{failed} of {len(verdicts)} objectives breached")
        heads.extend(gates or [])
        blocks = [tables, *(f"{label}:\n" + "\n".join(lines)
                            for label, lines in baseline or [] if lines)]
        body = "\n".join(b for b in blocks if b)
        head = "; ".join(heads)
        super().__init__(f"{head}\n{details}\n{body}" if details else f"{head}\n{body}")

    @classmethod
    def of_records(cls, records: list[LoadTestRecord], inconclusive: bool = False,
                   details: str = "", gates: list[str] | None = None) -> SLOBreach:
        from pytest_aiperf.baseline import comparison_lines

        runs = [(f"run {r.run} ({r.profile})", r.verdicts) for r in records if r.verdicts]
        # A capacity claim's verdict line heads the message (the step above is in it).
        claims = [r.capacity["line"] for r in records if r.capacity and "line" in r.capacity]
        if claims:
            details = "\n".join([*claims, details] if details else claims)
        baseline = [(f"run {r.run} ({r.profile})",
                     comparison_lines(r.comparisons, r.baseline)) for r in records
                    if r.comparisons]
        return cls([v for _, vs in runs for v in vs], runs, inconclusive, details, baseline,
                   gates)


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
    session = _session(request.config)
    result = session.run(item, spec)
    item.stash[RESULT_KEY] = result
    record_properties(item, result)
    for record in session.item_records(item.nodeid):  # a capacity claim's verdict line
        if record.capacity and "line" in record.capacity:
            item.user_properties.append(("aiperf.capacity", record.capacity["line"]))
    return result


def record_properties(item: pytest.Item, result: ProfileResult, prefix: str = "aiperf") -> None:
    """Key metrics and verdicts as JUnit XML properties (``--junitxml``)."""
    for name in ("request_throughput", "request_error_rate", "time_to_first_token.p99",
                 "inter_token_latency.p50", "request_latency.p99", "output_token_throughput"):
        try:
            item.user_properties.append((f"{prefix}.{name}", round(result.metric(name), 4)))
        except KeyError:
            continue
    item.user_properties.append((f"{prefix}.request_count", result.request_count))
    item.user_properties.append((f"{prefix}.error_request_count", result.error_count))
    for verdict in result.slo:
        key = f"{prefix}.slo.{verdict.objective.key}"
        if verdict.window.startswith("across "):
            key += ".across_runs"
        item.user_properties.append((key, str(verdict)))
        for name, value in verdict.to_dict().items():
            if name in JUNIT_FIELDS:
                item.user_properties.append((f"{key}.{name}", json.dumps(value)
                                             if isinstance(value, list) else value))


JUNIT_FIELDS = ("verdict", "measured", "interval", "confidence", "n", "method", "window")


class AIPerfHelper:
    """What the ``aiperf`` fixture gives a test: ad-hoc runs and checks. Every run is a row
    of the session's summary, and its objectives, like those checked with ``check``, decide
    the test's outcome even when the test catches the failure."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def run(self, **profile: Any) -> ProfileResult:
        """Run a profile (the marker's keys, ``slo`` and ``test_timeout`` included) on the
        session mesh and return its result."""
        item = self._request.node
        session = _session(self._request.config)
        slo = profile.pop("slo", None)
        try:
            policy = session.settings.policy.merged("aiperf.run", **pop_policy(profile))
            test_timeout = pop_test_timeout(profile)
            marker_rules = pop_regress(profile)
            values = {**session.settings.profile_base(),
                      **resolve_paths(normalise_keys(profile), item.path.parent)}
            config = LoadTestSpec(values).user_config()  # ConfigError before any load
            objectives = validated_objectives(config, values, slo)
            rules = validated_rules(config, merged_rules(session.baselines.session_rules(),
                                                         marker_rules))
        except (LoadTestSpecError, SLOError, PolicyError) as exc:
            raise pytest.UsageError(f"aiperf.run: {exc}") from None
        if not any(not o.relative for o in objectives):
            # like a marker's run: never passes while checking nothing
            objectives = [*implicit_objectives(config.failed_request_threshold), *objectives]
        from pytest_aiperf.planner import plan

        spec = LoadTestSpec(values, objectives, test_timeout, policy,
                            plan(objectives, config, policy), tuple(rules))
        for text in spec.plan:
            warnings.warn(pytest.PytestWarning(f"aiperf.run: {text}"), stacklevel=2)
        result = session.run(item, spec)
        prefix = "aiperf" if len(session.item_records(item.nodeid)) == 1 else (
            f"aiperf.run{len(session.item_records(item.nodeid))}")
        record_properties(item, result, prefix)
        return result

    def capacity(self, over: str = "concurrency", slo: dict[str, Any] | None = None, *,
                 min: float = 1, max: float = 512, tolerance: float = 0.1,
                 max_requests: int | None = None, max_seconds: float | None = None,
                 max_probes: int | None = 20, inconclusive: str = "fail",
                 **profile: Any) -> CapacityResult:
        """Search the largest ``over`` (concurrency or request_rate) in [min, max] at which
        every objective of ``slo`` holds: double from ``min`` until a probe fails, then
        bisect to ``tolerance``; each probe decided with confidence (INCONCLUSIVE ones
        extended, then counted as ``inconclusive``). Budgets: ``max_requests``,
        ``max_seconds``, ``max_probes``. The other keys are the profile (marker keys).
        Returns the result (``max_passing``, ``min_failing``, ``probes``); the search is a
        row of the session's summary, and ``capacity.json`` goes to the artifacts. It
        fails nothing by itself: assert on what it found."""
        from pytest_aiperf.capacity import search

        item = self._request.node
        session = _session(self._request.config)
        policy_keys = pop_policy(profile)
        try:
            result = search(session, item.nodeid, item.path.parent, over, slo, low=min,
                            high=max, tolerance=tolerance, max_requests=max_requests,
                            max_seconds=max_seconds, max_probes=max_probes,
                            inconclusive=inconclusive, policy_keys=policy_keys,
                            profile=profile)
        except (LoadTestSpecError, SLOError, PolicyError, ValueError) as exc:
            raise pytest.UsageError(f"aiperf.capacity: {exc}") from None
        record = LoadTestRecord(item.nodeid, f"capacity search over {over}",
                                run=len(session.item_records(item.nodeid)) + 1,
                                sent=result.requests, outcome="ERROR",
                                capacity={"search": result.headline(), **result.to_dict()})
        if result.error:
            record.warnings.append(f"capacity search: {result.error.splitlines()[0]}")
        record.warnings.append(result.headline())
        session.records.append(record)
        item.add_report_section("call", "aiperf capacity search",
                                "\n".join([*result.table(), "", result.headline()]))
        return result

    def check(self, result: ProfileResult, slo: dict[str, str]) -> list[Verdict]:
        """Evaluate objectives; raise the same failure as the marker when one is breached.
        The verdicts join the run's row, so a breach fails the test even if caught."""
        try:
            objectives = parse_objectives(slo)
        except SLOError as exc:
            raise pytest.UsageError(str(exc)) from None
        if any(o.relative for o in objectives):
            raise pytest.UsageError("aiperf.check: a relative objective (baseline ...) is "
                                    "judged against the stored baseline when the run is "
                                    "made: put it in the marker's or aiperf.run's slo")
        session = _session(self._request.config)
        policy = session.settings.policy
        verdicts = evaluate(objectives, result, policy.confidence, policy.steady_state)
        nodeid = self._request.node.nodeid
        records = session.item_records(nodeid)
        record = next((r for r in records if r.result is result), None)
        if record is None:  # a result from elsewhere: it still counts for this test
            record = LoadTestRecord(nodeid, "(checked result)", run=len(records) + 1,
                                    result=result, outcome="ERROR",
                                    sent=result.request_count + result.error_count)
            session.records.append(record)
        record.verdicts = [*record.verdicts, *verdicts]
        if any(v.failed for v in verdicts):
            raise SLOBreach(verdicts)
        return verdicts


@pytest.fixture
def aiperf(request: pytest.FixtureRequest) -> AIPerfHelper:
    """Run profiles from a test: ``aiperf.run(concurrency=4, request_count=50)`` and
    ``aiperf.check(result, {"request_latency.p99": "< 500 ms"})``."""
    _skip_if_disabled(request.config)
    return AIPerfHelper(request)


class MockServerFactory:
    """Starts mock servers, each in its own process (so its timing does not wait on the
    test session's work); they stop when the test ends."""

    def __init__(self) -> None:
        self.servers: list[MockServerProcess] = []

    def __call__(self, responders: list[Any] | None = None, **behaviour: Any) -> str:
        """Start a mock endpoint (``MockServerConfig`` keys: ttft_ms, itl_ms, tokens,
        error_rate, fault, ...; ``responders`` for other protocols, instances of classes
        defined at the top level of an importable module) and return its URL."""
        from aiperf.mock_server import MockServerProcess

        server = MockServerProcess(responders=responders, **behaviour)
        self.servers.append(server)
        return server.start()

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
