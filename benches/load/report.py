#!/usr/bin/env python3
"""Helper of benches/load/run.sh (standard library only).

  record  parse one wrk + oha run into one JSON line (appended to raw.jsonl by run.sh)
  brief   one-line summary of a record (stdin) for the progress log
  report  medians over the repetitions, ratios to S0 and S1, Markdown + JSON
"""

import argparse
import json
import re
import statistics
import sys

BASE = [
    ("S0", "direct: load generator -> origin"),
    ("S1", "nginx, 1 worker, upstream keep-alive, access log off"),
    ("S2", "Portcullis, every feature off (no rules), 1 thread, access log off (the empty-rule baseline)"),
    ("S2b", "bare Pingora 0.9.1 passthrough, 1 thread, glibc malloc (framework floor, as Pingora comes)"),
    ("S2b-mi", "S2b with the gateway's allocator, mimalloc (the floor like for like)"),
    (
        "S3",
        "Portcullis as configured for real (issue 24): shipped firewall, JWT identity on every API route "
        "(the load's token HS256, verified once then cached), tenant scope, per-IP/per-client/per-tenant "
        "rate limits, webhook rule, kill-switch channel on the route; events, metrics and the access log on "
        "as shipped (level info, stdout to a file)",
    ),
    (
        "S3-rs",
        "S3 with RS256 (2048-bit) tokens, a token not in the verified-token cache on every request "
        "(wrk + rotate.lua); open-loop latency and fixed-rate CPU not measured: oha cannot rotate tokens",
    ),
]


def size_label(n):
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def scenario_list(facts):
    """(name, description) of every scenario of this run's plan, in report order."""
    out = list(BASE)
    for size in (int(x) for x in str(facts.get("sizes") or "").split()):
        k = size_label(size)
        out.append((f"S3-{k}", f"S3 with a {k} JSON response"))
        out.append((f"S4-{k}", f"S3-{k} + PII scanning (7 detectors, all redact: streamed)"))
    return out


METRICS = [
    # key, heading, format, "higher is better"
    ("rps", "throughput req/s", "{:,.0f}", True),
    ("cpu_us_per_req", "proxy CPU µs/req", "{:.1f}", False),
    ("cpu_us_per_req_fixed", "CPU µs/req at fixed rate", "{:.1f}", False),
    ("rss_mib", "peak RSS MiB", "{:.1f}", False),
    ("p50_us", "p50 µs", "{:.0f}", False),
    ("p99_us", "p99 µs", "{:.0f}", False),
    ("p999_us", "p99.9 µs", "{:.0f}", False),
]
# The figures of the open-loop (oha) run, "not measured" for a scenario without one (S3-rs).
OPEN_LOOP = ("cpu_us_per_req_fixed", "p50_us", "p99_us", "p999_us")
EXTRA = ["proxy_busy_pct", "origin_cpu_us_per_req", "errors", "oha_errors", "oha_rps"]


def parse_wrk(text):
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise SystemExit(f"cannot parse wrk output:\n{text}")
    requests = int(m.group(1))
    secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return requests, secs, errors


def parse_oha(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    pct = d.get("latencyPercentiles", {})
    codes = d.get("statusCodeDistribution", {})
    non2xx = sum(v for k, v in codes.items() if not str(k).startswith("2"))
    errs = sum(d.get("errorDistribution", {}).values()) + non2xx

    def us(key):
        v = pct.get(key)
        return None if v is None else v * 1e6

    return {
        "p50_us": us("p50"),
        "p99_us": us("p99"),
        "p999_us": us("p99.9"),
        "oha_rps": d.get("summary", {}).get("requestsPerSec"),
        "oha_n": sum(codes.values()),
        "oha_ok": codes.get("200", 0),
        "oha_errors": errs,
        "oha_non2xx": non2xx,
        "oha_status": codes,
    }


def cmd_record(a):
    with open(a.wrk, encoding="utf-8") as f:
        text = f.read()
    requests, secs, errors = parse_wrk(text)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        raise SystemExit(f"{a.scenario}: wrk got {m.group(1)} non-2xx answers ({a.wrk})")
    tick_us = 1e6 / a.clk_tck
    rec = {
        "scenario": a.scenario,
        "rep": a.rep,
        "body_bytes": a.body_bytes,
        "requests": requests,
        "rps": requests / secs if secs else None,
        "errors": errors,
        "cpu_us_per_req": (a.proxy_ticks * tick_us / requests) if a.has_proxy and requests else None,
        "oha_requests": None,
        "proxy_ticks_fixed": a.proxy_ticks_fixed,
        "proxy_busy_pct": (a.proxy_ticks * tick_us / 1e4 / a.wall) if a.has_proxy and a.wall else None,
        "origin_cpu_us_per_req": (a.origin_ticks * tick_us / requests) if requests else None,
        "rss_mib": (int(a.rss_kib) / 1024) if a.rss_kib else None,
    }
    if a.oha:
        rec.update(parse_oha(a.oha))
    else:  # the scenario has no open-loop run (--no-oha REASON)
        rec.update({k: None for k in ("p50_us", "p99_us", "p999_us", "oha_rps", "oha_n", "oha_ok", "oha_errors")})
        rec.update({"oha_non2xx": 0, "oha_status": {}, "oha_skipped": a.no_oha})
    # CPU per request at the fixed open-loop rate: every proxy sees the same peers (idle between
    # requests), unlike at saturation, where a slower proxy leaves the load core idle more often
    # and pays more cross-core wake-ups per request.
    n = rec.pop("oha_n", None)
    rec["oha_requests"] = n
    rec["cpu_us_per_req_fixed"] = (a.proxy_ticks_fixed * tick_us / n) if a.has_proxy and n else None
    if rec["oha_non2xx"]:
        raise SystemExit(f"{a.scenario}: oha got non-2xx answers: {rec['oha_status']} ({a.oha})")
    print(json.dumps(rec))


def fmt(v, f):
    return "—" if v is None else f.format(v)


def cmd_brief(_a):
    r = json.loads(sys.stdin.read())
    parts = [f"{r['scenario']} rep {r['rep']}:"]
    for key, head, f, _ in METRICS:
        parts.append(f"{head} {fmt(r.get(key), f)}")
    parts.append(f"proxy core busy {fmt(r.get('proxy_busy_pct'), '{:.0f}')}%")
    if r.get("errors") or r.get("oha_errors"):
        parts.append(f"ERRORS wrk {r.get('errors')} oha {r.get('oha_errors')}")
    print("    " + ", ".join(parts), file=sys.stderr)


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(v, base):
    if v is None or base is None or base == 0:
        return None
    return v / base


def cmd_report(a):
    with open(a.facts, encoding="utf-8") as f:
        facts = json.load(f)
    facts["loadavg_end"] = a.loadavg_end
    raw = []
    with open(a.raw, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                raw.append(json.loads(line))

    scenarios = scenario_list(facts)
    known = {n for n, _ in scenarios}
    for r in raw:  # diagnostic variants ("S2:nows"), in the order they ran
        if r["scenario"] not in known:
            known.add(r["scenario"])
            scenarios.append((r["scenario"], f"{r['scenario'].split(':')[0]} variant `{r['scenario'].split(':', 1)[1]}`: {facts.get('variants', {}).get(r['scenario'].split(':', 1)[1], '')}"))
    s4_status = facts.get("s4_status") or "measured"
    results = {}
    for scen, desc in scenarios:
        recs = [r for r in raw if r["scenario"] == scen]
        if not recs:
            why = s4_status if scen.startswith("S4") and s4_status != "measured" else "not measured in this run"
            results[scen] = {"description": desc, "measured": False, "why": why}
            continue
        res = {"description": desc, "measured": True, "reps": len(recs), "body_bytes": recs[0].get("body_bytes")}
        if recs[0].get("oha_skipped"):
            res["oha_skipped"] = recs[0]["oha_skipped"]
        for key in [m[0] for m in METRICS] + EXTRA:
            vals = [r.get(key) for r in recs]
            res[key] = median(vals)
            res[key + "_all"] = vals
        results[scen] = res
    base_bytes = int(facts.get("body_bytes") or 0)
    for scen, res in results.items():
        if not res["measured"]:
            continue
        for base in ("S0", "S1"):
            b = results.get(base, {})
            res[f"ratio_to_{base}"] = {m[0]: ratio(res.get(m[0]), b.get(m[0])) for m in METRICS}
        s0 = results.get("S0", {})
        res["added_latency_us"] = {
            k: (res[k] - s0[k]) if res.get(k) is not None and s0.get(k) is not None else None
            for k in ("p50_us", "p99_us", "p999_us")
        }

    def get(scen, key):
        r = results.get(scen) or {}
        return r.get(key) if r.get("measured") else None

    measured = [s for s, _ in scenarios if results[s]["measured"]]
    same_body = [s for s in measured if results[s].get("body_bytes") in (None, base_bytes)]
    out = []
    out.append(f"## Load benchmark — {facts.get('date')} ({facts.get('mode')} mode)")
    out.append("")
    out.append(
        f"Medians of {facts.get('reps')} repetition(s), scenarios interleaved. Request: `{facts.get('request')}` "
        f"(the same for every scenario). Throughput: "
        f"`wrk -t1 -c{facts.get('conns')} -d{facts.get('wrk_secs')}s` (closed loop). CPU: proxy process "
        f"utime+stime over the wrk run / requests. Latency: `oha -q {facts.get('rate')} -c {facts.get('conns')} "
        f"-z {facts.get('oha_secs')}s --latency-correction` (open loop). Origin body {base_bytes} bytes unless the "
        "scenario says otherwise. Proxy on core 1; wrk, oha and the origin on core 0. "
        f"Load average at start {facts.get('loadavg_start')}, at end {facts.get('loadavg_end')}."
    )
    out.append("")
    heads = ["scenario", "body"] + [m[1] for m in METRICS] + ["proxy core busy %"]
    out.append("| " + " | ".join(heads) + " |")
    out.append("|" + "---|" * len(heads))
    for scen, desc in scenarios:
        res = results[scen]
        if not res["measured"]:
            out.append(f"| {scen} | — | " + " | ".join([res["why"]] + ["—"] * (len(heads) - 3)) + " |")
            continue
        cells = [scen, size_label(res.get("body_bytes") or base_bytes)]
        cells += [
            "not measured" if res.get("oha_skipped") and m[0] in OPEN_LOOP else fmt(res.get(m[0]), m[2]) for m in METRICS
        ]
        cells += [fmt(res.get("proxy_busy_pct"), "{:.0f}")]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for scen in measured:
        if results[scen].get("oha_skipped"):
            out.append(f"{scen}: open-loop latency and CPU at the fixed rate not measured: {results[scen]['oha_skipped']}.")
            out.append("")
    for base in ("S0", "S1"):
        if base not in measured:
            continue
        out.append(
            f"Ratio to {base} (`×`; for throughput higher is better, for everything else lower; "
            f"scenarios with the {base_bytes}-byte body):"
        )
        out.append("")
        heads = ["scenario"] + [m[1] for m in METRICS]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "---|" * len(heads))
        for scen in same_body:
            r = results[scen][f"ratio_to_{base}"]
            out.append("| " + " | ".join([scen] + [fmt(r.get(m[0]), "{:.2f}×") for m in METRICS]) + " |")
        out.append("")
    if "S0" in measured:
        out.append(f"Added open-loop latency over S0 (µs; S0 with the {base_bytes}-byte body):")
        out.append("")
        out.append("| scenario | p50 | p99 | p99.9 |")
        out.append("|---|---|---|---|")
        for scen in measured:
            r = results[scen]["added_latency_us"]
            out.append(
                f"| {scen} | " + " | ".join(fmt(r.get(k), "{:+.0f}") for k in ("p50_us", "p99_us", "p999_us")) + " |"
            )
        out.append("")

    def rel(x, y, key):
        return ratio(get(x, key), get(y, key))

    if "S2" in measured and "S2b" in measured:
        out.append(
            f"S2 / S2b (our cost on top of Pingora): CPU/req {fmt(rel('S2', 'S2b', 'cpu_us_per_req'), '{:.2f}×')}, "
            f"throughput {fmt(rel('S2', 'S2b', 'rps'), '{:.2f}×')}, p99 {fmt(rel('S2', 'S2b', 'p99_us'), '{:.2f}×')}, "
            f"RSS {fmt(rel('S2', 'S2b', 'rss_mib'), '{:.2f}×')}."
        )
        out.append("")
    if "S3" in measured and "S2" in measured:
        d = None if get("S3", "cpu_us_per_req") is None else get("S3", "cpu_us_per_req") - get("S2", "cpu_us_per_req")
        out.append(
            f"S3 / S2 (the realistic rule set and the access log on top of Portcullis): CPU/req {fmt(rel('S3', 'S2', 'cpu_us_per_req'), '{:.2f}×')} "
            f"({fmt(d, '{:+.1f}')} µs), throughput {fmt(rel('S3', 'S2', 'rps'), '{:.2f}×')}, "
            f"p99 {fmt(rel('S3', 'S2', 'p99_us'), '{:.2f}×')}."
        )
        out.append("")
    if "S3-rs" in measured and "S3" in measured:
        d = None
        if get("S3-rs", "cpu_us_per_req") is not None and get("S3", "cpu_us_per_req") is not None:
            d = get("S3-rs", "cpu_us_per_req") - get("S3", "cpu_us_per_req")
        out.append(
            f"S3-rs / S3 (a fresh RS256 token per request instead of a cached HS256 one): CPU/req "
            f"{fmt(rel('S3-rs', 'S3', 'cpu_us_per_req'), '{:.2f}×')} ({fmt(d, '{:+.1f}')} µs), throughput "
            f"{fmt(rel('S3-rs', 'S3', 'rps'), '{:.2f}×')}."
        )
        out.append("")
    sized = [int(x) for x in str(facts.get("sizes") or "").split()]
    if sized:
        out.append("S4 vs S3 at the same body size (what PII scanning adds):")
        out.append("")
        out.append("| body | S3 CPU µs/req | S4 CPU µs/req | S4 − S3 µs/req | S4 / S3 throughput | S4 − S3 p99 µs |")
        out.append("|---|---|---|---|---|---|")
        for size in sized:
            k = size_label(size)
            s3, s4 = f"S3-{k}", f"S4-{k}"
            c3, c4 = get(s3, "cpu_us_per_req"), get(s4, "cpu_us_per_req")
            if c4 is None:
                out.append(f"| {k} | {fmt(c3, '{:.1f}')} | {results[s4].get('why', '—')} | — | — | — |")
                continue
            p3, p4 = get(s3, "p99_us"), get(s4, "p99_us")
            out.append(
                f"| {k} | {fmt(c3, '{:.1f}')} | {fmt(c4, '{:.1f}')} | {fmt(None if c3 is None else c4 - c3, '{:+.1f}')} | "
                f"{fmt(rel(s4, s3, 'rps'), '{:.2f}×')} | {fmt(None if p3 is None or p4 is None else p4 - p3, '{:+.0f}')} |"
            )
        out.append("")

    # The targets of issue 9.
    def added_p99(scen):
        v = (results.get(scen) or {}).get("added_latency_us") or {}
        return v.get("p99_us")

    p99_ratio = None
    if added_p99("S3") is not None and added_p99("S2b"):
        p99_ratio = added_p99("S3") / added_p99("S2b")
    s4_delta = None
    if get("S4-16k", "cpu_us_per_req") is not None and get("S3-16k", "cpu_us_per_req") is not None:
        s4_delta = get("S4-16k", "cpu_us_per_req") - get("S3-16k", "cpu_us_per_req")
    targets = [
        ("S2 / S2b CPU/req", rel("S2", "S2b", "cpu_us_per_req"), 1.05, "{:.2f}×"),
        ("S3 / S2b CPU/req", rel("S3", "S2b", "cpu_us_per_req"), 1.15, "{:.2f}×"),
        ("S3 / S2b added p99 latency", p99_ratio, 1.2, "{:.2f}×"),
        ("S2 / S1 (nginx) CPU/req", rel("S2", "S1", "cpu_us_per_req"), 1.3, "{:.2f}×"),
        ("S2 / S2b CPU/req at fixed rate", rel("S2", "S2b", "cpu_us_per_req_fixed"), 1.05, "{:.2f}×"),
        ("S2 / S2b-mi CPU/req (same allocator)", rel("S2", "S2b-mi", "cpu_us_per_req"), 1.05, "{:.2f}×"),
        ("S3 / S2b-mi CPU/req (same allocator)", rel("S3", "S2b-mi", "cpu_us_per_req"), 1.15, "{:.2f}×"),
        ("S3 / S2b CPU/req at fixed rate", rel("S3", "S2b", "cpu_us_per_req_fixed"), 1.15, "{:.2f}×"),
        ("S2 / S1 (nginx) CPU/req at fixed rate", rel("S2", "S1", "cpu_us_per_req_fixed"), 1.3, "{:.2f}×"),
        ("S4-16k − S3-16k CPU/req", s4_delta, 20.0, "{:+.1f} µs"),
    ]
    # The targets of issue 24 (ours over the framework, with a realistic S3); S3's limit applies to
    # its RS256 variant too.
    targets24 = [
        ("S2 / S2b-mi CPU/req", rel("S2", "S2b-mi", "cpu_us_per_req"), 1.10, "{:.2f}×"),
        ("S3 / S2b-mi CPU/req", rel("S3", "S2b-mi", "cpu_us_per_req"), 1.25, "{:.2f}×"),
        ("S3-rs / S2b-mi CPU/req", rel("S3-rs", "S2b-mi", "cpu_us_per_req"), 1.25, "{:.2f}×"),
    ]
    verdicts = {}

    def target_table(title, rows, prefix):
        out.append(title)
        out.append("")
        out.append("| target | this run | limit | |")
        out.append("|---|---|---|---|")
        for name, v, limit, f in rows:
            lim = f.replace("{:.2f}", f"{limit:.2f}").replace("{:+.1f}", f"+{limit:.0f}")
            if v is None:
                why = s4_status if name.startswith("S4") and s4_status != "measured" else "not measured"
                out.append(f"| {name} | {why} | ≤ {lim} | — |")
                verdicts[prefix + name] = None
                continue
            ok = v <= limit
            verdicts[prefix + name] = {"value": v, "limit": limit, "met": ok}
            out.append(f"| {name} | {f.format(v)} | ≤ {lim} | {'met' if ok else '**missed**'} |")
        out.append("")

    target_table("Targets (issue 24; S3-rs held to S3's):", targets24, "issue 24: ")
    target_table("Targets (issue 9; its S3 was the smaller rule set, access log off):", targets, "")
    errs = [(s, results[s].get("errors"), results[s].get("oha_errors")) for s in measured]
    bad = [e for e in errs if (e[1] or 0) or (e[2] or 0)]
    if bad:
        out.append("**Socket errors (median per run): " + ", ".join(f"{s}: wrk {w}, oha {o}" for s, w, o in bad) + "**")
        out.append("")
    for scen, desc in scenarios:
        out.append(f"- {scen}: {desc}")
    out.append("")
    out.append("Machine (shared; compare ratios within one run, not absolute figures across runs):")
    out.append("")
    for k in ("nproc", "cpu_model", "kernel", "rustc", "nginx", "wrk", "oha", "git_rev", "loadavg_start", "loadavg_end"):
        out.append(f"- {k}: {facts.get(k)}")
    out.append("")
    md = "\n".join(out)
    with open(a.md, "w", encoding="utf-8") as f:
        f.write(md)
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump({"machine": facts, "scenarios": results, "targets": verdicts, "raw": raw}, f, indent=2)
        f.write("\n")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--scenario", required=True)
    r.add_argument("--rep", type=int, required=True)
    r.add_argument("--body-bytes", type=int, required=True)
    r.add_argument("--wrk", required=True)
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--oha", help="oha's JSON output of the open-loop run")
    g.add_argument("--no-oha", metavar="REASON", help="no open-loop run, for this reason")
    r.add_argument("--clk-tck", type=int, required=True)
    r.add_argument("--proxy-ticks", type=int, required=True)
    r.add_argument("--proxy-ticks-fixed", type=int, required=True)
    r.add_argument("--origin-ticks", type=int, required=True)
    r.add_argument("--has-proxy", type=int, required=True)
    r.add_argument("--wall", type=float, required=True)
    r.add_argument("--rss-kib", default="")
    sub.add_parser("brief")
    r = sub.add_parser("report")
    r.add_argument("--facts", required=True)
    r.add_argument("--raw", required=True)
    r.add_argument("--loadavg-end", default="")
    r.add_argument("--md", required=True)
    r.add_argument("--json", required=True)
    a = p.parse_args()
    {"record": cmd_record, "brief": cmd_brief, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
