"""What runs in each guest and what counts as passing: the matrix (BTF source x attach mode ->
expected backend), the forced-compat rows, the init end-to-end runs, the broken-BTF case, and
the verifier's verdict on both eBPF objects."""

import dataclasses
import json
import re
from collections.abc import Callable

from .qemu import CaseOutput

# BTF rows: (row id, label in the table). All but "system" run with sysfs BTF hidden.
BTF_ROWS = [
    ("system", "system /sys/kernel/btf/vmlinux"),
    ("full", "cache: full copy, sysfs hidden"),
    ("min", "cache: `just min-btf`, sysfs hidden"),
    ("none", "none, sysfs hidden"),
]
MODES = ["kprobe", "fentry", "tracepoint", "auto"]

# The expected backend per cell. fentry needs the running kernel's own BTF ids, so with a cached BTF it falls
# back (down the auto order: kprobe); without any BTF no eBPF mode can relocate -> inotify.
EXPECTED = {
    "system": {"kprobe": "kprobe", "fentry": "fentry", "tracepoint": "tracepoint", "auto": "fentry"},
    "full": {"kprobe": "kprobe", "fentry": "kprobe", "tracepoint": "tracepoint", "auto": "kprobe"},
    "min": {"kprobe": "kprobe", "fentry": "kprobe", "tracepoint": "tracepoint", "auto": "kprobe"},
    "none": {m: "inotify" for m in MODES},
}

# Before 5.17 (no bpf_loop, no ring buffer before 5.8) only the compat object can load, and it
# has no fentry/tp_btf programs: fentry falls back to kprobe even with the system BTF.
EXPECTED_PRE_5_17 = {
    row: {m: ("kprobe" if b == "fentry" else b) for m, b in modes.items()}
    for row, modes in EXPECTED.items()
}


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as 5.10.0-46-cloud-amd64."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def expected_backend(release: str, row: str, mode: str) -> str:
    return (EXPECTED_PRE_5_17 if release.startswith("5.") else EXPECTED)[row][mode]


CASE_TIMEOUT = 40  # seconds inside the guest (TCG); a case normally takes 1-5 s


@dataclasses.dataclass
class Verdict:
    ok: bool
    seen: str = ""  # backend (or outcome) observed
    events: str = ""  # events the journal/scenario reported
    note: str = ""
    # Problems that fail the case even when it is marked xfail: the product did not degrade
    # gracefully (the sidecar never came up), or the part that is not expected to fail failed.
    hard: str = ""


@dataclasses.dataclass
class Case:
    id: str  # unique per guest; also the log file name
    script: str  # tests/vm/guest/cases/<script>
    args: list[str]
    group: str  # table: BTF source / kind
    mode: str
    expect: str
    check: Callable[[CaseOutput, str], Verdict]  # (output, kernel release)
    timeout: int = CASE_TIMEOUT
    needs: tuple = ()  # binaries from the bin dir the case runs
    btf_variants: tuple = ()  # BTF files the host makes for the guest: "min", "broken"
    # Why this case is expected to fail on this platform ("" = must pass). It runs and is checked
    # all the same: XFAIL when it fails without a hard problem, XPASS (a failure) when it passes.
    xfail: str = ""
    # The expectation on a given kernel release, when it depends on the kernel.
    expect_on: Callable[[str], str] | None = None
    # The script's arguments on a given kernel release, when they depend on the kernel.
    args_on: Callable[[str], list[str]] | None = None

    def list_line(self, release: str) -> str:
        args = self.args_on(release) if self.args_on else self.args
        return " ".join([self.id, str(self.timeout), self.script, *args])


def evidence(out: CaseOutput) -> dict:
    """The "@evidence KEY=VALUE" lines a case printed (last value wins)."""
    return dict(m.groups() for m in re.finditer(r"^@evidence ([\w.-]+)=(.*)$", out.output, re.MULTILINE))


# The sidecar's readiness line up to the backend's name (cli/src/ready.rs, READY_PREFIX).
READY_PREFIX = "diffkeeper-sidecar ready: backend="


def ready_backend(text: str) -> str:
    found = re.findall(re.escape(READY_PREFIX) + r"(\w+)", text)
    return found[-1] if found else ""


def _verdict(seen: str, events: str, problems: list[str], hard: list[str] = ()) -> Verdict:
    """PASS when no problem was found; the problems ("" entries ignored) become the note. hard:
    those of the problems an xfail mark does not excuse."""
    problems = [p for p in problems if p]
    hard = [p for p in hard if p]
    return Verdict(not problems, seen, events, "; ".join(problems), "; ".join(hard))


def _never_ready(seen: str) -> str:
    return "" if seen else "the sidecar never reported ready on any backend"


def _finished(out: CaseOutput) -> Verdict | None:
    if out.rc is None:
        return Verdict(False)  # the report explains how the guest ended
    if out.rc == 137:
        return Verdict(False, "", "", "killed by the per-case timeout")
    return None


def _check_sanity(out: CaseOutput, _release: str) -> Verdict:
    if (v := _finished(out)) is not None:
        return v
    ev = evidence(out)
    verdict = _verdict(
        "",
        "",
        [
            f"sanity.sh exited {out.rc}" if out.rc != 0 else "",
            "host-extracted .BTF differs from /sys/kernel/btf/vmlinux"
            if ev.get("host_btf_matches_sysfs") != "yes"
            else "",
            "hiding /sys/kernel/btf did not work" if ev.get("hidden_btf_entries") != "0" else "",
            "no kprobe PMU" if not ev.get("kprobe_pmu", "").isdigit() else "",
        ],
    )
    return dataclasses.replace(verdict, seen="ok" if verdict.ok else "broken")


def _check_selftest_hang(out: CaseOutput, _release: str) -> Verdict:
    ok = out.rc == 137
    return Verdict(ok, "killed" if ok else f"rc={out.rc}", "", "")


def _check_selftest_panic(out: CaseOutput, _release: str) -> Verdict:
    crashed = "Kernel panic" in out.console_tail
    ok = out.rc is None and not out.killed and crashed
    note = "" if ok else f"rc={out.rc}, qemu killed={out.killed}, panic on console={crashed}"
    return Verdict(ok, "guest died" if ok else "", "", note)


def sanity_case() -> Case:
    return Case(
        "sanity",
        "sanity.sh",
        [],
        "guest: host BTF copy = sysfs BTF, kprobe PMU, hiding works",
        "-",
        "ok",
        _check_sanity,
    )


def selftest_cases() -> list[Case]:
    """Harness self-tests: a case that hangs and one that crashes the kernel (must run last:
    the crash ends the guest). They prove that neither hangs the suite nor passes silently."""
    return [
        Case(
            "selftest.hang",
            "selftest-hang.sh",
            [],
            "self-test: a case hangs",
            "-",
            "killed",
            _check_selftest_hang,
            5,
        ),
        Case(
            "selftest.panic",
            "selftest-panic.sh",
            [],
            "self-test: kernel crash",
            "-",
            "guest died",
            _check_selftest_panic,
        ),
    ]


def btf_line(text: str) -> str:
    found = re.findall(r"\[eBPF\] Loaded BTF spec from (\S+)", text)
    return found[-1] if found else ""


def _btf_problem(row: str, text: str, release: str) -> str:
    """Whether the sidecar said it used the BTF this row gives it ("" when right)."""
    used = btf_line(text)
    want = {"system": "/sys/kernel/btf/vmlinux", "none": ""}.get(row, f"/{release}.btf")
    if row == "none":
        return f"used BTF {used} although none was available" if used else ""
    if not used.endswith(want):
        return f"expected `[eBPF] Loaded BTF spec from …{want}`, got {used or 'no such line'}"
    return ""


def _fallback_reason(row: str, mode: str) -> str:
    """Regex for the sidecar's log line that must explain an expected fallback ("" if none)."""
    if row == "none":
        return r"\[eBPF\] btf: no usable BTF"
    if mode == "fentry" and row != "system":
        return r"\[eBPF\] fentry: needs the running kernel's own BTF type ids"
    return ""


def object_line(text: str) -> str:
    """The sidecar's `[eBPF] object <kind>: <why>` line ("" if it never chose one)."""
    found = re.findall(r"\[eBPF\] object (\w+: [^(\n]*)", text)
    return found[-1].strip() if found else ""


def _object_problem(row: str, release: str, forced: str, text: str) -> str:
    """Whether the sidecar chose the object this kernel (or --ebpf-object) calls for."""
    if row == "none":
        return ""  # no BTF: it never gets as far as choosing
    if forced:
        want = f"{forced}: forced by --ebpf-object"
    elif release.startswith("5."):
        want = "compat: this kernel has no bpf_loop"
    else:
        want = "modern: this kernel has bpf_loop and the BPF ring buffer"
    got = object_line(text)
    return "" if got == want else f"expected `[eBPF] object {want}`, got `{got or 'no such line'}`"


def _cell_check(
    row: str, mode: str, forced: str = "", expect: str = ""
) -> Callable[[CaseOutput, str], Verdict]:
    """forced: the --ebpf-object the cell passes ("" = auto); expect: the backend, where the
    platform decides it (else from the kernel release and the object)."""

    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = expect or (
            compat_backend(row, mode) if forced == "compat" else expected_backend(release, row, mode)
        )
        # Before 5.17 fentry falls back because the compat object has no fentry programs.
        reason = _fallback_reason(row, mode) if not release.startswith("5.") or row == "none" else ""
        seen = ready_backend(out.output)
        return _verdict(
            seen,
            scenario_events(out.output),
            [
                scenario_problem(out),
                f"backend {seen or 'none'} instead of {want}" if seen != want else "",
                _btf_problem(row, out.output, release),
                _object_problem(row, release, forced, out.output),
                f"no log line explaining the fallback (/{reason}/)"
                if reason and not re.search(reason, out.output)
                else "",
            ],
            [_never_ready(seen)],
        )

    return check


def scenario_summary(text: str) -> dict:
    """The `SCENARIO {json}` line diffkeeper-scenario prints last ({} if missing)."""
    found = re.findall(r"^SCENARIO (\{.*\})$", text, re.MULTILINE)
    try:
        return json.loads(found[-1]) if found else {}
    except json.JSONDecodeError:
        return {}


def scenario_events(text: str) -> str:
    """ "journal lines / expected lines" as the scenario counted them."""
    s = scenario_summary(text)
    return f"{s.get('events')}/{s.get('expected')}" if s else ""


def scenario_problem(out: CaseOutput) -> str:
    if out.rc == 0:
        return ""
    reason = scenario_summary(out.output).get("reason") or "no SCENARIO line"
    return f"scenario exited {out.rc}: {reason}"


def cell_cases() -> list[Case]:
    return [
        Case(
            f"cell.{row}.{mode}",
            "cell.sh",
            [row, mode],
            label,
            mode,
            EXPECTED[row][mode],
            _cell_check(row, mode),
            expect_on=lambda release, row=row, mode=mode: expected_backend(release, row, mode),
            args_on=lambda release, row=row, mode=mode: [
                row,
                mode,
                expected_backend(release, row, mode),
            ],
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
            btf_variants=("min",) if row == "min" else (),
        )
        for row, label in BTF_ROWS
        for mode in MODES
    ]


# The compat object forced on every kernel: the same journal as modern from kprobe and raw
# tracepoint, with the system BTF and with the minimised one (the two objects interchangeable).
COMPAT_ROWS = ["system", "min"]
COMPAT_MODES = ["kprobe", "tracepoint"]


def compat_backend(row: str, mode: str) -> str:
    return EXPECTED_PRE_5_17[row][mode]


def compat_cases() -> list[Case]:
    return [
        Case(
            f"compat.{row}.{mode}",
            "cell.sh",
            [row, mode, compat_backend(row, mode), "compat"],
            f"{label} (--ebpf-object compat)",
            mode,
            compat_backend(row, mode),
            _cell_check(row, mode, forced="compat"),
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
            btf_variants=("min",) if row == "min" else (),
        )
        for row, label in BTF_ROWS
        if row in COMPAT_ROWS
        for mode in COMPAT_MODES
    ]


def _init_check(status_source: str) -> Callable[[CaseOutput, str], Verdict]:
    """init provisioned <release>.btf from the expected source ("source" in <release>.json), and
    the sidecar then ran on kprobes from that cache with sysfs BTF hidden."""

    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        ev = evidence(out)
        seen = ready_backend(out.output)
        journal = [line for line in out.output.splitlines() if line.startswith("{")]
        wrote = [j for j in journal if '"op":"write"' in j and "/e2e.txt" in j]
        types = [t for t in ev.get("sidecar_prog_types", "").split(",") if t]
        events = (
            f"{len(journal)} journal lines; {len(types)} kprobe progs, "
            f"{ev.get('kprobe_attachments', 0)} kprobe attachments"
        )
        provisioning = [
            f"diffkeeper-init exited {ev.get('init_rc')}" if ev.get("init_rc") != "0" else "",
            f"{release}.btf not in the cache ({ev.get('cache_files')})"
            if f"{release}.btf," not in ev.get("cache_files", "")
            else "",
            f'status file does not say "source": "{status_source}"'
            if f'"source": "{status_source}"' not in ev.get("init_status", "")
            else "",
        ]
        return _verdict(
            seen,
            events,
            [
                *provisioning,
                _btf_problem("cache", out.output, release),
                f"backend {seen or 'none'} instead of kprobe" if seen != "kprobe" else "",
                "bpftool lists no dk_ kprobe programs" if ev.get("bpftool_kprobe_progs", "0") == "0" else "",
                "no kprobe attached to vfs_write/security_inode_* in debugfs kprobes/list"
                if ev.get("kprobe_attachments", "0") == "0"
                else "",
                # Kprobes are bpf_links (BPF_LINK_TYPE_PERF_EVENT) from 5.15; before, aya attaches
                # them with the perf event ioctl and no link exists to list.
                "bpftool link show lists no perf_event link"
                if ev.get("perf_event_links", "0") == "0" and kernel_version(release) >= (5, 15)
                else "",
                _object_problem("cache", release, "", out.output),
                f"sidecar prog types {types} are not all kprobe (2)"
                if not types or set(types) != {"2"}
                else "",
                "journal has no kprobe write of e2e.txt with 5 bytes"
                if not any('"backend":"kprobe"' in j and '"bytes":5' in j for j in wrote)
                else "",
                f"sidecar exited {ev.get('sidecar_rc')} after SIGTERM" if ev.get("sidecar_rc") != "0" else "",
            ],
            [*provisioning, _never_ready(seen)],
        )

    return check


def init_cases() -> list[Case]:
    sources = [
        ("baked", "baked", "baked .btf.tar.xz"),
        ("mirror", "download", "http mirror on loopback"),
    ]
    return [
        Case(
            f"init.{source}",
            "init-e2e.sh",
            [source],
            f"init: {label}, sysfs hidden",
            "auto",
            "kprobe",
            _init_check(status_source),
            needs=("diffkeeper-init", "diffkeeper-sidecar"),
        )
        for source, status_source, label in sources
    ]


# The broken BTF: the kernel's own BTF with dentry.d_name moved by 64 bits. Every load and attach
# succeeds, names read back as garbage, and only the canary can notice.
BROKEN_EDIT = ("dentry", "d_name", "64")


def _check_broken(out: CaseOutput, release: str) -> Verdict:
    """auto with the broken cached BTF: kprobe and tracepoint both attach, both fail the canary
    ("the BTF ... does not match this kernel"), and the sidecar ends on inotify."""
    if (v := _finished(out)) is not None:
        return v
    seen = ready_backend(out.output)
    failures = re.findall(r"\[eBPF\] (\w+): canary check failed: (.*)", out.output)
    canary = [mode for mode, _ in failures]
    # The broken BTF garbles the names the programs read: each canary event must arrive with a
    # wrong name. A missing event means the programs saw nothing, which proves nothing about BTF.
    missing = [mode for mode, why in failures if "came back as" not in why]
    problems = [
        scenario_problem(out),
        f"backend {seen or 'none'} instead of inotify" if seen != "inotify" else "",
        _btf_problem("broken", out.output, release),
        f"canary failures for {canary or 'no mode'} instead of kprobe and tracepoint"
        if canary != ["kprobe", "tracepoint"]
        else "",
        "no `[eBPF] the BTF … does not match this kernel` warning"
        if "does not match this kernel" not in out.output
        else "",
        f"the canary failed without any event for {', '.join(missing)} (not a garbled name)"
        if missing
        else "",
    ]
    hard = [_never_ready(seen)]
    if canary:
        seen = f"{seen or 'none'} (canary failed: {', '.join(canary)})"
    return _verdict(seen, scenario_events(out.output), problems, hard)


def broken_case() -> Case:
    return Case(
        "broken.d_name.auto",
        "cell.sh",
        ["broken", "auto", "inotify"],
        "cache: d_name moved +64 bits (broken), sysfs hidden",
        "auto",
        "inotify (canary fails kprobe, tracepoint)",
        _check_broken,
        needs=("diffkeeper-sidecar", "diffkeeper-scenario", "diffkeeper-btf-edit"),
        btf_variants=("broken",),
    )


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
        "dk_sys_exit",
    ],
}
PROGRAMS["modern"] = PROGRAMS["compat"] + [
    "dk_fexit_vfs_write",
    "dk_fexit_vfs_writev",
    "dk_fentry_inode_create",
    "dk_fentry_inode_unlink",
    "dk_fentry_inode_rename",
    "dk_sys_exit_btf",
]
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
        return "refused (all but dk_kprobe_write)"
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
                # dk_kprobe_write has no walk (no bpf_loop): the one modern program 5.10 takes.
                want = "ok" if name == "dk_kprobe_write" else "refused"
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


def all_cases() -> list[Case]:
    """Every matrix case, in guest run order."""
    from . import bundle  # noqa: PLC0415 (bundle imports this module)

    return [
        *verifier_cases(),
        *cell_cases(),
        *compat_cases(),
        broken_case(),
        *init_cases(),
        *bundle.cases(),
        *selftest_cases(),
    ]
