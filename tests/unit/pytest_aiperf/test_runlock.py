"""Load tests of different xdist workers never overlap: one cross-process lock per run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_aiperf.runlock import RunLockTimeout, exclusive_run

HOLD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from pytest_aiperf.runlock import exclusive_run
    with exclusive_run(Path(sys.argv[1]), 30.0, sys.argv[2]):
        start = time.time()
        time.sleep(0.3)
        print(json.dumps([start, time.time()]), flush=True)
""")


def test_runs_in_two_processes_take_turns(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    root = Path(__file__).parents[3]
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(lock), f"w{i}"],
                              stdout=subprocess.PIPE, text=True, cwd=root) for i in range(2)]
    spans = sorted(json.loads(p.communicate(timeout=30)[0]) for p in procs)
    assert spans[0][1] <= spans[1][0]  # the second started after the first ended


def test_without_xdist_there_is_nothing_to_wait_for() -> None:
    with exclusive_run(None, 1.0, "solo"):
        pass


def test_a_holder_far_past_its_deadline_is_reported_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_aiperf.runlock as runlock

    monkeypatch.setattr(runlock, "STALE_AFTER_S", 0.1)
    lock = tmp_path / "run.lock"
    with exclusive_run(lock, -1.0, "stuck test"), pytest.raises(
        RunLockTimeout, match=r"another xdist worker's load test \(stuck test\) held"
    ), exclusive_run(lock, 1.0, "waiting test"):  # flock is per open file: a second open
        pass
