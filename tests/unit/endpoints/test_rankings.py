"""The rankings endpoints (TEI, Cohere, NIM) and their synthetic query + passages dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.dataset.rankings import SyntheticRankingsLoader, dataset_name
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.endpoints.base import InvalidResponse
from aiperf.errors import ConfigError
from aiperf.mock_server.responders import (
    BadRequest,
    CohereRankingsResponder,
    NIMRankingsResponder,
    RankingsResponder,
)
from aiperf.plugin import PluginType, plugins
from tests.harness.endpoints import make_endpoint as endpoint

TURN = Turn(text="what is a reranker", input_tokens=11,
            extra={"passages": ["it scores passages", "a kind of model"], "top_n": 2})


@pytest.mark.parametrize(("name", "path", "expected"), [
    ("rankings", "/rerank",
     {"model": "m", "query": "what is a reranker",
      "texts": ["it scores passages", "a kind of model"], "top_n": 2, "raw_scores": False}),
    ("hf_tei_rankings", "/rerank",
     {"model": "m", "query": "what is a reranker",
      "texts": ["it scores passages", "a kind of model"], "top_n": 2, "raw_scores": False}),
    ("cohere-rankings", "/v2/rerank",
     {"model": "m", "query": "what is a reranker",
      "documents": ["it scores passages", "a kind of model"], "top_n": 2, "raw_scores": False}),
    ("nim-rankings", "/v1/ranking",
     {"model": "m", "query": {"text": "what is a reranker"},
      "passages": [{"text": "it scores passages"}, {"text": "a kind of model"}], "top_n": 2,
      "raw_scores": False}),
])  # fmt: skip
def test_each_protocol_puts_query_and_passages_where_it_wants_them(
        name: str, path: str, expected: dict[str, object]) -> None:
    ep = endpoint(name, model="m", extra_inputs={"raw_scores": False}, streaming=True)
    assert json.loads(ep.encode(TURN)) == expected
    assert ep.url.endswith(path) and not ep.streaming


def test_passages_given_as_nim_objects_are_read_too() -> None:
    turn = Turn("q", 1, extra={"passages": [{"text": "p1"}, "p2"]})
    assert json.loads(endpoint("rankings").encode(turn))["texts"] == ["p1", "p2"]


@pytest.mark.parametrize("passages", [7, [1], [{"txt": "x"}]])
def test_a_bad_passage_is_a_clear_error(passages: object) -> None:
    with pytest.raises(ValueError, match="passage"):
        endpoint("rankings").encode(Turn("q", 1, extra={"passages": passages}))


@pytest.mark.parametrize(("name", "body"), [
    ("rankings", b'[{"index":1,"score":0.9},{"index":0,"score":0.1}]'),
    ("rankings", b'{"results":[{"index":0,"score":0.9}]}'),
    ("cohere-rankings", b'{"id":"x","results":[{"index":0,"relevance_score":0.9}]}'),
    ("nim-rankings", b'{"rankings":[{"index":0,"logit":-1.5}],'
                     b'"usage":{"prompt_tokens":12,"total_tokens":12}}'),
])  # fmt: skip
def test_success_bodies_parse_without_tokens(name: str, body: bytes) -> None:
    parsed = endpoint(name).parse_body(body)
    assert parsed.error is None and parsed.content == "" and parsed.completion_tokens is None
    assert parsed.prompt_tokens == (12 if b"usage" in body else None)


@pytest.mark.parametrize(("name", "body", "message"), [
    ("rankings", b'{"error":"Input validation error","error_type":"Validation"}',
     "Input validation error"),
    ("cohere-rankings", b'{"message":"invalid request: query is empty"}', "query is empty"),
    ("nim-rankings", b'{"detail":"model not found"}', "model not found"),
])  # fmt: skip
def test_error_bodies_become_errors(name: str, body: bytes, message: str) -> None:
    error = endpoint(name).parse_body(body).error
    assert error is not None and message in error


@pytest.mark.parametrize(("name", "body"), [
    ("rankings", b'{"scores":[0.1]}'),
    ("rankings", b'[{"index":0}]'),
    ("cohere-rankings", b'[{"index":0,"relevance_score":1}]'),
    ("nim-rankings", b'{"rankings":[{"index":0,"score":1}]}'),
    ("nim-rankings", b'{"rankings":'),
])  # fmt: skip
def test_a_body_of_another_shape_is_invalid(name: str, body: bytes) -> None:
    with pytest.raises(InvalidResponse):
        endpoint(name).parse_body(body)


@pytest.mark.parametrize(("responder", "name"), [
    (RankingsResponder(), "rankings"),
    (CohereRankingsResponder(), "cohere-rankings"),
    (NIMRankingsResponder(), "nim-rankings"),
])  # fmt: skip
def test_the_mock_reads_what_the_endpoint_sends_and_answers_what_it_parses(
        responder: RankingsResponder, name: str) -> None:
    ep = endpoint(name)
    plan = responder.parse(json.loads(ep.encode(TURN)), 16)
    assert (plan.items, plan.prompt_tokens, plan.stream) == (2, 11, False)
    parsed = ep.parse_body(responder.body("r1", "", plan))
    assert parsed.error is None
    with pytest.raises(BadRequest):
        responder.parse({"query": 5}, 16)


def config(**values: object) -> UserConfig:
    return UserConfig(**{"endpoint_type": "rankings", "request_count": 20, **values})


def test_rankings_endpoints_get_the_rankings_dataset_unless_one_is_named() -> None:
    assert dataset_name(config()) == "synthetic_rankings"
    assert dataset_name(UserConfig(endpoint_type="nim_rankings")) == "synthetic_rankings"
    assert dataset_name(config(dataset="synthetic")) == "synthetic"
    assert dataset_name(UserConfig(endpoint_type="chat")) == "synthetic"


def test_aiperf_013_defaults() -> None:
    cfg = UserConfig()
    assert (cfg.rankings_passages_mean, cfg.rankings_passages_stddev,
            cfg.rankings_passages_prompt_token_mean, cfg.rankings_passages_prompt_token_stddev,
            cfg.rankings_query_prompt_token_mean,
            cfg.rankings_query_prompt_token_stddev) == (1, 0, 550, 0, 550, 0)


@settings(max_examples=25, deadline=None)
@given(passages=st.integers(1, 6), passage_tokens=st.integers(1, 40),
       query_tokens=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_fixed_sizes_are_exact_and_the_input_length_counts_query_and_passages(
        passages: int, passage_tokens: int, query_tokens: int, seed: int) -> None:
    turns = SyntheticRankingsLoader(config(
        rankings_passages_mean=passages, rankings_passages_prompt_token_mean=passage_tokens,
        rankings_query_prompt_token_mean=query_tokens, random_seed=seed),
        BuiltinTokenizer()).load()
    assert len(turns) == 20
    for turn in turns:
        assert len(turn.text.split()) == query_tokens
        assert [len(p.split()) for p in turn.extra["passages"]] == [passage_tokens] * passages
        assert turn.input_tokens == query_tokens + passages * passage_tokens
        assert turn.output_length is None


def test_spread_sizes_vary_around_their_means_and_the_seed_repeats_them() -> None:
    cfg = config(request_count=400, rankings_passages_mean=5, rankings_passages_stddev=2,
                 rankings_query_prompt_token_mean=30, rankings_query_prompt_token_stddev=5,
                 rankings_passages_prompt_token_mean=20)
    turns = SyntheticRankingsLoader(cfg, BuiltinTokenizer()).load()
    counts = [len(t.extra["passages"]) for t in turns]
    queries = [len(t.text.split()) for t in turns]
    assert min(counts) >= 1 and len(set(counts)) > 3 and 4.5 < sum(counts) / len(counts) < 5.5
    assert 28 < sum(queries) / len(queries) < 32
    again = SyntheticRankingsLoader(cfg, BuiltinTokenizer()).load()
    assert [t.extra for t in again] == [t.extra for t in turns]


def test_a_file_for_a_rankings_endpoint_is_read_as_rankings(tmp_path: Path) -> None:
    file = tmp_path / "rerank.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in [
        {"query": "q one", "passages": ["a b", "c"], "extra": {"top_n": 1}},
        {"text": "q two", "extra": {"passages": ["d e f"]}},
        {"texts": [{"name": "query", "contents": ["q three x"]},
                   {"name": "passages", "contents": ["g", "h"]}], "timestamp": 5},
        {"query": "no passages"},
    ]))
    cfg = config(input_file=str(file))
    assert dataset_name(cfg) == "rankings_jsonl"
    assert dataset_name(config(input_file=str(file), custom_dataset_type="single_turn")) == \
        "single_turn"
    loader = plugins.get_class(PluginType.DATASET_LOADER, "rankings_jsonl")
    turns = loader(cfg, BuiltinTokenizer()).load()
    assert [(t.text, t.extra["passages"], t.input_tokens) for t in turns] == [
        ("q one", ["a b", "c"], 5), ("q two", ["d e f"], 5), ("q three x", ["g", "h"], 5),
        ("no passages", [], 2)]
    assert turns[0].extra["top_n"] == 1 and turns[2].timestamp_ms == 5
    body = json.loads(endpoint("nim-rankings").encode(turns[0]))
    assert body["passages"] == [{"text": "a b"}, {"text": "c"}] and body["top_n"] == 1


@pytest.mark.parametrize(("line", "message"), [
    ({"passages": ["a"]}, "needs a 'query' string"),
    ({"query": "q", "passages": "a"}, "'passages' must be a list of strings"),
    ({"query": "q", "docs": []}, "unknown field"),
    ({"texts": [{"name": "doc", "contents": ["a"]}]}, "name of query, queries or passages"),
    ({"query": "q", "extra": []}, "'extra' must be an object"),
])  # fmt: skip
def test_a_bad_rankings_line_is_named_by_file_and_line(tmp_path: Path, line: dict,
                                                       message: str) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text(json.dumps({"query": "fine"}) + "\n" + json.dumps(line) + "\n")
    loader = plugins.get_class(PluginType.DATASET_LOADER, "rankings_jsonl")
    with pytest.raises(ConfigError, match=rf"bad\.jsonl:2: .*{re.escape(message)}"):
        loader(config(input_file=str(file)), BuiltinTokenizer()).load()
