"""The truth of the built-in endpoints that speak other protocols than OpenAI chat: each
case is a profile against the mock server, whose timings are fixed, so what every request
must measure is known by construction (``MockServerConfig.true_quantile``), and so are the
token counts (the prompt's synthetic words, the output length the request asks for).

The checks run inside a user's pytest session (``check``), on ``aiperf_result``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiperf.mock_server import MockServerConfig
from aiperf.mock_server.responders import ResponsesResponder

# Fixed pauses, far enough apart that a wrong one is plain: a whole answer 40 ms after the
# request; a stream's first token at 30 ms, then one every 5 ms.
SERVER = MockServerConfig(ttft_ms=30.0, itl_ms=5.0, latency_ms=40.0, tokens=6)
RESPONSES_REASONING_TOKENS = 2  # the first two output tokens of /v1/responses are reasoning
RESPONDERS = [ResponsesResponder(reasoning_tokens=RESPONSES_REASONING_TOKENS)]
ISL, OSL = 12, 6
# A rankings request: a 5-token query and 3 passages of 4 tokens.
RANKINGS = {"rankings_query_prompt_token_mean": 5, "rankings_passages_mean": 3,
            "rankings_passages_prompt_token_mean": 4}
RANKINGS_ISL = 5 + 3 * 4
# The template endpoint, configured for the mock's plain JSON API (POST /).
TEMPLATE = {
    "payload_template": '{"model": {{ model|tojson }}, "prompt": {{ text|tojson }}, '
                        '"max_tokens": {{ max_tokens|tojson }}, "stream": {{ stream|tojson }}}',
    "response_field": "output.text", "usage_field": "usage"}
CONCURRENCY = 2
REQUESTS = 8
# As the truth suite's c=16 margin (tests/truth/cases.py): this box runs other test
# sessions too; the errors these cases exist to catch are whole pauses, not milliseconds.
ABS_MS, REL = 8.0, 0.15
EARLY_MS = 0.5


@dataclass(frozen=True)
class ProtocolCase:
    name: str
    endpoint: str
    streaming: bool = False
    profile: dict[str, Any] = field(default_factory=dict)
    isl: int = ISL
    osl: int | None = OSL  # None: the endpoint generates no tokens
    reasoning: int | None = None

    def times(self) -> dict[str, float]:
        """What each time metric must read (ms), from the server's schedule."""
        tokens = self.osl or 1
        latency = SERVER.true_quantile("request_latency", 0.5, stream=self.streaming,
                                       tokens=tokens)
        if not self.streaming:
            return {"request_latency": latency}
        times = {"request_latency": latency,
                 "time_to_first_token": SERVER.true_quantile("time_to_first_token", 0.5)}
        if self.reasoning:
            times["time_to_first_output_token"] = (
                times["time_to_first_token"] + self.reasoning * SERVER.itl_ms)
        return times

    def counts(self) -> dict[str, int]:
        counts = {"input_sequence_length": self.isl}
        if self.osl is not None:
            counts["output_sequence_length"] = self.osl
        if self.reasoning is not None:
            counts["reasoning_token_count"] = self.reasoning
        return counts

    def headline(self) -> tuple[str, float]:
        tag = "time_to_first_token" if self.streaming else "request_latency"
        return tag, self.times()[tag]


def margin(truth_ms: float) -> float:
    return max(ABS_MS, REL * truth_ms)


CASES = [
    ProtocolCase("tei_rankings", "rankings", profile=RANKINGS, isl=RANKINGS_ISL, osl=None),
    ProtocolCase("cohere_rankings", "cohere-rankings", profile=RANKINGS, isl=RANKINGS_ISL,
                 osl=None),
    ProtocolCase("nim_rankings", "nim-rankings", profile=RANKINGS, isl=RANKINGS_ISL,
                 osl=None),
    ProtocolCase("responses", "responses", reasoning=RESPONSES_REASONING_TOKENS),
    ProtocolCase("responses_stream", "responses", streaming=True,
                 reasoning=RESPONSES_REASONING_TOKENS),
    ProtocolCase("tgi_generate", "huggingface-generate"),
    ProtocolCase("tgi_generate_stream", "huggingface-generate", streaming=True),
    ProtocolCase("template", "template", profile=TEMPLATE),
    ProtocolCase("template_stream", "template", streaming=True, profile=TEMPLATE),
]
BY_NAME = {case.name: case for case in CASES}
# Streams that end without [DONE]: measured only once the deriver asks the endpoint.
NO_DONE_STREAMS = {"responses_stream", "tgi_generate_stream"}


def check(result: Any, name: str) -> None:
    """Every metric of the case against its truth; one assertion naming every miss."""
    case = BY_NAME[name]
    problems = []
    if result.request_count != REQUESTS or result.error_count:
        problems.append(f"{result.request_count} requests, {result.error_count} errors: "
                        f"{result.error_summary[:2]}")
    for tag, truth in case.times().items():
        if tag not in result:
            problems.append(f"{tag}: missing (truth {truth:.1f} ms)")
            continue
        p50, low = result[tag].stat("p50"), result[tag].stat("min")
        if abs(p50 - truth) > margin(truth):
            problems.append(f"{tag}: p50 {p50:.2f} ms, truth {truth:.1f} ± "
                            f"{margin(truth):.1f}")
        if low < truth - EARLY_MS:
            problems.append(f"{tag}: min {low:.2f} ms, earlier than the server sent it "
                            f"({truth:.1f})")
    for tag, truth in case.counts().items():
        seen = sorted({int(v) for v in result[tag].values}) if tag in result else "missing"
        if seen != [truth]:
            problems.append(f"{tag}: {seen}, truth {truth} for every request")
    if not case.streaming and "time_to_first_token" in result:
        problems.append("time_to_first_token reported for a whole answer")
    assert not problems, "\n  ".join([f"{name}: measured vs truth:", *problems])
