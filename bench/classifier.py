"""Benchmark of the log classifier: accuracy on the real-driver fixture, throughput on traffic.

Run: `.venv/bin/python bench/classifier.py [--records 200000] [--seed 7]`

Two questions decide whether the classifier is fit for a live tail: does it label the
fixture's real driver output right (precision and recall per kind, filename, SQLSTATE,
relation), and can one core keep up with a busy service's log volume, where almost every
entry is an ordinary request line? Both are answered side by side with a naive baseline (a
list of case-insensitive `re.search` patterns tried one by one, as a first version would
be), in the same process, so the ratios mean something on any machine.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from guard.core.classify import MigrationLedger, classify, classify_text
from guard.core.rules import LogKind
from guard.core.signals import LogRecord

FIXTURE = Path(__file__).resolve().parents[1] / "src/guard/sim/data/error_texts.json"
MF, SM = LogKind.MIGRATION_FAILURE, LogKind.SCHEMA_MISMATCH
T0 = datetime(2025, 6, 3, 9, 14, 7, tzinfo=UTC)

# The naive baseline: what a first version looks like. Migration words first, then schema
# words; the first hit decides; the first *.sql in the text is the filename.
_NAIVE = [
    (re.compile(p, re.IGNORECASE), kind)
    for p, kind in [
        (r"migration.*fail", MF),
        (r"fail.*migration", MF),
        (r"lock timeout", MF),
        (r"alembic", MF),
        (r"migrate\.py", MF),
        (r"django\.db\.migrations", MF),
        (r"undefined_?(column|table|function|object)", SM),
        (r"does not exist", SM),
        (r"datatype ?mismatch", SM),
        (r"is of type .* but expression", SM),
    ]
]
_NAIVE_ERROR = re.compile(r"error|exception|fatal", re.IGNORECASE)
_NAIVE_FILE = re.compile(r"[\w./-]+\.sql")


def naive_classify(text: str) -> tuple[LogKind | None, str | None]:
    if not _NAIVE_ERROR.search(text):
        return None, None
    for pattern, kind in _NAIVE:
        if pattern.search(text):
            found = _NAIVE_FILE.search(text)
            return kind, found.group(0) if found else None
    return None, None


def _record(text: str, at: datetime, revision: str, payload: Any = None) -> LogRecord:
    return LogRecord(
        at=at,
        project="delta-student-486911-n5",
        service="pegasus-api",
        revision=revision,
        log_name="run.googleapis.com/stderr",
        severity="ERROR",
        text=text,
        insert_id="x",
        json_payload=payload or {},
    )


def _case_record(case: dict[str, Any], revision: str = "r") -> LogRecord:
    payload = case["json_payload"]
    text = payload.get("message", "") if payload else case["text"]
    return _record(text, T0, revision, payload)


def _full_text(record: LogRecord) -> str:
    """The naive classifier reads what a human would: the text and the payload's strings."""
    extra = [v for v in record.json_payload.values() if isinstance(v, str) and v != record.text]
    return "\n".join([record.text, *extra])


def _ratio(hits: int, total: int) -> str:
    return f"{hits / total:.3f} ({hits}/{total})" if total else "n/a"


def accuracy(cases: list[dict[str, Any]]) -> None:
    ours, naive = [], []
    for case in cases:
        entry = _case_record(case)
        got = classify(entry)
        ours.append((got.kind, got.migration_file, got.sqlstate, got.relation))
        naive.append(naive_classify(_full_text(entry)))
    print("## Accuracy on the fixture (294 real driver texts, whole entries)\n")
    print("| measure | classify | naive baseline |\n| --- | --- | --- |")
    want = [_kind(c) for c in cases]
    for kind in (MF, SM):
        scores = [_scores([g[0] for g in got], want, kind) for got in (ours, naive)]
        print(f"| {kind.value} precision | {scores[0][0]} | {scores[1][0]} |")
        print(f"| {kind.value} recall | {scores[0][1]} | {scores[1][1]} |")
    named = [(i, c) for i, c in enumerate(cases) if c["label"]["migration_file"]]
    row = [
        _ratio(sum(1 for i, c in named if got[i][1] == c["label"]["migration_file"]), len(named))
        for got in (ours, naive)
    ]
    print(f"| filename as written (text names one) | {row[0]} | {row[1]} |")
    blamed = [c for c in cases if c["label"]["migration_file_by_blame"]]
    print(f"| filename by blame (ledger) | {_ratio(_blame_hits(blamed), len(blamed))} | n/a |")
    multi = [c for c in cases if not c["json_payload"] and "\n" in c["text"]]
    for label, history in (("with", True), ("without", False)):
        right = sum(1 for c in multi if _per_line_kinds(c, history) == {_kind(c)} - {None})
        print(
            f"| one entry per line, {label} runner history: revision's kinds exact "
            f"| {_ratio(right, len(multi))} | n/a |"
        )
    for field, index in (("sqlstate", 2), ("relation", 3)):
        hits = sum(1 for g, c in zip(ours, cases, strict=True) if g[index] == c["label"][field])
        print(f"| {field} exact (all cases, null included) | {_ratio(hits, len(cases))} | n/a |")
    print()


def _scores(
    got: list[LogKind | None], want: list[LogKind | None], kind: LogKind
) -> tuple[str, str]:
    pairs = list(zip(got, want, strict=True))
    tp = sum(1 for g, w in pairs if g is kind and w is kind)
    fp = sum(1 for g, w in pairs if g is kind and w is not kind)
    fn = sum(1 for g, w in pairs if g is not kind and w is kind)
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn)


def _kind(case: dict[str, Any]) -> LogKind | None:
    return LogKind(case["label"]["kind"]) if case["label"]["kind"] else None


def _per_line_kinds(case: dict[str, Any], history: bool) -> set[LogKind | None]:
    """Replay a multi-line text as Cloud Run stores it, one entry per line, after (with
    history) what the runner logged before it; the kinds any line was given."""
    lines = case["text"].split("\n")
    if history and case["phase"] == "migration":
        lines = [f"Applying migration {m}" for m in case["applied_migrations"]] + lines
    elif history:
        lines = ["INFO uvicorn.error: Application startup complete.", *lines]
    ledger, kinds = MigrationLedger(), set()
    for n, line in enumerate(lines):
        entry = _record(line, T0 + timedelta(milliseconds=n), "r")
        ledger.observe(entry)
        kinds.add(classify(entry, ledger).kind)
    return kinds - {None}


def _blame_hits(cases: list[dict[str, Any]]) -> int:
    hits = 0
    for case in cases:
        ledger = MigrationLedger()
        for migration in case["applied_migrations"]:
            ledger.observe(_record(f"Applying migration {migration}", T0, "r"))
        entry = _case_record(case)
        ledger.observe(entry)
        hits += classify(entry, ledger).migration_file == case["label"]["migration_file_by_blame"]
    return hits


# Ordinary traffic: what most of a Cloud Run service's log is.
_PATHS = ["/courses", "/courses/12", "/lectures/3/video", "/users/7/enrollments", "/health/ready"]
_APP_LINES = [
    "cache hit for key course:12 in 0.3ms",
    "enqueued job send_welcome_email id=8c1f",
    "Started server process [1]",
    "Waiting for application startup.",
    "user 7 enrolled in course 12",
    "slow request: GET /reports/popular took 812ms",
    'Default STARTUP TCP probe succeeded after 1 attempt for container "api" on port 8080.',
]


def traffic(
    cases: list[dict[str, Any]], total: int, rng: random.Random, errors: float = 0.05
) -> list[LogRecord]:
    """`total` entries, in time order: request and app lines, and a share `errors` of
    fixture texts as Cloud Run stores them (a JSON line whole, a multi-line write as one
    entry per line, kept together)."""
    groups: list[list[tuple[str, Any, str]]] = []
    fixture_entries = 0
    while fixture_entries < total * errors:
        case = rng.choice(cases)
        if case["json_payload"]:
            group = [(case["json_payload"].get("message", ""), case["json_payload"], "bad")]
        else:
            group = [(line, None, "bad") for line in case["text"].split("\n")]
        groups.append(group)
        fixture_entries += len(group)
    for _ in range(total - fixture_entries):
        groups.append([_ordinary(rng)])
    rng.shuffle(groups)
    records, at = [], T0
    for group in groups:
        for text, payload, revision in group:
            at += timedelta(milliseconds=5)
            records.append(_record(text, at, f"pegasus-api-{revision}", payload))
    return records


def _ordinary(rng: random.Random) -> tuple[str, Any, str]:
    status = rng.choice([200] * 30 + [201, 204, 304, 404, 422, 500])
    access = f'169.254.1.1:0 - "GET {rng.choice(_PATHS)} HTTP/1.1" {status}'
    roll = rng.random()
    if roll < 0.55:
        return f"2025-06-03 09:14:07,512 INFO uvicorn.access: {access}", None, "good"
    if roll < 0.75:
        return access, {"message": access, "logger": "uvicorn.access"}, "good"
    if roll < 0.85:
        return "", None, "good"  # the requests log: an httpRequest, no text
    return rng.choice(_APP_LINES), None, "good"


def _rate(run: Callable[[], object], count: int, repeat: int = 3) -> float:
    best = min(_timed(run) for _ in range(repeat))
    return count / best


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _consume(items: Iterable[object]) -> None:
    for _ in items:
        pass


def throughput(cases: list[dict[str, Any]], total: int, seed: int) -> None:
    mix = traffic(cases, total, random.Random(seed))
    texts = [_full_text(r) for r in mix]
    whole = [_case_record(c) for c in cases] * max(1, 20_000 // len(cases))
    whole_texts = [_full_text(r) for r in whole]

    def ours_full(records: list[LogRecord]) -> Callable[[], object]:
        def run() -> None:
            ledger = MigrationLedger()
            for entry in records:
                ledger.observe(entry)
                classify(entry, ledger)

        return run

    rows = [
        (
            f"realistic mix ({total:,} entries, 95% ordinary, 5% fixture lines)",
            _rate(ours_full(mix), len(mix)),
            _rate(lambda: _consume(classify_text(t) for t in texts), len(mix)),
            _rate(lambda: _consume(naive_classify(t) for t in texts), len(mix)),
        ),
        (
            f"fixture texts only ({len(whole):,} whole entries, tracebacks)",
            _rate(ours_full(whole), len(whole)),
            _rate(lambda: _consume(classify_text(t) for t in whole_texts), len(whole)),
            _rate(lambda: _consume(naive_classify(t) for t in whole_texts), len(whole)),
        ),
    ]
    print("## Throughput, one core, entries/second (best of 3)\n")
    print(
        "| traffic | observe + classify | classify_text | naive baseline "
        "| observe + classify / naive | classify_text / naive |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, full, text_only, naive in rows:
        print(
            f"| {name} | {full:,.0f} | {text_only:,.0f} | {naive:,.0f} "
            f"| {full / naive:.1f}x | {text_only / naive:.1f}x |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    cases = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
    accuracy(cases)
    throughput(cases, args.records, args.seed)


if __name__ == "__main__":
    main()
