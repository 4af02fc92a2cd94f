"""Command-line options and ini keys, and the one place their precedence is decided.

Every option ``--aiperf-X`` has an ini twin ``aiperf_X`` sharing one help text. For each
setting the first of these that is set wins: command line, environment variable (only
``AIPERF_API_KEY``), ini key, default. A profile key in a test's marker beats all of them
(see ``pytest_aiperf.profile``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

API_KEY_ENV = "AIPERF_API_KEY"

# name -> (help, kind); kind: "string", "bool", "linelist"
OPTIONS: dict[str, tuple[str, str]] = {
    "url": ("base URL of the server under test; none starts the built-in mock server",
            "string"),
    "model": ("model name sent in every request", "string"),
    "endpoint_type": ("endpoint plugin used when a test names none (default: chat)", "string"),
    "api_key": (f"API key sent as a Bearer token (or set {API_KEY_ENV}); never printed",
                "string"),
    "artifacts": ("write each load test's artifacts to DIR/<test>/ and DIR/summary.json",
                  "string"),
    "workers": ("worker processes of the mesh (default: half the cores, at least 1)",
                "string"),
    "slo_file": ("YAML file of objectives per test node id pattern", "string"),
    "disable": ("skip every load test (e.g. on a laptop)", "bool"),
    "profile": ("default for a profile key, KEY=VALUE (repeatable; ini: one per line)",
                "linelist"),
}


METAVARS = {"url": "URL", "model": "NAME", "endpoint_type": "NAME", "api_key": "KEY",
            "artifacts": "DIR", "workers": "N", "slo_file": "FILE"}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiperf", "LLM load tests (pytest-aiperf)")
    for name, (help_text, kind) in OPTIONS.items():
        flag = "--aiperf-" + name.replace("_", "-")
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, help=help_text)
            parser.addini(f"aiperf_{name}", help_text, type="bool", default=False)
        elif kind == "linelist":
            group.addoption(flag, action="append", default=None, metavar="KEY=VALUE",
                            help=help_text)
            parser.addini(f"aiperf_{name}", help_text, type="linelist", default=[])
        else:
            group.addoption(flag, default=None, help=help_text, metavar=METAVARS[name])
            parser.addini(f"aiperf_{name}", help_text, default=None)


@dataclass(frozen=True)
class Settings:
    """What the options resolve to for this session."""

    url: str | None = None
    model: str | None = None
    endpoint_type: str | None = None
    api_key: str | None = field(default=None, repr=False)
    artifacts: Path | None = None
    workers: int | None = None
    slo_file: Path | None = None
    disable: bool = False
    profile_defaults: dict[str, Any] = field(default_factory=dict)

    def profile_base(self) -> dict[str, Any]:
        """Profile keys every load test starts from (before its markers)."""
        base = dict(self.profile_defaults)
        for key in ("model", "endpoint_type", "url"):
            value = getattr(self, key)
            if value:
                base[key] = value
        if self.api_key:
            base["api_key"] = self.api_key
        return base


def _get(config: pytest.Config, name: str) -> Any:
    cli = config.getoption("aiperf_" + name)
    if cli is not None:
        return cli
    if name == "api_key" and os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV]
    value = config.getini("aiperf_" + name)
    return value if value not in ("", None) else None


def parse_profile_items(items: list[str], where: str) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"{where}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def resolve(config: pytest.Config) -> Settings:
    workers = _get(config, "workers")
    try:
        workers_n = int(workers) if workers is not None else None
    except ValueError:
        raise pytest.UsageError(f"--aiperf-workers: {workers!r} is not an integer") from None
    profile = parse_profile_items(list(config.getini("aiperf_profile") or []), "aiperf_profile")
    profile.update(parse_profile_items(config.getoption("aiperf_profile") or [],
                                       "--aiperf-profile"))
    artifacts = _get(config, "artifacts")
    slo_file = _get(config, "slo_file")
    disable = config.getoption("aiperf_disable") or config.getini("aiperf_disable")
    return Settings(
        url=_get(config, "url"), model=_get(config, "model"),
        endpoint_type=_get(config, "endpoint_type"), api_key=_get(config, "api_key"),
        artifacts=Path(artifacts) if artifacts else None, workers=workers_n,
        slo_file=Path(str(config.rootpath / slo_file)) if slo_file else None,
        disable=bool(disable), profile_defaults=profile,
    )
