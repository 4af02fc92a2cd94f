"""Memory of long runs (issue 16): peak PSS of ``aiperf profile`` and of each process of its
mesh, for runs of 100k, 300k and 1M streamed requests, and memory against time in a
duration run in sketch mode.

Each run is ``aiperf profile --streaming --concurrency 64 --osl 16`` against ``aiperf
mock-server`` (zero latency: the highest rate this machine drives), as a new user would run
it. A sampler reads ``Pss`` from ``/proc/<pid>/smaps_rollup`` of the host and every process
under it every 0.2 s. Printed per run: each process's peak, the whole tree's peak (the
largest sum of one sample), the bytes per request (tree peak minus an idle mesh's tree
peak, a run of ``--idle-requests``, over the request count; the same for the host alone),
and the run's request throughput (its ``profile_export_aiperf.json``).

In sketch mode (``--sketch --minutes M``) the run lasts M minutes; printed: PSS against
time, and from minute M/6 to the end of the load the slope (MiB a minute, and the drift it
makes over that window in % of the mean) and the flatness (largest deviation from the
window's mean of a 30 s median, and of one sample, in %). Private memory is printed next
to PSS: a shared library's PSS changes with whatever else runs on the machine.

    .venv/bin/python benchmarks/long_run.py [--requests 100k,300k,1M] [--short]
    .venv/bin/python benchmarks/long_run.py --sketch --minutes 30 [--short]

``--short`` is the CI scale: 2k and 10k requests, or a 1-minute sketch run.

``--aiperf013 PATH`` (the ``aiperf`` executable of an AIPerf 0.13 install) measures it the
same way against the same mock: ``aiperf profile --streaming --concurrency 64
--prompt-output-tokens-mean 16 --ui-type none``, its process tree sampled as ours, for the
sizes of ``--aiperf013-requests`` (default 20k,100k) after an idle run of its own. It
needs a tokenizer: a byte-level one (each byte a token, no download) is written to a temp
dir with that install's ``tokenizers``.

    .venv/bin/python benchmarks/long_run.py --requests 100k --aiperf013 \
        /tmp/aiperf013/bin/aiperf [--aiperf013-requests 20k,100k]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MIB = 2**20
SAMPLE_S = 0.2
LABEL_SAMPLE_S = 5.0
READY_TIMEOUT_S = 30.0


def parse_count(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def memory_bytes(pid: int) -> tuple[int, int] | None:
    """(``Pss``, private) of one process. PSS splits each shared page among its users, so
    the tree's sum is what it really costs (forked services share most of their pages);
    but shared libraries are split with every process on the machine mapping them, so PSS
    moves with whatever else runs. Private pages (``Private_Clean`` + ``Private_Dirty``)
    do not: they are the steadier measure of growth."""
    pss = private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    private += int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return pss, private


@dataclass
class Samples:
    """What the sampler saw: each process's peak (by label) and the tree's series."""

    peaks: dict[str, int] = field(default_factory=dict)  # PSS
    private_peaks: dict[str, int] = field(default_factory=dict)
    # t, tree PSS, host PSS, tree private, host private
    series: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    # Each process's (t, PSS, private) every LABEL_SAMPLE_S: which one a tree's slope
    # comes from.
    by_label: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)

    def peak(self, column: int) -> int:
        return max((row[column] for row in self.series), default=0)

    @property
    def tree_peak(self) -> int:
        return self.peak(1)

    @property
    def host_peak(self) -> int:
        return self.peak(2)


class TreeSampler(threading.Thread):
    """Samples the PSS of ``root`` and its descendants every ``SAMPLE_S`` until stopped.
    Services are forked by the controller, all with its command line: they are named by
    fork order (pid order) from the mesh's service plan."""

    def __init__(self, root: int, service_names: list[str]) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.service_names = service_names
        self.samples = Samples()
        self._stop_event = threading.Event()
        self._labels: dict[int, str] = {root: "host"}
        self._t0 = time.monotonic()
        self._last_label_sample = -LABEL_SAMPLE_S

    def stop(self) -> Samples:
        self._stop_event.set()
        self.join(10)
        return self.samples

    def _label(self, proc: psutil.Process) -> str:
        if proc.pid != self.root and not self.service_names:
            # Not our mesh (AIPerf 0.13): each process by its title ("aiperf
            # records_manager"), read each time: a service sets it after it starts.
            with contextlib.suppress(psutil.Error):
                words = proc.cmdline()[-2:]
                if words and words[0] == "aiperf":
                    return f"{words[1][:24]} ({proc.pid})"
            return f"pid {proc.pid}"
        if proc.pid not in self._labels:
            with contextlib.suppress(psutil.Error):
                if "aiperf.controller" in " ".join(proc.cmdline()):
                    if proc.ppid() == self.root:
                        self._labels[proc.pid] = "controller"
                        return "controller"
                    self._name_services(proc.ppid())
            self._labels.setdefault(proc.pid, f"pid {proc.pid}")
        return self._labels[proc.pid]

    def _name_services(self, controller: int) -> None:
        with contextlib.suppress(psutil.Error):
            children = sorted(c.pid for c in psutil.Process(controller).children())
            names = self.service_names if len(children) == len(self.service_names) else []
            for i, pid in enumerate(children):
                self._labels[pid] = names[i] if names else f"service {i} (pid {pid})"

    def run(self) -> None:
        root = psutil.Process(self.root)
        while not self._stop_event.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            tree = host = tree_private = host_private = 0
            now = time.monotonic() - self._t0
            per_label = now - self._last_label_sample >= LABEL_SAMPLE_S
            if per_label:
                self._last_label_sample = now
            for proc in procs:
                measured = memory_bytes(proc.pid)
                if measured is None:
                    continue
                value, private = measured
                label = self._label(proc)
                tree += value
                tree_private += private
                if proc.pid == self.root:
                    host, host_private = value, private
                if per_label:
                    self.samples.by_label.setdefault(label, []).append((now, value, private))
                if value > self.samples.peaks.get(label, 0):
                    self.samples.peaks[label] = value
                if private > self.samples.private_peaks.get(label, 0):
                    self.samples.private_peaks[label] = private
            self.samples.series.append((now, tree, host, tree_private, host_private))
            self._stop_event.wait(SAMPLE_S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def mock_server() -> Any:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aiperf", "mock-server", "--host",
                             "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the mock server did not start on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def service_plan(workers: int | None) -> list[str]:
    from aiperf.common.config import ServiceConfig
    from aiperf.controller.service_manager import plan_services

    config = ServiceConfig(**({"workers": workers} if workers else {}))
    return [s.service_id for s in plan_services(config)]


def cli_has(flag: str) -> bool:
    out = subprocess.run([sys.executable, "-m", "aiperf", "profile", "--help"],
                         capture_output=True, text=True, timeout=60).stdout
    return flag in out


@dataclass
class Run:
    label: str
    requests: int
    elapsed_s: float
    throughput: float
    samples: Samples
    exit_code: int


def profile(url: str, label: str, load: list[str], args: argparse.Namespace,
            extra: tuple[str, ...] = ()) -> Run:
    with tempfile.TemporaryDirectory(prefix="long-run-") as out:
        command = [sys.executable, "-m", "aiperf", "profile", "--url", url, "--streaming",
                   "--concurrency", str(args.concurrency), "--osl", str(args.osl),
                   "--output-artifact-dir", out, *load, *extra]
        if args.workers:
            command += ["--workers-max", str(args.workers)]
        if args.request_rate:
            command += ["--request-rate", f"{args.request_rate:g}"]
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sampler = TreeSampler(proc.pid, service_plan(args.workers))
        sampler.start()
        try:
            _, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            raise SystemExit(f"{label}: no result within {args.timeout:.0f} s") from None
        finally:
            samples = sampler.stop()
        elapsed = time.monotonic() - started
        summary_path = Path(out, "profile_export_aiperf.json")
        if not summary_path.is_file():
            raise SystemExit(f"{label}: exit {proc.returncode}, no summary:\n"
                             f"{stderr.decode(errors='replace')[-2000:]}")
        summary = json.loads(summary_path.read_text())
        count = int(summary.get("request_count", {}).get("avg") or 0)
        throughput = float(summary.get("request_throughput", {}).get("avg") or 0.0)
        return Run(label, count, elapsed, throughput, samples, proc.returncode)


BYTE_TOKENIZER = """
import sys
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(alphabet)}}
tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens(["<|endoftext|>"])
out = Path(sys.argv[1])
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(
    '{"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", '
    '"bos_token": "<|endoftext|>", "model_max_length": 100000}')
"""


def byte_tokenizer(aiperf013: Path, into: Path) -> Path:
    """A byte-level tokenizer for AIPerf 0.13 (it loads one by name or path; this box has
    no network), written with the ``tokenizers`` of its own environment."""
    python = aiperf013.parent / "python"
    subprocess.run([str(python), "-c", BYTE_TOKENIZER, str(into)], check=True,
                   timeout=120, capture_output=True)
    return into


def profile_aiperf013(aiperf013: Path, tokenizer: Path, url: str, label: str, count: int,
                      args: argparse.Namespace) -> Run:
    with tempfile.TemporaryDirectory(prefix="long-run-013-") as out:
        command = [str(aiperf013), "profile", "--model", "mock", "--url", url,
                   "--endpoint-type", "chat", "--streaming",
                   "--concurrency", str(args.concurrency), "--request-count", str(count),
                   "--prompt-output-tokens-mean", str(args.osl),
                   "--tokenizer", str(tokenizer), "--output-artifact-dir", out,
                   "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry"]
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=out)
        sampler = TreeSampler(proc.pid, [])
        sampler.start()
        try:
            _, stderr = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            raise SystemExit(f"{label}: no result within {args.timeout:.0f} s") from None
        finally:
            samples = sampler.stop()
        elapsed = time.monotonic() - started
        found = sorted(Path(out).rglob("profile_export_aiperf.json"))
        if not found:
            raise SystemExit(f"{label}: exit {proc.returncode}, no summary:\n"
                             f"{stderr.decode(errors='replace')[-2000:]}")
        summary = json.loads(found[0].read_text())
        count_found = _stat(summary, "request_count")
        throughput = _stat(summary, "request_throughput")
        return Run(label, int(count_found), elapsed, throughput, samples, proc.returncode)


def _stat(summary: dict[str, Any], tag: str) -> float:
    """A metric's value in an AIPerf summary: under its tag, or in its records list."""
    entry = summary.get(tag)
    if entry is None:
        for record in summary.get("records", {}).values() if isinstance(
                summary.get("records"), dict) else []:
            if isinstance(record, dict) and record.get("tag") == tag:
                entry = record
    if isinstance(entry, dict):
        return float(entry.get("avg") or 0.0)
    return 0.0


def print_run(run: Run, idle: Run | None) -> dict[str, Any]:
    s = run.samples
    print(f"\n{run.label}: {run.requests:,} requests in {run.elapsed_s:.1f} s "
          f"({run.throughput:,.0f} req/s measured by the run), exit {run.exit_code}")
    order = ["host", "controller", *sorted(k for k in s.peaks if k not in ("host",
                                                                           "controller"))]
    for label in order:
        if label in s.peaks:
            print(f"  {label:<24} peak PSS {s.peaks[label] / MIB:8.1f} MiB "
                  f"(private {s.private_peaks.get(label, 0) / MIB:6.1f} MiB)")
    print(f"  {'whole tree':<24} peak PSS {s.tree_peak / MIB:8.1f} MiB "
          f"(private {s.peak(3) / MIB:6.1f} MiB)")
    out: dict[str, Any] = {"label": run.label, "requests": run.requests,
                           "elapsed_s": run.elapsed_s, "throughput": run.throughput,
                           "peaks_mib": {k: v / MIB for k, v in s.peaks.items()},
                           "private_peaks_mib": {k: v / MIB
                                                 for k, v in s.private_peaks.items()},
                           "tree_peak_mib": s.tree_peak / MIB,
                           "tree_private_peak_mib": s.peak(3) / MIB}
    if idle is not None and run.requests:
        per = {name: (s.peak(column) - idle.samples.peak(column)) / run.requests
               for name, column in (("tree", 1), ("host", 2), ("tree_private", 3),
                                    ("host_private", 4))}
        print(f"  per request: {per['tree']:,.0f} B tree, {per['host']:,.0f} B host (PSS); "
              f"{per['tree_private']:,.0f} B tree, {per['host_private']:,.0f} B host "
              f"(private); over an idle mesh's run ({idle.samples.tree_peak / MIB:.1f} MiB "
              f"tree, {idle.samples.host_peak / MIB:.1f} MiB host PSS)")
        out.update({f"bytes_per_request_{k}": v for k, v in per.items()})
    return out


@dataclass
class Flatness:
    slope_mib_per_min: float
    drift_pct: float  # the fitted line's change over the window, in % of the mean
    medians_pct: float  # largest deviation of a MEDIAN_S median from the mean, in %
    samples_pct: float  # largest deviation of one sample from the mean, in %


MEDIAN_S = 30.0


def flatness(series: list[tuple[float, int, int, int, int]], from_s: float, to_s: float,
             column: int) -> Flatness:
    """How flat ``column`` is over the samples from ``from_s`` to ``to_s``. One sample
    swings with the batch in flight and the collector; the trend (slope, drift) and the
    30-s medians are what tell growth from noise."""
    import statistics

    window = [(row[0], row[column]) for row in series if from_s <= row[0] <= to_s]
    if len(window) < 2:
        return Flatness(0.0, 0.0, 0.0, 0.0)
    n = len(window)
    mean_t = sum(t for t, _ in window) / n
    mean_v = sum(v for _, v in window) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in window)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in window) / var_t if var_t else 0.0
    span = window[-1][0] - window[0][0]
    buckets: dict[int, list[int]] = {}
    for t, v in window:
        buckets.setdefault(int((t - from_s) // MEDIAN_S), []).append(v)
    medians = [statistics.median(b) for b in buckets.values()]
    percent = 100 / mean_v if mean_v else 0.0
    return Flatness(slope * 60 / MIB, slope * span * percent,
                    max(abs(m - mean_v) for m in medians) * percent,
                    max(abs(v - mean_v) for _, v in window) * percent)


def sketch_run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    minutes = args.minutes
    extra = ("--sketch",) if cli_has("--sketch") else ()
    if not extra:
        print("note: this aiperf has no --sketch flag yet: the duration run is in exact mode")
    run = profile(url, f"duration {minutes:g} min{' (sketch)' if extra else ''}",
                  ["--benchmark-duration", f"{minutes * 60:g}s"], args, extra)
    result = print_run(run, None)
    series = run.samples.series
    step = max(1, len(series) // 30)
    print(f"  {'t (s)':>8} {'tree PSS':>9} {'host PSS':>9} {'tree prv':>9} (MiB)")
    for t, tree, host, tree_private, _ in series[::step]:
        print(f"  {t:8.1f} {tree / MIB:9.1f} {host / MIB:9.1f} {tree_private / MIB:9.1f}")
    # From minute M/6 to the end of the load (M minutes after the host started: the mesh's
    # start-up shifts the load a little later, so the wind-down is left out).
    start, end = minutes * 60 / 6, minutes * 60
    for name, column in (("tree", 1), ("host", 2), ("tree private", 3)):
        flat = flatness(series, start, end, column)
        print(f"  {name}: minute {start / 60:.2f} to {end / 60:.2f}: slope "
              f"{flat.slope_mib_per_min:+.2f} MiB/min ({flat.drift_pct:+.1f} % over the "
              f"window); {MEDIAN_S:.0f} s medians within ±{flat.medians_pct:.1f} %, samples "
              f"within ±{flat.samples_pct:.1f} %")
        result[name.replace(" ", "_") + "_flatness"] = vars(flat)
    # Per process: where a tree's slope comes from. Private memory is the process's own;
    # its PSS also moves when another process maps or drops a library page it shares.
    per_process = {}
    for label, rows in sorted(run.samples.by_label.items()):
        pss, private = (flatness(rows, start, end, column)  # type: ignore[arg-type]
                        for column in (1, 2))
        per_process[label] = {"pss": vars(pss), "private": vars(private)}
        print(f"    {label:<24} slope {pss.slope_mib_per_min:+.3f} MiB/min PSS "
              f"({pss.drift_pct:+.1f} %), {private.slope_mib_per_min:+.3f} private "
              f"({private.drift_pct:+.1f} %)")
    result["per_process_flatness"] = per_process
    result["series"] = series
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", default="100k,300k,1M",
                        help="comma-separated run sizes (k and M suffixes)")
    parser.add_argument("--short", action="store_true", help="CI scale")
    parser.add_argument("--sketch", action="store_true", help="a duration run in sketch mode")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--osl", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0, help="--workers-max (0: default)")
    parser.add_argument("--request-rate", type=float, default=0.0,
                        help="requests/s, with --concurrency as the cap (0: closed loop, the "
                             "highest rate the machine drives)")
    parser.add_argument("--idle-requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=7200.0,
                        help="seconds one run may take")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--aiperf013", type=Path, metavar="PATH",
                        help="an AIPerf 0.13 aiperf executable: measure it the same way")
    parser.add_argument("--aiperf013-requests", default="20k,100k",
                        help="its run sizes (k and M suffixes)")
    args = parser.parse_args()
    if args.short:
        args.requests, args.minutes = "2k,10k", min(args.minutes, 1.0)
        args.aiperf013_requests = "2k"
    print(f"{os.cpu_count()} cores; streaming, concurrency {args.concurrency}, "
          f"osl {args.osl}; PSS sampled every {SAMPLE_S} s")
    figures: list[dict[str, Any]] = []
    with mock_server() as url:
        if args.sketch:
            figures.append(sketch_run(url, args))
        else:
            idle = profile(url, "idle mesh", ["--request-count", str(args.idle_requests)],
                           args)
            print_run(idle, None)
            for size in (parse_count(t) for t in args.requests.split(",") if t.strip()):
                run = profile(url, f"{size:,} requests", ["--request-count", str(size)], args)
                figures.append(print_run(run, idle))
        if args.aiperf013 is not None:
            with tempfile.TemporaryDirectory(prefix="long-run-tok-") as tok:
                tokenizer = byte_tokenizer(args.aiperf013, Path(tok))
                idle = profile_aiperf013(args.aiperf013, tokenizer, url,
                                         "AIPerf 0.13, idle", args.idle_requests, args)
                print_run(idle, None)
                for size in (parse_count(t) for t in args.aiperf013_requests.split(",")
                             if t.strip()):
                    run = profile_aiperf013(args.aiperf013, tokenizer, url,
                                            f"AIPerf 0.13, {size:,} requests", size, args)
                    figures.append({"aiperf013": True, **print_run(run, idle)})
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
