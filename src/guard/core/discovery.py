"""Deploy discovery: turn successive reads of a Cloud Run service into deploys.

The guard acts only on deploys, and a revert is only as good as the revision it reverts
to, so this module decides two things from plain `ServiceState` reads, without I/O:
*when* a deploy happened (a new revision starts to receive traffic, or the new latest-created
revision fails to become Ready: a container that dies on a migration at startup never serves
a 5xx) and *what served before it* (the last-known-good, best first). It also notices a
human moving traffic after a deploy, so the responder can respect the operator lock.

Rules (docs/log-source.md, "Deploy discovery", says why):
- The first read of a service is a baseline, not a deploy, except its latest-created
  revision when it was created within `recent` and is still starting (tracked as new) or
  has failed (a FAILED_START deploy), or when it already shares traffic with older
  revisions (a canary in flight: a TRAFFIC deploy whose last-known-good are the others).
- A revision created after every revision seen so far is new; its last-known-good are the
  Ready revisions that served at the previous read, except that an unsettled deploy among
  them gives way to its own last-known-good (an unjudged revision is not known to be good).
- A deploy settles when `confirm()` says so or `settle_after` after it was detected.
- A newer deploy supersedes the older one (`active()` is the newest); older candidates that
  never served are dropped when a newer revision is created.
- Traffic that moves after a deploy, not to a split the guard announced with
  `expect_traffic()` and not toward the new revision (a rollout progressing, until the
  guard has acted), is a change by others (sticky per deploy).
- An empty traffic read (mid-reconcile) keeps the previous split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from guard.core.model import Deploy, DeployKind, Readiness, ServiceRef
from guard.core.signals import ServiceState


@dataclass(frozen=True, slots=True)
class TrafficChange:
    """Traffic a human (or another tool) moved after a deploy, seen at `at`."""

    service: ServiceRef
    deploy_revision: str
    at: datetime
    before: Mapping[str, int]
    after: Mapping[str, int]


@dataclass
class _Track:
    """What the tracker remembers about one service."""

    split: dict[str, int] = field(default_factory=dict)
    readiness: dict[str, Readiness] = field(default_factory=dict)
    created: dict[str, datetime] = field(default_factory=dict)
    candidates: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> lkg
    emitted: set[tuple[str, DeployKind]] = field(default_factory=set)
    active: Deploy | None = None
    detected_at: datetime | None = None
    settled: bool = True
    horizon: datetime | None = None  # the newest creation time seen
    expected: dict[str, int] | None = None
    guard_acted: bool = False  # the guard changed this deploy's traffic itself
    changed_by_others: TrafficChange | None = None


class DeployTracker:
    """Finds deploys in successive `ServiceState` reads of each watched service."""

    def __init__(
        self,
        *,
        recent: timedelta = timedelta(minutes=10),
        settle_after: timedelta = timedelta(minutes=30),
    ) -> None:
        self.recent = recent
        self.settle_after = settle_after
        self._tracks: dict[ServiceRef, _Track] = {}

    # -- feeding ----------------------------------------------------------------------------

    def observe(self, state: ServiceState) -> list[Deploy]:
        """Digest one read of a service; the deploys it reveals (usually none)."""
        track = self._tracks.get(state.service)
        if track is None:
            track = self._tracks[state.service] = _Track()
            return self._baseline(track, state)
        split = _nonzero(state.traffic) or dict(track.split)
        lkg_now = self._lkg(track, track.split)
        for name, rev in state.revisions.items():
            if name in track.created:
                continue
            track.created[name] = rev.created_at
            if track.horizon is None or rev.created_at > track.horizon:
                track.candidates[name] = lkg_now  # newer than anything seen: a new revision
        self._remember(track, state)
        for name in list(track.candidates):  # superseded candidates that never served go
            if name != state.latest_created and not split.get(name):
                del track.candidates[name]
        self._watch_traffic(track, state, split)
        deploys = self._emit(track, state, split)
        track.split = split
        if track.active is not None and not track.settled and track.detected_at is not None:
            track.settled = state.read_at - track.detected_at >= self.settle_after
        return deploys

    def expect_traffic(self, service: ServiceRef, split: Mapping[str, int] | None) -> None:
        """The guard is about to set `split` itself (None forgets a failed attempt)."""
        track = self._tracks.get(service)
        if track is not None:  # before the first read there is no deploy to protect
            track.expected = None if split is None else _nonzero(split)

    def resume(self, deploy: Deploy, *, at: datetime) -> None:
        """Re-adopt a deploy the guard was responding to before a restart (from the store).

        Call after the service's first read: a restarted guard's baseline read cannot tell a
        fully rolled-out bad revision from a good one, yet its open incident must still
        revert to the deploy's last-known-good. A newer deploy seen since wins.
        """
        track = self._tracks.get(deploy.service)
        if track is None:
            return
        active = track.active
        if active is not None and (
            active.revision == deploy.revision or active.started_at > deploy.started_at
        ):
            return
        track.candidates.pop(deploy.revision, None)
        track.emitted.add((deploy.revision, deploy.kind))
        track.active, track.detected_at, track.settled = deploy, at, False
        track.expected, track.changed_by_others, track.guard_acted = None, None, False

    def confirm(self, service: ServiceRef, revision: str) -> None:
        """The active deploy of `revision` was judged good: it may be a last-known-good."""
        track = self._tracks.get(service)
        if track is not None and track.active is not None and track.active.revision == revision:
            track.settled = True

    def forget(self, service: ServiceRef) -> None:
        """Stop tracking a service (it left the configuration)."""
        self._tracks.pop(service, None)

    # -- what the service asks --------------------------------------------------------------

    def active(self, service: ServiceRef) -> Deploy | None:
        """The newest deploy of `service` (it supersedes any older one)."""
        track = self._tracks.get(service)
        return None if track is None else track.active

    def new_revisions(self, service: ServiceRef) -> frozenset[str]:
        """Revisions under watch as new: the unsettled deploy's and those still starting."""
        track = self._tracks.get(service)
        if track is None:
            return frozenset()
        names = set(track.candidates)
        if track.active is not None and not track.settled:
            names.add(track.active.revision)
        return frozenset(names)

    def revert_targets(self, service: ServiceRef) -> tuple[str, ...]:
        """The active deploy's last-known-good not known to be un-Ready, best first.

        A revision this tracker never read (a deploy re-adopted after a restart, whose
        last-known-good no longer serves) counts: the writer reads it again and refuses
        to route to it unless it is Ready.
        """
        track = self._tracks.get(service)
        if track is None or track.active is None:
            return ()
        ready = track.readiness
        return tuple(
            r
            for r in track.active.last_known_good
            if ready.get(r, Readiness.READY) == Readiness.READY
        )

    def traffic_changed_by_others(self, service: ServiceRef) -> TrafficChange | None:
        """Set once traffic moved after the active deploy without the guard doing it."""
        track = self._tracks.get(service)
        return None if track is None else track.changed_by_others

    # -- internals --------------------------------------------------------------------------

    def _baseline(self, track: _Track, state: ServiceState) -> list[Deploy]:
        self._remember(track, state)
        split = _nonzero(state.traffic)
        track.split = split
        latest = state.revisions.get(state.latest_created)
        if latest is None or state.read_at - latest.created_at > self.recent:
            return []
        others = {k: v for k, v in split.items() if k != latest.name}
        if split.get(latest.name) and not others:
            return []  # serving alone: what served before is unknown, so not a deploy
        track.candidates[latest.name] = self._lkg(track, others)
        track.split = others  # a canary share already in flight counts as its start
        deploys = self._emit(track, state, split)
        track.split = split
        return deploys

    @staticmethod
    def _remember(track: _Track, state: ServiceState) -> None:
        for name, rev in state.revisions.items():
            track.readiness[name] = rev.readiness
            track.created.setdefault(name, rev.created_at)
            if track.horizon is None or rev.created_at > track.horizon:
                track.horizon = rev.created_at

    def _lkg(self, track: _Track, split: Mapping[str, int]) -> tuple[str, ...]:
        """Ready revisions of `split`, biggest share then newest first; an unsettled
        deploy's revision is replaced by that deploy's own last-known-good."""
        active = track.active
        unsettled = active.revision if active is not None and not track.settled else None
        created = {r: track.created[r].timestamp() for r in split if r in track.created}
        ordered = sorted(
            (r for r, pct in split.items() if pct and r != unsettled),
            key=lambda r: (split[r], created.get(r, 0.0)),
            reverse=True,
        )
        good = [r for r in ordered if track.readiness.get(r, Readiness.READY) == Readiness.READY]
        if unsettled is not None and active is not None and split.get(unsettled):
            good += [r for r in active.last_known_good if r not in good]
        return tuple(good)

    def _emit(self, track: _Track, state: ServiceState, split: Mapping[str, int]) -> list[Deploy]:
        out: list[Deploy] = []
        for name, lkg in sorted(track.candidates.items(), key=lambda kv: track.created[kv[0]]):
            share = split.get(name, 0)
            readiness = track.readiness.get(name, Readiness.PENDING)
            if share and not track.split.get(name):
                kind = DeployKind.TRAFFIC
            elif readiness == Readiness.FAILED and name == state.latest_created:
                kind = DeployKind.FAILED_START
            else:
                continue
            del track.candidates[name]
            if (name, kind) in track.emitted:
                continue
            track.emitted.add((name, kind))
            deploy = Deploy(
                service=state.service,
                revision=name,
                kind=kind,
                started_at=track.created[name],
                last_known_good=tuple(r for r in lkg if r != name),
                traffic_percent=share if kind == DeployKind.TRAFFIC else 0,
            )
            track.active, track.detected_at, track.settled = deploy, state.read_at, False
            track.expected, track.changed_by_others, track.guard_acted = None, None, False
            out.append(deploy)
        return out

    def _watch_traffic(self, track: _Track, state: ServiceState, split: Mapping[str, int]) -> None:
        now = _nonzero(split)
        if track.active is None or now == track.split:
            return
        if track.expected is not None and now == track.expected:
            track.expected, track.guard_acted = None, True  # the guard's own change landed
            return
        new = track.active.revision
        rollout = now.get(new, 0) > track.split.get(new, 0) or new in track.candidates
        if rollout and not track.guard_acted:
            return  # the rollout progressing toward the new revision
        if track.changed_by_others is None:
            track.changed_by_others = TrafficChange(
                state.service, new, state.read_at, dict(track.split), now
            )


def _nonzero(split: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in split.items() if v}
