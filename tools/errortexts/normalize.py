"""Make captured texts reproducible: the volatile parts become fixed, container-like values.

What varies between runs of the same generator on the same machine: scratch directories and
database names, the virtualenv's location, PIDs, transaction ids, ports, timestamps, object
addresses. Each is replaced by the value a Cloud Run container would plausibly print
(`/app`, `/usr/local/lib/python3.11/site-packages`, `0.0.0.0:8080`, ...). Library line
numbers stay: the versions are pinned, and the fixture records them.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

CONTAINER_SITE = "/usr/local/lib/python3.11/site-packages"
CONTAINER_STDLIB = "/usr/local/lib/python3.11"
CONTAINER_BIN = "/usr/local/bin"
CLOUDSQL_DIR = "/cloudsql/delta-student-486911-n5:europe-west1:pegasus-db-eu"
TIMESTAMP = "2025-06-03 09:14:07,512"


class Normalizer:
    """Literal replacements (registered as the run creates things), then fixed patterns."""

    def __init__(self) -> None:
        self._literals: dict[str, str] = {}
        venv = Path(sys.prefix)
        self.add(sysconfig.get_paths()["purelib"], CONTAINER_SITE)
        self.add(str(venv / "bin"), CONTAINER_BIN)
        self.add(sysconfig.get_paths()["stdlib"], CONTAINER_STDLIB)

    def add(self, literal: str, replacement: str) -> None:
        if literal and literal != replacement:
            self._literals[literal] = replacement

    def __call__(self, text: str) -> str:
        for literal in sorted(self._literals, key=len, reverse=True):
            text = text.replace(literal, self._literals[literal])
        text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", TIMESTAMP, text)
        text = re.sub(r"\b0x[0-9a-fA-F]{8,}\b", "0x7f3a5c2e1d90", text)
        text = re.sub(r"relation \d+ of database \d+", "relation 16412 of database 16384", text)
        text = re.sub(r"tuple \(\d+,\d+\)", "tuple (0,1)", text)
        text = re.sub(r"(server process) \[\d+\]", r"\1 [1]", text)
        text = re.sub(r"\b127\.0\.0\.1:\d+ - ", "169.254.1.1:0 - ", text)
        text = _renumber(text, r"(?<=[Pp]rocess )\d+", 4101)
        return _renumber(text, r"(?<=transaction )\d+", 7701)

    def check_clean(self, text: str) -> None:
        """Nothing of this machine may survive into the fixture."""
        leaks = [lit for lit in self._literals if lit in text]
        if leaks or "guard_et_" in text:
            raise ValueError(f"unnormalised text ({leaks}): {text[:300]!r}")


def _renumber(text: str, pattern: str, start: int) -> str:
    mapping: dict[str, str] = {}

    def sub(match: re.Match[str]) -> str:
        value = match.group(0)
        if value not in mapping:
            mapping[value] = str(start + len(mapping))
        return mapping[value]

    return re.sub(pattern, sub, text)
