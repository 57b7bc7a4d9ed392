"""Cloud Monitoring's per-series aligners and cross-series reducers for DELTA INT64 metrics.

The guard's 5xx statistics are only as exact as the numbers it reads, and the aligners differ
in exactly the way that matters: ALIGN_SUM returns the exact counts of the samples that ended
in each alignment period, while ALIGN_DELTA and ALIGN_RATE interpolate. Keeping that
difference in the fake is what lets a test show that the guard asks for the right one.

How the fake models each aligner (times are seconds; a sample covers [start, end)):
- Alignment periods end at `interval.end_time`, `end_time - P`, `end_time - 2P`, ... for
  as long as the period's end is after `interval.start_time` (reads are `(start, end]`). The
  oldest period is kept whole even when it reaches back before `start_time`.
- ALIGN_SUM: the exact sum of the samples whose end time lies in `(period_end - P,
  period_end]`. A period with no such sample gets no point. INT64 stays INT64, kind DELTA.
- ALIGN_DELTA / ALIGN_RATE: the sample values are spread evenly over each sample's interval
  (a rate), the rate is linearly interpolated across gaps between two samples of the series
  (so a silent minute between two busy ones reads as traffic), and each period gets the
  integral of that rate over the period. A sample straddling a period boundary is prorated.
  No extrapolation before the first or after the last sample; a period outside that span gets
  no point. DELTA rounds to INT64 (kind DELTA); RATE divides by P seconds and is a DOUBLE
  (kind GAUGE, point interval start = end).
- REDUCE_SUM: sums the aligned points with the same period end across the series of one
  group; the group keeps only the labels named in `group_by_fields`.
Google's exact interpolation (its lookback, gap limits, rounding) is not documented; this is a
plausible model, not a copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ALIGNERS = ("ALIGN_NONE", "ALIGN_SUM", "ALIGN_DELTA", "ALIGN_RATE")


@dataclass(frozen=True, slots=True)
class Sample:
    """One raw DELTA point: `value` counted over [start, end) (seconds since the Unix epoch)."""

    start: float
    end: float
    value: int


@dataclass(frozen=True, slots=True)
class Aligned:
    """One output point: the period [start, end] and its value."""

    start: float
    end: float
    value: int | float


def period_ends(start: float, end: float, period: float) -> list[float]:
    """The alignment periods' end times, newest first, counting back from `end`."""
    ends: list[float] = []
    k = 0
    while end - k * period > start:
        ends.append(end - k * period)
        k += 1
    return ends


def align(
    samples: Sequence[Sample], aligner: str, ends: Sequence[float], period: float
) -> list[Aligned]:
    """Apply `aligner` (ALIGN_SUM, ALIGN_DELTA or ALIGN_RATE) to one series; newest first."""
    if aligner == "ALIGN_SUM":
        return _align_sum(samples, ends, period)
    ordered = sorted(samples, key=lambda s: s.start)
    if not ordered:
        return []
    lo, hi = ordered[0].start, max(s.end for s in ordered)
    out: list[Aligned] = []
    for e in ends:
        s = e - period
        if e <= lo or s >= hi:
            continue
        total = _integral(ordered, s, e)
        if aligner == "ALIGN_RATE":
            out.append(Aligned(e, e, total / period))
        else:
            out.append(Aligned(s, e, round(total)))
    return out


def _align_sum(samples: Sequence[Sample], ends: Sequence[float], period: float) -> list[Aligned]:
    out: list[Aligned] = []
    for e in ends:
        s = e - period
        hits = [x.value for x in samples if s < x.end <= e]
        if hits:
            out.append(Aligned(s, e, sum(hits)))
    return out


def _integral(ordered: Sequence[Sample], a: float, b: float) -> float:
    """The integral over [a, b] of the series' rate: samples spread evenly, gaps interpolated."""
    total = 0.0
    previous: Sample | None = None
    for x in ordered:
        length = x.end - x.start
        if length > 0:
            overlap = min(b, x.end) - max(a, x.start)
            if overlap > 0:
                total += x.value * overlap / length
        if previous is not None and x.start > previous.end:
            total += _gap_integral(previous, x, a, b)
        if previous is None or x.end > previous.end:
            previous = x
    return total


def _gap_integral(before: Sample, after: Sample, a: float, b: float) -> float:
    g0, g1 = before.end, after.start
    lo, hi = max(a, g0), min(b, g1)
    if hi <= lo:
        return 0.0
    r0 = before.value / max(before.end - before.start, 1e-9)
    r1 = after.value / max(after.end - after.start, 1e-9)

    def rate(t: float) -> float:
        return r0 + (r1 - r0) * (t - g0) / (g1 - g0)

    return (hi - lo) * (rate(lo) + rate(hi)) / 2


def reduce_sum(series: Iterable[Sequence[Aligned]]) -> list[Aligned]:
    """REDUCE_SUM over aligned series: a point per period end any series has; newest first."""
    by_end: dict[float, Aligned] = {}
    for points in series:
        for p in points:
            seen = by_end.get(p.end)
            by_end[p.end] = p if seen is None else Aligned(p.start, p.end, seen.value + p.value)
    return [by_end[e] for e in sorted(by_end, reverse=True)]
