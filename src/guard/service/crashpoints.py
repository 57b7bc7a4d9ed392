"""Named points where a test may kill the guard process, to prove exactly-once for real.

Why in the product: the only honest test of "a guard SIGKILLed between any two writes
resumes without repeating anything" kills a real `guard run` at exact points of the intent
log, not wherever a polling test happens to land. With `GUARD_CRASH_AT` unset (always, in
production) `reached` is a dictionary lookup and nothing else. Points are
`<step>:intended` (intent written, nothing done), `<step>:executed` (done, outcome not
recorded) and `<step>:finished` (outcome recorded, incident not yet moved on).
"""

from __future__ import annotations

import os
import signal

ENV = "GUARD_CRASH_AT"


def reached(point: str) -> None:
    """SIGKILL this process if the environment names `point`."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
