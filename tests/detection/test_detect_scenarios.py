"""Detection end to end: each example scenario through the real adapters into verdicts.

Every runbook trigger produces the right verdict, with its reasons and the failing
migration's filename, soon after the evidence appears; benign and low-traffic deploys
produce none. The verdicts come from the guard's own path: the Cloud Run reader and the
deploy tracker, the log source's live tail and the classifier, one Monitoring read per cycle
and the 5xx statistics, and the shipped rules.
"""

from __future__ import annotations

import pytest

from guard.core.model import DeployKind

from ..support.guarded import Guarded, load


async def fired_in(name: str, until: float) -> Guarded:
    async with Guarded(load(name)) as guarded:
        await guarded.play(until)
    return guarded


async def test_trigger_1_migration_failure_names_the_file() -> None:
    g = await fired_in("trigger1-migration-failure", 4 * 60)
    (t, rule, revision, verdict), *rest = g.fired()
    assert (rule, revision) == ("migration-failure", "pegasus-api-00008-new")
    # The runner's error is written at 186 s, but a revision becomes a deploy when it takes
    # traffic (Ready at 195 s): the verdict comes at the next poll (every 10 s).
    assert 195 <= t <= 195 + 10
    reason = verdict.reasons[0].text
    assert "backend/migrations/002_enrollments_completed_at.sql (named in the log)" in reason
    assert verdict.evidence[0].data["sqlstate"] == "55P03"  # lock_not_available
    assert {r for _, r, _, _ in rest} <= {"schema-mismatch", "error-rate"}


async def test_trigger_2_schema_mismatch() -> None:
    g = await fired_in("trigger2-schema-mismatch", 4 * 60)
    (t, rule, revision, verdict), *_ = g.fired()
    assert (rule, revision) == ("schema-mismatch", "pegasus-api-00011-new")
    assert t <= 200  # Ready at 190 s; two failed requests at 6 rps x 10% come within seconds
    assert verdict.evidence[0].data["sqlstate"] == "42P01"
    assert verdict.evidence[0].data["relation"] == "course_reviews"


async def test_trigger_3_error_rate_within_a_cycle_of_the_data() -> None:
    g = await fired_in("trigger3-error-rate", 12 * 60)
    [(t, rule, revision, verdict)] = g.fired()
    assert (rule, revision) == ("error-rate", "pegasus-api-00021-new")
    # Traffic moves at 190 s; 60 s samples show 120 s after they end; judged every 60 s.
    assert t <= 190 + 60 + 120 + 2 * 60
    text = " ".join(r.text for r in verdict.reasons)
    assert "floor" in text
    assert "ratio" in text


async def test_failed_start_blames_the_newest_migration() -> None:
    g = await fired_in("failed-start", 4 * 60)
    [(t, rule, revision, verdict)] = g.fired()
    assert (rule, revision) == ("migration-failure", "pegasus-api-00031-new")
    assert t <= 120 + 40 + 10  # failed at 160 s (startup 40 s), seen at the next poll
    assert verdict.deploy.kind is DeployKind.FAILED_START
    reason = verdict.reasons[0].text
    assert "backend/migrations/002_users_created_at.sql (the revision's newest migration)" in reason


async def test_canary_is_caught_on_its_share() -> None:
    g = await fired_in("canary", 4 * 60)
    (t, rule, revision, verdict), *_ = g.fired()
    assert (rule, revision) == ("schema-mismatch", "pegasus-api-00051-new")
    assert t <= 130 + 10 + 10  # Ready (10% of traffic) at 130 s; within a poll
    assert verdict.deploy.traffic_percent == 10
    assert verdict.deploy.last_known_good == ("pegasus-api-00050-old",)


async def test_worker_breaks_while_the_api_is_fine() -> None:
    g = await fired_in("worker-breaks", 5 * 60)
    rules = {(rule, revision) for _, rule, revision, _ in g.fired()}
    assert ("migration-failure", "pegasus-worker-00021-new") in rules
    assert all(revision.startswith("pegasus-worker") for _, revision in rules)


async def test_runbook_worst_case_blames_the_rename() -> None:
    g = await fired_in("runbook-worst-case", 6 * 60)
    (t, rule, revision, verdict), *_ = g.fired()
    assert (rule, revision) == ("schema-mismatch", "pegasus-api-00042-zed")
    assert t <= 240 + 12 + 10  # Ready at 252 s, then within one poll
    assert "backend/migrations/002_rename_course_title.sql" in verdict.reasons[0].text


@pytest.mark.parametrize("name", ["benign", "low-traffic-noisy"])
async def test_no_verdict_on_healthy_or_quiet_deploys(name: str) -> None:
    g = await fired_in(name, 15 * 60)
    assert g.fired() == []
    assert g.detector.deploys_seen, "the deploy itself was seen"


async def test_canary_5xx_only_is_caught_from_request_logs() -> None:
    g = await fired_in("canary-5xx-only", 4 * 60)
    [(t, rule, revision, verdict)] = g.fired()
    assert (rule, revision) == ("error-rate", "pegasus-api-00081-new")
    # Ready (20% of traffic) at 130 s. Monitoring alone fires at 300 s here (its first point
    # of the canary shows 120 s after its 60 s period ends). The request logs need about ten
    # canary 5xx entries (at most a third of the entries should be the canary's, ~90% are):
    # ~30 s at 4 rps x 8%, then up to one 10 s poll to fold them; this seed fires at 180 s.
    ready = 120 + 10
    assert t <= ready + 60
    assert t <= 300 - 2 * 60  # two minutes or more before Monitoring could
    text = " ".join(r.text for r in verdict.reasons)
    assert "request logs:" in text
    assert "5xx entries from the new revision at 20% traffic share" in text
    assert verdict.evidence[0].data["test"] == "requestLog"
    assert verdict.deploy.traffic_percent == 20
