"""write() outside the watched dirs: the sidecar's cost to every other write on the node, on the
watched file system and another one, against unprobed writes, empty programs on the same
tracepoints (the floor), bpftrace, the compat object and a baseline build."""

import dataclasses
from pathlib import Path

from . import stats
from .context import Context
from .kernel_rows import (COMPAT, FS_CASES, MODERN, MODERN_RAW, VARIANTS, BPFTRACE_COUNT_WRITES, _with_bpftrace,
                          _with_helper, _with_sidecar)
from .procs import foreign_probes, write_loop
from .table import Row, Value
from .write_compare import CPU_NS, overhead, overhead_ratio, overhead_vs_peer, vs_unprobed


def _baseline_note() -> str:
    others = foreign_probes()
    return f"other BPF attachments present at the start (the unprobed baseline may pay for them): " \
        f"{', '.join(others)}" if others else ""


def _floor_keys(fs: str) -> tuple[str, str]:
    """The unprobed and empty-program conditions that wrote to the same file as `fs`'s sidecar
    runs: writes to the two tmpfs mounts need not cost the same (paths, page cache)."""
    return ("unprobed", "empty") if fs == "same_fs" else (f"unprobed_{fs}", f"empty_{fs}")


def _compat_rows(s: dict, fs: str, where: str, limit: float) -> list[Row]:
    compat, (unprobed, _) = f"compat_{fs}", _floor_keys(fs)
    rows = [vs_unprobed(f"write() 1 B to tmpfs outside watched dirs, {where}: sidecar ({COMPAT.label}) "
                         "vs unprobed", s, compat, unprobed=unprobed)]
    for peer, target in ((MODERN, f"<= {limit}x"), (MODERN_RAW, "report")):
        key = f"{peer.key}_{fs}"
        ratio = overhead_ratio(s, compat, key, unprobed)
        mine, theirs = overhead(s, compat, unprobed), overhead(s, key, unprobed)
        rows.append(Row(
            f"  compat overhead / modern overhead, {where} (peer: {peer.label})",
            Value(mine, CPU_NS), Value(theirs, CPU_NS), f"{peer.label} overhead",
            ratio, target, check=(lambda v, r: r is not None and r <= limit) if peer is MODERN else None,
            note=f"ratio = median of the per-repetition overhead ratios; ratio of the median overheads "
                 f"{mine / theirs:.3f}x; whole write() compat / modern, paired: "
                 f"{stats.paired_ratio(s[compat], s[key]):.3f}x" if theirs > 0 else ""))
    return rows


COMPAT_OVERHEAD_LIMIT = 1.15


def write_overhead_outside(ctx: Context) -> list[Row]:
    n = ctx.sizes.writes
    contamination = _baseline_note()
    targets = {"same_fs": ctx.outside_same_fs, "other_fs": ctx.outside_other_fs}

    def loop(fs):
        return lambda: write_loop(ctx.bins, targets[fs], n)

    def sidecar(variant, fs, **kw):
        return lambda: _with_sidecar(ctx, lambda sc: loop(fs)(), variant=variant, **kw)

    baseline_programs: list[int] = []

    def baseline_sidecar(fs, bins):
        def measure(sc):
            baseline_programs.append(len(sc.prog_ids()))
            return loop(fs)()
        return lambda: _with_sidecar(ctx, measure, variant=MODERN, bins=bins)

    conditions = {"unprobed": loop("same_fs"), "unprobed_other_fs": loop("other_fs")}
    conditions |= {f"{v.key}_{fs}": sidecar(v, fs) for v in VARIANTS for fs, _ in FS_CASES}
    if ctx.baseline_sidecar:
        baseline = dataclasses.replace(ctx.bins, sidecar=ctx.baseline_sidecar)
        conditions |= {f"baseline_{fs}": baseline_sidecar(fs, baseline) for fs, _ in FS_CASES}
        # The floor of a baseline that attached sys_exit only (before the sys_enter half).
        conditions["empty_exit"] = lambda: _with_helper(ctx, "empty-exit", ctx.empty_program,
                                                        lambda _: loop("same_fs")())
    conditions["bpftrace"] = lambda: _with_bpftrace(BPFTRACE_COUNT_WRITES, loop("same_fs"))
    conditions["empty"] = lambda: _with_helper(ctx, "empty", ctx.empty_program, lambda _: loop("same_fs")())
    conditions["empty_other_fs"] = lambda: _with_helper(ctx, "empty", ctx.empty_program, lambda _: loop("other_fs")())
    s = stats.interleaved(ctx.sizes.reps, conditions)
    what = "write() 1 B to tmpfs outside watched dirs"
    rows = [
        vs_unprobed(f"{what}, other file system: sidecar (tracepoint, {MODERN.label}) vs unprobed", s,
                     "modern_other_fs", "<= 1.35x", 1.35, note=contamination, unprobed="unprobed_other_fs"),
        vs_unprobed(f"{what}, same file system as the watched dir: sidecar (tracepoint, {MODERN.label}) "
                     "vs unprobed", s, "modern_same_fs", "<= 1.35x", 1.35),
        vs_unprobed("  floor: empty programs on the same tracepoints (sys_enter, sys_exit) vs unprobed", s, "empty",
                     note=f"extra CPU ns per write: empty programs {overhead(s, 'empty'):.0f}, sidecar "
                          f"{overhead(s, 'modern_other_fs', 'unprobed_other_fs'):.0f} (other fs, over its own "
                          f"unprobed write) / {overhead(s, 'modern_same_fs'):.0f} (same fs), bpftrace "
                          f"{overhead(s, 'bpftrace'):.0f}; unprobed write to the other fs "
                          f"{stats.median(s['unprobed_other_fs']):.0f}, empty programs there "
                          f"{overhead(s, 'empty_other_fs', 'unprobed_other_fs'):.0f} above it"),
        *(_above_floor(s, fs, where, limit) for (fs, where), limit in zip(FS_CASES, (0.07, 0.04))),
        overhead_vs_peer("  sidecar overhead, other file system, vs bpftrace counting sys_enter_write", s,
                          "modern_other_fs", "bpftrace", "bpftrace overhead", unprobed="unprobed_other_fs"),
        overhead_vs_peer("  sidecar overhead, same file system, vs bpftrace counting sys_enter_write", s,
                          "modern_same_fs", "bpftrace", "bpftrace overhead"),
        *_compat_rows(s, "other_fs", "other file system", COMPAT_OVERHEAD_LIMIT),
        *_compat_rows(s, "same_fs", "same file system as the watched dir", COMPAT_OVERHEAD_LIMIT),
    ]
    if ctx.baseline_sidecar:
        rows += [_vs_baseline(s, fs, where, ctx.baseline_sidecar) for fs, where in FS_CASES]
        rows += [_vs_baseline_above_floors(s, fs, where, baseline_floor(baseline_programs))
                 for fs, where in FS_CASES]
    return rows


def baseline_floor(programs_held: list[int]) -> tuple[str, str]:
    """The empty-program condition that is a baseline sidecar's floor, and its attach points: a
    build from before the sys_enter half holds one tracepoint program (sys_exit), a later one two."""
    if programs_held and max(programs_held) >= 2:
        return "empty", "sys_enter + sys_exit"
    return "empty_exit", "sys_exit"


def _vs_baseline_above_floors(s: dict, fs: str, where: str, floor: tuple[str, str]) -> Row:
    """This build against the baseline with each one's attach-point floor taken off: an unprobed
    write plus what each build's programs add above empty programs on the tracepoints it attaches
    (this build: sys_enter and sys_exit; the baseline's, see baseline_floor)."""
    floor_key, attached = floor
    after = [u + k - e for u, k, e in zip(s["unprobed"], s[f"modern_{fs}"], s["empty"])]
    before = [u + b - e for u, b, e in zip(s["unprobed"], s[f"baseline_{fs}"], s[floor_key])]
    return Row(f"  same, each above its own attach points' floor (this build: sys_enter + sys_exit; baseline: "
               f"{attached}), {where}", Value(stats.median(after), CPU_NS), Value(stats.median(before), CPU_NS),
               "baseline above its floor", stats.paired_ratio(after, before), "<= 1.03x",
               check=lambda v, r: r is not None and r <= 1.03,
               note=f"floors: empty sys_enter + sys_exit {overhead(s, 'empty'):.0f} CPU ns per write, empty "
                    f"sys_exit alone {overhead(s, 'empty_exit'):.0f}")


def _above_floor(s: dict, fs: str, where: str, limit: float) -> Row:
    """The sidecar's write() cost above what empty programs on the same tracepoints cost, as a
    share of the unprobed write (paired per repetition)."""
    key, (unprobed, empty) = f"modern_{fs}", _floor_keys(fs)
    shares = [(k - e) / u for k, e, u in zip(s[key], s[empty], s[unprobed])]
    return Row(f"  sidecar above the floor, {where}: (sidecar - empty programs) / unprobed",
               Value(overhead(s, key, unprobed) - overhead(s, empty, unprobed), CPU_NS),
               Value(overhead(s, empty, unprobed), CPU_NS), "empty programs' overhead",
               stats.median(shares), f"<= +{limit}x", check=lambda v, r: r is not None and r <= limit,
               note="ratio column: the median per-repetition share of an unprobed write this costs above the floor")


def _vs_baseline(s: dict, fs: str, where: str, baseline: Path) -> Row:
    """This build's sidecar against another build's (--baseline-sidecar) in the same repetitions:
    the before/after of a change on the write path."""
    return Row(f"write() 1 B outside watched dirs, {where}: this build's sidecar vs the baseline build's "
               f"({MODERN.label})", Value(stats.median(s[f"modern_{fs}"]), CPU_NS),
               Value(stats.median(s[f"baseline_{fs}"]), CPU_NS), f"baseline {baseline}",
               stats.paired_ratio(s[f"modern_{fs}"], s[f"baseline_{fs}"]), "<= 1.03x",
               check=lambda v, r: r is not None and r <= 1.03,
               note=f"extra CPU ns per write over unprobed: this build {overhead(s, f'modern_{fs}'):.0f}, "
                    f"baseline {overhead(s, f'baseline_{fs}'):.0f}")
