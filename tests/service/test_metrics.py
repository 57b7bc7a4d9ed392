"""The metrics recorder: each domain method's samples, replacement semantics, label hygiene,
and the real `promtool check metrics` on the whole exposition."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest

from guard.service.metrics import LATENCY_BUCKETS, Recorder


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(registry: CollectorRegistry) -> Recorder:
    return Recorder(registry)


def _exercise_all(rec: Recorder) -> None:
    rec.deploy_seen("shop", "api")
    rec.verdict("shop", "five-xx", "failed")
    rec.revert("shop", "succeeded")
    rec.set_incidents({("shop", "open"): 1})
    rec.incident_prevented("shop")
    rec.detection_latency("shop", "five-xx", 12.0)
    rec.time_to_revert("shop", 40.0)
    rec.page("pagerduty", "sent")
    rec.google_call("run", "GetService", "OK")
    rec.log_entries("proj-a", "tailed", 5)
    rec.log_stream("proj-a", True)
    rec.cycle("poll", "*", 0.2, True, 1_700_000_000.0)
    rec.cycle("monitoring", "shop", 1.5, False, 1_700_000_010.0)
    rec.set_frozen_apps(["shop"], ["shop", "blog"])
    rec.set_pending_restores(1)
    rec.restore_ended("shop", "clone", "succeeded")
    rec.set_leader(True)
    rec.build_info("0.1.0")


def test_fresh_registry_by_default_not_the_global_one() -> None:
    a, b = Recorder(), Recorder()
    assert a.registry is not REGISTRY
    assert a.registry is not b.registry
    a.deploy_seen("shop", "api")
    assert (
        b.registry.get_sample_value("guard_deploys_seen_total", {"app": "shop", "role": "api"})
        is None
    )


def test_given_registry_is_used(registry: CollectorRegistry, rec: Recorder) -> None:
    assert rec.registry is registry


def test_counters(registry: CollectorRegistry, rec: Recorder) -> None:
    rec.deploy_seen("shop", "api")
    rec.deploy_seen("shop", "api")
    rec.deploy_seen("shop", "migration")
    rec.verdict("shop", "five-xx", "failed")
    rec.verdict("shop", "five-xx", "provider_error")
    rec.revert("shop", "skipped_dry_run")
    rec.incident_prevented("shop")
    rec.page("slack", "failed")
    rec.google_call("monitoring", "ListTimeSeries", "UNAVAILABLE")
    rec.google_call("monitoring", "ListTimeSeries", "UNAVAILABLE")
    rec.log_entries("proj-a", "tailed", 7)
    rec.log_entries("proj-a", "lost")

    def v(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert v("guard_deploys_seen_total", app="shop", role="api") == 2
    assert v("guard_deploys_seen_total", app="shop", role="migration") == 1
    assert v("guard_verdicts_total", app="shop", rule="five-xx", outcome="failed") == 1
    assert v("guard_verdicts_total", app="shop", rule="five-xx", outcome="provider_error") == 1
    assert v("guard_verdicts_total", app="shop", rule="five-xx", outcome="passed") is None
    assert v("guard_reverts_total", app="shop", outcome="skipped_dry_run") == 1
    assert v("guard_incidents_prevented_total", app="shop") == 1
    assert v("guard_pages_total", backend="slack", outcome="failed") == 1
    assert (
        v(
            "guard_google_api_calls_total",
            service="monitoring",
            method="ListTimeSeries",
            code="UNAVAILABLE",
        )
        == 2
    )
    assert v("guard_log_entries_total", project="proj-a", outcome="tailed") == 7
    assert v("guard_log_entries_total", project="proj-a", outcome="lost") == 1


def test_histograms_bucket_count_and_sum(registry: CollectorRegistry, rec: Recorder) -> None:
    rec.detection_latency("shop", "five-xx", 0.3)
    rec.detection_latency("shop", "five-xx", 12.0)
    rec.detection_latency("shop", "five-xx", 3600.0)
    labels = {"app": "shop", "rule": "five-xx"}

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(
            "guard_detection_latency_seconds_bucket", {**labels, "le": le}
        )

    assert bucket("0.5") == 1
    assert bucket("10.0") == 1
    assert bucket("15.0") == 2
    assert bucket("1800.0") == 2
    assert bucket("+Inf") == 3
    assert registry.get_sample_value("guard_detection_latency_seconds_count", labels) == 3
    assert registry.get_sample_value("guard_detection_latency_seconds_sum", labels) == 3612.3

    rec.time_to_revert("shop", 45.0)
    rec.time_to_revert("shop", -2.0)  # clock skew counts as 0, not a negative sum
    app = {"app": "shop"}
    assert registry.get_sample_value("guard_time_to_revert_seconds_count", app) == 2
    assert registry.get_sample_value("guard_time_to_revert_seconds_sum", app) == 45.0
    assert (
        registry.get_sample_value("guard_time_to_revert_seconds_bucket", {**app, "le": "0.5"}) == 1
    )
    assert (
        registry.get_sample_value("guard_time_to_revert_seconds_bucket", {**app, "le": "60.0"}) == 2
    )


def test_buckets_span_half_a_second_to_thirty_minutes() -> None:
    assert LATENCY_BUCKETS[0] == 0.5
    assert LATENCY_BUCKETS[-1] == 1800
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_set_incidents_replaces_all_label_sets(registry: CollectorRegistry, rec: Recorder) -> None:
    def v(app: str, state: str) -> float | None:
        return registry.get_sample_value("guard_incidents", {"app": app, "state": state})

    rec.set_incidents({("shop", "open"): 2, ("blog", "escalated"): 1})
    assert v("shop", "open") == 2
    assert v("blog", "escalated") == 1

    rec.set_incidents({("shop", "open"): 1, ("shop", "resolved"): 0})
    assert v("shop", "open") == 1
    assert v("shop", "resolved") == 0
    assert v("blog", "escalated") is None  # removed, not left stale

    rec.set_incidents({})
    assert v("shop", "open") is None
    assert v("shop", "resolved") is None


def test_set_frozen_apps(registry: CollectorRegistry, rec: Recorder) -> None:
    def frozen(app: str) -> float | None:
        return registry.get_sample_value("guard_frozen", {"app": app})

    def count() -> float | None:
        return registry.get_sample_value("guard_frozen_apps")

    assert count() == 0
    rec.set_frozen_apps(["shop"], ["shop", "blog", "wiki"])
    assert (frozen("shop"), frozen("blog"), frozen("wiki"), count()) == (1, 0, 0, 1)

    rec.set_frozen_apps(["blog", "wiki"], ["shop", "blog", "wiki"])
    assert (frozen("shop"), frozen("blog"), frozen("wiki"), count()) == (0, 1, 1, 2)

    # wiki leaves the config while still frozen: still 1, so sum(guard_frozen) == count.
    rec.set_frozen_apps(["wiki"], ["shop", "blog"])
    assert (frozen("shop"), frozen("blog"), frozen("wiki"), count()) == (0, 0, 1, 1)

    # wiki unfrozen and unconfigured: its series goes away.
    rec.set_frozen_apps([], ["shop"])
    assert (frozen("shop"), frozen("blog"), frozen("wiki"), count()) == (0, None, None, 0)


def test_cycle(registry: CollectorRegistry, rec: Recorder) -> None:
    labels = {"job": "monitoring", "app": "shop"}
    rec.cycle("monitoring", "shop", 1.5, True, 1_700_000_000.0)
    rec.cycle("monitoring", "shop", 4.0, False, 1_700_000_060.0)
    assert registry.get_sample_value("guard_cycle_lag_seconds", labels) == 4.0
    # the failed cycle does not move the last-success timestamp
    assert (
        registry.get_sample_value("guard_cycle_last_success_timestamp_seconds", labels)
        == 1_700_000_000.0
    )
    assert registry.get_sample_value("guard_cycles_total", {**labels, "result": "ok"}) == 1
    assert registry.get_sample_value("guard_cycles_total", {**labels, "result": "error"}) == 1

    rec.cycle("poll", "*", 0.0, True, 1_700_000_100.0)
    assert (
        registry.get_sample_value("guard_cycles_total", {"job": "poll", "app": "*", "result": "ok"})
        == 1
    )


def test_cycle_refuses_empty_app(rec: Recorder) -> None:
    with pytest.raises(ValueError, match='"\\*"'):
        rec.cycle("poll", "", 0.0, True, 0.0)


def test_gauges(registry: CollectorRegistry, rec: Recorder) -> None:
    rec.log_stream("proj-a", True)
    assert registry.get_sample_value("guard_log_stream_connected", {"project": "proj-a"}) == 1
    rec.log_stream("proj-a", False)
    assert registry.get_sample_value("guard_log_stream_connected", {"project": "proj-a"}) == 0

    rec.set_pending_restores(3)
    assert registry.get_sample_value("guard_pending_restores") == 3
    rec.set_pending_restores(0)
    assert registry.get_sample_value("guard_pending_restores") == 0

    assert registry.get_sample_value("guard_leader") == 0
    rec.set_leader(True)
    assert registry.get_sample_value("guard_leader") == 1
    rec.set_leader(False)
    assert registry.get_sample_value("guard_leader") == 0


def test_build_info_replaces_version(registry: CollectorRegistry, rec: Recorder) -> None:
    rec.build_info("0.1.0")
    assert registry.get_sample_value("guard_build_info", {"version": "0.1.0"}) == 1
    rec.build_info("0.2.0")
    assert registry.get_sample_value("guard_build_info", {"version": "0.2.0"}) == 1
    assert registry.get_sample_value("guard_build_info", {"version": "0.1.0"}) is None


def test_exposition_is_text_format(rec: Recorder) -> None:
    _exercise_all(rec)
    text = rec.exposition().decode()
    assert "# TYPE guard_reverts_total counter" in text
    assert 'guard_reverts_total{app="shop",outcome="succeeded"} 1.0' in text


FORBIDDEN_LABELS = {"revision", "incident", "incident_id", "url", "message"}


def test_all_names_prefixed_and_no_unbounded_labels(
    registry: CollectorRegistry, rec: Recorder
) -> None:
    _exercise_all(rec)
    families = list(registry.collect())
    assert len(families) == 20  # every metric the recorder defines
    for family in families:
        assert family.name.startswith("guard_"), family.name
        for sample in family.samples:
            bad = FORBIDDEN_LABELS & set(sample.labels)
            assert not bad, f"{sample.name} has unbounded label(s) {bad}"


def _promtool_check(exposition: bytes) -> tuple[int, list[str]]:
    """Run the real `promtool check metrics`; its exit code and every output line (it
    prints nothing at all for a clean exposition, one line per problem otherwise)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), as the project's setup does in CI"
        )
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = (done.stdout + done.stderr).decode()
    return done.returncode, [line for line in out.splitlines() if line.strip()]


def test_promtool_detects_a_bad_exposition() -> None:
    """The check below can fail: a counter without _total is reported."""
    bad = b"# HELP guard_bad Bad.\n# TYPE guard_bad counter\nguard_bad 1\n"
    code, lines = _promtool_check(bad)
    assert code != 0
    assert any("_total" in line for line in lines), lines


def test_promtool_check_metrics_accepts_the_exposition(rec: Recorder) -> None:
    _exercise_all(rec)
    code, lines = _promtool_check(rec.exposition())
    assert lines == [], "promtool check metrics reported problems:\n" + "\n".join(lines)
    assert code == 0


def test_promtool_flags_a_problem_in_real_client_output() -> None:
    """prometheus_client appends _total to counters itself, so the likely slip is a name
    like this one; promtool reports it in the client's real output (with _created lines)."""
    registry = CollectorRegistry()
    Counter("guard_bad_milliseconds", "Bad unit.", registry=registry).inc()
    code, lines = _promtool_check(generate_latest(registry))
    assert code != 0
    assert lines
