"""Point the load tests at a real endpoint from the environment; skip cleanly without one.

    export LLM_URL=http://127.0.0.1:8000 LLM_MODEL=my-model LLM_API_KEY=...
    pytest conftest_examples/remote_endpoint

The key is read here and handed to the plugin; it is never printed or written to artifacts.
"""

import os

import pytest

URL = os.environ.get("LLM_URL")
MODEL = os.environ.get("LLM_MODEL")


def pytest_collection_modifyitems(config, items):
    if URL and MODEL:
        return
    skip = pytest.mark.skip(reason="set LLM_URL and LLM_MODEL to run the remote load tests")
    for item in items:
        item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)  # so `pytest -p no:aiperf` still works here
def pytest_aiperf_profile(item, profile):
    """Every load test in this folder goes to the endpoint from the environment."""
    profile["url"] = URL
    profile["model"] = MODEL
    if os.environ.get("LLM_API_KEY"):
        profile["api_key"] = os.environ["LLM_API_KEY"]
