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

SCENARIOS = [
    ("S0", "direct: load generator -> origin"),
    ("S1", "nginx, 1 worker, upstream keep-alive, access log off"),
    ("S2", "Portcullis, every feature off, 1 thread, access log off"),
    ("S2b", "bare Pingora 0.9.1 passthrough, 1 thread (framework floor)"),
    ("S3", "Portcullis + shipped default rules (config/rules/: firewall + events), same logging as S2"),
    ("S4", "S3 + PII scanning, 1/16/64 KiB (not measured yet: arrives with PII scanning)"),
]
METRICS = [
    # key, heading, format, "higher is better"
    ("rps", "throughput req/s", "{:,.0f}", True),
    ("cpu_us_per_req", "proxy CPU µs/req", "{:.1f}", False),
    ("rss_mib", "peak RSS MiB", "{:.1f}", False),
    ("p50_us", "p50 µs", "{:.0f}", False),
    ("p99_us", "p99 µs", "{:.0f}", False),
    ("p999_us", "p99.9 µs", "{:.0f}", False),
]
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
    errs = sum(d.get("errorDistribution", {}).values()) + sum(v for k, v in codes.items() if k != "200")

    def us(key):
        v = pct.get(key)
        return None if v is None else v * 1e6

    return {
        "p50_us": us("p50"),
        "p99_us": us("p99"),
        "p999_us": us("p99.9"),
        "oha_rps": d.get("summary", {}).get("requestsPerSec"),
        "oha_ok": codes.get("200", 0),
        "oha_errors": errs,
    }


def cmd_record(a):
    with open(a.wrk, encoding="utf-8") as f:
        requests, secs, errors = parse_wrk(f.read())
    tick_us = 1e6 / a.clk_tck
    rec = {
        "scenario": a.scenario,
        "rep": a.rep,
        "requests": requests,
        "rps": requests / secs if secs else None,
        "errors": errors,
        "cpu_us_per_req": (a.proxy_ticks * tick_us / requests) if a.has_proxy and requests else None,
        "proxy_busy_pct": (a.proxy_ticks * tick_us / 1e4 / a.wall) if a.has_proxy and a.wall else None,
        "origin_cpu_us_per_req": (a.origin_ticks * tick_us / requests) if requests else None,
        "rss_mib": (int(a.rss_kib) / 1024) if a.rss_kib else None,
    }
    rec.update(parse_oha(a.oha))
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

    results = {}
    for scen, desc in SCENARIOS:
        recs = [r for r in raw if r["scenario"] == scen]
        if not recs:
            results[scen] = {"description": desc, "measured": False}
            continue
        res = {"description": desc, "measured": True, "reps": len(recs)}
        for key in [m[0] for m in METRICS] + EXTRA:
            vals = [r.get(key) for r in recs]
            res[key] = median(vals)
            res[key + "_all"] = vals
        results[scen] = res
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

    measured = [s for s, _ in SCENARIOS if results[s]["measured"]]
    out = []
    out.append(f"## Load benchmark — {facts.get('date')} ({facts.get('mode')} mode)")
    out.append("")
    out.append(
        f"Medians of {facts.get('reps')} repetition(s), scenarios interleaved. Throughput: "
        f"`wrk -t1 -c{facts.get('conns')} -d{facts.get('wrk_secs')}s` (closed loop). CPU: proxy process "
        f"utime+stime over the wrk run / requests. Latency: `oha -q {facts.get('rate')} -c {facts.get('conns')} "
        f"-z {facts.get('oha_secs')}s --latency-correction` (open loop). Origin body {facts.get('body_bytes')} bytes. "
        "Proxy on core 1; wrk, oha and the origin on core 0."
    )
    out.append("")
    heads = ["scenario"] + [m[1] for m in METRICS] + ["proxy core busy %"]
    out.append("| " + " | ".join(heads) + " |")
    out.append("|" + "---|" * len(heads))
    for scen, desc in SCENARIOS:
        res = results[scen]
        if not res["measured"]:
            out.append(f"| {scen} | " + " | ".join(["not measured yet"] + ["—"] * (len(heads) - 2)) + " |")
            continue
        cells = [scen] + [fmt(res.get(m[0]), m[2]) for m in METRICS] + [fmt(res.get("proxy_busy_pct"), "{:.0f}")]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for base in ("S0", "S1"):
        if base not in measured:
            continue
        out.append(f"Ratio to {base} (`×`; for throughput higher is better, for everything else lower):")
        out.append("")
        heads = ["scenario"] + [m[1] for m in METRICS]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "---|" * len(heads))
        for scen in measured:
            r = results[scen][f"ratio_to_{base}"]
            out.append("| " + " | ".join([scen] + [fmt(r.get(m[0]), "{:.2f}×") for m in METRICS]) + " |")
        out.append("")
    out.append("Added open-loop latency over S0 (µs):")
    out.append("")
    out.append("| scenario | p50 | p99 | p99.9 |")
    out.append("|---|---|---|---|")
    for scen in measured:
        r = results[scen]["added_latency_us"]
        out.append(f"| {scen} | " + " | ".join(fmt(r.get(k), "{:+.0f}") for k in ("p50_us", "p99_us", "p999_us")) + " |")
    out.append("")
    if "S2" in measured and "S2b" in measured:
        s2, s2b = results["S2"], results["S2b"]
        out.append(
            f"S2 / S2b (our cost on top of Pingora): CPU/req {fmt(ratio(s2.get('cpu_us_per_req'), s2b.get('cpu_us_per_req')), '{:.2f}×')}, "
            f"throughput {fmt(ratio(s2.get('rps'), s2b.get('rps')), '{:.2f}×')}, "
            f"p99 {fmt(ratio(s2.get('p99_us'), s2b.get('p99_us')), '{:.2f}×')}, "
            f"RSS {fmt(ratio(s2.get('rss_mib'), s2b.get('rss_mib')), '{:.2f}×')}."
        )
        out.append("")
    if "S3" in measured and "S2" in measured:
        s3, s2 = results["S3"], results["S2"]
        out.append(
            f"S3 / S2 (the shipped rules on top of Portcullis): CPU/req {fmt(ratio(s3.get('cpu_us_per_req'), s2.get('cpu_us_per_req')), '{:.2f}×')}, "
            f"throughput {fmt(ratio(s3.get('rps'), s2.get('rps')), '{:.2f}×')}, "
            f"p99 {fmt(ratio(s3.get('p99_us'), s2.get('p99_us')), '{:.2f}×')}."
        )
        out.append("")
    errs = [(s, results[s].get("errors"), results[s].get("oha_errors")) for s in measured]
    bad = [e for e in errs if (e[1] or 0) or (e[2] or 0)]
    if bad:
        out.append("**Errors (median per run): " + ", ".join(f"{s}: wrk {w}, oha {o}" for s, w, o in bad) + "**")
        out.append("")
    for scen, desc in SCENARIOS:
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
        json.dump({"machine": facts, "scenarios": results, "raw": raw}, f, indent=2)
        f.write("\n")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--scenario", required=True)
    r.add_argument("--rep", type=int, required=True)
    r.add_argument("--wrk", required=True)
    r.add_argument("--oha", required=True)
    r.add_argument("--clk-tck", type=int, required=True)
    r.add_argument("--proxy-ticks", type=int, required=True)
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
