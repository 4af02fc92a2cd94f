"""Wait, before a run, until the model behind the endpoint answers (AIPerf's
``--wait-for-model-timeout``): the common CI case of a server still loading its weights.

Each attempt is ``GET <url>/v1/models`` (200 passes; 404 or 405, a server without the
list, passes too), then one real request of one output token, built by the run's own
endpoint plugin and sent to the run's own request URL, not streamed. A 2xx answer that the
plugin parses without an error means ready. Anything else (connection refused, 503 while
loading, a timeout, an error body) is retried every ``interval`` until the deadline, then
``ModelNotReady`` names the URL and the last thing the server said. The API key is sent
but never shown: error texts are scrubbed of every secret header value and URL password.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiperf.common.config import UserConfig, mask_url
from aiperf.errors import AIPerfError
from aiperf.transports.redact import scrub, secret_values

DEFAULT_INTERVAL_S = 0.5
# One attempt's HTTP limit: a server that accepts and never answers must not eat the
# whole deadline in one try (and never outlives the deadline either).
ATTEMPT_TIMEOUT_S = 10.0
_MAX_SHOWN_BODY = 200


class ModelNotReady(AIPerfError):
    """The endpoint did not answer before the wait's deadline."""


@dataclass(frozen=True)
class Readiness:
    """How the wait went: seconds waited, attempts made, what answered."""

    waited_s: float
    attempts: int
    models_status: int | None  # None: no models check answered (refused, timed out)
    inference_status: int


def request_url(config: UserConfig) -> str:
    """The URL a run's requests go to: the custom endpoint's path when one is set, else
    the endpoint plugin's own."""
    from aiperf.endpoints.base import make_endpoint

    if config.custom_endpoint:
        return config.url.rstrip("/") + config.custom_endpoint
    return make_endpoint(config).url


def wait_for_model(config: UserConfig, timeout_s: float | None = None,
                   interval_s: float = DEFAULT_INTERVAL_S) -> Readiness | None:
    """Block until the model answers (see the module); None when the wait is off
    (``timeout_s``, default ``config.wait_for_model_timeout``, is 0). Callable from a
    thread that runs an event loop: the wait then runs on a thread of its own."""
    timeout = config.wait_for_model_timeout if timeout_s is None else timeout_s
    if timeout <= 0:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait_for_model_async(config, timeout, interval_s))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="aiperf-readiness") as pool:
        return pool.submit(asyncio.run,
                           wait_for_model_async(config, timeout, interval_s)).result()


async def wait_for_model_async(config: UserConfig, timeout_s: float,
                               interval_s: float = DEFAULT_INTERVAL_S) -> Readiness:
    """The wait itself; raises ``ModelNotReady`` at the deadline."""
    import aiohttp

    from aiperf.dataset.models import Turn
    from aiperf.endpoints.base import make_endpoint

    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    probe_config = config.with_overrides(streaming=False)
    endpoint = make_endpoint(probe_config)
    headers = endpoint.headers()
    secrets = secret_values(headers, config.url)
    models_url = config.url.rstrip("/") + "/v1/models"
    url = request_url(probe_config)
    body = endpoint.encode(Turn(text="Hello", input_tokens=1, output_length=1))
    started = time.monotonic()
    deadline = started + timeout_s
    attempts = 0
    last = "no answer yet"

    def remaining() -> float:
        return deadline - time.monotonic()

    connector = aiohttp.TCPConnector(force_close=True)  # no pooled socket outlives a try
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        while True:
            attempts += 1
            models_status: int | None = None
            try:
                limit = aiohttp.ClientTimeout(total=max(0.05, min(ATTEMPT_TIMEOUT_S,
                                                                  remaining())))
                async with session.get(models_url, timeout=limit) as response:
                    models_status = response.status
                    text = await response.text(errors="replace")
                if models_status not in (200, 404, 405):
                    last = f"GET {mask_url(models_url)}: HTTP {models_status} " \
                           f"{_shown(text, secrets)}"
                else:
                    limit = aiohttp.ClientTimeout(total=max(0.05, min(ATTEMPT_TIMEOUT_S,
                                                                      remaining())))
                    async with session.post(url, data=body, timeout=limit) as response:
                        status = response.status
                        raw = await response.read()
                    problem = _answer_problem(endpoint, status, raw)
                    if problem is None:
                        return Readiness(time.monotonic() - started, attempts,
                                         models_status, status)
                    last = f"POST {mask_url(url)}: {_shown(problem, secrets)}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                where = mask_url(models_url if models_status is None else url)
                detail = str(exc) or type(exc).__name__
                last = f"{where}: {type(exc).__name__}: {_shown(detail, secrets)}"
            if remaining() <= 0:
                break
            await asyncio.sleep(min(interval_s, max(0.0, remaining())))
            if remaining() <= 0:
                break
    raise ModelNotReady(
        f"the model {config.model!r} at {mask_url(config.url)} did not answer within "
        f"--wait-for-model-timeout {timeout_s:g} s ({attempts} attempts); last: {last}")


def _answer_problem(endpoint: object, status: int, raw: bytes) -> str | None:
    """Why this answer to the probe request is not a model's answer; None when it is."""
    from aiperf.endpoints.base import BaseEndpoint

    assert isinstance(endpoint, BaseEndpoint)
    if not 200 <= status < 300:
        return f"HTTP {status} {raw[:_MAX_SHOWN_BODY].decode('utf-8', 'replace')}"
    try:
        parsed = endpoint.parse_body(raw)
    except Exception as exc:  # a plugin's parser on a body that is not its protocol
        return f"HTTP {status} with a body the {endpoint.config.endpoint_type} endpoint " \
               f"cannot read: {type(exc).__name__}: {exc}"
    if parsed.error is not None:
        return f"HTTP {status} with an error: {parsed.error}"
    return None


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    """A server's words as an error may show them: one line, short, no secret."""
    return scrub(" ".join(text.split())[:_MAX_SHOWN_BODY], secrets)
