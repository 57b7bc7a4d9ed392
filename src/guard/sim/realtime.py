"""Play a scenario at the pace of the wall clock, for the demo and real-time tests.

On a `RealClock` nobody advances time; this driver steps the engine on a background thread
whenever a whole tick of wall time has passed, so a person (or a test's live tail) sees
requests and log lines arrive as they would from Cloud Run.
"""

from __future__ import annotations

import threading

from guard.sim.scenario import ScenarioEngine


class RealtimeDriver:
    """Steps an engine on a real clock as wall time passes, on a background thread."""

    def __init__(self, engine: ScenarioEngine, *, poll: float = 0.05) -> None:
        self.engine = engine
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scenario", daemon=True)

    def start(self) -> RealtimeDriver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        engine, tick = self.engine, self.engine.scenario.tick
        while not self._stop.is_set() and engine.t < engine.scenario.duration:
            while engine.t + tick <= engine.clock.elapsed() and engine.t < engine.scenario.duration:
                engine.step()
            self._stop.wait(self._poll)
