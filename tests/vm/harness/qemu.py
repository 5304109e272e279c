"""Boots one kernel under qemu (TCG) and reads back the guest's result port."""

import dataclasses
import shlex
import socket
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
    # sysrq_always_enabled: the harness asks a stuck guest for its blocked tasks and CPU stacks
    # (see stall_dump); the hung-task detector reports a task stuck for 60 s on its own.
    return (
        f"console={console} panic=-1 oops=panic quiet rdinit=/init sysrq_always_enabled "
        "sysctl.kernel.hung_task_timeout_secs=60"
    )


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
    stalled: bool = False  # the guest was stuck in this case (it outlived its own timeout)


@dataclasses.dataclass
class VmRun:
    name: str
    console: Path
    boot: dict  # key=value pairs of the @@BOOT line; empty if the guest never got that far
    cases: dict  # id -> CaseOutput, in run order
    done: bool  # the guest reached @@DONE
    timed_out: bool
    secs: float
    stalled: str = ""  # the case the guest was stuck in when the harness killed it ("" = none)
    killed: bool = False  # the harness killed qemu after a stall (stalled may have recovered)

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
        # The human monitor, for the key presses of stall_dump.
        "-monitor",
        f"unix:{console.parent / 'monitor.sock'},server=on,wait=off",
    ]


def x86_command(vmlinux: Path, initrd: Path, console: Path, result: Path) -> list[str]:
    """The x86_64 guest: ttyS0 is the console, ttyS1 the result port."""
    return [
        *guest_command(QEMU, QEMU_ARGS, KERNEL_CMDLINE, vmlinux, initrd, console),
        "-serial",
        f"file:{result}",
    ]


# How long a case may outlive its own timeout before the guest counts as stuck: the guest's
# `timeout -s KILL` ends a case that hangs in user space, so only a stuck kernel (or a task it
# cannot kill) gets this far. Generous: cleaning up after a killed case is slow under TCG.
STALL_GRACE = 60.0


def stall_dump(monitor: Path) -> None:
    """Asks a stuck guest's kernel for the blocked tasks (SysRq-w) and every CPU's stack
    (SysRq-l) on its console, through the monitor's emulated keyboard (x86_64; the arm64 virt
    machine has no keyboard, its console keeps what the hung-task detector printed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(monitor))
            for key in ("w", "l"):
                s.sendall(f"sendkey alt-sysrq-{key}\n".encode())
                time.sleep(1)
    except OSError as e:
        log(f"stall dump through {monitor} failed: {e}")
    time.sleep(4)  # printk to the emulated UART


class ResultWatch:
    """Follows the result port while the guest runs: which case it is in, and since when."""

    def __init__(self, result: Path):
        self.result, self.offset, self.partial = result, 0, ""
        self.case, self.since = "", 0.0

    def poll(self) -> None:
        if not self.result.exists():
            return
        with self.result.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk.decode(errors="replace")).split("\n")
        self.partial = lines.pop()
        for line in lines:
            line = line.rstrip("\r")
            if line.startswith("@@BEGIN "):
                self.case, self.since = line.split()[1], time.monotonic()
            elif line.startswith("@@END "):
                self.case = ""

    def stuck(self, stuck_after: dict) -> str:
        """The case the guest is stuck in, or ""."""
        self.poll()
        limit = stuck_after.get(self.case)
        return self.case if limit is not None and time.monotonic() - self.since > limit else ""


def boot(
    name: str,
    vmlinux: Path,
    initrd: Path,
    workdir: Path,
    timeout: float,
    command=x86_command,
    stuck_after: dict | None = None,
) -> VmRun:
    """Runs the guest to completion or until timeout (then qemu is killed; unfinished cases
    stay without rc), or until it is stuck in a case: in it longer than stuck_after[id] seconds
    (its timeout + a grace, e.g. STALL_GRACE). Then its stacks are dumped to the console, qemu
    is killed, and VmRun.stalled names the case. Never raises for guest
    failures, only for a missing qemu. command builds the qemu command line (x86_command,
    arm64.qemu_command)."""
    console, result = workdir / "console.log", workdir / "result.log"
    for f in (console, result, workdir / "monitor.sock"):
        f.unlink(missing_ok=True)
    cmd = command(vmlinux, initrd, console, result)
    (workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")  # to rerun a guest by hand
    start = time.monotonic()
    qemu_out = workdir / "qemu.out"
    try:
        with qemu_out.open("wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        package = "qemu-system-arm" if "aarch64" in cmd[0] else "qemu-system-x86"
        raise HarnessError(f"{cmd[0]} not found: run scripts/setup.sh (Debian {package})")
    watch, timed_out, stalled = ResultWatch(result), False, ""
    while proc.poll() is None:
        stalled = watch.stuck(stuck_after or {})
        if stalled:
            log(f"{name}: the guest is stuck in {stalled} ({stuck_after[stalled]:.0f} s in it): dumping its stacks, killing qemu")
            stall_dump(workdir / "monitor.sock")
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            log(f"{name}: guest still running after {timeout:.0f}s: killed qemu")
            break
        time.sleep(1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    secs = time.monotonic() - start
    if qemu_out.exists() and qemu_out.stat().st_size == 0:
        qemu_out.unlink()
    text = result.read_text(errors="replace") if result.exists() else ""
    boot_info, cases, done = parse_result_port(text)
    killed = bool(stalled)
    if stalled and cases.get(stalled) and cases[stalled].rc is not None:
        stalled = ""  # it ended while its stacks were dumped: slow, not stuck (the kill cut the next)
    vm = VmRun(name, console, boot_info, cases, done, timed_out, secs, stalled, killed)
    for case in cases.values():
        if case.rc is None:
            case.stalled = case.id == stalled
            # A stall's console ends with the SysRq dumps: keep all of them.
            case.console_tail = vm.console_tail(400 if case.stalled else 80)
            case.killed = timed_out or killed
    return vm
