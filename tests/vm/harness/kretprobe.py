"""VM rows for kprobe mode's kretprobes under load (guest script: tests/vm/guest/cases/kretprobe.sh):
40 writers blocked inside write(2) on a full FIFO in the watched directory hold 40 of a
kretprobe's maxactive instances, more than the kernel's default (max(10, 2 x CPUs); the guests
have 2). Then one regular write:

* kretprobe.blocked (and .compat): the sidecar's kretprobes (tracefs, maxactive 4096) see its
  return: it is journaled, the kernel reports no missed return, and the tracefs events are gone
  after SIGTERM.
* kretprobe.small: --kretprobe-maxactive 4: its return is missed, and the miss is counted
  (diffkeeper_kretprobe_missed_total), logged and journaled as a gap (whose repair may then name
  the file: that line is marked "repair" and is not the kretprobe's).
* kretprobe.mount: tracefs and debugfs unmounted in the sidecar's mount namespace: it mounts
  tracefs itself, says so, and must then pass like kretprobe.blocked.
* kretprobe.pmu: tracefs hidden from the sidecar: it falls back to the kprobe PMU with the kernel's
  default maxactive, says so once, the gauge shows 0, and the write is lost (the limit the
  tracefs kretprobes remove).
"""

from __future__ import annotations

import re
from pathlib import Path

from .case import Case, Verdict, _finished, _never_ready, _verdict, evidence, ready_backend
from .qemu import CaseOutput

WRITERS = 40
FALLBACK_LINE = "kretprobes from vfs_write on are attached through the kprobe PMU"
MISSED_LINE = r"\[eBPF\] the kernel missed \d+ kretprobe returns"
MOUNTED_LINE = "[eBPF] mounted tracefs at /sys/kernel/tracing"


def _kretprobe_count() -> int:
    """The kretprobes kprobe mode makes: one per write function and one per VFS return, as the
    object's program tables in ebpf/src/object.rs declare them (so a new hook needs no edit here)."""
    source = (Path(__file__).resolve().parents[3] / "ebpf/src/object.rs").read_text()
    lengths = [
        int(re.search(rf"pub const {name}: \[[^;]*; (\d+)\]", source).group(1))
        for name in ("WRITE_FUNCTIONS", "KRETPROBE_RETURNS")
    ]
    return sum(lengths)


KRETPROBES = str(_kretprobe_count())


def _check(variant: str):
    def check(out: CaseOutput, _release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        ev = evidence(out)
        seen = ready_backend(out.output)
        missed = ev.get("kretprobe_missed", "")
        journaled = ev.get("probe_journaled") == "yes"
        common = [
            f"backend {seen or 'none'} instead of kprobe" if seen != "kprobe" else "",
            f"{ev.get('blocked_writers')} of {WRITERS} writers blocked in write(2)"
            if ev.get("blocked_writers") != str(WRITERS)
            else "",
            f"sidecar exited {ev.get('sidecar_rc')} after SIGTERM" if ev.get("sidecar_rc") != "0" else "",
            f"{ev.get('events_left')} diffkeeper kprobe events left after stop"
            if ev.get("events_left") != "0"
            else "",
        ]
        if variant in ("default", "mount"):
            problems = [
                f"no `{MOUNTED_LINE}` line" if variant == "mount" and MOUNTED_LINE not in out.output else "",
                f"maxactive gauge {ev.get('maxactive_gauge') or 'absent'} instead of 4096"
                if ev.get("maxactive_gauge") != "4096"
                else "",
                f"{ev.get('tracefs_kretprobes')} tracefs kretprobes instead of {KRETPROBES}"
                if ev.get("tracefs_kretprobes") != KRETPROBES
                else "",
                "the regular write was not journaled" if not journaled else "",
                f"the kernel missed {missed or '(no metric)'} returns instead of 0" if missed != "0" else "",
            ]
        elif variant == "small":
            problems = [
                f"maxactive gauge {ev.get('maxactive_gauge') or 'absent'} instead of 4"
                if ev.get("maxactive_gauge") != "4"
                else "",
                "the regular write was journaled although its return should be missed" if journaled else "",
                f"missed returns {missed or '(no metric)'}, expected > 0"
                if not missed.isdigit() or int(missed) == 0
                else "",
                f"no log line /{MISSED_LINE}/" if not re.search(MISSED_LINE, out.output) else "",
                "no `kretprobe missed` gap line in the journal" if ev.get("missed_gap") != "yes" else "",
            ]
        else:  # pmu
            problems = [
                f"maxactive gauge {ev.get('maxactive_gauge') or 'absent'} instead of 0 (kernel default)"
                if ev.get("maxactive_gauge") != "0"
                else "",
                f"fallback warning seen {out.output.count(FALLBACK_LINE)} times instead of once"
                if out.output.count(FALLBACK_LINE) != 1
                else "",
                "the regular write was journaled: the kernel's default maxactive did not run out" if journaled else "",
            ]
        events = (
            f"maxactive {ev.get('maxactive_gauge') or '-'}, {ev.get('blocked_writers')} blocked, "
            f"write {'journaled' if journaled else 'lost'}, missed {missed or '-'}"
        )
        return _verdict(seen, events, [*common, *problems], [_never_ready(seen)])

    return check


def cases() -> list[Case]:
    rows = [
        ("kretprobe.blocked", "default", "auto"),
        ("kretprobe.blocked.compat", "default", "compat"),
        ("kretprobe.mount", "mount", "auto"),
        ("kretprobe.small", "small", "auto"),
        ("kretprobe.pmu", "pmu", "auto"),
    ]
    labels = {
        "default": "kretprobes (maxactive 4096), 40 writers blocked",
        "mount": "no tracefs mounted: the sidecar mounts it, 40 writers blocked",
        "small": "--kretprobe-maxactive 4, 40 writers blocked: miss counted",
        "pmu": "tracefs hidden: PMU fallback (kernel default), 40 writers blocked",
    }
    return [
        Case(
            case_id,
            "kretprobe.sh",
            [variant, obj],
            labels[variant] + (" (--ebpf-object compat)" if obj == "compat" else ""),
            "kprobe",
            "kprobe",
            _check(variant),
            needs=("diffkeeper-sidecar",),
        )
        for case_id, variant, obj in rows
    ]
