"""Wait, before a run, until the model behind the endpoint answers (AIPerf's
``--wait-for-model-timeout``): the common CI case of a server still loading its weights.

What an attempt checks is ``wait_for_model_mode``, as in AIPerf:

- ``inference`` (the default): one real request of one output token, built by the run's
  own endpoint plugin, not streamed, sent to the run's own request URL (the custom
  endpoint's path when one is set). Ready when the server answers 2xx with a body the
  plugin reads without an error. AIPerf takes any status below 500 as ready; a 4xx is
  not an answer here (a server still registering its model says 404), so the wait goes
  on and, at the deadline, names it.
- ``models``: ``GET <url>/v1/models`` until the model's id is in its ``data`` list; a 404
  there (a server without the list) is followed by ``GET <url>``, ready on a 2xx.
- ``both``: ``models``, then ``inference``.

An attempt that fails (connection refused, 503 while loading, a timeout, an error body) is
tried again every ``wait_for_model_interval`` until ``wait_for_model_timeout``; then
``ModelNotReady`` names the URL and the last thing the server said. The API key is sent but
never shown: error texts are scrubbed of every secret header value and URL password.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiperf.common.config import UserConfig, mask_url
from aiperf.errors import AIPerfError
from aiperf.transports.redact import scrub, secret_values

# One attempt's HTTP limit: a server that accepts and never answers must not eat the
# whole deadline in one try (and an attempt never outlives the deadline either).
ATTEMPT_TIMEOUT_S = 10.0
_MAX_SHOWN_BODY = 200


class ModelNotReady(AIPerfError):
    """The endpoint did not answer before the wait's deadline."""


@dataclass(frozen=True)
class Readiness:
    """How the wait went: seconds waited, attempts made, the last status of each check
    (None: that check was not made)."""

    waited_s: float
    attempts: int
    models_status: int | None
    inference_status: int | None


def request_url(config: UserConfig) -> str:
    """The URL a run's requests go to: the custom endpoint's path when one is set, else
    the endpoint plugin's own."""
    from aiperf.endpoints.base import make_endpoint

    if config.custom_endpoint:
        return config.url.rstrip("/") + config.custom_endpoint
    return make_endpoint(config).url


def wait_for_model(config: UserConfig, timeout_s: float | None = None,
                   interval_s: float | None = None) -> Readiness | None:
    """Block until the model answers (see the module); None when the wait is off
    (``timeout_s``, default ``config.wait_for_model_timeout``, is 0). Callable from a
    thread that runs an event loop: the wait then runs on a thread of its own."""
    timeout = config.wait_for_model_timeout if timeout_s is None else timeout_s
    if timeout <= 0:
        return None
    interval = config.wait_for_model_interval if interval_s is None else interval_s
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait_for_model_async(config, timeout, interval))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="aiperf-readiness") as pool:
        return pool.submit(asyncio.run,
                           wait_for_model_async(config, timeout, interval)).result()


class _Probe:
    """One wait's state: the session, the deadline, what was last heard."""

    def __init__(self, config: UserConfig, session: Any, deadline: float,
                 secrets: tuple[str, ...]) -> None:
        self.config = config
        self.session = session
        self.deadline = deadline
        self.secrets = secrets
        self.last = "no answer yet"

    def limit(self) -> Any:
        import aiohttp

        remaining = self.deadline - time.monotonic()
        return aiohttp.ClientTimeout(total=max(0.05, min(ATTEMPT_TIMEOUT_S, remaining)))

    def heard(self, where: str, what: str) -> None:
        self.last = f"{mask_url(where)}: {_shown(what, self.secrets)}"

    async def get(self, url: str) -> tuple[int, str]:
        async with self.session.get(url, timeout=self.limit()) as response:
            return response.status, await response.text(errors="replace")

    async def models(self) -> tuple[bool, int]:
        """Whether /v1/models lists the model (or the server has no list and its base URL
        answers 2xx), and the list's status."""
        import json

        url = self.config.url.rstrip("/") + "/v1/models"
        status, text = await self.get(url)
        if status == 404:
            base_status, base_text = await self.get(self.config.url)
            if 200 <= base_status < 300:
                return True, status
            self.heard(self.config.url, f"HTTP {base_status} (after a 404 from /v1/models) "
                                        f"{base_text}")
            return False, status
        if status != 200:
            self.heard(url, f"HTTP {status} {text}")
            return False, status
        try:
            listed = [str(entry.get("id")) for entry in json.loads(text).get("data", [])
                      if isinstance(entry, dict)]
        except (ValueError, AttributeError, TypeError):
            self.heard(url, f"HTTP 200 without a model list: {text}")
            return False, status
        if self.config.model in listed:
            return True, status
        self.heard(url, f"model {self.config.model!r} not listed yet (listed: "
                        f"{', '.join(listed[:10]) or 'none'})")
        return False, status

    async def inference(self, endpoint: Any, url: str, body: bytes) -> tuple[bool, int]:
        async with self.session.post(url, data=body, timeout=self.limit()) as response:
            status = response.status
            raw = await response.read()
        problem = _answer_problem(endpoint, status, raw)
        if problem is not None:
            self.heard(url, problem)
        return problem is None, status


async def wait_for_model_async(config: UserConfig, timeout_s: float,
                               interval_s: float = 0.5) -> Readiness:
    """The wait itself; raises ``ModelNotReady`` at the deadline."""
    import aiohttp

    from aiperf.dataset.models import Turn
    from aiperf.endpoints.base import make_endpoint

    if timeout_s <= 0 or interval_s <= 0:
        raise ValueError("timeout_s and interval_s must be > 0")
    mode = config.wait_for_model_mode
    probe_config = config.with_overrides(streaming=False)
    endpoint = make_endpoint(probe_config)
    headers = endpoint.headers()
    url = request_url(probe_config)
    body = b""
    if mode != "models":
        try:
            body = endpoint.encode(Turn(text="Hello", input_tokens=1, output_length=1))
        except Exception as exc:  # a plugin that cannot build a request from a bare prompt
            raise ModelNotReady(
                f"the {config.endpoint_type} endpoint cannot build a probe request "
                f"({type(exc).__name__}: {exc}); use --wait-for-model-mode models") from None
    started = time.monotonic()
    attempts = 0
    models_status: int | None = None
    inference_status: int | None = None
    connector = aiohttp.TCPConnector(force_close=True)  # no pooled socket outlives a try
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        probe = _Probe(config, session, started + timeout_s,
                       secret_values(headers, config.url))
        while True:
            attempts += 1
            target = config.url
            try:
                ready = True
                if mode in ("models", "both"):
                    ready, models_status = await probe.models()
                if ready and mode in ("inference", "both"):
                    target = url
                    ready, inference_status = await probe.inference(endpoint, url, body)
                if ready:
                    return Readiness(time.monotonic() - started, attempts, models_status,
                                     inference_status)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                probe.heard(target, f"{type(exc).__name__}: {exc}")
            remaining = probe.deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(interval_s, remaining))
            if probe.deadline - time.monotonic() <= 0:
                break
    raise ModelNotReady(
        f"the model {config.model!r} at {mask_url(config.url)} did not answer within "
        f"--wait-for-model-timeout {timeout_s:g} s ({attempts} attempts, mode {mode}); "
        f"last: {probe.last}")


def _answer_problem(endpoint: Any, status: int, raw: bytes) -> str | None:
    """Why this answer to the probe request is not a model's answer; None when it is."""
    if not 200 <= status < 300:
        return f"HTTP {status} {raw[:_MAX_SHOWN_BODY].decode('utf-8', 'replace')}"
    try:
        parsed = endpoint.parse_body(raw)
    except Exception as exc:  # a plugin's parser on a body that is not its protocol
        return (f"HTTP {status} with a body the {endpoint.config.endpoint_type} endpoint "
                f"cannot read: {type(exc).__name__}: {exc}")
    if parsed.error is not None:
        return f"HTTP {status} with an error: {parsed.error}"
    return None


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    """A server's words as an error may show them: one line, short, no secret."""
    return scrub(" ".join(text.split())[:_MAX_SHOWN_BODY], secrets)
