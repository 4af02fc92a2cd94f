"""The llama-server a test module profiles (llama.cpp with SmolLM2-135M), one way for every
module: ``llama = llama_server_fixture(parallel=4)`` at module level gives the module one
server, started on first use and stopped after its last test.

Where the binary is: ``AIPERF_LLAMA_SERVER``, else the cached build of
``scripts/build-llama-server.sh`` under ``~/.cache/pytest-aiperf/``
(``pytest_aiperf.kit.servers.llama_server_binary``). Missing binary or model: the tests
skip with the reason; under CI (env ``CI`` set, as ``.ci/run`` sets it) they fail instead,
since CI builds both and a skip there would hide that the real engine never ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from pytest_aiperf.kit.servers import LlamaServer, why_unavailable


def require_llama_server() -> None:
    """Return when a llama-server can start here; else skip with the reason, or under CI
    fail with it."""
    missing = why_unavailable()
    if missing is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the llama-server tests, but {missing}", pytrace=False)
    pytest.skip(missing)


def llama_server_fixture(parallel: int, threads: int = 2,
                         name: str = "llama") -> Callable[..., Iterator[LlamaServer]]:
    """A module-scoped fixture ``name`` yielding a running ``LlamaServer`` with
    ``parallel`` slots and ``threads`` threads (2: the server shares the 2 cores with the
    client, so runs stay small)."""

    @pytest.fixture(scope="module", name=name)
    def llama() -> Iterator[LlamaServer]:
        require_llama_server()
        with LlamaServer(parallel=parallel, threads=threads) as server:
            yield server

    return llama
