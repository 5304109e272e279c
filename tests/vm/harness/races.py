"""VM rows for the journal under races (guest script: tests/vm/guest/cases/races.sh,
diffkeeper-scenario --races): tracepoint with each object, and kprobe, each one sidecar that
journals

* a dup2 onto the fd a thread is writing tens of MiB through (a file, then /dev/null, as the
  decoy): the write lines must name the file written and add up to its bytes, the decoy none;
* 5,000 symlinkat() calls while another thread changes the name's first byte every millisecond:
  no journaled name may be one never created, and the created names not journaled must equal the
  lines flagged `truncated` on their directory (tracepoint mode reads names from user memory and
  says when they changed during the call; kprobe reads them from the kernel's dentries).

A run whose dup2 never came during a write proves nothing and fails.
"""

from __future__ import annotations

from . import matrix
from .case import Case, Verdict, _finished, _never_ready, _verdict, ready_backend
from .qemu import CaseOutput
from .replay import _line

CASE_TIMEOUT = 150  # seconds: eBPF loading under TCG, up to six writes of 32-128 MiB, 5,000 symlinks
ROWS = [
    ("races.tracepoint", "tracepoint", "auto"),
    ("races.tracepoint.compat", "tracepoint", "compat"),
    ("races.kprobe", "kprobe", "auto"),
]


def _expected(release: str, mode: str, obj: str) -> str:
    if obj == "compat":
        return matrix.compat_backend("system", mode)
    return matrix.expected_backend(release, "system", mode)


def summary(races: dict) -> str:
    """The row's events cell: the races run and what the journal made of them."""
    if not races:
        return "-"
    return (
        f"dup2 {races.get('dup2_raced', '-')}/{races.get('dup2_rounds', '-')} raced, "
        f"{len(races.get('dup2_wrong', []))} wrong; symlinks {races.get('flip_made', '-')} made, "
        f"{races.get('flip_journaled', '-')} journaled, {races.get('flip_flagged', '-')} flagged, "
        f"{races.get('flip_never_made', '-')} never made; {races.get('flips', '-')} flips"
    )


def _check(mode: str, obj: str):
    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = _expected(release, mode, obj)
        races = _line("RACES", out.output)
        seen = ready_backend(out.output) or races.get("observed_backend") or ""
        return _verdict(
            seen,
            summary(races),
            [
                f"backend {seen or 'none'} instead of {want}" if seen != want else "",
                "no RACES line" if not races else "",
                f"races {races.get('result')}: {races.get('reason')}" if races and races.get("result") != "pass" else "",
                "the dup2 never came while a write ran" if races and races.get("dup2_raced", 0) < 2 else "",
                "the name never changed during the symlinks" if races and not races.get("flips") else "",
            ],
            [_never_ready(seen)],
        )

    return check


def cases() -> list[Case]:
    return [
        Case(
            case_id,
            "races.sh",
            [mode, _expected("6.1", mode, obj), obj],
            "races: dup2 during a write, a name changed during symlinkat" + (" (--ebpf-object compat)" if obj == "compat" else ""),
            mode,
            _expected("6.1", mode, obj),
            _check(mode, obj),
            expect_on=lambda release, mode=mode, obj=obj: _expected(release, mode, obj),
            args_on=lambda release, mode=mode, obj=obj: [mode, _expected(release, mode, obj), obj],
            timeout=CASE_TIMEOUT,
            needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
        )
        for case_id, mode, obj in ROWS
    ]
