"""When `guard run` reads Cloud Monitoring: at a fixed point of each minute, just after a
new per-minute point turns visible, not at whatever second the process happened to start."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guard.service.run import aligned_start


def at(minute: int, second: int, micro: int = 0) -> datetime:
    return datetime(2026, 11, 21, 10, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(0, 0), at(0, 5)),
        (at(0, 4, 999000), at(0, 5)),
        (at(0, 5), at(1, 5)),
        (at(0, 37), at(1, 5)),
    ],
)
def test_reads_start_five_seconds_past_the_next_minute(now: datetime, expected: datetime) -> None:
    assert aligned_start(now, 60, 5) == expected


def test_a_phase_beyond_the_interval_wraps_and_short_intervals_align_too() -> None:
    assert aligned_start(at(0, 37), 60, 65) == at(1, 5)
    assert aligned_start(at(0, 37), 15, 2) == at(0, 47)
