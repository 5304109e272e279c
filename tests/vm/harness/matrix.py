"""What runs in each guest and what counts as passing: the matrix (BTF source x attach mode ->
expected backend), the forced-compat rows, the init end-to-end runs and the broken-BTF case
(the verifier's verdict on both eBPF objects is in verifier.py)."""

import dataclasses
import json
import re
from collections.abc import Callable

from . import verifier
# Re-exported: arm64.py uses matrix.Case, matrix.Verdict, matrix.ready_backend.
from .case import (  # noqa: F401
    Case,
    Verdict,
    _finished,
    _never_ready,
    _verdict,
    evidence,
    parts,
    ready_backend,
)
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


def _check_selftest_stuck(out: CaseOutput, _release: str) -> Verdict:
    # Its final output is from its second run (the first stall always runs it again).
    dumped = "Show Blocked State" in out.console_tail
    ok = out.stalled and dumped
    note = "" if ok else f"rc={out.rc}, stuck={out.stalled}, SysRq dump on console={dumped}"
    return Verdict(ok, "stuck twice, stacks dumped" if ok else "", "", note)


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
    """Harness self-tests: a case that hangs, one that crashes the kernel, and one the guest
    cannot end (on x86_64 6.1 only: it costs two boots). They prove that none of them hangs the
    suite or passes silently, and that the cases after a crash still run (in a fresh boot)."""
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
        Case(
            "selftest.stuck",
            "selftest-stuck.sh",
            [],
            "self-test: the guest is stuck in a case (it outlives its timeout): stacks dumped, run again in a fresh boot",
            "-",
            "stuck twice, stacks dumped",
            _check_selftest_stuck,
            3,
            runs_on=lambda release: release.startswith("6.1.") and not release.endswith("-arm64"),
            stall_grace=2,
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
                parity_problem(out.output, seen) if seen == want else "",
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


def scenario_part_problem(name: str, text: str, want: str, release: str) -> tuple[str, str]:
    """(problem, events) of a part of a case's output that ran diffkeeper-scenario: it passed
    (exact journal) on backend `want` with at least one expected line, and the sidecar chose the
    object this kernel calls for."""
    summary = scenario_summary(text)
    events = f"{summary.get('events')}/{summary.get('expected')}" if summary else "-"
    if not summary:
        return f"{name}: no SCENARIO line", events
    problems = [
        f"{name}: scenario {summary.get('result')}: {summary.get('reason')}"
        if summary.get("result") != "pass"
        else "",
        f"{name}: backend {summary.get('observed_backend')} instead of {want}"
        if summary.get("observed_backend") != want
        else "",
        f"{name}: the scenario expected no journal lines" if not summary.get("expected") else "",
        _named(name, _object_problem("system", release, "", text)),
    ]
    return "; ".join(p for p in problems if p), events


# Parity: the op kinds the journal scenario's journal must hold, per backend that reports every
# kind (the scenario makes each: mkdir, create, write, chmod/chown, rename, delete, rmdir).
PARITY_OPS = {
    "kprobe": ["attrib", "create", "delete", "mkdir", "rename", "rmdir", "write"],
    "fentry": ["attrib", "create", "delete", "mkdir", "rename", "rmdir", "write"],
}


def parity_problem(text: str, backend: str) -> str:
    """"" when the scenario's journal holds every op kind `backend` must report."""
    want = PARITY_OPS.get(backend)
    got = scenario_summary(text).get("ops")
    if want is None or got == want:
        return ""
    return f"parity: op kinds journaled {got} instead of {want}"


def _named(name: str, problem: str) -> str:
    """A problem of part `name` ("" stays "")."""
    return f"{name}: {problem}" if problem else ""


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
    """init provisioned <release>.btf from the expected source ("source" in <release>.json); then,
    with sysfs BTF hidden and that cache, a sidecar attached kprobes (bpftool, the kernel's
    kprobe list and its own fds say so: part attach) and the journal scenario passed on kprobe
    (part scenario). Each part's sidecar must log the cached BTF and the object for the kernel."""

    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        ev = evidence(out)
        p = parts(out.output)
        attach, scenario = p.get("attach", ""), p.get("scenario", "")
        seen = ready_backend(attach)
        types = [t for t in ev.get("sidecar_prog_types", "").split(",") if t]
        run, run_events = scenario_part_problem("scenario", scenario, "kprobe", release)
        events = (
            f"scenario {run_events}; {len(types)} kprobe progs, "
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
                _named("attach", _btf_problem("cache", attach, release)),
                _named("scenario", _btf_problem("cache", scenario, release)),
                f"attach: backend {seen or 'none'} instead of kprobe" if seen != "kprobe" else "",
                "attach: bpftool lists no dk_ kprobe programs" if ev.get("bpftool_kprobe_progs", "0") == "0" else "",
                "attach: no kprobe attached to vfs_write/security_inode_* in debugfs kprobes/list"
                if ev.get("kprobe_attachments", "0") == "0"
                else "",
                # Kprobes are bpf_links (BPF_LINK_TYPE_PERF_EVENT) from 5.15; before, aya attaches
                # them with the perf event ioctl and no link exists to list.
                "attach: bpftool link show lists no perf_event link"
                if ev.get("perf_event_links", "0") == "0" and kernel_version(release) >= (5, 15)
                else "",
                _named("attach", _object_problem("cache", release, "", attach)),
                f"attach: sidecar prog types {types} are not all kprobe (2)"
                if not types or set(types) != {"2"}
                else "",
                f"attach: sidecar exited {ev.get('sidecar_rc')} after SIGTERM" if ev.get("sidecar_rc") != "0" else "",
                run,
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
            f"init: {label}, sysfs hidden; attached kprobes, journal scenario",
            "auto",
            "kprobe",
            _init_check(status_source),
            timeout=90,  # two sidecar starts (5.10 loads the compat object in ~6 s each under TCG)
            needs=("diffkeeper-init", "diffkeeper-sidecar", "diffkeeper-scenario"),
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


def _check_broken_writer(out: CaseOutput, release: str) -> Verdict:
    """The broken cached BTF with an app writing through start-up: kprobe and tracepoint both
    fail the canary, what they saw is discarded (said in the log), no journal line comes from
    them, and the inotify fallback journals the write made after ready."""
    if (v := _finished(out)) is not None:
        return v
    seen = ready_backend(out.output)
    canary = re.findall(r"\[eBPF\] (\w+): canary check failed", out.output)
    discarded = re.findall(r"changes (\w+) mode reported before its canary check were discarded", out.output)
    found = evidence(out)
    problems = [
        f"backend {seen or 'none'} instead of inotify" if seen != "inotify" else "",
        f"canary failures for {canary or 'no mode'} instead of kprobe and tracepoint"
        if canary != ["kprobe", "tracepoint"]
        else "",
        f"{found.get('foreign_lines', '?')} of {found.get('journal_lines', '?')} journal lines from a failed mode (another backend, or an eBPF gap)"
        if found.get("foreign_lines") != "0"
        else "",
        "no discarded-changes line: the writer's changes never reached a failing mode" if not discarded else "",
        "the write after ready is not journaled" if found.get("after_ready_journaled") != "1" else "",
        f"sidecar exit {found.get('sidecar_rc_broken-writer')}" if found.get("sidecar_rc_broken-writer") != "0" else "",
    ]
    events = f"{found.get('journal_lines', '?')} lines, discarded by {', '.join(discarded) or 'none'}"
    return _verdict(seen, events, problems, [_never_ready(seen)])


def broken_writer_case() -> Case:
    return Case(
        "broken.d_name.writer",
        "broken-writer.sh",
        [],
        "cache: d_name moved +64 bits (broken), sysfs hidden, app writing through start-up",
        "auto",
        "inotify, no line from a failed mode",
        _check_broken_writer,
        timeout=90,  # 5.10 loads the compat object twice (kprobe, tracepoint) beside the writer
        needs=("diffkeeper-sidecar", "diffkeeper-btf-edit"),
        btf_variants=("broken",),
    )


# The operations scenario (failed operations, link/symlink/O_TMPFILE): every eBPF mode with the system BTF, and the
# compat object's kprobe mode; only completed operations and true names may be journaled.
OPS_MODES = ["kprobe", "fentry", "tracepoint"]


def _ops_check(mode: str, forced: str = "", expect: str = "") -> Callable[[CaseOutput, str], Verdict]:
    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = expect or (
            compat_backend("system", mode) if forced else expected_backend(release, "system", mode)
        )
        seen = ready_backend(out.output)
        return _verdict(
            seen,
            scenario_events(out.output),
            [
                scenario_problem(out),
                f"backend {seen or 'none'} instead of {want}" if seen != want else "",
                exact_names_problem(out.output),
            ],
            [_never_ready(seen)],
        )

    return check


# The ops scenario's two names that differ only in an invalid byte: create, write, rename and
# delete of each, every line carrying the exact bytes in path_b64 (the scenario's exact diff
# checks the values; this checks the guest ran a scenario that makes them).
OPS_EXACT_NAME_LINES = 8


def exact_names_problem(text: str) -> str:
    """"" when the ops scenario's journal held its lines with non-UTF-8 names."""
    summary = scenario_summary(text)
    if not summary:
        return ""
    got = summary.get("names_b64")
    if got is None or got < OPS_EXACT_NAME_LINES:
        return f"non-UTF-8 names: {got} lines with path_b64 instead of {OPS_EXACT_NAME_LINES}"
    return ""


def ops_cases() -> list[Case]:
    rows = [(mode, "") for mode in OPS_MODES] + [("kprobe", "compat")]
    return [
        Case(
            f"ops.{mode}" + (f".{forced}" if forced else ""),
            "ops.sh",
            [mode, expected_backend("6.1", "system", mode)] + (["compat"] if forced else []),
            "ops: failed operations, link/symlink/O_TMPFILE" + (" (--ebpf-object compat)" if forced else ""),
            mode,
            expected_backend("6.1", "system", mode),
            _ops_check(mode, forced),
            args_on=(
                (lambda release, mode=mode: [mode, compat_backend("system", mode), "compat"])
                if forced
                else (lambda release, mode=mode: [mode, expected_backend(release, "system", mode)])
            ),
            expect_on=(
                (lambda release, mode=mode: compat_backend("system", mode))
                if forced
                else (lambda release, mode=mode: expected_backend(release, "system", mode))
            ),
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
        )
        for mode, forced in rows
    ]


def all_cases() -> list[Case]:
    """Every matrix case, in guest run order."""
    from . import btrfs, bundle, ext4, kretprobe, races, replay, roundtrip  # noqa: PLC0415 (they import this module or case.py)

    return [
        *verifier.verifier_cases(),
        *cell_cases(),
        *compat_cases(),
        *ops_cases(),
        *roundtrip.cases(),
        *replay.cases(),
        *races.cases(),
        *kretprobe.cases(),
        broken_case(),
        broken_writer_case(),
        *init_cases(),
        *bundle.cases(),
        *btrfs.cases(),
        *ext4.cases(),
        *selftest_cases(),
    ]
