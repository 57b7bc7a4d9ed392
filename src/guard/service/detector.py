"""The detector: discovery, logs and 5xx statistics in, one verdict per rule and deploy out.

It owns the guard's judgement loop without owning time: the service (or a simulation, or a
test) calls `poll` every few seconds to read Cloud Run, feeds every log record to `on_log`,
calls `check_error_rates` once per Monitoring cycle, and `evaluate` to judge. Each rule of an
app judges each watched deploy of its services; the first FAILED verdict of a rule for a
deploy is handed to `on_verdict` once (the responder opens the incident), and all latest
verdicts stay readable for the API and metrics.

Log rules count entries themselves (`failureLimit` entries); checks of the other providers
are counted here (`failureLimit` failed checks, cumulative as in Flagger), and a monitoring
outage is a PROVIDER_ERROR check, never a failed one.

Early 5xx signal. Monitoring's points arrive minutes late; the log source tails the 5xx
request-log entries within seconds. While an API deploy's new revision shares traffic (a
canary, a partial split), `on_log` keeps its service's 5xx entries and `poll` folds them,
per watched deploy and from the deploy on, into counts per traffic share of the new revision
(the larger of the shares read just before and just after each entry: never an
underestimate). `guard.core.requestlog` judges them with its own always-valid test, and when
it FAILS an errorRate rule fails at once, whatever its `initialDelay`: that delay exists for
Monitoring's lag, and the log signal has none (the rule is judged as if its initialDelay were
0, on this evidence only). It counts as one failed check, like a failed Monitoring check.
Whichever signal fails first fires, once per rule and deploy. Memory is bounded: a deque of
unfolded entries and of recent traffic splits per service, and a few counters per watch.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from guard.adapters.cloudrun import CloudRunReader, ReadError
from guard.adapters.monitoring import MonitoringReader, RequestCountsResult
from guard.core.classify import classify
from guard.core.classify_ledger import MigrationLedger
from guard.core.discovery import DeployTracker
from guard.core.errorrate import ErrorRateJudgement, judge_error_rate
from guard.core.judge import Hit, judge
from guard.core.model import Deploy, Outcome, Reason, Revision, Role, ServiceRef, Verdict
from guard.core.requestlog import ShareCount, judge_request_log_5xx
from guard.core.rules import ErrorRateProvider, GuardRule, LogsProvider
from guard.core.signals import LogRecord, ServiceState

#: Classified hits kept per service: far more than any rule's failureLimit needs.
MAX_HITS_PER_SERVICE = 2000
#: Stop watching a deploy this long after it started, unless a rule is still undecided.
WATCH_HORIZON = timedelta(minutes=30)
#: The log id of Cloud Run's request logs (the log source tails only their 5xx entries).
REQUEST_LOG = "run.googleapis.com/requests"
#: 5xx request-log entries per service waiting to be folded into a watch's counts.
MAX_PENDING_5XX = 20_000
#: Unfolded entries are kept this long without a watch: a deploy is found up to the
#: tracker's `recent` (10 min) after its revision was created, and counts from then.
PENDING_KEEP = timedelta(minutes=15)
#: Traffic splits remembered per service, one per read (at 10 s polls: over an hour).
MAX_SPLITS = 512

VerdictSink = Callable[[str, Verdict], None]


@dataclass(frozen=True, slots=True)
class WatchedApp:
    """What the detector needs of an app's configuration."""

    name: str
    services: tuple[ServiceRef, ...]
    rules: tuple[GuardRule, ...]
    dry_run: bool = False


@dataclass
class Watch:
    """One deploy under judgement."""

    app: WatchedApp
    deploy: Deploy
    revision: Revision | None = None
    failed_checks: Counter[str] = field(default_factory=Counter)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    error_rate: ErrorRateJudgement | None = None
    #: 5xx request-log entries since the deploy: new revision's share (%) -> [new, others].
    log_5xx: dict[int, list[int]] = field(default_factory=dict)
    #: The latest early judgement from those entries (`guard.core.requestlog`).
    request_log: ErrorRateJudgement | None = None


class Detector:
    """Judges every deploy of the watched apps by their rules."""

    def __init__(
        self,
        apps: Sequence[WatchedApp],
        *,
        reader: CloudRunReader,
        monitoring: MonitoringReader | None,
        on_verdict: VerdictSink,
        tracker: DeployTracker | None = None,
        alignment: int = 60,
    ) -> None:
        self.apps = {a.name: a for a in apps}
        self._app_of = {s: a for a in apps for s in a.services}
        self._by_name = {(s.project, s.name): s for s in self._app_of}
        self.reader = reader
        self.monitoring = monitoring
        self.on_verdict = on_verdict
        self.tracker = tracker or DeployTracker()
        self.alignment = alignment
        self.ledger = MigrationLedger()
        self.hits: dict[ServiceRef, deque[Hit]] = {
            s: deque(maxlen=MAX_HITS_PER_SERVICE) for s in self._app_of
        }
        self.watches: dict[ServiceRef, Watch] = {}
        self.read_errors: list[ReadError] = []
        self.monitoring_errors: dict[str, RequestCountsResult] = {}
        self.deploys_seen: list[Deploy] = []
        self._pending_5xx: dict[ServiceRef, deque[tuple[datetime, str]]] = {
            s: deque(maxlen=MAX_PENDING_5XX) for s in self._app_of
        }
        self._splits: dict[ServiceRef, deque[tuple[datetime, dict[str, int]]]] = {
            s: deque(maxlen=MAX_SPLITS) for s in self._app_of
        }

    # -- inputs ---------------------------------------------------------------------------------

    async def poll(self) -> list[Deploy]:
        """Read Cloud Run once; start watching the deploys it reveals."""
        results = await self.reader.read(list(self._app_of))
        self.read_errors = [r for r in results if isinstance(r, ReadError)]
        found: list[Deploy] = []
        for state in results:
            if isinstance(state, ReadError):
                continue
            for deploy in self.tracker.observe(state):
                found.append(deploy)
                self.watches[deploy.service] = Watch(self._app_of[deploy.service], deploy)
            watch = self.watches.get(state.service)
            if watch is not None:
                watch.revision = state.revisions.get(watch.deploy.revision, watch.revision)
            self._remember_split(state)
            self._fold_5xx(state.service, state.read_at)
        self.deploys_seen.extend(found)
        return found

    def on_log(self, record: LogRecord) -> None:
        """Classify one record; keep it as a hit of its service when it matters."""
        service = self._by_name.get((record.project, record.service))
        if service is None:
            return
        self.ledger.observe(record)
        if record.log_name == REQUEST_LOG and (record.http_status or 0) >= 500:
            self._pending_5xx[service].append((record.at, record.revision))
        classification = classify(record, self.ledger)
        if classification.match:
            self.hits[service].append(Hit(record, classification))

    async def check_error_rates(self, now: datetime) -> None:
        """One Monitoring read per project; judge every watched deploy's 5xx counts."""
        if self.monitoring is None:
            return
        by_project: dict[str, list[Watch]] = {}
        for watch in self.watches.values():
            if _error_rate_rules(watch) and watch.deploy.service.role is Role.API:
                by_project.setdefault(watch.deploy.service.project, []).append(watch)
        for project, watches in by_project.items():
            window = max(r.spec.window for w in watches for r in _error_rate_rules(w))
            start = min(w.deploy.started_at for w in watches) - timedelta(seconds=window)
            result = await self.monitoring.request_counts(
                project, start=start, end=now, alignment=self.alignment
            )
            if not result.ok:
                self.monitoring_errors[project] = result
            else:
                self.monitoring_errors.pop(project, None)
            for watch in watches:
                watch.error_rate = _judge_counts(watch, result, now)
                self._count_check(watch, now)

    # -- judgement ------------------------------------------------------------------------------

    def evaluate(self, now: datetime) -> list[Verdict]:
        """Judge every watched deploy by its app's rules; hand on first FAILED verdicts."""
        fired: list[Verdict] = []
        for service, watch in list(self.watches.items()):
            active = self.tracker.active(service)
            if active is None or active.revision != watch.deploy.revision:
                del self.watches[service]  # superseded by a newer deploy
                continue
            for rule in watch.app.rules:
                if _skip(rule, service):
                    continue
                verdict = self._judge(rule, watch, now)
                watch.verdicts[rule.name] = verdict
                if verdict.outcome is Outcome.FAILED and rule.name not in watch.fired:
                    watch.fired.add(rule.name)
                    fired.append(verdict)
                    self.on_verdict(watch.app.name, verdict)
            if now - watch.deploy.started_at > WATCH_HORIZON and not watch.fired:
                self.tracker.confirm(service, watch.deploy.revision)
                del self.watches[service]
        return fired

    def _judge(self, rule: GuardRule, watch: Watch, now: datetime) -> Verdict:
        deploy, dry = watch.deploy, watch.app.dry_run
        provider = rule.spec.provider
        if isinstance(provider, LogsProvider):
            hits = list(self.hits[deploy.service])
            return judge(rule, deploy, now, hits=hits, dry_run=dry)
        verdict = judge(
            rule, deploy, now, revision=watch.revision, error_rate=watch.error_rate, dry_run=dry
        )
        if isinstance(provider, ErrorRateProvider) and verdict.outcome is not Outcome.FAILED:
            early = self._judge_request_log(watch, provider)
            if early is not None and early.outcome is Outcome.FAILED:
                verdict = judge(_from_deploy(rule), deploy, now, error_rate=early, dry_run=dry)
        if verdict.outcome is Outcome.FAILED:
            watch.failed_checks[rule.name] = max(watch.failed_checks[rule.name], 1)
            if watch.failed_checks[rule.name] < rule.spec.failure_limit:
                limit = rule.spec.failure_limit
                count = watch.failed_checks[rule.name]
                note = Reason(f"{count} of {limit} failed checks so far", count, limit)
                return Verdict(
                    rule.name, deploy, Outcome.INCONCLUSIVE, now, (*verdict.reasons, note),
                    verdict.evidence, dry_run=dry,
                )  # fmt: skip
        return verdict

    def _judge_request_log(
        self, watch: Watch, provider: ErrorRateProvider
    ) -> ErrorRateJudgement | None:
        """The early judgement from 5xx request-log entries (None: not an API service)."""
        if watch.deploy.service.role is not Role.API:
            return None
        counts = [ShareCount(pct / 100, n, o) for pct, (n, o) in watch.log_5xx.items()]
        watch.request_log = judge_request_log_5xx(counts, provider=provider)
        return watch.request_log

    def _remember_split(self, state: ServiceState) -> None:
        """Keep the read's traffic split (an empty one, mid-reconcile, repeats the last)."""
        history = self._splits.get(state.service)
        if history is None:
            return
        split = {k: v for k, v in state.traffic.items() if v}
        if not split and history:
            split = history[-1][1]
        history.append((state.read_at, split))

    def _fold_5xx(self, service: ServiceRef, upto: datetime) -> None:
        """Count the 5xx entries written up to the read at `upto` into the service's watch.

        An entry written between two reads gets the larger of the new revision's shares at
        those reads (an entry older than every remembered read: 100%, no information).
        """
        pending = self._pending_5xx.get(service)
        if not pending:
            return
        watch = self.watches.get(service)
        keep_after = upto - PENDING_KEEP if watch is None else upto
        history = list(self._splits[service])
        times = [t for t, _ in history]
        left: deque[tuple[datetime, str]] = deque(maxlen=MAX_PENDING_5XX)
        for at, revision in pending:
            if at > upto:
                left.append((at, revision))
            elif watch is None:
                if at > keep_after:
                    left.append((at, revision))
            elif at >= watch.deploy.started_at:
                pct = _share_at(history, times, at, watch.deploy.revision)
                cell = watch.log_5xx.setdefault(pct, [0, 0])
                cell[0 if revision == watch.deploy.revision else 1] += 1
        self._pending_5xx[service] = left

    def _count_check(self, watch: Watch, now: datetime) -> None:
        if watch.error_rate is None or watch.error_rate.outcome is not Outcome.FAILED:
            return
        for rule in _error_rate_rules(watch):
            if now >= watch.deploy.started_at + timedelta(seconds=rule.spec.initial_delay):
                watch.failed_checks[rule.name] += 1


def _error_rate_rules(watch: Watch) -> list[GuardRule]:
    return [r for r in watch.app.rules if isinstance(r.spec.provider, ErrorRateProvider)]


def _from_deploy(rule: GuardRule) -> GuardRule:
    """`rule` judged from the deploy on: the early 5xx signal has no Monitoring lag to wait
    for, so the copy that judges it has no initialDelay (all else unchanged)."""
    return rule.model_copy(update={"spec": rule.spec.model_copy(update={"initial_delay": 0})})


def _share_at(
    history: Sequence[tuple[datetime, Mapping[str, int]]],
    times: Sequence[datetime],
    at: datetime,
    revision: str,
) -> int:
    """The new revision's traffic percent around `at`: the larger of the reads before and
    after it (100 before the first remembered read: unknown, so no information)."""
    before = bisect_right(times, at) - 1
    if before < 0:
        return 100
    after = bisect_left(times, at)
    pct = history[before][1].get(revision, 0)
    if after < len(history):
        pct = max(pct, history[after][1].get(revision, 0))
    return pct


def _skip(rule: GuardRule, service: ServiceRef) -> bool:
    """Workers serve no HTTP traffic: 5xx rules do not apply to them."""
    return isinstance(rule.spec.provider, ErrorRateProvider) and service.role is Role.WORKER


def _judge_counts(watch: Watch, result: RequestCountsResult, now: datetime) -> ErrorRateJudgement:
    deploy = watch.deploy
    if not result.ok:
        reason = Reason(f"Cloud Monitoring read failed: {result.error} {result.message}".strip())
        return ErrorRateJudgement(Outcome.PROVIDER_ERROR, (reason,))
    rule = _error_rate_rules(watch)[0]
    provider = rule.spec.provider
    assert isinstance(provider, ErrorRateProvider)
    name = deploy.service.name
    new = result.revision(name, deploy.revision)
    baseline = [c for r in deploy.last_known_good for c in result.revision(name, r)]
    floor = rule.spec.threshold_range.max if rule.spec.threshold_range else None
    return judge_error_rate(
        new,
        baseline if deploy.last_known_good else None,
        provider=provider,
        floor=floor,
        now=now,
        deploy_started=deploy.started_at,
    )


def services_of(apps: Mapping[str, WatchedApp]) -> list[ServiceRef]:
    """Every watched service, for the log source's filter."""
    return [s for app in apps.values() for s in app.services]
