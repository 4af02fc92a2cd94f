"""The per-request table on the host: a file, read as a sequence of dicts.

The records manager appends one JSON line per request (exactly the line
``profile_export.jsonl`` holds) to ``records-<run_id>.jsonl`` in the mesh's run dir. The
host must not hold a Python object per request (a million-request run would need gigabytes),
so ``ProfileResult.records`` is a ``RecordsFile``: its length comes from the count the
records manager sent, iterating decodes one line at a time, and indexing builds an offset
index (8 bytes a request) on first use.

The run dir is removed when the mesh shuts down, which can be long before the result is
dropped (the CLI exits the mesh, then exports; a pytest session keeps every test's result),
so the file is moved into a directory this process owns, ``aiperf-results-<pid>-*`` in the
temp dir. A file is deleted when its ``RecordsFile`` is garbage collected, the directory at
interpreter exit, and a later process sweeps directories whose process died (SIGKILL skips
``atexit``).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import msgspec

if TYPE_CHECKING:
    import numpy as np

_DIR_PREFIX = "aiperf-results-"
_CHUNK = 1 << 20  # bytes read at a time when scanning for line ends

_lock = threading.Lock()
_host_dir: Path | None = None
_host_dir_pid = 0


def _sweep_stale_result_dirs(parent: Path) -> None:
    """Remove result dirs of processes that were killed before ``atexit`` could run."""
    for stale in parent.glob(f"{_DIR_PREFIX}*"):
        try:
            pid = int(stale.name[len(_DIR_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (OSError, ValueError):
            continue  # alive (or another user's): not ours to remove


def _remove_host_dir(path: Path, owner: int) -> None:
    # A forked child inherits the atexit hook; only the process that made the dir removes it.
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def host_dir() -> Path:
    """This process's directory for result files (made, and stale ones swept, on first use)."""
    global _host_dir, _host_dir_pid
    with _lock:
        pid = os.getpid()
        if _host_dir is None or _host_dir_pid != pid or not _host_dir.is_dir():
            parent = Path(tempfile.gettempdir())
            _sweep_stale_result_dirs(parent)
            _host_dir = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{pid}-", dir=parent))
            _host_dir_pid = pid
            atexit.register(_remove_host_dir, _host_dir, pid)
        return _host_dir


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(str(source), str(target))  # another filesystem: copy, then delete


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class RecordsFile(Sequence[dict[str, Any]]):
    """The per-request table backed by a JSON Lines file, one record per line.

    ``len()`` costs nothing (the count is known, or counted once by scanning); iteration
    streams, decoding one line at a time, so memory stays bounded whatever the run's length;
    ``records[i]`` and slices read only the lines they need, through an offset index built
    on first random access (numpy int64, 8 bytes a request). Compares equal to any sequence
    with the same records in the same order.

    With ``owned`` (what ``adopt`` returns) the file is deleted when this object is
    garbage collected."""

    def __init__(self, path: str | os.PathLike[str], count: int | None = None, *,
                 owned: bool = False) -> None:
        self._path = Path(path)
        self._count = count
        self._offsets: np.ndarray | None = None
        self._decode = msgspec.json.Decoder().decode
        self._finalizer = weakref.finalize(self, _unlink, self._path) if owned else None

    @classmethod
    def adopt(cls, path: str | os.PathLike[str], count: int | None = None) -> RecordsFile:
        """Move ``path`` (in a run dir that will be removed) into this process's own result
        dir and read it from there; the file is deleted with the returned object."""
        source = Path(path)
        # A unique name, since a session holds many runs' tables; the placeholder file is
        # replaced by the move.
        fd, name = tempfile.mkstemp(prefix=source.stem + "-", suffix=".jsonl",
                                    dir=host_dir())
        os.close(fd)
        target = Path(name)
        try:
            _move(source, target)
        except BaseException:
            _unlink(target)
            raise
        return cls(target, count, owned=True)

    @property
    def path(self) -> Path:
        """Where the table is (valid while this object lives, when it owns the file)."""
        return self._path

    def __len__(self) -> int:
        if self._count is None:
            self._count = int(self._line_offsets().size - 1)
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        decode = self._decode
        with open(self._path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield decode(line)

    def _line_offsets(self) -> np.ndarray:
        """Where each line starts, plus the end of the file: ``count + 1`` int64."""
        if self._offsets is not None:
            return self._offsets
        import numpy as np

        starts = [np.zeros(1, dtype=np.int64)]
        position = 0
        with open(self._path, "rb", buffering=0) as handle:
            while chunk := handle.read(_CHUNK):
                ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 0x0A)
                starts.append(ends.astype(np.int64) + (position + 1))
                position += len(chunk)
        offsets = np.concatenate(starts)
        if offsets[-1] != position:  # a last line without its newline
            offsets = np.append(offsets, np.int64(position))
        offsets.setflags(write=False)
        self._offsets = offsets
        if self._count is None:
            self._count = int(offsets.size - 1)
        return offsets

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        offsets = self._line_offsets()
        n = int(offsets.size - 1)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                if start >= stop:
                    return []
                with open(self._path, "rb") as handle:
                    handle.seek(int(offsets[start]))
                    block = handle.read(int(offsets[stop] - offsets[start]))
                return [self._decode(line) for line in block.splitlines() if line.strip()]
            picked = range(start, stop, step)
            with open(self._path, "rb") as handle:
                return [self._read(handle, offsets, i) for i in picked]
        i = index.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record {index} of {n}")
        with open(self._path, "rb") as handle:
            return self._read(handle, offsets, i)

    def _read(self, handle: Any, offsets: np.ndarray, i: int) -> dict[str, Any]:
        handle.seek(int(offsets[i]))
        record: dict[str, Any] = self._decode(handle.read(int(offsets[i + 1] - offsets[i])))
        return record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        if isinstance(other, RecordsFile) and other._path == self._path:
            return True
        if len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} per-request records in {self._path.name}>"

    def copy_to(self, target: Path) -> Path:
        """Put the table at ``target`` (``profile_export.jsonl``): a hard link when both
        are on one filesystem (no bytes copied: a million-request table is hundreds of MB),
        else a copy. ``target`` is replaced, never written through: with a link, writing
        into the old file would change this table too."""
        if target.exists() and target.samefile(self._path):
            return target  # already there (a table read from its own export)
        target.unlink(missing_ok=True)
        try:
            os.link(self._path, target)
        except OSError:
            shutil.copyfile(self._path, target)
        return target


class NoRecords(Sequence[dict[str, Any]]):
    """The table of a run that kept no per-request records (sketch mode without
    ``export_records``): empty, and it says why."""

    note = ("per-request records were not kept (sketch mode); set export_records=True "
            "(aiperf profile --export-records) to keep them")

    def __len__(self) -> int:
        return 0

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return []
        raise IndexError(f"record {index}: {self.note}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == 0

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<no per-request records: {self.note}>"
