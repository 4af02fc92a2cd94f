"""Durations written one way everywhere (markers, ini keys, the command line): the
engine's one spelling (``aiperf.common.config.parse_duration``: ``3``, ``2.5``,
``"500ms"``, ``"3s"``, ``"2m"``, ``"1h"``), with the setting's name in every error."""

from __future__ import annotations

import math
from typing import Any


def parse_duration(value: Any, what: str = "duration", allow_zero: bool = False) -> float:
    """Seconds; ValueError naming ``what`` for anything else (or for zero, unless
    ``allow_zero``: a grace period may be none)."""
    # Imported here: a session with no duration to read does not build the engine's config.
    from aiperf.common.config import parse_duration as seconds_of

    try:
        seconds = seconds_of(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"{what}: {value!r} is not a duration; write seconds (3, 2.5) or a "
                         "number with a unit: '500ms', '3s', '2m'")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{what}: {value!r} must be more than zero")
    return float(seconds)
