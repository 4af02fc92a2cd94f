"""Stored runs: one JSON file per saved run of a load test, versioned, readable without us.

Layout (docs/baselines.md has the format)::

    <root>/<test slug>/<NNNN>_<name>.json

The slug is the pytest node id made safe for any file system (see ``node_slug``); the node
id itself is inside each file. ``NNNN`` grows per test and never restarts, so the order of
saves survives pruning; ``name`` is what ``--aiperf-save NAME`` said, or ``auto``.

Each file keeps every per-request metric's values (float32, zlib, base64: about 4.6 bytes
a value for latencies from a real run), so a later comparison can resample both runs.
Error-adjusted metrics (``adj_*``) are not stored twice: they are their base metric's values
plus one infinity per failed request, and ``metric_values`` rebuilds them that way. A
list-valued metric (``inter_chunk_latency``: one value per chunk) keeps a seeded random
sample of as many values as the run had requests, or a long answer would cost hundreds of
bytes a request; ``PackedValues.sampled_from`` then says how many there were.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from aiperf.baselines.fingerprint import Fingerprint, fingerprint
from aiperf.baselines.machine import MachineInfo, this_machine
from aiperf.common.config import MASK, mask_url
from aiperf.errors import AIPerfError

if TYPE_CHECKING:
    from aiperf.results import ProfileResult

FORMAT_VERSION = 1
# The plugin's default root, relative to pytest's rootdir (ini ``aiperf_storage``).
DEFAULT_ROOT = ".aiperf"
AUTO_NAME = "auto"
DEFAULT_KEEP = 20
# Level 1: on 10,000 noisy float32 latencies it takes 1.7 ms where the default (6) takes 2.5,
# for a result 0.6 % larger; the low bytes of a float are noise at any level.
ZLIB_LEVEL = 1
# The seed of the sample a list-valued metric keeps: the same run stores the same sample.
SAMPLE_SEED = 0

# A save holds the lock for a few ms (write, fsync, prune); this is a stuck holder.
LOCK_TIMEOUT_S = 10.0
LOCK_NAME = ".lock"

_FILE = re.compile(r"^(\d{4,})_([A-Za-z0-9._-]+)\.json$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_TEXT_CHARS = 80


class StorageError(AIPerfError, ValueError):
    """A stored run cannot be read or written; the message names the file."""


class PackedValues(BaseModel):
    """One metric's values: little-endian float32, zlib-compressed, base64 text.

    ``count`` is the number of values in ``data``; ``sampled_from``, when set, the number the
    run had (a list-valued metric keeps a sample)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    unit: str
    count: int = Field(ge=0)
    dtype: Literal["<f4"] = "<f4"
    encoding: Literal["zlib+base64"] = "zlib+base64"
    data: str
    sampled_from: int | None = Field(default=None, ge=0)

    @classmethod
    def pack(cls, values: np.ndarray, unit: str, sampled_from: int | None = None
             ) -> PackedValues:
        flat = np.ascontiguousarray(np.asarray(values).ravel(), dtype="<f4")
        data = base64.b64encode(zlib.compress(flat.tobytes(), ZLIB_LEVEL)).decode("ascii")
        return cls(unit=unit, count=int(flat.size), data=data, sampled_from=sampled_from)

    def unpack(self) -> np.ndarray:
        """A float64 copy of the values. ``ValueError`` when ``data`` is not what ``count``
        and the encoding promise."""
        try:
            raw = zlib.decompress(base64.b64decode(self.data, validate=True))
        except (ValueError, zlib.error) as exc:
            raise ValueError(f"undecodable {self.encoding} data ({exc})") from None
        if len(raw) != 4 * self.count:
            raise ValueError(f"{len(raw)} bytes of data for {self.count} float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)


class StoredRun(BaseModel):
    """One saved run of one test. Readers ignore fields they do not know; ``format`` grows
    only when an older reader would misread a file."""

    model_config = ConfigDict(extra="ignore")

    format: int
    test_id: str
    name: str
    number: int
    saved_at: str
    fingerprint: Fingerprint
    target: dict[str, str | None]
    machine: MachineInfo
    request_count: int
    error_count: int
    benchmark_duration_s: float
    summary: dict[str, dict[str, Any]]
    values: dict[str, PackedValues]
    end_times_s: PackedValues | None = None
    # A multi-turn run: the 0-based turn of each stored value of a metric (-1: not a turn),
    # and of each failed profiling request, so that a rule on some turns
    # ("time_to_first_token.p99[turn>=2]") reads those turns' values. Absent from a
    # single-turn run and from a file saved before they were kept.
    value_turns: dict[str, PackedValues] = Field(default_factory=dict)
    error_turns: PackedValues | None = None

    _unpacked: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)

    def metric_values(self, tag: str) -> np.ndarray | None:
        """The per-request values of ``tag`` in its display unit, read-only (shared between
        calls); an ``adj_*`` tag gets one ``inf`` per failed request, as ``MetricResult``
        computes it. ``None`` when the run did not measure ``tag``."""
        if tag in self.values:
            return self._array(tag, self.values[tag])
        base = tag.removeprefix("adj_")
        if base != tag and base in self.values and tag in self.summary:
            key = f"\0{tag}"  # the rebuilt array is cached apart from the stored ones
            if key not in self._unpacked:
                data = np.concatenate([self._array(base, self.values[base]),
                                       np.full(self.error_count, np.inf)])
                data.setflags(write=False)
                self._unpacked[key] = data
            return self._unpacked[key]
        return None

    def turn_values(self, tag: str, low_index: int,
                    high_index: int | None) -> np.ndarray | None:
        """``tag``'s values of the turns whose 0-based index is in [``low_index``,
        ``high_index``] (None: no last); an ``adj_*`` tag gets one ``inf`` per failed
        request of those turns. ``None`` when the run kept no per-turn values of ``tag``."""
        base = tag.removeprefix("adj_")
        values = self.metric_values(base)
        if values is None or base not in self.value_turns:
            return None
        turns = self._array(f"\0turns:{base}", self.value_turns[base])
        if turns.size != values.size:
            return None
        out = values[in_turn_range(turns, low_index, high_index)]
        if base == tag:
            return out
        if self.error_turns is None:
            if self.error_count:
                return None  # failed requests whose turns are not known
            return out
        errors = self._array("\0error_turns", self.error_turns)
        failed = int(np.count_nonzero(in_turn_range(errors, low_index, high_index)))
        return np.concatenate([out, np.full(failed, np.inf)])

    def end_times(self) -> np.ndarray | None:
        """When each successful profiling request ended, in seconds from the first request's
        start (failed ones included in that origin), in the order of the per-request values
        of metrics every successful request carries; read-only."""
        if self.end_times_s is None:
            return None
        return self._array("\0end_times_s", self.end_times_s)

    def _array(self, key: str, packed: PackedValues) -> np.ndarray:
        if key not in self._unpacked:
            data = packed.unpack()
            data.setflags(write=False)
            self._unpacked[key] = data
        return self._unpacked[key]

    def unpack_all(self) -> None:
        """Decode every array now (``ValueError`` naming the first bad one)."""
        for tag, packed in self.values.items():
            try:
                self._array(tag, packed)
            except ValueError as exc:
                raise ValueError(f"values of {tag!r}: {exc}") from None
        if self.end_times_s is not None:
            try:
                self.end_times()
            except ValueError as exc:
                raise ValueError(f"end_times_s: {exc}") from None
        for tag, packed in self.value_turns.items():
            try:
                self._array(f"\0turns:{tag}", packed)
            except ValueError as exc:
                raise ValueError(f"value_turns of {tag!r}: {exc}") from None
        if self.error_turns is not None:
            try:
                self._array("\0error_turns", self.error_turns)
            except ValueError as exc:
                raise ValueError(f"error_turns: {exc}") from None


def in_turn_range(turns: np.ndarray, low_index: int, high_index: int | None) -> np.ndarray:
    """Which of ``turns`` (0-based turn indexes) are in [``low_index``, ``high_index``]
    (None: no last): a bool mask."""
    keep = turns >= low_index
    return keep if high_index is None else keep & (turns <= high_index)


def stored_run(test_id: str, result: ProfileResult, name: str, number: int, *,
               machine: MachineInfo | None = None) -> StoredRun:
    """``result`` as a ``StoredRun``, without writing it. ``machine`` defaults to
    ``this_machine()``."""
    config = result.config
    summary = {tag: {"unit": m.unit, **{k: _plain(v) for k, v in m.stats.items()}}
               for tag, m in result.metrics.items()}
    timeline = result.timeline
    requests = len(timeline) or (result.request_count + result.error_count)
    values: dict[str, PackedValues] = {}
    record_turns = _record_turns(result)
    value_turns: dict[str, PackedValues] = {}
    # Some metrics carry the same values (TTFT and TTFO without reasoning; request latency
    # and HTTP duration): each distinct array is compressed once, the bulk of a save's time.
    packed_data: dict[bytes, str] = {}
    for tag, metric in result.metrics.items():
        if tag.startswith("adj_") or not len(metric.values):
            continue
        data = np.asarray(metric.values, dtype=np.float64)
        sampled_from = None
        keep = None
        if data.size > max(requests, 1):  # a list-valued metric (one value per chunk)
            keep = np.random.default_rng(SAMPLE_SEED).choice(data.size, max(requests, 1),
                                                             replace=False)
            keep.sort()  # the sample keeps the run's order
            data, sampled_from = data[keep], data.size
        if record_turns is not None and len(metric.record_index) == len(metric.values):
            index = np.asarray(metric.record_index, dtype=np.int64)
            turns = record_turns[index if keep is None else index[keep]]
            raw_turns = turns.astype("<f4").tobytes()
            if raw_turns not in packed_data:
                packed_data[raw_turns] = PackedValues.pack(turns, "turn").data
            value_turns[tag] = PackedValues(unit="turn", count=turns.size,
                                            data=packed_data[raw_turns])
        raw = data.astype("<f4").tobytes()
        if raw not in packed_data:
            packed_data[raw] = PackedValues.pack(data, metric.unit).data
        values[tag] = PackedValues(unit=metric.unit, count=data.size, data=packed_data[raw],
                                   sampled_from=sampled_from)
    end_times = None
    if len(timeline):
        origin = int(timeline.start_ns.min())
        ends = (timeline.end_ns[timeline.ok] - origin) / 1e9
        end_times = PackedValues.pack(ends, "s")
    duration = result.metrics.get("benchmark_duration")
    return StoredRun(
        format=FORMAT_VERSION,
        test_id=test_id,
        name=name,
        number=number,
        saved_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        fingerprint=fingerprint(config) if config is not None
        else Fingerprint(digest="", keys={}),
        target={"url": target_url(config.url) if config is not None else None,
                "model": config.model if config is not None else None},
        machine=machine if machine is not None else this_machine(),
        request_count=result.request_count,
        error_count=result.error_count,
        benchmark_duration_s=float(duration.stat("avg")) if duration is not None else 0.0,
        summary=summary,
        values=values,
        end_times_s=end_times,
        value_turns=value_turns,
        error_turns=(PackedValues.pack(record_turns[~timeline.ok], "turn")
                     if record_turns is not None else None),
    )


def _record_turns(result: ProfileResult) -> np.ndarray | None:
    """Each profiling request's turn (timeline order) of a multi-turn run that kept its
    per-request table; None otherwise (a single-turn run stores no turns: one scan of the
    table saved)."""
    from aiperf.dataset.breakdowns import record_turns
    from aiperf.dataset.sessions import is_multi_turn

    config = result.config
    if config is None or not (is_multi_turn(config) or config.input_file is not None):
        return None
    if not len(result.records) or not len(result.timeline):
        return None
    turns = record_turns(result.records)
    if turns.size != len(result.timeline) or not (turns >= 0).any():
        return None  # a table that does not match the timeline is not guessed at
    return turns


def target_url(url: str) -> str:
    """``url`` as a stored run keeps it: no user or password, and no query or fragment,
    which some services use for keys (``?code=...``, ``?sig=...``); a ``?***`` says one was
    there."""
    masked = mask_url(url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return MASK
    if not parts.query and not parts.fragment:
        return masked
    return urlunsplit(parts._replace(query="", fragment="")) + f"?{MASK}"


def _plain(value: Any) -> Any:
    """A JSON number or None: numpy scalars as Python ones, non-finite floats as None (the
    convention of the stats, where None stands for a bound that does not exist)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def node_slug(test_id: str) -> str:
    """The directory name of a test: its node id with every run of characters other than
    letters, digits, ``.``, ``_`` and ``-`` turned into one ``-``, cut to 80 characters,
    then ``-`` and the first 8 hex digits of the node id's SHA-256. The text keeps it
    readable; the hash keeps two ids that read alike (``a/b`` and ``a-b``, or ids past
    80 characters) apart. ``tests/test_x.py::test_chat[8]`` becomes
    ``tests-test_x.py-test_chat-8-1d5c0f7e``-like names."""
    text = _UNSAFE.sub("-", test_id).strip("-.")[:_SLUG_TEXT_CHARS].rstrip("-.")
    digest = hashlib.sha256(test_id.encode("utf-8")).hexdigest()[:8]
    return f"{text or 'test'}-{digest}"


def _safe_name(name: str) -> str:
    safe = _UNSAFE.sub("-", name).strip("-.")
    if not safe:
        raise StorageError(f"run name {name!r} has no letter or digit to keep")
    if safe.isdigit() or safe == "latest":
        raise StorageError(f"run name {name!r} would read as a run number or as 'latest' "
                           "when loading; add a letter")
    return safe


class Storage:
    """The stored runs under ``root``. ``keep``: runs kept per test (0: all); the newest run
    of each explicitly named save is never pruned, so a deliberate baseline outlives any
    number of autosaves."""

    def __init__(self, root: Path, keep: int = DEFAULT_KEEP) -> None:
        if keep < 0:
            raise StorageError(f"keep must be 0 (keep all) or more, not {keep}")
        self.root = Path(root)
        self.keep = keep
        self._machine: MachineInfo | None = None

    def save(self, test_id: str, result: ProfileResult, name: str | None = None, *,
             machine: MachineInfo | None = None) -> Path:
        """Store ``result`` as the next run of ``test_id``; returns its file. ``name`` None
        is an autosave (named ``auto``). Writes atomically, then prunes."""
        label = AUTO_NAME if name is None else _safe_name(name)
        directory = self.root / node_slug(test_id)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{directory}: cannot create the storage directory "
                               f"({exc.strerror or exc})") from None
        if machine is None:
            # Once per storage (a session): the git state is the session's, and asking git
            # per test would cost milliseconds each time.
            if self._machine is None:
                self._machine = this_machine(cwd=directory)
            machine = self._machine
        # Packed before the lock (the costly part); numbered, written and pruned under it,
        # so two sessions saving one test at once never take one number twice.
        run = stored_run(test_id, result, label, 0, machine=machine)
        with _locked(directory):
            numbers = [n for n, _, _ in self._entries(directory)]
            run = run.model_copy(update={"number": max(numbers, default=0) + 1})
            path = self._write(directory, run, label)
            self._prune(directory)
        return path

    def load(self, test_id: str, which: str = "latest") -> StoredRun | None:
        """``which``: ``latest``, a saved name (its newest run) or a number (``3``,
        ``0003``). None when there is no such run; ``StorageError`` when its file is bad."""
        entries = self._entries(self._directory(test_id))
        if which == "latest":
            chosen = entries[-1:]
        elif which.isdigit():
            chosen = [e for e in entries if e[0] == int(which)]
        else:
            safe = _UNSAFE.sub("-", which).strip("-.")
            chosen = [e for e in entries if e[1] == safe][-1:]
        return self.read(chosen[-1][2]) if chosen else None

    def history(self, test_id: str) -> list[StoredRun]:
        """Every stored run of ``test_id``, oldest first."""
        return [self.read(path) for _, _, path in self._entries(self._directory(test_id))]

    def tests(self) -> list[str]:
        """The node ids of the tests with stored runs, sorted."""
        if not self.root.is_dir():
            return []
        ids = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            entries = self._entries(directory)
            if entries:
                ids.append(_test_id_of(entries[-1][2]))
        return sorted(ids)

    @staticmethod
    def read(path: Path) -> StoredRun:
        """A stored run from its file, wherever it is. ``StorageError`` naming the file when
        it is not one, is damaged, or has a newer format than this package reads."""
        path = Path(path)
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise StorageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StorageError(f"{path}: not a stored aiperf run: invalid JSON ({exc})") \
                from None
        if not isinstance(data, dict) or not isinstance(data.get("format"), int) \
                or isinstance(data.get("format"), bool):
            raise StorageError(f"{path}: not a stored aiperf run: no integer 'format' field")
        if data["format"] > FORMAT_VERSION:
            raise StorageError(
                f"{path}: stored in format {data['format']}, newer than this pytest-aiperf "
                f"reads (format {FORMAT_VERSION}); upgrade pytest-aiperf to read it")
        if data["format"] < 1:
            raise StorageError(f"{path}: not a stored aiperf run: format {data['format']}")
        try:
            run = StoredRun.model_validate(data)
        except ValidationError as exc:
            # Names and reasons only: pydantic's own text repeats the input, megabytes of it.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
                for err in exc.errors()[:3])
            more = exc.error_count() - 3
            tail = f"; and {more} more" if more > 0 else ""
            raise StorageError(f"{path}: damaged stored run: {problems}{tail}") from None
        try:
            run.unpack_all()
        except ValueError as exc:
            raise StorageError(f"{path}: damaged stored run: {exc}") from None
        return run

    # -- private

    def _directory(self, test_id: str) -> Path:
        """A node id's directory; a slug (as ``aiperf history`` may be given) is its own."""
        # A slug has no "::" or "/" and every node id of a test function has "::".
        if "::" not in test_id and "/" not in test_id and (self.root / test_id).is_dir():
            return self.root / test_id
        return self.root / node_slug(test_id)

    @staticmethod
    def _entries(directory: Path) -> list[tuple[int, str, Path]]:
        """(number, name, path) of the runs in ``directory``, by number."""
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        entries = []
        for file_name in names:
            match = _FILE.match(file_name)
            if match is not None:
                entries.append((int(match.group(1)), match.group(2), directory / file_name))
        return sorted(entries)

    @staticmethod
    def _write(directory: Path, run: StoredRun, label: str) -> Path:
        handle, temp_name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        os.close(handle)
        temp = Path(temp_name)
        try:
            _write_synced(temp, run)
            number = run.number
            while True:
                path = directory / f"{number:04d}_{label}.json"
                try:
                    # link, not rename: it fails when the name exists, so two sessions
                    # saving the same test at once never overwrite each other's run.
                    os.link(temp, path)
                except FileExistsError:
                    number = max([n for n, _, _ in Storage._entries(directory)] + [number]) + 1
                    # The file says the number it got.
                    run = run.model_copy(update={"number": number})
                    _write_synced(temp, run)
                    continue
                except OSError:
                    os.replace(temp, path)  # a file system without hard links
                break
        except OSError as exc:
            raise StorageError(f"{directory}: cannot write a stored run "
                               f"({exc.strerror or exc})") from None
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        return path

    def _prune(self, directory: Path) -> None:
        if self.keep == 0:
            return
        entries = self._entries(directory)
        newest_of_name = {name: number for number, name, _ in entries if name != AUTO_NAME}
        kept = {number for number, _, _ in entries[-self.keep:]}
        kept |= set(newest_of_name.values())
        for number, _, path in entries:
            if number not in kept:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (``.lock`` in it, flock), waited for at most
    ``LOCK_TIMEOUT_S``. The kernel drops it when its holder dies, so a killed session never
    leaves a test locked. Without fcntl (Windows) there is no lock: the no-clobber link in
    ``_write`` still keeps two saves of one name apart, not of two names."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"{directory}: cannot open its lock file "
                           f"({exc.strerror or exc})") from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StorageError(
                        f"{directory}: another process has held its lock for "
                        f"{LOCK_TIMEOUT_S:.0f} s; no run saved") from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_synced(path: Path, run: StoredRun) -> None:
    with path.open("wb") as out:
        out.write(run.model_dump_json(indent=1).encode("utf-8"))
        out.flush()
        os.fsync(out.fileno())


def _test_id_of(path: Path) -> str:
    """The node id in a stored file, read from its head (``test_id`` is the second field);
    the whole file when the head does not hold it."""
    with contextlib.suppress(OSError, ValueError):
        with path.open("rb") as handle:
            head = handle.read(8192).decode("utf-8", errors="ignore")
        match = re.search(r'"test_id"\s*:\s*', head)
        if match is not None:
            value, _ = json.JSONDecoder().raw_decode(head, match.end())
            if isinstance(value, str):
                return value
    return Storage.read(path).test_id
