#!/usr/bin/env python3
"""bench/llm's helper (stdlib only): the SSE client it measures with, and its Markdown report.

  llm_report.py sse --url URL --streams N --repeat R [--tag k=v ...] --out FILE
      N streams at once (one keep-alive connection each, opened before timing starts), R times
      in a row; appends one JSON line per stream to FILE: time to first event (TTFE, from the
      request's first byte sent to the arrival of the first complete event), the gaps between
      events as they arrived, total duration, status, event count.
  llm_report.py seq --url URL --body-file FILE --duration S
      POSTs FILE again and again on one keep-alive connection for S seconds; prints one JSON
      summary (the keys of bench/wrk-report.lua's line) with percentiles of the raw latencies.
  llm_report.py report DIR --out FILE [--meta k=v ...]
      reads DIR/sse.jsonl, DIR/post.jsonl, DIR/failover.jsonl and writes the Markdown.

Why a client of our own for SSE: wrk and curl report when bytes arrive, not when an event is
complete; batching by a proxy shows up only as events arriving closer together than the
upstream sent them (here 20 ms apart), so every event is timestamped the moment the recv() that
completes it returns. One thread, one selector over all N sockets, so no thread or GIL wake-up
sits between the kernel and the timestamp.

Comparisons (delta vs direct, ratio vs nginx) are computed inside each round and then reported
as the median over rounds: on a shared 2-core machine only same-round comparisons mean much.
"""

import argparse
import json
import selectors
import socket
import statistics
import sys
import time
from collections import defaultdict
from urllib.parse import urlsplit

TARGETS = ["direct", "host", "nginx"]
LABEL = {
    "direct": "direct (mock-upstream)",
    "host": "failover-host + filter",
    "nginx": "nginx",
}
SMALL_GAP_MS = 5.0


# ======================================================================= the SSE client =====

class Stream:
    """One HTTP/1.1 request on a kept-alive socket and the parsing of its answer.

    The answer may be chunked (mock-upstream, nginx, failover-host all chunk a stream),
    have a content-length, or run until close; the decoded body is split into SSE events at
    blank lines ("\\n\\n"), each stamped with the time of the recv() that completed it.
    """

    def __init__(self, sock, request):
        self.sock = sock
        self.request = request
        self.reset()

    def reset(self):
        self.raw = b""            # bytes not parsed yet
        self.head_done = False
        self.status = 0
        self.chunked = False
        self.remaining = None     # content-length left, or bytes left in the current chunk
        self.until_close = False
        self.body_pending = b""   # decoded body not yet split into events
        self.events = []          # arrival times (ns) of complete events
        self.t_headers = None
        self.done = False
        self.error = None
        self.keep_alive = True

    def send(self):
        self.reset()
        self.t0 = time.perf_counter_ns()
        self.sock.sendall(self.request)

    def on_data(self, data, now):
        if not data:
            if self.until_close and self.head_done:
                self._body(b"", now)
                self.done = True
            else:
                self.error = "connection closed before the end of the answer"
                self.done = True
            self.keep_alive = False
            return
        self.raw += data
        if not self.head_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head(self.raw[:end].decode("latin-1"))
            self.raw = self.raw[end + 4:]
            self.t_headers = now
        self._decode(now)

    def _head(self, text):
        lines = text.split("\r\n")
        self.status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip().lower()
        self.head_done = True
        if "chunked" in headers.get("transfer-encoding", ""):
            self.chunked = True
        elif "content-length" in headers:
            self.remaining = int(headers["content-length"])
        else:
            self.until_close = True
        if headers.get("connection") == "close":
            self.keep_alive = False

    def _decode(self, now):
        if self.until_close:
            self._body(self.raw, now)
            self.raw = b""
            return
        if not self.chunked:
            take = self.raw[:self.remaining]
            self.raw = self.raw[len(take):]
            self.remaining -= len(take)
            self._body(take, now)
            if self.remaining == 0:
                self.done = True
            return
        while True:
            if self.remaining is None:   # at a chunk-size line
                end = self.raw.find(b"\r\n")
                if end < 0:
                    return
                size = int(self.raw[:end].split(b";")[0], 16)
                self.raw = self.raw[end + 2:]
                if size == 0:            # last chunk (no trailers expected)
                    self._body(b"", now)
                    self.done = True
                    return
                self.remaining = size
            take = self.raw[:self.remaining]
            self.raw = self.raw[len(take):]
            self.remaining -= len(take)
            self._body(take, now)
            if self.remaining > 0:
                return
            if len(self.raw) < 2:        # wait for the CRLF that ends the chunk
                self.remaining = 0
                return
            self.raw = self.raw[2:]
            self.remaining = None

    def _body(self, data, now):
        self.body_pending += data
        while True:
            i = self.body_pending.find(b"\n\n")
            if i < 0:
                break
            self.body_pending = self.body_pending[i + 2:]
            self.events.append(now)

    def record(self):
        ms = lambda ns: ns / 1e6  # noqa: E731
        ev = self.events
        gaps = [ms(b - a) for a, b in zip(ev, ev[1:])]
        return {
            "status": self.status,
            "error": self.error,
            "events": len(ev),
            "ttfb_ms": ms(self.t_headers - self.t0) if self.t_headers else None,
            "ttfe_ms": ms(ev[0] - self.t0) if ev else None,
            "duration_ms": ms(ev[-1] - self.t0) if ev else None,
            "gaps_lt5": sum(1 for g in gaps if g < SMALL_GAP_MS),
            "min_gap_ms": min(gaps) if gaps else None,
            "max_gap_ms": max(gaps) if gaps else None,
            "median_gap_ms": statistics.median(gaps) if gaps else None,
        }


def connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s


def sse_main(args):
    u = urlsplit(args.url)
    host, port = u.hostname, u.port or 80
    body = args.body.encode()
    request = (
        f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\n"
        f"content-type: application/json\r\naccept: text/event-stream\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    tags = dict(t.split("=", 1) for t in args.tag)
    for k in ("round", "pos"):
        if k in tags:
            tags[k] = int(tags[k])
    sel = selectors.DefaultSelector()
    streams = [Stream(connect(host, port), request) for _ in range(args.streams)]
    failed = 0
    with open(args.out, "a", encoding="utf-8") as out:
        for rep in range(args.repeat):
            for st in streams:
                if not st.keep_alive:    # the server closed it: a new one, still untimed
                    st.sock.close()
                    st.sock = connect(host, port)
                sel.register(st.sock, selectors.EVENT_READ, st)
            for st in streams:
                st.send()
            deadline = time.monotonic() + args.timeout
            live = len(streams)
            while live:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(timeout=min(left, 1.0)):
                    st = key.data
                    try:
                        data = st.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        st.error, st.done, st.keep_alive, data = str(e), True, False, None
                    now = time.perf_counter_ns()
                    if data is not None:
                        st.on_data(data, now)
                    if st.done:
                        sel.unregister(st.sock)
                        live -= 1
            for st in streams:
                if not st.done:
                    st.error = f"no end of stream within {args.timeout} s"
                    st.keep_alive = False
                    sel.unregister(st.sock)
                rec = dict(tags, rep=rep, streams=args.streams,
                           expect_events=args.expect_events, **st.record())
                if rec["error"] or rec["status"] != 200 or rec["events"] != args.expect_events:
                    failed += 1
                out.write(json.dumps(rec) + "\n")
    for st in streams:
        st.sock.close()
    if failed and args.strict:
        sys.exit(f"llm_report.py sse: {failed} stream(s) failed or incomplete against {args.url}")


# ================================================================ sequential requests =====

def seq_main(args):
    """Requests one after the other on one keep-alive connection for --duration seconds.

    Not wrk -c1: wrk "corrects" its histogram for coordinated omission before reporting it
    (stats_correct: every sample longer than the mean interval adds synthetic ones), so with one
    connection and ~10 000 requests/s a single 40 ms scheduler stall becomes hundreds of samples
    and owns the p99. Here every percentile is over the latencies really measured.
    """
    u = urlsplit(args.url)
    host, port = u.hostname, u.port or 80
    with open(args.body_file, "rb") as f:
        body = f.read()
    request = (
        f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\n"
        f"content-type: application/json\r\nanthropic-version: 2023-06-01\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = connect(host, port)
    sock.setblocking(True)
    sock.settimeout(30)
    st = Stream(sock, request)
    lat, non2xx, errors = [], 0, 0
    start = time.perf_counter_ns()
    stop = start + int(args.duration * 1e9)
    while time.perf_counter_ns() < stop:
        if not st.keep_alive:
            st.sock.close()
            st.sock = connect(host, port)
            st.sock.setblocking(True)
            st.sock.settimeout(30)
        try:
            st.send()
            while not st.done:
                st.on_data(st.sock.recv(65536), 0)
        except OSError as e:
            st.error, st.keep_alive = str(e), False
        end = time.perf_counter_ns()
        if st.error:
            errors += 1
            continue
        lat.append((end - st.t0) / 1000)
        if not 200 <= st.status < 300:
            non2xx += 1
    duration_us = (time.perf_counter_ns() - start) / 1000
    st.sock.close()
    lat.sort()
    n = len(lat)
    print(json.dumps({
        "requests": n, "duration_us": round(duration_us),
        "p50_us": pct(lat, 50), "p90_us": pct(lat, 90), "p99_us": pct(lat, 99),
        "p999_us": pct(lat, 99.9), "max_us": lat[-1] if lat else 0,
        "mean_us": sum(lat) / n if n else 0,
        "connect_errors": 0, "read_errors": errors, "write_errors": 0, "non2xx": non2xx,
        "timeouts": 0}))


# ======================================================================= the report =====

def load(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return rows


def med(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    """Nearest-rank percentile of a list (nan if empty)."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def spread(xs):
    """'median (min–max)' of per-round values."""
    xs = [x for x in xs if x == x]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return f"{xs[0]:.{DIGITS}f}"
    return f"{statistics.median(xs):.{DIGITS}f} ({min(xs):.{DIGITS}f} – {max(xs):.{DIGITS}f})"


DIGITS = 2


def fmt(x, d=2, sign=False):
    if x is None or x != x:
        return "n/a"
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def wrk_errors(w):
    return sum(w[k] for k in ("connect_errors", "read_errors", "write_errors", "non2xx", "timeouts"))


def wrk_rps(w):
    return w["requests"] / max(w["duration_us"], 1) * 1e6


def report_sse(rows, lines):
    """TTFE and gap preservation, per case (single stream / 8 concurrent)."""
    cases = [c for c in ("single", "concurrent") if any(r["case"] == c for r in rows)]
    if not cases:
        lines += ["No SSE data.", ""]
        return {}
    headline = {}
    for case in cases:
        cr = [r for r in rows if r["case"] == case]
        per = defaultdict(list)      # (round, target) -> streams
        for r in cr:
            per[(r["round"], r["target"])].append(r)
        rounds = sorted({r["round"] for r in cr})
        n_streams = cr[0].get("streams", "?")
        title = ("one stream at a time" if case == "single"
                 else f"{n_streams} concurrent streams")
        lines += [f"### SSE, {title}", ""]
        # Per round: median TTFE of each target, deltas vs direct, ratio host/nginx.
        ttfe = {t: [] for t in TARGETS}
        heads = {t: [] for t in TARGETS}
        delta = {t: [] for t in TARGETS}
        ratio = []
        for rnd in rounds:
            m = {t: med([s["ttfe_ms"] for s in per.get((rnd, t), [])]) for t in TARGETS}
            for t in TARGETS:
                ttfe[t].append(m[t])
                heads[t].append(med([s["ttfb_ms"] for s in per.get((rnd, t), [])]))
                delta[t].append(m[t] - m["direct"])
            if m["nginx"] > 0:
                ratio.append(m["host"] / m["nginx"])
        lines += ["| target | TTFE ms (median of round medians) | TTFE p90 / max ms (all streams) | "
                  "added vs direct ms (in-round) | headers ms (median of round medians) | streams | bad streams | "
                  "gaps < 5 ms per stream (median / max) | median gap ms | max gap ms | "
                  "stream duration ms (median) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for t in TARGETS:
            ss = [s for s in cr if s["target"] == t]
            if not ss:
                continue
            bad = sum(1 for s in ss if s["error"] or s["status"] != 200 or
                      s["events"] != s.get("expect_events", s["events"]))
            lines.append("| {} | {} | {} / {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |".format(
                LABEL[t], fmt(med(ttfe[t]), 3), fmt(pct([s["ttfe_ms"] for s in ss], 90), 3),
                fmt(max((s["ttfe_ms"] or 0) for s in ss), 3),
                "—" if t == "direct" else fmt(med(delta[t]), 3, sign=True),
                fmt(med(heads[t]), 3),
                len(ss), bad,
                fmt(med([s["gaps_lt5"] for s in ss]), 0), max(s["gaps_lt5"] for s in ss),
                fmt(med([s["median_gap_ms"] for s in ss]), 2),
                fmt(max((s["max_gap_ms"] or 0) for s in ss), 2),
                fmt(med([s["duration_ms"] for s in ss]), 1)))
        lines += ["", "TTFE, failover-host / nginx (in-round ratio of the medians), median over "
                  f"rounds: **{fmt(med(ratio), 2)}**; per round: "
                  + ", ".join(fmt(x, 2) for x in ratio) + ".", ""]
        headline[case] = {
            "host_added": med(delta["host"]), "nginx_added": med(delta["nginx"]),
            "ratio": med(ratio),
            "host_gaps_max": max((s["gaps_lt5"] for s in cr if s["target"] == "host"), default=None),
            "nginx_gaps_max": max((s["gaps_lt5"] for s in cr if s["target"] == "nginx"), default=None),
            "direct_gaps_max": max((s["gaps_lt5"] for s in cr if s["target"] == "direct"), default=None),
        }
    return headline


def report_post(rows, lines):
    """POST bodies under load: p50/p99/req/s per target, in-round comparisons."""
    sizes = sorted({r["size"] for r in rows})
    headline = {}
    for size in sizes:
        sr = [r for r in rows if r["size"] == size]
        by = {(r["round"], r["target"]): r["wrk"] for r in sr}
        rounds = sorted({r["round"] for r in sr})
        label = f"{size // 1024} KB" if size < 1 << 20 else f"{size / (1 << 20):g} MiB"
        lines += [f"### POST {label} ({size} bytes)", ""]
        vals = {t: defaultdict(list) for t in TARGETS}
        cmp_ = defaultdict(list)
        for rnd in rounds:
            w = {t: by.get((rnd, t)) for t in TARGETS}
            for t in TARGETS:
                if w[t] is None:
                    continue
                vals[t]["p50"].append(w[t]["p50_us"] / 1000)
                vals[t]["p99"].append(w[t]["p99_us"] / 1000)
                vals[t]["rps"].append(wrk_rps(w[t]))
                vals[t]["errors"].append(wrk_errors(w[t]))
                if w["direct"] is not None and t != "direct":
                    vals[t]["d50"].append((w[t]["p50_us"] - w["direct"]["p50_us"]) / 1000)
                    vals[t]["d99"].append((w[t]["p99_us"] - w["direct"]["p99_us"]) / 1000)
            if w["host"] and w["nginx"]:
                cmp_["rps"].append(wrk_rps(w["host"]) / max(wrk_rps(w["nginx"]), 1e-9))
                cmp_["p50"].append(w["host"]["p50_us"] / max(w["nginx"]["p50_us"], 1))
                cmp_["p99"].append(w["host"]["p99_us"] / max(w["nginx"]["p99_us"], 1))
        lines += ["| target | p50 ms | p99 ms | req/s | request body MB/s | p50 added vs direct ms | "
                  "p99 added vs direct ms | errors |", "|---|---|---|---|---|---|---|---|"]
        for t in TARGETS:
            v = vals[t]
            if not v["rps"]:
                continue
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                LABEL[t], fmt(med(v["p50"])), fmt(med(v["p99"])), fmt(med(v["rps"]), 0),
                fmt(med(v["rps"]) * size / 1e6, 0),
                "—" if t == "direct" else fmt(med(v["d50"]), 2, sign=True),
                "—" if t == "direct" else fmt(med(v["d99"]), 2, sign=True),
                int(sum(v["errors"]))))
        lines += ["", "failover-host / nginx (in-round ratios, median over rounds): "
                  f"req/s **{fmt(med(cmp_['rps']))}**, p50 **{fmt(med(cmp_['p50']))}**, "
                  f"p99 **{fmt(med(cmp_['p99']))}**; req/s ratio per round: "
                  + ", ".join(fmt(x) for x in cmp_["rps"]) + ".", ""]
        headline[size] = {t: {k: med(vals[t][k]) for k in ("p50", "p99", "rps")} for t in TARGETS}
        headline[size]["ratio"] = {k: med(v) for k, v in cmp_.items()}
    return headline


def report_failover(rows, lines, meta):
    """Sequential requests whose preferred endpoint is healthy / answers 503 / refuses."""
    modes = [m for m in ("healthy", "503", "refused") if any(r["mode"] == m for r in rows)]
    by = {(r["round"], r["target"], r["mode"]): r for r in rows}
    rounds = sorted({r["round"] for r in rows})
    lines += ["| target | preferred endpoint | p50 ms | p99 ms | req/s (1 connection) | "
              "p50 added vs its own healthy ms | p99 added ms | non-2xx / errors | requests "
              "| A got | B got | failovers counted |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    headline = {}
    for t in TARGETS:
        for mode in modes:
            recs = [by[(rnd, t, mode)] for rnd in rounds if (rnd, t, mode) in by]
            if not recs:
                continue
            p50 = [r["wrk"]["p50_us"] / 1000 for r in recs]
            p99 = [r["wrk"]["p99_us"] / 1000 for r in recs]
            d50, d99 = [], []
            for rnd in rounds:
                r, h = by.get((rnd, t, mode)), by.get((rnd, t, "healthy"))
                if r and h and mode != "healthy":
                    d50.append((r["wrk"]["p50_us"] - h["wrk"]["p50_us"]) / 1000)
                    d99.append((r["wrk"]["p99_us"] - h["wrk"]["p99_us"]) / 1000)
            errs = sum(wrk_errors(r["wrk"]) for r in recs)
            reqs = sum(r["wrk"]["requests"] for r in recs)
            fo = [r.get("failovers") for r in recs]
            fo_txt = "—" if any(x is None for x in fo) else str(sum(fo))
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                LABEL[t], mode, fmt(med(p50), 3), fmt(med(p99), 3),
                fmt(med([wrk_rps(r["wrk"]) for r in recs]), 0),
                "—" if mode == "healthy" else fmt(med(d50), 3, sign=True),
                "—" if mode == "healthy" else fmt(med(d99), 3, sign=True),
                errs, reqs, sum(r.get("a_requests", 0) for r in recs),
                sum(r.get("b_requests", 0) for r in recs), fo_txt))
            headline[(t, mode)] = {"p50": med(p50), "p99": med(p99), "d50": med(d50),
                                   "d99": med(d99), "errors": errs}
    lines += ["", "Request counts are summed over rounds. \"A got\" / \"B got\": requests each mock "
              "received during the run (a refused connection never reaches A); with A failing, "
              "every 200 came from B.", ""]
    return headline


def report_main(args):
    meta = dict(m.split("=", 1) for m in args.meta)
    sse = load(f"{args.dir}/sse.jsonl")
    post = load(f"{args.dir}/post.jsonl")
    fail = load(f"{args.dir}/failover.jsonl")
    if not (sse or post or fail):
        sys.exit(f"llm_report.py: no data in {args.dir}")
    g = lambda k: meta.get(k, "?")  # noqa: E731
    lines = [
        f"# LLM-shaped traffic through the proxy — {g('nproc')} cores ({g('cpu')}), "
        f"{g('date')}, profile {g('profile')}, {g('rounds')} round(s), commit {g('commit')}",
        "",
        f"Written by `bench/llm{' --quick' if g('quick') == '1' else ''}`. Three targets side by "
        f"side in each round, their order reversed every other round: **direct** to the upstream, "
        f"**failover-host** ({g('workers')} workers) with the failover filter configured like "
        f"`envoy/envoy.yaml` (`hold_headers: true`, `allow_on_headers_stop_iteration: true`), and "
        f"**nginx** {g('nginx')} ({g('workers')} workers; `proxy_buffering off; "
        f"proxy_request_buffering off; proxy_http_version 1.1;` keep-alive upstream pool). "
        f"Upstream: `mock-upstream` (examples/), one process, for every case. Medians over rounds; "
        f"deltas vs direct and ratios vs nginx are taken inside each round first. "
        f"The rounds took {g('rounds_seconds')} s; meanwhile this bench's processes used "
        f"{g('our_cores')} cores on average, **other processes {g('other_cores')}** (steal "
        f"{g('steal_cores')}; load average before the start {g('load_start')}; busiest other "
        f"processes still alive at the end: {g('other_top')}): anything well above 0 means "
        f"other work shared the machine and the numbers are noisier.",
    ]
    if g("quick") == "1":
        lines += ["", "**Quick (CI smoke) run: short runs — the numbers say only that "
                  "the bench works.**"]
    lines += ["", "## 1. Server-sent events: time to first event, and no batching", "",
              f"The upstream answers every request with {g('sse_events')} events "
              f"{g('sse_gap_ms')} ms apart (`mock-upstream` mode "
              f"`sse-slow:{g('sse_events')}:{g('sse_gap_ms')}ms`). A Python client (one thread, "
              "one selector, keep-alive connections opened before timing) POSTs a "
              "`\"stream\": true` request and stamps each event when the recv() completing it "
              "returns. TTFE = request sent → first complete event; \"headers\" = request sent → response "
              "headers complete (failover-host holds an event stream's headers until its first "
              "event, `hold_headers`). A proxy that batches shows "
              "up as gaps far below the upstream's 20 ms: the \"gaps < 5 ms\" column counts them "
              f"per stream (of {int(g('sse_events')) - 1 if g('sse_events').isdigit() else '?'} "
              "gaps; 0 = every event passed on at once). Per round: "
              f"{g('sse_single')} single streams one after the other, then "
              f"{g('sse_conc_repeat')} × {g('sse_conc')} concurrent streams. The mock's timer "
              "stretches each gap by about 1 ms, even direct (see the direct rows).", ""]
    sse_h = report_sse(sse, lines)

    lines += ["## 2. POST bodies under load", "",
              f"wrk -t2 -c{g('post_conc')} -d{g('post_duration')}s per target and size, POSTing an "
              "LLM-style JSON body padded to the size (`content-type: application/json`). "
              "The upstream is `mock-upstream` in `healthy` mode: it reads the **whole** body "
              "before answering and its JSON answer says how many bytes it got (checked once per "
              "target and size before the rounds: every target delivered all of them); nginx "
              "`return 200` was not used because it may answer before reading the body. "
              "Percentiles are wrk's, which include its coordinated-omission correction "
              "(a stall longer than the mean interval per connection adds synthetic samples). "
              "1 MiB = `failover.max_request_bytes`, so failover-host holds (and keeps for "
              "replay) every body whole before sending it on, as configured in envoy/envoy.yaml.",
              ""]
    post_h = report_post(post, lines)

    lines += ["## 3. Failover: what a failing preferred endpoint adds", "",
              "Sequential requests (`llm_report.py seq`: one keep-alive connection, one request "
              "after the other for " + g("fail_duration") + " s, a small JSON POST; percentiles "
              "of the raw latencies, Python client overhead included equally for every target) "
              "through a proxy whose preferred endpoint (`a`, group `primary`, mock-upstream "
              "A) is healthy, answers 503 (`status:503`), or refuses connections (`refuse`: its "
              "listener is closed). The second endpoint (`b`, group `secondary`, mock-upstream B) "
              "is always healthy. failover-host: `failure.threshold` is set very high "
              f"({g('threshold')}) so the failing endpoint is **never parked** and every request "
              "pays the failover (with the default threshold 1 only the first request after a "
              "failure pays it, the rest go straight to `b`). nginx: `upstream { server A "
              "max_fails=0; server B backup; }` with `proxy_next_upstream error timeout http_503 "
              "non_idempotent` (POST is non-idempotent; `max_fails=0` likewise keeps A preferred). "
              "Direct is measured in the healthy case only (to A). \"failovers counted\": "
              "failover-host's `failover.failovers` counter over the run (not available for nginx).",
              ""]
    fail_h = report_failover(fail, lines, meta)

    # ---- headline ----
    hl = ["## Headline", ""]
    for case, h in sse_h.items():
        hl.append(f"- SSE TTFE ({'single stream' if case == 'single' else g('sse_conc') + ' concurrent'}): "
                  f"failover-host adds {fmt(h['host_added'], 3, True)} ms vs direct, nginx "
                  f"{fmt(h['nginx_added'], 3, True)} ms; TTFE failover-host/nginx {fmt(h['ratio'])}. "
                  f"Gaps < 5 ms in the worst stream: direct {h['direct_gaps_max']}, "
                  f"failover-host {h['host_gaps_max']}, nginx {h['nginx_gaps_max']}.")
    for size, h in post_h.items():
        label = f"{size // 1024} KB" if size < 1 << 20 else f"{size / (1 << 20):g} MiB"
        hl.append(f"- POST {label} ×{g('post_conc')}: failover-host p50/p99 "
                  f"{fmt(h['host']['p50'])}/{fmt(h['host']['p99'])} ms, {fmt(h['host']['rps'], 0)} req/s; "
                  f"nginx {fmt(h['nginx']['p50'])}/{fmt(h['nginx']['p99'])} ms, "
                  f"{fmt(h['nginx']['rps'], 0)} req/s; in-round req/s ratio "
                  f"{fmt(h['ratio'].get('rps'))}.")
    for mode in ("503", "refused"):
        hh, hn = fail_h.get(("host", mode)), fail_h.get(("nginx", mode))
        if hh:
            hl.append(f"- Failover when the preferred endpoint {'answers 503' if mode == '503' else 'refuses'}: "
                      f"failover-host adds {fmt(hh['d50'], 3, True)} ms p50 / {fmt(hh['d99'], 3, True)} ms p99"
                      + (f"; nginx {fmt(hn['d50'], 3, True)} / {fmt(hn['d99'], 3, True)} ms" if hn else "")
                      + ".")
    hl.append("")
    # The headline goes right after the introduction.
    intro_end = lines.index("## 1. Server-sent events: time to first event, and no batching")
    lines[intro_end:intro_end] = hl
    lines += ["## Raw data", "",
              f"`{g('raw')}`: sse.jsonl (one line per stream), post.jsonl and failover.jsonl "
              "(one line per wrk or `seq` run), the configs and logs. Regenerate the Markdown: "
              f"`eval \"python3 bench/llm_report.py report $(cat {g('raw')}/report.args)\"`.",
              ""]
    text = "\n".join(lines)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print("\n".join(hl))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sse", help="measure SSE streams (one JSON line per stream)")
    s.add_argument("--url", required=True)
    s.add_argument("--streams", type=int, default=1, help="streams at once")
    s.add_argument("--repeat", type=int, default=1, help="times in a row")
    s.add_argument("--body", default='{"model":"bench","max_tokens":256,"stream":true,'
                   '"messages":[{"role":"user","content":"hello"}]}')
    s.add_argument("--expect-events", type=int, default=50)
    s.add_argument("--timeout", type=float, default=30.0, help="seconds per repetition")
    s.add_argument("--tag", action="append", default=[], help="KEY=VALUE copied into every line")
    s.add_argument("--strict", action="store_true", help="exit 1 if a stream failed")
    s.add_argument("--out", required=True)
    q = sub.add_parser("seq", help="sequential requests on one connection (JSON summary on stdout)")
    q.add_argument("--url", required=True)
    q.add_argument("--body-file", required=True)
    q.add_argument("--duration", type=float, default=4.0, help="seconds")
    r = sub.add_parser("report", help="write the Markdown")
    r.add_argument("dir")
    r.add_argument("--out", required=True)
    r.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    args = ap.parse_args()
    if args.cmd == "sse":
        sse_main(args)
    elif args.cmd == "seq":
        seq_main(args)
    else:
        report_main(args)


if __name__ == "__main__":
    main()
