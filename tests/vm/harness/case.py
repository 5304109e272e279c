"""A case and its verdict: what every check (matrix.py, verifier.py) builds on."""

import dataclasses
import re
from collections.abc import Callable

from .qemu import CaseOutput

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
    btf_variants: tuple = ()  # files the host makes for the guest: "min", "broken", "bundle", "disk"
    # Why this case is expected to fail on this platform ("" = must pass). It runs and is checked
    # all the same: XFAIL when it fails without a hard problem, XPASS (a failure) when it passes.
    xfail: str = ""
    # The expectation on a given kernel release, when it depends on the kernel.
    expect_on: Callable[[str], str] | None = None
    # The script's arguments on a given kernel release, when they depend on the kernel.
    args_on: Callable[[str], list[str]] | None = None
    # Whether the case runs on a given kernel release (None: on every one); a case that would
    # only repeat another there, or costs more than it proves there, is left out of that guest.
    runs_on: Callable[[str], bool] | None = None
    # Seconds it may outlive its timeout before the guest counts as stuck (None: --stall-grace).
    stall_grace: float | None = None

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


def parts(text: str) -> dict[str, str]:
    """The guest output split at its `== part NAME: ...` lines ("" holds what came before)."""
    found: dict[str, str] = {}
    name = ""
    for line in text.splitlines(keepends=True):
        m = re.match(r"^== part (\w+):", line)
        if m:
            name = m.group(1)
        found[name] = found.get(name, "") + line
    return found


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
