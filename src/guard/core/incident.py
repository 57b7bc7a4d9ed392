"""The incident state machine: from a verdict to freeze, revert, page, validate, and an end.

Pure decisions only: given where an incident stands and what the guard knows now, which step
comes next. The responder (guard.service) carries the steps out, each behind an intent in the
store, so a crash between any two steps resumes at the right one and nothing runs twice.

    open ──freeze──► frozen ──revert──► reverted ──page──► validating ──► resolved
                        │                                       │
                        └─(nothing to revert: page)─► validating └─► escalated
    (any state before resolved/escalated) ──newer deploy──► superseded

The rules it encodes, each from the runbook or from what operators asked of other tools:
- Freeze first: the pipeline must not ship again while humans are not yet looking.
- Revert only by traffic, only to a Ready last-known-good, only while the bad revision still
  serves, and never after a human moved traffic (operator lock); otherwise page instead.
- A rule whose action is `freeze` or `page` never touches traffic.
- Validation passing with no schema errors on the reverted-to revision resolves; anything else
  means the schema changed under the old code: escalate (a restore proposal, gated).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from guard.core.model import IncidentState
from guard.core.rules import RuleAction

TERMINAL = frozenset({IncidentState.RESOLVED, IncidentState.ESCALATED, IncidentState.SUPERSEDED})


class Step(StrEnum):
    """One thing the responder does for an incident."""

    FREEZE = "freeze"
    REVERT = "revert"
    PAGE = "page"
    VALIDATE = "validate"
    RESOLVE = "resolve"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the responder knows when it asks for the next step."""

    action: RuleAction  # the strongest action among the rules that fired
    bad_share: int  # percent of traffic the bad revision serves now
    revert_target: str | None  # the Ready last-known-good revision, if any
    operator_changed: bool  # a human moved traffic after the deploy
    validation_passed: bool | None = None  # None: not validated yet
    schema_errors_after_revert: bool = False
    revert_failed: bool = False  # the revert failed permanently: page, do not retry forever


@dataclass(frozen=True, slots=True)
class Decision:
    """The next step, the state the incident moves to once it succeeds, and why."""

    step: Step | None  # None: nothing to do now
    then: IncidentState
    why: str


def strongest(actions: list[RuleAction]) -> RuleAction:
    """Revert beats freeze beats page: one incident acts on the most a fired rule asks."""
    for action in (RuleAction.REVERT, RuleAction.FREEZE, RuleAction.PAGE):
        if action in actions:
            return action
    return RuleAction.PAGE


def next_step(state: IncidentState, facts: Facts) -> Decision:
    """What to do next for an incident in `state`, knowing `facts`."""
    if state in TERMINAL:
        return Decision(None, state, f"incident is {state.value}")
    if state is IncidentState.OPEN:
        if facts.action is RuleAction.PAGE:
            return Decision(Step.PAGE, IncidentState.VALIDATING, "rule asks to page only")
        return Decision(Step.FREEZE, IncidentState.FROZEN, "freeze the app before anything else")
    if state is IncidentState.FROZEN:
        return _after_freeze(facts)
    if state is IncidentState.REVERTED:
        return Decision(Step.PAGE, IncidentState.VALIDATING, "page with what was done")
    return _after_validation(facts)


def _after_freeze(facts: Facts) -> Decision:
    page = IncidentState.VALIDATING
    if facts.action is not RuleAction.REVERT:
        return Decision(Step.PAGE, page, f"rule action is {facts.action.value}: traffic untouched")
    if facts.bad_share == 0:
        return Decision(Step.PAGE, page, "the bad revision serves no traffic: nothing to revert")
    if facts.operator_changed:
        return Decision(Step.PAGE, page, "a human changed traffic after the deploy: hands off")
    if facts.revert_target is None:
        return Decision(Step.PAGE, page, "no Ready last-known-good revision to revert to")
    if facts.revert_failed:
        return Decision(Step.PAGE, page, "the revert failed: a human must take over traffic")
    return Decision(
        Step.REVERT, IncidentState.REVERTED, f"pin 100% of traffic to {facts.revert_target}"
    )


def _after_validation(facts: Facts) -> Decision:
    if facts.validation_passed is None and facts.bad_share and facts.action is RuleAction.REVERT:
        # The rule wants the bad revision out, yet it still serves: the guard could not or
        # would not move traffic (a human changed it, no Ready target, the revert failed).
        # There is no recovery to validate, let alone resolve: wait for a human.
        return Decision(
            None, IncidentState.VALIDATING,
            f"the bad revision still serves {facts.bad_share}% of traffic: waiting for a "
            "human to move it (the guard keeps hands off)",
        )  # fmt: skip
    if facts.validation_passed is None:
        return Decision(Step.VALIDATE, IncidentState.VALIDATING, "validate the recovery")
    if facts.schema_errors_after_revert:
        return Decision(
            Step.ESCALATE,
            IncidentState.ESCALATED,
            "schema errors continue on the reverted-to revision: the schema changed under it",
        )
    if not facts.validation_passed:
        return Decision(Step.ESCALATE, IncidentState.ESCALATED, "validation failed after revert")
    return Decision(Step.RESOLVE, IncidentState.RESOLVED, "validation passed")


def action_key(incident_id: str, step: Step, target: str = "") -> str:
    """The idempotency key of a step: the store refuses a second intent with the same key."""
    return f"{incident_id}:{step.value}:{target}"
