"""Rows about capture (`--store`): the write path of an application writing inside the watched
dir, with the sidecar recording content into a store against the same sidecar without one, in
the same repetitions (capture runs off the hot path: goal no row worse than 1.05x)."""

import shutil

from . import stats
from .context import Context
from .kernel_rows import _with_sidecar
from .write_compare import CPU_NS
from .procs import write_loop
from .table import Row, Value

STORE_ON_LIMIT = 1.05
COALESCE_MS = 50  # the default: capture reads a file once its burst of writes settled


def _store_dir(ctx: Context):
    return ctx.out / "store"


def write_path_with_store(ctx: Context) -> list[Row]:
    n, target = ctx.sizes.writes, ctx.watched / "f"
    cpu = {}

    def loop():
        try:
            return write_loop(ctx.bins, target, n)
        finally:
            ctx.reset_watched()

    def run(backend: str, store: bool):
        key = f"{backend}_{'store' if store else 'plain'}"
        extra = ("--store", str(_store_dir(ctx))) if store else ()

        def measure(sc):
            value = loop()
            cpu.setdefault(key, []).append(sc.cpu_ms())
            return value

        try:
            return _with_sidecar(ctx, measure, backend=backend, coalesce_ms=COALESCE_MS, extra=extra)
        finally:
            shutil.rmtree(_store_dir(ctx), ignore_errors=True)

    s = stats.interleaved(ctx.sizes.reps, {
        "unprobed": loop,
        "tracepoint_plain": lambda: run("tracepoint", False),
        "tracepoint_store": lambda: run("tracepoint", True),
        "inotify_plain": lambda: run("inotify", False),
        "inotify_store": lambda: run("inotify", True),
    })
    what = f"write() 1 B inside the watched dir (--coalesce-ms {COALESCE_MS})"
    rows = []
    for backend in ("tracepoint", "inotify"):
        on, off = f"{backend}_store", f"{backend}_plain"
        rows.append(Row(
            f"{what}: sidecar {backend} with --store vs without", Value(stats.median(s[on]), CPU_NS),
            Value(stats.median(s[off]), CPU_NS), f"{backend}, no --store", stats.paired_ratio(s[on], s[off]),
            f"<= {STORE_ON_LIMIT}x", check=lambda v, r: r <= STORE_ON_LIMIT,
            note=f"unprobed {stats.median(s['unprobed']):.0f} {CPU_NS}; sidecar CPU ms per run (median): "
                 f"with --store {stats.median(cpu.get(on, [0])):.0f}, without {stats.median(cpu.get(off, [0])):.0f}"))
    return rows
