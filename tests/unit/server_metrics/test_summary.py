"""The run's statistics from a known sequence of scrapes: which scrapes each type uses,
and the exact values (the reference exporter's sequence, computed by hand here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiperf.server_metrics.parse import parse_exposition
from aiperf.server_metrics.scraper import Scrape
from aiperf.server_metrics.summary import bucket_quantile, summarize
from tests.harness.prometheus_exporter import GAUGE, counter, exposition, histogram

URL = "http://127.0.0.1:9/metrics"
S = 1_000_000_000


def scrapes(n: int, url: str = URL, text=exposition) -> list[Scrape]:
    """Scrape i at second i: 0 the baseline, n the final, the rest during the run."""
    out = []
    for i in range(n + 1):
        phase = "baseline" if i == 0 else "final" if i == n else "run"
        out.append(Scrape(url, phase, i * S, 1_000_000, parse_exposition(text(i))))
    return out


def test_gauges_use_the_run_and_final_scrapes_and_counters_the_baseline_delta() -> None:
    server = summarize([URL], scrapes(6), 1.0)
    queue = server["ref:queue_depth"]
    window = np.array([GAUGE[i] for i in range(1, 7)])  # not the baseline's 50
    assert queue.max == window.max() == 9.0
    assert queue.min == window.min() == 1.0
    assert queue.avg == pytest.approx(window.mean())
    assert queue.std == pytest.approx(window.std(ddof=1))
    assert queue.stat("p90") == pytest.approx(np.percentile(window, 90))
    requests = server["ref:requests_total"]  # the exposition's spelling finds the family
    assert requests is server["ref:requests"]
    assert requests.total == counter(6) - counter(0) == 42.0
    assert requests.rate == pytest.approx(42.0 / 6)
    # every scrape is in the time series, the baseline too
    samples = queue.series[0].samples
    assert samples is not None and samples.values == tuple(GAUGE[i] for i in range(7))
    assert samples.timestamps_ns == tuple(i * S for i in range(7))


def test_histograms_are_deltas_of_buckets_sum_and_count() -> None:
    server = summarize([URL], scrapes(4), 1.0)
    latency = server["ref:latency_seconds"]
    _, sum0, count0 = histogram(0)
    _, sum4, count4 = histogram(4)
    assert latency.count == count4 - count0 == 10
    assert latency.sum == pytest.approx(sum4 - sum0)
    assert latency.avg == pytest.approx((sum4 - sum0) / (count4 - count0))
    assert latency.count_rate == pytest.approx(10 / 4)
    assert latency.series[0].buckets == {"0.1": 4, "0.5": 8, "+Inf": 10}
    # 5th of 10 values: the 1st of 4 in (0.1, 0.5], interpolated: 0.1 + 0.4 * 1/4
    assert latency.stat("p50_estimate") == pytest.approx(0.2)
    assert latency.stat("p99_estimate") == 0.5  # in +Inf: the highest finite bound


def test_the_profiling_window_moves_the_reference_and_the_gauge_samples() -> None:
    # Scrapes at 0..8 s; the profiling requests ran from 2.5 s to 6.5 s. The reference is
    # the last scrape before 2.5 s (2), the gauges use 3..6 and the final scrape (8).
    server = summarize([URL], scrapes(8), 1.0, int(2.5 * S), int(6.5 * S))
    used = [GAUGE[i] for i in (3, 4, 5, 6, 8)]
    assert server["ref:queue_depth"].max == max(used)
    assert server["ref:queue_depth"].min == min(used)
    assert server["ref:requests"].total == counter(8) - counter(2)
    assert server["ref:requests"].rate == pytest.approx((counter(8) - counter(2)) / 6)


def test_a_counter_that_went_down_counts_zero_and_says_so() -> None:
    def restarted(i: int) -> str:
        return f"# TYPE c_total counter\nc_total {100 - i}\n"

    server = summarize([URL], scrapes(3, text=restarted), 1.0)
    assert server["c"].total == 0.0
    assert any("went down" in w for w in server.warnings)


def test_several_urls_and_label_sets_are_series_pooled_by_type() -> None:
    other = "http://127.0.0.1:10/metrics"
    server = summarize([URL, other], scrapes(3) + scrapes(3, url=other), 1.0)
    queue = server["ref:queue_depth"]
    assert [s.endpoint_url for s in queue.series] == sorted([URL, other])
    assert queue.max == max(GAUGE[1:4])
    assert queue.avg == pytest.approx(np.mean(GAUGE[1:4]))  # both series, same values
    assert server["ref:requests"].total == 2 * (counter(3) - counter(0))
    assert server["ref:latency_seconds"].count == 2 * histogram(3)[2]


def test_a_missing_metric_says_what_was_scraped_or_why_nothing_was() -> None:
    server = summarize([URL], scrapes(2), 1.0)
    with pytest.raises(KeyError, match=r"did you mean 'ref:queue_depth'"):
        server["ref:queue_dept"]
    with pytest.raises(KeyError, match="is a gauge: no statistic 'total'"):
        server["ref:queue_depth"].stat("total")
    failed = [Scrape(URL, "baseline", 0, 1, None, "HTTP 404 Not Found"),
              Scrape(URL, "final", S, 1, None, "HTTP 404 Not Found")]
    nothing = summarize([URL], failed, 1.0)
    assert len(nothing) == 0 and nothing.endpoints_successful == []
    assert "no scrape succeeded (http://127.0.0.1:9/metrics: HTTP 404" in nothing.missing("x")


def test_credentials_in_a_url_never_reach_the_result() -> None:
    secret = "http://user:hunter2@127.0.0.1:9/metrics"
    server = summarize([secret], scrapes(2, url=secret), 1.0)
    assert "hunter2" not in json.dumps(server.to_export_dict())


def test_the_export_has_aiperfs_shape_with_samples_for_plotting() -> None:
    document = summarize([URL], scrapes(3), 1.0, S, 2 * S).to_export_dict()
    assert document["summary"]["endpoints_successful"] == [URL]
    assert document["summary"]["phase_time_ranges"]["profiling"] == {"start_ns": S,
                                                                     "end_ns": 2 * S}
    gauge_doc = document["metrics"]["ref:queue_depth"]
    assert gauge_doc["type"] == "gauge"
    series = gauge_doc["series"][0]
    assert series["endpoint_url"] == URL and series["stats"]["max"] == max(GAUGE[1:4])
    assert series["samples"]["values"] == list(GAUGE[:4])
    hist_doc = document["metrics"]["ref:latency_seconds"]
    assert hist_doc["unit"] == "seconds" and hist_doc["series"][0]["buckets"]["+Inf"] == 7
    assert document["metrics"]["ref:cache_usage_perc"]["series"][0]["labels"] == {
        "model_name": "m"}


@pytest.mark.parametrize(("buckets", "q", "expected"), [
    ({"1": 10, "2": 20, "+Inf": 20}, 0.5, 1.0),
    ({"1": 10, "2": 20, "+Inf": 20}, 0.75, 1.5),
    ({"1": 0, "2": 0, "+Inf": 0}, 0.5, None),
    ({"0.5": 5, "+Inf": 10}, 0.9, 0.5),
])
def test_bucket_quantiles_interpolate_within_a_bucket(
        buckets: dict[str, int], q: float, expected: float | None) -> None:
    assert bucket_quantile(buckets, q) == expected


def test_a_run_shorter_than_the_interval_says_its_gauges_are_the_final_scrapes() -> None:
    server = summarize([URL], scrapes(1), 1.0, S // 4, S // 2)  # baseline and final only
    assert server["ref:queue_depth"].max == GAUGE[1]
    assert any("no scrape of" in w and "fell inside the run" in w for w in server.warnings)
    assert not summarize([URL], scrapes(3), 1.0).warnings


def test_a_run_between_two_scrapes_counts_from_the_scrape_before_it() -> None:
    # Scrapes at 0..8 s, the run from 2.2 to 2.5 s: none inside it, so its window is the
    # final scrape. Scrapes 3..7 came after the run (while its results came back) and hold
    # its counts already: the reference is scrape 2, the last before the run.
    server = summarize([URL], scrapes(8), 1.0, int(2.2 * S), int(2.5 * S))
    assert server["ref:requests"].total == counter(8) - counter(2)
    assert server["ref:requests"].rate == pytest.approx((counter(8) - counter(2)) / 6)
