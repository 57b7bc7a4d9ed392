"""Files shipped with the guard: the default rule set (the runbook's trigger conditions)."""

from pathlib import Path

RULES_DIR = Path(__file__).parent / "rules"
