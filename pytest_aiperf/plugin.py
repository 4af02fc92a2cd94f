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

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import hooks as hookspecs
from pytest_aiperf.fixtures import (
    RESULT_KEY,
    SESSION_KEY,
    SPEC_KEY,
    SLOBreach,
    aiperf,
    aiperf_mesh,
    aiperf_mock_server,
    aiperf_result,
)
from pytest_aiperf.options import add_options, resolve
from pytest_aiperf.profile import MARKER, LoadTestSpecError, build_spec, load_slo_file
from pytest_aiperf.report import BuiltinReporters, render_terminal
from pytest_aiperf.session import AIPerfSession
from pytest_aiperf.slo import format_table

__all__ = ["aiperf", "aiperf_mesh", "aiperf_mock_server", "aiperf_result"]

MARKER_HELP = (
    f"{MARKER}(**profile, slo={{...}}): run a load profile for this test and check its "
    "objectives, e.g. @pytest.mark.aiperf(concurrency=8, request_count=200, "
    "slo={'time_to_first_token.p99': '< 250 ms'})"
)
_SLO_FILE_KEY = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    settings = resolve(config)
    config.stash[SESSION_KEY] = AIPerfSession(config, settings)
    config.stash[_SLO_FILE_KEY] = load_slo_file(settings.slo_file) if settings.slo_file else []
    config.pluginmanager.register(BuiltinReporters(settings.artifacts), "aiperf-reporters")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.shutdown()
    reporters = config.pluginmanager.get_plugin("aiperf-reporters")
    if reporters is not None:
        config.pluginmanager.unregister(reporters)


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash[SESSION_KEY].settings
    if settings.disable:
        return "aiperf: load tests disabled (--aiperf-disable)"
    target = settings.url or "built-in mock server"
    workers = settings.workers or "auto"
    return f"aiperf: target {target}, workers {workers} (mesh starts on first use)"


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
            spec = build_spec(item, base, slo_file)
        except LoadTestSpecError as exc:
            raise collector.CollectError(
                f"{item.nodeid}: invalid @pytest.mark.aiperf: {exc}") from None
        if spec is not None:
            item.stash[SPEC_KEY] = spec
    return made


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marked tests run their profile even when they do not ask for ``aiperf_result``."""
    for item in items:
        if SPEC_KEY in item.stash and "aiperf_result" not in getattr(item, "fixturenames", []):
            item.fixturenames.append("aiperf_result")  # type: ignore[attr-defined]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Load tests ahead: boot the mesh now, while pytest gets on with other work."""
    state: AIPerfSession = session.config.stash[SESSION_KEY]
    if (state.settings.disable or session.config.option.collectonly
            or not any(SPEC_KEY in item.stash for item in session.items)):
        return
    state.launch_mesh()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body, check the objectives (all of them, every time)."""
    try:
        outcome = yield
    except BaseException:
        result = item.stash.get(RESULT_KEY, None)
        if result is not None and result.slo:
            item.add_report_section("call", "aiperf objectives", format_table(result.slo))
        raise
    result = item.stash.get(RESULT_KEY, None)
    if result is not None and result.slo and not all(v.passed for v in result.slo):
        raise SLOBreach(result.slo)
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, SLOBreach) and report.failed:
        report.longrepr = f"aiperf: {error}"
    elif report.failed and report.when == "setup" and _is_aiperf_error(error):
        # Our own errors say what happened; pytest's traceback through the plugin would not.
        report.longrepr = f"aiperf: {type(error).__name__}: {error}"
    session: AIPerfSession = item.config.stash[SESSION_KEY]
    record = session.records.get(item.nodeid)
    if record is None:
        return report
    if report.when == "setup" and report.failed:
        record.outcome = "ERROR"
        record.error = str(call.excinfo.value) if call.excinfo else "setup failed"
    elif report.when == "setup" and report.skipped:
        record.outcome = "SKIP"
    elif report.when == "call":
        xfail = hasattr(report, "wasxfail")
        record.outcome = "PASS" if report.passed and not xfail else "FAIL"
        if xfail:
            record.outcome = "XFAIL" if report.skipped else "XPASS"
    return report


def _is_aiperf_error(error: BaseException | None) -> bool:
    if error is None or not type(error).__module__.startswith("aiperf"):
        return False  # checked first, so other tests' failures never import the engine
    from aiperf.errors import AIPerfError

    return isinstance(error, AIPerfError)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session: AIPerfSession = config.stash[SESSION_KEY]
    records = list(session.records.values())
    if not records:
        return
    terminalreporter.write_sep("=", "aiperf load tests")
    for line in render_terminal(records, width=100):
        terminalreporter.write_line(line)
    if session.settings.artifacts is not None:
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
    session.config.hook.pytest_aiperf_report(session=session,
                                             results=list(state.records.values()))
    state.shutdown()
