"""The built wheel carries the built-in manifest and the entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_contains_plugins_yaml_and_declares_the_entry_points(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, timeout=300)
    (wheel,) = tmp_path.glob("pytest_aiperf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "aiperf/plugins.yaml" in names
        assert archive.read("aiperf/plugins.yaml") == (ROOT / "plugins.yaml").read_bytes()
        (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "[console_scripts]\naiperf = aiperf.cli:main" in text
    assert "[pytest11]\naiperf = pytest_aiperf.plugin" in text
