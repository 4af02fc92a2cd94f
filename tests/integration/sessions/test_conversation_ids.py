"""Each multi-turn record names its session as AIPerf's records do: ``conversation_id``
(the dataset's session id) and ``x_correlation_id`` (the session header the server saw),
in closed and open loop, for a ``multi_turn`` file and for synthetic sessions."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiperf.mesh import Mesh
from tests.harness.session_server import SessionServer

SESSIONS = {"alpha": 2, "beta": 3, "gamma": 1}


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=2, command_timeout=20) as running:
        yield running


def _by_session(records: Any) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        out[record["metadata"]["session_num"]].append(record["metadata"])
    return out


def _check(records: Any, seen_headers: dict[str, int]) -> dict[int, str]:
    """Every turn of a session names the same dataset session, and its correlation id is
    the header its requests carried; returns each session's dataset id."""
    names = {}
    for session, turns in _by_session(records).items():
        assert len({t["conversation_id"] for t in turns}) == 1, turns
        assert len({t["x_correlation_id"] for t in turns}) == 1, turns
        names[session] = turns[0]["conversation_id"]
        assert seen_headers[turns[0]["x_correlation_id"]] == len(turns)
    return names


@pytest.mark.parametrize("load", [{"concurrency": 2}, {"request_rate": 200}])
def test_a_multi_turn_files_session_ids_reach_the_records(
        mesh: Mesh, tmp_path: Path, load: dict[str, Any]) -> None:
    file = tmp_path / "sessions.jsonl"
    file.write_text("\n".join(json.dumps({"session_id": name, "turns": [
        {"text": f"{name} turn {k}"} for k in range(turns)]})
        for name, turns in SESSIONS.items()))
    with SessionServer() as server:
        result = mesh.run(url=server.url, input_file=str(file),
                          custom_dataset_type="multi_turn", request_count=12, **load)
        stats = server.stats()
    assert stats["violations"] == [] and result.error_count == 0
    names = _check(result.records, stats["sessions"])
    # Each session is one of the file's, with at most its turns (the count may cut the
    # last ones), in order from its first: the id is the dataset's session, not a guess.
    assert set(names.values()) <= set(SESSIONS) and len(set(names.values())) >= 2
    for session, metas in _by_session(result.records).items():
        assert len(metas) <= SESSIONS[names[session]]
        assert sorted(m["turn_index"] for m in metas) == list(range(len(metas)))


def test_synthetic_sessions_are_named_by_their_index(mesh: Mesh) -> None:
    with SessionServer() as server:
        result = mesh.run(url=server.url, concurrency=3, conversation_num=4,
                          conversation_turn_mean=2)
        stats = server.stats()
    names = _check(result.records, stats["sessions"])
    assert sorted(names.values()) == [f"session_{i}" for i in range(4)]


def test_single_requests_carry_no_session_names(mesh: Mesh) -> None:
    with SessionServer(require_session=False) as server:
        result = mesh.run(url=server.url, concurrency=2, request_count=4)
    assert not any({"conversation_id", "x_correlation_id"} & set(r["metadata"])
                   for r in result.records)
