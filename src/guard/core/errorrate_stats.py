"""Always-valid evidence for "the new revision's 5xx rate is worse": the martingale arithmetic.

The guard looks at every deploy once per cycle, for as long as the deploy is watched. A
fixed-sample test (a z-test, Fisher's exact test) re-run at every look rejects a healthy
revision several times more often than its nominal level (bench/detection_5xx.py measures it).
These functions compute mixture likelihood ratios that are non-negative supermartingales
under the null hypothesis, so by Ville's inequality the chance that they EVER reach 1/alpha, at
any look, after any number of looks, is at most alpha. docs/statistics.md derives each one.

Pure arithmetic on counts (`math` only): `guard.core.errorrate` turns verdicts into words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

#: The mixture's alternatives, as multiples of the null's rate or ratio, equally weighted.
#: From "a little worse" to "everything fails": a wide grid costs ln(8) ≈ 2.1 nats of
#: evidence and makes the test sensitive to every regression size without tuning.
GRID: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 25.0, 100.0)

_LOG_WEIGHT = -math.log(len(GRID))


def _log_mean_exp(logs: Iterable[float]) -> float:
    values = [v for v in logs if v != -math.inf]
    if not values:
        return -math.inf
    top = max(values)
    if top == math.inf:
        return math.inf
    return top + math.log(sum(math.exp(v - top) for v in values)) + _LOG_WEIGHT


def paired_log_lr(periods: Iterable[tuple[float, int, float, int]], ratio: float) -> float:
    """ln of the mixture likelihood ratio against "new rate ≤ `ratio` x baseline rate".

    `periods` holds, per aligned period in which both revisions were counted,
    (new_total, new_errors, base_total, base_errors). Only the ratio of the two totals
    matters, so they may be exposures instead of counts: traffic shares (0.2, 0.8) serve
    the request-log test (`guard.core.requestlog`). Given the period's total 5xx count
    k, the new revision's share of it is Binomial(k, theta) with theta = rho*n / (rho*n + b),
    rho the true rate ratio (errors as Poisson counts of the requests each revision served).
    The null's boundary is theta0 = ratio*n / (ratio*n + b); each alternative is
    rho = c*ratio, c in GRID.
    A period where either revision served nothing carries no information (factor 1).
    """
    if ratio <= 0:
        raise ValueError("ratio must be positive")
    logs = [0.0] * len(GRID)
    for n, x, b, y in periods:
        if n <= 0 or b <= 0 or x + y == 0:
            continue
        t0 = ratio * n / (ratio * n + b)
        for i, c in enumerate(GRID):
            t1 = c * ratio * n / (c * ratio * n + b)
            logs[i] += x * math.log(t1 / t0) + y * math.log((1.0 - t1) / (1.0 - t0))
    return _log_mean_exp(logs)


def rate_log_lr(total: int, errors: int, p0: float) -> float:
    """ln of the mixture likelihood ratio against "the 5xx rate is ≤ p0" (one sample).

    Requests fail independently with probability p ≤ p0 under the null (per period; the
    rate may change between periods). Alternatives are p = c*p0 for c in GRID, skipping
    those ≥ 1 (their weight is lost, which only makes the statistic smaller). The ratio is
    non-increasing in p0 for any data, which is what lets a data-dependent p0 that stays
    above the truth keep the bound (see `rate_upper_bound`).
    """
    if errors < 0 or total < errors:
        raise ValueError("need 0 <= errors <= total")
    if p0 >= 1.0 or total == 0:
        return -math.inf if p0 >= 1.0 else 0.0
    if p0 <= 0.0:
        return math.inf if errors > 0 else 0.0
    ok = total - errors
    logs = []
    for c in GRID:
        p1 = c * p0
        if p1 >= 1.0:
            logs.append(-math.inf)
            continue
        logs.append(errors * math.log(c) + ok * (math.log1p(-p1) - math.log1p(-p0)))
    return _log_mean_exp(logs)


def _lower_log_lr(total: int, errors: int, p: float) -> float:
    """ln of the mixture ratio against "the rate is ≥ p" (alternatives p / c): grows in p."""
    ok = total - errors
    return _log_mean_exp(
        -errors * math.log(c) + ok * (math.log1p(-p / c) - math.log1p(-p)) for c in GRID
    )


@lru_cache(maxsize=4096)  # the same pre-deploy counts come back every cycle
def rate_upper_bound(total: int, errors: int, alpha: float) -> float:
    """A time-uniform upper confidence bound U for a 5xx rate from `errors` of `total`.

    With probability ≥ 1 - alpha, U stays above the true (constant) rate at every look while
    the sample grows, because U is the edge of {p : lower mixture ratio(p) < 1/alpha} and that
    ratio at the true p is a martingale (Ville). Returns 1.0 when there is no data.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if total <= 0:
        return 1.0
    limit = math.log(1.0 / alpha)
    lo = errors / total
    hi = 1.0
    if _lower_log_lr(total, errors, 1.0 - 1e-12) < limit:
        return 1.0
    for _ in range(40):  # bisection to 1e-12: far below any rate that matters
        mid = (lo + hi) / 2
        if _lower_log_lr(total, errors, mid) < limit:
            lo = mid
        else:
            hi = mid
    return hi
