"""The human acts the guard carries out on a person's behalf, audited.

Why apart from the responder: the responder acts on its own judgement; these act on a named
human's request (through the API, authenticated there). Lifting a freeze is always a human
act, and it is also the moment to offer what only a human may decide: undoing the guard's
traffic pin ("to latest"). A pin a human has changed since is never touched (operator lock),
and in dry run nothing is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guard.core.model import ActionKind, ActionStatus, Incident
from guard.service.state import UnknownAppError

if TYPE_CHECKING:
    from guard.service.runtime import Runtime


class Control:
    """Lift a freeze, return traffic to latest."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def _check(self, app: str) -> None:
        if app not in self.rt.config.apps:
            raise UnknownAppError(app)

    async def lift_freeze(self, app: str, by: str, reason: str) -> Mapping[str, Any]:
        self._check(app)
        rt = self.rt
        lifted = await asyncio.to_thread(rt.store.lift_freeze, app, by, at=rt.now())
        await asyncio.to_thread(
            rt.store.audit, by, "lift_freeze_reason", app, {"reason": reason, "lifted": lifted},
            at=rt.now(),
        )  # fmt: skip
        result: dict[str, Any] = {"app": app, "lifted": lifted, "by": by}
        pipeline = rt.responses[app].pipeline
        if lifted and pipeline and not rt.responses[app].dry_run:
            resumed = await rt.pipelines.resume(pipeline)
            result["pipeline"] = {"resumed": resumed.ok, "code": resumed.code}
        pins = await self._pins(app)
        result["pins"] = pins
        if any(p["in_place"] for p in pins):
            result["offer"] = (
                f"traffic is still pinned by the guard; to return it to the latest revision: "
                f"POST /v1/apps/{app}/to-latest (or: guard unfreeze {app} --to-latest)"
            )
        return result

    async def to_latest(self, app: str, by: str) -> Mapping[str, Any]:
        self._check(app)
        rt = self.rt
        dry = rt.responses[app].dry_run
        moved: list[dict[str, Any]] = []
        for pin in await self._pins(app):
            entry = dict(pin)
            if not pin["in_place"]:
                entry["result"] = "left alone: traffic changed since the guard pinned it"
            else:
                service = rt.responses[app].services[pin["service"]]
                done = await rt.writer.to_latest(service, dry_run=dry)
                entry["result"] = "would move to latest (dry run)" if dry else (
                    "moved to latest" if done.ok else f"failed: {done.code} {done.message}"
                )  # fmt: skip
                entry["ok"] = done.ok
            moved.append(entry)
        await asyncio.to_thread(
            rt.store.audit, by, "to_latest", app, {"services": moved, "dry_run": dry},
            at=rt.now(),
        )  # fmt: skip
        return {"app": app, "by": by, "dry_run": dry, "services": moved}

    async def _pins(self, app: str) -> list[dict[str, Any]]:
        """The guard's successful reverts of this app, newest per service, and whether
        the service's traffic is still exactly as the guard left it."""
        rt = self.rt
        seen: set[str] = set()
        pins: list[dict[str, Any]] = []
        incidents: list[Incident] = await asyncio.to_thread(rt.store.incidents, app, limit=50)
        for incident in incidents:
            if incident.service in seen or incident.reverted_to is None:
                continue
            actions = await asyncio.to_thread(rt.store.actions, incident.id)
            revert = next(
                (a for a in actions
                 if a.kind is ActionKind.REVERT and a.status is ActionStatus.SUCCEEDED),
                None,
            )  # fmt: skip
            if revert is None:
                continue
            seen.add(incident.service)
            service = rt.responses[app].services.get(incident.service)
            if service is None:
                continue
            split = await rt.writer.current_split(service)
            pins.append({
                "service": incident.service, "incident": incident.id,
                "pinned_to": incident.reverted_to, "traffic": split,
                "in_place": split == {incident.reverted_to: 100},
            })  # fmt: skip
        return pins
