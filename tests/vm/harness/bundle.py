"""VM rows for the BTF bundle: on every real kernel, diffkeeper-init provisions the cache from a
bundle made on the host by diffkeeper-btfgen (`just btfgen`), with sysfs BTF hidden, downloads
off, no baked per-kernel file and no network; the sidecar then attaches kprobe and tracepoint with
that minimised BTF and journals the scenario (guest script: tests/vm/guest/cases/bundle.sh).

Host side (`make`): the kernel's BTF packed as BTFHub packs it (`tar cJf`) under
`debian/12/<arch>/` (the guest's os-release says Debian 12, so that is the identity init looks
up), and btfgen run on that archive with every object under ebpf/obj. The bundle reaches the
guest as the "bundle" BTF variant, /vm/btf/bundle/<release>.btf (the file is a bundle, not a BTF).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import matrix
from .matrix import Case, CaseOutput, Verdict, evidence
from .util import HarnessError

REPO = Path(__file__).resolve().parents[3]
MODES = [("kprobe", "kprobe"), ("tracepoint", "tracepoint")]


def btfgen_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = (target if target.is_absolute() else REPO / target) / "release" / "diffkeeper-btfgen"
    if not exe.exists():
        raise HarnessError(f"{exe} is missing: `cargo build --release -p diffkeeper-btfgen` (`just vm-test` does)")
    return exe


def make(kernel, work: Path) -> Path:
    """The bundle for `kernel`, made by diffkeeper-btfgen from a one-kernel BTFHub-shaped archive."""
    arch = "arm64" if kernel.release.endswith("-arm64") else "x86_64"
    staging = work / "bundle-src"
    archive = work / "bundle-archive"
    tree = archive / "debian" / "12" / arch
    tree.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    name = f"{kernel.release}.btf"
    (staging / name).write_bytes(kernel.btf.read_bytes())
    subprocess.run(["tar", "cJf", str(tree / f"{name}.tar.xz"), "-C", str(staging), name], check=True)
    out = work / f"{kernel.release}.bundle.dkbtf"
    done = subprocess.run(
        [str(btfgen_binary()), "--objects", str(REPO / "ebpf" / "obj"), str(archive), str(out)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise HarnessError(f"btfgen for {kernel.release} failed: {done.stderr.strip()}")
    return out


def _check(mode: str, want: str):
    cell = matrix._cell_check("min", mode, expect=want)

    def check(out: CaseOutput, release: str) -> Verdict:
        verdict = cell(out, release)
        ev = evidence(out)
        status = ev.get("init_status", "")
        key = f"debian/12/{'arm64' if release.endswith('-arm64') else 'x86_64'}/{release}"
        problems = [
            f"diffkeeper-init exited {ev.get('init_rc')}" if ev.get("init_rc") != "0" else "",
            'status does not say "source":"bundle"' if '"source":"bundle"' not in status else "",
            f"status entry is not {key}" if f'"entry":"{key}"' not in status else "",
            f"the guest has network interfaces: {ev.get('net_ifaces')}" if ev.get("net_ifaces") else "",
        ]
        # Provisioning problems are hard: they fail the row even where the eBPF half is expected
        # to fail (arm64 until it has its own objects).
        problems = [p for p in problems if p]
        if not problems:
            return verdict
        note = "; ".join([*problems, verdict.note] if verdict.note else problems)
        hard = "; ".join([*problems, verdict.hard] if verdict.hard else problems)
        return Verdict(False, verdict.seen, verdict.events, note, hard)

    return check


def cases() -> list[Case]:
    return [
        Case(
            f"bundle.{mode}",
            "bundle.sh",
            [mode, want],
            "init: BTF bundle (btfgen), sysfs hidden, offline",
            mode,
            want,
            _check(mode, want),
            needs=("diffkeeper-init", "diffkeeper-sidecar", "diffkeeper-scenario"),
            btf_variants=("bundle",),
        )
        for mode, want in MODES
    ]
