"""Sketch mode's steady window end to end: a real pytest session, the built-in mock (every
request ~75 ms), the mesh's records manager finding the steady span as the run goes, and
the verdict's window naming the merged windows it judged."""

from __future__ import annotations

import json

import pytest


def test_a_sketched_steady_state_test_is_judged_on_merged_windows_and_says_so(
        project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=120, concurrency=4, sketch=True,
                            slice_duration="0.25s", steady_state=True,
                            slo={"request_latency.p50": "< 60 s",
                                 "output_sequence_length.avg": "> 0"})
        def test_steady(aiperf_result):
            assert aiperf_result["request_latency"].sketch is not None
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1)
    latency, tokens = json.loads(
        (project.path / "out" / "summary.json").read_text())["load_tests"][0]["objectives"]
    window = latency["window"]
    assert window.startswith("steady window ") and latency["verdict"] == "PASS", latency
    assert "(sketch: " in window and "merged 0.25 s windows of the steady state" in window
    assert window.endswith("rounded inward)")
    # Ramp-up, ramp-down and the windows they cut are left out; the rest is judged.
    assert 0 < latency["n"] < 120
    # A metric the windows do not keep is not judged on the whole run instead.
    assert tokens["verdict"] == "INCONCLUSIVE" and tokens["window"] == window
