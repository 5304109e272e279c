#!/usr/bin/env python3
"""diffkeeper benchmarks: every metric next to its peer, measured in the same run.

    bench/bench.py --bin-dir DIR [--smoke] [--out-dir DIR] [--only SECTION,...] [--baseline-sidecar BIN] [--reps N]

DIR holds the release builds of diffkeeper-init, diffkeeper-sidecar, diffkeeper and
diffkeeper-bench.
--smoke runs every row with tiny sizes and one repetition and fails only when a row produced
no number (it never judges timings). Needs root (eBPF, mounts); everything the bench mounts
lives in a private mount namespace and disappears with it. Method: BENCHMARKS.md.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

# `python3 bench/bench.py` puts bench/ first on the module path, so dkbench imports as is.
from dkbench import (
    baseline_rows,
    bundle_rows,
    capture_rows,
    init_rows,
    kernel_rows,
    outside_rows,
    static_rows,
    stats,
    store_rows,
    system,
)
from dkbench.context import Context, Sizes
from dkbench.procs import Bins
from dkbench.table import Row, error_row, render

REPO = Path(__file__).resolve().parent.parent
TOOLS = ["bpftrace", "bpftool", "inotifywait", "curl", "tar", "xz", "grep", "restic"]

# (name, what its rows are called if it fails, function); every section but "program" and "before-after" (they turn it on) runs with
# kernel.bpf_stats_enabled=0, whatever another session left it at.
SECTIONS = [
    ("program", "BPF program cost per run", kernel_rows.program_cost),
    ("outside", "write() overhead outside watched dirs", outside_rows.write_overhead_outside),
    ("before-after", "BPF programs' time per write against --baseline-sidecar", baseline_rows.program_time_vs_baseline),
    ("inside", "write() overhead inside the watched dir", kernel_rows.write_overhead_inside),
    ("capture", "write() inside the watched dir with --store vs without", capture_rows.write_path_with_store),
    ("flood", "events delivered at max rate / sidecar RSS", kernel_rows.delivery_and_memory),
    ("start", "sidecar start -> ready", kernel_rows.start_to_ready),
    ("init", "diffkeeper-init baked / download", init_rows.init_rows),
    ("bundle", "BTF bundle size / init bundle -> cache", bundle_rows.bundle_rows),
    ("store", "content store vs restic / export vs cp -a", store_rows.store_rows),
    ("sizes", "binary and image sizes", None),
]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "bpf_stats_enabled": system.BPF_STATS_SYSCTL.read_text().strip(),
    }


def paste_results(doc: Path, text: str) -> None:
    begin, end = "<!-- RESULTS:BEGIN", "<!-- RESULTS:END -->"
    content = doc.read_text()
    if begin not in content or end not in content:
        raise SystemExit(f"bench: {doc} has no {begin} ... {end} markers to paste the results between")
    head, rest = content.split(begin, 1)
    marker_line, _ = rest.split("\n", 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}{marker_line}\n{text}\n{end}{tail}")
    print(f"bench: pasted the results into {doc}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=REPO / "target" / "bench")
    ap.add_argument("--update-doc", type=Path, metavar="MD",
                    help="also paste the table between the RESULTS markers of MD (e.g. BENCHMARKS.md)")
    ap.add_argument("--baseline-sidecar", type=Path, metavar="BIN",
                    help="another build's diffkeeper-sidecar (e.g. main's, before a change) measured beside "
                         "this one in the 'outside' rows: the before/after of a change on the write path")
    ap.add_argument("--reps", type=int, metavar="N",
                    help="repetitions of every timed comparison (default 7; more on a noisy machine: the "
                         "medians of paired ratios settle as N grows)")
    ap.add_argument("--only", default="", help="comma-separated sections: " + ",".join(s[0] for s in SECTIONS))
    args = ap.parse_args()

    if os.geteuid() != 0:
        print("bench: needs root (eBPF programs, mounts, kernel.bpf_stats_enabled)", file=sys.stderr)
        return 2
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"bench: missing {', '.join(missing)}: run scripts/setup.sh", file=sys.stderr)
        return 2
    bins = Bins.in_dir(args.bin_dir.resolve())
    sizes = Sizes.smoke() if args.smoke else Sizes.full()
    if args.reps:
        sizes = dataclasses.replace(sizes, reps=args.reps)
    only = {s for s in args.only.split(",") if s}

    system.enter_private_mount_namespace()
    system.ensure_tracefs()
    ctx = Context.create(bins, sizes, REPO)
    if args.baseline_sidecar:
        ctx.baseline_sidecar = args.baseline_sidecar.resolve()
    before = machine()
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for name, label, section in SECTIONS:
            if only and name not in only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                with system.bpf_stats(False):
                    if section is None:
                        rows += static_rows.size_rows(ctx, with_image=not args.smoke)
                    else:
                        rows += section(ctx)
            except Exception as e:  # one broken section must not hide the others' numbers
                traceback.print_exc()
                rows.append(error_row(label, e))
            print(f"bench: {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        ctx.remove()
    after = machine()

    table = render(rows)
    print(table)
    header = (f"machine: {before['cpus']} x {before['cpu']}, kernel {before['kernel']}; "
              f"loadavg {' '.join(before['loadavg'])} -> {' '.join(after['loadavg'])}; "
              f"kernel.bpf_stats_enabled found at {before['bpf_stats_enabled']} (0 outside the program section); "
              f"{before['date']}; {'smoke' if args.smoke else 'full'} run, "
              f"{time.monotonic() - started:.0f} s; sizes {sizes}")
    print("\n" + header)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "smoke" if args.smoke else "results"
    (args.out_dir / f"{stem}.md").write_text(table + "\n\n" + header + "\n")
    (args.out_dir / f"{stem}.json").write_text(json.dumps(
        {"machine": before, "machine_after": after, "sizes": sizes.__dict__,
         "rows": [r.as_dict() for r in rows], "samples": stats.RECORDED}, indent=2, default=str))
    print(f"bench: written {args.out_dir / stem}.md and .json", file=sys.stderr)
    if args.update_doc:
        paste_results(args.update_doc, table + "\n\n" + header)

    empty = [r.metric for r in rows if r.subject is None and not r.optional]
    if empty:
        print(f"bench: {len(empty)} row(s) produced no number: {'; '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
