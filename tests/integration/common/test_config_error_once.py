"""A configuration error found inside the mesh (the dataset manager's) reaches the user
once, as the CLI's clean message, not also as a service's ERROR log line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_bad_input_file_is_said_once_on_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset.jsonl"
    # The run fails while the services are configured, before any request: no server.
    proc = subprocess.run(
        [sys.executable, "-m", "aiperf", "profile", "-u", "127.0.0.1:9", "-m", "mock-model",
         "--request-count", "5", "--input-file", str(missing),
         "--output-artifact-dir", str(tmp_path / "art")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr  # EXIT_CONFIG
    mentions = [line for line in proc.stderr.splitlines() if str(missing) in line]
    assert mentions == [f"aiperf: invalid configuration: input_file: {missing} does not exist"]
    assert "ERROR" not in proc.stderr and "ConfigError(" not in proc.stderr
