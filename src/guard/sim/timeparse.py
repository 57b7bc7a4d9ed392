"""Scenario times: seconds as numbers, or "90s", "5m", "-2d", "1h30m" strings.

The fake cloud stands apart from the product (it must not reuse the guard's own parsing, or
a shared bug would hide itself), and scenarios need what rules never do: negative offsets
(a revision created two days before the scenario starts) and days.
"""

from __future__ import annotations

import re

_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TOKEN = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def seconds(value: float | int | str) -> float:
    """Scenario seconds in `value`; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a time cannot be true/false")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, pos = 0.0, 0
    for match in _TOKEN.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(body):
        raise ValueError(f"{value!r} is not a time: use seconds or e.g. 90s, 5m, -2d, 1h30m")
    return sign * total
