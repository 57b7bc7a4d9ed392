"""The demo's terminal timeline: one line per event, stamped with the wall time.

Why apart: how a line looks (the elapsed-time stamp, the fixed-width stage label, the
indented detail lines, colour only on a terminal) is one concern; what the lines say is
`guard.play.story`'s, and when the demo runs is `guard.play.demo`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

_LABEL = 9
_COLOURS = {
    "ERROR": "31",
    "VERDICT": "1;31",
    "FAILED": "1;31",
    "FREEZE": "33",
    "REVERT": "33",
    "ESCALATE": "1;33",
    "PAGE": "36",
    "PLAN": "35",
    "APPROVE": "1;35",
    "DONE": "1;32",
    "…": "2",
    "WRITE": "2",
}


class Timeline:
    """Prints one line per event, prefixed `[mm:ss.s]` (wall time since the demo began)."""

    def __init__(self, out: TextIO, started: float, *, colour: bool = False) -> None:
        self.out, self.started, self.colour = out, started, colour
        self.last = time.monotonic()
        encoding = (getattr(out, "encoding", None) or "utf-8").lower()
        self._encoding = None if encoding.replace("-", "").startswith("utf") else encoding

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def clock(self) -> str:
        minutes, seconds = divmod(self.elapsed(), 60)
        return f"{int(minutes):02d}:{seconds:04.1f}"

    def line(self, label: str, text: str, more: Sequence[str] = ()) -> None:
        """One event: its label, its text, and indented continuation lines."""
        stamp = f"[{self.clock()}]"
        shown = label.ljust(_LABEL)
        if self.colour and label in _COLOURS:
            shown = f"\x1b[{_COLOURS[label]}m{label}\x1b[0m" + " " * (_LABEL - len(label))
        indent = " " * (len(stamp) + 1 + _LABEL + 1)
        self._write(f"{stamp} {shown} {text}")
        for extra in more:
            self._write(f"{indent}{extra}")
        self.last = time.monotonic()

    def say(self, text: str) -> None:
        """A line outside the timeline (the introduction and the ending)."""
        self._write(text)

    def quiet_for(self) -> float:
        return time.monotonic() - self.last

    def _write(self, text: str) -> None:
        if self._encoding is not None:  # a terminal that cannot show "…", "→" or "—"
            text = text.encode(self._encoding, errors="replace").decode(self._encoding)
        self.out.write(text.rstrip() + "\n")
        self.out.flush()
