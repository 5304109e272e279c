"""What every section gets: the binaries, the sizes of this run and the work directories."""

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .procs import Bins, compile_empty_program
from . import system


@dataclass(frozen=True)
class Sizes:
    reps: int            # repetitions of every timed comparison
    writes: int          # 1-byte writes per write-loop run
    flood_writes: int    # writes of the max-rate delivery run
    start_reps: int      # sidecar / bpftrace starts
    init_reps: int       # init vs tar / curl runs

    @classmethod
    def full(cls) -> "Sizes":
        return cls(reps=7, writes=1_000_000, flood_writes=10_000_000, start_reps=11, init_reps=11)

    @classmethod
    def smoke(cls) -> "Sizes":
        return cls(reps=1, writes=20_000, flood_writes=20_000, start_reps=1, init_reps=1)


@dataclass
class Context:
    bins: Bins
    sizes: Sizes
    ws: Path          # scratch root (its subdirectories are tmpfs mounts in our namespace)
    fs_a: Path        # tmpfs holding the watched dir and the "outside, same file system" file
    fs_b: Path        # a second tmpfs: "outside, other file system"
    out: Path         # tmpfs for journals and peer output
    repo: Path
    metrics_port: int = 19_611
    # Another build's sidecar (--baseline-sidecar) run beside this one in the write-path rows:
    # the before/after of a change.
    baseline_sidecar: Path | None = None

    @property
    def watched(self) -> Path:
        return self.fs_a / "watched"

    @property
    def outside_same_fs(self) -> Path:
        return self.fs_a / "outside" / "f"

    @property
    def outside_other_fs(self) -> Path:
        return self.fs_b / "f"

    @property
    def empty_cache(self) -> Path:
        """--btf-cache-dir for runs that must use the system BTF."""
        return self.out / "no-cache"

    @property
    def empty_program(self) -> Path:
        """bench/empty_syscalls.bpf.c compiled (once per run)."""
        return compile_empty_program(self.repo / "bench" / "empty_syscalls.bpf.c", self.out / "empty.bpf.o")

    @property
    def system_btf_cache(self) -> Path:
        """A --btf-cache-dir holding a copy of this kernel's system BTF as <release>.btf (made
        once per run): what the sidecar loads when /sys/kernel/btf is hidden."""
        cache = self.out / "btf-cache"
        cached = cache / f"{os.uname().release}.btf"
        if not cached.exists():
            cache.mkdir(exist_ok=True)
            cached.write_bytes(system.SYSTEM_BTF_DIR.joinpath("vmlinux").read_bytes())
        return cache

    @property
    def min_btf_cache(self) -> Path:
        """A --btf-cache-dir holding a minimised copy of this kernel's BTF (tests/vm/min-btf.sh:
        `bpftool gen min_core_btf` for both objects), as diffkeeper-init's bundle provides it."""
        cache = self.out / "min-btf-cache"
        minimised = cache / f"{os.uname().release}.btf"
        if not minimised.exists():
            cache.mkdir(exist_ok=True)
            subprocess.run([str(self.repo / "tests" / "vm" / "min-btf.sh"), str(system.SYSTEM_BTF_DIR / "vmlinux"),
                            str(minimised)], check=True, capture_output=True, text=True, timeout=120)
        return cache

    @property
    def empty_dir(self) -> Path:
        return self.ws / "empty"

    @classmethod
    def create(cls, bins: Bins, sizes: Sizes, repo: Path) -> "Context":
        # A fresh directory per run: two benches at once (e.g. CI beside a developer) must not
        # share, or remove, each other's workspace.
        parent = os.environ.get("DIFFKEEPER_BENCH_DIR")
        if parent:
            Path(parent).mkdir(parents=True, exist_ok=True)
        ws = Path(tempfile.mkdtemp(prefix="diffkeeper-bench.", dir=parent))
        ctx = cls(bins, sizes, ws, system.mount_tmpfs(ws / "a"), system.mount_tmpfs(ws / "b"),
                  system.mount_tmpfs(ws / "out"), repo)
        for d in (ctx.watched, ctx.outside_same_fs.parent, ctx.empty_cache, ctx.empty_dir):
            d.mkdir(parents=True, exist_ok=True)
        return ctx

    def reset_watched(self) -> None:
        """Empties the watched dir so every run starts alike (and tmpfs memory is given back)."""
        for entry in self.watched.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def remove(self) -> None:
        for mnt in (self.fs_a, self.fs_b, self.out):
            system.umount(mnt)
        shutil.rmtree(self.ws, ignore_errors=True)
