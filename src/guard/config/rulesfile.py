"""Load the rule set from `rules/*.yaml`, reporting every bad document with its location.

Rules are data an operator edits under pressure; a broken rule must stop the guard at start
(exit 2) with the file, line and field, never silently drop out of the rule set.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from guard.config.loader import validation_problems
from guard.config.yamlfile import Problem, load_documents
from guard.core.rules import GuardRule


def load_rules(directory: Path) -> tuple[dict[str, GuardRule], list[Problem]]:
    """Every rule in `directory/*.yaml` (and .yml) by name, and every problem found."""
    if not directory.is_dir():
        return {}, [Problem(str(directory), "", "rules directory does not exist")]
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        return {}, [Problem(str(directory), "", "no rule files (*.yaml) in the rules directory")]
    rules: dict[str, GuardRule] = {}
    where: dict[str, str] = {}
    problems: list[Problem] = []
    for path in files:
        docs, file_problems = load_documents(path)
        problems.extend(file_problems)
        for doc in docs:
            if not isinstance(doc.data, dict):
                problems.append(doc.problem([], "a rule document must be a YAML mapping"))
                continue
            try:
                rule = GuardRule.model_validate(doc.data)
            except ValidationError as err:
                problems.extend(validation_problems(err, doc, GuardRule))
                continue
            if rule.name in rules:
                problems.append(
                    doc.problem(
                        ["metadata", "name"],
                        f"rule {rule.name!r} is already defined in {where[rule.name]}",
                    )
                )
                continue
            rules[rule.name] = rule
            where[rule.name] = str(path)
    return rules, problems
