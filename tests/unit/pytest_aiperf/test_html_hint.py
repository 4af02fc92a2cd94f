"""The report's install hint tells the truth: what aiperf.report imports is installed with
pytest-aiperf itself, and the hint names no extra that installs nothing."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import aiperf.report
from pytest_aiperf.html import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[3]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(package_dir: Path) -> set[str]:
    names: set[str] = set()
    for source in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    ours = {"aiperf", "pytest_aiperf"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in ours}


def test_the_report_imports_only_core_dependencies() -> None:
    core = {_requirement_name(spec) for spec in _project()["dependencies"]}
    owners = packages_distributions()
    package_dir = Path(aiperf.report.__file__).parent
    for module in _third_party_imports(package_dir):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        assert dists & core, f"aiperf.report imports {module}, not a core dependency"


def test_the_hint_names_no_empty_extra() -> None:
    extras = _project().get("optional-dependencies", {})
    for extra in re.findall(r"pytest-aiperf\[(\w+)\]", INSTALL_HINT):
        assert extras.get(extra), f"the hint names the extra [{extra}], which installs nothing"
    assert "reinstall" in INSTALL_HINT
