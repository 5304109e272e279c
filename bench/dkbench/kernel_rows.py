"""Rows about the sidecar at run time: BPF program cost, per-write overhead inside watched dirs
(outside: outside_rows.py), delivery at the maximum write rate, memory, and start-up time."""

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import stats, system
from .context import Context
from .procs import (Bpftrace, BenchError, HelperProbe, Inotifywait, Sidecar, ignored_loop,
                    prog_run_stats, write_loop)
from .table import Row, Value
from .write_compare import CPU_NS, overhead_vs_peer, vs_unprobed

BPFTRACE_COUNT_WRITES = 'tracepoint:syscalls:sys_enter_write { @writes = count(); } BEGIN { printf("live\\n"); }'
BPFTRACE_FIRST_PROBE = 'tracepoint:syscalls:sys_enter_write { printf("first\\n"); exit(); }'


@dataclass(frozen=True)
class Variant:
    """Which eBPF object a tracepoint-mode sidecar loads and which sys_exit program it attaches."""
    key: str          # prefix of the condition names
    ebpf_object: str  # --ebpf-object
    program: str      # tp_btf or raw_tracepoint: checked against the sidecar's log
    cached_btf: bool  # /sys/kernel/btf hidden while it starts, the same BTF served from a cache
    label: str


# With the system BTF the modern object attaches tp_btf dk_sys_exit_btf (the default here); with
# a cached BTF it takes raw_tracepoint dk_sys_exit, the attach type the compat object always uses.
MODERN = Variant("modern", "modern", "tp_btf", False, "modern object, tp_btf")
MODERN_RAW = Variant("modern_raw", "modern", "raw_tracepoint", True,
                     "modern object on raw_tracepoint (cached BTF)")
COMPAT = Variant("compat", "compat", "raw_tracepoint", False, "compat object, raw_tracepoint")


def _sidecar(ctx: Context, backend: str = "tracepoint", **kw) -> Sidecar:
    journal = kw.pop("journal", ctx.out / "journal.jsonl")
    return Sidecar(kw.pop("bins", ctx.bins), [ctx.watched], journal, cache_dir=kw.pop("cache_dir", ctx.empty_cache),
                   backend=backend, **kw)


def _started(ctx: Context, variant: Variant, **kw) -> Sidecar:
    """A tracepoint-mode sidecar of `variant`, ready, its object and sys_exit program checked;
    the caller enters it (`with`) so it is killed whatever happens."""
    hide = system.hidden_system_btf(ctx.empty_dir) if variant.cached_btf else contextlib.nullcontext()
    if variant.cached_btf:
        kw["cache_dir"] = ctx.system_btf_cache
    with hide:
        sc = _sidecar(ctx, ebpf_object=variant.ebpf_object, **kw)
        try:
            sc.ready()
        except BaseException:
            sc.__exit__(None, None, None)
            raise
    if sc.sys_exit_program() != variant.program:
        sc.__exit__(None, None, None)
        raise BenchError(f"{variant.label}: the sidecar attached {sc.sys_exit_program()}, not {variant.program}; "
                         "log:\n" + "\n".join(sc.log[-20:]))
    return sc


def _with_sidecar(ctx: Context, measure, backend: str = "tracepoint", variant: Variant | None = None, **kw):
    """Starts a sidecar, runs measure(sidecar) once it is ready, stops it (exit 0 required)."""
    if variant is None:
        sc = _sidecar(ctx, backend, **kw)
        with sc:
            sc.ready()
            return _measure_then_stop(ctx, sc, measure)
    with _started(ctx, variant, **kw) as sc:
        return _measure_then_stop(ctx, sc, measure)


def _measure_then_stop(ctx: Context, sc: Sidecar, measure):
    try:
        return measure(sc)
    finally:
        sc.stop()
        (ctx.out / "journal.jsonl").unlink(missing_ok=True)


def _with_bpftrace(program: str, measure):
    with Bpftrace(program) as bt:
        bt.wait_for("live")
        try:
            return measure()
        finally:
            bt.stop()


def _with_helper(ctx: Context, mode: str, arg, measure):
    """Runs measure(program ids) while the bench helper holds its programs attached."""
    with HelperProbe(ctx.bins, mode, arg) as probe:
        prog_ids = probe.ready()
        try:
            return measure(prog_ids)
        finally:
            probe.stop()


# What the compat object may cost against the modern one on the same attach type
# (raw_tracepoint), per program run: the objects share their C, so this is the price of what
# compat lacks (global data, loops, the split walk).
COMPAT_SAME_ATTACH_LIMIT = 1.05

FS_CASES = (("same_fs", "same file system as the watched dir"), ("other_fs", "other file system"))
VARIANTS = (MODERN, COMPAT, MODERN_RAW)


def programs_during_writes(ctx: Context, prog_ids, target: Path, n: int) -> tuple[int, int]:
    """(run time in ns, runs) of the programs `prog_ids` over `n` one-byte writes to `target`
    (kernel BPF stats, which must be on); fails if they ran fewer times than there were writes."""
    return _programs_during(prog_ids, lambda: write_loop(ctx.bins, target, n), n, "writes")


def _programs_during(prog_ids, loop, n: int, what: str) -> tuple[int, int]:
    before = [prog_run_stats(i) for i in prog_ids]
    loop()
    after = [prog_run_stats(i) for i in prog_ids]
    ns = sum(a[0] - b[0] for a, b in zip(after, before))
    runs = sum(a[1] - b[1] for a, b in zip(after, before))
    if runs < n:
        raise BenchError(f"programs {prog_ids} ran {runs} times for {n} {what}: not attached?")
    return ns, runs


def program_cost(ctx: Context) -> list[Row]:
    """ns per run of the sidecar's kernel program (kernel BPF stats) for writes outside the
    watched dir, against the same program with a filter that rejects nothing; the compat
    object against the modern one, both on tp_btf (modern's default here) and on the raw
    tracepoint compat uses."""
    n = ctx.sizes.writes
    runs_per_write: list[float] = []

    def cost(prog_ids, target):
        ns, runs = programs_during_writes(ctx, prog_ids, target, n)
        runs_per_write.append(runs / n)
        return ns / runs

    def sidecar_cost(variant, target):
        return lambda: _with_sidecar(ctx, lambda sc: cost(sc.prog_ids(), target), variant=variant)

    def helper_cost(mode, arg):
        return lambda: _with_helper(ctx, mode, arg, lambda prog_ids: cost(prog_ids, ctx.outside_same_fs))

    def ignored_cost(prog_ids):
        ns, runs = _programs_during(prog_ids, lambda: ignored_loop(ctx.bins, n), n, "getppid calls")
        return ns / runs

    targets = {"same_fs": ctx.outside_same_fs, "other_fs": ctx.outside_other_fs}
    conditions = {f"{v.key}_{fs}": sidecar_cost(v, targets[fs]) for v in VARIANTS for fs, _ in FS_CASES}
    conditions["unfiltered"] = helper_cost("unfiltered", ctx.fs_a)
    conditions["empty"] = helper_cost("empty", ctx.empty_program)
    # Most syscalls on a node are none the programs look at: what those pay.
    for v in VARIANTS:
        conditions[f"{v.key}_ignored"] = (
            lambda v=v: _with_sidecar(ctx, lambda sc: ignored_cost(sc.prog_ids()), variant=v))
    conditions["empty_ignored"] = lambda: _with_helper(ctx, "empty", ctx.empty_program, ignored_cost)
    with system.bpf_stats(True):
        s = stats.interleaved(ctx.sizes.reps, conditions)
    base = Value(stats.median(s["unfiltered"]), "ns/run")
    label = "same program, filter passes every write"
    ns_run = lambda key: Value(stats.median(s[key]), "ns/run")  # noqa: E731
    floor_note = (f"floor: empty programs on sys_enter and sys_exit cost {stats.median(s['empty']):.1f} ns/run (the "
                  "stats' own clock reads, included in every number here); each condition's programs ran "
                  f"{stats.median(runs_per_write):.3f} times per write together (every syscall on the machine "
                  "passes both tracepoints, so other processes' calls are averaged in)")
    rows = []
    for fs, where in FS_CASES:
        rows.append(Row(
            f"BPF program cost, write outside watched dirs, {where} (tracepoint, {MODERN.label})",
            ns_run(f"modern_{fs}"), base, label,
            stats.paired_ratio(s[f"modern_{fs}"], s["unfiltered"]), "<= 150 ns/run",
            check=lambda v, r: v <= 150, note="" if rows else floor_note))
        compat = f"compat_{fs}"
        for peer in (MODERN, MODERN_RAW):
            rows.append(Row(
                f"  same, {COMPAT.label} vs {peer.label}" if peer is MODERN
                else f"  same, {COMPAT.label} vs the same attach type: {peer.label}",
                ns_run(compat), ns_run(f"{peer.key}_{fs}"), peer.label,
                stats.paired_ratio(s[compat], s[f"{peer.key}_{fs}"]),
                "<= 150 ns/run" if peer is MODERN else f"<= {COMPAT_SAME_ATTACH_LIMIT}x",
                check=(lambda v, r: v <= 150) if peer is MODERN
                else (lambda v, r: r is not None and r <= COMPAT_SAME_ATTACH_LIMIT)))
    rows.append(Row(
        f"BPF program cost, a syscall the programs ignore (getppid) ({MODERN.label}) vs empty programs",
        ns_run("modern_ignored"), ns_run("empty_ignored"), "empty programs on sys_enter and sys_exit",
        stats.paired_ratio(s["modern_ignored"], s["empty_ignored"]), "report",
        note="most of a node's syscalls are of this kind: the programs only find the syscall number unknown"))
    rows.append(Row(
        f"  same, {COMPAT.label} vs the same attach type: {MODERN_RAW.label}",
        ns_run("compat_ignored"), ns_run("modern_raw_ignored"), MODERN_RAW.label,
        stats.paired_ratio(s["compat_ignored"], s["modern_raw_ignored"]), "report"))
    return rows


def write_overhead_inside(ctx: Context) -> list[Row]:
    n, target = ctx.sizes.writes, ctx.watched / "f"

    def loop():
        try:
            return write_loop(ctx.bins, target, n)
        finally:
            ctx.reset_watched()

    def with_inotifywait():
        out = ctx.out / "inotifywait.log"
        with Inotifywait(ctx.watched, out) as iw:
            iw.ready()
            try:
                return loop()
            finally:
                iw.stop()
                out.unlink(missing_ok=True)

    sidecar_cpu: list[float] = []

    def journaled(sc: Sidecar) -> float:
        """The writer's CPU per write; also the sidecar's own CPU per write, once it is idle again
        (its idle rate, measured just before, is taken off: polls and counter reads, not events)."""
        idle_rate = _idle_rate(sc)
        before, started = sc.cpu_ms(), time.monotonic()
        per_write = loop()
        settled_ms, settled_at = _cpu_when_idle(sc, idle_rate)
        busy_ms = settled_ms - before - idle_rate * (settled_at - started)
        sidecar_cpu.append(max(busy_ms, 0.0) * 1e6 / n)
        return per_write

    s = stats.interleaved(ctx.sizes.reps, {
        "unprobed": loop,
        "tracepoint": lambda: _with_sidecar(ctx, journaled),
        "inotify": lambda: _with_sidecar(ctx, lambda sc: loop(), backend="inotify"),
        "inotifywait": with_inotifywait,
        "kernel_only": lambda: _with_helper(ctx, "unfiltered", ctx.fs_a, lambda _: loop()),
    })
    what = "write() 1 B inside the watched dir, journal written (--coalesce-ms 0)"
    return [
        vs_unprobed(f"{what}: sidecar tracepoint vs unprobed", s, "tracepoint"),
        vs_unprobed("  same program reporting every write, ring drained every 1 ms by the bench helper "
                     "(no sidecar, no journal) vs unprobed", s, "kernel_only",
                     note="splits the sidecar's per-event cost into the kernel program's own work and what "
                          "the sidecar's reading adds (wake-ups, cache lines shared with the reader)"),
        Row("  the sidecar's own CPU per journaled write (its threads' runtime over the loop and until idle) "
            "vs an unprobed write", Value(stats.median(sidecar_cpu), CPU_NS), Value(stats.median(s["unprobed"]), CPU_NS),
            "unprobed write", stats.paired_ratio(sidecar_cpu, s["unprobed"]), "<= 1.5x",
            check=lambda v, r: r <= 1.5,
            note="reader (ring drain, event decoding, paths) and journal (lines, output) together"),
        vs_unprobed("  same, sidecar inotify backend vs unprobed", s, "inotify"),
        overhead_vs_peer("  same, inotify backend overhead vs `inotifywait -m -r` overhead", s, "inotify",
                          "inotifywait", "inotifywait overhead"),
    ]


def _idle_rate(sc: Sidecar, span: float = 0.5) -> float:
    """The sidecar's CPU ms per second with nothing to do (its reader's polls, counter reads):
    on a loaded machine each wake-up costs more, so 'idle' is judged against this, not a constant."""
    first, start = sc.cpu_ms(), time.monotonic()
    time.sleep(span)
    return (sc.cpu_ms() - first) / (time.monotonic() - start)


def _cpu_when_idle(sc: Sidecar, idle_rate: float, settle: float = 0.2,
                   timeout: float = 30.0) -> tuple[float, float]:
    """The sidecar's CPU ms, and when, once for `settle` s it used no more CPU per 50 ms window
    than its idle rate plus 0.5 ms (it has journaled the backlog)."""
    window = 0.05
    allowance = idle_rate * window * 2 + 0.5
    last, since, deadline = sc.cpu_ms(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(window)
        now = sc.cpu_ms()
        if now - last > allowance:
            since = time.monotonic()
        elif time.monotonic() - since >= settle:
            return now, time.monotonic()
        last = now
    raise BenchError(f"the sidecar was still busy {timeout:.0f} s after the write loop")


def _count_journal_writes(journal, path) -> int:
    """Lines for `path` with op write (fields as the journal writes them: op before path), not
    counting the repair lines a gap is followed by: those are the rescan's, not delivered events."""
    needle = f'"op":"write","path":"{path}"'
    # A pipe, not Python: 10 M lines would be ~1 GB in memory.
    count = 'grep -F "$1" "$2" | grep -c -v -F \'"repair":true\'; [ "${PIPESTATUS[0]}" -le 1 ] || exit 2'
    out = subprocess.run(["bash", "-c", count, "bash", needle, str(journal)], capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise BenchError(f"grep {journal}: {out.stderr.strip()}")
    return int(out.stdout.strip() or 0)


def _wait_until_quiet(sc: Sidecar, key: str, settle: float = 1.0, timeout: float = 300.0) -> None:
    """Waits until the sidecar's event counter stops moving (it has drained the ring)."""
    last, since, deadline = -1.0, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = sc.metrics().get(key, 0.0)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return
        time.sleep(0.1)
    raise BenchError(f"the sidecar was still delivering events after {timeout:.0f} s")


@dataclass
class Flood:
    delivered: int
    lost: int
    idle_rss_kib: int
    ready_peak_kib: int
    load_rss_kib: float
    peak_kib: int


def _flood(ctx: Context, variant: Variant, extra: tuple[str, ...] = ()) -> Flood:
    """One max-rate run: N writes in the watched dir, every event journaled (--coalesce-ms 0)."""
    n = ctx.sizes.flood_writes
    journal = ctx.out / "flood.jsonl"
    target = ctx.watched / "flood"
    key = 'diffkeeper_events_total{backend="tracepoint",op="write"}'
    samples: list[int] = []
    with _started(ctx, variant, journal=journal, metrics_port=ctx.metrics_port, extra=extra) as sc:
        time.sleep(1.0)
        idle_rss, ready_peak = sc.memory_kib()
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                try:
                    samples.append(sc.memory_kib()[0])
                except (OSError, AttributeError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            write_loop(ctx.bins, target, n)
            _wait_until_quiet(sc, key)
        finally:
            done.set()
            sampler.join()
        metrics = sc.metrics()
        _, peak = sc.memory_kib()
        sc.stop()
    delivered = _count_journal_writes(journal, target)
    journal.unlink()
    ctx.reset_watched()
    return Flood(delivered, int(metrics.get("diffkeeper_lost_events_total", 0)), idle_rss, ready_peak,
                 stats.median(samples) if samples else float(idle_rss), peak)


BIG_RING = 8 << 20


def delivery_and_memory(ctx: Context) -> list[Row]:
    n = ctx.sizes.flood_writes
    big_ring = ("--ringbuf-bytes", str(BIG_RING))
    f = _flood(ctx, MODERN)
    compat = _flood(ctx, COMPAT)
    big = _flood(ctx, MODERN, big_ring)
    compat_big = _flood(ctx, COMPAT, big_ring)
    mib = lambda kib: Value(kib / 1024, "MiB")  # noqa: E731

    def delivered_row(metric: str, r: Flood, target: str, judged: bool) -> Row:
        # Judged rows need both halves: >= 99.9 % in the journal, and every other write counted
        # lost (an event that vanished uncounted fails the row whatever the percentage).
        exact = r.delivered + r.lost == n
        return Row(metric, Value(100.0 * r.delivered / n, "%"), Value(n, "events"), "expected",
                   r.delivered / n, target, check=(lambda v, _: v >= 99.9 and exact) if judged else None,
                   note=f"journal lines {r.delivered:,}, lost per /metrics {r.lost:,}, "
                        f"delivered + lost = {r.delivered + r.lost:,} of {n:,}")

    target = ">= 99.9 % delivered, rest counted lost"
    return [
        delivered_row(f"events delivered at max write rate ({n:,} 1-B writes, --coalesce-ms 0; {MODERN.label}, "
                      "ring buffer)", f, target, True),
        delivered_row(f"  same, {COMPAT.label}, perf buffers", compat, target, True),
        delivered_row(f"  same with --ringbuf-bytes {BIG_RING} (default 1 MiB), {MODERN.label}", big, "report",
                      False),
        delivered_row(f"  same with --ringbuf-bytes {BIG_RING}, {COMPAT.label} (perf buffers, the bytes shared "
                      "over the CPUs)", compat_big, "report", False),
        Row("sidecar RSS steady (idle, 1 s after ready)", mib(f.idle_rss_kib), target="<= 20 MiB",
            check=lambda v, r: v <= 20),
        Row("sidecar RSS under max-rate load (median of samples)", mib(f.load_rss_kib), target="report",
            note=f"compat object: idle {compat.idle_rss_kib / 1024:.1f} MiB, under load "
                 f"{compat.load_rss_kib / 1024:.1f} MiB, peak {compat.peak_kib / 1024:.1f} MiB"),
        Row("sidecar RSS peak (VmHWM after the max-rate run)", mib(f.peak_kib), target="report",
            note=f"VmHWM was already {f.ready_peak_kib / 1024:.1f} MiB 1 s after ready, before any load"),
    ]


def start_to_ready(ctx: Context) -> list[Row]:
    cache = ctx.system_btf_cache
    cached_btf = cache / f"{os.uname().release}.btf"

    cpu_at_ready: dict[str, list[float]] = {}
    peak_at_ready: dict[str, list[int]] = {}

    def sidecar_start(backend="tracepoint", cache_dir=None, expect_btf="/sys/kernel/btf/vmlinux", key=""):
        def run():
            with _sidecar(ctx, backend, cache_dir=cache_dir or ctx.empty_cache) as sc:
                seconds = sc.ready()
                cpu_at_ready.setdefault(key, []).append(sc.cpu_ms())
                peak_at_ready.setdefault(key, []).append(sc.memory_kib()[1])
                btf = sc.btf_path()
                sc.stop()
            if btf != expect_btf:
                raise BenchError(f"sidecar used BTF {btf}, expected {expect_btf}")
            return seconds * 1000
        return run

    def cached_start():
        with system.hidden_system_btf(ctx.empty_dir):
            return sidecar_start(cache_dir=cache, expect_btf=str(cached_btf), key="cached")()

    min_cache = ctx.min_btf_cache
    min_btf = min_cache / f"{os.uname().release}.btf"

    def cached_min_start():
        with system.hidden_system_btf(ctx.empty_dir):
            return sidecar_start(cache_dir=min_cache, expect_btf=str(min_btf), key="cached_min")()

    def bpftrace_first_probe():
        # Keep a write happening every 0.5 ms so "first probe" is not waiting on idle time.
        stop = threading.Event()

        def tick():
            with open("/dev/null", "wb", buffering=0) as f:
                while not stop.wait(0.0005):
                    f.write(b"x")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            with Bpftrace(BPFTRACE_FIRST_PROBE) as bt:
                seconds, _ = bt.wait_for("first")
                bt.proc.wait(timeout=15)
            return seconds * 1000
        finally:
            stop.set()
            ticker.join()

    s = stats.interleaved(ctx.sizes.start_reps, {
        "system": sidecar_start(key="system"),
        "cached": cached_start,
        "cached_min": cached_min_start,
        "auto": sidecar_start("auto", key="auto"),
        "bpftrace": bpftrace_first_probe,
    })
    bt = Value(stats.median(s["bpftrace"]), "ms")
    label = "bpftrace start to first probe hit"
    cpu = {k: stats.median(v) for k, v in cpu_at_ready.items()}
    cpu_note = (f"sidecar CPU time at ready (all live threads; robust to this machine's load): system "
                f"{cpu['system']:.0f} ms, cached {cpu['cached']:.0f} ms, cached minimised {cpu['cached_min']:.0f} ms, auto {cpu['auto']:.0f} ms")
    peak = {k: Value(stats.median(v) / 1024, "MiB") for k, v in peak_at_ready.items()}
    return [
        Row("sidecar peak RSS (VmHWM at ready), system BTF, --attach tracepoint", peak["system"],
            target="<= 16 MiB", check=lambda v, r: v <= 16,
            note=f"--attach auto {peak['auto'].number:.1f} MiB; cached full copy of the system BTF "
                 f"{peak['cached'].number:.1f} MiB"),
        Row(f"  same, cached minimised BTF ({min_btf.stat().st_size:,} bytes, /sys/kernel/btf hidden)",
            peak["cached_min"], target="<= 8 MiB", check=lambda v, r: v <= 8),
        Row("sidecar start -> ready (probes attached + canary), system BTF, --attach tracepoint",
            Value(stats.median(s["system"]), "ms"), bt, label, stats.paired_ratio(s["system"], s["bpftrace"]),
            "<= 100 ms", check=lambda v, r: v <= 100, note=cpu_note),
        Row("  same, cached minimised BTF (/sys/kernel/btf hidden)",
            Value(stats.median(s["cached_min"]), "ms"), bt, label,
            stats.paired_ratio(s["cached_min"], s["bpftrace"]), "report"),
        Row("  same, cached BTF (/sys/kernel/btf hidden)",
            Value(stats.median(s["cached"]), "ms"), bt, label, stats.paired_ratio(s["cached"], s["bpftrace"]),
            "report"),
        Row("  same, system BTF, --attach auto (default: fentry and kprobe fail here first)",
            Value(stats.median(s["auto"]), "ms"), bt, label, stats.paired_ratio(s["auto"], s["bpftrace"]),
            "report"),
    ]
