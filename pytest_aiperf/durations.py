"""Durations written one way everywhere (markers, ini keys, the command line): a number of
seconds (``3``, ``2.5``) or a number and a unit (``"500ms"``, ``"3s"``, ``"2m"``)."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min)?\s*$")
_FACTORS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, None: 1.0, "m": 60.0, "min": 60.0}


def parse_duration(value: Any, what: str = "duration", allow_zero: bool = False) -> float:
    """Seconds; ValueError naming ``what`` for anything else (or for zero, unless
    ``allow_zero``: a grace period may be none)."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _FACTORS[match.group(2)]
    else:
        raise ValueError(f"{what}: {value!r} is not a duration; write seconds (3, 2.5) or a "
                         "number with a unit: '500ms', '3s', '2m'")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{what}: {value!r} must be more than zero")
    return seconds
