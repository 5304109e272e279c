"""The verifier cases: every program of both eBPF objects of the guest's architecture, loaded
one at a time by verifier-stats (processed instructions per program) and all at once by
`bpftool prog loadall`."""

import re
from collections.abc import Callable

from .case import Case, Verdict, _finished, _verdict, evidence
from .qemu import CaseOutput

# The verifier's limit on processed instructions before 5.2 (BPF_COMPLEXITY_LIMIT_INSNS): the
# compat object must stay below it to load on 4.18-era kernels we cannot boot here.
VERIFIER_LIMIT_4_18 = 131072
PROGRAMS = {
    "compat": [
        "dk_kprobe_write",
        "dk_kretprobe_write",
        "dk_kprobe_inode_create",
        "dk_kprobe_inode_unlink",
        "dk_kprobe_inode_rename",
        "dk_kprobe_inode_link",
        "dk_kprobe_inode_symlink",
        "dk_kprobe_inode_mkdir",
        "dk_kprobe_inode_rmdir",
        "dk_kprobe_inode_setattr",
        "dk_kprobe_sb_statfs",
        "dk_kretprobe_vfs_create",
        "dk_kretprobe_vfs_unlink",
        "dk_kretprobe_vfs_rename",
        "dk_kretprobe_vfs_link",
        "dk_kretprobe_vfs_symlink",
        "dk_kretprobe_do_filp_open",
        "dk_kretprobe_vfs_mkdir",
        "dk_kretprobe_vfs_rmdir",
        "dk_kretprobe_notify_change",
        "dk_kretprobe_do_mkdirat",
        "dk_kretprobe_do_rmdir",
        "dk_sys_enter",
        "dk_sys_exit",
    ],
}
# Compat only: what its dk_sys_enter tail-calls (one program was past 6.1's verifier limit).
COMPAT_TAILS = ["dk_sys_enter_path", "dk_sys_enter_from"]
PROGRAMS["modern"] = PROGRAMS["compat"] + [
    "dk_fexit_vfs_write",
    "dk_fexit_vfs_writev",
    "dk_fentry_inode_create",
    "dk_fentry_inode_unlink",
    "dk_fentry_inode_rename",
    "dk_fentry_inode_link",
    "dk_fentry_inode_symlink",
    "dk_fentry_inode_mkdir",
    "dk_fentry_inode_rmdir",
    "dk_fentry_inode_setattr",
    "dk_fentry_sb_statfs",
    "dk_fexit_vfs_create",
    "dk_fexit_vfs_unlink",
    "dk_fexit_vfs_rename",
    "dk_fexit_vfs_link",
    "dk_fexit_vfs_symlink",
    "dk_fexit_do_filp_open",
    "dk_fexit_vfs_mkdir",
    "dk_fexit_vfs_rmdir",
    "dk_fexit_notify_change",
    "dk_fexit_do_mkdirat",
    "dk_fexit_do_rmdir",
    "dk_sys_enter_btf",
    "dk_sys_exit_btf",
]
PROGRAMS["compat"] += COMPAT_TAILS
# Programs without a walk (no bpf_loop): the modern programs 5.10 takes (the kretprobes only
# send or drop what a hook recorded; the statfs hook only learns a root; the raw sys_exit only
# sends or drops what sys_enter kept).
NO_WALK = {"dk_kprobe_write", "dk_kprobe_sb_statfs", "dk_fentry_sb_statfs", "dk_sys_exit"} | {
    f"dk_kretprobe_{fn}"
    for fn in (
        "vfs_create", "vfs_unlink", "vfs_rename", "vfs_link", "vfs_symlink", "do_filp_open",
        "vfs_mkdir", "vfs_rmdir", "notify_change", "do_mkdirat", "do_rmdir",
    )
}  # fmt: skip
OBJECT_FILES = {"modern": "diffkeeper.bpf.o", "compat": "diffkeeper-compat.bpf.o"}


def verifier_lines(text: str) -> dict[str, dict]:
    """prog name -> fields of its `VERIFIER prog=… result=…` line from verifier-stats."""
    found = {}
    for m in re.finditer(r"^VERIFIER (prog=.*)$", text, re.MULTILINE):
        fields = dict(re.findall(r"(\w+)=(\S*)", m.group(1).split(" log=")[0]))
        fields["log"] = m.group(1).split(" log=", 1)[1] if " log=" in m.group(1) else ""
        found[fields["prog"]] = fields
    return found


def _verifier_expect(kind: str, release: str) -> str:
    if kind == "modern" and release.startswith("5."):
        return "refused (all but dk_kprobe_write, the statfs hooks, the return kretprobes and dk_sys_exit: no walk)"
    return f"loads, each <= {VERIFIER_LIMIT_4_18} processed" if kind == "compat" else "loads"


def _check_verifier(kind: str) -> Callable[[CaseOutput, str], Verdict]:
    """compat: every program loads (verifier-stats and bpftool loadall), each within the
    pre-5.2 limit. modern: loads on >= 5.17, every program refused on 5.10."""

    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        ev = evidence(out)
        progs = verifier_lines(out.output)
        refuse = kind == "modern" and release.startswith("5.")
        problems = [
            f"verifier-stats saw {sorted(progs)} instead of {sorted(PROGRAMS[kind])}"
            if sorted(progs) != sorted(PROGRAMS[kind])
            else ""
        ]
        counts = []
        for name in PROGRAMS[kind]:
            p = progs.get(name, {})
            if refuse:
                # Programs without a walk (no bpf_loop) are the modern ones 5.10 takes.
                want = "ok" if name in NO_WALK else "refused"
                if p.get("result") != want:
                    problems.append(f"{name} {p.get('result', 'missing')}, expected {want}")
                continue
            if p.get("result") != "ok":
                problems.append(f"{name} refused: {p.get('log', 'no line')}")
                continue
            processed = int(p.get("processed", "-1"))
            counts.append(f"{name} {processed}")
            if kind == "compat" and not 0 < processed <= VERIFIER_LIMIT_4_18:
                problems.append(f"{name}: {processed} processed > {VERIFIER_LIMIT_4_18}")
        bpftool_rc = ev.get("bpftool_loadall_rc")
        if refuse:
            problems.append("bpftool prog loadall succeeded" if bpftool_rc == "0" else "")
            logs = sorted({p["log"] for p in progs.values() if p.get("log")})
            seen = f"refused ({'; '.join(logs)[:160]})"
            return _verdict(seen, "", problems)
        problems.append(f"bpftool prog loadall exited {bpftool_rc}" if bpftool_rc != "0" else "")
        loaded = ev.get("bpftool_loaded", "0")
        problems.append(
            f"bpftool prog show lists {loaded} programs, not {len(PROGRAMS[kind])}"
            if loaded != str(len(PROGRAMS[kind]))
            else ""
        )
        return _verdict("loads", "processed: " + ", ".join(counts), problems)

    return check


def verifier_cases() -> list[Case]:
    return [
        Case(
            f"verifier.{kind}",
            "verifier.sh",
            [OBJECT_FILES[kind]],
            f"verifier: {kind} object (verifier-stats, bpftool prog loadall)",
            "-",
            _verifier_expect(kind, "6"),
            _check_verifier(kind),
            expect_on=lambda release, kind=kind: _verifier_expect(kind, release),
            timeout=90,
        )
        for kind in ("compat", "modern")
    ]
