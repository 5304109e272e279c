"""VM rows for state dirs on btrfs (root identity as the kernel sees it): kprobe (and fentry where the kernel attaches
it) on a loop-mounted btrfs image, on every guest kernel. The build host has neither kprobes nor
fentry, so sidecar/tests/filesystems.rs covers btrfs there in tracepoint mode only.

Host side (`make`): a 64 MiB btrfs image made with mkfs.btrfs and filled through a loop mount in
a private mount namespace (needs root and btrfs-progs), gzipped, and the kernel's own `loop` and
`btrfs` modules with their dependencies (from the .modinfo of each, uncompressed for busybox
insmod) taken from the same Debian kernel package the guest boots. They go to the guest packed in
one tar file, the disk pack, with a small ext4 image (mkfs.ext4 on a plain file, empty; ext4 is
built into these kernels) for the ext4 rows (ext4.py), as the "disk" BTF variant,
/vm/btf/disk/<release>.btf (the file is a tar, not a BTF; the guest's load_disk_pack unpacks it
and loads the modules). The btrfs image's layout:

    top/                 a directory in the top-level subvolume    (scenario 1)
    top/both             a root for the two-root run               (inode 258)
    sub/                 subvolume
    sub/inner/           a directory inside subvolume `sub`       (scenario 2)
    sub/inner/pad        only there so that sub/inner/both is not inode 258 too
    sub/inner/both       the other root of the two-root run        (inode 259)
    nest/                a directory with a subvolume below it: must fall back to inotify
    nest/subv/           subvolume

The guest script (tests/vm/guest/cases/btrfs.sh MODE EXPECT) runs, with the system BTF:
1. the journal scenario (diffkeeper-scenario: exact journal, paths included) in top/,
2. the same in sub/inner/,
3. one sidecar watching top/both and sub/inner/both (one superblock, two subvolumes, different
   stat(2) devices): create+write, rename, write, delete in each, journal compared here,
4. a sidecar watching sub/ itself (a subvolume top, inode 256) while a file is made in
   nest/subv/ (another subvolume top: the same device and inode number): only the file in sub/
   may be journaled, under its own name,
5. a sidecar watching nest/: inotify, with the nested-subvolume reason in its log.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import matrix
from .case import Case, Verdict, _finished, _verdict, evidence, parts, ready_backend
from .qemu import CaseOutput
from .util import HarnessError

MODULES = ("loop", "btrfs")
IMAGE_MIB = 64  # the smallest btrfs mkfs.btrfs makes with single data and metadata is ~40 MiB
EXT4_MIB = 8
MOUNT = "/mnt/dk-btrfs"  # where the guest mounts the image (btrfs.sh)
# The two-root run: (root, inode the host checked); the sidecar refuses two roots with the same
# (s_dev, inode), and inode numbers restart in every subvolume.
BOTH_ROOTS = ("top/both", "sub/inner/both")
NEST = "nest"  # has subvolume nest/subv below it

_FILL = r"""set -e
img=$1 mnt=$2
truncate -s {mib}M "$img"
mkfs.btrfs -q -m single -d single "$img" >/dev/null 2>&1
mkdir -p "$mnt"
mount -o loop "$img" "$mnt"
mkdir -p "$mnt/top/both" "$mnt/nest"
btrfs -q subvolume create "$mnt/sub"
btrfs -q subvolume create "$mnt/nest/subv"
mkdir -p "$mnt/sub/inner/pad" "$mnt/sub/inner/both"
stat -c '%n %i %d' "$mnt/top/both" "$mnt/sub/inner/both"
umount "$mnt"
"""


def _image(work: Path) -> bytes:
    """The gzipped image (see the module docstring), made in a private mount namespace."""
    for tool in ("mkfs.btrfs", "btrfs", "unshare"):
        if shutil.which(tool) is None:
            raise HarnessError(f"{tool} not found: the btrfs rows need btrfs-progs (scripts/setup.sh)")
    img, mnt = work / "btrfs.img", work / "btrfs-mnt"
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _FILL.format(mib=IMAGE_MIB), "fill", str(img), str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        raise HarnessError(
            f"making the btrfs image failed (needs root for the loop mount): {res.stderr.strip()[-400:]}"
        )
    inodes = [line.split()[1] for line in res.stdout.splitlines() if line.strip()]
    if len(inodes) != 2 or inodes[0] == inodes[1]:
        raise HarnessError(f"btrfs image: the two-root dirs must differ in inode number: {res.stdout!r}")
    data = gzip.compress(img.read_bytes(), compresslevel=6)
    img.unlink()
    mnt.rmdir()
    return data


def _modules(kernel) -> list[Path]:
    """loop, btrfs and their dependencies, uncompressed, in load order; cached next to the
    kernel's extracted image."""
    from .arm64 import module_load_order  # noqa: PLC0415 (arm64 imports matrix, which imports us)
    from .arm64_apt import _unpack  # noqa: PLC0415

    out = kernel.vmlinux.parent / "btrfs-modules"
    order = out / "modules.order"
    if order.exists():
        return [out / n for n in order.read_text().split()]
    with tempfile.TemporaryDirectory(dir=kernel.vmlinux.parent) as tmp:
        root = Path(tmp) / "root"
        _unpack(kernel.deb, root)
        moddir = root / "lib" / "modules" / kernel.release
        staging = Path(tmp) / "out"
        staging.mkdir()
        names = []
        for i, (name, ko) in enumerate(module_load_order(moddir, MODULES)):
            names.append(f"{i:02d}-{name}.ko")
            (staging / names[-1]).write_bytes(ko)
        (staging / "modules.order").write_text("\n".join(names) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    return _modules(kernel)


def _ext4_image(work: Path) -> bytes:
    """A gzipped empty ext4 image (no mount needed: the guest fills it)."""
    if shutil.which("mkfs.ext4") is None:
        raise HarnessError("mkfs.ext4 not found: the ext4 rows need e2fsprogs")
    img = work / "ext4.img"
    subprocess.run(["truncate", "-s", f"{EXT4_MIB}M", str(img)], check=True)
    res = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise HarnessError(f"mkfs.ext4 failed: {res.stderr.strip()[-400:]}")
    data = gzip.compress(img.read_bytes(), compresslevel=6)
    img.unlink()
    return data


def make(kernel, work: Path) -> Path:
    """The disk pack the guest unpacks: modules/NN-name.ko, modules.order, btrfs.img.gz,
    ext4.img.gz."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        modules = _modules(kernel)
        for ko in modules:
            add(f"modules/{ko.name}", ko.read_bytes())
        add("modules.order", "".join(f"{ko.name}\n" for ko in modules).encode())
        add("btrfs.img.gz", _image(work))
        add("ext4.img.gz", _ext4_image(work))
    out = work / f"{kernel.release}.disk.tar"
    out.write_bytes(buf.getvalue())
    return out


# ---- the check ----


def expected_backend(mode: str, release: str) -> str:
    """kprobe; fentry where the kernel attaches it: not before 5.17 (only the compat object
    loads, and it has no fentry programs) nor on arm64 before 6.4 (no ftrace direct calls)."""
    if mode == "fentry" and not release.startswith("5."):
        if not release.endswith("-arm64") or matrix.kernel_version(release) >= (6, 4):
            return "fentry"
    return "kprobe"


def journal_lines(text: str) -> list[dict]:
    """The journal a part printed after its `== journal` line."""
    _, _, after = text.partition("== journal\n")
    lines = []
    for line in after.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"unparsable": line})
    return lines


def expected_changes(root: str) -> list[dict]:
    """What btrfs.sh does in each root of the two-root run, as journal fields (kprobe and fentry
    do not report mkdir, so the script makes none)."""
    return [
        {"op": "create", "path": f"{root}/new.txt"},
        {"op": "write", "path": f"{root}/new.txt", "bytes": 5},
        {"op": "rename", "path": f"{root}/moved.txt", "from": f"{root}/new.txt"},
        {"op": "write", "path": f"{root}/moved.txt", "bytes": 3},
        {"op": "delete", "path": f"{root}/moved.txt"},
    ]


def _short(line: dict) -> str:
    """A journal line as `backend op path [<- from] [N bytes]` for the notes."""
    text = f"{line.get('backend')} {line.get('op')} {line.get('path')}"
    if "from" in line:
        text += f" <- {line['from']}"
    if "bytes" in line:
        text += f" {line['bytes']} bytes"
    return text


def journal_fields(text: str) -> list[dict]:
    """journal_lines with only the fields the checks compare (no ts, pid, comm)."""
    return [{k: j[k] for k in ("backend", "op", "path", "from", "bytes") if k in j} for j in journal_lines(text)]


def journal_problem(what: str, got: list[dict], wanted: list[dict]) -> str:
    """"" when the journal lines `got` are exactly `wanted`, in order; else what differs."""
    if got == wanted:
        return ""
    missing = [_short(w) for w in wanted if w not in got]
    extra = [_short(m) for m in got if m not in wanted]
    order = "" if missing or extra else " (in another order)"
    return f"{what} differs{order}: missing {missing}, unexpected {extra}"


def _both_problem(text: str, want: str) -> tuple[str, str]:
    """(problem, events) of the two-root run: exactly the expected lines, per root in order."""
    roots = [f"{MOUNT}/{r}" for r in BOTH_ROOTS]
    expected = [dict(e, backend=want) for r in roots for e in expected_changes(r)]
    got = journal_fields(text)
    events = f"{len(got)}/{len(expected)}"
    seen = ready_backend(text)
    problems = [f"two roots: backend {seen or 'none'} instead of {want}" if seen != want else ""]
    # Per root in order (the sidecar may interleave roots only if the writes did; they do not).
    for root in roots:
        mine = [g for g in got if g.get("path", "").startswith(root + "/")]
        wanted = [e for e in expected if e["path"].startswith(root + "/")]
        problems.append(journal_problem(f"two roots: journal under {root}", mine, wanted))
    stray = [g for g in got if not any(g.get("path", "").startswith(r + "/") for r in roots)]
    if stray:
        problems.append(f"two roots: lines outside both roots: {stray}")
    return "; ".join(p for p in problems if p), events


def _sibling_problem(text: str, want: str, inodes: str) -> tuple[str, str]:
    """(problem, events) of the sibling run: exactly create and write of sub/inside.txt; nothing
    of nest/subv/outside.txt, under its name or under sub/."""
    path = f"{MOUNT}/sub/inside.txt"
    expected = [
        {"backend": want, "op": "create", "path": path},
        {"backend": want, "op": "write", "path": path, "bytes": len("inside\n")},
    ]
    got = journal_fields(text)
    seen = ready_backend(text)
    problems = [
        f"sibling subvolume: backend {seen or 'none'} instead of {want}" if seen != want else "",
        # The case is only a test while the two tops look alike to (device, inode).
        f"sibling subvolume: the two tops' inodes differ ({inodes})" if len(set(inodes.split(","))) != 1 else "",
        journal_problem("sibling subvolume: journal", got, expected),
    ]
    return "; ".join(p for p in problems if p), f"{len(got)}/{len(expected)}"


def _nest_problem(text: str) -> str:
    root = f"{MOUNT}/{NEST}"
    reason = f"below watched directory {root}, {root}/subv is a btrfs subvolume"
    seen = ready_backend(text)
    wrote = f"{root}/after-fallback.txt"
    return "; ".join(
        p
        for p in [
            f"subvolume below the root: backend {seen or 'none'} instead of inotify" if seen != "inotify" else "",
            f"subvolume below the root: no log line `{reason}`" if reason not in text else "",
            f"subvolume below the root: no inotify journal line for {wrote}"
            if not any(j.get("path") == wrote and j.get("backend") == "inotify" for j in journal_lines(text))
            else "",
        ]
        if p
    )


def _check(mode: str):
    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = expected_backend(mode, release)
        ev = evidence(out)
        p = parts(out.output)
        top, top_events = matrix.scenario_part_problem("top-level dir", p.get("top", ""), want, release)
        sub, sub_events = matrix.scenario_part_problem("dir in a subvolume", p.get("sub", ""), want, release)
        both, both_events = _both_problem(p.get("both", ""), want)
        sibling, sibling_events = _sibling_problem(p.get("sibling", ""), want, ev.get("sibling_inodes", ""))
        setup = [
            f"setup: {ev.get('setup')}" if ev.get("setup") != "ok" else "",
            # The reason for the rows: two subvolumes report different stat(2) devices.
            f"stat(2) devices of the two roots are not different ({ev.get('stat_devs')})"
            if len(set(ev.get("stat_devs", "").split(","))) != 2
            else "",
        ]
        seen = ", ".join(
            ready_backend(p.get(n, "")) or "none" for n in ("top", "sub", "both", "sibling", "nest")
        )
        return _verdict(
            seen,
            f"top {top_events}, subvol {sub_events}, two roots {both_events}, sibling {sibling_events}",
            [*setup, top, sub, both, sibling, _nest_problem(p.get("nest", ""))],
            [*setup, "" if ready_backend(out.output) else "the sidecar never reported ready"],
        )

    return check


def cases() -> list[Case]:
    return disk_cases(
        "btrfs",
        "btrfs: top-level dir, dir in a subvolume, both, a look-alike sibling subvolume, subvolume below a root (system BTF)",
        " x4, inotify",
        _check,
        timeout=150,
        args_on=lambda mode, release: [mode, expected_backend(mode, release)],
    )


def disk_cases(
    name: str,
    description: str,
    seen: str,
    check: Callable[[str], Callable],
    timeout: int,
    args_on: Callable[[str, str], list[str]] = lambda mode, _release: [mode],
) -> list[Case]:
    """One case per eBPF mode on the "disk" variant's images: guest script `<name>.sh`, expected
    "<backend the kernel gives that mode><seen>"."""
    return [
        Case(
            f"{name}.{mode}",
            f"{name}.sh",
            [mode],
            description,
            mode,
            f"{mode}{seen}",
            check(mode),
            timeout=timeout,
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
            btf_variants=("disk",),
            expect_on=lambda release, mode=mode: f"{expected_backend(mode, release)}{seen}",
            args_on=lambda release, mode=mode: args_on(mode, release),
        )
        for mode in ("kprobe", "fentry")
    ]
