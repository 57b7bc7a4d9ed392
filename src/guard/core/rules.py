"""Rules: what counts as a bad deploy, in the vocabulary operators know from Flagger and Argo.

A rule file reads like a Flagger MetricTemplate or an Argo AnalysisTemplate
(`apiVersion/kind/metadata/spec`, `initialDelay`, `interval`, `failureLimit`,
`inconclusiveLimit`, `thresholdRange`, `dryRun`), so an SRE can review it without learning a
new language. The model is the single source of truth: `guard schema rules` prints the JSON
Schema generated from it, and CI checks the committed schema and every rule file against it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from guard.core.durations import format_duration, parse_duration

API_VERSION = "deployguard.dev/v1alpha1"
KIND = "GuardRule"


def _seconds(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


#: A duration: written "30s"/"5m"/"1h30m" in files, held as seconds.
Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    Field(ge=0),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(0|(\d+(\.\d+)?(ms|s|m|h))+)$"},
                {"type": "number", "minimum": 0, "description": "seconds"},
            ]
        }
    ),
]
RuleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class LogKind(StrEnum):
    """What the log classifier can label an entry."""

    MIGRATION_FAILURE = "migration_failure"
    SCHEMA_MISMATCH = "schema_mismatch"


class Severity(StrEnum):
    """How loudly to page; each notifier maps it to its own levels."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"


class RuleAction(StrEnum):
    """What a failed rule makes the guard do (always after freezing the app)."""

    REVERT = "revert"  # freeze, pin traffic to the last-known-good revision, page
    FREEZE = "freeze"  # freeze and page, leave traffic alone
    PAGE = "page"  # page only


class Scope(StrEnum):
    """Whose logs count: only the new revision's, or every revision of the app's services."""

    NEW_REVISION = "newRevision"
    ANY_REVISION = "anyRevision"


class ThresholdRange(_Spec):
    """Flagger's thresholdRange: the value must stay within [min, max] to pass."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("thresholdRange needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"thresholdRange min {self.min} is above max {self.max}")
        return self


class LogsProvider(_Spec):
    """Classified log entries (Cloud Logging tail) of the app's services."""

    type: Literal["logs"]
    kinds: list[LogKind] = Field(min_length=1)
    scope: Scope = Scope.NEW_REVISION


class ReadinessProvider(_Spec):
    """Cloud Run revision conditions: a new revision that fails to become Ready."""

    type: Literal["readiness"]


class ErrorRateProvider(_Spec):
    """The 5xx share of run.googleapis.com/request_count, new revision against its baseline."""

    type: Literal["errorRate"]
    baseline: Literal["previousRevision", "none"] = "previousRevision"
    min_requests: int = Field(
        default=50, ge=1, description="Fewer requests than this is 'too little traffic'."
    )
    false_positive_rate: float = Field(
        default=0.001,
        gt=0,
        lt=0.5,
        description="Bound on the chance that a healthy revision is judged failed.",
    )
    min_ratio: float = Field(
        default=2.0, ge=1.0, description="The new 5xx rate must exceed the baseline's by this."
    )


Provider = Annotated[
    LogsProvider | ReadinessProvider | ErrorRateProvider, Field(discriminator="type")
]


class RuleSpec(_Spec):
    """What to watch, when a deploy fails, and what to do then."""

    description: str = ""
    provider: Provider
    action: RuleAction = RuleAction.REVERT
    severity: Severity = Severity.CRITICAL
    initial_delay: Duration = Field(
        default=0.0, description="Wait this long after the deploy before judging (metric lag)."
    )
    interval: Duration = Field(default=10.0, gt=0, description="How often the rule is judged.")
    window: Duration = Field(default=300.0, gt=0, description="How far back evidence counts.")
    failure_limit: int = Field(
        default=1,
        ge=1,
        description="Failed checks (or matching entries, for logs) before the rule fails.",
    )
    inconclusive_limit: int = Field(
        default=0, ge=0, description="Inconclusive checks before pausing for a human; 0 = never."
    )
    threshold_range: ThresholdRange | None = None
    dry_run: bool = Field(default=False, description="Judge and page 'would have', act not.")

    @model_validator(mode="after")
    def _threshold_fits_provider(self) -> Self:
        if isinstance(self.provider, ErrorRateProvider) and self.threshold_range is None:
            raise ValueError("an errorRate rule needs thresholdRange (e.g. {max: 0.05})")
        if not isinstance(self.provider, ErrorRateProvider) and self.threshold_range is not None:
            raise ValueError(f"thresholdRange has no meaning for a {self.provider.type} rule")
        return self


class Metadata(_Spec):
    name: RuleName
    labels: dict[str, str] = Field(default_factory=dict)


class GuardRule(_Spec):
    """One rule file document."""

    api_version: Literal["deployguard.dev/v1alpha1"]
    kind: Literal["GuardRule"]
    metadata: Metadata
    spec: RuleSpec

    @property
    def name(self) -> str:
        return self.metadata.name


def rule_json_schema() -> dict[str, object]:
    """The JSON Schema of a rule document, as committed in schema/guardrule.schema.json."""
    schema = GuardRule.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://deployguard.dev/schema/guardrule.schema.json"
    return schema
