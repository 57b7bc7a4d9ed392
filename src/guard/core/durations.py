"""Durations as operators write them in Flagger and Argo Rollouts: "30s", "5m", "1h30m".

Rules carry durations as strings so they read like the tools operators already know, but
everything downstream wants plain seconds; this is the one parser, strict about units so
"5" (seconds? minutes?) is an error rather than a guess.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string; raises ValueError on anything else."""
    value = text.strip()
    if value in ("0", "0s"):
        return 0.0
    pos = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (ms, s, m, h), "
            "e.g. 30s, 5m, 1h30m"
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest Go-style string for `seconds` (whole milliseconds)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
