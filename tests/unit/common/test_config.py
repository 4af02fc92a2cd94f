from __future__ import annotations

import pytest

from aiperf.common.config import ServiceConfig, UserConfig
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
    with pytest.raises(ConfigError, match=r"unknown endpoint 'chatt'; allowed: chat, "
                                          r"completions, embeddings"):
        UserConfig.build(endpoint_type="chatt")


def test_goodput_accepts_aiperfs_string_form() -> None:
    config = UserConfig(goodput="time_to_first_token:200 request_latency:1000")
    assert config.goodput == {"time_to_first_token": 200.0, "request_latency": 1000.0}


def test_goodput_rejects_unknown_metrics() -> None:
    with pytest.raises(ConfigError, match=r"unknown goodput metric 'ttft'"):
        UserConfig.build(goodput={"ttft": 100})


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
