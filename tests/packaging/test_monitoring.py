"""The guard's own monitoring (docs/alerts.md): the Prometheus alert rules and the Grafana
dashboard the Helm chart ships from helm/deploy-guard/files/.

The rules go through the real promtool: `check rules` (syntax, templates, durations) and
`test rules` (their unit tests, which fire and must not fire for each alert); both checks
are shown to fail on broken input. Every `guard_*` name in the rules and the dashboard must
be a series that `guard.service.metrics.Recorder` exports, so renaming a metric breaks this
test instead of silently emptying a panel or an alert. The dashboard's queries are parsed
by promtool too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.service.metrics import Recorder

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "helm" / "deploy-guard" / "files"
RULES = FILES / "prometheus-rules.yaml"
RULE_TESTS = FILES / "prometheus-rules.test.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"
ALERTS_DOC = ROOT / "docs" / "alerts.md"

ALERTS = {
    "DeployGuardDown",
    "DeployGuardMultipleLeaders",
    "DeployGuardCyclesStale",
    "DeployGuardLogTailDisconnected",
    "DeployGuardPagesFailing",
    "DeployGuardRestoreAwaitingApproval",
    "DeployGuardRevertFailed",
}
SEVERITIES = {"critical", "warning"}
GUARD_NAME = re.compile(r"\bguard_[a-z0-9_]+\b")
# Each metric type's series names, from the family name prometheus_client reports.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1d", "$app": ".*"}


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: `make install` installs Debian's `prometheus` "
            "package, which provides it (tools/system-deps.sh)"
        )
    return path


def run(promtool: str, *args: str, cwd: Path) -> tuple[int, str]:
    """Run promtool; its exit code and stdout + stderr (it reports problems on both)."""
    done = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, done.stdout + done.stderr


def load_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert [g["name"] for g in data["groups"]] == ["deploy-guard"]
    rules: list[dict[str, Any]] = data["groups"][0]["rules"]
    return rules


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panel_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[int, str]]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["id"], target["expr"]


def exported_series() -> set[str]:
    """Every series name a fresh Recorder can export (nothing recorded: names only)."""
    names: set[str] = set()
    for family in Recorder().registry.collect():
        assert family.type in SUFFIXES, f"{family.name}: type {family.type} not handled"
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def unknown_names(exprs: list[str], exported: set[str]) -> set[str]:
    return {name for expr in exprs for name in GUARD_NAME.findall(expr)} - exported


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# -- promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules_passes(promtool: str) -> None:
    code, out = run(promtool, "check", "rules", RULES.name, cwd=FILES)
    assert code == 0, out
    assert f"SUCCESS: {len(load_rules())} rules found" in out, out
    assert "FAILED" not in out
    assert "WARN" not in out.upper(), out


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        pytest.param(
            ("absent(guard_build_info)", "absent(guard_build_info"),
            "unclosed left parenthesis",
            id="unparsable-expr",
        ),
        pytest.param(("{{ $labels.app }}.", "{{ $labels.app }."), "template", id="broken-template"),
        pytest.param(("for: 30m", "for: 30 minutes"), "not a valid duration", id="bad-for"),
    ],
)
def test_promtool_check_rules_fails_on_a_broken_copy(
    promtool: str, tmp_path: Path, broken: tuple[str, str], why: str
) -> None:
    """The check above can fail: each breakage is reported and exits non-zero."""
    text = RULES.read_text(encoding="utf-8")
    assert broken[0] in text
    (tmp_path / RULES.name).write_text(text.replace(broken[0], broken[1], 1), encoding="utf-8")
    code, out = run(promtool, "check", "rules", RULES.name, cwd=tmp_path)
    assert code != 0, out
    assert "FAILED" in out
    assert why in out, out


def test_promtool_unit_tests_pass(promtool: str) -> None:
    code, out = run(promtool, "test", "rules", RULE_TESTS.name, cwd=FILES)
    assert code == 0, out
    assert "SUCCESS" in out, out
    assert "FAILED" not in out


def test_promtool_unit_tests_catch_a_rule_that_ignores_leadership(
    promtool: str, tmp_path: Path
) -> None:
    """The unit tests can fail: joined on any replica instead of the leader, the rules fire
    for a standby's stale gauges, and the tests that must not fire say so."""
    text = RULES.read_text(encoding="utf-8")
    assert text.count("(guard_leader == 1)") >= 4
    (tmp_path / RULES.name).write_text(
        text.replace("(guard_leader == 1)", "(guard_leader >= 0)"), encoding="utf-8"
    )
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    code, out = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert code != 0, out
    assert "FAILED" in out
    for alert in (
        "DeployGuardCyclesStale",
        "DeployGuardLogTailDisconnected",
        "DeployGuardRestoreAwaitingApproval",
    ):
        assert f"alertname: {alert}" in out, out


def test_every_alert_has_unit_tests_that_fire_and_that_do_not() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    assert tests["evaluation_interval"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        assert case["interval"]
        assert case["input_series"]
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    assert fires == ALERTS
    assert silent == ALERTS


# -- the rules --------------------------------------------------------------------------------


def test_rules_are_the_documented_alerts() -> None:
    rules = load_rules()
    assert {r["alert"] for r in rules} == ALERTS
    anchors = {
        github_anchor(line[3:])
        for line in ALERTS_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, rule["alert"]
        doc, _, anchor = notes["runbook_url"].partition("#")
        assert doc == "docs/alerts.md"
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/alerts.md has no section for {rule['alert']}"


def test_rules_use_only_metrics_the_recorder_exports() -> None:
    exprs = [r["expr"] for r in load_rules()]
    used = {name for expr in exprs for name in GUARD_NAME.findall(expr)}
    assert {"guard_leader", "guard_build_info", "guard_pages_total"} <= used
    assert unknown_names(exprs, exported_series()) == set()


def test_the_name_check_catches_a_renamed_metric() -> None:
    exported = exported_series()
    assert {
        "guard_reverts_total",
        "guard_reverts_created",
        "guard_time_to_revert_seconds_bucket",
        "guard_leader",
    } <= exported
    assert "guard_reverts" not in exported
    renamed = ['increase(guard_revert_total{outcome="failed"}[10m])', "guard_leaders == 1"]
    assert unknown_names(renamed, exported) == {"guard_revert_total", "guard_leaders"}


# -- the dashboard ----------------------------------------------------------------------------


def test_dashboard_has_the_required_keys_and_variables() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] == "Deploy Guard"
    assert dashboard["uid"] == "deploy-guard"
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "app"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    app = variables["app"]
    assert app["type"] == "query"
    assert app["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert app["query"]["query"] == "label_values(guard_deploys_seen_total, app)"
    assert app["definition"] == app["query"]["query"]
    assert app["multi"] is True
    assert app["includeAll"] is True


def test_dashboard_panels_are_well_formed() -> None:
    panels = load_dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["id"])
                assert other == panel["id"], f"panels {other} and {panel['id']} overlap"
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no target"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target["expr"].strip()
            assert target["datasource"] == panel["datasource"]


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = [expr for _, expr in panel_exprs(load_dashboard())]

    def shown(*parts: str) -> bool:
        return any(all(part in expr for part in parts) for expr in exprs)

    for metric in (
        "guard_deploys_seen_total",
        "guard_verdicts_total",
        "guard_reverts_total",
        "guard_google_api_calls_total",
        "guard_pages_total",
        "guard_pending_restores",
        "guard_frozen",
        "guard_leader",
        "guard_cycle_lag_seconds",
    ):
        assert shown(metric), metric
    assert shown("by (rule, outcome)", "guard_verdicts_total")
    assert shown("by (backend, outcome)", "guard_pages_total")
    assert shown("by (service, code)", 'code!="OK"')
    for q in ("0.5", "0.9", "0.99"):
        assert shown(f"histogram_quantile({q},", "guard_time_to_revert_seconds_bucket"), q
    for q in ("0.5", "0.9"):
        assert shown(f"histogram_quantile({q},", "guard_detection_latency_seconds_bucket"), q


def test_dashboard_uses_only_metrics_the_recorder_exports() -> None:
    dashboard = load_dashboard()
    exprs = [expr for _, expr in panel_exprs(dashboard)]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert unknown_names(exprs, exported_series()) == set()


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule that
    `promtool check rules` parses."""
    rules = []
    for n, (panel_id, expr) in enumerate(panel_exprs(load_dashboard())):
        query = expr
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        # "$1" is label_replace's capture group, not a Grafana variable.
        assert "$" not in query.replace("$1", ""), f"panel {panel_id}: unknown variable: {expr}"
        rules.append({"record": f"dashboard:panel_{panel_id}:{n}", "expr": query})
    path = tmp_path / "dashboard-queries.yaml"
    document = {"groups": [{"name": "dashboard", "rules": rules}]}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    code, out = run(promtool, "check", "rules", path.name, cwd=tmp_path)
    assert code == 0, out
    assert f"SUCCESS: {len(rules)} rules found" in out, out
