"""Heavy optional dependencies are imported only when used: a session, a CLI run or a local
mesh never loads Ray (the [ray] extra), even when it is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Whatever a local user touches: the plugin, the CLI, the host handle, the controller's
# modules (which name the ray launcher only under TYPE_CHECKING), the config that knows
# the backends.
MODULES = ("pytest_aiperf.plugin", "aiperf.cli", "aiperf.mesh", "aiperf.common.config",
           "aiperf.controller.service_manager", "aiperf.controller.system_controller",
           "aiperf.services.worker")


@pytest.mark.parametrize("optional", ["ray", "ddsketch"])
def test_a_local_user_never_imports(optional: str) -> None:
    code = (f"import sys\nfor m in {MODULES!r}: __import__(m)\n"
            f"print(sorted(m for m in sys.modules if m == {optional!r} "
            f"or m.startswith({optional + '.'!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[]", f"importing {MODULES} loaded {out}"
