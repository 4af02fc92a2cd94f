"""docs/metrics.md's table of AIPerf 0.13's metrics stays true to the fixture written from
AIPerf's own metric registry and to this project's definitions."""

from __future__ import annotations

import re
from pathlib import Path

from aiperf.metrics.definitions import AWAITING_AGGREGATION, BY_TAG

ROOT = Path(__file__).resolve().parents[3]
TAGS = ROOT / "tests" / "data" / "aiperf013" / "metric_tags.txt"
DOCS = ROOT / "docs" / "metrics.md"


def test_every_aiperf_metric_has_a_row_saying_whether_it_is_here() -> None:
    aiperf = [line.split("\t")[0] for line in TAGS.read_text().splitlines()[1:]]
    assert len(aiperf) > 150 and "time_to_first_token" in aiperf
    rows = dict(re.findall(r"^\| `([a-z0-9_]+)` \| [^|]* \| (here|formula only|no) \|",
                           DOCS.read_text(), flags=re.MULTILINE))
    assert set(aiperf) <= set(rows), sorted(set(aiperf) - set(rows))
    for tag in aiperf:
        status = rows[tag]
        if status == "here":
            assert tag in BY_TAG and tag not in AWAITING_AGGREGATION, tag
        elif status == "formula only":
            assert tag in BY_TAG, tag
        else:
            assert tag not in BY_TAG, f"{tag} is defined here but documented as missing"
