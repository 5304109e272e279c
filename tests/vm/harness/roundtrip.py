"""The state recorder's round trip in the VMs (guest script: tests/vm/guest/cases/roundtrip.sh):
diffkeeper-scenario --roundtrip runs the sidecar with --store on a fresh tree, a workload in
phases (edits, appends, atomic save, chmod +x, truncate, directory rename, deletes, empty dir,
symlink, hard link, 4 KiB changed in an 8 MiB file, spaces and UTF-8), snapshots the tree with
`cp -a` after each, and holds `diffkeeper export --at T_i` against snapshot i. One case per
attach mode this machine cannot run (fentry, kprobe) and the compat object's kprobe mode (it has
no fentry programs); where fentry or the modern object cannot load (before 5.17, arm64 without
fentry) the case that would only repeat another is left out of that guest. A phase passes only
when its export equals its snapshot: every eBPF mode reports each op of the workload
(truncations by ftruncate(2), truncate(2) and an O_TRUNC open as writes).
"""

from __future__ import annotations

import dataclasses
import json
import re

from . import matrix
from .case import Case, Verdict, _finished, _never_ready, _verdict, ready_backend
from .qemu import CaseOutput
from .util import log

ROWS = [("fentry", ""), ("kprobe", ""), ("kprobe", "compat")]


def summary(text: str) -> dict:
    """The `ROUNDTRIP {json}` line ({} if missing)."""
    found = re.findall(r"^ROUNDTRIP (\{.*\})$", text, re.MULTILINE)
    try:
        return json.loads(found[-1]) if found else {}
    except json.JSONDecodeError:
        return {}


def phases(text: str) -> list[tuple[str, str, str]]:
    """(index, verdict, rest) of each `PHASE i VERDICT [R+E s] NAME[: differences]` line."""
    return re.findall(r"^PHASE (\d+) (\S+) (.*)$", text, re.MULTILINE)


def _check(expect_of, case_id: str):
    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = expect_of(release)
        found = summary(out.output)
        # The sidecar's log (with its ready line) is printed only on failure; the summary says
        # which backend it reported ready on.
        seen = ready_backend(out.output) or found.get("observed_backend", "")
        rows = phases(out.output)
        table = "\n".join(f"    {i:>2} {verdict:<4} {rest}" for i, verdict, rest in rows)
        log(f"{release} {case_id}: round trip per phase\n{table or '    (no PHASE lines)'}")
        problems = [
            f"diffkeeper-scenario exited {out.rc}" if out.rc != 0 else "",
            "no ROUNDTRIP line" if not found else "",
            f"backend {seen or 'none'} instead of {want}" if seen != want else "",
            f"{len(rows)} phases reported, the summary says {found.get('phases')}"
            if found and len(rows) != found.get("phases")
            else "",
            *[f"phase {i} {verdict} {rest}" for i, verdict, rest in rows if verdict != "ok"],
        ]
        events = (
            f"{found.get('equal')}/{found.get('phases')} phases equal, {found.get('secs')} s"
            if found
            else ""
        )
        return _verdict(seen, events, problems, [_never_ready(seen)])

    return check


def expected(release: str, mode: str, forced: str) -> str:
    return matrix.compat_backend("system", mode) if forced else matrix.expected_backend(release, "system", mode)


def cases() -> list[Case]:
    out = []
    for mode, forced in ROWS:
        case_id = f"roundtrip.{mode}" + (f".{forced}" if forced else "")
        expect_of = (lambda release, mode=mode, forced=forced: expected(release, mode, forced))
        out.append(
            Case(
                case_id,
                "roundtrip.sh",
                [mode, expected("6.1", mode, forced), forced or "auto"],
                "recorder: export at each phase = its snapshot" + (" (--ebpf-object compat)" if forced else ""),
                mode,
                expected("6.1", mode, forced),
                _check(expect_of, case_id),
                timeout=120,  # 13 phases of settle + snapshot + export, an 8 MiB file, under TCG
                expect_on=expect_of,
                args_on=lambda release, mode=mode, forced=forced: [
                    mode,
                    expected(release, mode, forced),
                    forced or "auto",
                ],
                needs=("diffkeeper-sidecar", "diffkeeper-scenario", "diffkeeper"),
                # Before 5.17 only the compat object loads and fentry falls back to kprobe: the
                # modern rows would repeat roundtrip.kprobe.compat there.
                runs_on=None if forced else (lambda release: not release.startswith("5.")),
            )
        )
    return out


def without_fentry(case: Case) -> Case:
    """roundtrip.fentry on a kernel that refuses fentry (arm64 without it): it would repeat
    roundtrip.kprobe (the sidecar falls back to it), so it is left out."""
    return dataclasses.replace(case, runs_on=lambda _release: False)
