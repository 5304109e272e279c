"""What runs in each guest and what counts as passing: the matrix
(BTF source x attach mode -> expected backend), the init end-to-end runs, the broken-BTF case."""

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

    def list_line(self) -> str:
        return " ".join([self.id, str(self.timeout), self.script, *self.args])


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


def _cell_check(row: str, mode: str, expect: str) -> Callable[[CaseOutput, str], Verdict]:
    reason = _fallback_reason(row, mode)

    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        seen = ready_backend(out.output)
        return _verdict(
            seen,
            scenario_events(out.output),
            [
                scenario_problem(out),
                f"backend {seen or 'none'} instead of {expect}" if seen != expect else "",
                _btf_problem(row, out.output, release),
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
            [row, mode, EXPECTED[row][mode]],
            label,
            mode,
            EXPECTED[row][mode],
            _cell_check(row, mode, EXPECTED[row][mode]),
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
            btf_variants=("min",) if row == "min" else (),
        )
        for row, label in BTF_ROWS
        for mode in MODES
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
                "bpftool link show lists no perf_event link"
                if ev.get("perf_event_links", "0") == "0"
                else "",
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


def all_cases() -> list[Case]:
    """Every matrix case, in guest run order."""
    return [*cell_cases(), broken_case(), *init_cases(), *selftest_cases()]
