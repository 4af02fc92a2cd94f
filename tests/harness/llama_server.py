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

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_aiperf.kit.servers import LlamaServer, why_unavailable
from tests.harness.ci import skip_or_fail

if TYPE_CHECKING:
    from aiperf.mesh import Mesh
    from aiperf.results import ProfileResult


def require_llama_server() -> None:
    """Return when a llama-server can start here; else skip with the reason, or under CI
    fail with it."""
    skip_or_fail(why_unavailable(), "the llama-server tests")


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


def run_counted(mesh: Mesh, llama: LlamaServer, **profile: Any,
                ) -> tuple[ProfileResult, dict[str, float]]:
    """A run of ``profile`` against ``llama`` (SmolLM2, ``ignore_eos`` so each request
    generates exactly its OSL) and how much each of the server's counters rose during it.
    The run must be whole: the invariant holds, every request answered, each one's OSL
    the one asked for (the server's usage)."""
    before = llama.metrics()
    result = mesh.run(**{"url": llama.url, "model": "smollm2",
                         "extra_inputs": {"ignore_eos": True},
                         "request_timeout_seconds": 120, **profile})
    after = llama.metrics()
    assert result.invariant["ok"], result.invariant
    assert result.request_count == profile["request_count"] and result.error_count == 0, \
        result.error_summary
    osl = result["output_sequence_length"]
    assert osl.min == osl.max == profile["osl"]
    return result, {name: value - before.get(name, 0.0) for name, value in after.items()}
