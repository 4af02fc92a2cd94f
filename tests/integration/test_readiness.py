"""``--wait-for-model-timeout``: a real server on 127.0.0.1 that loads for a while, one that
never finishes loading, and one nobody listens on; plus ``--custom-endpoint`` and a URL
without a scheme through ``aiperf profile``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aiperf.common.config import UserConfig
from aiperf.common.net import free_tcp_ports
from aiperf.readiness import ModelNotReady, wait_for_model
from tests.harness.loading_server import LoadingServer

SECRET = "sk-readiness-secret-4711"
@pytest.fixture
def loads_for_a_second() -> Iterator[LoadingServer]:
    with LoadingServer(ready_after_s=1.0) as server:
        yield server


@pytest.mark.parametrize(("mode", "statuses"), [
    ("inference", (None, 200)), ("both", (200, 200)),
])  # fmt: skip
def test_the_wait_returns_once_the_model_answers(
    loads_for_a_second: LoadingServer, mode: str, statuses: tuple[int | None, int]
) -> None:
    server = loads_for_a_second
    config = UserConfig(url=server.url, model="m", api_key=SECRET,
                        wait_for_model_timeout=20, custom_endpoint="/serve/chat",
                        wait_for_model_mode=mode, wait_for_model_interval=0.1)
    ready = wait_for_model(config)
    assert ready is not None
    assert ready.attempts >= 2  # it did wait: the first attempts met 503
    assert ready.waited_s >= 0.9
    assert (ready.models_status, ready.inference_status) == statuses
    # The probe is a real one-token request, to the run's own (custom) path.
    posts = [(path, body) for method, path, body in server.seen if method == "POST"]
    assert posts[-1][0] == "/serve/chat"
    assert posts[-1][1]["max_completion_tokens"] == 1
    assert posts[-1][1]["stream"] is False


def test_models_mode_waits_for_the_models_id_in_the_list() -> None:
    with LoadingServer(ready_after_s=0.5) as server:
        listed = UserConfig(url=server.url, model="m", wait_for_model_mode="models")
        ready = wait_for_model(listed, timeout_s=20, interval_s=0.1)
        assert ready is not None and (ready.models_status, ready.inference_status) == \
            (200, None)
        assert not any(method == "POST" for method, _, _ in server.seen)
        other = UserConfig(url=server.url, model="other", wait_for_model_mode="models")
        with pytest.raises(ModelNotReady) as caught:
            wait_for_model(other, timeout_s=0.5, interval_s=0.1)
    assert "model 'other' not listed yet (listed: m)" in str(caught.value)


def test_models_mode_without_a_list_takes_the_base_url_answering() -> None:
    with LoadingServer(ready_after_s=0.0, models_list=False) as server:
        config = UserConfig(url=server.url, model="m", wait_for_model_mode="models")
        ready = wait_for_model(config, timeout_s=20, interval_s=0.1)
    assert ready is not None and ready.models_status == 404
    assert [path for method, path, _ in server.seen if method == "GET"] == \
        ["/v1/models", "/"]


def test_a_model_that_never_loads_fails_at_the_deadline_naming_the_url() -> None:
    with LoadingServer(ready_after_s=3600) as server:
        config = UserConfig(url=server.url, model="m", api_key=SECRET)
        started = time.monotonic()
        with pytest.raises(ModelNotReady) as caught:
            wait_for_model(config, timeout_s=1.0, interval_s=0.1)
        elapsed = time.monotonic() - started
    message = str(caught.value)
    assert server.url in message
    assert "HTTP 503" in message and "loading weights" in message
    assert SECRET not in message  # the server echoed it; the error must not
    assert "1 s" in message and "mode inference" in message
    assert 0.9 <= elapsed < 10  # the deadline holds (generous bound for a loaded box)


def test_nobody_listening_fails_at_the_deadline() -> None:
    port = free_tcp_ports("127.0.0.1", 1)[0]
    config = UserConfig(url=f"127.0.0.1:{port}", model="m", wait_for_model_mode="both")
    with pytest.raises(ModelNotReady) as caught:
        wait_for_model(config, timeout_s=0.5, interval_s=0.1)
    assert f"http://127.0.0.1:{port}: ClientConnectorError" in str(caught.value)


def test_zero_timeout_skips_the_wait() -> None:
    assert wait_for_model(UserConfig(url="http://127.0.0.1:9")) is None


def _aiperf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiperf", *args], capture_output=True,
                          text=True, timeout=120)


def test_profile_waits_then_sends_to_the_custom_endpoint_without_a_scheme(
    loads_for_a_second: LoadingServer, tmp_path: Any
) -> None:
    server = loads_for_a_second
    host_port = server.url.removeprefix("http://")
    proc = _aiperf("profile", "--url", host_port, "--model-names", "m",
                   "--endpoint", "/serve/chat", "--wait-for-model-timeout", "20",
                   "--wait-for-model-mode", "both", "--wait-for-model-interval", "0.2",
                   "--num-requests", "5", "--output-tokens-mean", "1",
                   "--artifact-dir", str(tmp_path), "--ui", "none")
    assert proc.returncode == 0, proc.stderr
    posts = [path for method, path, _ in server.seen if method == "POST"]
    # The probes and all five profiled requests went to the custom path.
    assert posts and set(posts) == {"/serve/chat"}
    assert len(posts) >= 6
    assert "5 of 5 requests succeeded" in proc.stdout


def test_profile_exits_1_when_the_model_never_answers(tmp_path: Any) -> None:
    with LoadingServer(ready_after_s=3600) as server:
        proc = _aiperf("profile", "-u", server.url, "--api-key", SECRET,
                       "--wait-for-model-timeout", "1", "--request-count", "2",
                       "--artifact-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "did not answer within --wait-for-model-timeout 1 s" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not any(method == "POST" and path == "/v1/chat/completions" and body.get(
        "max_completion_tokens") != 1 for method, path, body in server.seen)
