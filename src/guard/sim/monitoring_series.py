"""Turning the fake's raw samples into ListTimeSeries answers: selection, aggregation, paging.

Split from `guard.sim.monitoring` so the request handling there stays readable. Everything
here works on plain values (seconds, label tuples) and builds the proto-plus `TimeSeries`
messages the real client receives, points newest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from google.cloud.monitoring_v3.types import metric as metric_types

from guard.sim import malign

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SeriesId:
    """What identifies one raw time series."""

    project: str
    metric_type: str
    resource_type: str
    resource_labels: Labels
    metric_labels: Labels

    @classmethod
    def of(
        cls,
        project: str,
        metric_type: str,
        resource_type: str,
        resource_labels: Mapping[str, str],
        metric_labels: Mapping[str, str],
    ) -> SeriesId:
        return cls(
            project,
            metric_type,
            resource_type,
            tuple(sorted(resource_labels.items())),
            tuple(sorted(metric_labels.items())),
        )


@dataclass(frozen=True, slots=True)
class RawSeries:
    """A series and its visible samples, oldest first."""

    sid: SeriesId
    samples: tuple[malign.Sample, ...]


@dataclass(frozen=True, slots=True)
class OutSeries:
    """One series of the answer, before it becomes a TimeSeries message."""

    sid: SeriesId
    kind: str  # "DELTA" or "GAUGE"
    value_type: str  # "INT64" or "DOUBLE"
    points: tuple[malign.Aligned, ...]  # newest first


def aggregate(
    selected: Sequence[RawSeries],
    *,
    start: float,
    end: float,
    aligner: str,
    reducer: str,
    period: float,
    group_by: Sequence[str],
) -> list[OutSeries]:
    """The answer's series for the selected raw series, sorted by their labels."""
    if aligner == "ALIGN_NONE":
        out = []
        for raw in selected:
            pts = [
                malign.Aligned(s.start, s.end, s.value) for s in raw.samples if start < s.end <= end
            ]
            if pts:
                out.append(OutSeries(raw.sid, "DELTA", "INT64", tuple(reversed(pts))))
        return _sorted(out)
    ends = malign.period_ends(start, end, period)
    kind, vtype = ("GAUGE", "DOUBLE") if aligner == "ALIGN_RATE" else ("DELTA", "INT64")
    aligned = [(raw.sid, malign.align(raw.samples, aligner, ends, period)) for raw in selected]
    if reducer == "REDUCE_NONE":
        return _sorted([OutSeries(sid, kind, vtype, tuple(p)) for sid, p in aligned if p])
    groups: dict[SeriesId, list[list[malign.Aligned]]] = {}
    for sid, points in aligned:
        if points:
            groups.setdefault(_group_key(sid, group_by), []).append(points)
    return _sorted(
        [OutSeries(key, kind, vtype, tuple(malign.reduce_sum(pts))) for key, pts in groups.items()]
    )


def _label_name(field: str) -> tuple[str, str]:
    head, _, rest = field.partition(".")
    return head, rest.partition(".")[2]


def _group_key(sid: SeriesId, group_by: Sequence[str]) -> SeriesId:
    keep_resource = {n for h, n in map(_label_name, group_by) if h == "resource" and n}
    keep_metric = {n for h, n in map(_label_name, group_by) if h == "metric" and n}
    return SeriesId(
        sid.project,
        sid.metric_type,
        sid.resource_type,
        tuple((k, v) for k, v in sid.resource_labels if k in keep_resource),
        tuple((k, v) for k, v in sid.metric_labels if k in keep_metric),
    )


def _sorted(series: list[OutSeries]) -> list[OutSeries]:
    return sorted(series, key=lambda s: (s.sid.resource_labels, s.sid.metric_labels))


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(round(t, 6), UTC)


def to_message(series: OutSeries, *, headers: bool) -> metric_types.TimeSeries:
    """The TimeSeries message for one answer series (no points for the HEADERS view)."""
    points = []
    if not headers:
        for p in series.points:
            value = (
                {"double_value": float(p.value)}
                if series.value_type == "DOUBLE"
                else {"int64_value": int(p.value)}
            )
            points.append(
                {"interval": {"start_time": _ts(p.start), "end_time": _ts(p.end)}, "value": value}
            )
    return metric_types.TimeSeries(
        metric={"type": series.sid.metric_type, "labels": dict(series.sid.metric_labels)},
        resource={"type": series.sid.resource_type, "labels": dict(series.sid.resource_labels)},
        metric_kind=series.kind,
        value_type=series.value_type,
        points=points,
        unit="1",
    )


def page_of(
    series: Sequence[OutSeries], offset: int, size: int, *, headers: bool
) -> tuple[list[metric_types.TimeSeries], int | None]:
    """One page from `offset`, and the next page's offset (None when this is the last).

    As Google documents, `size` counts points in the FULL view and series in HEADERS. A page
    holds whole series; a single series with more points than `size` still fills one page.
    """
    page: list[metric_types.TimeSeries] = []
    used = 0
    i = offset
    while i < len(series):
        cost = 1 if headers else len(series[i].points)
        if page and used + cost > size:
            break
        page.append(to_message(series[i], headers=headers))
        used += cost
        i += 1
    return page, (i if i < len(series) else None)
