"""``aiperf profile`` against AIPerf 0.13's own flag list (the fixture written from its
``aiperf profile --help``): each AIPerf option is taken under all its names, or refused
with "not supported yet" and listed in docs/cli.md's table; aliases land on the same
config key as the primary name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aiperf import aiperf013_options
from aiperf.cli import EXIT_CONFIG, _profile_values, build_parser, main, profile_option_strings

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "aiperf013" / "profile_help_flags.txt"
DOCS = ROOT / "docs" / "cli.md"


def fixture_options() -> list[tuple[str, tuple[str, ...]]]:
    options: list[tuple[str, tuple[str, ...]]] = []
    group = ""
    for line in FIXTURE.read_text().splitlines()[1:]:
        if line.startswith("# "):
            group = line[2:]
        elif line.strip():
            options.append((group, tuple(line.split())))
    return options


def docs_unsupported() -> set[str]:
    """Every flag named in docs/cli.md's not-supported table."""
    text = DOCS.read_text()
    table = text.split("## AIPerf 0.13 options not supported", 1)[1]
    names: set[str] = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`(-[^`]+)`", row.split("|")[1]))
    return names


def test_the_fixture_is_aiperf_0_13s_help_and_the_cli_carries_the_same_list() -> None:
    options = fixture_options()
    assert len(options) == 264  # AIPerf 0.13's count, as issue 13 says
    assert FIXTURE.read_text().splitlines()[0].startswith("# aiperf profile --help of "
                                                          "AIPerf 0.13")
    assert aiperf013_options.options() == options


def test_every_aiperf_flag_is_accepted_or_documented_as_not_supported() -> None:
    accepted = profile_option_strings()
    documented = docs_unsupported()
    for group, names in fixture_options():
        taken = [name for name in names if name in accepted]
        if taken:
            # Supported: under every one of AIPerf's names, and not in the table.
            assert taken == list(names), f"{group}: only {taken} of {names} accepted"
            assert not documented & set(names), f"{names} accepted but listed as missing"
        else:
            assert set(names) <= documented, f"{names} ({group}) neither taken nor listed"


def test_every_unsupported_flag_exits_2_saying_so(capsys: pytest.CaptureFixture[str]) -> None:
    accepted = profile_option_strings()
    missing = [names[0] for _, names in fixture_options()
               if not any(name in accepted for name in names)]
    assert len(missing) > 100  # AIPerf has many more options than this project
    for name in missing:
        assert main(["profile", name, "1"]) == EXIT_CONFIG
        err = capsys.readouterr().err
        assert f"{name} (an AIPerf 0.13 option) is not supported yet: " in err, err
        assert "unrecognized" not in err


def test_a_flag_aiperf_never_had_is_still_unrecognized(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["profile", "--no-such-flag"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["--synthetic-input-tokens-mean", "300", "--synthetic-input-tokens-stddev", "5"],
     {"isl": 300, "isl_stddev": 5.0}),
    (["--prompt-input-tokens-mean", "301", "--prompt-input-tokens-stddev", "6"],
     {"isl": 301, "isl_stddev": 6.0}),
    (["--output-tokens-mean", "40", "--output-tokens-stddev", "2"],
     {"osl": 40, "osl_stddev": 2.0}),
    (["--prompt-output-tokens-mean", "41", "--prompt-output-tokens-stddev", "3"],
     {"osl": 41, "osl_stddev": 3.0}),
    (["--model-names", "llama"], {"model": "llama"}),
    (["--num-requests", "12"], {"request_count": 12}),
    (["--num-warmup-requests", "3"], {"warmup_request_count": 3}),
    (["--request-rate-mode", "constant", "--vllm-burstiness", "2"],
     {"arrival_pattern": "constant", "arrival_smoothness": 2.0}),
    (["--endpoint", "/v1/mine"], {"custom_endpoint": "/v1/mine"}),
    (["--url", "localhost:8000"], {"url": "localhost:8000"}),
    (["--extra-inputs", "temperature:0.7", "top_p:0.9", "--extra-inputs", "seed:1"],
     {"extra_inputs": {"temperature": 0.7, "top_p": 0.9, "seed": 1}}),
    (["-H", "X-A:1", "X-B:two", "--header", "X-C:3"],
     {"headers": {"X-A": "1", "X-B": "two", "X-C": "3"}}),
    (["--goodput", "time_to_first_token:200", "request_latency:1000"],
     {"goodput": "time_to_first_token:200 request_latency:1000"}),
    (["--server-metrics"], {"server_metrics": []}),
    (["--server-metrics", "node1:8081", "--server-metrics-interval", "0.5"],
     {"server_metrics": ["node1:8081"], "server_metrics_interval": "0.5"}),
    (["--wait-for-model-timeout", "30"], {"wait_for_model_timeout": "30"}),
    (["--no-fixed-schedule"], {"fixed_schedule": False}),
    (["--fixed-schedule"], {"fixed_schedule": True}),
    (["--rankings-passages-mean", "8"], {"rankings_passages_mean": "8"}),
])  # fmt: skip
def test_aiperf_names_land_on_the_config_key(argv: list[str], expected: dict[str, object],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIPERF_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args = build_parser().parse_args(["profile", *argv])
    values = _profile_values(args)
    assert values == expected


def test_endpoint_is_never_read_as_endpoint_type() -> None:
    args = build_parser().parse_args(["profile", "--endpoint", "chat"])
    assert args.endpoint_type is None
    assert args.custom_endpoint == "chat"


def test_service_and_ui_aliases() -> None:
    parser = build_parser()
    args = parser.parse_args(["profile", "--artifact-dir", "out", "--max-workers", "3",
                              "--record-processors", "2", "-vv", "--ui", "none"])
    assert (args.output_artifact_dir, args.workers_max, args.record_processors,
            args.log_level, args.ui_type) == ("out", 3, 2, "DEBUG", "none")
    assert parser.parse_args(["profile", "-v"]).log_level == "DEBUG"
    assert parser.parse_args(["profile", "--log-level", "trace"]).log_level == "TRACE"


@pytest.mark.parametrize(("argv", "message"), [
    (["--model-names", "a,b"], "several models in --model-names is not supported yet"),
])  # fmt: skip
def test_several_models_are_refused_by_name(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["profile", *argv])
    with pytest.raises(SystemExit) as exited:
        _profile_values(args)
    assert message in str(exited.value)


def test_a_url_without_a_scheme_gets_http_and_a_bad_custom_endpoint_is_named(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from aiperf.common.config import UserConfig

    assert UserConfig(url="localhost:8000").url == "http://localhost:8000"
    assert UserConfig(url="https://h:1").url == "https://h:1"
    assert UserConfig(custom_endpoint="v1/x").custom_endpoint == "/v1/x"
    assert main(["profile", "--endpoint", "http://h/v1/x", "--request-count", "1"]) == 2
    err = capsys.readouterr().err
    assert "--custom-endpoint: Value error, is a request path such as /v1/custom" in err


def test_every_profile_flag_names_a_config_key() -> None:
    from aiperf.cli import PROFILE_FLAGS
    from aiperf.common.config import UserConfig

    assert {key for _, key, _ in PROFILE_FLAGS} <= set(UserConfig.model_fields)


def test_aiperfs_stream_is_not_streaming_and_says_where_that_is(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profile", "--stream", "metrics"]) == EXIT_CONFIG
    assert "for streamed responses the flag is --streaming" in capsys.readouterr().err
