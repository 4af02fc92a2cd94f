"""The shared llama-server fixture: a missing binary skips, under CI fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_aiperf.kit.servers import BINARY_ENV
from tests.harness.llama_server import require_llama_server


def test_a_missing_binary_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "no-such-llama-server"))
    with pytest.raises(pytest.skip.Exception, match="llama-server is not built"):
        require_llama_server()


def test_under_ci_a_missing_binary_fails(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "no-such-llama-server"))
    with pytest.raises(pytest.fail.Exception, match="CI must run the llama-server tests"):
        require_llama_server()
