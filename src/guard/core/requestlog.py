"""The early 5xx signal: whose are the 5xx request-log entries, while traffic is split?

Cloud Monitoring shows a 60 s point up to 120 s after it ends, so the Monitoring-based judge
(`guard.core.errorrate`) can fail a bad deploy only minutes after it. The log source tails
request logs with `httpRequest.status>=500` within seconds, but those are the 5xx entries
only: no request totals, so no rate. While the new revision *shares* traffic with other
revisions (a canary, a partial split), the entries still answer the question, because the
traffic shares stand in for the totals:

- the new revision serves a share `s` of the requests, the other revisions `1 - s`;
- under the null "the new revision fails at most `minRatio` (r) x as often as the rest", a
  5xx entry comes from the new revision with probability at most
  `p0 = s·r / (s·r + (1 - s))`;
- so, given the number of 5xx entries, the new revision's count is (at most)
  Binomial(total, p0): a conditional test that needs no request totals, immune to load and
  to errors that every revision shares (a downstream outage).

The evidence is the mixture likelihood ratio of `errorrate_stats.paired_log_lr` with the
shares as exposures: a supermartingale under the null, so by Ville's inequality a healthy
revision reaches 1/alpha with probability at most alpha however often the guard looks
(docs/statistics.md, "Early signal"). Entries are grouped by the share in force when they
were written (the caller passes an upper bound of it: a larger share only weakens the test).

When the new revision serves ALL the traffic there is no concurrent baseline in the logs:
INCONCLUSIVE, and Monitoring decides. This judge never PASSES a deploy either: it can only
fail one early, and it fails only with at least `min_entries` entries from the new revision.

Pure: counts in, an `ErrorRateJudgement` out (`test="requestLog"`), so `guard.core.judge`
turns it into a verdict like any other 5xx judgement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from guard.core.errorrate import ErrorRateJudgement, num, pct
from guard.core.errorrate_stats import paired_log_lr
from guard.core.model import Outcome, Reason
from guard.core.rules import ErrorRateProvider

#: Fewest 5xx entries from the new revision before the early signal may fail a deploy: a
#: handful of errors is an anecdote, whatever the likelihood ratio says.
MIN_NEW_ENTRIES = 5


@dataclass(frozen=True, slots=True)
class ShareCount:
    """5xx request-log entries written while the new revision had traffic share `share`.

    `share` is a fraction in [0, 1] (an upper bound of the true share is safe); `new` the
    entries of the new revision, `other` those of every other revision of the service.
    """

    share: float
    new: int
    other: int


def null_share(share: float, ratio: float) -> float:
    """p0: the most of the 5xx entries the new revision writes under the null."""
    if share >= 1.0:
        return 1.0
    if share <= 0.0:
        return 0.0
    return share * ratio / (share * ratio + (1.0 - share))


def judge_request_log_5xx(
    counts: Iterable[ShareCount],
    *,
    provider: ErrorRateProvider,
    min_entries: int = MIN_NEW_ENTRIES,
) -> ErrorRateJudgement:
    """FAILED or INCONCLUSIVE (NO_DATA without entries) from 5xx request-log entries.

    FAILED needs both: the sequential test rejects "new rate ≤ minRatio x the others' rate"
    at the rule's falsePositiveRate alpha (LR ≥ 1/alpha), and at least `min_entries` entries
    from the new revision. Shares of 0 (the new revision served nothing) and of 1 (nothing to
    compare with) carry no information.
    """
    alpha, r = provider.false_positive_rate, provider.min_ratio
    merged: dict[float, list[int]] = {}
    for c in counts:
        if c.new < 0 or c.other < 0 or not 0.0 <= c.share <= 1.0:
            raise ValueError(f"bad share count {c!r}")
        cell = merged.setdefault(c.share, [0, 0])
        cell[0] += c.new
        cell[1] += c.other
    split = {s: v for s, v in merged.items() if 0.0 < s < 1.0 and v[0] + v[1] > 0}
    if not split:
        full = sum(v[0] for s, v in merged.items() if s >= 1.0)
        if any(s >= 1.0 for s in merged):
            text = (
                f"request logs: the new revision serves 100% of traffic ({full} 5xx entries): "
                "no concurrent baseline in the logs, Cloud Monitoring decides"
            )
            return ErrorRateJudgement(
                Outcome.INCONCLUSIVE, (Reason(text, 1.0),), new_errors=full,
                baseline="requestLog", test="requestLog",
            )  # fmt: skip
        text = "request logs: no 5xx entries while the new revision shares traffic"
        return ErrorRateJudgement(
            Outcome.NO_DATA, (Reason(text, 0),), baseline="requestLog", test="requestLog"
        )
    x = sum(v[0] for v in split.values())
    y = sum(v[1] for v in split.values())
    k = x + y
    expected = sum((v[0] + v[1]) * null_share(s, r) for s, v in split.items()) / k
    shares = sorted(split)
    at = pct(shares[0]) if len(shares) == 1 else f"{pct(shares[0])}-{pct(shares[-1])}"
    log_lr = paired_log_lr(((s, v[0], 1.0 - s, v[1]) for s, v in split.items()), r)
    lr, threshold = math.exp(min(log_lr, 700.0)), 1.0 / alpha
    ratio: float | None = None
    if len(shares) == 1:  # the observed rate ratio, from the entries and the share
        s = shares[0]
        ratio = (x * (1.0 - s)) / (y * s) if y else (math.inf if x else None)
    reasons = [
        Reason(
            f"request logs: {x} of {k} 5xx entries from the new revision at {at} traffic "
            f"share; expected at most {pct(expected)} under minRatio {r:g}",
            x / k,
            expected,
        )
    ]
    if ratio is not None:
        cmp = "≥" if ratio >= r else "<"
        reasons.append(
            Reason(f"request logs: 5xx rate ratio {num(ratio)} {cmp} minRatio {r:g}", ratio, r)
        )
    enough = x >= min_entries
    cmp = "≥" if lr >= threshold else "<"
    reasons.append(
        Reason(
            f"sequential LR {num(lr)} {cmp} 1/alpha = {threshold:g} (request-log test, "
            f"new revision's share of the 5xx entries; alpha = {alpha:g})",
            lr,
            threshold,
        )
    )
    if not enough:
        reasons.append(
            Reason(
                f"request logs: {x} 5xx entries from the new revision < {min_entries} needed",
                x,
                min_entries,
            )
        )
    outcome = Outcome.FAILED if lr >= threshold and enough else Outcome.INCONCLUSIVE
    return ErrorRateJudgement(
        outcome, tuple(reasons), new_errors=x, base_errors=y, baseline="requestLog",
        ratio=ratio, lr=lr, lr_threshold=threshold, test="requestLog",
    )  # fmt: skip
