"""Boots one kernel under qemu (TCG) and reads back the guest's result port."""

import dataclasses
import shlex
import subprocess
import time
from pathlib import Path

from .util import HarnessError, log

QEMU = "qemu-system-x86_64"
# Every guest: TCG, 1 GiB, 2 CPUs, no display, no reboot on panic (qemu exits), and no default
# devices (-nodefaults drops the default serial and monitor; each guest adds its own ports).
GUEST_ARGS = ["-accel", "tcg,thread=multi", "-m", "1G", "-smp", "2", "-nographic", "-no-reboot", "-nodefaults"]
# The x86_64 machine; its two -serial files are ttyS0 and ttyS1.
QEMU_ARGS = ["-cpu", "max", "-M", "pc", *GUEST_ARGS]


def kernel_cmdline(console: str) -> str:
    # quiet: printk to an emulated UART is slow; warnings, oopses and panics still reach the log.
    return f"console={console} panic=-1 oops=panic quiet rdinit=/init"


KERNEL_CMDLINE = kernel_cmdline("ttyS0")


@dataclasses.dataclass
class CaseOutput:
    id: str
    output: str
    rc: int | None  # None: the guest never finished this case (hang, panic, outer timeout)
    secs: float | None
    # Set for the case the guest was in when it ended without finishing it:
    console_tail: str = ""  # the last lines of the guest console
    killed: bool = False  # qemu was killed by the outer timeout (otherwise the guest ended itself)


@dataclasses.dataclass
class VmRun:
    name: str
    console: Path
    boot: dict  # key=value pairs of the @@BOOT line; empty if the guest never got that far
    cases: dict  # id -> CaseOutput, in run order
    done: bool  # the guest reached @@DONE
    timed_out: bool
    secs: float

    def console_tail(self, lines: int = 40) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def parse_result_port(text: str) -> tuple[dict, dict, bool]:
    boot: dict = {}
    cases: dict = {}
    done = False
    current = None
    for line in text.replace("\r", "").splitlines():
        if line.startswith("| ") or line == "|":
            if current:
                current.output += line[2:] + "\n"
        elif line.startswith("@@BOOT "):
            boot = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        elif line.startswith("@@BEGIN "):
            current = CaseOutput(line.split()[1], "", None, None)
            cases[current.id] = current
        elif line.startswith("@@END ") and current:
            fields = dict(kv.split("=", 1) for kv in line.split()[2:])
            current.rc, current.secs = int(fields["rc"]), float(fields["secs"])
            current = None
        elif line == "@@DONE":
            done = True
    return boot, cases, done


def guest_command(
    qemu: str, qemu_args: list[str], cmdline: str, vmlinux: Path, initrd: Path, console: Path
) -> list[str]:
    """The part every guest shares: the kernel, its initramfs and command line, and the first
    serial port as the console log; callers add their result port."""
    return [
        qemu,
        *qemu_args,
        "-kernel",
        str(vmlinux),
        "-initrd",
        str(initrd),
        "-append",
        cmdline,
        "-serial",
        f"file:{console}",
    ]


def x86_command(vmlinux: Path, initrd: Path, console: Path, result: Path) -> list[str]:
    """The x86_64 guest: ttyS0 is the console, ttyS1 the result port."""
    return [
        *guest_command(QEMU, QEMU_ARGS, KERNEL_CMDLINE, vmlinux, initrd, console),
        "-serial",
        f"file:{result}",
    ]


def boot(
    name: str, vmlinux: Path, initrd: Path, workdir: Path, timeout: float, command=x86_command
) -> VmRun:
    """Runs the guest to completion or until timeout (then qemu is killed; unfinished cases
    stay without rc). Never raises for guest failures, only for a missing qemu. command builds
    the qemu command line (x86_command, arm64.qemu_command)."""
    console, result = workdir / "console.log", workdir / "result.log"
    for f in (console, result):
        f.unlink(missing_ok=True)
    cmd = command(vmlinux, initrd, console, result)
    (workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")  # to rerun a guest by hand
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except FileNotFoundError:
        package = "qemu-system-arm" if "aarch64" in cmd[0] else "qemu-system-x86"
        raise HarnessError(f"{cmd[0]} not found: run scripts/setup.sh (Debian {package})")
    timed_out = False
    try:
        qemu_out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        qemu_out, _ = proc.communicate()
        log(f"{name}: guest still running after {timeout:.0f}s: killed qemu")
    secs = time.monotonic() - start
    if qemu_out:
        (workdir / "qemu.out").write_bytes(qemu_out)
    text = result.read_text(errors="replace") if result.exists() else ""
    boot_info, cases, done = parse_result_port(text)
    vm = VmRun(name, console, boot_info, cases, done, timed_out, secs)
    for case in cases.values():
        if case.rc is None:
            case.console_tail, case.killed = vm.console_tail(80), timed_out
    return vm
