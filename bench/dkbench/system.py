"""Process-wide set-up: a private mount namespace (so every mount the bench makes vanishes with
it), tmpfs work areas, tracefs for bpftrace, hiding the system BTF, and kernel BPF run stats."""

import ctypes
import ctypes.util
import contextlib
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYSTEM_BTF_DIR = Path("/sys/kernel/btf")
TRACEFS = Path("/sys/kernel/tracing")
BPF_STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class SetupError(RuntimeError):
    """The machine cannot run the benchmark (not root, missing tool, mount refused, ...)."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {err}); the bench needs root")


def mount(source: str, target: Path, fstype: str | None, flags: int = 0) -> None:
    _check(
        _libc.mount(source.encode(), str(target).encode(),
                    fstype.encode() if fstype else None, flags, None),
        f"mount {source} on {target}",
    )


def umount(target: Path) -> None:
    _check(_libc.umount2(str(target).encode(), MNT_DETACH), f"umount {target}")


def enter_private_mount_namespace() -> None:
    """Must run while the process is single-threaded (unshare(CLONE_NEWNS) requires it)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount("none", Path("/"), None, MS_REC | MS_PRIVATE)


def mount_tmpfs(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", target, "tmpfs")
    return target


def ensure_tracefs() -> None:
    """bpftrace's tracepoint probes read event ids from tracefs; fresh machines lack the mount."""
    if not (TRACEFS / "events").is_dir():
        mount("tracefs", TRACEFS, "tracefs")


@contextlib.contextmanager
def hidden_system_btf(empty_dir: Path):
    """A kernel without /sys/kernel/btf/vmlinux, as far as our children can tell."""
    empty_dir.mkdir(parents=True, exist_ok=True)
    mount(str(empty_dir), SYSTEM_BTF_DIR, None, MS_BIND)
    try:
        yield
    finally:
        umount(SYSTEM_BTF_DIR)


@contextlib.contextmanager
def bpf_stats(enabled: bool):
    """Sets kernel.bpf_stats_enabled for the block and restores the old value. On, every BPF
    program run reads the clock twice (run_time_ns/run_cnt); the per-write sections turn it
    off so that cost is not part of what they measure."""
    old = BPF_STATS_SYSCTL.read_text().strip()
    BPF_STATS_SYSCTL.write_text("1\n" if enabled else "0\n")
    try:
        yield
    finally:
        BPF_STATS_SYSCTL.write_text(old + "\n")
