"""Stored runs: the compact arrays, the layout on disk, pruning, secrets, damaged files."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiperf.baselines import storage as storage_module
from aiperf.baselines.fingerprint import fingerprint
from aiperf.baselines.machine import MachineInfo
from aiperf.baselines.storage import (
    FORMAT_VERSION,
    PackedValues,
    Storage,
    StorageError,
    StoredRun,
    node_slug,
    stored_run,
    target_url,
)
from aiperf.results import ProfileResult
from tests.harness.synthetic_runs import synthetic_result

DOC = Path(__file__).parents[3] / "docs" / "baselines.md"
TEST = "tests/test_chat.py::test_ttft[concurrency-4]"
MACHINE = MachineInfo(cpu_model="Test CPU", cores=2, python="CPython 3.11.7",
                      package_version="0.1.0", platform="Linux 6.1 x86_64",
                      git_commit="0" * 40, git_dirty=False)


@pytest.fixture(scope="module")
def result() -> ProfileResult:
    return synthetic_result(300, error_share=0.05)


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(tmp_path / ".aiperf", keep=20)


def save(storage: Storage, result: ProfileResult, name: str | None = None,
         test_id: str = TEST) -> Path:
    return storage.save(test_id, result, name, machine=MACHINE)


# -- PackedValues


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(0, 3000),
                  elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_packed_values_round_trip_any_finite_float32_array(values: np.ndarray) -> None:
    packed = PackedValues.pack(values.astype(np.float64), "ms")
    again = PackedValues.model_validate_json(packed.model_dump_json())
    out = again.unpack()
    assert out.dtype == np.float64 and again.count == values.size
    np.testing.assert_array_equal(out, values.astype(np.float64))


def test_unpack_returns_a_copy_the_caller_may_change() -> None:
    packed = PackedValues.pack(np.array([1.0, 2.0]), "ms")
    first = packed.unpack()
    first[0] = 99.0
    assert packed.unpack()[0] == 1.0


def test_latencies_cost_well_under_20_bytes_a_value() -> None:
    values = np.random.default_rng(3).lognormal(np.log(40.0), 0.5, 10_000)
    packed = PackedValues.pack(values, "ms")
    assert len(packed.model_dump_json()) / values.size <= 20
    np.testing.assert_allclose(packed.unpack(), values, rtol=1e-7)


@pytest.mark.parametrize(("data", "count", "problem"), [
    ("not base64 !!", 1, "undecodable"),
    (base64.b64encode(b"not zlib").decode(), 1, "undecodable"),
    (base64.b64encode(zlib.compress(b"\0" * 8)).decode(), 3, "8 bytes of data for 3"),
])
def test_unpack_of_bad_data_says_what_is_wrong(data: str, count: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PackedValues(unit="ms", count=count, data=data).unpack()


# -- stored_run


def test_a_stored_run_keeps_every_per_request_metric(result: ProfileResult) -> None:
    run = stored_run(TEST, result, "main", 1, machine=MACHINE)
    per_request = {t for t, m in result.metrics.items() if len(m.values)}
    assert set(run.values) == {t for t in per_request if not t.startswith("adj_")}
    assert run.format == FORMAT_VERSION and run.test_id == TEST
    assert run.fingerprint == fingerprint(result.config)  # type: ignore[arg-type]
    assert (run.request_count, run.error_count) == (result.request_count, result.error_count)
    assert run.benchmark_duration_s == pytest.approx(result.metric("benchmark_duration"))
    assert run.summary["time_to_first_token"] == {
        "unit": "ms", **result["time_to_first_token"].stats}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run.saved_at)
    ttft = run.metric_values("time_to_first_token")
    assert ttft is not None
    np.testing.assert_allclose(ttft, result["time_to_first_token"].values, rtol=1e-7)


def test_error_adjusted_values_are_rebuilt_with_one_inf_per_failure(
        result: ProfileResult) -> None:
    run = stored_run(TEST, result, "main", 1, machine=MACHINE)
    assert "adj_request_latency" not in run.values
    adj = run.metric_values("adj_request_latency")
    base = run.metric_values("request_latency")
    assert adj is not None and base is not None and result.error_count > 0
    assert adj.size == base.size + result.error_count
    assert np.isinf(adj[base.size:]).all()
    # The same p90 as the live result computes from its values and failures.
    assert float(np.percentile(adj, 90, method="nearest")) == pytest.approx(
        result.metric("adj_request_latency.p90"), rel=1e-6)
    assert run.metric_values("no_such_metric") is None
    assert run.metric_values("adj_no_such_metric") is None


def test_values_are_read_only_and_shared_between_calls(result: ProfileResult) -> None:
    run = stored_run(TEST, result, "main", 1, machine=MACHINE)
    first = run.metric_values("request_latency")
    assert first is run.metric_values("request_latency")
    assert first is not None and not first.flags.writeable


def test_a_list_valued_metric_keeps_a_seeded_sample_of_one_value_per_request(
        result: ProfileResult) -> None:
    run = stored_run(TEST, result, "main", 1, machine=MACHINE)
    chunks = np.asarray(result["inter_chunk_latency"].values)
    packed = run.values["inter_chunk_latency"]
    assert chunks.size > len(result.timeline)
    assert (packed.count, packed.sampled_from) == (len(result.timeline), chunks.size)
    sample = run.metric_values("inter_chunk_latency")
    assert sample is not None
    assert np.isin(sample.astype(np.float32), chunks.astype(np.float32)).all()
    again = stored_run(TEST, result, "main", 1, machine=MACHINE)
    assert again.values["inter_chunk_latency"] == packed
    assert run.values["request_latency"].sampled_from is None


def test_end_times_are_the_successful_requests_from_the_first_start(
        result: ProfileResult) -> None:
    run = stored_run(TEST, result, "main", 1, machine=MACHINE)
    ends = run.end_times()
    timeline = result.timeline
    assert ends is not None and ends.size == int(timeline.ok.sum()) == result.request_count
    expected = (timeline.end_ns[timeline.ok] - timeline.start_ns.min()) / 1e9
    np.testing.assert_allclose(ends, expected, rtol=1e-6)
    # The last successful end is at most the run's span.
    assert ends.max() <= run.benchmark_duration_s * (1 + 1e-6)


def test_a_result_without_a_timeline_or_config_still_stores() -> None:
    bare = ProfileResult.from_dict({"metrics": {"request_count": {"unit": "requests",
                                                                  "avg": 0}}})
    run = stored_run(TEST, bare, "auto", 1, machine=MACHINE)
    assert run.end_times() is None and run.values == {}
    assert run.target == {"url": None, "model": None}


# -- Storage


def test_save_then_load_latest_by_name_and_by_number(storage: Storage,
                                                     result: ProfileResult) -> None:
    first = save(storage, result, "main")
    second = save(storage, result)
    third = save(storage, result, "main")
    assert [p.name for p in (first, second, third)] == [
        "0001_main.json", "0002_auto.json", "0003_main.json"]
    assert first.parent == storage.root / node_slug(TEST)
    assert storage.load(TEST).number == 3  # type: ignore[union-attr]
    assert storage.load(TEST, "latest").number == 3  # type: ignore[union-attr]
    assert storage.load(TEST, "main").number == 3  # type: ignore[union-attr]
    assert storage.load(TEST, "auto").number == 2  # type: ignore[union-attr]
    assert storage.load(TEST, "2").name == "auto"  # type: ignore[union-attr]
    assert storage.load(TEST, "0001").name == "main"  # type: ignore[union-attr]
    assert storage.load(TEST, "nightly") is None
    assert storage.load(TEST, "7") is None
    assert storage.load("tests/test_other.py::test_x") is None
    loaded = storage.load(TEST, "1")
    assert loaded is not None and loaded.test_id == TEST and loaded.machine == MACHINE
    np.testing.assert_array_equal(loaded.metric_values("time_to_first_token"),
                                  Storage.read(first).metric_values("time_to_first_token"))


def test_history_is_oldest_first_and_tests_lists_node_ids(storage: Storage,
                                                          result: ProfileResult) -> None:
    other = "tests/test_chat.py::TestSuite::test_slow[rate-2.5/s]"
    for name in ("a", None, "b"):
        save(storage, result, name)
    save(storage, result, test_id=other)
    assert [(r.number, r.name) for r in storage.history(TEST)] == [
        (1, "a"), (2, "auto"), (3, "b")]
    assert storage.tests() == sorted([TEST, other])
    # A test's directory name (as `aiperf history` may be given it) works too.
    assert len(storage.history(node_slug(other))) == 1
    assert storage.history("tests/none.py::test_none") == []
    assert Storage(storage.root / "missing").tests() == []


def test_pruning_keeps_the_newest_runs_and_the_newest_of_each_name(
        tmp_path: Path, result: ProfileResult) -> None:
    storage = Storage(tmp_path, keep=3)
    for name in ("main", None, None, "nightly", None, None, None, "main", None):
        save(storage, result, name)
    left = sorted(p.name for p in (tmp_path / node_slug(TEST)).glob("*.json"))
    # Newest three (7, 8, 9), plus the newest "nightly" (4); "main" 8 is among the newest.
    assert left == ["0004_nightly.json", "0007_auto.json", "0008_main.json", "0009_auto.json"]
    # Numbers keep growing after pruning.
    assert save(storage, result).name == "0010_auto.json"


def test_keep_zero_keeps_everything(tmp_path: Path, result: ProfileResult) -> None:
    storage = Storage(tmp_path, keep=0)
    for _ in range(25):
        save(storage, result)
    assert len(storage.history(TEST)) == 25
    with pytest.raises(StorageError, match="keep"):
        Storage(tmp_path, keep=-1)


@pytest.mark.parametrize("name", ["12", "0003", "latest", "///", ""])
def test_names_that_loading_could_not_tell_apart_are_refused(
        storage: Storage, result: ProfileResult, name: str) -> None:
    with pytest.raises(StorageError, match="name"):
        save(storage, result, name)


def test_a_name_cannot_leave_the_test_directory(storage: Storage,
                                                result: ProfileResult) -> None:
    path = save(storage, result, "../../escape me")
    assert path.parent == storage.root / node_slug(TEST)
    assert path.name == "0001_escape-me.json"
    assert storage.load(TEST, "escape me") is not None


def test_slugs_are_safe_readable_bounded_and_distinct() -> None:
    ids = ["tests/a/test_x.py::test_y[1]", "tests-a-test_x.py::test_y[1]",
           "tests/a/test_x.py::test_y[2]", "t.py::test_" + "x" * 300 + "[a]",
           "t.py::test_" + "x" * 300 + "[b]", "t.py::test_é[ü/../..]", ".."]
    slugs = [node_slug(i) for i in ids]
    assert len(set(slugs)) == len(ids)
    for slug in slugs:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", slug) and len(slug) <= 100
        assert not slug.startswith(".")
    assert slugs[0].startswith("tests-a-test_x.py-test_y-1-")


def test_a_save_writes_atomically_and_leaves_no_temp_file(storage: Storage,
                                                          result: ProfileResult) -> None:
    path = save(storage, result)
    assert sorted(os.listdir(path.parent)) == [".lock", path.name]


def test_a_failed_write_leaves_nothing_and_names_the_directory(
        storage: Storage, result: ProfileResult, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage_module.os, "fsync", full_disk)
    with pytest.raises(StorageError, match="No space left") as caught:
        save(storage, result)
    directory = storage.root / node_slug(TEST)
    assert str(directory) in str(caught.value)
    assert os.listdir(directory) == [".lock"]


def test_a_number_taken_meanwhile_moves_the_save_to_the_next(
        storage: Storage, result: ProfileResult) -> None:
    directory = storage.root / node_slug(TEST)
    directory.mkdir(parents=True)
    run = stored_run(TEST, result, "auto", 1, machine=MACHINE)
    (directory / "0001_auto.json").write_text("another session's run")
    path = Storage._write(directory, run, "auto")
    assert path.name == "0002_auto.json"
    assert Storage.read(path).number == 2
    assert (directory / "0001_auto.json").read_text() == "another session's run"


_SAVER = """
import sys
from pathlib import Path
from aiperf.baselines.storage import Storage
from tests.harness.synthetic_runs import synthetic_result
from tests.unit.baselines.test_storage import MACHINE, TEST
result = synthetic_result(100)
storage = Storage(Path(sys.argv[1]), keep=0)
print("ready", flush=True)
sys.stdin.readline()  # both processes start saving together
for _ in range(10):
    storage.save(TEST, result, sys.argv[2], machine=MACHINE)
"""


def test_two_processes_saving_one_test_at_once_never_overwrite(tmp_path: Path) -> None:
    root = Path(__file__).parents[3]
    procs = [subprocess.Popen([sys.executable, "-c", _SAVER, str(tmp_path), name], cwd=root,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for name in ("left", "right")]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    runs = Storage(tmp_path).history(TEST)
    assert [run.number for run in runs] == list(range(1, 21))
    assert sorted(run.name for run in runs) == ["left"] * 10 + ["right"] * 10
    for path in (tmp_path / node_slug(TEST)).glob("*.json"):
        assert Storage.read(path).number == int(path.name[:4])


def test_a_lock_held_past_the_deadline_fails_the_save_by_name(
        storage: Storage, result: ProfileResult, monkeypatch: pytest.MonkeyPatch) -> None:
    fcntl = pytest.importorskip("fcntl")
    directory = storage.root / node_slug(TEST)
    directory.mkdir(parents=True)
    monkeypatch.setattr(storage_module, "LOCK_TIMEOUT_S", 0.05)
    holder = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(StorageError, match="held its lock") as caught:
            save(storage, result)
        assert str(directory) in str(caught.value)
    finally:
        os.close(holder)
    assert save(storage, result).name == "0001_auto.json"


def test_credentials_headers_and_prompts_are_never_stored(storage: Storage) -> None:
    secrets = {"url": "http://alice:pa55word@127.0.0.1:8000",
               "api_key": "sk-live-api-key",
               "headers": {"Authorization": "Bearer sk-header-token",
                           "X-Tenant": "tenant-header-value"}}
    result = synthetic_result(50, **secrets)
    text = save(storage, result).read_text()
    for secret in ("alice", "pa55word", "sk-live-api-key", "sk-header-token",
                   "tenant-header-value", "Authorization", "X-Tenant"):
        assert secret not in text
    run = storage.load(TEST)
    assert run is not None and run.target == {"url": "http://***@127.0.0.1:8000",
                                              "model": "mock-model"}


@pytest.mark.parametrize(("url", "stored"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("https://u:p@host/v1", "https://***@host/v1"),
    ("https://host/api?code=s3cr3t&x=1", "https://host/api?***"),
    ("https://host/api#token=s3cr3t", "https://host/api?***"),
])
def test_the_target_url_loses_credentials_and_any_query(url: str, stored: str) -> None:
    assert target_url(url) == stored


# -- damaged and foreign files


def _stored_json(storage: Storage, result: ProfileResult) -> tuple[Path, dict[str, Any]]:
    path = save(storage, result)
    return path, json.loads(path.read_text())


def _assert_clear_error(path: Path, match: str) -> None:
    with pytest.raises(StorageError, match=match) as caught:
        Storage.read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert len(message) < 400  # never the file's content
    # No pydantic or json traceback chained to it.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_a_truncated_file_is_named_as_invalid_json(storage: Storage,
                                                   result: ProfileResult) -> None:
    path, _ = _stored_json(storage, result)
    path.write_bytes(path.read_bytes()[:500])
    _assert_clear_error(path, "not a stored aiperf run: invalid JSON")


@pytest.mark.parametrize("content", ["[]", '{"hello": 1}', '{"format": "1"}',
                                     '{"format": true}'])
def test_other_json_is_not_a_stored_run(tmp_path: Path, content: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(content)
    _assert_clear_error(path, "not a stored aiperf run")


def test_a_newer_format_asks_for_an_upgrade(storage: Storage, result: ProfileResult) -> None:
    path, data = _stored_json(storage, result)
    data["format"] = FORMAT_VERSION + 1
    data["values"] = "whatever a later version stores"
    path.write_text(json.dumps(data))
    _assert_clear_error(path, "format 2, newer than this pytest-aiperf reads .*upgrade")


def test_a_missing_field_is_named(storage: Storage, result: ProfileResult) -> None:
    path, data = _stored_json(storage, result)
    del data["fingerprint"]
    data["request_count"] = "many"
    path.write_text(json.dumps(data))
    _assert_clear_error(path, r"damaged stored run: .*fingerprint: Field required")


def test_damaged_array_data_names_the_metric(storage: Storage, result: ProfileResult) -> None:
    path, data = _stored_json(storage, result)
    data["values"]["request_latency"]["data"] = data["values"]["request_latency"]["data"][:40]
    path.write_text(json.dumps(data))
    _assert_clear_error(path, "damaged stored run: values of 'request_latency'")


def test_unknown_fields_of_the_same_format_are_ignored(storage: Storage,
                                                       result: ProfileResult) -> None:
    path, data = _stored_json(storage, result)
    data["added_later"] = {"x": 1}
    data["values"]["request_latency"]["added_later"] = 2
    path.write_text(json.dumps(data))
    assert Storage.read(path).metric_values("request_latency") is not None


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    _assert_clear_error(tmp_path / "nope.json", "cannot read it")


# -- the documented reader


def _doc_reader() -> str:
    section = DOC.read_text().split("### Reading a stored run without pytest-aiperf", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None, "the reader snippet is missing from docs/baselines.md"
    return block.group(1)


def test_the_documented_reader_reads_a_stored_file(storage: Storage,
                                                   result: ProfileResult) -> None:
    code = _doc_reader()
    assert len(code.strip().splitlines()) <= 10
    path = save(storage, result)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    run, arrays = namespace["read_stored_run"](path)
    stored = Storage.read(path)
    assert run["test_id"] == TEST and run["summary"] == stored.summary
    assert set(arrays) == set(stored.values)
    for tag, values in arrays.items():
        np.testing.assert_array_equal(values, stored.metric_values(tag))


def test_the_documented_reader_refuses_another_format(storage: Storage,
                                                      result: ProfileResult) -> None:
    path, data = _stored_json(storage, result)
    data["format"] = 2
    path.write_text(json.dumps(data))
    namespace: dict[str, Any] = {}
    exec(compile(_doc_reader(), str(DOC), "exec"), namespace)
    with pytest.raises(ValueError, match="format 2"):
        namespace["read_stored_run"](path)


def test_a_stored_run_reads_back_equal(storage: Storage, result: ProfileResult) -> None:
    run = stored_run(TEST, result, "auto", 1, machine=MACHINE)
    path = save(storage, result)
    again = Storage.read(path)
    assert isinstance(again, StoredRun)
    assert again.model_dump(exclude={"saved_at"}) == run.model_dump(exclude={"saved_at"})


# -- a real run


@pytest.mark.integration
def test_a_real_streaming_run_stores_within_the_size_budget(tmp_path: Path) -> None:
    """Every per-request metric of a real streaming run against the mock (with latency
    noise: the noise is what zlib cannot squeeze) costs at most 20 bytes a request, and the
    whole file stays within the 1 MiB that 10,000 requests may take, scaled to this run."""
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerProcess

    with MockServerProcess(ttft_ms=20, ttft_stddev_ms=2, itl_ms=0.5, itl_stddev_ms=0.2,
                           error_rate=0.02) as server, Mesh(workers=1) as mesh:
        result = mesh.run(url=server.url, streaming=True, concurrency=16, request_count=2000,
                          osl=8)
    path = Storage(tmp_path).save(TEST, result, "real", machine=MACHINE)
    run = Storage.read(path)
    requests = len(result.timeline)
    assert requests == 2000 and result.error_count > 0
    per_request = {t for t, m in result.metrics.items() if len(m.values)}
    assert set(run.values) == {t for t in per_request if not t.startswith("adj_")}
    assert {"http_req_waiting", "inter_chunk_latency", "time_to_first_token"} <= set(run.values)
    for tag, packed in run.values.items():
        assert len(packed.model_dump_json()) / requests <= 20, tag
    assert path.stat().st_size / requests <= 2**20 / 10_000
    # The end times line up with the values: end - latency is each request's start.
    ends, latency = run.end_times(), run.metric_values("request_latency")
    assert ends is not None and latency is not None and ends.size == latency.size
    timeline = result.timeline
    starts = (timeline.start_ns[timeline.ok] - timeline.start_ns.min()) / 1e9
    aligned = np.median(np.abs(ends - latency / 1e3 - starts))
    shifted = np.median(np.abs(np.roll(ends, 1) - latency / 1e3 - starts))
    # ``aligned`` is not 0: a request's latency starts once its connection is in hand, a
    # little after the timeline's start (tens of us with the lean client); neighbours end
    # about a millisecond apart at this rate (20 ms TTFT, c=16).
    assert aligned < shifted / 3, (aligned, shifted)
