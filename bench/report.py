#!/usr/bin/env python3
"""Reads every <benchmark>.csv in a results folder (benchmark,case,subject,metric,value,unit),
draws one PNG per benchmark with gnuplot, checks the issue's targets, and writes summary.md.
With --publish DIR it also copies the CSVs and PNGs there (docs/performance/ for the docs page).

Usage: bench/report.py RESULTS_DIR [--publish DIR]
"""
import csv
import os
import platform
import re
import shutil
import subprocess
import sys
from collections import OrderedDict

# (benchmark, case regex, subject, metric, op, target, what the issue asks)
TARGETS = [
    ("throughput", r"c=\d+", "wasmlet", "ratio_to_nginx", ">=", 0.5, "hello req/s >= 0.5x nginx static"),
    ("throughput", r"c=\d+", "wasmlet", "ratio_to_cgi", ">=", 20, "hello req/s >= 20x native CGI"),
    ("breakdown", r"c-hello", "wasmlet", "store_instantiate_run", "<=", 10, "Store+instantiate+run <= 10 us median"),
    ("coldstart", r"c-\d+kb", "wasmlet", "ttfb_precompiled", "<=", 1, "C app, first byte from precompiled cache <= 1 ms"),
    ("density", r"apps=10000", "wasmlet", "rss_idle_mib", "<=", 1024, "10,000 apps: idle RSS <= 1 GiB"),
    ("density", r"apps=10000", "wasmlet", "startup_s", "<=", 5, "10,000 apps: startup <= 5 s"),
    ("density", r"apps=10000", "wasmlet", "first_p50_ms", "<=", 5, "first request to any app <= 5 ms (precompiled)"),
    ("compute", r".*", "wasmlet", "ratio_to_native", "<=", 1.5, "compute <= 1.5x native"),
    ("hostile_p99", r".*", "wasmlet", "ratio_to_unloaded", "<=", 2, "hello p99 under hostile load <= 2x unloaded"),
]

ORDER = ["throughput", "breakdown", "coldstart", "density", "compute", "process", "hostile_p99"]


def load(results):
    rows = []
    for name in sorted(os.listdir(results)):
        if not name.endswith(".csv"):
            continue
        with open(os.path.join(results, name)) as f:
            for r in csv.DictReader(f):
                try:
                    r["value"] = float(r["value"])
                except (KeyError, ValueError):
                    sys.exit(f"report: {name}: row {r} has no numeric value")
                rows.append(r)
    return rows


def gnuplot(script):
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if p.returncode != 0:
        print(f"report: gnuplot failed: {p.stderr.strip()}", file=sys.stderr)


def plot_throughput(rows, results):
    data = OrderedDict()
    for r in rows:
        if r["benchmark"] == "throughput" and r["metric"] in ("req_per_s", "p99"):
            c = int(r["case"].split("=")[1])
            data.setdefault((r["metric"], r["subject"]), []).append((c, r["value"]))
    pngs = []
    for metric, ylabel, log in (("req_per_s", "requests per second", True), ("p99", "p99 latency (ms)", True)):
        subjects = [s for (m, s) in data if m == metric]
        if not subjects:
            continue
        dat = os.path.join(results, f"throughput_{metric}.dat")
        with open(dat, "w") as f:
            for s in subjects:
                f.write(f'"{s}"\n')
                for c, v in sorted(data[(metric, s)]):
                    f.write(f"{c} {v}\n")
                f.write("\n\n")
        png = os.path.join(results, f"throughput_{metric}.png")
        plots = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints lw 2 title '{s}'"
                          for i, s in enumerate(subjects))
        gnuplot(f"""set terminal pngcairo size 900,540 noenhanced
set output '{png}'
set title 'hello over HTTP: {ylabel} by concurrent connections'
set xlabel 'connections'; set ylabel '{ylabel}'
set logscale x 2; {'set logscale y' if log else ''}
set grid; set key outside right
plot {plots}
""")
        pngs.append(png)
    return pngs


def plot_bars(bench, rows, results):
    """Clustered bars: one group per (case, metric), one bar per subject, split by unit."""
    by_unit = OrderedDict()
    for r in rows:
        if r["benchmark"] != bench or r["unit"] in ("x", ""):
            continue
        by_unit.setdefault(r["unit"], []).append(r)
    pngs = []
    for unit, rs in by_unit.items():
        groups = OrderedDict()
        subjects = []
        for r in rs:
            groups.setdefault(f"{r['case']} {r['metric']}", {})[r["subject"]] = r["value"]
            if r["subject"] not in subjects:
                subjects.append(r["subject"])
        safe = re.sub(r"[^A-Za-z0-9]+", "_", unit).strip("_") or "value"
        dat = os.path.join(results, f"{bench}_{safe}.dat")
        with open(dat, "w") as f:
            f.write("group " + " ".join(f'"{s}"' for s in subjects) + "\n")
            for g, vals in groups.items():
                f.write(f'"{g}" ' + " ".join(str(vals.get(s, "NaN")) for s in subjects) + "\n")
        png = os.path.join(results, f"{bench}_{safe}.png")
        cols = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title columnheader({i + 2})"
                         for i in range(len(subjects)))
        height = 420 + 14 * len(groups)
        gnuplot(f"""set terminal pngcairo size 1000,{height} noenhanced
set output '{png}'
set title '{bench} ({unit})'
set style data histograms; set style histogram clustered gap 1
set style fill solid 0.8 border -1; set boxwidth 0.9
set xtics rotate by -30 left; set ylabel '{unit}'; set grid ytics
set key outside right; set yrange [0:*]
set bmargin 10
plot {cols}
""")
        pngs.append(png)
    return pngs


def check_targets(rows):
    lines = []
    for bench, case_re, subject, metric, op, target, what in TARGETS:
        hits = [r for r in rows if r["benchmark"] == bench and r["subject"] == subject
                and r["metric"] == metric and re.fullmatch(case_re, r["case"])]
        if not hits:
            continue
        for r in hits:
            v = r["value"]
            ok = v >= target if op == ">=" else v <= target
            lines.append((what, r["case"], f"{v:.3g} {r['unit']}", f"{op} {target}", "met" if ok else "MISSED"))
    return lines


def machine():
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // (1024 * 1024)} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem}, {platform.system()} {platform.release()}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = sys.argv[1]
    publish = sys.argv[sys.argv.index("--publish") + 1] if "--publish" in sys.argv else None
    rows = load(results)
    if not rows:
        sys.exit(f"report: no CSV files in {results}")
    benches = sorted({r["benchmark"] for r in rows}, key=lambda b: (ORDER.index(b) if b in ORDER else 99, b))
    pngs = []
    for b in benches:
        pngs += plot_throughput(rows, results) if b == "throughput" else plot_bars(b, rows, results)

    out = []
    meta = open(os.path.join(results, "meta.txt")).read().strip() if os.path.exists(os.path.join(results, "meta.txt")) else ""
    out.append(f"Machine: {machine()}  ")
    if meta:
        out.extend(line + "  " for line in meta.splitlines())
    out.append("")
    out.append("### Targets")
    out.append("")
    out.append("| target | case | measured | want | |")
    out.append("|---|---|---|---|---|")
    for t in check_targets(rows):
        out.append("| " + " | ".join(t) + " |")
    for b in benches:
        out.append("")
        out.append(f"### {b}")
        out.append("")
        out.append("| case | subject | metric | value | unit |")
        out.append("|---|---|---|---|---|")
        for r in rows:
            if r["benchmark"] == b:
                out.append(f"| {r['case']} | {r['subject']} | {r['metric']} | {r['value']:.4g} | {r['unit']} |")
        for p in pngs:
            if os.path.basename(p).startswith(b + "_"):
                out.append("")
                out.append(f"![{os.path.basename(p)}]({os.path.basename(p)})")
    text = "\n".join(out) + "\n"
    with open(os.path.join(results, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    missed = [t for t in check_targets(rows) if t[-1] == "MISSED"]
    print(f"report: {len(check_targets(rows)) - len(missed)} targets met, {len(missed)} missed; "
          f"{len(pngs)} plots in {results}")
    if publish:
        os.makedirs(publish, exist_ok=True)
        for name in os.listdir(results):
            if name.endswith((".csv", ".png", ".md", ".txt")):
                shutil.copy(os.path.join(results, name), publish)
        print(f"report: published to {publish}")


if __name__ == "__main__":
    main()
