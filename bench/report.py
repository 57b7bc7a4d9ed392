"""From raw benchmark results to the numbers docs/benchmarks.md reports.

Why apart from the runner: what counts as a revert, which instant a time is measured from,
and how a percentile is taken are the benchmark's definitions; they live here once, and
both the Markdown tables and the JSON summary use them.

Definitions:
- the guard reverted a case when an incident on the case's new revision has `reverted_at`
  (the revert action finished: the UpdateService operation done, traffic verified);
- a peer "reverted" at its decision plus the scenario's UpdateService operation time;
- log cases are timed from the new revision's first log line the classifier labels
  `migration_failure` or `schema_mismatch` (read from the fake's log store), 5xx cases from
  the onset (the new revision starts serving), and also from the moment Monitoring first
  shows a point holding its traffic (`first_visible`);
- a benign case is falsely reverted when the decider reverts anything in it;
- percentiles interpolate linearly between the closest ranks (numpy's default).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

PEERS = ("release-manager", "flagger", "flagger-tuned")
PEER_LABEL = {
    "release-manager": "Release Manager",
    "flagger": "Flagger",
    "flagger-tuned": "Flagger, tuned (hypothetical)",
}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def dist(values: Iterable[float]) -> dict[str, float | int]:
    v = list(values)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50": round(percentile(v, 50), 2),
        "p90": round(percentile(v, 90), 2),
        "p99": round(percentile(v, 99), 2),
        "min": round(min(v), 2),
        "max": round(max(v), 2),
    }


def guard_revert(case: dict[str, Any]) -> float | None:
    for i in case["guard"]["incidents"]:
        if i["bad_revision"] == case["new_revision"] and i["reverted_at"] is not None:
            return float(i["reverted_at"])
    return None


def guard_detect(case: dict[str, Any]) -> float | None:
    found = [
        float(i["detected_at"])
        for i in case["guard"]["incidents"]
        if i["bad_revision"] == case["new_revision"]
    ]
    return min(found) if found else None


def reference(case: dict[str, Any]) -> float:
    """The instant a bad case's time to revert is measured from."""
    if case["kind"] == "log":
        lines = case["guard"]["first_lines"]
        found = [lines[k] for k in ("migration_failure", "schema_mismatch") if k in lines]
        if found:
            return float(min(found))
    return float(case["onset"])


def falsely_reverted(case: dict[str, Any], who: str) -> bool:
    if who == "guard":
        g = case["guard"]
        return bool(g["guard_updates"]) or any(i["reverted_at"] for i in g["incidents"])
    return case["peers"][who]["reverted_at"] is not None


def ttr(cases: list[dict[str, Any]], who: str, *, since: str = "reference") -> list[float]:
    """Times to revert of the cases `who` reverted, from `since` (reference|first_visible);
    from first_visible only the reverts Monitoring could have caused (not before it)."""
    out = []
    for c in cases:
        at = guard_revert(c) if who == "guard" else c["peers"][who]["reverted_at"]
        if at is None or (since != "reference" and at < float(c[since])):
            continue
        start = reference(c) if since == "reference" else float(c[since])
        out.append(at - start)
    return out


def missed(cases: list[dict[str, Any]], who: str) -> int:
    if who == "guard":
        return sum(guard_revert(c) is None for c in cases)
    return sum(c["peers"][who]["reverted_at"] is None for c in cases)


def stages(cases: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of each stage from the reference to the revert, over reverted cases."""
    parts: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            parts.setdefault(name, []).append(value)

    for c in cases:
        done, found = guard_revert(c), guard_detect(c)
        if done is None or found is None:
            continue
        if c["kind"] == "log":
            ref, onset = reference(c), float(c["onset"])
            seen = c["guard"]["discovered_at"]
            add("error line -> revision serving (Ready, traffic moves)", max(onset - ref, 0.0))
            if seen is not None:
                add("serving -> deploy discovered (Cloud Run poll)", seen - max(onset, ref))
                add("discovered -> verdict", found - seen)
        elif found < float(c["first_visible"]):
            add("onset -> verdict (5xx request-log entries, before Monitoring shows any)",
                found - c["onset"])  # fmt: skip
        else:
            visible = float(c["first_visible"])
            add(
                "onset -> first point visible (60 s sample + 120 s ingestion)", visible - c["onset"]
            )
            add("visible -> verdict (metrics cycle phase, evidence)", found - visible)
        add("verdict -> reverted (UpdateService operation)", done - found)
    return {k: round(statistics.median(v), 2) for k, v in parts.items()}


def fmt(x: float | int | None, unit: str = " s") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "\N{EN DASH}"
    return f"{x:,.1f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return "\N{EN DASH}"
    return f"{a / b:.2f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _decisive_empty(checks: list[dict[str, Any]]) -> bool:
    """Flagger rolled back after a failed check that had no value (ErrNoValuesFound)."""
    failed = [c for c in checks if not c["ok"]]
    return bool(failed) and failed[-1]["rate"] is None


def monitoring_verdicts(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The guard's verdicts that waited for Monitoring: how long after the first point
    holding the new revision's traffic became visible, and after the first point holding a
    whole minute of it; and, for each verdict later than one 60 s cycle, how many seconds of
    the new revision's traffic that first point held."""
    after, after_full, late = [], [], []
    for c in cases:
        found = guard_detect(c)
        if found is None or found < c["first_visible"]:
            continue  # decided from request logs before Monitoring showed anything
        after.append(found - c["first_visible"])
        after_full.append(found - c["first_full_visible"])
        if found - c["first_visible"] > 60.0:
            late.append({"index": c["index"], "verdict_after_visible": found - c["first_visible"],
                         "first_point_holds_s": 60.0 - c["onset"] % 60.0})  # fmt: skip
    return {
        "detect_after_visible": dist(after),
        "detect_after_full_visible": dist(after_full),
        "late": late,
    }


def group(cases: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Cases by family, what-if variants apart ("family @ variant")."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in cases:
        key = c["family"] + (f" @ {c['variant']}" if c["variant"] else "")
        out.setdefault(key, []).append(c)
    return out


def summarize(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per family: the guard's and each peer's times to revert, misses, false reverts."""
    out: dict[str, Any] = {}
    for key, group_cases in group(cases).items():
        kind = group_cases[0]["kind"]
        entry: dict[str, Any] = {"kind": kind, "n": len(group_cases)}
        for who in ("guard", *PEERS):
            if kind == "benign":
                entry[who] = {"false_reverts": sum(falsely_reverted(c, who) for c in group_cases)}
                continue
            entry[who] = {"ttr": dist(ttr(group_cases, who)), "missed": missed(group_cases, who)}
            if kind == "5xx":
                entry[who]["after_visible"] = dist(ttr(group_cases, who, since="first_visible"))
        entry["flagger"]["rolled_back_on_empty"] = sum(
            _decisive_empty(c["peers"]["flagger"]["checks"]) for c in group_cases
        )
        if kind != "benign":
            entry["stages"] = stages(group_cases)
        if kind == "5xx":
            entry["guard"].update(monitoring_verdicts(group_cases))
        out[key] = entry
    return out
