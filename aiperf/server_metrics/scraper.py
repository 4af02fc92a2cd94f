"""Scraping servers' /metrics on the host while a run goes: once before it (the baseline
of counters and histograms), every ``interval`` during it, and once after it.

    collector = ServerMetricsCollector(["http://127.0.0.1:8000/metrics"], interval=1.0)
    collector.start()          # the baseline scrape of every URL, then one thread per URL
    ...                        # the run
    collector.stop()           # the final scrape of every URL
    server = collector.summary(start_ns, end_ns)

One thread per URL, so a slow endpoint never delays another's samples. Each scrape has a
deadline (connect and the whole body); one that fails, times out or returns something that
is not Prometheus text is recorded with its error and the thread goes on. Nothing here
raises into the run: ``start`` and ``stop`` return within their deadlines whatever the
endpoints do. Proxies from the environment are not used (the servers measured are the
ones the load goes to, as the load's own HTTP client does not use them either).
"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiperf.server_metrics.parse import ExpositionError, Snapshot, parse_exposition
from aiperf.server_metrics.urls import ScrapeTarget

if TYPE_CHECKING:
    from aiperf.server_metrics.summary import ServerMetrics

# A /metrics body larger than this is refused: vLLM's is ~100 KB; this bounds memory if a
# URL points at something else.
MAX_BODY_BYTES = 32 * 1024 * 1024
_ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"
_CHUNK = 64 * 1024
# Bodies kept unparsed during a run (compressed, a few KB each): about 4 minutes at 1 s.
MAX_PENDING = 256
PHASES = ("baseline", "run", "final")


@dataclass(frozen=True)
class Scrape:
    """One fetch of one URL: when (wall clock, ns, when the body was in), how long it took,
    and either the parsed families or the error."""

    url: str
    phase: str  # baseline, run or final
    timestamp_ns: int
    latency_ns: int
    snapshot: Snapshot | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.snapshot is not None


def scrape_timeout(interval: float) -> float:
    """The deadline of one scrape: the interval, between 1 and 5 s (a slow endpoint still
    gets a second; a hung one never holds the final scrape longer than 5 s)."""
    return min(5.0, max(1.0, interval))


def fetch(url: str, timeout: float, headers: Mapping[str, str] | None = None) -> str:
    """The body of ``url`` within ``timeout`` seconds in all (connect, headers and every
    read); raises OSError (TimeoutError, ConnectionError), HttpStatusError or ValueError.
    A ``user:password@`` in the URL is sent as Basic auth; ``headers`` (credentials) are
    sent as given, over it, and no error quotes their values."""
    import http.client
    from urllib.parse import urlsplit

    for name, value in (headers or {}).items():
        if any(c in value or c in name for c in "\r\n\0"):
            # checked before any connection, and never quoted: the value is a credential
            raise ValueError(f"the header {name!r} has a line break or NUL in its value, "
                             "which HTTP does not allow")
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    host = parts.hostname or ""
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    connection = connection_class(host, parts.port, timeout=timeout)
    # A socket timeout bounds each read, not the whole: headers sent a byte at a time
    # would hold http.client's header reading for ever. At the deadline the watchdog shuts
    # the socket down, which ends any read at once.
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        if expired.is_set():  # the deadline passed while connecting: no socket was cut
            raise TimeoutError(f"no answer within {timeout:g} s")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = {"Accept": _ACCEPT}
        if parts.username is not None:  # user:password@ is Basic auth, as aiohttp sends it
            import base64
            from urllib.parse import unquote

            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            sent["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        sent.update(headers or {})
        try:
            connection.request("GET", path, headers=sent)
        except ValueError:
            # http.client's message quotes the refused value: a key with a newline in it
            raise ValueError(f"a header ({', '.join(sorted(sent))}) has a value HTTP "
                             "does not allow") from None
        response = connection.getresponse()
        if response.status != 200:
            raise HttpStatusError(f"HTTP {response.status} {response.reason}")
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the body did not arrive within {timeout:g} s")
            if connection.sock is not None:  # each read's timeout: what is left in all
                connection.sock.settimeout(left)
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ValueError(f"the body is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        charset = response.headers.get_content_charset() or "utf-8"
    except Exception as exc:
        if expired.is_set() and not isinstance(exc, TimeoutError):
            # what a cut socket raises (RemoteDisconnected, IncompleteRead...) is the deadline
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        raise
    finally:
        watchdog.cancel()
        connection.close()
    return b"".join(chunks).decode(charset, errors="replace")


def _fetch_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, HttpStatusError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


class HttpStatusError(OSError):
    """The endpoint answered, with a status other than 200."""


def scrape_once(url: str | ScrapeTarget, phase: str, timeout: float) -> Scrape:
    """One scrape, fetched and parsed, never raising: an error is recorded in the result.
    A ``ScrapeTarget`` sends its headers."""
    target = _target(url)
    return _fetch_raw(target.url, phase, timeout, target.headers).parse(None)


def _target(url: str | ScrapeTarget) -> ScrapeTarget:
    return url if isinstance(url, ScrapeTarget) else ScrapeTarget(url)


@dataclass(frozen=True)
class _Raw:
    """A scrape fetched but not parsed yet: its body zlib-compressed (a few KB)."""

    url: str
    phase: str
    timestamp_ns: int
    latency_ns: int
    body: bytes | None
    error: str | None

    def parse(self, previous: tuple[bytes, Snapshot] | None) -> Scrape:
        """The scrape, parsed; the same body as ``previous`` (an idle server's) is not
        parsed again (summaries only read snapshots, so one can serve both)."""
        from aiperf.common.config import mask_url

        snapshot: Snapshot | None = None
        error = self.error
        if self.body is not None:
            if previous is not None and previous[0] == self.body:
                snapshot = previous[1]
            else:
                try:
                    text = zlib.decompress(self.body).decode("utf-8")
                    snapshot = parse_exposition(text,
                                                f"server metrics from {mask_url(self.url)}")
                except ExpositionError as exc:
                    error = str(exc)
                except Exception as exc:  # never into the run: recorded like any failure
                    error = f"{type(exc).__name__}: {exc}"
        return Scrape(self.url, self.phase, self.timestamp_ns, self.latency_ns, snapshot,
                      error)


def _fetch_raw(url: str, phase: str, timeout: float,
               headers: Mapping[str, str] | None = None) -> _Raw:
    started = time.perf_counter_ns()
    body: bytes | None = None
    error: str | None = None
    try:
        body = zlib.compress(fetch(url, timeout, headers).encode("utf-8"), 1)
    except Exception as exc:  # a scrape must never take the run down; say what it was
        error = _fetch_error(exc, timeout)
    return _Raw(url, phase, time.time_ns(), time.perf_counter_ns() - started, body, error)


class _EndpointThread(threading.Thread):
    """Scrapes one URL: the baseline at once, then every interval until stopped, then the
    final scrape. Sample times keep to the schedule (start + k * interval) so they do not
    drift by the scrape's own duration; a scrape that overran its slot skips the slots it
    missed instead of scraping back to back.

    Parsing (prometheus_client's parser: about 5 ms for a vLLM-sized body, 20 times the
    fetch) waits until the run is over: during it a scrape costs its fetch and a zlib
    compression, and the bodies wait compressed. Only past ``MAX_PENDING`` bodies (a long
    run) does the thread parse the oldest, which keeps memory bounded."""

    def __init__(self, target: ScrapeTarget, interval: float, timeout: float,
                 stop: threading.Event) -> None:
        from aiperf.common.config import mask_url

        # a thread's name shows in reprs and dumps: never the URL's credentials
        super().__init__(name=f"aiperf-server-metrics {mask_url(target.url)}", daemon=True)
        self.url = target.url
        self._headers = target.headers
        self.interval = interval
        self.timeout = timeout
        self._stop_event = stop
        self.final = True  # cleared by a stop that needs no final scrape (a failed run)
        self.baseline_done = threading.Event()
        self._lock = threading.Lock()
        self._parsed: list[Scrape] = []
        self._pending: deque[_Raw] = deque()
        self._last: tuple[bytes, Snapshot] | None = None

    def run(self) -> None:
        try:
            self._record(_fetch_raw(self.url, "baseline", self.timeout, self._headers))
        finally:
            self.baseline_done.set()
        origin = time.monotonic()
        k = 1
        while True:
            due = origin + k * self.interval
            if self._stop_event.wait(max(0.0, due - time.monotonic())):
                break
            self._record(_fetch_raw(self.url, "run", self.timeout, self._headers))
            k = max(k + 1, int((time.monotonic() - origin) / self.interval) + 1)
        if self.final:
            self._record(_fetch_raw(self.url, "final", self.timeout, self._headers))

    def _record(self, raw: _Raw) -> None:
        with self._lock:
            self._pending.append(raw)
            while len(self._pending) > MAX_PENDING:
                self._parse_oldest()

    def _parse_oldest(self) -> None:
        raw = self._pending.popleft()
        scrape = raw.parse(self._last)
        if raw.body is not None and scrape.snapshot is not None:
            self._last = (raw.body, scrape.snapshot)
        self._parsed.append(scrape)

    @property
    def scrapes(self) -> list[Scrape]:
        """Every scrape so far, parsed (the ones waiting are parsed now)."""
        with self._lock:
            while self._pending:
                self._parse_oldest()
            return list(self._parsed)


class ServerMetricsCollector:
    """The scrapes of one run, from ``start`` (baseline) to ``stop`` (final). ``urls``:
    URLs, or ``ScrapeTarget``s (``scrape_targets(config)``) whose headers the scrapes send."""

    def __init__(self, urls: Sequence[str | ScrapeTarget], interval: float = 1.0,
                 timeout: float | None = None) -> None:
        if not urls:
            raise ValueError("server metrics: no URL to scrape")
        if not interval > 0:
            raise ValueError(f"server_metrics_interval must be > 0, got {interval!r}")
        targets: dict[str, ScrapeTarget] = {}
        for target in map(_target, urls):  # one thread a URL, with its first headers
            targets.setdefault(target.url, target)
        self.urls = list(targets)
        self.interval = float(interval)
        self.timeout = scrape_timeout(interval) if timeout is None else float(timeout)
        self._stop = threading.Event()
        self._threads = [_EndpointThread(t, self.interval, self.timeout, self._stop)
                         for t in targets.values()]
        self.started_ns: int | None = None
        self.stopped_ns: int | None = None
        self._stopped = False

    def start(self) -> ServerMetricsCollector:
        """Take the baseline scrape of every URL (in parallel, within one scrape's
        deadline) and go on scraping in the background."""
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + self.timeout + 1.0
        try:
            for thread in self._threads:
                thread.baseline_done.wait(max(0.0, deadline - time.monotonic()))
        except BaseException:  # Ctrl-C here: the caller never gets a collector to stop
            self._stopped = True
            for thread in self._threads:
                thread.final = False
            self._stop.set()
            raise
        self.started_ns = time.time_ns()
        return self

    def stop(self, final: bool = True) -> None:
        """Stop the schedule and take the final scrape of every URL (not with ``final``
        False: a run that failed has no statistics to finish); returns within two scrape
        deadlines (one under way, the final one). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.stopped_ns = time.time_ns()
        for thread in self._threads:
            thread.final = final
        self._stop.set()
        deadline = time.monotonic() + 2 * self.timeout + 1.0
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ServerMetricsCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def scrapes(self) -> list[Scrape]:
        """Every scrape so far, by URL then time (a copy: a thread may still append)."""
        return [s for thread in self._threads for s in list(thread.scrapes)]

    def summary(self, start_ns: int | None = None, end_ns: int | None = None,
                ) -> ServerMetrics:
        """The run's server metrics (``aiperf.server_metrics.summary``): counters and
        histograms as deltas from the last scrape before ``start_ns`` to the final one,
        gauges over the scrapes from ``start_ns`` to ``end_ns`` and the final one (the
        profiling window, wall clock ns; None: the whole collection)."""
        from aiperf.server_metrics.summary import summarize

        self.stop()
        return summarize(self.urls, self.scrapes, self.interval, start_ns, end_ns)
