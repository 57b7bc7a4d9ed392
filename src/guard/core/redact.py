"""Scrub secrets from any text before it leaves the guard (pages, API evidence, logs).

Why: the guard quotes the app's own log lines in pages, and apps log connection strings,
tokens and passwords more often than anyone admits. A page goes to third parties (Slack,
PagerDuty), so every text is redacted on the way out, by pattern (credentials in URLs,
`password=`-style pairs, bearer tokens, private keys, Google API keys) and by value (the
secrets the guard itself holds, e.g. notifier keys).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?P<pre>Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\g<pre>" + MASK),
    # scheme://user:password@host  ->  scheme://user:[REDACTED]@host
    (
        re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)"),
        r"\g<pre>" + MASK,
    ),
    # key=value and key: value pairs of secret-looking keys (DSNs, env dumps, JSON)
    (
        re.compile(
            r"(?P<pre>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
            r"client[_-]?secret|private[_-]?key|authorization|sslpassword)"
            r"[\"']?\s*[:=]\s*[\"']?)(?P<val>[^\s\"',;&}]+)",
            re.IGNORECASE,
        ),
        r"\g<pre>" + MASK,
    ),
    (re.compile(r"\bGenieKey\s+[A-Za-z0-9-]{8,}"), "GenieKey " + MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),  # Google API keys
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),  # Slack tokens
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        MASK,
    ),
)


class Redactor:
    """Redacts by pattern, and every literal in `secrets` (values of 6+ characters)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literals = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._literal = re.compile("|".join(re.escape(s) for s in literals)) if literals else None

    def __call__(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(MASK, text)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text
