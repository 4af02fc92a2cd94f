from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import ServiceConfig, UserConfig, run_deadline, stall_timeout
from aiperf.errors import ConfigError


def test_unknown_key_names_it_and_lists_the_allowed_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'concurency'; allowed keys: .*concurrency"):
        UserConfig.build(concurency=4)


def test_a_bad_value_names_the_key_and_the_value() -> None:
    with pytest.raises(ConfigError, match=r"concurrency: Input should be greater than or equal "
                                          r"to 1 \(got 0\)"):
        UserConfig.build(concurrency=0)


def test_errors_can_spell_keys_as_cli_flags() -> None:
    with pytest.raises(ConfigError, match=r"--request-count: "):
        UserConfig.build(name_of=lambda k: "--" + k.replace("_", "-"), request_count=-1)


def test_arrival_pattern_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"arrival_pattern: Input should be 'constant', "
                                          r"'poisson' or 'gamma'"):
        UserConfig.build(arrival_pattern="burst")


def test_unknown_endpoint_type_lists_the_plugins() -> None:
    with pytest.raises(ConfigError, match=r"endpoint_type: .*unknown endpoint 'chatt'; "
                                          r"allowed: chat, .*completions, embeddings, .*"
                                          r"responses"):
        UserConfig.build(endpoint_type="chatt")


def test_goodput_accepts_aiperfs_string_form() -> None:
    config = UserConfig(goodput="time_to_first_token:200 request_latency:1000", streaming=True)
    assert config.goodput == {"time_to_first_token": 200.0, "request_latency": 1000.0}


@pytest.mark.parametrize(("goodput", "extra", "problem"), [
    ({"ttft": 100}, {}, "'ttft' is not a metric"),
    ({"request_throughput": 5}, {}, "'request_throughput' is one number per run"),
    # One value per chunk gap: it once crashed the records manager.
    ({"inter_chunk_latency": 5}, {"streaming": True}, "'inter_chunk_latency' has many values"),
    ({"time_to_first_token": 100}, {}, "'time_to_first_token' needs a streaming profile"),
    ({"output_sequence_length": 10}, {"endpoint_type": "embeddings"},
     "'output_sequence_length' is not measured: this endpoint produces no tokens"),
])  # fmt: skip
def test_goodput_refuses_what_the_profile_cannot_measure_per_request(
    goodput: dict, extra: dict, problem: str
) -> None:
    with pytest.raises(ConfigError, match=rf"goodput: .*goodput metric {problem}.*usable here: "):
        UserConfig.build(goodput=goodput, **extra)


@pytest.mark.parametrize(("values", "strategy", "dataset"), [
    ({}, "concurrency", "synthetic"),
    ({"request_rate": 10}, "request_rate", "synthetic"),
    ({"input_file": "x.jsonl"}, "concurrency", "single_turn"),
    ({"input_file": "t.jsonl", "fixed_schedule": True}, "fixed_schedule", "mooncake_trace"),
    ({"input_file": "t.jsonl", "custom_dataset_type": "single_turn", "fixed_schedule": True},
     "fixed_schedule", "single_turn"),
])  # fmt: skip
def test_strategy_and_dataset_are_derived(values: dict, strategy: str, dataset: str) -> None:
    config = UserConfig(**values)
    assert config.resolved_timing_strategy() == strategy
    assert config.resolved_dataset() == dataset


def test_request_count_defaults_to_ten_per_concurrency_slot() -> None:
    assert UserConfig(concurrency=4).resolved_request_count() == 40
    assert UserConfig(benchmark_duration=5).resolved_request_count() is None


def test_safe_dump_masks_the_api_key_and_auth_headers() -> None:
    config = UserConfig(api_key="sk-secret", headers={"Authorization": "Bearer sk-secret",
                                                       "X-Trace": "1"})
    dumped = str(config.safe_dump())
    assert "sk-secret" not in dumped and "X-Trace" in dumped
    assert "sk-secret" not in repr(config) and "sk-secret" not in str(config)


def test_ipc_addresses_live_in_the_private_run_dir() -> None:
    prepared = ServiceConfig().prepared()
    try:
        assert prepared.address("credits").startswith(f"ipc://{prepared.run_dir}/")
        other = ServiceConfig().prepared()
        assert other.address("credits") != prepared.address("credits")
        import shutil

        shutil.rmtree(other.run_dir)
    finally:
        import shutil

        shutil.rmtree(prepared.run_dir)


def test_tcp_addresses_get_distinct_free_ports() -> None:
    prepared = ServiceConfig(comm_backend="tcp", record_processors=2).prepared()
    import shutil

    shutil.rmtree(prepared.run_dir)
    ports = [int(prepared.address(k).rsplit(":", 1)[1]) for k in prepared.address_keys()]
    assert len(set(ports)) == len(ports) == 8
    assert prepared.address("raw_records", 1).startswith("tcp://127.0.0.1:")


@pytest.mark.parametrize(("spelling", "seconds"), [
    (3, 3.0), (2.5, 2.5), ("3", 3.0), ("3s", 3.0), ("500ms", 0.5), ("2m", 120.0),
    (" 1.5 s ", 1.5), ("1h", 3600.0), ("2min", 120.0),
])  # fmt: skip
def test_durations_accept_every_spelling(spelling: object, seconds: float) -> None:
    config = UserConfig.build(benchmark_duration=spelling, benchmark_grace_period=spelling)
    assert config.benchmark_duration == config.benchmark_grace_period == seconds


@pytest.mark.parametrize(("values", "message"), [
    ({"request_count": 0}, r"request_count: Input should be greater than or equal to 1"),
    ({"benchmark_duration": 0}, r"benchmark_duration: Input should be greater than 0"),
    ({"benchmark_duration": "-3s"}, r"benchmark_duration: .*not a duration"),
    ({"benchmark_duration": "3 fortnights"}, r"benchmark_duration: .*not a duration"),
    ({"benchmark_duration": float("inf")}, r"benchmark_duration: Input should be a finite"),
    ({"benchmark_duration": True}, r"benchmark_duration: .*not a duration"),
    ({"benchmark_grace_period": "soon"}, r"benchmark_grace_period: .*not a duration"),
])  # fmt: skip
def test_a_run_that_would_check_nothing_is_refused_naming_the_key(
    values: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        UserConfig.build(**values)


def test_an_override_re_derives_what_was_derived_and_is_validated() -> None:
    base = UserConfig(url="http://127.0.0.1:9", api_key="sk-keep")
    assert base.resolved_concurrency() == 1  # nothing paces it: one at a time
    rated = base.with_overrides(request_rate=20)
    assert rated.concurrency is None and rated.resolved_concurrency() is None
    assert rated.resolved_timing_strategy() == "request_rate"
    assert rated.api_key is not None and rated.api_key.get_secret_value() == "sk-keep"
    assert rated.url == base.url
    with pytest.raises(ConfigError, match=r"request_rate: Input should be greater than 0"):
        base.with_overrides(request_rate=-1)
    with pytest.raises(ConfigError, match=r"unknown key 'concurency'"):
        base.with_overrides(concurency=3)


def test_safe_dump_masks_url_userinfo_and_every_credential_like_header() -> None:
    headers = {"Authorization": "a1", "X-API-KEY": "a2", "x-auth-token": "a3",
               "Cookie": "a4", "X-Client-Secret": "a5", "Proxy-Authorization": "a6",
               "Accept": "text/plain", "X-Trace": "t"}
    config = UserConfig(url="http://user:pa55@127.0.0.1:8000/v1", headers=headers,
                        api_key="sk-k")
    dumped = config.safe_dump()
    text = str(dumped)
    for secret in ("a1", "a2", "a3", "a4", "a5", "a6", "pa55", "user:", "sk-k"):
        assert f"'{secret}" not in text and secret + "@" not in text
    assert dumped["url"] == "http://***@127.0.0.1:8000/v1"
    assert dumped["headers"]["Accept"] == "text/plain" and dumped["headers"]["X-Trace"] == "t"
    for shown in (repr(config), str(config)):
        assert "pa55" not in shown and "sk-k" not in shown


def test_config_errors_never_echo_the_api_key_or_url_password() -> None:
    with pytest.raises(ConfigError) as info:
        UserConfig.build(api_key=12345678, url="http://u:pa55@h/v1", concurrency=0)
    assert "12345678" not in str(info.value) and "pa55" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        UserConfig.build(url=["http://u:pa55@h/v1"], headers={"X-Api-Key": 77777})
    assert "pa55" not in str(info.value) and "77777" not in str(info.value)
    # Inside the mesh, a config that fails a model-level check: pydantic's own text would
    # repeat the whole input, key included.
    wire = {"api_key": "sk-wire-secret", "custom_dataset_type": "single_turn"}
    with pytest.raises(ConfigError, match="custom_dataset_type needs input_file") as info:
        UserConfig.from_wire(wire)
    assert "sk-wire-secret" not in str(info.value)


def test_run_deadlines_never_grow_with_the_request_count() -> None:
    service = ServiceConfig(result_timeout_margin=5)
    many = UserConfig(request_count=100_000, concurrency=1, request_timeout_seconds=600)
    assert run_deadline(many, service) is None  # bounded by the stall rule instead
    assert stall_timeout(many, service) == 605
    assert stall_timeout(many, service) == stall_timeout(
        many.with_overrides(request_count=1), service)
    timed = UserConfig(benchmark_duration="10s", benchmark_grace_period="2s")
    assert run_deadline(timed, service) == 17
    capped = ServiceConfig(result_timeout_margin=5, max_run_seconds=3)
    assert run_deadline(timed, capped) == run_deadline(many, capped) == 3


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=12), st.floats(), st.integers(), st.booleans(), st.none(),
                 st.from_regex(r"\A\s*-?\d{0,4}(\.\d{0,3})?\s*(ms|s|sec|m|min|h|d)?\s*\Z")))
def test_any_duration_spelling_is_seconds_or_an_error_naming_the_key(value: object) -> None:
    try:
        config = UserConfig.build(benchmark_duration=value)
    except ConfigError as exc:
        assert str(exc).startswith("benchmark_duration: ")
        return
    seconds = config.benchmark_duration
    assert seconds is None or (math.isfinite(seconds) and seconds > 0)


def test_safe_dump_masks_credentials_in_server_metrics_urls() -> None:
    config = UserConfig.build(server_metrics=["http://admin:hunter2@127.0.0.1:9400/metrics"])
    dumped = config.safe_dump()
    assert "hunter2" not in str(dumped)
    assert dumped["server_metrics"][0].endswith("127.0.0.1:9400/metrics")
