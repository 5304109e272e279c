"""The content store (diffkeeper-sidecar --store's storage): bytes and capture CPU for a sequence
of versions against `restic backup` after each version, store growth for a large file with 1 %
changed per version, and `diffkeeper export` of a big tree against `cp -a`.

The capture side is driven by `diffkeeper-bench record` (the store library, recording what
changed since its last run, as the sidecar does after events); restic gets the same tree after
each version. Everything runs on the scratch directory's disk, not tmpfs (the sizes are large)."""

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from . import stats
from .context import Context
from .procs import BenchError
from .table import Row, Value

ROOT = "/state"


def _cpu_ms(argv: list[str], what: str, env: dict | None = None) -> tuple[float, str]:
    """CPU time (user + system, ms) of one run of argv, from the kernel's rusage of reaped
    children (nothing else runs as our child meanwhile), and its stdout."""
    before = os.times()
    done = subprocess.run(argv, capture_output=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise BenchError(f"{what} exited with {done.returncode}: {done.stderr.decode(errors='replace')[-800:]}")
    out = done.stdout.decode()
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return cpu * 1000, out


def _tree_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file() and not p.is_symlink())


def _content(rng: random.Random, size: int, text: bool) -> bytes:
    if text:
        line = b"%08d key=value-%d status=ok latency_ms=%d\n"
        out = bytearray()
        while len(out) < size:
            n = rng.randrange(1 << 30)
            out += line % (n, n % 977, n % 250)
        return bytes(out[:size])
    return rng.randbytes(size)


def _make_state(src: Path, rng: random.Random, files: int, file_bytes: int) -> None:
    for i in range(files):
        d = src / f"dir{i % 8}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_bytes(_content(rng, file_bytes, text=i % 2 == 0))


def _mutate(src: Path, rng: random.Random, version: int, file_bytes: int) -> None:
    """One version: 10 % of the files get 4 KiB rewritten in place, 5 % an append, one file is
    added and one deleted."""
    files = sorted(p for p in src.rglob("f*") if p.is_file())
    for p in rng.sample(files, max(1, len(files) // 10)):
        with open(p, "r+b") as f:
            f.seek(rng.randrange(max(1, p.stat().st_size - 4096)))
            f.write(_content(rng, 4096, text=False))
    for p in rng.sample(files, max(1, len(files) // 20)):
        with open(p, "ab") as f:
            f.write(_content(rng, 4096, text=True))
    (src / "dir0" / f"new{version}").write_bytes(_content(rng, file_bytes, text=True))
    rng.choice(files).unlink()


def _record(ctx: Context, src: Path, store: Path) -> tuple[float, dict]:
    ms, out = _cpu_ms([str(ctx.bins.helper), "record", str(src), str(store), ROOT], "diffkeeper-bench record")
    return ms, json.loads(out.strip().splitlines()[-1])


def _versions_vs_restic(ctx: Context, work: Path, smoke: bool) -> list[Row]:
    files, file_bytes, versions = (20, 64 << 10, 3) if smoke else (400, 256 << 10, 10)
    rng = random.Random(19)
    src, store, repo = work / "src", work / "store", work / "restic"
    _make_state(src, rng, files, file_bytes)
    password = work / "restic.pw"
    password.write_text("diffkeeper-bench\n")
    env = dict(os.environ, RESTIC_CACHE_DIR=str(work / "restic-cache"))
    restic = ["restic", "--repo", str(repo), "--password-file", str(password)]
    subprocess.run(restic + ["init"], check=True, capture_output=True, env=env)
    dk_cpu = restic_cpu = 0.0
    for v in range(versions + 1):
        if v:
            _mutate(src, rng, v, file_bytes)
        ms, _ = _record(ctx, src, store)
        dk_cpu += ms
        ms, _ = _cpu_ms(restic + ["backup", "--quiet", str(src)], "restic backup", env)
        restic_cpu += ms
    dk_bytes, restic_bytes = _tree_bytes(store), _tree_bytes(repo)
    verify = subprocess.run([str(ctx.bins.reader), "verify", "--store", str(store)], capture_output=True, text=True)
    if verify.returncode != 0:
        raise BenchError(f"diffkeeper verify failed after the versions: {verify.stdout[-800:]}")
    what = (f"{files} files of {file_bytes >> 10} KiB (half text, half random), then {versions} versions "
            f"(10 % of files 4 KiB rewritten, 5 % appended, one added, one deleted); restic "
            f"{subprocess.run(['restic', 'version'], capture_output=True, text=True).stdout.split()[1]}")
    return [
        Row("store: bytes after the version sequence", Value(dk_bytes, "bytes"), Value(restic_bytes, "bytes"),
            "restic repo", dk_bytes / restic_bytes, "<= 1.0x", check=lambda v, r: r <= 1.0, note=what),
        Row("store: capture CPU for the version sequence", Value(dk_cpu, "ms"), Value(restic_cpu, "ms"),
            "restic backup after each version", dk_cpu / restic_cpu, "<= 1.0x", check=lambda v, r: r <= 1.0,
            note="user+system CPU of the recording process, summed over the versions"),
    ]


def _growth(ctx: Context, work: Path, smoke: bool) -> list[Row]:
    size, versions = (4 << 20, 3) if smoke else (1 << 30, 5)
    rng = random.Random(7)
    src, store = work / "big-src", work / "big-store"
    src.mkdir()
    big = src / "big.bin"
    with open(big, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(rng.randbytes(1 << 20))
    _record(ctx, src, store)
    changed = size // 100
    growth = []
    for _ in range(versions):
        # 1 % of the file, as four regions at random places.
        with open(big, "r+b") as f:
            for _ in range(4):
                f.seek(rng.randrange(size - changed // 4))
                f.write(rng.randbytes(changed // 4))
        before = _tree_bytes(store)
        _record(ctx, src, store)
        growth.append(_tree_bytes(store) - before)
    per_version = stats.median(growth)
    return [Row("store: growth per version, large file with 1 % changed", Value(per_version, "bytes"),
                Value(changed, "bytes"), "bytes changed", per_version / changed, "<= 2x",
                check=lambda v, r: r <= 2.0,
                note=f"{size >> 20} MiB random file, {versions} versions, median growth; "
                     f"each version rewrites four regions of {changed // 4 >> 10} KiB")]


def _export_vs_cp(ctx: Context, work: Path, smoke: bool) -> list[Row]:
    big_files, big_bytes, small_files, small_bytes = (2, 1 << 20, 50, 16 << 10) if smoke else (8, 64 << 20, 4096, 128 << 10)
    reps = 1 if smoke else min(ctx.sizes.reps, 5)
    rng = random.Random(11)
    src, store = work / "tree-src", work / "tree-store"
    for i in range(big_files):
        (src / "big").mkdir(parents=True, exist_ok=True)
        (src / "big" / f"b{i}").write_bytes(_content(rng, big_bytes, text=i % 2 == 0))
    _make_state(src / "small", rng, small_files, small_bytes)
    os.symlink("big/b0", src / "latest")
    (src / "empty").mkdir()
    _record(ctx, src, store)
    total = _tree_bytes(src)
    out = work / "out"

    def timed(argv: list[str], what: str):
        def run():
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True)
            ms = (time.perf_counter() - start) * 1000
            if done.returncode != 0:
                raise BenchError(f"{what} exited with {done.returncode}: {done.stderr[-800:]}")
            if _tree_bytes(out) != total:
                raise BenchError(f"{what} wrote {_tree_bytes(out)} bytes, not {total}")
            return ms
        return run

    s = stats.interleaved(reps, {
        "export": timed([str(ctx.bins.reader), "export", "--store", str(store), "--out", str(out)], "diffkeeper export"),
        "cp": timed(["cp", "-a", str(src), str(out)], "cp -a"),
    })
    shutil.rmtree(out, ignore_errors=True)
    return [Row("store: export of a tree vs cp -a", Value(stats.median(s["export"]), "ms"),
                Value(stats.median(s["cp"]), "ms"), "cp -a of the same tree",
                stats.paired_ratio(s["export"], s["cp"]), "<= 1.5x", check=lambda v, r: r <= 1.5,
                note=f"{total / (1 << 20):.0f} MiB in {big_files + small_files} files (half text, half random), "
                     f"same disk, warm page cache; {reps} interleaved runs")]


def store_rows(ctx: Context) -> list[Row]:
    if shutil.which("restic") is None:
        raise BenchError("restic is not installed (apt-get install restic, or scripts/setup.sh)")
    smoke = ctx.sizes.reps == 1
    work = ctx.ws / "store"
    rows: list[Row] = []
    try:
        for part in (_versions_vs_restic, _growth, _export_vs_cp):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            rows += part(ctx, work, smoke)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows
