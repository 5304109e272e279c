"""The BTF bundle (`just btfgen`): bytes per kernel in the bundle against BTFHub's .btf.tar.xz of
the same kernel, and diffkeeper-init bundle -> cache against today's baked .btf.tar.xz -> cache,
on this kernel's real BTF with the system BTF hidden."""

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

from . import stats, system
from .context import Context
from .init_rows import _fresh, _timed
from .procs import BenchError
from .table import Row, Value

REPO = Path(__file__).resolve().parents[2]


def _btfgen(ctx: Context) -> Path:
    exe = Path(ctx.bins.init).resolve().parents[2] / "release" / "diffkeeper-btfgen"
    if not exe.exists():
        raise BenchError(f"{exe} is missing: cargo build --release -p diffkeeper-btfgen (`just bench` does)")
    return exe


def bundle_rows(ctx: Context) -> list[Row]:
    release = os.uname().release
    work = system.mount_tmpfs(ctx.ws / "bundle")
    try:
        src = work / "src" / f"{release}.btf"
        src.parent.mkdir()
        shutil.copyfile(system.SYSTEM_BTF_DIR / "vmlinux", src)
        baked = work / "baked"
        archive = baked / f"{release}.btf.tar.xz"
        baked.mkdir()
        subprocess.run(["tar", "-cJf", str(archive), "-C", str(src.parent), src.name], check=True)
        tree = work / "btfhub" / "debian" / "12" / "x86_64"
        tree.mkdir(parents=True)
        shutil.copyfile(archive, tree / archive.name)
        bundle = work / "bundle.dkbtf"
        out = subprocess.run([str(_btfgen(ctx)), "--objects", str(REPO / "ebpf" / "obj"), str(work / "btfhub"),
                              str(bundle)], capture_output=True, text=True)
        if out.returncode != 0:
            raise BenchError(f"btfgen failed: {out.stderr.strip()[-800:]}")
        host = work / "host"
        (host / "etc").mkdir(parents=True)
        (host / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
        no_baked = _fresh(work / "no-baked")
        cache = work / "cache"

        def init(*extra, full: bool):
            def run():
                _fresh(cache)
                ms = _timed([str(ctx.bins.init), "--btf-cache-dir", str(cache), "--host-root", str(host),
                             "--kernel-release", release, "--arch", "x86_64", "--disable-btfhub-download",
                             "--required", *extra], "diffkeeper-init")
                got = cache / f"{release}.btf"
                if full and not filecmp.cmp(got, src, shallow=False):
                    raise BenchError(f"{got} differs from the source BTF")
                if not full and got.stat().st_size >= src.stat().st_size // 100:
                    raise BenchError(f"{got} is not a minimised BTF ({got.stat().st_size} bytes)")
                return ms
            return run

        with system.hidden_system_btf(ctx.empty_dir):
            s = stats.interleaved(ctx.sizes.init_reps, {
                "bundle": init("--baked-btf-dir", str(no_baked), "--btf-bundle", str(bundle), full=False),
                "baked": init("--baked-btf-dir", str(baked), "--btf-bundle", str(work / "none.dkbtf"), full=True),
            })
        per_kernel = bundle.stat().st_size
        return [
            Row("bundle: bytes for one kernel (index + xz blob)", Value(per_kernel, "bytes/kernel"),
                Value(archive.stat().st_size, "bytes"), "BTFHub .btf.tar.xz",
                per_kernel / archive.stat().st_size, "<= 0.01x", check=lambda v, r: r <= 0.01,
                note=f"{per_kernel} bytes incl. the 16-byte header; minimised for every object in ebpf/obj"),
            Row("init: bundle -> cache", Value(stats.median(s["bundle"]), "ms"),
                Value(stats.median(s["baked"]), "ms"), "init: baked .btf.tar.xz -> cache",
                stats.paired_ratio(s["bundle"], s["baked"]), "<= 0.5x", check=lambda v, r: r <= 0.5),
        ]
    finally:
        system.umount(work)
