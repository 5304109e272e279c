"""Per-case logs, results.json and the summary table (same Markdown on stdout and in docs/results/vm-matrix.md)."""

import dataclasses
import json
import re
import time
from pathlib import Path

from . import replay
from .matrix import Case
from .qemu import CaseOutput, VmRun


@dataclasses.dataclass
class Row:
    kernel: str
    case: str
    group: str
    mode: str
    expected: str
    seen: str
    events: str
    result: str  # PASS | FAIL | XFAIL (expected failure, see Case.xfail) | XPASS (a failure)
    secs: float | None
    note: str
    log: str
    stalled: bool = False  # the guest got stuck in this case once; the row is its second run
    console: str = ""  # a failed case the guest ended in: the console's last lines


def judge(kernel: str, case: Case, run: VmRun, logs: Path, stalled: CaseOutput | None = None) -> Row:
    """The row of one case, from the run it finished in (stalled: its first run, in which the
    guest got stuck, when it ran again)."""
    out = run.cases.get(case.id) or CaseOutput(case.id, "", None, None)
    verdict = case.check(out, kernel)
    if not verdict.ok and out.stalled:
        again = " again, on its second run" if stalled else ""
        note = f"the guest was stuck in this case{again}: SysRq dump in the case log"
        verdict = dataclasses.replace(verdict, note=note)
    elif not verdict.ok and out.rc is None:
        if case.id not in run.cases:
            ended = (
                f"qemu was killed after {run.secs:.0f} s (outer timeout)"
                if run.timed_out
                else "the guest ended"
            )
            note = f"not run: {ended} before this case"
        elif run.timed_out:
            note = f"unfinished: qemu killed after {run.secs:.0f} s (outer timeout)"
        else:
            note = "unfinished: the guest died during this case"
        verdict = dataclasses.replace(verdict, note=note + " (console log in the case log)")
    result, note = _result(case, out, verdict)
    if stalled and result == "PASS":
        note = "passed on its second run; the guest was stuck in its first (SysRq dump in the case log)"
    log_file = logs / f"{case.id}.log"
    text = ""
    if stalled:
        text += (
            f"# {kernel} {case.id}: FIRST RUN, the guest got stuck in it\n{stalled.output}"
            f"\n# ---- console log of that boot (last lines, with the SysRq dumps) ----\n"
            f"{stalled.console_tail}\n\n# ---- SECOND RUN, in a fresh boot ----\n"
        )
    text += (
        f"# {kernel} {case.id}: {case.script} {' '.join(case.args)}\n"
        f"# rc={out.rc} secs={out.secs}\n{out.output}"
    )
    console = ""
    if out.rc is None:
        tail = out.console_tail or run.console_tail(80)
        text += f"\n# ---- console log (last lines) ----\n{tail}\n"
        if result not in ("PASS", "XFAIL"):
            console = "\n".join(tail.splitlines()[-40:])
    if stalled and not console:
        console = "\n".join(stalled.console_tail.splitlines()[-40:])
    log_file.write_text(text)
    return Row(
        kernel,
        case.id,
        case.group,
        case.mode,
        case.expect_on(kernel) if case.expect_on else case.expect,
        verdict.seen,
        verdict.events,
        result,
        out.secs,
        note,
        str(log_file),
        stalled is not None and not out.stalled,  # stuck once, then finished
        console,
    )


def _result(case: Case, out: CaseOutput, verdict) -> tuple[str, str]:
    """PASS/FAIL, or for a case marked xfail: XFAIL when it failed the expected way (it finished,
    and no hard problem), XPASS when it passed (the mark is stale: a failure), else FAIL."""
    if not case.xfail:
        return ("PASS" if verdict.ok else "FAIL"), verdict.note
    if verdict.ok:
        return "XPASS", f"passes although marked expected-to-fail ({case.xfail}): remove the mark"
    if out.rc is not None and out.rc != 137 and not verdict.hard:
        found = re.findall(r"eBPF is unavailable: (.*?); falling back", out.output)
        sidecar = f" The sidecar: eBPF is unavailable: {found[-1]}" if found else ""
        return "XFAIL", f"expected: {case.xfail}. What happened: {verdict.note}.{sidecar}"
    why = verdict.hard or verdict.note
    return "FAIL", f"{why} (not the expected failure of this xfail row: {case.xfail})"


def markdown_table(rows: list[Row]) -> str:
    head = "| kernel | BTF source / case | mode | expected | seen | events (seen/expected) | result | s |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        secs = f"{r.secs:.1f}" if r.secs is not None else "-"
        result = r.result if r.result == "PASS" else f"**{r.result}** {r.note}"
        if r.result == "PASS" and r.stalled:
            result = f"PASS ({r.note})"
        if r.result == "XFAIL":
            result = f"XFAIL {r.note}"
        lines.append(
            f"| {r.kernel} | {r.group} | {r.mode} | {r.expected} | {r.seen} | "
            f"{r.events} | {result} | {secs} |"
        )
    return "\n".join(lines)


def write(out_dir: Path, rows: list[Row], runs: list[VmRun], wall: float) -> str:
    table = markdown_table(rows)
    parity = replay.parity_tables(rows)
    if parity:
        table = f"{table}\n\n{parity}"
    xfail = sum(r.result == "XFAIL" for r in rows)
    failed = sum(r.result not in ("PASS", "XFAIL") for r in rows)
    stalls = [f"{r.kernel} {r.case}" for r in rows if r.stalled]
    stalled = f"; the guest got stuck in {len(stalls)} ({', '.join(stalls)}), run again" if stalls else ""
    footer = (
        f"{len(rows) - failed - xfail}/{len(rows)} passed, {xfail} expected to fail (XFAIL), "
        f"{failed} failed{stalled}; matrix wall time {wall:.0f} s "
        f"({', '.join(f'{r.name}: {r.secs:.0f} s' for r in runs)})"
    )
    (out_dir / "results.json").write_text(
        json.dumps(
            {
                "wall_secs": round(wall, 1),
                "vms": [
                    {
                        "name": r.name,
                        "secs": round(r.secs, 1),
                        "done": r.done,
                        "timed_out": r.timed_out,
                        "stalled": r.stalled,
                        "boot": r.boot,
                        "console": str(r.console),
                    }
                    for r in runs
                ],
                "rows": [dataclasses.asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    (out_dir / "summary.md").write_text(f"{table}\n\n{footer}\n")
    return f"{table}\n\n{footer}"


# What the events column counts, under every published table.
EVENTS_LEGEND = (
    '"events (seen/expected)" counts journal lines: what the sidecar wrote, out of what the scenario\n'
    "expects for that backend. Every backend reports every operation kind (create, write, delete,\n"
    "rename, mkdir, rmdir, attrib), so the expectation is the same for all of them."
)


def publish(path: Path, summary: str, runs: list[VmRun], revision: str) -> None:
    """The summary of a full matrix run as the documentation's results page (docs/results/)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    kernels = ", ".join(r.name for r in runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# VM matrix: the latest full run\n\n"
        f"Generated by `just vm-test` (tests/vm/run.sh, every kernel series and case) on {when},\n"
        f"tree {revision}. Guests: {kernels}. Do not edit by hand: the next full run rewrites it.\n\n"
        f"{summary}\n\n{EVENTS_LEGEND}\n"
    )
