"""The restore proposal an escalated incident hands to humans: Option A and Option B, filled in.

When reverting traffic cannot help (the old code fails on the new schema), the runbook's
Option A is a Cloud SQL point-in-time clone from before the deploy, then repointing the
app's connection-string secret; Option B is a corrective forward migration. Working these out
is arithmetic and naming, so it lives here without I/O: the point in time (the deploy's start
minus a margin, checked against the instance's recoverable window), the clone's name, the
runbook's gcloud commands with every value filled in, and Option B's next migration file.
Executing Option A is gated behind human approval elsewhere; this only proposes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_VERSIONED = re.compile(r"^(?P<dir>.*?)(?P<num>\d+)_(?P<rest>[^/]+?)\.sql$")
#: Cloud SQL instance ids: at most 98 characters, lowercase letters, digits and hyphens.
_MAX_INSTANCE_NAME = 98


@dataclass(frozen=True, slots=True)
class RestoreProposal:
    """What humans are asked to approve, and what they need to decide."""

    project: str
    instance: str
    secret: str
    point_in_time: datetime
    clone_name: str
    window: tuple[datetime, datetime] | None  # (earliest, latest) recoverable, when known
    in_window: bool
    problems: tuple[str, ...]  # why the plan cannot run as proposed (empty: it can)
    gcloud: tuple[str, ...]  # the runbook's commands, filled in
    option_b_file: str | None  # the corrective forward migration to write instead
    option_b_note: str


def propose_restore(
    *,
    project: str,
    instance: str,
    secret: str,
    deploy_started: datetime,
    margin: timedelta,
    window: tuple[datetime, datetime] | None,
    migration_file: str | None,
) -> RestoreProposal:
    """Option A (PITR clone) and Option B (forward fix) for a deploy started at `deploy_started`."""
    point = (deploy_started - margin).replace(microsecond=0)
    clone = clone_name(instance, point)
    problems: list[str] = []
    in_window = True
    if window is None:
        problems.append("the recoverable window is unknown (getLatestRecoveryTime failed)")
        in_window = False
    else:
        earliest, latest = window
        if not earliest <= point <= latest:
            in_window = False
            problems.append(
                f"point in time {rfc3339(point)} is outside the recoverable window "
                f"{rfc3339(earliest)} .. {rfc3339(latest)}"
            )
    fix = next_migration_file(migration_file) if migration_file else None
    note = (
        f"write {fix}: make every statement idempotent (IF EXISTS / IF NOT EXISTS), "
        "validate it against a staging clone, then deploy"
        if fix
        else "no failing migration file is known: name the fix after the newest migration"
    )
    return RestoreProposal(
        project=project,
        instance=instance,
        secret=secret,
        point_in_time=point,
        clone_name=clone,
        window=window,
        in_window=in_window,
        problems=tuple(problems),
        gcloud=gcloud_commands(project, instance, clone, secret, point),
        option_b_file=fix,
        option_b_note=note,
    )


def clone_name(instance: str, point: datetime) -> str:
    """`<instance>-rollback-<YYYYmmdd-HHMM>`, shortened to Cloud SQL's 98 characters."""
    suffix = f"-rollback-{point:%Y%m%d-%H%M}"
    return instance[: _MAX_INSTANCE_NAME - len(suffix)] + suffix


def next_migration_file(failing: str) -> str | None:
    """The corrective migration after `failing`: same folder, version + 1, `fix_` name.

    `backend/migrations/002_rename_course_title.sql` → `.../003_fix_rename_course_title.sql`
    (the width of the version is kept, so it still sorts after the one it fixes).
    """
    match = _VERSIONED.match(failing)
    if match is None:
        return None
    number = match["num"]
    following = str(int(number) + 1).zfill(len(number))
    return f"{match['dir']}{following}_fix_{match['rest']}.sql"


def gcloud_commands(
    project: str, instance: str, clone: str, secret: str, point: datetime
) -> tuple[str, ...]:
    """The runbook's Option A commands with the values filled in."""
    return (
        f"gcloud sql instances clone {instance} {clone} "
        f'--point-in-time="{rfc3339(point)}" --project={project}',
        f"gcloud sql instances describe {clone} --project={project} "
        '--format="value(ipAddresses[0].ipAddress)"',
        f'echo -n "$NEW_CONNECTION_STRING" | gcloud secrets versions add {secret} '
        f"--data-file=- --project={project}",
    )


def rfc3339(t: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as gcloud and the Cloud SQL API spell times."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
