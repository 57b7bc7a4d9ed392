"""Cloud Deploy for the guard: the freeze is a suspended delivery pipeline.

A suspended pipeline blocks new releases, rollouts, promote, rollback and approve (rollouts
already running complete), which is exactly the freeze the runbook asks for while traffic is
reverted through the Cloud Run API. Suspending is UpdateDeliveryPipeline with
`suspended=true` and update mask `suspended` (only that field, so nothing else a human set is
overwritten); it is a long-running operation and the pipeline reads as suspended only once
the operation completes, so the result is verified by reading the pipeline again. Both
directions are idempotent (already in the wanted state: no write), so a guard restarting
after a crash can simply ask again. Failures are results with the canonical code; transient
errors are retried a bounded number of times (see `guard.adapters.cloudrun_write.Caller`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from typing import Any

from google.api_core import exceptions
from google.cloud import deploy_v1

from guard.adapters.cloudrun import code_of
from guard.adapters.cloudrun_write import OperationWriter, wait_operation


@dataclass(frozen=True, slots=True)
class SuspendResult:
    """What a (un)suspend did, or in a dry run would do."""

    ok: bool
    code: str  # "OK" or a canonical code
    message: str
    pipeline: str
    suspended: bool | None  # as read last; None when it could not be read
    operation: str = ""
    wrote: bool = False
    dry_run: bool = False


class CloudDeploy(OperationWriter):
    """Suspends and resumes Cloud Deploy delivery pipelines (full resource names)."""

    async def suspend(self, pipeline_name: str, *, dry_run: bool = False) -> SuspendResult:
        """Freeze the pipeline: no new release or rollout goes out until it is resumed."""
        return await self._set(pipeline_name, True, dry_run)

    async def resume(self, pipeline_name: str, *, dry_run: bool = False) -> SuspendResult:
        """Lift the freeze (when humans clear it)."""
        return await self._set(pipeline_name, False, dry_run)

    async def is_suspended(self, pipeline_name: str) -> bool:
        return bool((await self._get(pipeline_name)).suspended)

    async def _set(self, name: str, suspended: bool, dry_run: bool) -> SuspendResult:
        verb = "suspended" if suspended else "resumed"
        state: bool | None = None
        try:
            pipeline = await self._get(name)
            state = bool(pipeline.suspended)
            if state == suspended:
                return SuspendResult(True, "OK", f"already {verb}: nothing to write", name, state)
            if dry_run:
                message = f"dry run: would mark the pipeline {verb}"
                return SuspendResult(True, "OK", message, name, state, dry_run=True)
            operation = await self._write(name, pipeline, suspended)
            code, message = "OK", ""
            if operation:
                client = self._clients.deploy_async()
                code, message = await wait_operation(
                    self._caller,
                    client.get_operation,
                    operation,
                    limit=self.op_timeout,
                    poll=self.poll,
                )
            state = bool((await self._get(name)).suspended)
        except exceptions.GoogleAPICallError as err:
            return SuspendResult(False, code_of(err), err.message or str(err), name, state)
        if code == "OK" and state != suspended:
            code, message = "UNVERIFIED", f"the pipeline reads suspended={state} after the update"
        message = message or f"pipeline {verb}"
        return SuspendResult(code == "OK", code, message, name, state, operation, wrote=True)

    async def _write(self, name: str, pipeline: deploy_v1.DeliveryPipeline, suspended: bool) -> str:
        """The UpdateDeliveryPipeline; its operation's name, or "" if a retried call landed."""
        client = self._clients.deploy_async()
        current = [pipeline]

        async def landed() -> bool:
            current[0] = await self._get(name)
            return bool(current[0].suspended) == suspended

        def send() -> Awaitable[Any]:
            request = deploy_v1.UpdateDeliveryPipelineRequest(
                delivery_pipeline=deploy_v1.DeliveryPipeline(
                    name=name, suspended=suspended, etag=current[0].etag
                ),
                update_mask={"paths": ["suspended"]},
            )
            return client.update_delivery_pipeline(
                request=request, retry=None, timeout=self.call_timeout
            )

        return await self._write_once("UpdateDeliveryPipeline", send, landed)

    async def _get(self, name: str) -> deploy_v1.DeliveryPipeline:
        client = self._clients.deploy_async()
        get = partial(
            client.get_delivery_pipeline, name=name, retry=None, timeout=self.call_timeout
        )
        pipeline: deploy_v1.DeliveryPipeline = await self._caller.retried(
            "GetDeliveryPipeline", get
        )
        return pipeline
