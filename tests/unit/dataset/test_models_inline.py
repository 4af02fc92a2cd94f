"""A dataset travels to a remote worker inside its configure command: compressed, base64
on the wire, and the same turns at the other end."""

from __future__ import annotations

from pathlib import Path

from aiperf.common.messages import ConfigureProfileCommand, decode_message
from aiperf.dataset.models import _ENCODER, Turn, dataset_of, dataset_packed


def test_a_packed_dataset_crosses_the_wire_and_comes_back_the_same() -> None:
    turns = [Turn(text=f"prompt {i} " * 20, input_tokens=40 + i, output_length=i or None)
             for i in range(200)]
    raw = _ENCODER.encode(turns)
    command = ConfigureProfileCommand(command_id="c", run_id="r", user_config={},
                                      dataset_path="/nowhere/on/this/host")
    sent = command.model_copy(update={"dataset_inline": dataset_packed(raw)})
    received = decode_message(sent.encode())
    assert isinstance(received, ConfigureProfileCommand)
    assert len(received.dataset_inline or b"") < len(raw) / 2  # repetitive text shrinks
    # The inline bytes win over a path that does not exist on the remote host.
    assert dataset_of(received.dataset_path, received.dataset_inline) == turns
    assert "dataset_inline" not in repr(received)  # megabytes have no place in a log line


def test_without_inline_bytes_the_file_is_read_and_without_either_there_is_none(
    tmp_path: Path,
) -> None:
    turns = [Turn(text="hi", input_tokens=1)]
    path = tmp_path / "dataset.msgpack"
    path.write_bytes(_ENCODER.encode(turns))
    assert dataset_of(str(path)) == turns
    assert dataset_of(None) == []
