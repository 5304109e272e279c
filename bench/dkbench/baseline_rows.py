"""The before/after of a change on the write path (--baseline-sidecar): the kernel programs' own
time per write() outside the watched dirs (kernel BPF stats), each build above the empty programs
on the attach points it uses (this build: sys_enter and sys_exit; a baseline from before the
sys_enter half: sys_exit alone, told by how many programs it holds). Only the programs' run time
is counted, not the syscall around them, so a noisy machine moves it far less than the
whole-write() rows of the "outside" section."""

import dataclasses

from . import stats, system
from .context import Context
from .kernel_rows import FS_CASES, MODERN, _with_helper, _with_sidecar, programs_during_writes
from .outside_rows import baseline_floor
from .table import Row, Value

NS_WRITE = "ns/write"


def program_time_vs_baseline(ctx: Context) -> list[Row]:
    if not ctx.baseline_sidecar:
        return []
    n = ctx.sizes.writes
    baseline = dataclasses.replace(ctx.bins, sidecar=ctx.baseline_sidecar)
    targets = {"same_fs": ctx.outside_same_fs, "other_fs": ctx.outside_other_fs}

    def per_write(prog_ids, target) -> float:
        """The programs' run time over `n` writes, per write (other processes' syscalls that pass
        the same tracepoints meanwhile are averaged in, alike for every condition)."""
        return programs_during_writes(ctx, prog_ids, target, n)[0] / n

    baseline_programs: list[int] = []

    def sidecar(fs, **kw):
        return lambda: _with_sidecar(ctx, lambda sc: per_write(sc.prog_ids(), targets[fs]), variant=MODERN, **kw)

    def baseline_sidecar(fs):
        def measure(sc):
            baseline_programs.append(len(sc.prog_ids()))
            return per_write(sc.prog_ids(), targets[fs])
        return lambda: _with_sidecar(ctx, measure, variant=MODERN, bins=baseline)

    def helper(mode):
        return lambda: _with_helper(ctx, mode, ctx.empty_program, lambda ids: per_write(ids, ctx.outside_same_fs))

    conditions = {f"this_{fs}": sidecar(fs) for fs, _ in FS_CASES}
    conditions |= {f"baseline_{fs}": baseline_sidecar(fs) for fs, _ in FS_CASES}
    conditions |= {"empty": helper("empty"), "empty_exit": helper("empty-exit")}
    with system.bpf_stats(True):
        s = stats.interleaved(ctx.sizes.reps, conditions)
    floor, attached = baseline_floor(baseline_programs)
    rows = []
    for fs, where in FS_CASES:
        after = stats.median(s[f"this_{fs}"]) - stats.median(s["empty"])
        before = stats.median(s[f"baseline_{fs}"]) - stats.median(s[floor])
        paired = stats.paired_ratio([k - e for k, e in zip(s[f"this_{fs}"], s["empty"])],
                                    [b - e for b, e in zip(s[f"baseline_{fs}"], s[floor])])
        rows.append(Row(
            f"BPF programs' time per write() outside watched dirs, {where}, above each build's empty programs: "
            f"this build (sys_enter + sys_exit) vs the baseline build ({attached}; {MODERN.label})",
            Value(after, NS_WRITE), Value(before, NS_WRITE), f"baseline {ctx.baseline_sidecar}",
            after / before if before > 0 else None, "<= 1.03x",
            check=lambda v, r: r is not None and r <= 1.03,
            note=f"ratio of the median times above the median floors; median of the per-repetition ratios "
                 f"{paired:.3f}x; floors: empty sys_enter + sys_exit {stats.median(s['empty']):.1f} ns/write, empty "
                 f"sys_exit alone {stats.median(s['empty_exit']):.1f} (the stats' own clock reads)"))
    return rows
