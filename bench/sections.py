"""The peers, API-cost and footprint sections of docs/benchmarks.md (see render.py).

Why a module of its own: each section joins a table with the facts it is judged against
(the peers' documented parameters, gcp-facts.md's quotas), and keeping those next to the
tables that use them keeps render.py readable.
"""

from __future__ import annotations

from typing import Any

from report import PEER_LABEL, PEERS, fmt, ratio, table

#: docs/gcp-facts.md (per project): what each API's steady-state calls are judged against.
QUOTAS = {
    "monitoring.ListTimeSeries": ("6,000 time-series queries/min", 6000.0),
    "logging.ListLogEntries": ("60 requests/min", 60.0),
    "logging.TailLogEntries": ("10 open tail sessions", 10.0),
    "run.ListServices": ("not listed in gcp-facts.md", None),
}

POLICIES = table(
    ["decider", "what it reads, how often", "rolls back when", "source"],
    [
        [
            "Deploy Guard",
            "logs (live tail), 5xx request-log entries of a canary, Monitoring `request_count` "
            "every 60 s; Cloud Run every 10 s",
            "one migration failure; two schema mismatches; a sequential 5xx test against the "
            "previous revision (\N{GREEK SMALL LETTER ALPHA} 0.001, "
            "\N{MULTIPLICATION SIGN}2, floor 2 %, \N{GREATER-THAN OR EQUAL TO} 50 requests), "
            "never on no data",
            "`rules/*.yaml`",
        ],
        [
            "Cloud Run Release Manager",
            "Monitoring `request_count` of the candidate revision over the last 30 min (one "
            "ALIGN_DELTA period), every minute (Cloud Scheduler `* * * * *`)",
            "one Unhealthy diagnosis: 5xx > 1 %; `-min-requests 0`, so no traffic (rate 0) "
            "reads healthy",
            "anchors.md; its `internal/metrics/stackdriver`, `pkg/health`, `pkg/rollout`, README",
        ],
        [
            "Flagger",
            "the canary's 5xx share over the last 1 min, every 60 s (`analysis.interval`), "
            "Cloud Monitoring (its MQL template, asked here as the equivalent ListTimeSeries)",
            "`failedChecks \N{GREATER-THAN OR EQUAL TO} threshold` (1) at the next tick; a "
            "failed check is a 5xx share > 1 % (`request-success-rate` min 99) or no value "
            "(`ErrNoValuesFound`)",
            "anchors.md; its `pkg/controller/scheduler.go`, `scheduler_metrics.go`, "
            "`providers/stackdriver.go`",
        ],
        [
            "Flagger, tuned (hypothetical)",
            "as Flagger, over the last 5 min",
            "as Flagger, but no value is skipped, not failed: not Flagger's behaviour, shown "
            "to separate the lag problem from the threshold",
            "\N{EN DASH}",
        ],
    ],
)


def peers_section(data: dict[str, Any]) -> str:
    s = data["summary"]
    bad_rows, benign_rows = [], []
    for key, v in s.items():
        if v["kind"] == "benign":
            counts = [str(v[w]["false_reverts"]) for w in ("guard", *PEERS)]
            benign_rows.append([f"`{key}`", str(v["n"]), *counts])
            continue
        g = v["guard"]["ttr"].get("p50")
        row = [f"`{key}`", str(v["n"]), fmt(g)]
        row += [fmt(v[p]["ttr"].get("p50")) for p in PEERS]
        row += [ratio(g, v[p]["ttr"].get("p50")) for p in PEERS]
        row.append(" / ".join(str(v[w]["missed"]) for w in ("guard", *PEERS)))
        bad_rows.append(row)
    labels = [PEER_LABEL[p] for p in PEERS]
    return "\n\n".join([
        "## 2. Against the peers, on the same runs\n\nThe peers' policies as the brief and "
        "docs/anchors.md give them, implemented from their sources as deciders that only "
        "decide (`bench/peers.py`):",
        POLICIES,
        "Bad deploys: p50 time to revert (from the first error log line for log-driven "
        "scenarios, from the 5xx onset otherwise), the guard's ratio to each peer, and the "
        "runs each one missed (guard / " + " / ".join(labels) + "):",
        table(["scenario", "N", "guard p50", *[f"{x} p50" for x in labels],
               *[f"guard ÷ {x}" for x in labels], "missed"], bad_rows),
        "Benign deploys (a healthy deploy of a busy service; a quiet service with a 5xx now "
        "and then; a busy service whose usual 5xx rate is 1.5 %; a quiet 10 % canary): runs "
        "falsely reverted by each decider.",
        table(["scenario", "N", "guard", *labels], benign_rows),
        _peer_reading(s),
    ])  # fmt: skip


def _peer_reading(s: dict[str, Any]) -> str:
    benign = [v for v in s.values() if v["kind"] == "benign"]
    total = sum(v["n"] for v in benign)
    fl = sum(v["flagger"]["false_reverts"] for v in benign)
    rm = sum(v["release-manager"]["false_reverts"] for v in benign)
    real = [v for k, v in s.items() if "@" not in k]  # a what-if replays the peers' runs
    empty = sum(v["flagger"]["rolled_back_on_empty"] for v in real)
    rollbacks = sum(
        v["flagger"]["false_reverts"] if v["kind"] == "benign" else v["n"] - v["flagger"]["missed"]
        for v in real
    )
    reading = (
        f"Reading it: Flagger reverted {fl} of {total} benign deploys, and {empty} of all its "
        f"{rollbacks} rollbacks (bad deploys included) followed a check that found no value: "
        "a 1-minute window on a metric that shows a minute only 120 s after it ends is empty, "
        "and an empty result fails the check. Its quick reverts of bad deploys are that rule, "
        f"not detection. The Release Manager reverted {rm} of {total} benign deploys: a fixed "
        "1 % threshold with no minimum sample flags a quiet service's first 5xx and a service "
        "whose normal rate is above 1 %. Neither reads logs, so neither can act before "
        "Monitoring shows a point."
    )
    return _trigger3_reading(s) + "\n\n" + reading


def _trigger3_reading(s: dict[str, Any]) -> str:
    """Why the 100 % 5xx-only deploy is the one case where a peer can be as fast."""
    key = "trigger3-error-rate"
    drifting = s.get(f"{key} @ Monitoring read at a random phase")
    if key not in s:
        return ""
    g, rm = s[key]["guard"], s[key]["release-manager"]
    wait = s[key]["stages"].get("visible -> verdict (metrics cycle phase, evidence)")
    text = (
        f"`{key}` (all traffic moves at once, 5xx only, nothing in the logs) is the case where "
        f"only Monitoring can tell, so everyone waits for the same first visible point: the "
        f"guard's p50 is {fmt(g['ttr'].get('p50'))} from the onset against the Release "
        f"Manager's {fmt(rm['ttr'].get('p50'))}. The Release Manager runs on the minute, the "
        f"very second the fake makes a point visible (its best case); the guard reads "
        f"`metrics_phase_seconds` (5 s) past each minute, a margin for Monitoring's variable "
        f"ingestion delay (median wait after the point is visible: {fmt(wait)})."
    )
    if drifting is not None:
        a = drifting["guard"]["ttr"].get("p50")
        same = drifting["release-manager"]["ttr"].get("p50")
        text += (
            f" Reading at a random phase instead, as `guard run` did before the metrics cycle "
            f"was aligned to the minute (the what-if rows, {drifting['n']} of the same seeds), "
            f"the guard's p50 is {fmt(a)} against the Release Manager's {fmt(same)} on those "
            f"seeds ({ratio(a, same)})."
        )
    return text


def api_section(data: dict[str, Any]) -> str:
    rows = []
    worst: dict[str, float] = {}
    for c in data["cost"]:
        w, p = c["watching_per_minute"], c["projects"]
        cells = []
        for api in ("run.ListServices", "monitoring.ListTimeSeries", "logging.ListLogEntries"):
            total = w.get(api, 0.0)
            worst[api] = max(worst.get(api, 0.0), total / p)
            cells.append(f"{total:,.1f} ({total / p:,.2f})")
        tails = c["startup"].get("logging.TailLogEntries", 0)
        worst["logging.TailLogEntries"] = max(worst.get("logging.TailLogEntries", 0.0), tails / p)
        idle = c["idle_per_minute"]
        rows.append([f"{c['services']:,}", str(p), *cells, f"{tails / p:g}",
                     f"{sum(idle.values()):,.1f}", f"{sum(c['startup'].values()):,}"])  # fmt: skip
    quota_rows = []
    for api, (text, limit) in QUOTAS.items():
        use = worst.get(api, 0.0)
        share = f"{100 * use / limit:.2f} %" if limit else "\N{EN DASH}"
        quota_rows.append([api, f"{use:,.2f}", text, share])
    fl = data["filter_limit"]
    real = fl["realistic"]
    short_chars = fl["short"].get("chars_at_1000", 0)
    filt = (
        f"The log tail's filter names every watched service of a project; Logging allows "
        f"{fl['limit_chars']:,} characters. With names like `{fl['short']['example']}` 1,000 "
        f"services take {short_chars:,} characters; with names like "
        f"`{real['example']}` the guard refuses the filter beyond "
        f"{real['fits_up_to_tested']:,} services in one project "
        f"(`{real.get('error_at_1000', 'fits')}` at 1,000), so one project is capped near "
        "that count: the cost runs use short names."
    )
    return "\n\n".join([
        "## 3. Google API cost\n\nCalls per minute the fake served, by API, with every "
        "service's deploy under watch (per project in brackets); one-off start-up calls "
        "(first reads, log backfill, opening the tails) and the idle rate (no deploy under "
        "watch: no Monitoring reads at all) apart. Fleets of 0.2 rps per service, 0.5 % 5xx "
        "(`bench/api_cost.py`); 10 services spread over 10 projects, the most they can.",
        table(["services", "projects", "Cloud Run ListServices /min",
               "Monitoring ListTimeSeries /min", "Logging ListLogEntries /min",
               "tails per project", "idle calls /min", "start-up calls"], rows),
        "Against the quotas in docs/gcp-facts.md, the highest per-project use of any size:",
        table(["API", "per project", "quota per project", "share"], quota_rows),
        _backfill_reading(data) + " " + filt,
    ])  # fmt: skip


def scale_section(data: dict[str, Any]) -> str:
    rows = []
    for label, r in (("footprint", data["footprint"]), ("scale", data["scale"])):
        lag = r["cycle_lag_s"]
        calls = ", ".join(f"{k} {v:g}" for k, v in r["guard_calls_per_minute"].items())
        rows.append([label, f"{r['services']:,} / {r['projects']}", f"{r['rss_mb_median']} MB",
                     f"{r['rss_mb_peak']} MB", f"{r['cpu_percent_of_one_core']} %",
                     " / ".join(f"{lag[j]['max']:g} s" for j in ("poll", "metrics", "evaluate")
                                if j in lag), calls])  # fmt: skip
    imports = [[f"`{i['module']}`", f"+{i['added_mb']} MB", f"{i['total_mb']} MB"]
               for i in data["imports_rss"]]  # fmt: skip
    return "\n\n".join([
        "## 4. Footprint and scale\n\n`guard run CONFIG` as a child process (production "
        "intervals: poll 10 s, Monitoring 60 s, evaluate 1 s; SQLite store) against a fleet "
        "playing in real time in the bench process; every service deploys a healthy revision "
        "as the guard starts, so the window is the busy steady state (every deploy under "
        f"watch). Window {data['footprint']['window_s']:.0f} s after "
        "a warm-up; RSS from /proc (steady = median of 1 s samples, peak = VmHWM), CPU = "
        "utime + stime over the window; lag = `guard_cycle_lag_seconds` (how late each job "
        "started), the maximum over all apps and 2 s scrapes; calls from the guard's own "
        "`guard_google_api_calls_total`.",
        table(["run", "services / projects", "RSS steady", "RSS peak", "CPU (one core)",
               "max cycle lag poll / metrics / evaluate", "guard's counted calls /min"], rows),
        _cycle_reading(data),
        _memory_reading(data),
        "Where the memory goes: a fresh interpreter importing, one after another, what "
        "`guard run` imports (RSS after each):",
        table(["import", "adds", "RSS"], imports),
        _double_count(data),
    ])  # fmt: skip


def _memory_reading(data: dict[str, Any]) -> str:
    fp, sc = data["footprint"], data["scale"]
    base = data["imports_rss"][-1]["total_mb"]
    per = (sc["rss_mb_median"] - fp["rss_mb_median"]) * 1024 / (sc["services"] - fp["services"])
    return (
        f"Of the {fp['rss_mb_median']} MB at {fp['services']} services, {base} MB is the "
        f"interpreter and the libraries `guard run` imports, measured before it reads any "
        f"configuration; watching adds about {per:.0f} kB per service (from "
        f"{fp['services']} to {sc['services']:,} services, steady RSS "
        f"{fp['rss_mb_median']} \N{RIGHTWARDS ARROW} {sc['rss_mb_median']} MB)."
    )


def _double_count(data: dict[str, Any]) -> str:
    """The guard's own call metric, checked against what the fake served."""
    calls = data["footprint"]["guard_calls_per_minute"]
    plain, qualified = "logging.ListLogEntries", "logging.LoggingServiceV2.ListLogEntries"
    if plain in calls and calls.get(qualified) == calls[plain]:
        return (
            f"The guard's own `guard_google_api_calls_total` counts every ListLogEntries twice: "
            f"as `{plain}` (the log source's own counter) and as `{qualified}` (the gRPC "
            f"interceptor), {calls[plain]:g}/min each in the footprint run, so a dashboard "
            f"summing the metric over methods overstates Logging calls."
        )
    return "The guard's own `guard_google_api_calls_total` agrees with the fake's counts."


def _cycle_reading(data: dict[str, Any]) -> str:
    """What one cycle costs at the largest fleet (the lag metric says when cycles start,
    not how long they run)."""
    big = max(data["cost"], key=lambda c: (c["services"], c["projects"]))
    cyc = big["cycle_seconds"]
    parts = ", ".join(
        f"{name} {cyc[name]['median']:.2f} s median / {cyc[name]['max']:.2f} s max"
        for name in ("poll", "metrics", "evaluate")
        if name in cyc
    )
    inside = cyc.get("poll", {}).get("max", 0) < 10 and cyc.get("metrics", {}).get("max", 0) < 60
    return (
        f"`guard_cycle_lag_seconds` says how late a cycle started, not how long it ran. The "
        f"cycles' own duration at {big['services']:,} services over {big['projects']} "
        f"projects, timed in the virtual-clock cost run (wall time, with the fake cloud "
        f"serving from the same process and other replays sharing the two cores, so an upper "
        f"bound): {parts}"
        + ("; all inside the 10 s poll and 60 s Monitoring intervals." if inside else ".")
    )


def _backfill_reading(data: dict[str, Any]) -> str:
    """ListLogEntries after start-up: the tails' one-off backfills, shown fading."""
    big = max(data["cost"], key=lambda c: (c["projects"], c["services"]))
    idle = big["idle_per_minute"].get("logging.ListLogEntries", 0.0)
    later = big["watching_per_minute"].get("logging.ListLogEntries", 0.0)
    return (
        "ListLogEntries after start-up are the tails' backfills: each tail backfills once when "
        "its first entry proves it open (docs/log-source.md), and a quiet project's first "
        f"entry may come minutes later; at {big['services']:,} services over "
        f"{big['projects']} projects they fell from {idle:g}/min in the idle window "
        f"(t = 10\N{EN DASH}60 s) to {later:g}/min in the watching window "
        "(t = 120\N{EN DASH}240 s)."
    )
