"""Prometheus text parsed through prometheus_client into per-series values; malformed text
is a clear ExpositionError, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.server_metrics.parse import ExpositionError, family_names, parse_exposition
from tests.harness.prometheus_exporter import counter, exposition, gauge, histogram


def test_the_reference_exposition_parses_to_its_known_values() -> None:
    snapshot = parse_exposition(exposition(3))
    assert snapshot["ref:queue_depth"].type == "gauge"
    assert snapshot["ref:queue_depth"].values == {(): gauge(3)}
    assert snapshot["ref:cache_usage_perc"].values == {(("model_name", "m"),): 0.03}
    # a counter's family drops _total, as AIPerf keys it; objectives may use either name
    assert snapshot["ref:requests"].type == "counter"
    assert snapshot["ref:requests"].values == {(): counter(3)}
    assert snapshot["ref:requests"].help == "Requests finished."
    buckets, total, count = histogram(3)
    hist = snapshot["ref:latency_seconds"].histograms[()]
    assert (hist.buckets, hist.sum, hist.count) == (buckets, total, count)
    # summaries (lifetime quantiles) and _created metadata are left out
    assert "ref:request_size" not in snapshot
    assert "ref:started_created" not in snapshot
    assert {"ref:requests", "ref:requests_total"} <= family_names(snapshot)


def test_non_finite_samples_are_dropped_and_a_histogram_loses_the_whole_label_set() -> None:
    text = """# TYPE g gauge
g{a="1"} 2
g{a="2"} NaN
# TYPE h histogram
h_bucket{le="1",x="ok"} 1
h_bucket{le="+Inf",x="ok"} 2
h_sum{x="ok"} 3
h_count{x="ok"} 2
h_bucket{le="1",x="bad"} NaN
h_bucket{le="+Inf",x="bad"} 2
h_sum{x="bad"} 3
h_count{x="bad"} 2
"""
    snapshot = parse_exposition(text)
    assert snapshot["g"].values == {(("a", "1"),): 2.0}
    assert list(snapshot["h"].histograms) == [(("x", "ok"),)]


def test_a_family_declared_without_samples_is_still_known_by_name() -> None:
    snapshot = parse_exposition("# HELP idle Nothing yet.\n# TYPE idle gauge\n")
    assert "idle" in snapshot and snapshot["idle"].values == {}


@pytest.mark.parametrize(("text", "line"), [
    ("ok 1\nbroken{ 1\n", 2),
    ("# TYPE x nonsense\nx 1\n", 1),
    ("a 1\nb two\n", 2),
])
def test_malformed_text_names_its_source_and_the_first_bad_line(text: str, line: int) -> None:
    with pytest.raises(ExpositionError) as caught:
        parse_exposition(text, "server metrics from http://h/metrics")
    message = str(caught.value)
    assert message.startswith("server metrics from http://h/metrics: not Prometheus text")
    assert f"at line {line} " in message


def test_an_html_page_is_refused_with_its_start_shown() -> None:
    with pytest.raises(ExpositionError, match="not Prometheus text exposition format"):
        parse_exposition("<html><body>Not Found</body></html>", "server metrics")


_LINE = st.one_of(
    st.text(alphabet='abc_:{}="\\ #\n0123456789.+-eEInfNa,', max_size=40),
    st.builds(lambda n, v: f"{n} {v}", st.from_regex(r"[a-z_:][a-z0-9_:]{0,8}",
                                                     fullmatch=True),
              st.one_of(st.floats(allow_nan=True), st.text(max_size=5))),
    st.sampled_from(["# TYPE m counter", "# TYPE m histogram", "# TYPE m summary",
                     "# HELP m x", 'm_bucket{le="1"} 1', "m_sum 1", "m_count 1",
                     'm{a="b"} 1', "m{a=} 1", "m 1 2 3"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_any_text_parses_or_is_an_exposition_error(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    try:
        snapshot = parse_exposition(text, "fuzz")
    except ExpositionError as exc:
        assert str(exc).startswith("fuzz: not Prometheus text exposition format")
        return
    for family in snapshot.values():
        assert family.type in ("counter", "gauge", "histogram", "unknown")
        for hist in family.histograms.values():
            assert hist.complete


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        parse_exposition(data.decode("utf-8", errors="replace"), "bytes")
    except ExpositionError as exc:  # anything else is a crash
        assert str(exc).startswith("bytes: not Prometheus text"), exc
