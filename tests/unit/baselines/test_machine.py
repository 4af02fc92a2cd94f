"""The machine a run ran on, and the git commit of its code, from a real git."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from aiperf.baselines import machine as machine_module
from aiperf.baselines.machine import MachineInfo, machine_differences, this_machine

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
    env.pop("GIT_DIR", None)
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    _git(tmp_path, "add", "tracked.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_this_machine_describes_this_host(tmp_path: Path) -> None:
    info = this_machine(tmp_path)
    assert info.cores >= 1 and info.cpu_model
    assert info.python.endswith(platform.python_version())
    assert info.package_version == __import__("aiperf").__version__
    assert platform.machine() in info.platform


@needs_git
def test_a_clean_checkout_gives_its_commit_and_not_dirty(repo: Path) -> None:
    info = this_machine(repo)
    assert info.git_commit == _git(repo, "rev-parse", "HEAD")
    assert info.git_dirty is False


@needs_git
def test_an_untracked_file_is_not_dirty_but_a_changed_tracked_one_is(repo: Path) -> None:
    # The storage directory itself is usually untracked: it must not make every run dirty.
    (repo / ".aiperf").mkdir()
    (repo / ".aiperf" / "run.json").write_text("{}")
    assert this_machine(repo).git_dirty is False
    (repo / "tracked.txt").write_text("two\n")
    assert this_machine(repo).git_dirty is True


@needs_git
def test_outside_a_repository_git_fields_are_none(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Stop git's search for a repository at tmp_path's parent, so the test does not see
    # a checkout that happens to contain the temp dir.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    info = this_machine(tmp_path)
    assert (info.git_commit, info.git_dirty) == (None, None)


def test_a_hanging_git_is_abandoned_at_the_deadline(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 60\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(machine_module, "GIT_DEADLINE_S", 0.3)
    info = this_machine(tmp_path)
    assert (info.git_commit, info.git_dirty) == (None, None)
    assert info.cores >= 1  # the rest of the description is unaffected


def test_no_git_at_all_gives_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    info = this_machine(tmp_path)
    assert (info.git_commit, info.git_dirty) == (None, None)


def test_differences_name_each_field_and_ignore_git() -> None:
    a = MachineInfo(cpu_model="EPYC", cores=2, python="CPython 3.11.7", package_version="0.1.0",
                    platform="Linux 6.1 x86_64", git_commit="abc", git_dirty=False)
    b = a.model_copy(update={"cores": 8, "python": "CPython 3.12.1", "git_commit": "def",
                             "git_dirty": True})
    assert machine_differences(a, b) == ["cores 2 -> 8", "python CPython 3.11.7 -> CPython 3.12.1"]
    assert machine_differences(a, a) == []
