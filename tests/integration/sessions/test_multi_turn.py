"""Multi-turn sessions through the mesh against a server that checks every turn's history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiperf.mesh import Mesh
from tests.harness.session_server import SessionServer


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=2, command_timeout=20) as running:
        yield running


@pytest.fixture
def server() -> Iterator[SessionServer]:
    with SessionServer(header="X-Session-ID", delay_ms=2) as running:
        yield running


def _accounted(result, sent: int) -> None:
    assert result.invariant["ok"], result.invariant
    assert result.invariant["credits_issued"] == sent
    assert len(result.records) == sent


@pytest.mark.parametrize(("streaming", "transport"),
                         [(True, None), (False, None), (True, "aiohttp")])
def test_synthetic_sessions_carry_the_servers_real_answers_in_order(
        mesh: Mesh, server: SessionServer, streaming: bool, transport: str | None) -> None:
    """Each turn carries the session's header (the server counts turns by it) with either
    client: the lean one sends the bytes it made once a session (``headers_with``)."""
    result = mesh.run(url=server.url, streaming=streaming, concurrency=4,
                      conversation_num=6, conversation_turn_mean=3, isl=5, osl=4,
                      session_header="X-Session-ID", transport=transport)
    stats = server.stats()
    assert stats["violations"] == []
    _accounted(result, 18)
    assert result.error_count == 0
    # Six sessions, each of three answered turns; no two turns of one at once.
    assert sorted(stats["sessions"].values()) == [3] * 6
    assert stats["max_in_flight"] == 1
    # A turn carries 2k + 1 messages: the history of k exchanges and its own.
    assert sorted(stats["prompt_messages"]) == sorted([1, 3, 5] * 6)


def test_a_multi_turn_file_runs_each_session_whole_with_its_delays(
        mesh: Mesh, server: SessionServer, tmp_path: Path) -> None:
    file = tmp_path / "sessions.jsonl"
    lines = [{"session_id": "a", "turns": [{"text": "hello there"},
                                           {"text": "and then", "delay": 30},
                                           {"text": "last one", "delay": 10}]},
             {"session_id": "b", "turns": [{"text": "single question"}]},
             {"session_id": "c", "turns": [{"texts": ["two", "parts"]}, {"text": "more"}]}]
    file.write_text("\n".join(json.dumps(line) for line in lines))
    result = mesh.run(url=server.url, streaming=True, concurrency=2, input_file=str(file),
                      custom_dataset_type="multi_turn", conversation_num=3,
                      session_header="X-Session-ID")
    stats = server.stats()
    assert stats["violations"] == []
    _accounted(result, 6)
    assert sorted(stats["sessions"].values()) == [1, 2, 3]
    # The whole conversation's tokens are the input length: the server counts words.
    assert result.error_count == 0


def test_sharegpt_sends_the_human_turns_and_never_the_canned_answers(
        mesh: Mesh, server: SessionServer, tmp_path: Path) -> None:
    file = tmp_path / "sharegpt.json"
    file.write_text(json.dumps([
        {"id": "x", "conversations": [
            {"from": "human", "value": "first question"},
            {"from": "gpt", "value": "a canned answer the server never gave"},
            {"from": "human", "value": "second question"}]},
        {"id": "y", "conversations": [{"from": "system", "value": "be brief"},
                                      {"from": "human", "value": "only one"}]},
    ]))
    result = mesh.run(url=server.url, concurrency=2, input_file=str(file),
                      custom_dataset_type="sharegpt", request_count=6,
                      session_header="X-Session-ID")
    assert server.stats()["violations"] == []
    _accounted(result, 6)
    assert result.error_count == 0


def test_a_duration_run_ends_sessions_midway_and_accounts_every_turn_it_sent(
        mesh: Mesh, server: SessionServer) -> None:
    result = mesh.run(url=server.url, concurrency=3, benchmark_duration=0.5,
                      benchmark_grace_period=2, conversation_num=4,
                      conversation_turn_mean=50, conversation_turn_delay_mean=20,
                      session_header="X-Session-ID")
    stats = server.stats()
    assert stats["violations"] == []
    # Turns after the end were never sent: exactly what the server answered is recorded.
    assert result.invariant["ok"], result.invariant
    assert len(result.records) == stats["requests"] > 0
    assert result.error_count == 0


@pytest.mark.parametrize("usage", [True, False])
def test_a_turns_input_length_is_the_whole_conversation(mesh: Mesh, usage: bool) -> None:
    # Two turns of 5 prompt tokens, 4-token answers, a 3-token system prompt: the first
    # turn sends 3 + 5, the second 3 + 5 + 4 + 5. The server counts words as tokens; without
    # its usage the worker's own count must agree.
    with SessionServer(answer_tokens=4, usage=usage) as server:
        result = mesh.run(url=server.url, streaming=True, concurrency=2, conversation_num=3,
                          conversation_turn_mean=2, isl=5, shared_system_prompt_length=3)
        assert server.stats()["violations"] == []
    assert result.invariant["ok"] and result.error_count == 0
    assert sorted(r["metrics"]["input_sequence_length"]["value"]
                  for r in result.records) == [8, 8, 8, 17, 17, 17]


def test_prefix_prompts_count_in_the_input_length(mesh: Mesh) -> None:
    with SessionServer(require_session=False, usage=False) as server:
        result = mesh.run(url=server.url, concurrency=2, request_count=12, isl=10,
                          prompt_prefix_pool_size=2, prompt_prefix_length=6,
                          shared_system_prompt_length=4)
    assert result.invariant["ok"] and result.error_count == 0
    assert result["input_sequence_length"].avg == 20


def test_warmup_sessions_end_with_the_warmup(mesh: Mesh, server: SessionServer) -> None:
    result = mesh.run(url=server.url, concurrency=2, warmup_request_count=5, request_count=12,
                      conversation_num=3, conversation_turn_mean=4,
                      session_header="X-Session-ID")
    assert server.stats()["violations"] == []
    assert result.invariant["ok"] and len(result.records) == 17
    assert result.request_count == 12 and result.error_count == 0
