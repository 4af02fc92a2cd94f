"""Shared by the benchmark scripts: the bare aiohttp baseline and process measurements."""

from __future__ import annotations

import asyncio
import json
import statistics
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil


@dataclass
class BareRun:
    elapsed_s: float
    requests: int
    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s


async def _bare(url: str, concurrency: int, total: int, streaming: bool, osl: int) -> BareRun:
    """What a careful hand-written client does: one session, N tasks, a shared counter."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 32}],
                       "max_completion_tokens": osl, "stream": streaming,
                       **({"stream_options": {"include_usage": True}} if streaming else {})})
    headers = {"Content-Type": "application/json"}
    remaining = total
    run = BareRun(0.0, total)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter_ns()
                async with session.post(url + "/v1/chat/completions", data=body,
                                        headers=headers) as resp:
                    if not streaming:
                        await resp.read()
                        continue
                    stamps = []
                    async for data in resp.content.iter_any():
                        now = time.perf_counter_ns()
                        stamps.extend(now for _ in range(data.count(b'"content":"')))
                if len(stamps) >= 2:
                    run.ttft_ms.append((stamps[0] - start) / 1e6)
                    run.itl_ms.append((stamps[-1] - stamps[0]) / (len(stamps) - 1) / 1e6)

        cpu0 = psutil.Process().cpu_times()
        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        run.elapsed_s = time.perf_counter() - t0
        cpu1 = psutil.Process().cpu_times()
        run.cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return run


def bare_client(url: str, concurrency: int, total: int, streaming: bool, osl: int) -> BareRun:
    import uvloop

    return uvloop.run(_bare(url, concurrency, total, streaming, osl))


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def tree_memory_mib(pid: int) -> tuple[float, float, float]:
    """(RSS summed, PSS summed, USS summed) of a process tree in MiB. Forked services share
    most pages, so PSS (each shared page split among its users) is the honest total; RSS
    counts every shared page once per process; USS is what only one process holds (what
    the machine gets back when the mesh exits, less the shared pages)."""
    rss = pss = uss = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        uss += info.uss
    return rss / 2**20, pss / 2**20, uss / 2**20


PAGE = 4096
_PRESENT = 1 << 63
_PFN_MASK = (1 << 55) - 1


def _resident_frames(pid: int) -> set[int]:
    """Physical frame numbers of every resident page of one process (needs root: others
    read zeros from pagemap)."""
    frames: set[int] = set()
    ranges: list[tuple[int, int]] = []
    start = end = 0
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            if "-" in line.split(" ", 1)[0]:
                low, high = line.split(" ", 1)[0].split("-")
                start, end = int(low, 16), int(high, 16)
            elif line.startswith("Rss:") and int(line.split()[1]) > 0:
                ranges.append((start, end))
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for low, high in ranges:
            pagemap.seek(low // PAGE * 8)
            raw = pagemap.read((high - low) // PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", raw):
                if entry & _PRESENT:
                    frames.add(entry & _PFN_MASK)
    return frames


def tree_union_rss_mib(pid: int) -> float | None:
    """The RAM a process tree occupies, each physical page counted once however many of
    its processes map it: the whole tree's RSS. None when pagemap hides frame numbers
    (not root)."""
    frames: set[int] = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            frames |= _resident_frames(proc.pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    frames.discard(0)
    return len(frames) * PAGE / 2**20 if frames else None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_by_kind(mesh: Any) -> dict[str, float]:
    """CPU seconds so far of a mesh's controller and each service kind (``worker_0`` and
    ``worker_1`` summed as ``worker``: the figure is what the kind costs per request)."""
    assert mesh.pid is not None
    pids = {"controller": [mesh.pid]}
    for name, pid in mesh.services.items():
        pids.setdefault(name.rstrip("0123456789").rstrip("_"), []).append(pid)
    seconds: dict[str, float] = {}
    for kind, members in pids.items():
        for pid in members:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[kind] = seconds.get(kind, 0.0) + times.user + times.system
    return seconds
