"""Cloud Run Admin v2: roll a service onto new instances of the code that serves it.

A database restore ends by repointing the app's connection-string secret, but Cloud Run
resolves secrets when an instance starts: the running instances keep talking to the old
database until they are replaced, which takes a new revision. The roll makes one.

It must not roll "the service's current template". After a revert (a traffic-only update)
the service's `template` is still the *bad* deploy's, so a new revision from it would re-run
the bad code and its migration on the freshly restored database. The roll therefore
re-creates the code that serves, the base revision, under a new name: it starts from a copy of
the service's template (what the service accepted: labels, annotations, template-only
settings), then copies from the base Revision every field that Revision and RevisionTemplate
share by name (containers, volumes, scaling, VPC access, timeout, service account,
execution environment, encryption, concurrency, session affinity, node selector, ...),
found from the proto descriptors so that a field added in a library upgrade follows, minus an
explicit exclusion set (labels, annotations, and names that are output-only on a Revision).
Secret references are copied as they are: `latest` picks the new secret version up, a
version pinned by number stays pinned.

Traffic: a service that follows LATEST keeps doing so (`update_mask = template`); a pinned
one (after a revert) is pinned to the new revision in the same write. As with the revert, the
etag read before the write is sent with it, a plan made against a traffic split that a human
has since changed is refused (the operator lock), a base that is missing or not Ready is
refused before any write, transient errors are retried only after checking whether the
failed call landed (the new revision exists), and success is judged by re-reading
`traffic_statuses`. A roll whose new revision already serves is done (a resumed roll).
Failures come back as a `RollResult`, never as exceptions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from google.api_core import exceptions
from google.cloud import run_v2

from guard.adapters.cloudrun import code_of
from guard.adapters.cloudrun_write import (
    REVISION,
    CloudRunWriter,
    only_to,
    refusal,
    spec_holds,
    split_of,
)
from guard.core.model import ServiceRef

#: Shared names never copied from the base revision: the service template's own metadata,
#: the revision's name, and what is output-only on a Revision.
_NOT_COPIED = frozenset(
    {
        "labels",
        "annotations",
        "revision",
        "name",
        "uid",
        "generation",
        "create_time",
        "update_time",
        "delete_time",
        "expire_time",
        "launch_stage",
        "service",
        "conditions",
        "observed_generation",
        "log_uri",
        "satisfies_pzs",
        "reconciling",
        "scaling_status",
        "etag",
        "creator",
    }
)


def _same_type(a: Any, b: Any) -> bool:
    kind = (a.message_type or a.enum_type, b.message_type or b.enum_type)
    names = tuple(t.full_name if t is not None else None for t in kind)
    return bool(a.type == b.type and a.is_repeated == b.is_repeated and names[0] == names[1])


def _copied_fields() -> tuple[str, ...]:
    template = run_v2.RevisionTemplate.pb().DESCRIPTOR.fields_by_name
    revision = run_v2.Revision.pb().DESCRIPTOR.fields_by_name
    return tuple(
        sorted(
            name
            for name in set(template.keys()) & set(revision.keys())
            if name not in _NOT_COPIED and _same_type(template[name], revision[name])
        )
    )


#: The fields a roll takes from the base revision (code and configuration).
COPIED_FIELDS = _copied_fields()


@dataclass(frozen=True, slots=True)
class Serving:
    revision: str | None  # the single revision serving 100% (traffic_statuses), else None
    split: dict[str, int]  # split_of(service)
    latest: bool  # the traffic spec is LATEST 100% (or empty)


@dataclass(frozen=True, slots=True)
class RollResult:
    """What a roll did (or, in a dry run, would do), with the split around it."""

    ok: bool
    code: str  # "OK" or a canonical code; "FAILED_PRECONDITION" for a refusal
    message: str
    service: str  # full resource name
    base_revision: str
    new_revision: str
    operation: str = ""
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    wrote: bool = False
    dry_run: bool = False


def rolled_template(
    current: run_v2.RevisionTemplate,
    base: run_v2.Revision,
    new_revision: str,
    label: tuple[str, str],
    secret: tuple[str, str] | None = None,
) -> run_v2.RevisionTemplate:
    """The service's template with the base revision's code and configuration, named
    `new_revision` and labelled.

    `secret` = (secret id, version number): a reference to that secret pinned to a version
    (env var or volume item) is moved to this version, so the new instances read what the
    restore just wrote; a reference to `latest` already does.
    """
    template = run_v2.RevisionTemplate(current)
    dst, src = run_v2.RevisionTemplate.pb(template), run_v2.Revision.pb(base)
    for name in COPIED_FIELDS:
        _copy_field(src, dst, name)
    template.revision = new_revision
    template.labels[label[0]] = label[1]
    if secret is not None:
        _repin_secret(template, *secret)
    return template


def _repin_secret(template: run_v2.RevisionTemplate, secret_id: str, version: str) -> None:
    def ours(name: str) -> bool:
        return name == secret_id or name.endswith(f"/secrets/{secret_id}")

    for container in template.containers:
        for env in container.env:
            ref = env.value_source.secret_key_ref
            if ref.secret and ours(ref.secret) and ref.version not in ("", "latest"):
                ref.version = version
    for volume in template.volumes:
        if volume.secret.secret and ours(volume.secret.secret):
            for item in volume.secret.items:
                if item.version not in ("", "latest"):
                    item.version = version


def _copy_field(src: Any, dst: Any, name: str) -> None:
    fd = src.DESCRIPTOR.fields_by_name[name]
    dst.ClearField(name)
    if fd.is_repeated:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            values, into = getattr(src, name), getattr(dst, name)
            message_values = fd.message_type.fields_by_name["value"].message_type is not None
            for key, value in values.items():
                if message_values:
                    into[key].CopyFrom(value)
                else:
                    into[key] = value
        else:
            getattr(dst, name).extend(getattr(src, name))
    elif fd.message_type is not None:
        if src.HasField(name):
            getattr(dst, name).CopyFrom(getattr(src, name))
    elif not fd.has_presence or src.HasField(name):
        setattr(dst, name, getattr(src, name))


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _serves(svc: run_v2.Service, revision: str) -> bool:
    """Whether `revision` serves 100%: pinned by name, or as what LATEST resolves to."""
    if only_to(svc.traffic_statuses, revision):
        return True
    return only_to(svc.traffic_statuses, None) and _short(svc.latest_ready_revision) == revision


class CloudRunRoller(CloudRunWriter):
    """Rolls a service onto a new revision re-created from the revision that serves."""

    async def serving(self, service: ServiceRef) -> Serving:
        svc = await self._get_service(service)
        split = split_of(svc)
        only = [name for name, pct in split.items() if pct == 100]
        return Serving(only[0] if only else None, split, spec_holds(svc, None))

    async def roll(
        self,
        service: ServiceRef,
        *,
        base_revision: str,
        new_revision: str,
        label: tuple[str, str],
        expect_split: Mapping[str, int] | None,
        dry_run: bool = False,
        secret: tuple[str, str] | None = None,
    ) -> RollResult:
        """Create `new_revision` from `base_revision`'s code and serve 100% from it
        (`secret`: see `rolled_template`)."""
        result = partial(
            RollResult,
            service=service.resource_name,
            base_revision=base_revision,
            new_revision=new_revision,
        )
        before: dict[str, int] = {}
        operation, wrote = "", False
        try:
            svc = await self._get_service(service)
            before = split_of(svc)
            exists = await self._get_revision(service, new_revision) is not None
            if exists and _serves(svc, new_revision):
                message = f"{new_revision} already serves 100% of {service.name}: nothing to write"
                return result(True, "OK", message, before=before, after=before)
            expected = {_short(k): v for k, v in (expect_split or {}).items() if v}
            if expect_split is not None and not exists and expected != before:
                message = (
                    f"traffic changed since the plan (planned {expected}, now {before}): "
                    "a human moved it; not rolling"
                )
                return result(False, "FAILED_PRECONDITION", message, before=before, after=before)
            base = await self._get_revision(service, base_revision)
            refused = refusal(base, f"base revision {base_revision}", "not rolling")
            if refused is not None:
                return result(False, *refused, before=before, after=before)
            assert base is not None  # refusal says so
            latest = spec_holds(svc, None)
            template = rolled_template(svc.template, base, new_revision, label, secret)
            where = "LATEST (kept)" if latest else f"100% to {new_revision}"
            if dry_run:
                message = (
                    f"would roll {service.name} to {new_revision}, re-created from "
                    f"{base_revision}; traffic {where} (now {before})"
                )
                return result(True, "OK", message, before=before, dry_run=True)
            in_flight = (
                exists
                and svc.reconciling
                and svc.template.revision == new_revision
                and (latest or spec_holds(svc, new_revision))
            )
            if not in_flight:  # else: our own earlier write is still being applied
                operation = await self._write_template(
                    service, svc, template, new_revision, pin=not latest
                )
                wrote = True
            code, message, after, serving = await self._land(
                service, operation, lambda s: _serves(s, new_revision)
            )
        except exceptions.GoogleAPICallError as err:
            message = err.message or str(err)
            return result(
                False, code_of(err), message, operation=operation, before=before, wrote=wrote
            )
        if code == "OK" and not serving:
            code, message = "UNVERIFIED", f"traffic_statuses show {after}, not 100% on target"
        message = message or (
            f"rolled {service.name} to {new_revision} (code of {base_revision}); "
            f"traffic {where} (was {before})"
        )
        return result(
            code == "OK",
            code,
            message,
            operation=operation,
            before=before,
            after=after,
            wrote=wrote,
        )

    async def _write_template(
        self,
        service: ServiceRef,
        svc: run_v2.Service,
        template: run_v2.RevisionTemplate,
        new_revision: str,
        *,
        pin: bool,
    ) -> str:
        """The UpdateService; its operation's name, or "" when a retried call had landed."""
        client = self._clients.run_services_async()
        current = [svc]

        async def landed() -> bool:
            """Whether the failed call took effect after all: the spec names the new revision
            (and pins traffic to it when asked) and the revision exists."""
            current[0] = await self._get_service(service)  # fresh etag
            spec = current[0].template.revision == new_revision and (
                not pin or spec_holds(current[0], new_revision)
            )
            return spec and await self._get_revision(service, new_revision) is not None

        def send() -> Awaitable[Any]:
            body = run_v2.Service(name=current[0].name, etag=current[0].etag, template=template)
            paths = ["template"]
            if pin:
                body.traffic = [
                    run_v2.TrafficTarget(type_=REVISION, revision=new_revision, percent=100)
                ]
                paths.append("traffic")
            request = run_v2.UpdateServiceRequest(service=body, update_mask={"paths": paths})
            return client.update_service(request=request, retry=None, timeout=self.call_timeout)

        return await self._write_once("UpdateService", send, landed)
