"""Credentials never land in a stored error: what is scrubbed, and what is left alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiperf.common.codec import ErrorInfo
from aiperf.transports.redact import MASK, scrub, scrub_error, secret_values

HEADERS = {"Authorization": "Bearer sk-live-abcdef", "X-API-KEY": "k-12345",
           "x-session-token": "tok", "Cookie": "sid=zzz999", "X-Client-Secret": "s3cr3t",
           "Content-Type": "application/json", "User-Agent": "pytest-aiperf"}


def test_every_header_named_like_a_credential_is_a_secret_and_no_other() -> None:
    secrets = secret_values(HEADERS)
    assert {"Bearer sk-live-abcdef", "sk-live-abcdef", "k-12345", "sid=zzz999",
            "s3cr3t"} <= set(secrets)
    assert "application/json" not in secrets and "pytest-aiperf" not in secrets
    assert "tok" not in secrets  # too short to mask without mangling messages


def test_an_echoed_key_is_masked_whole_with_or_without_its_scheme() -> None:
    secrets = secret_values(HEADERS)
    assert scrub("got 'Bearer sk-live-abcdef'", secrets) == f"got '{MASK}'"
    assert scrub("invalid key sk-live-abcdef; cookie sid=zzz999", secrets) == (
        f"invalid key {MASK}; cookie {MASK}")


def test_an_error_without_secrets_is_returned_as_is() -> None:
    error = ErrorInfo(500, "Internal Server Error", "boom")
    assert scrub_error(error, secret_values(HEADERS)) is error


@given(st.text(), st.text(min_size=4).filter(lambda t: t.strip() == t and " " not in t))
def test_no_scrubbed_message_contains_the_key(text: str, key: str) -> None:
    secrets = secret_values({"Authorization": f"Bearer {key}"})
    message = scrub_error(ErrorInfo(401, "Unauthorized", text + key + text), secrets).message
    assert key not in message


def test_the_password_of_the_urls_userinfo_is_a_secret_too() -> None:
    secrets = secret_values({}, "http://me:hunter22@127.0.0.1:8000/v1")
    assert scrub("refused for me:hunter22@127.0.0.1", secrets) == "refused for me:***@127.0.0.1"
    assert secret_values({}, "http://127.0.0.1:8000") == ()


@given(st.integers(min_value=1, max_value=80))
def test_a_key_cut_short_by_a_bounded_message_leaves_none_of_its_start(limit: int) -> None:
    key = "sk-test-SECRET123-abcdefghijklmnopqrstuvwxyz"
    secrets = secret_values({"Authorization": f"Bearer {key}"})
    body = f"invalid api key {key}"[:limit]  # a server's echo, bounded before scrubbing
    message = scrub_error(ErrorInfo(401, "Unauthorized", body), secrets).message
    assert not any(key[:n] in message for n in range(4, len(key) + 1))
    assert message.startswith(body[:16])


def test_a_cut_key_is_masked_but_ordinary_endings_stay() -> None:
    secrets = secret_values({"X-Api-Key": "k-1234567890"})
    assert scrub("echo: k-12345", secrets) == f"echo: {MASK}"
    assert scrub("no echo here", secrets) == "no echo here"
