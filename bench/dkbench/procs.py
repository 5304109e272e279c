"""The programs the bench drives: diffkeeper's binaries, the bench helper, and the peers
(bpftrace, inotifywait). Each long-running one is a `Background` process whose output is read
by a thread, so a marker line ("ready", "Watches established.") is seen the moment it appears."""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# The sidecar's readiness line up to the backend's name (cli/src/ready.rs, READY_PREFIX).
READY_PREFIX = "diffkeeper-sidecar ready: backend="
READY_RE = re.compile(re.escape(READY_PREFIX) + r"(\w+)")
BTF_RE = re.compile(r"\[eBPF\] Loaded BTF spec from (\S+)")
# sidecar/src/ebpf/session.rs and load.rs: which object was loaded, which sys_exit program attached.
OBJECT_RE = re.compile(r"\[eBPF\] object (\w+):")
TRACEPOINT_RE = re.compile(r"\[eBPF\] tracepoint mode: (tp_btf|raw_tracepoint) \S+ attached")


class BenchError(RuntimeError):
    """A run did not do what the benchmark needs (wrong backend, missing event, exit code)."""


@dataclass
class Bins:
    init: Path
    sidecar: Path
    helper: Path
    reader: Path  # diffkeeper, the store reader

    @classmethod
    def in_dir(cls, bin_dir: Path) -> "Bins":
        bins = cls(bin_dir / "diffkeeper-init", bin_dir / "diffkeeper-sidecar", bin_dir / "diffkeeper-bench",
                   bin_dir / "diffkeeper")
        for b in (bins.init, bins.sidecar, bins.helper, bins.reader):
            if not os.access(b, os.X_OK):
                raise BenchError(f"{b} is missing: build it first (`just bench` does)")
        return bins


def ignored_loop(bins: Bins, count: int) -> float:
    """CPU ns per getppid(2), a syscall the sidecar's programs run for but ignore."""
    out = subprocess.run([str(bins.helper), "getppid", str(count)],
                         check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout)
    return result["cpu_ns"] / result["calls"]


def write_loop(bins: Bins, path: Path, count: int) -> float:
    """CPU ns per 1-byte write(2): the writer's own CPU time around the loop only (kernel time,
    BPF programs and wake-ups included), so time spent preempted on this busy machine is not."""
    out = subprocess.run([str(bins.helper), "write", str(path), str(count)],
                         check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.stdout)
    return result["cpu_ns"] / result["writes"]


class Background:
    """A child process with one output stream read line by line in a thread."""

    def __init__(self, argv: list[str], *, stream: str = "stderr", stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, name: str = ""):
        self.argv = argv
        self.name = name or Path(argv[0]).name
        self.lines: "queue.Queue[tuple[float, str]]" = queue.Queue()
        self.log: list[str] = []
        kwargs = {"stdin": stdin, "stdout": stdout, "stderr": subprocess.DEVNULL}
        kwargs[stream] = subprocess.PIPE
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, text=True, **kwargs)
        pipe = getattr(self.proc, stream)
        self.reader = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.reader.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.put((time.perf_counter(), line.rstrip("\n")))
        self.lines.put((time.perf_counter(), None))

    def wait_for(self, pattern: re.Pattern | str, timeout: float = 30.0) -> tuple[float, re.Match]:
        """Seconds from spawn until a line matching `pattern`, and the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                when, line = self.lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise BenchError(f"{self.name}: no line matching {regex.pattern!r} within {timeout:.0f} s; "
                                 f"output so far:\n" + "\n".join(self.log[-20:]))
            if line is None:
                code = self.proc.wait()
                raise BenchError(f"{self.name} exited with {code} before printing {regex.pattern!r}; "
                                 f"output:\n" + "\n".join(self.log[-20:]))
            self.log.append(line)
            if m := regex.search(line):
                return when - self.started, m

    def drain_log(self) -> None:
        while True:
            try:
                _, line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.log.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0, ok_codes=(0,)) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise BenchError(f"{self.name} did not exit within {timeout:.0f} s of signal {sig}")
        self.reader.join(timeout=5)
        self.drain_log()
        if code not in ok_codes:
            raise BenchError(f"{self.name} exited with {code}; output:\n" + "\n".join(self.log[-20:]))
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Sidecar(Background):
    def __init__(self, bins: Bins, state_dirs: list[Path], journal: Path, *, cache_dir: Path,
                 backend: str = "tracepoint", coalesce_ms: int = 0, metrics_port: int | None = None,
                 ebpf_object: str = "auto", extra: tuple[str, ...] = ()):
        self.backend_wanted = backend
        self.object_wanted = ebpf_object
        argv = [str(bins.sidecar), "--journal", str(journal), "--coalesce-ms", str(coalesce_ms),
                "--btf-cache-dir", str(cache_dir), "--fallback-fsnotify=true"]
        for d in state_dirs:
            argv += ["--state-dir", str(d)]
        if backend == "inotify":
            argv.append("--enable-ebpf=false")
        else:
            argv += ["--attach", backend, "--ebpf-object", ebpf_object]
        self.metrics_port = metrics_port
        if metrics_port:
            argv += ["--metrics-addr", f"127.0.0.1:{metrics_port}"]
        argv += extra
        super().__init__(argv, stream="stderr", name="diffkeeper-sidecar")

    def ready(self, timeout: float = 30.0) -> float:
        """Seconds from spawn to the ready line; checks the backend (and a forced eBPF object)
        is the one asked for."""
        seconds, m = self.wait_for(READY_RE, timeout)
        if m.group(1) != self.backend_wanted and not (self.backend_wanted == "auto" and m.group(1) != "inotify"):
            raise BenchError(f"sidecar came up with backend={m.group(1)}, not {self.backend_wanted}; log:\n"
                             + "\n".join(self.log[-20:]))
        if self.backend_wanted != "inotify" and self.object_wanted != "auto" \
                and self._logged(OBJECT_RE) != self.object_wanted:
            raise BenchError(f"sidecar loaded the {self._logged(OBJECT_RE)} eBPF object, not {self.object_wanted}; "
                             "log:\n" + "\n".join(self.log[-20:]))
        return seconds

    def _logged(self, regex: re.Pattern) -> str | None:
        """Group 1 of the first log line matching `regex` so far."""
        self.drain_log()
        for line in self.log:
            if m := regex.search(line):
                return m.group(1)
        return None

    def sys_exit_program(self) -> str | None:
        """tp_btf or raw_tracepoint: the kind of sys_exit program tracepoint mode attached."""
        return self._logged(TRACEPOINT_RE)

    def btf_path(self) -> str | None:
        return self._logged(BTF_RE)

    def prog_ids(self) -> list[int]:
        """Ids of the BPF programs this process holds (from /proc/PID/fdinfo)."""
        ids = []
        fdinfo = Path(f"/proc/{self.proc.pid}/fdinfo")
        for entry in fdinfo.iterdir():
            try:
                text = entry.read_text()
            except OSError:
                continue
            if m := re.search(r"^prog_id:\s+(\d+)", text, re.M):
                ids.append(int(m.group(1)))
        return sorted(set(ids))

    def cpu_ms(self) -> float:
        """CPU time used so far by the process's live threads (scheduler runtime, exact)."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
        return total / 1e6

    def memory_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))
        hwm = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))
        return rss, hwm

    def metrics(self) -> dict[str, float]:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values


class Bpftrace(Background):
    """Debian's bpftrace with one program; `marker` is a line the program prints when live."""

    def __init__(self, program: str):
        super().__init__(["bpftrace", "-B", "line", "-e", program], stream="stdout", name="bpftrace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0, ok_codes=(0,)) -> int:
        return super().stop(sig, timeout, ok_codes)


class Inotifywait(Background):
    def __init__(self, watched: Path, out: Path):
        super().__init__(["inotifywait", "-m", "-r", "-o", str(out), str(watched)],
                         stream="stderr", name="inotifywait")

    def ready(self) -> None:
        self.wait_for("Watches established")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0, ok_codes=(0, -15, 143)) -> int:
        return super().stop(sig, timeout, ok_codes)


class HelperProbe(Background):
    """A program held attached by the bench helper until its stdin closes: `unfiltered DIR`
    (diffkeeper's tracepoint program reporting every write on DIR's file system) or
    `empty OBJECT` (empty programs on the same tracepoints, sys_enter and sys_exit)."""

    def __init__(self, bins: Bins, mode: str, arg: Path):
        super().__init__([str(bins.helper), mode, str(arg)], stream="stdout",
                         stdin=subprocess.PIPE, name=f"diffkeeper-bench {mode}")

    def ready(self) -> list[int]:
        """The ids of the programs it holds."""
        _, m = self.wait_for(r"ready prog_id=([\d,]+)")
        return [int(i) for i in m.group(1).split(",")]

    def stop(self, sig: int = 0, timeout: float = 15.0, ok_codes=(0,)) -> int:
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise BenchError(f"{self.name} did not exit after stdin closed")
        self.reader.join(timeout=5)
        self.drain_log()
        if code not in ok_codes:
            raise BenchError(f"{self.name} exited with {code}: {self.log[-5:]}")
        return code


def compile_empty_program(source: Path, out: Path) -> Path:
    """clang (scripts/setup.sh installs it with libbpf-dev) -> the empty programs' object."""
    if not out.exists():
        subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(source), "-o", str(out)], check=True, timeout=120)
    return out


def prog_run_stats(prog_id: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of one program; needs kernel.bpf_stats_enabled=1."""
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "-j"],
                         check=True, capture_output=True, text=True, timeout=30)
    info = json.loads(out.stdout)
    return int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0))


def foreign_probes() -> list[str]:
    """BPF programs attached by anyone else right now (links and perf-event attachments); any
    syscall tracepoint among them would slow the "unprobed" baseline too."""
    found = []
    for what in (["link", "show"], ["perf", "show"]):
        out = subprocess.run(["bpftool", *what, "-j"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            for entry in json.loads(out.stdout):
                found.append(f"{what[0]} prog {entry.get('prog_id')} "
                             f"({entry.get('type') or entry.get('fd_type') or '?'})")
    return found
