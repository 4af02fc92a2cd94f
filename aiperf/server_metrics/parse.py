"""One scrape's Prometheus text, parsed by ``prometheus_client``'s reference parser into
what the run's statistics need: per family its type, help text and, per label set, a value
(counters, gauges, untyped) or cumulative buckets, sum and count (histograms).

As AIPerf 0.13 does: families are keyed by the parser's family name (a counter's
``_total`` suffix is not part of it); summaries (quantiles over the server's whole
lifetime, not the run's) and ``_created`` / uptime metadata are left out; a sample that is
NaN or infinite is dropped (a histogram's whole label set with it, so its buckets never go
partial); duplicate label sets keep the last value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LabelKey = tuple[tuple[str, str], ...]
TYPES = ("counter", "gauge", "histogram", "unknown")
_PREVIEW = 120


class ExpositionError(ValueError):
    """A body that is not Prometheus text exposition format; the message names the source
    and the first line the parser refused."""


@dataclass
class Histogram:
    """One label set of a histogram: cumulative bucket counts by ``le``, sum and count."""

    buckets: dict[str, float] = field(default_factory=dict)
    sum: float | None = None
    count: float | None = None

    @property
    def complete(self) -> bool:
        return self.sum is not None and self.count is not None and bool(self.buckets)


@dataclass
class Family:
    type: str
    help: str
    values: dict[LabelKey, float] = field(default_factory=dict)
    histograms: dict[LabelKey, Histogram] = field(default_factory=dict)

    def series_keys(self) -> list[LabelKey]:
        return list(self.histograms if self.type == "histogram" else self.values)


Snapshot = dict[str, Family]


def _skipped(name: str) -> bool:
    return name.endswith("_created") or name.endswith("_uptime") or "_uptime_" in name


def parse_exposition(text: str, source: str = "server metrics") -> Snapshot:
    """The families of one scrape. Raises ``ExpositionError`` (naming ``source`` and the
    first bad line) for a body the parser refuses: never another exception."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError, and others on odd input
        raise ExpositionError(_explain(text, source, exc)) from None
    snapshot: Snapshot = {}
    for family in families:
        if _skipped(family.name) or family.type not in TYPES:
            continue  # summaries, info, stateset: not per-run quantities
        parsed = Family(family.type, family.documentation or "")
        tainted: set[LabelKey] = set()
        for sample in family.samples:
            value = sample.value
            if sample.name.endswith("_created") or value is None:
                continue
            labels = {k: v for k, v in sample.labels.items()
                      if not (family.type == "histogram" and k == "le")}
            key: LabelKey = tuple(sorted(labels.items()))
            if not math.isfinite(value):
                tainted.add(key)
                continue
            if family.type != "histogram":
                parsed.values[key] = float(value)
                continue
            hist = parsed.histograms.setdefault(key, Histogram())
            if sample.name.endswith("_bucket"):
                hist.buckets[sample.labels.get("le", "+Inf")] = float(value)
            elif sample.name.endswith("_sum"):
                hist.sum = float(value)
            elif sample.name.endswith("_count"):
                hist.count = float(value)
        for key in tainted:
            parsed.values.pop(key, None)
            parsed.histograms.pop(key, None)
        parsed.histograms = {k: h for k, h in parsed.histograms.items() if h.complete}
        snapshot[family.name] = parsed
    return snapshot


def _explain(text: str, source: str, exc: BaseException) -> str:
    """Which line the parser refuses: each line parsed alone (a cost paid only on error)."""
    from prometheus_client.parser import text_string_to_metric_families

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or (line.lstrip().startswith("#") and not _type_line(line)):
            continue
        try:
            list(text_string_to_metric_families(line + "\n"))
        except Exception as line_exc:
            shown = line if len(line) <= _PREVIEW else line[:_PREVIEW] + "..."
            why = str(line_exc) or type(line_exc).__name__
            return (f"{source}: not Prometheus text exposition format at line {number} "
                    f"({why}): {shown!r}")
    why = str(exc) or type(exc).__name__
    head = text[:_PREVIEW]
    return f"{source}: not Prometheus text exposition format ({why}); it starts {head!r}"


def _type_line(line: str) -> bool:
    parts = line.split()
    return len(parts) >= 2 and parts[0] == "#" and parts[1] in ("TYPE", "HELP")


def family_names(snapshot: Snapshot) -> set[str]:
    """The names an objective may use for the families of a scrape: each family's name,
    and a counter's also with its ``_total`` suffix, as the exposition spells it."""
    names = set(snapshot)
    names.update(f"{name}_total" for name, fam in snapshot.items() if fam.type == "counter")
    return names
