from __future__ import annotations

import pytest

from aiperf.common.comms import CommunicationError, decode
from aiperf.common.messages import CommandAck, ConfigureProfileCommand, decode_message
from aiperf.errors import ConfigError, ErrorDetails, ServiceFailedError


def test_messages_round_trip_through_their_frames() -> None:
    message = ConfigureProfileCommand(command_id="c1", run_id="r", user_config={"url": "x"})
    assert decode_message(message.encode()) == message


def test_undecodable_frames_raise_communication_error() -> None:
    with pytest.raises(CommunicationError, match="undecodable"):
        decode([b"nonsense", b"{}"])


def test_error_details_rebuild_known_errors_on_the_host() -> None:
    details = ErrorDetails.from_exception(ConfigError("bad key"), service_id="worker_0")
    ack = CommandAck(command_id="c", error=details)
    rebuilt = decode_message(ack.encode()).error.to_exception()  # type: ignore[union-attr]
    assert isinstance(rebuilt, ConfigError) and str(rebuilt) == "bad key"


def test_unknown_errors_become_service_failures_naming_the_service() -> None:
    try:
        raise KeyError("boom")
    except KeyError as exc:
        details = ErrorDetails.from_exception(exc, service_id="records_manager")
    error = details.to_exception()
    assert isinstance(error, ServiceFailedError)
    assert error.service_id == "records_manager"
    assert "KeyError in service records_manager" in str(error)
    assert "raise KeyError" in error.details
