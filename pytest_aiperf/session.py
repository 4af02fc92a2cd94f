"""Session state: the lazily started mesh and mock server, and the record of every load
test run. Kept in ``config.stash`` by ``pytest_configure`` and shut down at unconfigure.

Every run is accounted for before its objectives are looked at: a run that broke the
credit invariant (a request without exactly one record), or in which no request
completed, raises an ``AIPerfError`` naming the counts, and its test errors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.baseline import Baselines, BaselineState, ComparisonRow, relative_judge
from pytest_aiperf.deadline import (
    LoadTestTimeout,
    alarm,
    backstop,
    bounded_profile,
    default_test_timeout,
)
from pytest_aiperf.options import Settings
from pytest_aiperf.policy import VerdictPolicy
from pytest_aiperf.profile import LoadTestSpec
from pytest_aiperf.runlock import exclusive_run, lock_path
from pytest_aiperf.slo import Verdict

if TYPE_CHECKING:
    from aiperf.baselines.storage import StoredRun
    from aiperf.common.config import UserConfig
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerProcess
    from aiperf.results import ProfileResult

# What the built-in mock serves when no --aiperf-url is given: small latencies, exact so
# that what a test measures through it is known (TTFT 10 ms, ITL 2 ms, 32 tokens).
DEFAULT_MOCK = {"ttft_ms": 10, "itl_ms": 2, "tokens": 32}
MESH_LOG_LEVELS = ("debug", "info", "warning", "error")
KEY_METRICS = ("request_throughput", "time_to_first_token.p99", "request_latency.p99",
               "request_error_rate")


@dataclass
class LoadTestRecord:
    """One run of a load test as the reports see it (a test that runs twice has two)."""

    nodeid: str
    profile: str
    run: int = 1  # the how-manieth run of this test
    result: ProfileResult | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    outcome: str = "ERROR"  # PASS, FAIL, ERROR, SKIP, XFAIL, XPASS: the test's outcome
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    artifacts: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    sent: int = 0  # requests sent: successes and errors
    invalid: str | None = None  # why the client could not deliver the profile
    looks: int = 1  # runs pooled into this record's verdicts (``extend``)
    validity: dict[str, Any] | None = None
    policy: VerdictPolicy | None = field(default=None, repr=False)  # how it was judged
    confidence: float | None = None  # of each look (alpha shared by looks and repeats)
    baseline: BaselineState | None = None  # what it was compared with, or why not
    comparisons: list[ComparisonRow] = field(default_factory=list)  # vs the baseline
    saved: str | None = None  # where its result was stored (--aiperf-save / autosave)
    # A capacity claim's verdict (on the claimed run's record) or its headroom step's, or
    # an ``aiperf.capacity`` search's result: pytest_aiperf.capacity
    capacity: dict[str, Any] | None = None

    @property
    def test_id(self) -> str:
        """Its key in the baseline storage: the node id, and which run after the first."""
        return self.nodeid if self.run == 1 else f"{self.nodeid} (run {self.run})"

    @property
    def label(self) -> str:
        """The test's name without its file, and which run when it ran more than once."""
        name = self.nodeid.split("::", 1)[-1]
        return name if self.run == 1 else f"{name} (run {self.run})"

    def key_metrics(self) -> dict[str, float]:
        if self.metrics or self.result is None:
            return self.metrics
        for name in KEY_METRICS:
            try:
                self.metrics[name] = self.result.metric(name)
            except KeyError:
                continue
        return self.metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid, "run": self.run, "profile": self.profile,
            "outcome": self.outcome, "error": self.error, "warnings": self.warnings,
            "requests_sent": self.sent, "metrics": self.key_metrics(),
            "objectives": [v.to_dict() for v in self.verdicts],
            "artifacts": str(self.artifacts) if self.artifacts else None,
            "invalid": self.invalid, "looks": self.looks, "validity": self.validity,
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "comparisons": [c.to_dict() for c in self.comparisons], "saved": self.saved,
            "capacity": self.capacity,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadTestRecord:
        """A record sent by an xdist worker (no ProfileResult: the numbers it reported)."""
        verdicts = [Verdict.from_dict(v) for v in data.get("objectives", [])]
        artifacts = data.get("artifacts")
        return cls(nodeid=data["nodeid"], profile=data["profile"], run=data.get("run", 1),
                   verdicts=verdicts, outcome=data["outcome"], error=data.get("error"),
                   warnings=list(data.get("warnings", [])),
                   artifacts=Path(artifacts) if artifacts else None,
                   metrics=dict(data.get("metrics", {})), sent=data.get("requests_sent", 0),
                   invalid=data.get("invalid"), looks=data.get("looks", 1),
                   validity=data.get("validity"),
                   baseline=BaselineState.from_dict(data["baseline"])
                   if data.get("baseline") else None,
                   comparisons=[ComparisonRow.from_dict(c)
                                for c in data.get("comparisons", [])],
                   saved=data.get("saved"), capacity=data.get("capacity"))


def safe_dirname(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


class AIPerfSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.records: list[LoadTestRecord] = []
        # Raw secret strings of this session, scrubbed from every report.
        self.secrets: set[str] = set()
        # (url, model) pairs whose model answered once this session: a wait_for_model_timeout
        # is paid by the first load test against a server, not by every one.
        self._models_ready: set[tuple[str, str]] = set()
        if settings.api_key is not None:
            self.secrets.add(settings.api_key.get_secret_value())
        self._mesh: Mesh | None = None
        self._mock: MockServerProcess | None = None
        workerinput = getattr(config, "workerinput", None)
        self._lock = lock_path(workerinput["testrunuid"]) if workerinput else None
        self.stale_files: set[Path] = set()  # the controller's: workers' lock files
        self.baselines = Baselines(settings.baseline)

    def item_records(self, nodeid: str) -> list[LoadTestRecord]:
        return [r for r in self.records if r.nodeid == nodeid]

    # -- shared infrastructure, started on first use ----------------------------------------

    def _new_mesh(self) -> Mesh:
        from aiperf.mesh import Mesh

        overrides: dict[str, Any] = {}
        if self.settings.workers:
            overrides["workers"] = self.settings.workers
        if self.settings.ray_address:
            overrides.update(backend="ray", ray_address=self.settings.ray_address)
        # The mesh's log lines reach pytest's log capture (logger aiperf.mesh) at the level
        # pytest is asked for (--log-level / log_level), so they can be seen with a test.
        level = self.config.getoption("log_level", None) or self.config.getini("log_level")
        if isinstance(level, str) and level.lower() in MESH_LOG_LEVELS:
            overrides["log_level"] = level.lower()
        return Mesh(**overrides)

    def launch_mesh(self) -> None:
        """Boot the mesh in the background (once load tests are known to be collected), so
        its start-up overlaps with the rest of the session's preparations."""

        if self._mesh is None:
            self._mesh = self._new_mesh().launch()

    def mesh(self) -> Mesh:
        if self._mesh is not None and self._mesh.running:
            return self._mesh.wait_ready()
        if self._mesh is not None:
            self._mesh.shutdown()
        self._mesh = self._new_mesh().start()
        return self._mesh

    def launch_mock(self) -> None:
        """Start the built-in mock server's process without waiting for it."""
        if self._mock is None and not self.settings.url:
            from aiperf.mock_server import MockServerProcess

            self._mock = MockServerProcess(**DEFAULT_MOCK).launch()  # type: ignore[arg-type]

    def default_url(self) -> str:
        if self.settings.url:
            return self.settings.url
        self.launch_mock()
        assert self._mock is not None
        return self._mock.wait_url()

    def shutdown(self) -> None:
        for path in self.stale_files:
            path.unlink(missing_ok=True)
        self.stale_files.clear()
        if self._mesh is not None:
            self._mesh.shutdown()
            self._mesh = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    # -- running ---------------------------------------------------------------------------

    def run(self, item: pytest.Item, spec: LoadTestSpec) -> ProfileResult:
        """Run the test's profile (``repeat`` times; ``extend`` adds chunks to each run until
        its objectives are decided) and judge it. Returns the first run's result."""
        profile = dict(spec.profile)
        item.config.hook.pytest_aiperf_profile(item=item, profile=profile)
        api_key = profile.get("api_key")
        if api_key is not None:
            from pydantic import SecretStr

            if not isinstance(api_key, SecretStr):
                profile["api_key"] = api_key = SecretStr(str(api_key))
            self.secrets.add(api_key.get_secret_value())
        policy = spec.policy
        records: list[LoadTestRecord] = []
        results: list[ProfileResult] = []
        try:
            for _ in range(policy.repeat):
                record = LoadTestRecord(item.nodeid, LoadTestSpec(profile).short(),
                                        run=len(self.item_records(item.nodeid)) + 1,
                                        policy=policy)
                self.records.append(record)
                records.append(record)
                results.append(self._run_judged(item, spec, profile, record))
        except InvalidRunError:
            if spec.capacity is not None:  # the claim's line says INVALID, then the error
                self._claim_verdict(item, spec, profile, records)
            raise
        if policy.repeat > 1:
            from pytest_aiperf.judge import across_runs

            # The across-runs look is one of the family its runs' looks belong to.
            confidence = records[-1].confidence or policy.look_confidence(policy.repeat + 1)
            # Relative objectives are judged against the baseline in each run only.
            records[-1].verdicts = [*records[-1].verdicts, *(
                across_runs(o, [next(v for v in r.verdicts if v.objective.key == o.key)
                                for r in records], confidence)
                for o in spec.objectives if not o.relative)]
            results[-1].slo = records[-1].verdicts
        if spec.capacity is not None:
            self._claim_verdict(item, spec, profile, records)
        return results[0]

    def _claim_verdict(self, item: pytest.Item, spec: LoadTestSpec, profile: dict[str, Any],
                       records: list[LoadTestRecord]) -> None:
        """A capacity claim decided on the claimed point's run (``records``), with the
        headroom step above when asked (a run that never gates the test). An INVALID run
        at the claimed point raises InvalidRunError, whatever ``aiperf_validity`` says
        short of ``off``: a claim is never passed on a load the client did not deliver."""
        from pytest_aiperf.capacity import claim_line, probe_summary

        claim = spec.capacity
        assert claim is not None
        first = records[0]
        # any run at the claimed point (repeat) that the client did not deliver
        invalid = next((reason for r in records
                        if (reason := _invalid_reason(r, spec.policy.validity))), None)
        verdicts = records[-1].verdicts  # with repeat: the last has the across-runs rows
        if invalid:
            status, summary = probe_summary(claim.point, verdicts, claim.over, "INVALID",
                                            f"the client could not deliver it: {invalid}")
        elif first.error and not verdicts:
            status, summary = probe_summary(claim.point, verdicts, claim.over, "ERROR",
                                            first.error)
        else:
            status, summary = probe_summary(claim.point, verdicts, claim.over)
        step = None
        above = claim.headroom_point()
        if above is not None and not invalid and status == "PASS":
            step = self._headroom(item, spec, profile, above)
        line = claim_line(claim, status, summary, None if step is None else (above, step[1]))
        first.capacity = {"claim": claim.text, "over": claim.over, "point": claim.point,
                          "status": status, "line": line, "headroom": step and step[0]}
        item.add_report_section("call", "aiperf capacity", line)
        if invalid and not any(r.invalid for r in records):
            first.invalid = invalid
            raise InvalidRunError(f"INVALID: {line}\na capacity claim is never passed on a "
                                  "load the client could not deliver (aiperf_validity=off "
                                  "to judge anyway)")

    def _headroom(self, item: pytest.Item, spec: LoadTestSpec, profile: dict[str, Any],
                  point: float) -> tuple[dict[str, Any], str]:
        """The step above the claim, judged like it; its verdicts are kept on the record's
        ``capacity`` entry, not as the record's own, so that its breach (the expected
        answer when the claim is tight) does not fail the test."""
        from pytest_aiperf.capacity import probe_summary

        claim = spec.capacity
        assert claim is not None
        step_profile = {**profile, claim.over: claim.value(point)}
        record = LoadTestRecord(item.nodeid, LoadTestSpec(step_profile).short() + " headroom",
                                run=len(self.item_records(item.nodeid)) + 1,
                                policy=spec.policy)
        self.records.append(record)
        cause = None
        try:
            self._run_judged(item, spec, step_profile, record)
        except Exception as exc:  # the step above informs; it never errors the test
            cause = record.error or f"{type(exc).__name__}: {exc}"
        verdicts, record.verdicts = record.verdicts, []
        if record.invalid:
            status, summary = probe_summary(point, verdicts, claim.over, "INVALID",
                                            record.invalid)
        elif cause is not None:
            status, summary = probe_summary(point, verdicts, claim.over, "ERROR", cause)
        else:
            status, summary = probe_summary(point, verdicts, claim.over)
        entry = {"point": point, "status": status, "summary": summary,
                 "objectives": [v.to_dict() for v in verdicts]}
        record.capacity = {"claim": claim.text, "role": "headroom", **entry}
        record.error = None  # reported in the claim's line, not as this test's error
        record.invalid = None
        return entry, summary

    def _run_judged(self, item: pytest.Item, spec: LoadTestSpec, profile: dict[str, Any],
                    record: LoadTestRecord) -> ProfileResult:
        """One run judged; ``extend`` adds chunks (runs pooled into this record) while an
        objective is INCONCLUSIVE and the budget allows another look."""
        from pytest_aiperf.judge import extend_until_decided, judge_runs

        policy = spec.policy
        result, config = self._execute(item, spec, profile, record)
        looks = policy.looks(config)
        # Every look of every repeat (and the across-runs look) shares alpha (Bonferroni).
        family = looks * policy.repeat + (1 if policy.repeat > 1 else 0)
        confidence = record.confidence = policy.look_confidence(family)
        try:
            before = self._baseline(spec, record, config)
            relative = None
            if before is not None and record.baseline is not None:
                relative = relative_judge(before, record.baseline.source or "stored run")(
                    confidence)
            verdicts, chunks = extend_until_decided(
                result,
                lambda: self._execute(item, spec, profile, record, chunk=record.looks + 1)[0],
                lambda runs: judge_runs(spec.objectives, runs, config, policy.steady_state,
                                        confidence, relative),
                looks)
            if before is not None:
                from pytest_aiperf.baseline import ResultValues

                record.comparisons = self.baselines.compare(
                    before, ResultValues(chunks), spec.rules, confidence)
        except Exception as exc:
            record.error = record.error or self.scrubbed(f"{type(exc).__name__}: {exc}")
            raise
        record.looks = len(chunks)
        if len(chunks) > 1:
            record.warnings.append(f"extend: {len(chunks)} runs of the profile pooled "
                                   f"({record.sent} requests), each look at confidence "
                                   f"{confidence:.4g}")
        result.slo = record.verdicts = verdicts
        return result

    def _baseline(self, spec: LoadTestSpec, record: LoadTestRecord,
                  config: UserConfig) -> StoredRun | None:
        """The stored run this record compares with (None: it does not compare, or none
        fits); what was found, and why nothing was, goes to the record's report."""
        if not self.baselines.wanted(spec.rules, spec.objectives):
            return None
        before, record.baseline = self.baselines.lookup(record.test_id, config)
        state = record.baseline
        if state.status == "profile changed":
            record.warnings.append(state.line())
        if state.machine:
            record.warnings.append(f"the baseline {state.source} ran on another machine: "
                                   f"{'; '.join(state.machine)}")
        relative = [o.key for o in spec.objectives if o.relative]
        if before is None and (relative or spec.rules):
            gated = [*relative, *(r.text for r in spec.rules)]
            consequence = ("the test fails (aiperf_require_baseline)"
                           if self.baselines.settings.require_baseline else "skipped")
            record.warnings.append(f"{', '.join(gated)}: {consequence}: {state.line()}")
        return before

    def store(self, item: pytest.Item, passed: bool, error: BaseException | None) -> None:
        """``--aiperf-save`` / ``--aiperf-autosave``: each run of the test that completed
        and was judged is stored; a run that errored, was INVALID, or whose test failed
        for another reason than its verdicts is not (and the record says so)."""
        if self.baselines.settings.save is None:
            return
        from pytest_aiperf.baseline import BaselineRequired
        from pytest_aiperf.fixtures import SLOBreach

        judged = passed or isinstance(error, SLOBreach | BaselineRequired)
        for record in self.item_records(item.nodeid):
            if record.saved is not None:
                continue
            reason = None
            if record.result is None or record.error:
                reason = "the run did not complete"
            elif record.invalid:
                reason = "the run was INVALID"
            elif not judged:
                reason = (f"the test failed outside its verdicts "
                          f"({type(error).__name__})" if error else "the test did not pass")
            if reason is not None:
                record.warnings.append(f"not stored as a baseline: {reason}")
                continue
            try:
                path = self.baselines.save(record.test_id, record.result)  # type: ignore[arg-type]
            except (OSError, ValueError) as exc:  # StorageError is a ValueError
                record.warnings.append(f"not stored as a baseline: {exc}")
                continue
            record.saved = str(path)

    def _execute(self, item: pytest.Item, spec: LoadTestSpec, profile: dict[str, Any],
                 record: LoadTestRecord, chunk: int = 1) -> tuple[ProfileResult, UserConfig]:
        """One run of the profile on the mesh, accounted for and checked for validity."""
        record.looks = chunk
        from aiperf.common.config import UserConfig

        try:
            if "url" not in profile:  # (not setdefault: that would start the mock anyway)
                profile["url"] = self.default_url()
            config = UserConfig.build(where=f"aiperf profile of {item.nodeid}", **profile)
            # The URL's password and credential headers are secrets as much as the key.
            from aiperf.transports.redact import secret_values

            self.secrets.update(secret_values(config.headers, config.url))
            deadline = spec.test_timeout or self.settings.test_timeout or (
                default_test_timeout(config))
            bounds = bounded_profile(config, profile, deadline)
            cut_timeout = bounds.get("request_timeout_seconds", math.inf)
            if cut_timeout >= config.request_timeout_seconds:
                cut_timeout = math.inf
            if bounds:
                config = UserConfig.build(where=f"aiperf profile of {item.nodeid}",
                                          **{**profile, **bounds})
            message = (f"load test ran past its aiperf_test_timeout of {deadline:g} s; the "
                       "run was stopped")
            with exclusive_run(self._lock, backstop(deadline), item.nodeid), \
                    alarm(backstop(deadline), message):
                from pytest_aiperf.progress import live_progress

                self._wait_for_model(config)
                result = self.mesh().run(config, progress=live_progress(item, config))
            if chunk == 1:
                record.result = result
            record.sent += result.request_count + result.error_count
            record.warnings.extend(w for w in result.warnings if w not in record.warnings)
            note = None
            if result.timeout_count and math.isfinite(cut_timeout):
                note = (f"the request timeout was cut to {cut_timeout:g} s so that the run "
                        f"fits aiperf_test_timeout={deadline:g} s; a slower request is an "
                        "error: for a longer run raise aiperf_test_timeout (or set "
                        "request_timeout_seconds)")
                if note not in record.warnings:
                    record.warnings.append(note)
            if chunk == 1:
                record.key_metrics()
            if self.settings.artifacts is not None:
                from aiperf.exporters.base import export_files

                name = safe_dirname(item.nodeid) + ("" if record.run == 1 else
                                                    f"_run{record.run}")
                name += "" if chunk == 1 else f"_chunk{chunk}"
                path = self.settings.artifacts / name
                record.artifacts = record.artifacts or path
                export_files(result, path)
            check_accounting(config, result, note)
            check_validity(result, config, spec.policy.validity, record)
            if chunk == 1:
                item.config.hook.pytest_aiperf_result(item=item, result=result)
        except LoadTestTimeout as exc:
            record.error = str(exc)
            from aiperf.errors import RunError

            raise RunError(str(exc)) from None
        except BaseException as exc:
            # The report of the test is scrubbed by pytest_runtest_makereport; this copy
            # goes to the summary and summary.json, so it is scrubbed here.
            record.error = self.scrubbed(f"{type(exc).__name__}: {exc}")
            raise
        return result, config

    def _wait_for_model(self, config: UserConfig) -> None:
        """With ``wait_for_model_timeout``, block until the model answers (a server still
        loading its weights); a model that never does is the test's error, naming the URL."""
        served = (config.url, config.model)
        if config.wait_for_model_timeout <= 0 or served in self._models_ready:
            return
        from aiperf.readiness import wait_for_model

        wait_for_model(config)
        self._models_ready.add(served)

    def scrubbed(self, text: str) -> str:
        if not self.secrets:
            return text
        from aiperf.transports.redact import ordered, scrub

        return scrub(text, ordered(self.secrets))


def _invalid_reason(record: LoadTestRecord, mode: str) -> str | None:
    """Why the record's run was INVALID (also under ``aiperf_validity = warn``, which
    judges it anyway), or None; ``off`` never says."""
    if record.invalid:
        return record.invalid
    validity = record.validity
    if mode == "off" or validity is None or validity.get("valid", True):
        return None
    return "; ".join(s.get("detail", "") for s in validity.get("signals", [])
                     if not s.get("ok", True)) or "the run was INVALID"


def check_accounting(config: UserConfig, result: ProfileResult,
                     note: str | None = None) -> None:
    """Raise when the run cannot be judged: a request unaccounted for, or none completed
    (``note``: what the user should know about why, if anything)."""
    from aiperf.errors import EndpointError, RunError

    invariant = result.invariant
    if invariant and not invariant.get("ok", True):
        raise RunError(
            f"credit invariant broken: {invariant.get('credits_issued')} requests issued, "
            f"{invariant.get('records_received')} records received; missing credit ids "
            f"{invariant.get('missing_credit_ids', [])[:10]}, duplicated "
            f"{invariant.get('duplicate_credit_ids', [])[:10]}, unexpected "
            f"{invariant.get('unexpected_credit_ids', [])[:10]}; objectives were not "
            "evaluated")
    if result.request_count == 0:
        message = unusable_message(config, result)
        raise EndpointError(f"{message}\n{note}" if note else message)


class InvalidRunError(Exception):
    """The client could not deliver the profile (``result.validity``): the test is an
    error, never a PASS or FAIL, because its numbers describe the client, not the server."""


def check_validity(result: ProfileResult, config: UserConfig, mode: str,
                   record: LoadTestRecord) -> None:
    """``aiperf_validity``: error raises InvalidRunError, warn adds a warning, off ignores."""
    if mode == "off":
        return
    validity = getattr(result, "validity", None)
    if validity is None:
        return
    record.validity = validity.to_dict()
    if validity.valid:
        return
    reason = validity.reason()
    if mode == "warn":
        record.warnings.append(f"INVALID run (aiperf_validity=warn): {reason}")
        return
    record.invalid = reason
    raise InvalidRunError(f"INVALID: the client could not deliver the profile; objectives "
                          f"were not judged (aiperf_validity=error; 'warn' or 'off' to judge "
                          f"anyway)\n{reason}")


def unusable_message(config: UserConfig, result: ProfileResult) -> str:
    from aiperf.common.config import mask_url

    url = mask_url(config.url)
    errors = result.error_count
    if errors:
        head = (f"every request to {url} failed ({errors} of {errors}); objectives "
                "were not evaluated")
    else:
        cancelled = " (the run was cancelled)" if result.was_cancelled else ""
        head = (f"no request to {url} completed{cancelled}; objectives were not "
                "evaluated")
    return "\n".join([head, *result.error_lines(limit=5, width=200)])
