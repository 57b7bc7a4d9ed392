"""The configuration loads, rejects bad input with located errors, and honours GUARD_ env."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.config import ConfigError, load_config
from guard.config.check import check

ROOT = Path(__file__).resolve().parents[2]
PEGASUS = ROOT / "config" / "pegasus.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guard.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_pegasus_describes_the_runbook_system() -> None:
    config = load_config(PEGASUS)
    app = config.apps["pegasus"]
    assert app.project == "delta-student-486911-n5"
    assert app.region == "europe-west1"
    assert [(s.name, s.role.value) for s in app.services] == [
        ("pegasus-api", "api"),
        ("pegasus-worker", "worker"),
    ]
    assert app.database is not None
    assert (app.database.instance, app.database.secret) == ("pegasus-db-eu", "pegasus-db-url")
    assert app.validation is not None
    assert app.validation.paths == ["/health/ready", "/courses", "/lectures"]
    assert app.validation.smoke is not None
    assert app.validation.smoke.command == ["./scripts/smoke_worker_queue.sh"]


BAD = """\
apps:
  pegasus:
    project: delta-student-486911-n5
    region: europe-west1
    servces:
      - name: pegasus-api
    dry_run: maybe
"""


def test_bad_config_names_every_problem_with_file_line_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {(p.path, p.line): p.message for p in caught.value.problems}
    assert len(found) == 3
    assert "did you mean 'services'" in found[("apps.pegasus.servces", 5)]
    assert "valid boolean" in found[("apps.pegasus.dry_run", 7)]
    assert "missing" in found[("apps.pegasus.services", 3)]
    assert all(p.file == str(path) for p in caught.value.problems)
    assert str(caught.value).splitlines()[0].startswith(f"{path}:")


def test_environment_overrides_the_file_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GUARD_APPS__PEGASUS__DRY_RUN", "true")
    monkeypatch.setenv("GUARD_STORE__URL", "postgresql+psycopg://guard:hunter2@db/guard")
    config = load_config(PEGASUS)
    assert config.apps["pegasus"].dry_run is True
    assert config.apps["pegasus"].project == "delta-student-486911-n5"  # file value kept
    assert config.store.url.get_secret_value().endswith("@db/guard")
    assert "hunter2" not in repr(config)


def test_a_bad_environment_value_is_blamed_on_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GUARD_POLL_INTERVAL_SECONDS", "soon")
    with pytest.raises(ConfigError) as caught:
        load_config(PEGASUS)
    [problem] = caught.value.problems
    assert (problem.file, problem.path) == ("environment", "GUARD_POLL_INTERVAL_SECONDS")


def test_duplicate_keys_are_errors_not_silently_last_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, "apps:\n  a: {}\n  a: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert "duplicate key 'a' (first at line 2)" in problem.message
    assert problem.line == 3


def test_invalid_yaml_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "apps:\n  pegasus: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].message.startswith("invalid YAML")
    assert caught.value.problems[0].line is not None


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    text = PEGASUS.read_text() + "\n"
    text = text.replace(
        "  url: sqlite:////var/lib/deploy-guard/guard.db",
        "  url: [postgresql://guard:hunter2@db/guard]",
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "store.url" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_cross_checks_rules_and_approvers(tmp_path: Path) -> None:
    text = PEGASUS.read_text()
    text = text.replace("rules: [migration-failure,", "rules: [migration-failur,")
    text = text.replace("approvers: [alice, bob]", "approvers: [alice, carol]")
    result = check(_write(tmp_path, text))
    messages = {p.path: p.message for p in result.problems}
    assert "no rule named 'migration-failur'" in messages["apps.pegasus.rules.0"]
    assert "'carol' is not defined" in messages["apps.pegasus.restore.approvers.1"]
    assert all(p.line is not None for p in result.problems)


def test_paging_routes_must_name_configured_notifiers(tmp_path: Path) -> None:
    example = (ROOT / "config" / "example.yaml").read_text()
    example = example.replace("rules_dir: ../rules", f"rules_dir: {ROOT / 'rules'}")
    text = example.replace("warning: [chat]", "warning: [chta]")
    result = check(_write(tmp_path, text))
    [problem] = result.problems
    assert problem.path == "apps.shop.paging.warning.0"
    assert "'chta' is not defined under the top-level `notifiers`" in problem.message
    bad_type = example.replace("type: opsgenie", "type: opsgeenie")
    assert any("notifiers.opsgenie" in p.path for p in check(_write(tmp_path, bad_type)).problems)


def test_required_approvals_cannot_exceed_approvers(tmp_path: Path) -> None:
    text = PEGASUS.read_text().replace("required_approvals: 2", "required_approvals: 3")
    with pytest.raises(ConfigError, match="required_approvals is 3 but only 2"):
        load_config(_write(tmp_path, text))


def test_example_documents_every_field() -> None:
    """config/example.yaml must mention every configurable field, so it stays the reference."""
    from pydantic import BaseModel

    from guard.config.loader import _unwrap_optional
    from guard.config.models import GuardConfig

    text = (ROOT / "config" / "example.yaml").read_text()
    missing: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if f"{name}:" not in text:
                missing.append(prefix + name)
            tp = _unwrap_optional(field.annotation)
            args = getattr(tp, "__args__", ())
            for candidate in (tp, *args):
                inner = _unwrap_optional(candidate)
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    walk(inner, f"{prefix}{name}.")

    walk(GuardConfig, "")
    assert missing == []
    assert check(ROOT / "config" / "example.yaml").ok
