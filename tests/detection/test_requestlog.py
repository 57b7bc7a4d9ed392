"""The early 5xx judge on request-log entries: fast on a bad canary, quiet on a healthy one.

The detector judges the entries at every evaluation, so the bound that matters is "ever
FAILED over all looks". The simulations replay canaries look by look, drawing each look's 5xx
entries the way the fake cloud draws requests (guard.sim.sampling), and count the deploys
that were ever failed.
"""

from __future__ import annotations

import random

import pytest

from guard.core.model import Outcome
from guard.core.requestlog import (
    MIN_NEW_ENTRIES,
    ShareCount,
    judge_request_log_5xx,
    null_share,
)
from guard.core.rules import ErrorRateProvider
from guard.sim.sampling import poisson

DEFAULT = ErrorRateProvider(type="errorRate")  # alpha 0.001, minRatio 2


def judge(*counts: ShareCount, provider: ErrorRateProvider = DEFAULT) -> Outcome:
    return judge_request_log_5xx(counts, provider=provider).outcome


def test_null_share_is_the_new_revisions_most_under_the_null() -> None:
    assert null_share(0.5, 2.0) == pytest.approx(2 / 3)
    assert null_share(0.2, 2.0) == pytest.approx(1 / 3)
    assert null_share(0.0, 2.0) == 0.0
    assert null_share(1.0, 2.0) == 1.0


def test_a_failing_canary_fails_fast_and_says_why() -> None:
    result = judge_request_log_5xx([ShareCount(0.5, 41, 3)], provider=DEFAULT)
    assert result.outcome is Outcome.FAILED
    assert result.test == "requestLog"
    assert (result.new_errors, result.base_errors) == (41, 3)
    assert result.lr >= result.lr_threshold == pytest.approx(1000)
    text = " ".join(r.text for r in result.reasons)
    assert "request logs: 41 of 44 5xx entries from the new revision at 50% traffic share" in text
    assert "expected at most 66.7% under minRatio 2" in text
    assert "sequential LR" in text
    assert "≥ 1/alpha = 1000" in text
    assert result.data()["test"] == "requestLog"


def test_a_bad_canary_is_failed_within_a_few_dozen_entries() -> None:
    """A 10% canary failing at 40x its baseline's rate: look after every entry."""
    rng = random.Random(11)
    share, p_new, p_old = 0.1, 0.08, 0.002
    theta = share * p_new / (share * p_new + (1 - share) * p_old)  # ~0.82 of entries
    needed = []
    for _ in range(50):
        new = other = 0
        while judge(ShareCount(share, new, other)) is not Outcome.FAILED:
            if rng.random() < theta:
                new += 1
            else:
                other += 1
            assert new + other < 200
        needed.append(new + other)
    assert max(needed) <= 40
    assert sorted(needed)[len(needed) // 2] <= 15


def test_all_traffic_on_the_new_revision_leaves_it_to_monitoring() -> None:
    result = judge_request_log_5xx([ShareCount(1.0, 500, 0)], provider=DEFAULT)
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "100% of traffic" in result.reasons[0].text
    assert "Cloud Monitoring decides" in result.reasons[0].text
    # Entries of a 100% period add nothing to those of a split.
    split = judge_request_log_5xx([ShareCount(0.5, 2, 2)], provider=DEFAULT)
    both = judge_request_log_5xx([ShareCount(0.5, 2, 2), ShareCount(1.0, 500, 0)], provider=DEFAULT)
    assert both.lr == split.lr


def test_no_entries_is_no_data_and_a_share_of_zero_tells_nothing() -> None:
    assert judge() is Outcome.NO_DATA
    assert judge(ShareCount(0.0, 0, 40)) is Outcome.NO_DATA


def test_too_few_entries_never_fail() -> None:
    # At a 1% share, 4 of 4 entries is overwhelming evidence, but only 4 entries.
    result = judge_request_log_5xx([ShareCount(0.01, MIN_NEW_ENTRIES - 1, 0)], provider=DEFAULT)
    assert result.lr >= result.lr_threshold
    assert result.outcome is Outcome.INCONCLUSIVE
    assert f"< {MIN_NEW_ENTRIES} needed" in result.reasons[-1].text
    assert judge(ShareCount(0.01, MIN_NEW_ENTRIES, 0)) is Outcome.FAILED


def test_a_healthy_canary_is_never_failed_never_passed() -> None:
    result = judge_request_log_5xx([ShareCount(0.2, 20, 80)], provider=DEFAULT)
    assert result.outcome is Outcome.INCONCLUSIVE  # this judge only ever fails early
    assert result.ratio == pytest.approx(1.0)


def test_bad_share_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="bad share count"):
        judge(ShareCount(1.5, 1, 1))
    with pytest.raises(ValueError, match="bad share count"):
        judge(ShareCount(0.5, -1, 1))


def _ever_failed(
    rng: random.Random,
    provider: ErrorRateProvider,
    *,
    shares: tuple[float, ...],
    rate_ratio: float,
    base_per_look: float,
    looks: int = 100,
) -> bool:
    """One canary, judged at every look; each look's entries are Poisson given the share."""
    counts: dict[float, list[int]] = {}
    for look in range(looks):
        share = shares[look * len(shares) // looks]  # the rollout moves through the shares
        cell = counts.setdefault(share, [0, 0])
        cell[0] += poisson(rng, base_per_look * share * rate_ratio)
        cell[1] += poisson(rng, base_per_look * (1 - share))
        entries = [ShareCount(s, n, o) for s, (n, o) in counts.items()]
        if judge_request_log_5xx(entries, provider=provider).outcome is Outcome.FAILED:
            return True
    return False


@pytest.mark.parametrize("shares", [(0.1,), (0.5,), (0.05, 0.25, 0.5)])
def test_a_healthy_canary_with_the_same_error_rate_is_never_failed(
    shares: tuple[float, ...],
) -> None:
    """Same rate as the baseline, 100 looks per deploy, 200 deploys (seeds): no failure."""
    failed = sum(
        _ever_failed(random.Random(seed), DEFAULT, shares=shares, rate_ratio=1.0, base_per_look=5)
        for seed in range(200)
    )
    assert failed == 0


def test_false_positives_stay_under_alpha_at_the_nulls_edge() -> None:
    """The hardest healthy canary (rate exactly minRatio x the baseline's), alpha 0.05:
    over 400 deploys of 100 looks each, the share ever failed stays under alpha (its
    expected count is at most 20; the binomial's 99.9% quantile at 20 is about 35, so the
    margin is on the bound, which Ville's inequality makes conservative)."""
    provider = ErrorRateProvider(type="errorRate", false_positive_rate=0.05)
    failed = sum(
        _ever_failed(random.Random(seed), provider, shares=(0.3,), rate_ratio=2.0, base_per_look=3)
        for seed in range(400)
    )
    assert failed / 400 <= 0.05
