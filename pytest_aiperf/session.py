"""Session state: the lazily started mesh and mock server, and the record of every load
test. Registered as a plugin object by ``pytest_configure`` and removed at unconfigure,
the way pytest's own junitxml keeps its state."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.options import Settings
from pytest_aiperf.profile import LoadTestSpec
from pytest_aiperf.slo import Verdict, evaluate

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerThread
    from aiperf.results import ProfileResult

# What the built-in mock serves when no --aiperf-url is given: small, realistic latencies.
DEFAULT_MOCK = {"ttft_ms": 10, "ttft_stddev_ms": 2, "itl_ms": 2, "tokens": 32}
KEY_METRICS = ("request_throughput", "time_to_first_token.p99", "request_latency.p99",
               "request_error_rate")


@dataclass
class LoadTestRecord:
    """One load test as the reports see it."""

    nodeid: str
    profile: str
    result: ProfileResult | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    outcome: str = "ERROR"  # PASS, FAIL (objective breached or test failed), ERROR, SKIP
    error: str | None = None
    artifacts: Path | None = None

    def key_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.result is None:
            return out
        for name in KEY_METRICS:
            try:
                out[name] = self.result.metric(name)
            except KeyError:
                continue
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid, "profile": self.profile, "outcome": self.outcome,
            "error": self.error, "metrics": self.key_metrics(),
            "objectives": [v.to_dict() for v in self.verdicts],
            "artifacts": str(self.artifacts) if self.artifacts else None,
        }


def safe_dirname(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


class AIPerfSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.records: dict[str, LoadTestRecord] = {}
        self._mesh: Mesh | None = None
        self._mock: MockServerThread | None = None

    # -- shared infrastructure, started on first use ----------------------------------------

    def _new_mesh(self) -> Mesh:
        from aiperf.mesh import Mesh

        workers = self.settings.workers
        return Mesh(workers=workers) if workers else Mesh()

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

    def default_url(self) -> str:
        if self.settings.url:
            return self.settings.url
        if self._mock is None:
            from aiperf.mock_server import MockServerThread

            self._mock = MockServerThread(**DEFAULT_MOCK)
            self._mock.start()
        return self._mock.url

    def shutdown(self) -> None:
        if self._mesh is not None:
            self._mesh.shutdown()
            self._mesh = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    # -- running ---------------------------------------------------------------------------

    def run(self, item: pytest.Item, spec: LoadTestSpec) -> ProfileResult:
        from aiperf.common.config import UserConfig
        from aiperf.errors import EndpointError

        profile = dict(spec.profile)
        item.config.hook.pytest_aiperf_profile(item=item, profile=profile)
        record = LoadTestRecord(item.nodeid, LoadTestSpec(profile).short())
        self.records[item.nodeid] = record
        profile.setdefault("url", self.default_url())
        config = UserConfig.build(where=f"aiperf profile of {item.nodeid}", **profile)
        result = self.mesh().run(config)
        record.result = result
        if self.settings.artifacts is not None:
            from aiperf.exporters.base import export_files

            record.artifacts = self.settings.artifacts / safe_dirname(item.nodeid)
            export_files(result, record.artifacts)
        total = result.request_count + result.error_count
        if total and result.request_count == 0:
            raise EndpointError(unusable_message(config, result))
        item.config.hook.pytest_aiperf_result(item=item, result=result)
        result.slo = record.verdicts = evaluate(spec.objectives, result)
        return result


def unusable_message(config: UserConfig, result: ProfileResult) -> str:
    lines = [f"every request to {config.url} failed ({result.error_count} of "
             f"{result.error_count}); objectives were not evaluated"]
    lines.extend(result.error_lines(limit=5, width=200))
    return "\n".join(lines)
