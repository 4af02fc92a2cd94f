"""The profile fingerprint: equal for the same load, named keys when the load differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.baselines.fingerprint import (
    LOAD_KEYS,
    Fingerprint,
    differing_keys,
    fingerprint,
)
from aiperf.common.config import UserConfig

# Settings a fingerprint must not see: the target, credentials, request bounds, reporting.
NOT_LOAD: dict[str, Any] = {
    "url": "http://user:hunter2@10.0.0.9:9000",
    "api_key": "sk-not-stored",
    "headers": {"Authorization": "Bearer sk-header", "X-Route": "blue"},
    "request_timeout_seconds": 5.0,
    "request_first_byte_timeout_seconds": 1.0,
    "failed_request_threshold": 3.0,
    "slice_duration": 2.0,
}


def test_the_keys_are_the_load_keys_in_clear_and_the_digest_is_16_hex() -> None:
    fp = fingerprint(UserConfig(concurrency=4, request_count=100))
    assert tuple(fp.keys) == LOAD_KEYS
    assert fp.keys["concurrency"] == 4 and fp.keys["request_count"] == 100
    assert len(fp.digest) == 16 and int(fp.digest, 16) >= 0


def test_target_credentials_timeouts_and_reporting_do_not_change_it() -> None:
    base = UserConfig(concurrency=4, request_count=100)
    other = base.with_overrides(**NOT_LOAD)
    assert fingerprint(other) == fingerprint(base)
    stored = fingerprint(other).model_dump_json()
    for secret in ("hunter2", "sk-not-stored", "sk-header", "blue", "10.0.0.9"):
        assert secret not in stored


def test_defaults_are_resolved_so_spelling_them_out_is_the_same_load() -> None:
    implicit = UserConfig()  # concurrency 1, 10 requests, concurrency strategy, synthetic
    explicit = UserConfig(concurrency=1, request_count=10, timing_strategy="concurrency",
                          dataset="synthetic", endpoint_type="CHAT")
    assert fingerprint(implicit) == fingerprint(explicit)


def test_arrivals_count_only_for_a_rate_driven_run() -> None:
    closed = UserConfig(concurrency=4)
    assert fingerprint(closed) == fingerprint(closed.with_overrides(arrival_pattern="constant"))
    rate = UserConfig(request_rate=10.0, request_count=50)
    constant = rate.with_overrides(arrival_pattern="constant")
    assert differing_keys(fingerprint(rate), fingerprint(constant)) == ["arrival_pattern"]
    # Smoothness shapes only gamma arrivals.
    assert fingerprint(rate) == fingerprint(rate.with_overrides(arrival_smoothness=3.0))
    gamma = rate.with_overrides(arrival_pattern="gamma")
    smoother = gamma.with_overrides(arrival_smoothness=3.0)
    assert differing_keys(fingerprint(gamma), fingerprint(smoother)) == ["arrival_smoothness"]


def test_grace_period_counts_only_for_a_duration_run() -> None:
    count = UserConfig(concurrency=2, request_count=20)
    assert fingerprint(count) == fingerprint(count.with_overrides(benchmark_grace_period=1.0))
    timed = UserConfig(concurrency=2, benchmark_duration=5.0)
    shorter = timed.with_overrides(benchmark_grace_period=1.0)
    assert differing_keys(fingerprint(timed), fingerprint(shorter)) == [
        "benchmark_grace_period"]


def test_an_input_file_counts_by_content_not_by_path(tmp_path: Path) -> None:
    lines = '{"text": "hello there"}\n{"text": "general kenobi"}\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "prompts.jsonl", tmp_path / "b" / "elsewhere.jsonl"
    first.write_text(lines)
    second.write_text(lines)
    a = fingerprint(UserConfig(input_file=str(first)))
    assert a == fingerprint(UserConfig(input_file=str(second)))
    assert a.keys["input_file"].startswith("sha256:")
    assert str(tmp_path) not in a.model_dump_json()
    second.write_text(lines + '{"text": "one more"}\n')
    assert differing_keys(a, fingerprint(UserConfig(input_file=str(second)))) == ["input_file"]


def test_a_missing_input_file_is_named_not_raised(tmp_path: Path) -> None:
    fp = fingerprint(UserConfig(input_file=str(tmp_path / "gone.jsonl")))
    assert fp.keys["input_file"] == "unreadable:gone.jsonl"


def test_differing_keys_are_sorted_and_include_keys_only_one_side_has() -> None:
    a = fingerprint(UserConfig(concurrency=2, isl=64, streaming=True))
    b = fingerprint(UserConfig(concurrency=8, isl=64, streaming=False, model="other"))
    assert differing_keys(a, b) == ["concurrency", "model", "request_count", "streaming"]
    older = Fingerprint(digest="0" * 16, keys={**a.keys, "retired_key": 1})
    assert differing_keys(a, older) == ["retired_key"]
    assert differing_keys(a, a) == []


def test_a_fingerprint_read_back_from_json_is_equal() -> None:
    fp = fingerprint(UserConfig(request_rate=2.5, request_count=30, extra_inputs={
        "max_tokens": 12, "stop": ["a", "b"], "nested": {"x": 1.5}}, goodput={
        "request_latency": 200}))
    assert Fingerprint.model_validate_json(fp.model_dump_json()) == fp


# -- properties

_LOAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "streaming": st.booleans(),
    "model": st.sampled_from(["m1", "m2", "mock-model"]),
    "concurrency": st.integers(1, 64),
    "request_count": st.integers(1, 10_000),
    "isl": st.integers(1, 4096),
    "isl_stddev": st.sampled_from([0.0, 0.5, 10.0]),
    "osl": st.integers(1, 4096),
    "osl_stddev": st.sampled_from([0.0, 0.5, 10.0]),
    "random_seed": st.integers(0, 2**31),
    "warmup_request_count": st.integers(0, 100),
    "extra_inputs": st.dictionaries(st.sampled_from(["max_tokens", "temperature", "top_p"]),
                                    st.integers(0, 3), max_size=2),
}

configs = st.fixed_dictionaries({}, optional=_LOAD_VALUES).map(lambda kw: UserConfig(**kw))


@settings(max_examples=150, deadline=None)
@given(configs, configs)
def test_fingerprints_are_equal_iff_their_load_keys_are(a: UserConfig, b: UserConfig) -> None:
    fa, fb = fingerprint(a), fingerprint(b)
    assert (fa.digest == fb.digest) == (fa.keys == fb.keys)
    assert (fa == fb) == (differing_keys(fa, fb) == [])


@settings(max_examples=150, deadline=None)
@given(configs, st.data())
def test_changing_one_load_key_changes_the_digest_and_is_named(
        config: UserConfig, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(_LOAD_VALUES)))
    before = fingerprint(config)
    value = data.draw(_LOAD_VALUES[key].filter(lambda v: v != before.keys[key]))
    after = fingerprint(config.with_overrides(**{key: value}))
    assert after.digest != before.digest
    expected = {key}
    if key == "concurrency" and config.request_count is None:
        expected.add("request_count")  # its default is 10 x concurrency
    assert set(differing_keys(before, after)) == expected


@settings(max_examples=60, deadline=None)
@given(configs, st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in NOT_LOAD.items()}))
def test_settings_outside_the_load_never_change_it(config: UserConfig,
                                                   others: dict[str, Any]) -> None:
    assert fingerprint(config.with_overrides(**others)) == fingerprint(config)
