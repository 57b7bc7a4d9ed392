"""The 5xx decision: is the new revision's error rate worse than its baseline's, provably?

Runbook trigger 3 ("elevated 5xx rates start immediately after a release") must revert a bad
deploy fast and must never cry wolf, on a metric that arrives minutes late and at traffic
levels where a handful of errors is noise. So this judge keeps "no data yet", "too little
traffic" and "not decided yet" apart from failure, and fails only when ALL of these hold:

- an always-valid sequential test rejects "new rate ≤ baseline rate x minRatio" at the
  rule's falsePositiveRate alpha (valid however many cycles look; see docs/statistics.md),
- the new revision served at least minRequests requests since the deploy,
- its observed 5xx rate is above the absolute floor (thresholdRange.max).

Baselines. The caller passes the last-known-good revision(s)' counts from before the deploy
through now, and the judge uses both parts: periods where both revisions served (a canary)
feed a paired test that is immune to load and to errors both revisions share; periods
before the deploy feed a test against a pre-deploy upper bound (all traffic moved at once).
alpha is split between them (alpha/2 each), so the bound holds without anyone choosing a mode, and
a canary promoted to 100 % keeps being judged. `baseline=None` (the service has no previous
revision) or the rule's `baseline: none` judges the new revision against the floor alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.core.errorrate_stats import paired_log_lr, rate_log_lr, rate_upper_bound
from guard.core.model import Outcome, Reason
from guard.core.rules import ErrorRateProvider
from guard.core.signals import RequestCount

#: Cloud Monitoring: 60 s samples, visible up to 120 s after they end (docs/gcp-facts.md).
DEFAULT_INGESTION_ALLOWANCE = 180.0


@dataclass(frozen=True, slots=True)
class ErrorRateJudgement:
    """One look at one deploy's 5xx counts, with the numbers behind the outcome.

    `base_*` are the counts the ratio was computed against (`baseline` says which:
    "concurrent", "preDeploy", "none" or "" when there was none). `lr` is the strongest
    test's likelihood ratio and `lr_threshold` the value at which it rejects.
    """

    outcome: Outcome
    reasons: tuple[Reason, ...]
    new_total: int = 0
    new_errors: int = 0
    base_total: int = 0
    base_errors: int = 0
    baseline: str = ""
    ratio: float | None = None
    lr: float = 1.0
    lr_threshold: float = math.inf
    test: str = ""

    @property
    def new_rate(self) -> float:
        return self.new_errors / self.new_total if self.new_total else 0.0

    def data(self) -> dict[str, Any]:
        """JSON-able numbers for `Evidence.data` and pages."""
        return {
            "outcome": self.outcome.value,
            "new_total": self.new_total,
            "new_errors": self.new_errors,
            "base_total": self.base_total,
            "base_errors": self.base_errors,
            "baseline": self.baseline,
            "ratio": None if self.ratio is None or math.isinf(self.ratio) else self.ratio,
            "lr": self.lr if math.isfinite(self.lr) else None,
            "lr_threshold": self.lr_threshold,
            "test": self.test,
            "reasons": [r.text for r in self.reasons],
        }


def pct(x: float) -> str:
    """A share as a percentage with three significant digits, for reasons."""
    return f"{x * 100:.3g}%"


def num(x: float) -> str:
    """A statistic for reasons: compact scientific notation when very large or small."""
    if math.isinf(x):
        return "∞"
    return f"{x:.1e}" if x >= 1e4 or 0 < x < 0.01 else f"{x:.3g}"


def _rate(errors: int, total: int) -> str:
    return f"{pct(errors / total) if total else 'n/a'} ({errors}/{total})"


def _by_period(counts: Iterable[RequestCount]) -> dict[tuple[datetime, datetime], list[int]]:
    out: dict[tuple[datetime, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for c in counts:
        cell = out[(c.start, c.end)]
        cell[0] += c.total
        cell[1] += c.errors
    return out


def _lr(log_lr: float) -> float:
    return math.exp(min(log_lr, 700.0))


def judge_error_rate(
    new: Sequence[RequestCount],
    baseline: Sequence[RequestCount] | None,
    *,
    provider: ErrorRateProvider,
    floor: float | None,
    now: datetime,
    deploy_started: datetime,
    ingestion_allowance: float = DEFAULT_INGESTION_ALLOWANCE,
) -> ErrorRateJudgement:
    """Judge the new revision's 5xx counts since `deploy_started` against its baseline.

    `new`: the new revision's counts per aligned period (all of them since the deploy; the
    bound assumes the evidence accumulates). `baseline`: the last-known-good revisions'
    counts from some window before the deploy through now (None: no previous revision).
    `floor`: thresholdRange.max, a 5xx share (None: no floor). PROVIDER_ERROR is the
    caller's to decide when Monitoring cannot be read; this never returns it.
    """
    alpha, min_req = provider.false_positive_rate, provider.min_requests
    new_periods = _by_period(c for c in new if c.end > deploy_started)
    n_total = sum(v[0] for v in new_periods.values())
    n_err = sum(v[1] for v in new_periods.values())
    if n_total == 0:
        waited = (now - deploy_started).total_seconds()
        if waited < ingestion_allowance:
            text = (
                f"no request_count point for the new revision yet, {waited:.0f}s after the "
                f"deploy (Monitoring shows a point up to {ingestion_allowance:.0f}s late)"
            )
            return ErrorRateJudgement(Outcome.NO_DATA, (Reason(text, waited, ingestion_allowance),))
        text = (
            f"0 requests to the new revision visible {waited:.0f}s after the deploy "
            f"(Cloud Run writes no point without traffic); minRequests {min_req}"
        )
        return ErrorRateJudgement(Outcome.TOO_LITTLE_TRAFFIC, (Reason(text, 0, min_req),))
    if n_total < min_req:
        text = f"new revision served {n_total} requests ({n_err} 5xx) < minRequests {min_req}"
        return ErrorRateJudgement(
            Outcome.TOO_LITTLE_TRAFFIC, (Reason(text, n_total, min_req),), n_total, n_err
        )
    if baseline is None or provider.baseline == "none":
        return _against_floor(n_total, n_err, alpha, floor)
    return _against_baseline(new_periods, baseline, provider, floor, deploy_started)


def _against_baseline(
    new_periods: dict[tuple[datetime, datetime], list[int]],
    baseline: Sequence[RequestCount],
    provider: ErrorRateProvider,
    floor: float | None,
    deploy_started: datetime,
) -> ErrorRateJudgement:
    """The paired (canary) and pre-deploy tests, alpha/2 each; FAILED needs one to reject."""
    alpha, r, min_req = provider.false_positive_rate, provider.min_ratio, provider.min_requests
    n_total = sum(v[0] for v in new_periods.values())
    n_err = sum(v[1] for v in new_periods.values())
    rate = n_err / n_total
    above_floor = floor is None or rate > floor
    base_periods = _by_period(baseline)
    pairs = [
        (n, x, base_periods[key][0], base_periods[key][1])
        for key, (n, x) in new_periods.items()
        if key in base_periods
    ]
    conc_total, conc_err = sum(p[2] for p in pairs), sum(p[3] for p in pairs)
    pre = [c for c in baseline if c.end <= deploy_started]
    pre_total, pre_err = sum(c.total for c in pre), sum(c.errors for c in pre)
    log_paired = paired_log_lr(pairs, r)
    upper = rate_upper_bound(pre_total, pre_err, alpha / 4)
    log_pre = rate_log_lr(n_total, n_err, r * upper)
    tests = [
        ("paired", _lr(log_paired), 2 / alpha, "old revision, same periods"),
        ("preDeploy", _lr(log_pre), 4 / alpha, f"before the deploy, upper bound {pct(upper)}"),
    ]
    name, lr, threshold, how = max(tests, key=lambda t: t[1] / t[2])
    rejected = any(t[1] >= t[2] for t in tests)
    if conc_total >= min_req or (conc_total and conc_total >= pre_total):
        kind, b_total, b_err = "concurrent", conc_total, conc_err
    elif pre_total:
        kind, b_total, b_err = "preDeploy", pre_total, pre_err
    else:
        kind, b_total, b_err = "", 0, 0
    ratio: float | None = None
    if b_total:
        b_rate = b_err / b_total
        ratio = rate / b_rate if b_rate > 0 else (math.inf if n_err else 1.0)
    where = {"concurrent": "old revision, same periods", "preDeploy": "before the deploy"}
    base_text = f"baseline {_rate(b_err, b_total)}, {where[kind]}" if kind else "no baseline"
    reasons = [Reason(f"new 5xx {_rate(n_err, n_total)} vs {base_text}", rate, floor)]
    if ratio is not None:
        cmp = "≥" if ratio >= r else "<"
        reasons.append(Reason(f"ratio {num(ratio)} {cmp} minRatio {r:g}", ratio, r))
    if floor is not None:
        cmp = ">" if above_floor else "≤"
        reasons.append(Reason(f"new 5xx {pct(rate)} {cmp} floor {pct(floor)}", rate, floor))
    cmp = "≥" if lr >= threshold else "<"
    reasons.append(
        Reason(
            f"sequential LR {num(lr)} {cmp} {threshold:g} ({name} test, {how}; "
            f"alpha = {alpha:g} split between two tests)",
            lr,
            threshold,
        )
    )
    if rejected and above_floor:
        outcome = Outcome.FAILED
    elif not above_floor or (ratio is not None and ratio < r):
        outcome = Outcome.PASSED
    else:
        outcome = Outcome.INCONCLUSIVE  # looks worse, not proven yet (or nothing to compare)
    return ErrorRateJudgement(
        outcome, tuple(reasons), n_total, n_err, b_total, b_err,
        baseline=kind, ratio=ratio, lr=lr, lr_threshold=threshold, test=name,
    )  # fmt: skip


def _against_floor(
    n_total: int, n_err: int, alpha: float, floor: float | None
) -> ErrorRateJudgement:
    """No baseline: fail only when the test rejects "new rate ≤ floor" at alpha."""
    rate = n_err / n_total
    if floor is None:
        text = f"new 5xx {_rate(n_err, n_total)}; no baseline and no floor: nothing to judge"
        return ErrorRateJudgement(
            Outcome.PASSED, (Reason(text, rate),), n_total, n_err, baseline="none"
        )
    lr, threshold = _lr(rate_log_lr(n_total, n_err, floor)), 1 / alpha
    cmp_f, cmp_lr = (">" if rate > floor else "≤"), ("≥" if lr >= threshold else "<")
    reasons = (
        Reason(
            f"new 5xx {_rate(n_err, n_total)} {cmp_f} floor {pct(floor)} (no baseline)",
            rate,
            floor,
        ),
        Reason(
            f"sequential LR {num(lr)} {cmp_lr} 1/alpha = {threshold:g} (floor test)", lr, threshold
        ),
    )
    outcome = (
        Outcome.FAILED if lr >= threshold and rate > floor
        else Outcome.PASSED if rate <= floor
        else Outcome.INCONCLUSIVE
    )  # fmt: skip
    return ErrorRateJudgement(
        outcome, reasons, n_total, n_err, baseline="none", lr=lr, lr_threshold=threshold,
        test="floor",
    )  # fmt: skip
