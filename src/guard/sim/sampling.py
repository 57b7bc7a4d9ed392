"""Seeded random counts for the scenario engine: Poisson arrivals, binomial failures.

Python 3.11's `random` has no binomial or Poisson sampler, and the fake cloud must be exactly
reproducible for a seed without pulling NumPy into the product's dependencies. Small counts
are sampled exactly; large ones use the normal approximation, which at those sizes is far
inside the noise the guard's statistics are built to tolerate.
"""

from __future__ import annotations

import math
import random

_EXACT_LIMIT = 60


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson(mean) count."""
    if mean <= 0:
        return 0
    if mean < _EXACT_LIMIT:
        # Knuth: multiply uniforms until the product drops below e^-mean.
        limit, k, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return k
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) count."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n < _EXACT_LIMIT:
        return sum(1 for _ in range(n) if rng.random() < p)
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return min(n, max(0, round(rng.gauss(mean, sd))))


def split_counts(rng: random.Random, total: int, percents: dict[str, int]) -> dict[str, int]:
    """Share `total` requests between revisions by traffic percent (a multinomial draw)."""
    out: dict[str, int] = {}
    remaining, left = total, 100
    items = [(name, pct) for name, pct in sorted(percents.items()) if pct > 0]
    for i, (name, pct) in enumerate(items):
        if i == len(items) - 1:
            out[name] = remaining
        else:
            out[name] = binomial(rng, remaining, pct / left)
            remaining -= out[name]
            left -= pct
    return out
