#!/usr/bin/env python3
"""Summarises bench/run's raw data (stdlib only).

results.jsonl: one line per wrk run {round, pos, case, cpu_ticks, upstream_cpu_ticks, clk_tck,
wrk: {requests, duration_us, p50_us, p99_us, ...}}. extras.jsonl: start-up/RSS and callgrind
lines. Prints the summary and writes the Markdown section (bench/RESULTS.md).

Ratios are computed inside each round (same minute, same machine state) and then summarised as
the median and the middle half over rounds: on a shared 2-core machine only same-round ratios
carry meaning; absolute numbers are printed for orientation.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict

CASES = ["direct", "host_filter", "host_plain", "nginx_proxy", "host_noop"]
LABEL = {
    "direct": "(1) upstream direct (nginx, static JSON)",
    "host_filter": "(2) failover-host + failover filter",
    "host_plain": "(3) failover-host, no filter",
    "nginx_proxy": "(4) nginx `proxy_pass`, keep-alive upstream",
    "host_noop": "(5) failover-host + no-op proxy-wasm filter (the ABI floor)",
}


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def derive(row):
    w = row["wrk"]
    secs = max(w["duration_us"], 1) / 1e6
    req = max(w["requests"], 1)
    errors = w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["non2xx"] + w["timeouts"]
    return {
        "rps": w["requests"] / secs,
        "p50": w["p50_us"] / 1000.0,
        "p99": w["p99_us"] / 1000.0,
        "cpu_us": row["cpu_ticks"] / row["clk_tck"] * 1e6 / req,
        "up_cpu_us": row["upstream_cpu_ticks"] / row["clk_tck"] * 1e6 / req,
        "errors": errors,
        "requests": w["requests"],
    }


def summary(values):
    """(median, low quartile, high quartile) — quartiles equal the median for one value."""
    values = sorted(values)
    med = statistics.median(values)
    if len(values) < 2:
        return med, med, med
    q = statistics.quantiles(values, n=4, method="inclusive")
    return med, q[0], q[2]


def by_round(rows):
    rounds = defaultdict(dict)
    for row in rows:
        rounds[row["round"]][row["case"]] = derive(row)
    return rounds


def ratios(rounds):
    out = defaultdict(list)
    for r in sorted(rounds):
        c = rounds[r]
        if all(k in c for k in ("host_filter", "nginx_proxy")):
            out["rps_2_4"].append(c["host_filter"]["rps"] / c["nginx_proxy"]["rps"])
            out["p99_2_4"].append(c["host_filter"]["p99"] / max(c["nginx_proxy"]["p99"], 1e-9))
        if all(k in c for k in ("host_filter", "host_plain")):
            out["rps_2_3"].append(c["host_filter"]["rps"] / c["host_plain"]["rps"])
            out["p99_2_3"].append(c["host_filter"]["p99"] / max(c["host_plain"]["p99"], 1e-9))
            out["cpu_filter"].append(c["host_filter"]["cpu_us"] - c["host_plain"]["cpu_us"])
            out["cpu_share"].append(
                (c["host_filter"]["cpu_us"] - c["host_plain"]["cpu_us"]) / max(c["host_plain"]["cpu_us"], 1e-9)
            )
        if all(k in c for k in ("host_plain", "nginx_proxy")):
            out["rps_3_4"].append(c["host_plain"]["rps"] / c["nginx_proxy"]["rps"])
        if all(k in c for k in ("host_noop", "host_plain")):
            floor = c["host_noop"]["cpu_us"] - c["host_plain"]["cpu_us"]
            out["floor"].append(floor)
            if "host_filter" in c and floor > 0:
                ours = c["host_filter"]["cpu_us"] - c["host_plain"]["cpu_us"]
                out["ours_over_floor"].append(ours / floor)
    return out


def fmt_range(values, fmt="{:.3f}"):
    med, lo, hi = summary(values)
    if len(values) < 2:
        return fmt.format(med)
    return (fmt + " ({}–{})").format(med, fmt.format(lo), fmt.format(hi))


def round_line(rows, r):
    c = by_round([x for x in rows if x["round"] == r]).get(r, {})
    parts = [f"{k} {c[k]['rps']:.0f}/s p99 {c[k]['p99']:.2f}ms" for k in CASES if k in c]
    rt = ratios({r: c})
    if rt.get("rps_2_4"):
        parts.append(f"(2)/(4) {rt['rps_2_4'][0]:.3f}")
    if rt.get("rps_2_3"):
        parts.append(f"(2)/(3) {rt['rps_2_3'][0]:.3f}")
    if rt.get("floor"):
        parts.append(f"floor (5)-(3) {rt['floor'][0]:.1f}us")
    if rt.get("ours_over_floor"):
        parts.append(f"filter/floor {rt['ours_over_floor'][0]:.2f}x")
    return "; ".join(parts)


def extras_section(extras, meta):
    lines = []
    starts = defaultdict(list)
    cg = {}
    for e in extras:
        if e["kind"] == "start":
            starts[(e["filter"], e["concurrency"])].append(e)
        elif e["kind"] == "callgrind":
            cg[e["filter"]] = e
    wasm = int(meta.get("wasm_bytes", "0") or 0)
    lines.append("| measure | value |")
    lines.append("|---|---|")
    lines.append(f"| `.wasm` size (embedded filter) | {wasm:,} bytes ({wasm / 1024:.0f} KiB) |")
    if starts:
        for filt in (1, 0):
            name = "with filter" if filt else "no filter"
            rss = {}
            for conc in (1, 2, 4):
                xs = starts.get((filt, conc))
                if not xs:
                    continue
                ready = statistics.median(x["ready_ms"] for x in xs)
                rss[conc] = statistics.median(x["rss_kb"] for x in xs)
                lines.append(
                    f"| start → `/ready`, {name}, `--concurrency {conc}` | {ready:.0f} ms (RSS {rss[conc] / 1024:.1f} MiB) |"
                )
            if 1 in rss and 4 in rss:
                lines.append(f"| RSS growth per added worker, {name} | {(rss[4] - rss[1]) / 3 / 1024:.2f} MiB |")
        r1f, r4f = starts.get((1, 1)), starts.get((1, 4))
        r1p, r4p = starts.get((0, 1)), starts.get((0, 4))
        if r1f and r4f and r1p and r4p:
            slope_f = (statistics.median(x["rss_kb"] for x in r4f) - statistics.median(x["rss_kb"] for x in r1f)) / 3
            slope_p = (statistics.median(x["rss_kb"] for x in r4p) - statistics.median(x["rss_kb"] for x in r1p)) / 3
            lines.append(f"| **RSS per worker VM** (growth with filter − without) | **{(slope_f - slope_p) / 1024:.2f} MiB** |")
    for key, name in (("rss_after_load_filter_kb", "with filter"), ("rss_after_load_plain_kb", "no filter")):
        if meta.get(key):
            lines.append(f"| RSS after the load runs, {name}, {meta.get('workers', '?')} workers | {int(meta[key]) / 1024:.1f} MiB |")
    if cg:
        per = {}
        for filt, e in cg.items():
            per[filt] = e["instructions"] / max(e["requests"], 1)
            ok = "" if e["ok"] == e["requests"] else f" — only {e['ok']}/{e['requests']} answered 200"
            name = "with filter" if filt else "no filter"
            lines.append(f"| callgrind instructions per request, whole host, {name} | {per[filt]:,.0f}{ok} |")
        if 0 in per and 1 in per:
            lines.append(
                f"| **callgrind instructions per request in the filter** (with − without) | **{per[1] - per[0]:,.0f}** "
                f"({(per[1] - per[0]) / max(per[0], 1) * 100:.1f} % of the pass-through host) |"
            )
    hp = {e["case"]: e for e in extras if e["kind"] == "hot_path"}
    if hp:
        base = hp.get("no_filter")
        base_per = base["instructions"] / max(base["requests"], 1) if base else 0.0
        for case, label in (
            ("no_filter", "chain driver alone, no filter"),
            ("record_unchanged", "filter, record unchanged"),
            ("record_changed", "filter, record changed before each request"),
            ("failure_recorded", "filter, 503 recorded (one CAS write)"),
        ):
            e = hp.get(case)
            if not e:
                continue
            n = max(e["requests"], 1)
            per = e["instructions"] / n
            extra = ""
            if case != "no_filter" and base:
                extra = f"; filter share **{per - base_per:,.0f}**"
            lines.append(
                f"| callgrind hot path (host/benches/hot_path.rs), {label} | {per:,.0f} instructions/request{extra}; "
                f"shared-data get {e['shared_get_calls'] / n:.2f}, set {e['shared_set_calls'] / n:.2f} per request |"
            )
    return lines


def store_verdict(rows_md, cores):
    """Goal: throughput × previous ≥ 0.8 for every added thread up to the core count."""
    steps = []
    for line in rows_md:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 4 and cells[0].isdigit() and 1 < int(cells[0]) <= cores:
            try:
                steps.append((int(cells[0]), float(cells[3])))
            except ValueError:
                continue
    if not steps:
        return ""
    ok = all(s >= 0.8 for _, s in steps)
    shown = ", ".join(f"{t} threads {s:.2f}×" for t, s in steps)
    return f"Scaling up to the core count ({shown} the previous): {'met' if ok else '**missed**'} (goal ≥ 0.8×)."


def markdown(rows, extras, meta, perf, store_table=None):
    rounds = by_round(rows)
    rt = ratios(rounds)
    per_case = defaultdict(lambda: defaultdict(list))
    errors = defaultdict(int)
    for r in rounds.values():
        for k, v in r.items():
            for m in ("rps", "p50", "p99", "cpu_us", "up_cpu_us"):
                per_case[k][m].append(v[m])
            errors[k] += v["errors"]
    n = len(rounds)
    out = []
    out.append("## Benchmarks")
    out.append("")
    quick = meta.get("quick") == "1"
    out.append(
        f"Measured by `bench/run`{' --quick (smoke run: numbers indicative only)' if quick else ''} on "
        f"{meta.get('date', '?')}: {meta.get('nproc', '?')} cores ({meta.get('cpu', '?')}), Linux {meta.get('kernel', '?')}, "
        f"shared by the load generator, the upstream and the proxy under test. `wrk -t{meta.get('threads')} "
        f"-c{meta.get('connections')}`, {meta.get('duration')} s per run, {n} round(s) of the cases back to back "
        f"(order reversed every other round), GET of a {meta.get('body_bytes', '?')}-byte JSON answer. Proxies run "
        f"{meta.get('workers')} workers; failover-host built with `--profile {meta.get('profile')}`; "
        f"nginx {meta.get('nginx', '?')} (upstream: {meta.get('upstream_workers')} worker, `return 200`). "
        "Medians over rounds, middle half in brackets."
        + (f" failover-host ran with `{meta['host_env']}`." if meta.get("host_env") else "")
    )
    out.append("")
    out.append("| case | requests/s | p50 ms | p99 ms | proxy CPU µs/request | errors |")
    out.append("|---|---|---|---|---|---|")
    for k in CASES:
        if k not in per_case:
            continue
        d = per_case[k]
        cpu = "—" if k == "direct" else fmt_range(d["cpu_us"], "{:.1f}")
        out.append(
            f"| {LABEL[k]} | {fmt_range(d['rps'], '{:.0f}')} | {fmt_range(d['p50'], '{:.2f}')} | "
            f"{fmt_range(d['p99'], '{:.2f}')} | {cpu} | {errors[k]} |"
        )
    out.append("")
    out.append("| ratio (per round, then median) | value | goal | |")
    out.append("|---|---|---|---|")

    def goal_row(label, key, goal, ok):
        if not rt.get(key):
            return
        med = summary(rt[key])[0]
        verdict = "" if goal == "—" else ("met" if ok(med) else "**missed**")
        out.append(f"| {label} | {fmt_range(rt[key])} | {goal} | {verdict} |")

    goal_row("(2)/(4) requests/s: host + filter vs nginx", "rps_2_4", "≥ 1.0", lambda m: m >= 1.0)
    goal_row("(2)/(4) p99: host + filter vs nginx", "p99_2_4", "≤ 1.2", lambda m: m <= 1.2)
    goal_row("(2)/(3) requests/s: filter vs no filter", "rps_2_3", "≥ 0.95", lambda m: m >= 0.95)
    goal_row("(2)/(3) p99: filter vs no filter", "p99_2_3", "—", lambda m: True)
    goal_row("(3)/(4) requests/s: host alone vs nginx", "rps_3_4", "—", lambda m: True)
    if rt.get("cpu_filter"):
        out.append(
            f"| filter CPU per request ((2) − (3) proxy CPU) | {fmt_range(rt['cpu_filter'], '{:.1f}')} µs "
            f"= {fmt_range([x * 100 for x in rt['cpu_share']], '{:.1f}')} % of the host's own | ≤ 5 % | "
            f"{'met' if summary(rt['cpu_share'])[0] <= 0.05 else '**missed**'} |"
        )
    if rt.get("floor"):
        med = summary(rt["floor"])[0]
        verdict = "met" if med <= 2.5 else f"**missed** by {med - 2.5:.1f} µs"
        out.append(
            f"| proxy-wasm floor per request ((5) − (3) proxy CPU) | {fmt_range(rt['floor'], '{:.1f}')} µs | "
            f"≤ 2.5 µs | {verdict} |"
        )
    if rt.get("ours_over_floor"):
        med = summary(rt["ours_over_floor"])[0]
        verdict = "met" if med <= 1.3 else f"**missed** by {med - 1.3:.2f}×"
        out.append(
            f"| our filter as a multiple of the floor (((2) − (3)) / ((5) − (3))) | "
            f"{fmt_range(rt['ours_over_floor'], '{:.2f}')}× | ≤ 1.3× | {verdict} |"
        )
    out.append("")
    ex = extras_section(extras, meta)
    if ex:
        out.extend(ex)
        out.append("")
    if any(errors.values()):
        out.append(
            "**Errors were seen** (connect/read/write/timeouts/non-2xx): a case with errors is not a valid "
            "measurement; see `target/bench/last/wrk-*.txt`."
        )
        out.append("")
    if store_table:
        with open(store_table, encoding="utf-8", errors="replace") as f:
            rows_md = [l.rstrip() for l in f if l.startswith("|") or l.startswith("store::update") or l.startswith("(no update")]
        if rows_md:
            out.append("`store::update` under contention (`cargo bench -p failover-filter --bench store_update -- --table`; "
                       "goal: ≥ 0.8× per added thread up to the core count, no count lost):")
            out.append("")
            out.extend(l for l in rows_md if l.startswith("|"))
            out.append("")
            out.append(" ".join(l for l in rows_md if not l.startswith("|")))
            out.append("")
            verdict = store_verdict(rows_md, int(meta.get("nproc", "2") or 2))
            if verdict:
                out.append(verdict)
                out.append("")
    if perf:
        out.append("Top symbols of (2) under load (`perf`, self time):")
        out.append("")
        out.append("```")
        with open(perf, encoding="utf-8", errors="replace") as f:
            lines = [l.rstrip() for l in f if not l.startswith("#")]
        # one blank line between the two listings (by binary, by symbol), none elsewhere
        kept = []
        for l in lines:
            if l or (kept and kept[-1]):
                kept.append(l)
        while kept and not kept[-1]:
            kept.pop()
        out.extend(kept[:36])
        out.append("```")
        out.append("")
    out.append(
        "Where the filter's time goes, and what to change: [bench/PROFILE.md](PROFILE.md). "
    )
    out.append("")
    out.append(
        "Reproduce: `bench/run` (full, ~10 min after the build) or `bench/run --quick` (CI smoke run). "
        "Raw data of the last run: `target/bench/last/`."
    )
    return "\n".join(out) + "\n"


README_BEGIN = "<!-- bench:begin (written by bench/run from bench/RESULTS.md; do not edit) -->"
README_END = "<!-- bench:end -->"


def headline(md):
    """The machine/date paragraph and the first two tables (cases, ratios) of a report."""
    lines = md.splitlines()
    out, tables = [], 0
    for i, line in enumerate(lines):
        if i == 0 and line.startswith("## "):
            continue
        out.append(line)
        if line.startswith("|") and (i + 1 == len(lines) or not lines[i + 1].startswith("|")):
            tables += 1
            if tables == 2:
                break
    while out and not out[0].strip():
        out.pop(0)
    out.append("")
    out.append("All numbers of that run (size, memory, start-up, callgrind, `store::update` scaling): "
               "[bench/RESULTS.md](bench/RESULTS.md); where the time goes: [bench/PROFILE.md](bench/PROFILE.md).")
    return "\n".join(out)


def update_readme(path, md):
    """Replaces the block between the bench markers of the README with the headline."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.find(README_BEGIN)
    end = text.find(README_END)
    if start < 0 or end < start:
        print(f"report.py: {path} has no bench markers; not updated", file=sys.stderr)
        return
    new = text[: start + len(README_BEGIN)] + "\n" + headline(md) + "\n" + text[end:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results")
    ap.add_argument("--round", type=int, help="print a one-line summary of this round and exit")
    ap.add_argument("--extras")
    ap.add_argument("--out")
    ap.add_argument("--meta", action="append", default=[], help="key=value")
    ap.add_argument("--perf")
    ap.add_argument("--store-table", help="output of the store_update bench's --table mode")
    ap.add_argument("--readme", help="also put the headline tables between the bench markers of this README")
    a = ap.parse_args()
    rows = load(a.results)
    if a.round is not None:
        print(round_line(rows, a.round))
        return 0
    meta = dict(m.split("=", 1) for m in a.meta if "=" in m)
    extras = load(a.extras) if a.extras else []
    md = markdown(rows, extras, meta, a.perf, a.store_table)
    sys.stdout.write(md)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(md)
    if a.readme:
        update_readme(a.readme, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
