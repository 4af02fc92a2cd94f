"""Where a run ran: enough to warn that a baseline came from other hardware or software.

A comparison across machines is still made (the user may mean it: two CI runner types), but
the differences are named, because a slower CPU moves client-side timings too."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

GIT_DEADLINE_S = 2.0
# Compared by machine_differences; the git fields describe the code, not the machine.
_COMPARED = ("cpu_model", "cores", "python", "package_version", "platform")


class MachineInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    cpu_model: str
    cores: int
    python: str
    package_version: str
    platform: str
    git_commit: str | None = None
    git_dirty: bool | None = None


def this_machine(cwd: Path | None = None) -> MachineInfo:
    """This host, and the git commit of ``cwd`` (default: the current directory) when git
    answers within 2 s; ``None`` for both git fields otherwise (no git, not a repository)."""
    commit, dirty = _git_state(cwd)
    return _static().model_copy(update={"git_commit": commit, "git_dirty": dirty})


def machine_differences(a: MachineInfo, b: MachineInfo) -> list[str]:
    """``"cores 2 -> 8"`` for each compared field that differs."""
    return [f"{name} {getattr(a, name)} -> {getattr(b, name)}"
            for name in _COMPARED if getattr(a, name) != getattr(b, name)]


@functools.cache
def _static() -> MachineInfo:
    return MachineInfo(
        cpu_model=_cpu_model(),
        cores=_usable_cores(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        package_version=_package_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, sep, value = line.partition(":")
                # x86 says "model name"; some ARM kernels only "Hardware" or "CPU part".
                if sep and name.strip() in ("model name", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int:
    # The cores this process may run on: a CI container limited by affinity reports the
    # host's count in os.cpu_count(), which would hide the difference that matters.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-aiperf")
    except PackageNotFoundError:
        from aiperf import __version__

        return __version__


def _git_state(cwd: Path | None) -> tuple[str | None, bool | None]:
    deadline = time.monotonic() + GIT_DEADLINE_S
    # No optional locks: `git status` would otherwise refresh the index and take its lock,
    # and a commit made at that moment by someone else in the same checkout would fail.
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    env.pop("GIT_DIR", None)  # a hook's GIT_DIR would point git at another repository

    def git(*args: str) -> str | None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=left, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    head = git("rev-parse", "--verify", "HEAD")
    if head is None:
        return None, None
    # Untracked files do not count: the storage directory itself is usually untracked.
    status = git("status", "--porcelain", "--untracked-files=no")
    return head.strip(), (None if status is None else bool(status.strip()))
