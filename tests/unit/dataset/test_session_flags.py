"""AIPerf's session, cancellation, ramp, prefix and URL flags reach the config."""

from __future__ import annotations

import pytest

from aiperf.cli import _profile_values, build_parser, main
from aiperf.common.config import UserConfig


def _config(*argv: str) -> UserConfig:
    return UserConfig.build(**_profile_values(build_parser().parse_args(["profile", *argv])))


def test_aiperf_names_and_aliases_set_the_session_keys() -> None:
    config = _config("--num-sessions", "7", "--session-turns-mean", "3",
                     "--session-turns-stddev", "1", "--session-turn-delay-mean", "200",
                     "--session-turn-delay-stddev", "20", "--session-delay-ratio", "0.5",
                     "--session-header", "X-Session-ID")
    assert (config.conversation_num, config.conversation_turn_mean,
            config.conversation_turn_stddev, config.conversation_turn_delay_mean,
            config.conversation_turn_delay_stddev, config.conversation_turn_delay_ratio,
            config.session_header) == (7, 3, 1, 200, 20, 0.5, "X-Session-ID")


def test_load_shaping_prefix_and_url_flags_set_their_keys() -> None:
    config = _config("--request-cancellation-rate", "10", "--request-cancellation-delay",
                     "0.5", "--concurrency-ramp-duration", "3", "--request-rate-ramp-duration",
                     "4", "--num-prefix-prompts", "5", "--prefix-prompt-length", "100",
                     "--shared-system-prompt-length", "30", "--url", "http://a:1", "-u", "b:2",
                     "--url-strategy", "round_robin")
    assert (config.request_cancellation_rate, config.request_cancellation_delay,
            config.concurrency_ramp_duration, config.request_rate_ramp_duration,
            config.prompt_prefix_pool_size, config.prompt_prefix_length,
            config.shared_system_prompt_length) == (10, 0.5, 3, 4, 5, 100, 30)
    assert config.url == "http://a:1" and config.urls == ["http://a:1", "b:2"]
    assert "b:2" not in repr(config)  # URLs may carry credentials: out of the repr


@pytest.mark.parametrize("spelling", ["round-robin", "round_robin"])
def test_the_url_strategy_answers_to_aiperfs_spelling(spelling: str) -> None:
    config = _config("--url", "http://a:1", "-u", "b:2", "--url-strategy", spelling)
    assert config.url_strategy == "round_robin"
    assert UserConfig(url="http://a:1", url_strategy=spelling).url_strategy == "round_robin"


@pytest.mark.parametrize(("argv", "names"), [
    (["--request-cancellation-rate", "101"], "request_cancellation_rate"),
    (["--session-header", "bad header"], "session_header"),
    (["--conversation-turn-mean", "0.5"], "conversation_turn_mean"),
])  # fmt: skip
def test_a_bad_value_is_refused_naming_its_key(
        argv: list[str], names: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["profile", "--url", "http://127.0.0.1:9", *argv])
    assert code != 0
    assert names.replace("_", "-") in capsys.readouterr().err.replace("_", "-")


def test_several_urls_without_url_make_the_first_the_url() -> None:
    assert UserConfig(urls=["a:1", "http://b:2"]).url == "http://a:1"
    assert UserConfig(url="http://x:9", urls=["http://a:1"]).url == "http://x:9"
    config = UserConfig(urls=["http://a:1", "http://b:2"]).with_overrides(concurrency=2)
    assert config.url == "http://a:1"
