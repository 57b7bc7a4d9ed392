"""`guard check`: the configuration and its rule set, checked offline, every problem at once.

Schema problems come from pydantic (see `loader`); this module adds what no single field can
know: that an app's rules exist, that its approvers are defined, that a restore has a
database to restore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from guard.config.loader import ConfigError, load_config
from guard.config.models import GuardConfig
from guard.config.rulesfile import load_rules
from guard.config.yamlfile import Problem, YamlDocument, load_documents
from guard.core.rules import GuardRule
from guard.defaults import RULES_DIR


@dataclass
class CheckResult:
    """What `guard check` found: the loaded config and rules (when readable) and problems."""

    config: GuardConfig | None = None
    rules: dict[str, GuardRule] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(config_path: Path) -> CheckResult:
    """Load `config_path` and its rules; collect every problem rather than stopping early."""
    result = CheckResult()
    try:
        result.config = load_config(config_path)
    except ConfigError as err:
        result.problems.extend(err.problems)
    rules_dir = _rules_dir(config_path, result.config)
    result.rules, rule_problems = load_rules(rules_dir)
    result.problems.extend(rule_problems)
    if result.config is not None:
        docs, _ = load_documents(config_path)
        result.problems.extend(_cross_check(docs[0], result.config, result.rules))
    result.problems.sort(key=lambda p: (p.file, p.line or 0, p.column or 0, p.path))
    return result


def _rules_dir(config_path: Path, config: GuardConfig | None) -> Path:
    if config is None or config.rules_dir is None:
        return RULES_DIR
    if config.rules_dir.is_absolute():
        return config.rules_dir
    return config_path.parent / config.rules_dir


def _cross_check(
    doc: YamlDocument, config: GuardConfig, rules: dict[str, GuardRule]
) -> list[Problem]:
    problems: list[Problem] = []
    known = ", ".join(sorted(rules))
    for name, app in config.apps.items():
        for i, rule in enumerate(app.rules):
            if rules and rule not in rules:
                path: list[str | int] = ["apps", name, "rules", i]
                problems.append(doc.problem(path, f"no rule named {rule!r} (known: {known})"))
        for i, approver in enumerate(app.restore.approvers):
            if approver not in config.approvers:
                path = ["apps", name, "restore", "approvers", i]
                message = f"{approver!r} is not defined under the top-level `approvers`"
                problems.append(doc.problem(path, message))
        for severity, names in app.paging.model_dump().items():
            for i, notifier in enumerate(names or ()):
                if notifier not in config.notifiers:
                    path = ["apps", name, "paging", severity, i]
                    message = f"{notifier!r} is not defined under the top-level `notifiers`"
                    problems.append(doc.problem(path, message))
        if app.restore.approvers and app.database is None:
            message = "restore approvers are set but the app has no `database` to restore"
            problems.append(doc.problem(["apps", name, "restore"], message))
    return problems
