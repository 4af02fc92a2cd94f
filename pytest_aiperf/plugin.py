"""pytest-aiperf: LLM-serving performance as pytest tests.

    @pytest.mark.aiperf(concurrency=8, request_count=200,
                        slo={"time_to_first_token.p99": "< 250 ms"})
    def test_chat_latency(aiperf_result): ...

A marked test runs its load profile on a service mesh shared by the whole session (started
on first use), then every objective is checked; a breach fails the test with a table of
all of them. An endpoint that cannot be used at all is a test *error*. Hooks come first in
this module; the work is in the sibling modules (options, profile, slo, session, report).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import hooks as hookspecs
from pytest_aiperf.baseline import (
    BaselineRequired,
    comparison_lines,
    gate_failures,
    missing_baselines,
)
from pytest_aiperf.fixtures import (
    SESSION_KEY,
    SPEC_KEY,
    SLOBreach,
    aiperf,
    aiperf_mesh,
    aiperf_mock_server,
    aiperf_result,
)
from pytest_aiperf.histogram import record_line
from pytest_aiperf.options import ARTIFACTS_TMP_KEY, add_options, resolve
from pytest_aiperf.profile import (
    MARKER,
    LoadTestSpec,
    LoadTestSpecError,
    build_spec,
    load_slo_file,
    pattern_matches,
)
from pytest_aiperf.progress import clear_progress
from pytest_aiperf.report import BuiltinReporters, render_terminal
from pytest_aiperf.runlock import lock_path
from pytest_aiperf.secrets import scrub_report
from pytest_aiperf.session import AIPerfSession, InvalidRunError, LoadTestRecord
from pytest_aiperf.slo import Verdict, format_table

__all__ = ["aiperf", "aiperf_mesh", "aiperf_mock_server", "aiperf_result"]

MARKER_HELP = (
    f"{MARKER}(**profile, slo={{...}}): run a load profile for this test and check its "
    "objectives, e.g. @pytest.mark.aiperf(concurrency=8, request_count=200, "
    "slo={'time_to_first_token.p99': '< 250 ms'})"
)
_SLO_FILE_KEY = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()
_COLLECTED_KEY = pytest.StashKey[list[str]]()
_WORKER_RECORDS = "aiperf_records"  # key of config.workeroutput (pytest-xdist)
# A call report's histogram lines (a report attribute, so that it reaches an xdist controller).
_HISTOGRAMS = "aiperf_histograms"
_HTML_DONE = pytest.StashKey[bool]()  # the test's pytest-html extras are attached
# pytest-asyncio (a dependency) warns at start-up when its loop scope is unset, even in
# sessions that never use asyncio; the plugin sets no scope, so it silences that warning.
_ASYNCIO_SCOPE_WARNING = r'The configuration option "asyncio_default_fixture_loop_scope"'


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    warnings.filterwarnings("ignore", message=_ASYNCIO_SCOPE_WARNING,
                            category=pytest.PytestDeprecationWarning)
    config.addinivalue_line("markers", MARKER_HELP)
    settings = resolve(config)
    config.stash[SESSION_KEY] = AIPerfSession(config, settings)
    config.stash[_SLO_FILE_KEY] = load_slo_file(settings.slo_file) if settings.slo_file else []
    if not _is_xdist_worker(config):  # the controller reports for every worker
        config.pluginmanager.register(BuiltinReporters(settings.artifacts, settings.html),
                                      "aiperf-reporters")
        if config.get_verbosity() > 0:
            config.pluginmanager.register(HistogramPrinter(config), "aiperf-histograms")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.shutdown()
        settings = session.settings
        if settings.artifacts_temporary and settings.artifacts is not None:
            shutil.rmtree(settings.artifacts, ignore_errors=True)
    for name in ("aiperf-reporters", "aiperf-histograms"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: a temporary artifacts dir (for the reports) is the
    controller's, shared with its workers, so that the reports find every test's."""
    settings = node.config.stash[SESSION_KEY].settings
    if settings.artifacts_temporary and settings.artifacts is not None:
        node.workerinput[ARTIFACTS_TMP_KEY] = str(settings.artifacts)


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash[SESSION_KEY].settings
    if settings.disable:
        return "aiperf: load tests disabled (--aiperf-disable)"
    target = settings.url or "built-in mock server"
    if "@" in target:  # a password in the URL's userinfo is not for the terminal
        from aiperf.common.config import mask_url

        target = mask_url(target)
    workers = settings.workers or "auto"
    where = f" on the Ray cluster at {settings.ray_address}" if settings.ray_address else ""
    return f"aiperf: target {target}, workers {workers}{where} (mesh starts on first use)"


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, Any, Any]:
    """Validate each marked test as it is collected: a bad key is a collection error."""
    made = yield
    items = made if isinstance(made, list) else [made]
    session: AIPerfSession = collector.config.stash[SESSION_KEY]
    base = session.settings.profile_base()
    slo_file = collector.config.stash[_SLO_FILE_KEY]
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        try:
            spec = build_spec(item, base, slo_file, session.settings.policy,
                              session.baselines.session_rules())
        except LoadTestSpecError as exc:
            raise collector.CollectError(
                f"{item.nodeid}: invalid @pytest.mark.aiperf: {exc}") from None
        if spec is not None:
            if not session.settings.disable and any(o.server for o in spec.objectives):
                _check_server_names(collector, item, spec)
            item.stash[SPEC_KEY] = spec
    return made


def _check_server_names(collector: pytest.Collector, item: pytest.Function,
                        spec: LoadTestSpec) -> None:
    """Server objectives' metric names against the server's /metrics, scraped once: a name
    it lacks is a collection error (no load sent); an endpoint not reachable yet (a server
    still starting) a warning, and the run FAILs a name still missing then."""
    from pytest_aiperf.slo import SLOError, check_server_metric_names

    config = spec.user_config()
    if config.server_metrics is None or (not config.server_metrics
                                         and "url" not in spec.profile):
        return  # the built-in mock's own /metrics: not started yet at collection
    try:
        notes = check_server_metric_names(spec.objectives, config)
    except SLOError as exc:
        raise collector.CollectError(
            f"{item.nodeid}: invalid @pytest.mark.aiperf: {exc}") from None
    for note in notes:
        warnings.warn(pytest.PytestWarning(f"aiperf: {item.nodeid}: {note}"), stacklevel=1)


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect: those tests were collected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marked tests run their profile even when they do not ask for ``aiperf_result``."""
    config.stash[_COLLECTED_KEY] = [item.nodeid for item in items]
    for item in items:
        if SPEC_KEY in item.stash and "aiperf_result" not in getattr(item, "fixturenames", []):
            item.fixturenames.append("aiperf_result")  # type: ignore[attr-defined]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Load tests ahead: boot the mesh (and the mock server, unless every load test names
    its own url) now, while pytest gets on with other work."""
    state: AIPerfSession = session.config.stash[SESSION_KEY]
    specs = [item.stash[SPEC_KEY] for item in session.items if SPEC_KEY in item.stash]
    _warn_unmatched_slo_patterns(session)
    for item in session.items:  # the sample-size planner, for selected tests, before load
        for text in item.stash[SPEC_KEY].plan if SPEC_KEY in item.stash else ():
            warnings.warn(pytest.PytestWarning(f"aiperf: {item.nodeid}: {text}"),
                          stacklevel=1)
    if state.settings.disable or session.config.option.collectonly or not specs:
        return
    state.launch_mesh()
    if any("url" not in spec.profile for spec in specs):
        state.launch_mock()


def _warn_unmatched_slo_patterns(session: pytest.Session) -> None:
    slo_file = session.config.stash[_SLO_FILE_KEY]
    if not slo_file or _is_xdist_controller(session.config):
        return  # the controller collects no items; its workers warn
    collected = session.config.stash.get(_COLLECTED_KEY, [])
    for pattern, _ in slo_file:
        if not any(pattern_matches(nodeid, pattern) for nodeid in collected):
            warnings.warn(pytest.PytestWarning(
                f"aiperf: SLO file pattern {pattern!r} matches no collected test; its "
                "objectives are checked nowhere"), stacklevel=1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body, every run of the test is judged: each objective of each run,
    and those checked with ``aiperf.check``, even when the test caught the breach."""
    session: AIPerfSession = item.config.stash[SESSION_KEY]
    try:
        outcome = yield
    except BaseException:
        _add_sections(item, session.item_records(item.nodeid), tables=True)
        raise
    records = session.item_records(item.nodeid)
    breached = any(v.failed for r in records for v in r.verdicts)
    gates = gate_failures(records, session.baselines.settings.fail_on_improvement)
    # A breach's message has the tables (and the vs-baseline blocks).
    _add_sections(item, records, tables=not (breached or gates))
    if breached or gates:
        raise SLOBreach.of_records(records, gates=gates)
    missing = missing_baselines(records) if session.baselines.settings.require_baseline else []
    if missing:
        raise BaselineRequired(
            "no stored baseline to compare with (aiperf_require_baseline):\n"
            + "\n".join(f"{r.label}: {r.baseline.line()}" for r in missing  # type: ignore[union-attr]
                         ) + "\nstore one with --aiperf-save NAME or --aiperf-autosave")
    _apply_inconclusive_policy(item, session, records)
    return outcome


def _apply_inconclusive_policy(item: pytest.Item, session: AIPerfSession,
                               records: list[LoadTestRecord]) -> None:
    """``aiperf_inconclusive``: pass (a warning naming each undecided objective and the n
    that would decide it), fail, xfail; ``extend`` has already run its chunks, and what is
    still undecided falls to ``aiperf_inconclusive_final``."""
    undecided = [(r, inconclusive_line(r, v)) for r in records for v in r.verdicts
                 if v.status == "INCONCLUSIVE"]
    # A gate against the baseline that cannot tell follows the same policy ("extend" pools
    # chunks for objectives only, so such a gate goes straight to inconclusive_final).
    undecided += [(r, f"{c.rule} is INCONCLUSIVE vs baseline in {r.label}: {c.text}")
                  for r in records for c in r.comparisons
                  if c.gated and c.status == "INCONCLUSIVE"]
    if not undecided:
        return
    spec = item.stash.get(SPEC_KEY, None)
    default = spec.policy if spec is not None else session.settings.policy
    by_mode: dict[str, list[str]] = {}
    for record, line in undecided:  # each run as its own policy says (aiperf.run(...))
        policy = record.policy or default
        mode = (policy.inconclusive_final if policy.inconclusive == "extend"
                else policy.inconclusive)
        extended = " after extend, budget spent" if policy.inconclusive == "extend" else ""
        by_mode.setdefault(mode, []).append(
            f"{line} [aiperf_inconclusive={mode}{extended}]")
    for line in by_mode.get("pass", []):
        warnings.warn(pytest.PytestWarning(f"aiperf: {line}"), stacklevel=1)
    for mode in ("fail", "xfail"):
        lines = by_mode.get(mode, [])
        if not lines:
            continue
        text = f"{len(lines)} verdict(s) INCONCLUSIVE:\n" + "\n".join(lines)
        if mode == "xfail":
            pytest.xfail(text)
        for record in records:  # the breach text carries the tables
            record.warnings.append(f"INCONCLUSIVE: the test fails under "
                                   f"aiperf_inconclusive={mode}")
        gates = sum(1 for r in records for c in r.comparisons
                    if c.gated and c.status == "INCONCLUSIVE")
        heads = [f"{gates} gates INCONCLUSIVE vs baseline (the inconclusive policy fails the "
                 "test)"] if gates else []
        raise SLOBreach.of_records(records, inconclusive=True, details="\n".join(lines),
                                   gates=heads)


def inconclusive_line(record: LoadTestRecord, verdict: Verdict) -> str:
    needed = (f"about {verdict.needed} requests would decide it" if verdict.needed
              else "no request count known to decide it")
    return (f"{verdict.objective.key} {verdict.objective.text} is INCONCLUSIVE in "
            f"{record.label}: measured {verdict.measured_text}, bounds "
            f"{verdict.interval_text} at {verdict.confidence or 0:.3g} confidence, n="
            f"{verdict.count} ({verdict.window}); {needed}")


def _add_sections(item: pytest.Item, records: list[LoadTestRecord], tables: bool) -> None:
    for record in records:
        lines = []
        histogram = record_line(record)
        if histogram:
            lines.append(histogram)
        if record.verdicts and tables:
            lines.append(format_table(record.verdicts))
        if tables or not record.comparisons:
            lines.extend(comparison_lines(record.comparisons, record.baseline))
        lines.extend(f"warning: {w}" for w in record.warnings)
        if lines:
            item.add_report_section("call", f"aiperf {record.label}", "\n".join(lines))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    clear_progress(item)  # before pytest writes the outcome where the line was
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if report.failed and isinstance(error, SLOBreach | InvalidRunError | BaselineRequired):
        report.longrepr = f"aiperf: {error}"
    elif report.failed and _is_aiperf_error(error):
        # Our own errors say what happened; pytest's traceback through the plugin would not.
        report.longrepr = f"aiperf: {type(error).__name__}: {error}"
    session: AIPerfSession = item.config.stash[SESSION_KEY]
    scrub_report(report, session.secrets)
    for record in session.item_records(item.nodeid):
        _set_outcome(record, report)
    if report.when == "call":
        session.store(item, report.passed, error)
    records = session.item_records(item.nodeid)
    if records and (report.when == "call" or report.failed):
        _attach_pictures(item, report, records)
    return report


def _attach_pictures(item: pytest.Item, report: pytest.TestReport,
                     records: list[LoadTestRecord]) -> None:
    """The runs' histogram lines (printed with -v), and with pytest-html their plots."""
    if (report.when == "call" and item.config.get_verbosity() > 0
            and not hasattr(report, _HISTOGRAMS)):
        lines = [(line if len(records) == 1 else f"{r.label}: {line}")
                 for r in records if (line := record_line(r))]
        if lines:
            setattr(report, _HISTOGRAMS, lines)
    if item.config.getoption("htmlpath", None) and not item.stash.get(_HTML_DONE, False):
        from pytest_aiperf.html import pytest_html_extras

        scrub = item.config.stash[SESSION_KEY].scrubbed
        report.extras = [*getattr(report, "extras", []), *pytest_html_extras(records, scrub)]
        item.stash[_HTML_DONE] = True  # once per test, not again at teardown


class HistogramPrinter:
    """-v: each load test's latency histogram under its outcome, with its verdicts (on
    the xdist controller too: the lines travel in the report)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)  # after the terminal has written the outcome
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        lines = getattr(report, _HISTOGRAMS, None)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if not lines or reporter is None:
            return
        for line in lines:
            reporter.ensure_newline()
            reporter.write("    " + line)
            reporter.currentfspath = -2  # so pytest ends this line before its next
        reporter.flush()


def _set_outcome(record: LoadTestRecord, report: pytest.TestReport) -> None:
    """A row's verdict is its test's outcome (a row whose own run failed says ERROR, one
    the client could not deliver says INVALID)."""
    if record.invalid and report.failed:
        record.outcome = "INVALID"
        return
    if report.when == "setup":
        if report.failed:
            record.outcome = "ERROR"
            record.error = record.error or _first_line(report)
        elif report.skipped:
            record.outcome = "SKIP"
    elif report.when == "call":
        xfail = hasattr(report, "wasxfail")
        if xfail:
            record.outcome = "XFAIL" if report.skipped else "XPASS"
        elif report.passed:
            record.outcome = "PASS"
        elif report.skipped:
            record.outcome = "SKIP"
        else:
            record.outcome = "ERROR" if record.error else "FAIL"
    elif report.failed:  # teardown
        record.outcome = "ERROR"
        record.error = record.error or _first_line(report)


def _first_line(report: pytest.TestReport) -> str:
    text = str(report.longrepr or "failed").strip()
    return text.splitlines()[-1] if text else "failed"


def _is_aiperf_error(error: BaseException | None) -> bool:
    if error is None or not type(error).__module__.startswith("aiperf"):
        return False  # checked first, so other tests' failures never import the engine
    from aiperf.errors import AIPerfError

    return isinstance(error, AIPerfError)


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "dist", "no") != "no"
                and getattr(config.option, "numprocesses", None)) and not _is_xdist_worker(
        config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: take in a finished worker's load-test records."""
    session: AIPerfSession = node.config.stash[SESSION_KEY]
    testrunuid = getattr(node, "workerinput", {}).get("testrunuid")
    if testrunuid:
        session.stale_files.add(lock_path(testrunuid))  # removed once every worker is down
    raw = getattr(node, "workeroutput", {}).get(_WORKER_RECORDS)
    if raw:
        session.records.extend(LoadTestRecord.from_dict(d) for d in json.loads(raw))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session: AIPerfSession = config.stash[SESSION_KEY]
    records = list(session.records)
    if _is_xdist_worker(config):
        return
    reporters = config.pluginmanager.get_plugin("aiperf-reporters")
    html_lines = reporters.html_lines() if isinstance(reporters, BuiltinReporters) else []
    if not records:
        for line in html_lines:
            terminalreporter.write_line(f"aiperf {line}")
        return
    terminalreporter.write_sep("=", "aiperf load tests")
    for line in render_terminal(records, width=100):
        terminalreporter.write_line(line)
    for line in html_lines:
        terminalreporter.write_line(line, red=line.startswith("html report ERROR"))
    if session.settings.artifacts is not None and not session.settings.artifacts_temporary:
        path = session.settings.artifacts
        try:
            path = path.resolve().relative_to(Path.cwd())
        except ValueError:
            path = path.resolve()
        terminalreporter.write_line(f"artifacts: {path}/ (summary.json)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    state: AIPerfSession | None = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    if _is_xdist_worker(session.config):
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[_WORKER_RECORDS] = json.dumps([r.to_dict() for r in state.records])
    else:
        session.config.hook.pytest_aiperf_report(session=session, results=list(state.records))
    state.shutdown()
