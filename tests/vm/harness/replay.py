"""VM rows for the journal's replay contract under eBPF (guest script: tests/vm/guest/cases/replay.sh,
diffkeeper-scenario --replay-storms): fentry, kprobe, and kprobe with the compat object, each one
sidecar that journals

* the parity workload: one scripted change of every kind (mkdir, create, write, chmod, renames of
  a file and of a directory, hard link, symlink, atomic save, files and directories moved in and
  out, delete, rmdir), each step's (op, path, from) lines compared with the ones it must produce;
  printed per kernel as a table (step x backend) under the summary;
* SEEDS seeded storms of every op kind without pauses (tests/src/storm.rs), each in a directory
  of its own: replaying the journal under it (tests/src/replay.rs) must give the real tree, with
  no op whose precondition fails before a gap, and seq/ts must never go back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import matrix
from .case import Case, Verdict, _finished, _never_ready, _verdict, ready_backend
from .qemu import CaseOutput

SEEDS = 20
STEPS = 40  # per storm: the 20 storms take a few seconds under TCG
CASE_TIMEOUT = 120  # seconds: eBPF loading under TCG, then the storms and the replay
ROWS = [("replay.fentry", "fentry", "auto"), ("replay.kprobe", "kprobe", "auto"), ("replay.kprobe.compat", "kprobe", "compat")]


def _expected(release: str, mode: str, obj: str) -> str:
    if obj == "compat":
        return matrix.compat_backend("system", mode)
    return matrix.expected_backend(release, "system", mode)


def _line(tag: str, text: str) -> dict:
    """The last `TAG {json}` line ({} if missing or torn)."""
    found = re.findall(rf"^{tag} (\{{.*\}})$", text, re.MULTILINE)
    try:
        return json.loads(found[-1]) if found else {}
    except json.JSONDecodeError:
        return {}


def parity_misses(parity: dict) -> list[str]:
    """Every line the parity workload expected and the journal lacks, as `step: line`."""
    return [f"{s['kind']}: {m}" for s in parity.get("steps", []) for m in s.get("missing", [])]


def _check(mode: str, obj: str, expect: str = ""):
    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = expect or _expected(release, mode, obj)
        replay, parity = _line("REPLAY", out.output), _line("PARITY", out.output)
        # The sidecar's log is printed on failure only; the REPLAY line names its backend too.
        seen = ready_backend(out.output) or replay.get("observed_backend") or ""
        steps = parity.get("steps", [])
        misses = parity_misses(parity)
        events = (
            f"{replay.get('seeds', 0) - replay.get('failed_seeds', 0)}/{replay.get('seeds', '-')} seeds, "
            f"{replay.get('lines', '-')} lines, {replay.get('gaps', '-')} gaps, storms {replay.get('storm_ms', '-')} ms; "
            f"parity {sum(not s['missing'] for s in steps)}/{len(steps)} steps"
            if replay
            else "-"
        )
        return _verdict(
            seen,
            events,
            [
                f"backend {seen or 'none'} instead of {want}" if seen != want else "",
                "no REPLAY line" if not replay else "",
                f"replay {replay.get('result')}: {replay.get('reason')}" if replay and replay.get("result") != "pass" else "",
                "no PARITY line" if not parity else "",
                f"parity: the journal lacks {'; '.join(misses)}" if misses else "",
                f"parity: unexpected lines {parity.get('unexpected')}" if parity.get("unexpected") else "",
            ],
            [_never_ready(seen)],
        )

    return check


def cases() -> list[Case]:
    return [
        Case(
            case_id,
            "replay.sh",
            [mode, _expected("6.1", mode, obj), obj, str(SEEDS), str(STEPS)],
            f"replay: parity workload + {SEEDS} storms" + (" (--ebpf-object compat)" if obj == "compat" else ""),
            mode,
            _expected("6.1", mode, obj),
            _check(mode, obj),
            expect_on=lambda release, mode=mode, obj=obj: _expected(release, mode, obj),
            args_on=lambda release, mode=mode, obj=obj: [mode, _expected(release, mode, obj), obj, str(SEEDS), str(STEPS)],
            timeout=CASE_TIMEOUT,
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
        )
        for case_id, mode, obj in ROWS
    ]


def without_fentry(case: Case) -> Case:
    """replay.fentry on a kernel that refuses fentry: the sidecar falls back to kprobe."""
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(
        case,
        args=["fentry", "kprobe", "auto", str(SEEDS), str(STEPS)],
        args_on=None,
        expect="kprobe (no fentry on this kernel)",
        expect_on=None,
        check=_check("fentry", "auto", expect="kprobe"),
    )


def parity_tables(rows) -> str:
    """Per kernel, the parity workload's steps x the replay rows' backends: `ok`, or the lines the
    journal lacked ("" when no replay row ran)."""
    tables = []
    for kernel in dict.fromkeys(r.kernel for r in rows):
        columns = {}
        for r in rows:
            if r.kernel == kernel and r.case.startswith("replay.") and Path(r.log).exists():
                parity = _line("PARITY", Path(r.log).read_text())
                if parity:
                    columns[f"{r.case.removeprefix('replay.')} ({r.seen or '-'})"] = parity
        if not columns:
            continue
        kinds = list(dict.fromkeys(s["kind"] for p in columns.values() for s in p.get("steps", [])))
        lines = [
            f"Parity on {kernel} (one scripted change of every kind; ok, or the lines the journal lacks):",
            "",
            "| step | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for kind in kinds:
            cells = []
            for parity in columns.values():
                step = next((s for s in parity.get("steps", []) if s["kind"] == kind), None)
                cells.append("-" if step is None else ("ok" if not step["missing"] else "lacks " + ", ".join(step["missing"])))
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("| (unexpected lines) | " + " | ".join(", ".join(p.get("unexpected", [])) or "none" for p in columns.values()) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)
