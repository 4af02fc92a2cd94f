"""Result sources for ``aiperf compare``: whatever a run left on disk, read the same way.

``load_source(path)`` takes any of

- a **stored run** (``<storage>/<test slug>/NNNN_<name>.json``, ``aiperf.baselines.storage``);
- an **artifact directory of this project** (``aiperf profile --output-artifact-dir``, or a
  pytest run's artifacts): ``profile_export_aiperf.json`` + ``profile_export.jsonl``;
- an **artifact directory of NVIDIA AIPerf** (same two file names, AIPerf's own shapes;
  the per-request file needs ``--export-level records``, 0.13's default).

Which one a path is comes from its content, never from a flag or a file name: a JSON file
with an integer ``format`` and a ``test_id`` is a stored run; a directory whose summary has
``aiperf_version`` (AIPerf writes it since schema 1.x) is NVIDIA AIPerf's, any other
directory with both files is ours. A file of either directory names its directory. A path
that is none of these is a ``SourceError`` naming it.

Per-request values come from ``profile_export.jsonl``, streamed by one reader
(``_profiling_chunks``, 256 KiB of lines at a time) for a comparison and a report's
timeline (``load_requests``) alike: only the metrics asked for are decoded and kept (8
bytes a value, in arrays), so a file of a million requests costs tens of MB, not the GB
its Python objects would. Profiling records only (warmup
records are excluded, as from every statistic). Each value is converted to this project's
display unit of its metric (AIPerf's ``sec``, ``us`` or ``ns`` to ``ms``, for one); a
metric whose unit cannot be converted is left out and ``notes`` says so.

Throughput windows need each request's end: ``metadata.request_end_ns`` of every successful
profiling record, in seconds from the earliest ``request_start_ns`` (failed requests
included in that origin, as a stored run does). Both tools write those in one clock per
run (ours ``perf_counter``, AIPerf's wall clock), which is all a difference of times needs.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, overload

import msgspec
import numpy as np

from aiperf.baselines.fingerprint import Fingerprint, fingerprint
from aiperf.baselines.machine import MachineInfo
from aiperf.baselines.storage import Storage, StorageError, StoredRun, in_turn_range
from aiperf.common.config import mask_url
from aiperf.errors import AIPerfError
from aiperf.metrics.definitions import BY_TAG

SUMMARY_FILE = "profile_export_aiperf.json"
RECORDS_FILE = "profile_export.jsonl"
PROFILING = "profiling"

SourceKind = Literal["stored", "artifacts", "nvidia-aiperf"]
KIND_TITLES: dict[str, str] = {
    "stored": "stored run",
    "artifacts": "pytest-aiperf artifacts",
    "nvidia-aiperf": "NVIDIA AIPerf artifacts",
}

# Seconds per time unit, in every spelling either tool writes.
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}
# A summary bigger than this is not a profile summary (a stray file of the same name).
_MAX_SUMMARY_BYTES = 64 << 20


class SourceError(AIPerfError, ValueError):
    """A path is not a result source, or a source is unreadable; the message names it."""


@dataclass(eq=False, repr=False)
class LoadedRun:
    """One source's run, as a comparison reads it (``aiperf.baselines.compare.RunValues``).

    ``label`` is the path as given; ``fingerprint`` None when the source did not keep its
    profile (``fingerprint_note`` says how it was obtained otherwise); ``machine`` None for
    artifact directories, which do not record one; ``summary`` is the run's
    ``profile_export_aiperf.json`` metric entries (tag -> ``{"unit", "avg", ...}``)."""

    label: str
    kind: SourceKind
    path: Path
    summary: dict[str, dict[str, Any]]
    fingerprint: Fingerprint | None = None
    fingerprint_note: str | None = None
    machine: MachineInfo | None = None
    target: dict[str, str | None] = field(default_factory=dict)
    tool_version: str | None = None
    when: str | None = None
    notes: list[str] = field(default_factory=list)
    stored: StoredRun | None = None
    _values: dict[str, np.ndarray] = field(default_factory=dict)
    _end_times: np.ndarray | None = None
    _errors: int = 0
    # A multi-turn artifact directory: each value's turn_index per metric, and each failed
    # request's (None: no record carried a turn)
    _value_turns: dict[str, np.ndarray] | None = None
    _error_turns: np.ndarray | None = None

    @property
    def request_count(self) -> int:
        if self.stored is not None:
            return self.stored.request_count
        return int(_summary_number(self.summary, "request_count") or 0)

    @property
    def error_count(self) -> int:
        if self.stored is not None:
            return self.stored.error_count
        found = _summary_number(self.summary, "error_request_count")
        return int(found) if found is not None else self._errors

    @property
    def title(self) -> str:
        """What the source is, for a header line: kind, tool version, size."""
        kind = KIND_TITLES[self.kind]
        if self.tool_version:
            kind += f" {self.tool_version}"
        if self.stored is not None:
            kind += f" of {self.stored.test_id} (#{self.stored.number} {self.stored.name})"
        return f"{kind}: {self.request_count} requests, {self.error_count} errors"

    def metric_values(self, tag: str) -> np.ndarray | None:
        """``tag``'s per-request values in its display unit (read-only), or None when the
        run did not measure it (or it was not asked for when loading). ``adj_<tag>``: the
        values plus one ``inf`` per failed request."""
        if self.stored is not None:
            return self.stored.metric_values(tag)
        if tag in self._values:
            return self._values[tag]
        base = tag.removeprefix("adj_")
        if base != tag and base in self._values:
            data = np.concatenate([self._values[base], np.full(self.error_count, np.inf)])
            data.setflags(write=False)
            self._values[tag] = data
            return data
        return None

    def turn_values(self, tag: str, low_index: int,
                    high_index: int | None) -> np.ndarray | None:
        """``tag``'s values of the turns in [``low_index``, ``high_index``] (0-based; None:
        no last), as ``StoredRun.turn_values``; None when the run kept no turns."""
        if self.stored is not None:
            return self.stored.turn_values(tag, low_index, high_index)
        base = tag.removeprefix("adj_")
        if self._value_turns is None or base not in self._values:
            return None
        out = self._values[base][in_turn_range(self._value_turns[base], low_index, high_index)]
        if base == tag:
            return out
        errors = self._error_turns if self._error_turns is not None else np.empty(0)
        failed = int(np.count_nonzero(in_turn_range(errors, low_index, high_index)))
        return np.concatenate([out, np.full(failed, np.inf)])

    def end_times(self) -> np.ndarray | None:
        """Each successful profiling request's end, seconds from the run's first start."""
        if self.stored is not None:
            return self.stored.end_times()
        return self._end_times

    def tags(self) -> list[str]:
        """The metrics with per-request values in this source (as loaded)."""
        if self.stored is not None:
            return sorted(self.stored.values)
        return sorted(self._values)

    def __repr__(self) -> str:
        return f"<LoadedRun {self.label!r}: {self.title}>"


def load_source(path: Path | str, tags: Iterable[str] | None = None) -> LoadedRun:
    """The run at ``path`` (see the module docstring for what a source can be).

    ``tags``: the metrics whose per-request values to keep (``adj_`` and throughput names
    are mapped to what they need); None keeps every metric. A stored run always has all of
    its values. ``SourceError`` names the path when it is not a source or cannot be read.
    """
    given = str(path)
    where = Path(path)
    if not where.exists():
        raise SourceError(f"{given}: no such file or directory")
    if where.is_file():
        if _is_stored_run(where):
            return _load_stored(where, given)
        if where.name in (SUMMARY_FILE, RECORDS_FILE):
            where = where.parent  # a file of an artifact directory stands for the directory
        else:
            raise SourceError(
                f"{given}: not a result source: a file must be a stored run (JSON with "
                f"'format' and 'test_id'), {SUMMARY_FILE} or {RECORDS_FILE}")
    if not where.is_dir():
        raise SourceError(f"{given}: not a file or a directory")
    return _load_artifacts(where, given, None if tags is None else _needed(tags))


# -- stored runs


def _is_stored_run(path: Path) -> bool:
    """Whether ``path`` looks like a stored run: its head has ``format`` and ``test_id``
    (``Storage.read`` checks the rest and names what is wrong)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return head.lstrip().startswith(b"{") and b'"format"' in head and b'"test_id"' in head


def _load_stored(path: Path, given: str) -> LoadedRun:
    try:
        run = Storage.read(path)
    except StorageError as exc:
        raise SourceError(str(exc)) from None
    return LoadedRun(label=given, kind="stored", path=path, summary=run.summary,
                     fingerprint=run.fingerprint if run.fingerprint.digest else None,
                     machine=run.machine, target=dict(run.target), when=run.saved_at,
                     stored=run)


# -- artifact directories


def _load_artifacts(directory: Path, given: str, tags: set[str] | None) -> LoadedRun:
    summary_path = directory / SUMMARY_FILE
    records_path = directory / RECORDS_FILE
    if not summary_path.is_file() and not records_path.is_file():
        raise SourceError(
            f"{given}: not a result source: a directory must hold {SUMMARY_FILE} and "
            f"{RECORDS_FILE} (an artifact directory of pytest-aiperf or NVIDIA AIPerf); "
            f"for a stored run give its .json file")
    if not summary_path.is_file():
        raise SourceError(f"{given}: has {RECORDS_FILE} but no {SUMMARY_FILE}")
    summary_doc = _read_summary(summary_path)
    nvidia = "aiperf_version" in summary_doc or "schema_version" in summary_doc
    if not records_path.is_file():
        hint = (" (NVIDIA AIPerf writes it with --export-level records)" if nvidia else "")
        raise SourceError(
            f"{given}: has {SUMMARY_FILE} but no {RECORDS_FILE}: the per-request values a "
            f"comparison resamples are in that file{hint}")
    summary = {tag: dict(entry) for tag, entry in summary_doc.items()
               if isinstance(entry, dict) and isinstance(entry.get("unit"), str)}
    config = summary_doc.get("input_config")
    config = config if isinstance(config, dict) else {}
    run = LoadedRun(label=given, kind="nvidia-aiperf" if nvidia else "artifacts",
                    path=directory, summary=summary, when=_text(summary_doc.get("start_time")))
    if nvidia:
        run.tool_version = _text(summary_doc.get("aiperf_version"))
        run.fingerprint, run.fingerprint_note = _nvidia_fingerprint(config)
        run.target = _nvidia_target(config)
    else:
        run.fingerprint, run.fingerprint_note = _our_fingerprint(config)
        run.target = {"url": mask_url(str(config["url"])) if config.get("url") else None,
                      "model": _text(config.get("model"))}
    _read_records(records_path, run, tags)
    return run


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > _MAX_SUMMARY_BYTES:
            raise SourceError(f"{path}: {path.stat().st_size} bytes is not a profile summary")
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise SourceError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path}: not a profile summary (a JSON object of metrics)")
    return data


def _needed(tags: Iterable[str]) -> set[str]:
    """The per-request metrics to keep for ``tags``: an ``adj_`` tag needs its base, a
    token throughput its sequence lengths (its weights), a request throughput nothing but
    the end times, which are always kept."""
    from aiperf.baselines.compare import THROUGHPUTS

    out: set[str] = set()
    for tag in tags:
        base = tag.removeprefix("adj_")
        if base in THROUGHPUTS:
            out.update(THROUGHPUTS[base] or ())
        else:
            out.add(base)
    return out


class _Times(msgspec.Struct):
    """What a comparison needs of a record's metadata (fields left out cost nothing)."""

    benchmark_phase: str = PROFILING
    request_start_ns: int | None = None
    request_end_ns: int | None = None
    credit_issued_ns: int | None = None
    turn_index: int | None = None  # a turn of a multi-turn session (0-based)


class _Meta(_Times):
    """What a timeline needs besides: the request's id and the wall clock."""

    credit_id: int | None = None
    x_request_id: str | None = None
    timestamp_ns: int | None = None  # ours: the wall clock at the request's start


class _Value(msgspec.Struct):
    # Any: a foreign tool may write a string or null; such a value is skipped, not fatal.
    value: Any = None
    unit: str = ""


def _decoder(tags: set[str] | None, meta: type[_Times]) -> msgspec.json.Decoder[Any]:
    """A decoder of one JSONL record that decodes only the metrics in ``tags`` and the
    metadata in ``meta``: a typed struct makes msgspec skip every other field without
    building it."""
    if tags is None:
        metrics: Any = dict[str, _Value]
        default: Any = msgspec.field(default_factory=dict)
    else:
        fields = [(tag, _Value | None, None) for tag in sorted(tags)]
        metrics = msgspec.defstruct("_Metrics", fields)  # type: ignore[arg-type]
        default = None
    record = msgspec.defstruct("_Record", [
        ("metadata", meta, msgspec.field(default_factory=meta)),
        ("metrics", metrics | None, default),
        # Any: AIPerf's is an object (code, type, message); any other shape still fails
        # the request, and _error_text makes what it can of it.
        ("error", Any, None),
    ])
    return msgspec.json.Decoder(record)


def _profiling_chunks(path: Path, tags: set[str] | None,
                      meta: type[_Times] = _Times) -> Iterator[list[Any]]:
    """The one reader of ``profile_export.jsonl``: its profiling records, in file order,
    ``_CHUNK_BYTES`` of lines at a time, each chunk decoded in one msgspec call (faster
    than a record at a time), so a run of millions of requests never has its lines or
    records in memory at once. Only ``tags``' metrics are decoded (None: all), and
    ``meta``'s fields of the metadata. ``SourceError`` names the file, and the line of a
    record that is not one."""
    decoder = _decoder(tags, meta)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    first_line = 1
    with handle:
        while lines := handle.readlines(_CHUNK_BYTES):
            try:
                records = decoder.decode_lines(b"".join(lines))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                _raise_at_line(decoder, lines, first_line, path)
                raise SourceError(f"{path}: not per-request records ({exc})") from None
            first_line += len(lines)
            yield [r for r in records if r.metadata.benchmark_phase == PROFILING]


def _start_ns(record: Any) -> int | None:
    """When a request started; one that failed before it was sent has no start (0), and
    its credit time stands in, as in the run's own timeline."""
    meta = record.metadata
    if record.error is not None and not meta.request_start_ns:
        return meta.credit_issued_ns
    return meta.request_start_ns


class _Column:
    """One metric's values as they stream in: 8 bytes a value, the unit checked once per
    distinct unit string (records of one run all use one)."""

    __slots__ = ("factors", "target", "turns", "values")

    def __init__(self, target: str | None) -> None:
        self.values: array[float] = array("d")
        self.turns: array[int] = array("i")  # each value's record's turn_index, -1: none
        self.target = target
        self.factors: dict[str, float | None] = {}

    def add(self, item: _Value, turn: int) -> str | None:
        """Adds ``item``'s value(s) of a record of turn ``turn``; returns its unit when it
        cannot be converted."""
        factor = self.factors.get(item.unit, 0.0)
        if factor == 0.0:
            factor = self.factors[item.unit] = _unit_factor(item.unit, self.target)
        if factor is None:
            return item.unit
        value = item.value
        kind = type(value)  # exact types: bool is an int, and is no value here
        if kind is float or kind is int:
            self.values.append(value * factor if factor != 1.0 else value)
            self.turns.append(turn)
        elif kind is list:
            numbers = [v for v in value if type(v) is float or type(v) is int]
            self.values.extend([v * factor for v in numbers] if factor != 1.0 else numbers)
            self.turns.extend([turn] * len(numbers))
        return None


def _read_records(path: Path, run: LoadedRun, tags: set[str] | None) -> None:
    fields = sorted(tags) if tags is not None else []
    # One call fetches every asked metric of a record; a lone tag still gives a tuple.
    get_all: Any = (attrgetter(*fields) if len(fields) > 1 else
                    (lambda m: (getattr(m, fields[0]),)) if fields else (lambda m: ()))
    columns: dict[str, _Column] = {}
    bad_units: dict[str, str] = {}
    ends = array("q")
    first_start: int | None = None
    errors = 0
    error_turns = array("i")
    multi_turn = False
    for records in _profiling_chunks(path, tags):
        for record in records:
            start = _start_ns(record)
            if start is not None and (first_start is None or start < first_start):
                first_start = start
            turn = record.metadata.turn_index
            turn = -1 if turn is None else turn
            multi_turn = multi_turn or turn >= 0
            if record.error is not None:
                errors += 1
                error_turns.append(turn)
            elif record.metadata.request_end_ns:
                ends.append(record.metadata.request_end_ns)
            metrics = record.metrics
            if metrics is None:
                continue
            items = metrics.items() if tags is None else zip(fields, get_all(metrics),
                                                             strict=True)
            for tag, item in items:
                if item is None or tag in bad_units:
                    continue
                column = columns.get(tag)
                if column is None:
                    spec = BY_TAG.get(tag)
                    column = columns[tag] = _Column(spec.unit if spec else None)
                unit = column.add(item, turn)
                if unit is not None:
                    bad_units[tag] = unit
    for tag, column in columns.items():
        if tag in bad_units or not len(column.values):
            continue
        data = np.frombuffer(column.values, dtype=np.float64)
        data.setflags(write=False)
        run._values[tag] = data
        if multi_turn:
            if run._value_turns is None:
                run._value_turns = {}
            run._value_turns[tag] = np.frombuffer(column.turns, dtype=np.int32)
    if multi_turn:
        run._error_turns = np.frombuffer(error_turns, dtype=np.int32)
    for tag, unit in sorted(bad_units.items()):
        run.notes.append(f"{tag} left out: its unit {unit!r} does not convert to "
                         f"{BY_TAG[tag].unit!r}")
    run._errors = errors
    if first_start is not None and len(ends):
        end_s = (np.frombuffer(ends, dtype=np.int64) - first_start) / 1e9
        end_s.setflags(write=False)
        run._end_times = end_s


def _unit_factor(unit: str, target: str | None) -> float | None:
    """What a value in ``unit`` is multiplied by to be in ``target``; None when the two
    are not the same quantity. Times convert among themselves, and so do rates over time
    (``tokens/sec`` and ``tokens/ms``, ``tokens/sec/user``)."""
    if target is None or unit == target or not unit:
        return 1.0
    if unit in _SECONDS and target in _SECONDS:
        return _SECONDS[unit] / _SECONDS[target]
    have, want = unit.split("/"), target.split("/")
    if (len(have) == len(want) >= 2 and have[0] == want[0] and have[2:] == want[2:]
            and have[1] in _SECONDS and want[1] in _SECONDS):
        return _SECONDS[want[1]] / _SECONDS[have[1]]
    return None


# -- profiles


def _our_fingerprint(config: dict[str, Any]) -> tuple[Fingerprint | None, str | None]:
    from aiperf.common.config import UserConfig

    if not config:
        return None, "the summary has no input_config"
    try:
        return fingerprint(UserConfig.model_validate(config)), None
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        first = str(exc).splitlines()[0]
        return None, f"its input_config is not this version's profile ({first})"


def _nvidia_fingerprint(config: dict[str, Any]) -> tuple[Fingerprint | None, str | None]:
    """The profile of an AIPerf 0.13 run, mapped onto ours (model, endpoint, streaming,
    the profiling phase's load, the synthetic prompts' lengths), so that a comparison with
    one of our runs can name what differs. Keys AIPerf's config does not state are left at
    our defaults; anything unexpected gives no fingerprint rather than a wrong one."""
    from aiperf.common.config import UserConfig

    note = "mapped from NVIDIA AIPerf's input_config"
    try:
        values: dict[str, Any] = {}
        models = config.get("models", {}).get("items") or []
        if models and isinstance(models[0], dict) and models[0].get("name"):
            values["model"] = models[0]["name"]
        endpoint = config.get("endpoint") or {}
        if endpoint.get("type"):
            values["endpoint_type"] = endpoint["type"]
        if endpoint.get("streaming") is not None:
            values["streaming"] = bool(endpoint["streaming"])
        for phase in config.get("phases") or []:
            kind = phase.get("kind")
            if kind == "warmup" and phase.get("requests"):
                values["warmup_request_count"] = int(phase["requests"])
            if kind != "profiling":
                continue
            if phase.get("concurrency"):
                values["concurrency"] = int(phase["concurrency"])
            if phase.get("requests"):
                values["request_count"] = int(phase["requests"])
            if phase.get("rate"):
                values["request_rate"] = float(phase["rate"])
            if phase.get("duration"):
                values["benchmark_duration"] = float(phase["duration"])
        for dataset in (config.get("datasets") or [])[:1]:
            if dataset.get("random_seed") is not None:
                values["random_seed"] = int(dataset["random_seed"])
            prompts = dataset.get("prompts") or {}
            for name in ("isl", "osl"):
                spec = prompts.get(name) or {}
                if spec.get("mean") is not None:
                    values[name] = round(float(spec["mean"]))
                if spec.get("stddev") is not None:
                    values[f"{name}_stddev"] = float(spec["stddev"])
        if not values:
            return None, "NVIDIA AIPerf's input_config names no profile"
        return fingerprint(UserConfig.model_validate(values)), note
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"NVIDIA AIPerf's input_config could not be mapped ({first})"


def _nvidia_target(config: dict[str, Any]) -> dict[str, str | None]:
    endpoint = config.get("endpoint") if isinstance(config.get("endpoint"), dict) else {}
    urls = endpoint.get("urls") or []
    models = (config.get("models") or {}).get("items") if isinstance(
        config.get("models"), dict) else None
    model = models[0].get("name") if models and isinstance(models[0], dict) else None
    return {"url": mask_url(str(urls[0])) if urls else None, "model": _text(model)}


def _summary_number(summary: dict[str, dict[str, Any]], tag: str) -> float | None:
    entry = summary.get(tag)
    value = entry.get("avg") if entry else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- per-request rows (the report's timeline)


@dataclass(eq=False, repr=False)
class RequestRows:
    """Every profiling request of an artifact directory, one row each, in file order:
    what a timeline plots. Times are seconds from the earliest start (the origin
    ``LoadedRun.end_times`` uses); ``end_s`` is NaN where a record has no end. ``values``
    holds the asked metrics in their display units, NaN where a record lacks one (a failed
    request has no latency). ``errors`` is ``(type, message)`` or None per row."""

    ids: Sequence[str]  # RequestIds when read from a file
    start_s: np.ndarray
    end_s: np.ndarray
    errors: Sequence[tuple[str, str] | None]  # RequestErrors when read from a file
    values: dict[str, np.ndarray]
    origin_ns: int | None = None
    # The origin on the wall clock (ns since the epoch), to put what another process
    # timed (a server's metrics) on the same axis; None when the file does not tell.
    wall_origin_ns: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ok(self) -> np.ndarray:
        if isinstance(self.errors, RequestErrors):
            return ~self.errors.failed
        return np.fromiter((e is None for e in self.errors), dtype=bool, count=len(self.errors))


def load_requests(directory: Path | str, tags: Iterable[str]) -> RequestRows:
    """The profiling requests of the artifact directory ``directory`` (ours or NVIDIA
    AIPerf's), with ``tags``' per-request values. A request's id is AIPerf's
    ``x_request_id`` when it wrote one, else our ``credit_id``, else ``#<its index>``.
    ``SourceError`` names the file (and line) when it is missing or not per-request
    records. Read by the same streaming reader as ``load_source``; what is kept is arrays
    (times and values 8 bytes, an id its bytes, an error a 4-byte index into the distinct
    errors), never a Python object per request."""
    path = Path(directory)
    path = path if path.name == RECORDS_FILE else path / RECORDS_FILE
    if not path.is_file():
        raise SourceError(f"{path}: no such file (the per-request records)")
    wanted = sorted(set(tags))
    ids: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    kinds: dict[tuple[str, str], int] = {}
    columns: dict[str, list[np.ndarray]] = {tag: [] for tag in wanted}
    wall_offset: int | None = None  # wall clock minus the records' clock
    count = 0
    nan = math.nan
    for rows in _profiling_chunks(path, set(wanted), _Meta):
        metas = [r.metadata for r in rows]
        ids.append(np.array([
            (m.x_request_id or (str(m.credit_id) if m.credit_id is not None
                                else f"#{count + i}")).encode()
            for i, m in enumerate(metas)], dtype=np.bytes_))
        count += len(rows)
        starts.append(np.array([nan if t is None else float(t) for t in map(_start_ns, rows)],
                               dtype=np.float64))
        ends.append(np.array([float(m.request_end_ns) if m.request_end_ns else nan
                              for m in metas], dtype=np.float64))
        codes.append(np.array([-1 if r.error is None else
                               kinds.setdefault(_error_text(r.error), len(kinds))
                               for r in rows], dtype=np.int32))
        if wall_offset is None:
            wall_offset = next((m.timestamp_ns - m.request_start_ns for m in metas
                                if m.timestamp_ns is not None
                                and m.request_start_ns is not None), None)
        for tag in wanted:
            items = [getattr(r.metrics, tag) if r.metrics is not None else None for r in rows]
            columns[tag].append(_column(tag, items))
    start_ns = np.concatenate(starts) if starts else np.empty(0)
    end_ns = np.concatenate(ends) if ends else np.empty(0)
    finite = start_ns[np.isfinite(start_ns)]
    origin = float(finite.min()) if len(finite) else 0.0
    if wall_offset is None and origin > _WALL_CLOCK_NS:
        wall_offset = 0  # NVIDIA AIPerf times requests on the wall clock itself
    return RequestRows(
        ids=RequestIds(np.concatenate(ids) if ids else np.empty(0, dtype=np.bytes_)),
        start_s=(start_ns - origin) / 1e9, end_s=(end_ns - origin) / 1e9,
        errors=RequestErrors(np.concatenate(codes) if codes else np.empty(0, np.int32),
                             list(kinds)),
        values={tag: np.concatenate(parts) if parts else np.empty(0)
                for tag, parts in columns.items()},
        origin_ns=int(origin) if len(finite) else None,
        wall_origin_ns=int(origin) + wall_offset
        if len(finite) and wall_offset is not None else None)


class RequestIds(Sequence[str]):
    """Requests' ids kept as one bytes array (an id's bytes each, not a str object each),
    a ``str`` made on access."""

    __slots__ = ("_data",)

    def __init__(self, data: np.ndarray) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [v.decode() for v in self._data[index]]
        return bytes(self._data[index]).decode()

    def __iter__(self) -> Iterator[str]:
        return (v.decode() for v in self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other,
                                                                           strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so not hashable


class RequestErrors(Sequence[tuple[str, str] | None]):
    """Each request's error, ``(kind, message)`` or None: a 4-byte index per request into
    the run's distinct errors (a run's failures repeat a few messages)."""

    __slots__ = ("_codes", "_kinds")

    def __init__(self, codes: np.ndarray, kinds: list[tuple[str, str]]) -> None:
        self._codes = codes
        self._kinds = kinds

    def __len__(self) -> int:
        return len(self._codes)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str] | None: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, str] | None]: ...
    def __getitem__(self, index: int | slice
                    ) -> tuple[str, str] | list[tuple[str, str] | None] | None:
        if isinstance(index, slice):
            return [self._kinds[c] if c >= 0 else None for c in self._codes[index].tolist()]
        code = int(self._codes[index])
        return self._kinds[code] if code >= 0 else None

    def __iter__(self) -> Iterator[tuple[str, str] | None]:
        kinds = self._kinds
        return (kinds[c] if c >= 0 else None for c in self._codes.tolist())

    @property
    def failed(self) -> np.ndarray:
        """Which requests failed (a bool array)."""
        return self._codes >= 0


# 256 KiB of lines a chunk: as fast as 4 MiB (200,000 records: 0.50 s against 0.87 s on a
# loaded box), and the lines, their join and their records stay about 3 MB at most.
_CHUNK_BYTES = 1 << 18


def _column(tag: str, items: list[_Value | None]) -> np.ndarray:
    """One chunk of ``tag``'s values in its display unit; NaN where a record has none,
    a value that is not a number, or a unit that does not convert."""
    nan = math.nan
    values = np.array([nan if i is None or type(i.value) not in (int, float) else i.value
                       for i in items], dtype=np.float64)
    spec = BY_TAG.get(tag)
    target = spec.unit if spec else None
    units = {i.unit for i in items if i is not None}
    if len(units) <= 1:
        factor = _unit_factor(units.pop(), target) if units else 1.0
        return values * factor if factor is not None else np.full(len(values), nan)
    factors = {unit: _unit_factor(unit, target) for unit in units}
    scale = np.array([nan if i is None or factors[i.unit] is None else factors[i.unit]
                      for i in items], dtype=np.float64)
    return values * scale


def _raise_at_line(decoder: msgspec.json.Decoder[Any], lines: list[bytes], first: int,
                   path: Path) -> None:
    """Finds the line of a chunk that is not a record and raises ``SourceError`` at it."""
    for number, line in enumerate(lines, first):
        if not line.strip():
            continue
        try:
            decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SourceError(f"{path}:{number}: not a per-request record ({exc})") from None


# A time in ns past this (2001-09-09) is on the wall clock; perf_counter's are far smaller.
_WALL_CLOCK_NS = 10**18


def _error_text(error: Any) -> tuple[str, str]:
    """(kind, message) of a record's error: the kind is its code and type ("500 Internal
    Server Error"), what the report colours by; the message is cut to 200 characters. An
    error that is not AIPerf's object is its text, as the message."""
    if not isinstance(error, dict):
        return ("error", str(error)[:200])
    parts = [str(p) for p in (error.get("code"), error.get("type")) if p not in (None, "")]
    message = error.get("message")
    return (" ".join(parts) or "error", message[:200] if isinstance(message, str) else "")
