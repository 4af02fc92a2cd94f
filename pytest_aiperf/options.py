"""Command-line options and ini keys, and the one place their precedence is decided.

Every option ``--aiperf-X`` has an ini twin ``aiperf_X`` sharing one help text. For each
setting the first of these that is set wins: command line, environment variable (only the
API key: ``AIPERF_API_KEY``, then ``OPENAI_API_KEY``), ini key, default. That holds for
profile keys too: ``--aiperf-profile url=...`` beats the ini key ``aiperf_url``, and the
flag ``--aiperf-url`` beats ``--aiperf-profile url=...``. A profile key in a test's marker
beats all of them (see ``pytest_aiperf.profile``).

Relative paths follow one rule: a command-line value is relative to the directory pytest
was started in, an ini value to the ini file's directory (rootdir when there is none).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pytest_aiperf.durations import parse_duration
from pytest_aiperf.policy import PolicyError, VerdictPolicy

API_KEY_ENVS = ("AIPERF_API_KEY", "OPENAI_API_KEY")
# config.workerinput key (pytest-xdist): the controller's temporary artifacts dir, which
# its workers write to and it removes.
ARTIFACTS_TMP_KEY = "aiperf_artifacts_tmp"

# name -> (help, kind); kind: "string", "bool", "linelist"
OPTIONS: dict[str, tuple[str, str]] = {
    "url": ("base URL of the server under test; none starts the built-in mock server",
            "string"),
    "model": ("model name sent in every request", "string"),
    "endpoint_type": ("endpoint plugin used when a test names none (default: chat)", "string"),
    "api_key": (f"API key sent as a Bearer token (or set {' or '.join(API_KEY_ENVS)}); "
                "never printed", "string"),
    "artifacts": ("write each load test's artifacts to DIR/<test>/ and DIR/summary.json",
                  "string"),
    "html": ("write a self-contained HTML report of the session's load tests to FILE "
             "(plots per test)", "string"),
    "workers": ("worker processes of the mesh (default: half the cores, at least 1)",
                "string"),
    "ray_address": ("run the mesh's workers as Ray actors on this cluster: the head's "
                    "host:port, or 'auto' (needs pytest-aiperf[ray])", "string"),
    "slo_file": ("YAML file of objectives per test node id pattern", "string"),
    "test_timeout": ("deadline of each load test ('90s', '5m', 120); default derived from "
                     "its profile. Requests are cut short to fit it, as error records",
                     "string"),
    "disable": ("skip every load test (e.g. on a laptop)", "bool"),
    "sketch": ("sketch mode for every load test: each metric kept in a relative-error "
               "quantile sketch (flat memory for long runs; percentiles within 1 %, or the "
               "marker key sketch_relative_accuracy, which their verdicts' intervals carry); "
               "a marker's sketch=False opts a test out", "bool"),
    "confidence": ("confidence of each bound behind a verdict (default 0.95)", "string"),
    "inconclusive": ("what an INCONCLUSIVE objective does: pass (default, with a warning), "
                     "fail, xfail or extend (keep sending until decided or the budget, 4x "
                     "the profile, is spent)", "string"),
    "inconclusive_final": ("what extend does when its budget is spent: fail (default), pass "
                           "or xfail", "string"),
    "validity": ("a run the client could not deliver (INVALID): error (default), warn or "
                 "off", "string"),
    "repeat": ("run each profile N times on the warm mesh and judge across runs too "
               "(default 1)", "string"),
    "steady_state": ("judge objectives on the steady window only (true/false, default "
                     "false)", "string"),
    "profile": ("default for a profile key, KEY=VALUE (repeatable; ini: one per line)",
                "linelist"),
    "save": ("store each load test's result under NAME in the baseline storage", "string"),
    "autosave": ("store each load test's result in the baseline storage (name 'auto')",
                 "bool"),
    "compare": ("compare each load test with its stored run: 'latest' (the default of the "
                "bare flag), a saved NAME or a number", "string"),
    "compare_fail": ("a regression gate, METRIC[.STAT]:[+|-]N% or :[+|-]N<unit>, e.g. "
                     "time_to_first_token.p99:10% (repeatable; ini: one per line); implies "
                     "comparing with the latest stored run", "linelist"),
    "storage": ("directory of stored baseline runs (default .aiperf in the rootdir)",
                "string"),
    "storage_keep": ("stored runs kept per test, oldest pruned first (default 20; 0 keeps "
                     "all)", "string"),
    "require_baseline": ("a test that compares (rules, relative objectives, --aiperf-compare) "
                         "fails when no stored run fits it", "bool"),
    "fail_on_improvement": ("a significant improvement fails the test too (so that the "
                            "baseline gets re-saved)", "bool"),
}

METAVARS = {"url": "URL", "model": "NAME", "endpoint_type": "NAME", "api_key": "KEY",
            "artifacts": "DIR", "html": "FILE", "workers": "N", "ray_address": "ADDRESS",
            "slo_file": "FILE", "test_timeout": "DURATION",
            "confidence": "LEVEL", "inconclusive": "POLICY", "inconclusive_final": "POLICY",
            "validity": "MODE", "repeat": "N", "steady_state": "BOOL", "save": "NAME",
            "compare": "NAME", "compare_fail": "EXPR", "storage": "DIR", "storage_keep": "N"}
_POLICY_SETTINGS = ("confidence", "inconclusive", "inconclusive_final", "validity", "repeat",
                    "steady_state")
# Settings that are also profile keys, in the order they are applied.
_PROFILE_SETTINGS = ("model", "endpoint_type", "url")
_PATH_PROFILE_KEYS = ("input_file", "tokenizer")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiperf", "LLM load tests (pytest-aiperf)")
    for name, (ini_help, kind) in OPTIONS.items():
        flag = "--aiperf-" + name.replace("_", "-")
        help_text = ini_help.replace("%", "%%")  # argparse %-formats help; ini help is plain
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, help=help_text)
            parser.addini(f"aiperf_{name}", ini_help, type="bool", default=False)
        elif kind == "linelist":
            group.addoption(flag, action="append", default=None,
                            metavar=METAVARS.get(name, "KEY=VALUE"), help=help_text)
            parser.addini(f"aiperf_{name}", ini_help, type="linelist", default=[])
        elif name == "compare":  # a bare --aiperf-compare means the latest stored run
            group.addoption(flag, nargs="?", const="latest", default=None,
                            metavar=METAVARS[name], help=help_text)
            parser.addini(f"aiperf_{name}", ini_help, default=None)
        else:
            group.addoption(flag, default=None, help=help_text, metavar=METAVARS[name])
            parser.addini(f"aiperf_{name}", ini_help, default=None)


DEFAULT_STORAGE = ".aiperf"
DEFAULT_KEEP = 20


@dataclass(frozen=True)
class BaselineSettings:
    """Where results are stored, which stored run a test compares with and the gates."""

    storage: Path = Path(DEFAULT_STORAGE)
    keep: int = DEFAULT_KEEP
    save: str | None = None  # a name, "auto" with autosave; None: nothing stored
    compare: str | None = None  # "latest", a name or a number; None: only rules compare
    rules: tuple[str, ...] = ()  # --aiperf-compare-fail / aiperf_compare_fail, as written
    require_baseline: bool = False
    fail_on_improvement: bool = False


@dataclass(frozen=True)
class Settings:
    """What the options resolve to for this session."""

    url: str | None = None
    model: str | None = None
    endpoint_type: str | None = None
    api_key: SecretStr | None = None  # SecretStr's repr masks it, everywhere it is shown
    artifacts: Path | None = None
    # The artifacts dir is the session's own, for its reports only: removed at the end.
    artifacts_temporary: bool = False
    html: Path | None = None  # --aiperf-html: the session's HTML report
    workers: int | None = None
    ray_address: str | None = None
    slo_file: Path | None = None
    test_timeout: float | None = None
    disable: bool = False
    profile_defaults: dict[str, Any] = field(default_factory=dict)
    policy: VerdictPolicy = field(default_factory=VerdictPolicy)
    baseline: BaselineSettings = field(default_factory=BaselineSettings)

    def profile_base(self) -> dict[str, Any]:
        """Profile keys every load test starts from (before its markers)."""
        base = dict(self.profile_defaults)
        if self.api_key is not None:
            base["api_key"] = self.api_key
        return base


class _Layer:
    """Where a value came from, for precedence and for resolving relative paths."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.cli_dir = Path(config.invocation_params.dir)
        inipath = config.inipath
        self.ini_dir = Path(inipath).parent if inipath else Path(config.rootpath)

    def cli(self, name: str) -> Any:
        return self.config.getoption("aiperf_" + name)

    def ini(self, name: str) -> Any:
        value = self.config.getini("aiperf_" + name)
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


def _absolute(value: str | os.PathLike[str], base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _profile_layer(items: list[str], where: str, base_dir: Path) -> dict[str, Any]:
    from pytest_aiperf.profile import LoadTestSpecError, normalise_keys

    try:  # the marker's spellings: duration="3s", endpoint=...
        profile = normalise_keys(parse_profile_items(items, where))
    except LoadTestSpecError as exc:
        raise pytest.UsageError(f"{where}: {exc}") from None
    for key in _PATH_PROFILE_KEYS:
        if isinstance(profile.get(key), str):
            profile[key] = str(_absolute(profile[key], base_dir))
    return profile


def _api_key(layer: _Layer, cli_profile: dict[str, Any],
             ini_profile: dict[str, Any]) -> SecretStr | None:
    """The first key given: command line (flag, then profile item), environment, ini (key,
    then profile line). A key given as a profile item is a secret all the same."""
    environment = next((os.environ[env] for env in API_KEY_ENVS if os.environ.get(env)), None)
    raw = next((value for value in (layer.cli("api_key"), cli_profile.get("api_key"),
                                    environment, layer.ini("api_key"),
                                    ini_profile.get("api_key")) if value), None)
    return SecretStr(str(raw)) if raw else None


def resolve(config: pytest.Config) -> Settings:
    layer = _Layer(config)

    def pick(name: str) -> Any:
        value = layer.cli(name)
        return value if value is not None else layer.ini(name)

    def pick_path(name: str) -> Path | None:
        value = layer.cli(name)
        if value is not None:
            return _absolute(value, layer.cli_dir)
        value = layer.ini(name)
        return _absolute(value, layer.ini_dir) if value is not None else None

    workers = pick("workers")
    try:
        workers_n = int(workers) if workers is not None else None
    except ValueError:
        raise pytest.UsageError(f"--aiperf-workers: {workers!r} is not an integer") from None
    timeout = pick("test_timeout")
    try:
        test_timeout = parse_duration(timeout, "aiperf_test_timeout") if timeout else None
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    # Lowest first: ini profile lines, ini keys, command-line profile items, flags.
    ini_profile = _profile_layer(list(layer.ini("profile") or []), "aiperf_profile",
                                 layer.ini_dir)
    cli_profile = _profile_layer(list(layer.cli("profile") or []), "--aiperf-profile",
                                 layer.cli_dir)
    api_key = _api_key(layer, cli_profile, ini_profile)
    profile = dict(ini_profile)
    profile.update({k: layer.ini(k) for k in _PROFILE_SETTINGS if layer.ini(k) is not None})
    profile.update(cli_profile)
    profile.update({k: layer.cli(k) for k in _PROFILE_SETTINGS if layer.cli(k) is not None})
    profile.pop("api_key", None)  # in Settings.api_key, as a SecretStr
    if layer.cli("sketch") or config.getini("aiperf_sketch"):
        profile["sketch"] = True  # a profile default: a test's marker may still say False
    disable = layer.cli("disable") or config.getini("aiperf_disable")
    try:
        policy = VerdictPolicy.build("aiperf options", **{k: pick(k) for k in _POLICY_SETTINGS})
    except PolicyError as exc:
        raise pytest.UsageError(str(exc)) from None
    baseline = _baseline_settings(config, layer, pick, pick_path)
    html = pick_path("html")
    artifacts, temporary = _artifacts(config, pick_path("artifacts"), html, bool(disable))
    return Settings(
        url=profile.get("url"), model=profile.get("model"),
        endpoint_type=profile.get("endpoint_type"), api_key=api_key,
        artifacts=artifacts, artifacts_temporary=temporary, html=html, workers=workers_n,
        ray_address=pick("ray_address"),
        slo_file=pick_path("slo_file"), test_timeout=test_timeout,
        disable=bool(disable), profile_defaults=profile, policy=policy, baseline=baseline,
    )


def _baseline_settings(config: pytest.Config, layer: _Layer, pick: Any,
                       pick_path: Any) -> BaselineSettings:
    """The baseline options; a rule that does not parse is a usage error naming it."""
    keep_text = pick("storage_keep")
    try:
        keep = int(keep_text) if keep_text is not None else DEFAULT_KEEP
        if keep < 0:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"aiperf_storage_keep: {keep_text!r} is not an integer >= 0 "
                                "(0 keeps every run)") from None
    save = pick("save")
    if save is not None and (save.strip().isdigit() or save.strip() in ("", "latest")):
        raise pytest.UsageError(f"--aiperf-save / aiperf_save: {save!r} would read as a run "
                                "number or as 'latest' when comparing; use a name with a "
                                "letter, e.g. main")
    if save is None and (layer.cli("autosave") or config.getini("aiperf_autosave")):
        save = "auto"
    # The command line's gates replace the ini's, as for every other key.
    rules = tuple(layer.cli("compare_fail") or layer.ini("compare_fail") or ())
    if rules:
        from pytest_aiperf.baseline import BaselineError, parse_rules

        try:
            parse_rules(list(rules), "--aiperf-compare-fail / aiperf_compare_fail")
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None
    storage = pick_path("storage") or (Path(config.rootpath) / DEFAULT_STORAGE)
    return BaselineSettings(
        storage=storage, keep=keep, save=save, compare=pick("compare"), rules=rules,
        require_baseline=bool(layer.cli("require_baseline")
                              or config.getini("aiperf_require_baseline")),
        fail_on_improvement=bool(layer.cli("fail_on_improvement")
                                 or config.getini("aiperf_fail_on_improvement")))


def _artifacts(config: pytest.Config, given: Path | None, html: Path | None,
               disabled: bool) -> tuple[Path | None, bool]:
    """Where the session's artifacts go, and whether that dir is temporary: the reports
    (--aiperf-html, pytest-html's --html) are drawn from artifacts, so without
    --aiperf-artifacts they go to a temporary dir (an xdist worker's is its controller's)."""
    if html is not None:
        if html.is_dir():
            raise pytest.UsageError(f"--aiperf-html / aiperf_html: {html} is a directory; "
                                    "give the report's file name, e.g. report.html")
        import importlib.util

        if importlib.util.find_spec("aiperf.report") is None:
            raise pytest.UsageError("--aiperf-html / aiperf_html: aiperf.report is not "
                                    "installed (a partial install): reinstall pytest-aiperf")
    if given is not None:
        return given, False
    if disabled or (html is None and not config.getoption("htmlpath", None)):
        return None, False
    shared = getattr(config, "workerinput", {}).get(ARTIFACTS_TMP_KEY)
    if shared:
        return Path(shared), False  # the controller removes it
    return Path(tempfile.mkdtemp(prefix="aiperf-artifacts-")), True
