"""arm64 guests: Debian bookworm's cloud-arm64 kernel under qemu-system-aarch64 (TCG).

Everything the arm64 guest needs comes from Debian's arm64 packages, fetched with apt into the
harness cache under an apt configuration of its own (<cache>/arm64/apt: sources list, lists,
archives, an empty dpkg status), so the machine's apt configuration and dpkg architectures stay
untouched:
* the kernel, `linux-image-6.1.0-<N>-cloud-arm64-unsigned`: its vmlinuz is a raw arm64 Image that
  qemu boots directly; its .BTF is found inside the Image by the BTF header (the `sanity` case
  proves it is byte-identical to the guest's /sys/kernel/btf/vmlinux); `virtio_mmio` and
  `virtio_console` (modules in the cloud flavour) and their dependencies go into the initramfs;
* `busybox-static`, and `bpftool` with the shared libraries it needs (`libc6`, `libcap2`,
  `libelf1`, `zlib1g`) and the aarch64 dynamic loader.

The one UART (ttyAMA0) carries the console; the result port is a virtio console (hvc0) written to
a file by qemu. guest/init.sh sources /vm/arch.sh, which loads the modules and points the result
port at /dev/hvc0.
"""

import dataclasses
import fnmatch
import gzip
import hashlib
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from . import matrix, qemu, replay, roundtrip
from .cpio import CpioWriter
from .kernels import Kernel, elf_section
from .arm64_apt import Apt, _unpack
from .util import HarnessError, log, run

QEMU = "qemu-system-aarch64"
# pauth-impdef: the implementation-defined pointer-auth algorithm; the architected one (QARMA)
# makes TCG boot ~4x slower. One UART (ttyAMA0, the console); the result port is a virtio console.
QEMU_ARGS = ["-M", "virt", "-cpu", "max,pauth-impdef=on", *qemu.GUEST_ARGS]
KERNEL_CMDLINE = qemu.kernel_cmdline("ttyAMA0")

# Series -> regex over package names; group 1 is the kernel release (uname -r).
SERIES = {
    "6.1": re.compile(r"^linux-image-(6\.1\.0-\d+-cloud-arm64)-unsigned$"),
}
# Modules the guest loads before anything else (with their dependencies from modules.dep).
GUEST_MODULES = ("virtio_mmio", "virtio_console")
# The guest userland: packages, and the files taken from them.
USERLAND_PACKAGES = ("busybox-static", "bpftool", "libc6", "libcap2", "libelf1", "zlib1g")
LIB_DIRS = ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")
# What verifier-stats links for the arm64 guest: libbpf, libelf and zlib statically (the guest has
# no libbpf), glibc dynamically (the guest has it for bpftool), and libgcc for the outline
# atomics (__aarch64_ldadd4_sync, ...) Debian's gcc compiled libbpf with.
VERIFIER_STATS_PACKAGES = ("libbpf-dev", "libelf-dev", "zlib1g-dev", "libgcc-12-dev")
ZIG_TARGET = "aarch64-linux-gnu.2.36"  # bookworm's glibc
# init maps `uname -m` aarch64 to BTFHub's directory name.
BTFHUB_ARCH = "arm64"

# Rows expected to fail on arm64: case id glob -> reason. A row marked here is still run and
# checked exactly like on x86_64; it is reported XFAIL when it fails in the expected way (the
# sidecar still comes up, on some backend) and XPASS, which fails the run, once it passes: then
# drop its entry here. None today: the eBPF rows run the aarch64 objects (ebpf/obj/aarch64/).
XFAIL: dict[str, str] = {}


# ---- the kernel ----


@dataclasses.dataclass
class Arm64Kernel:
    kernel: Kernel  # vmlinux is the raw arm64 Image
    modules: list[Path]  # uncompressed .ko files in load order
    cache_dir: Path
    # fentry/fexit on kernel functions: the BPF trampoline is attached through ftrace direct
    # calls, which arm64 has only from 6.4 (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS); before,
    # arm64 can poke trampolines into BPF programs only and refuses the attach with ENOTSUPP (524).
    fentry: bool


def fentry_supported(config: str) -> bool:
    return "\nCONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y\n" in "\n" + config


ARM64_IMAGE_MAGIC = b"ARM\x64"  # at offset 0x38 of a raw arm64 Image


def raw_image(vmlinuz: bytes, name: str) -> bytes:
    """The raw Image qemu boots: vmlinuz itself (Debian 6.1) or its gzip payload."""
    if vmlinuz[0x38:0x3C] == ARM64_IMAGE_MAGIC:
        return vmlinuz
    if vmlinuz[:2] == b"\x1f\x8b":
        image = gzip.decompress(vmlinuz)
        if image[0x38:0x3C] == ARM64_IMAGE_MAGIC:
            return image
    raise HarnessError(
        f"{name} is neither a raw arm64 Image (magic ARM\\x64 at 0x38) nor a gzipped one "
        f"(starts with {vmlinuz[:8].hex()}); EFI zboot images are not handled"
    )


def btf_from_image(image: bytes, name: str) -> bytes:
    """The kernel's BTF blob inside a raw Image: a header with magic 0xeb9f, version 1, hdr_len
    24, type section at 0 followed by the string section; the largest such blob is vmlinux's."""
    best = b""
    for m in re.finditer(re.escape(b"\x9f\xeb\x01\x00"), image):
        start = m.start()
        if start + 24 > len(image):
            continue
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", image, start + 4)
        if hdr_len != 24 or type_off != 0 or str_off != type_len or str_len == 0:
            continue
        end = start + hdr_len + str_off + str_len
        if end > len(image) or image[start + hdr_len + str_off] != 0 or image[end - 1] != 0:
            continue
        if end - start > len(best):
            best = image[start:end]
    if len(best) < 100_000:
        raise HarnessError(f"no kernel BTF found in {name} (largest candidate {len(best)} bytes)")
    return best


def _decompress_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        res = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=False)
        if res.returncode != 0:
            raise HarnessError(f"zstd -dc {path} failed: {res.stderr.decode(errors='replace')}")
        return res.stdout
    return data


def _modinfo_depends(ko: bytes, name: str) -> list[str]:
    """The `depends=` list of a module's .modinfo section."""
    try:
        info = elf_section(ko, ".modinfo")
    except HarnessError as e:
        raise HarnessError(f"module {name}: {e}") from e
    for field in info.split(b"\0"):
        if field.startswith(b"depends="):
            return [d for d in field[8:].decode().split(",") if d]
    return []


def module_load_order(moddir: Path, wanted: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """(name, uncompressed .ko) of the wanted modules and their dependencies (from each module's
    .modinfo: the package ships no modules.dep, depmod makes it at install), dependencies first."""
    files = {}
    for path in moddir.rglob("*.ko*"):
        files[path.name.split(".ko")[0].replace("-", "_")] = path
    order: list[tuple[str, bytes]] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if any(n == name for n, _ in order) or name in chain:
            return
        if name not in files:
            raise HarnessError(
                f"module {name} ({' <- '.join(chain) or 'wanted'}) is not under {moddir} (built in?)"
            )
        ko = _decompress_module(files[name])
        for dep in _modinfo_depends(ko, name):
            visit(dep.replace("-", "_"), (name, *chain))
        order.append((name, ko))

    for name in wanted:
        visit(name, ())
    return order


def prepare_kernel(apt: Apt, series: str, cache: Path) -> Arm64Kernel:
    pattern = SERIES[series]
    package = apt.newest(pattern)
    if package is None:
        raise HarnessError(
            f"no arm64 package matching {pattern.pattern} in the lists from {apt.sources}"
        )
    deb = apt.download(package)
    release = pattern.match(deb.name.split("_")[0]).group(1)
    out = cache / "arm64" / "kernels" / deb.stem
    kernel = Kernel(series, release, deb, out / "Image", out / f"{release}.btf")
    order_file, config = out / "modules.order", out / "config"
    if kernel.vmlinux.exists() and kernel.btf.exists() and order_file.exists() and config.exists():
        modules = [out / "modules" / n for n in order_file.read_text().split()]
        return Arm64Kernel(kernel, modules, out, fentry_supported(config.read_text()))
    log(f"extracting {deb.name}")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "root"
        _unpack(deb, root)
        vmlinuz = root / "boot" / f"vmlinuz-{release}"
        if not vmlinuz.exists():
            raise HarnessError(f"{deb.name} has no boot/vmlinuz-{release}")
        image = raw_image(vmlinuz.read_bytes(), vmlinuz.name)
        config = root / "boot" / f"config-{release}"
        if not config.exists():
            raise HarnessError(f"{deb.name} has no boot/config-{release}")
        staging = Path(tmp) / "out"
        (staging / "modules").mkdir(parents=True)
        (staging / "Image").write_bytes(image)
        shutil.copy(config, staging / "config")
        (staging / f"{release}.btf").write_bytes(btf_from_image(image, vmlinuz.name))
        moddir = root / "lib" / "modules" / release
        if not moddir.is_dir():
            raise HarnessError(f"{deb.name} has no lib/modules/{release}")
        names = []
        for i, (name, ko) in enumerate(module_load_order(moddir, GUEST_MODULES)):
            names.append(f"{i:02d}-{name}.ko")
            (staging / "modules" / names[-1]).write_bytes(ko)
        (staging / "modules.order").write_text("\n".join(names) + "\n")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    return prepare_kernel(apt, series, cache)


# ---- the guest userland ----


def _needed(elf: Path) -> tuple[list[str], str]:
    """DT_NEEDED entries and the program interpreter of an ELF (readelf reads any machine)."""
    dyn = run(["readelf", "-dW", str(elf)], capture=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", dyn)
    prog = run(["readelf", "-lW", str(elf)], capture=True)
    interp = re.search(r"Requesting program interpreter: ([^]]+)\]", prog)
    return needed, interp.group(1) if interp else ""


def _unpacked(debs: list[Path], base: Path) -> Path:
    """The packages unpacked together into base/<hash of their names>, once: a directory is
    used only when its .complete marker says the unpacking finished."""
    key = hashlib.sha256("\n".join(d.name for d in debs).encode()).hexdigest()[:16]
    root = base / key
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for deb in debs:
            _unpack(deb, root)
        (root / ".complete").touch()
    return root


def userland(apt: Apt, cache: Path) -> dict[str, Path]:
    """guest path -> host file: the static arm64 busybox, bpftool, its libraries and loader."""
    debs = [apt.download(p) for p in USERLAND_PACKAGES]
    root = _unpacked(debs, cache / "arm64" / "userland")
    files = {"bin/busybox": root / "bin" / "busybox", "usr/sbin/bpftool": root / "usr" / "sbin" / "bpftool"}
    for guest, host in files.items():
        if not host.exists():
            raise HarnessError(f"{host} missing after unpacking {', '.join(d.name for d in debs)}")
    kind = run(["file", "-L", str(files["bin/busybox"])], capture=True)
    if "aarch64" not in kind or "statically linked" not in kind:
        raise HarnessError(f"{files['bin/busybox']} is not a static aarch64 busybox: {kind.strip()}")
    pending = [files["usr/sbin/bpftool"]]
    while pending:
        needed, interp = _needed(pending.pop())
        if interp:
            loader = root / interp.lstrip("/")
            if not loader.exists():
                raise HarnessError(f"bpftool's loader {interp} is not in {root}")
            files.setdefault(interp.lstrip("/"), loader)
        for lib in needed:
            for d in LIB_DIRS:
                if (root / d / lib).exists():
                    if f"{d}/{lib}" not in files:
                        files[f"{d}/{lib}"] = root / d / lib
                        pending.append(root / d / lib)
                    break
            else:
                raise HarnessError(
                    f"bpftool (arm64) needs {lib}, which none of {', '.join(USERLAND_PACKAGES)} "
                    f"provides (looked in {', '.join(LIB_DIRS)} under {root})"
                )
    return files


def build_verifier_stats(apt: Apt, cache: Path, out: Path) -> Path:
    """tests/vm/verifier-stats.c for the arm64 guest: cross-compiled by zig cc (PyPI `ziglang`,
    the toolchain `just build` uses for aarch64) against Debian's arm64 libbpf, libelf and zlib
    archives, unpacked into <cache>/arm64/sysroot/."""
    src = Path(__file__).resolve().parent.parent / "verifier-stats.c"
    debs = [apt.download(p) for p in VERIFIER_STATS_PACKAGES]
    root = _unpacked(debs, cache / "arm64" / "sysroot")
    exe = out / "verifier-stats-aarch64"
    if exe.exists() and exe.stat().st_mtime >= max(src.stat().st_mtime, (root / ".complete").stat().st_mtime):
        return exe
    libs = root / "usr" / "lib" / "aarch64-linux-gnu"
    archives = [libs / a for a in ("libbpf.a", "libelf.a", "libz.a")]
    archives += sorted((root / "usr" / "lib" / "gcc" / "aarch64-linux-gnu").glob("*/libgcc.a"))[-1:]
    missing = [str(a) for a in archives if not a.exists()]
    if missing:
        raise HarnessError(f"{', '.join(missing)} missing after unpacking {', '.join(d.name for d in debs)}")
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", ZIG_TARGET, "-O2", "-o", str(exe), str(src)]
    cmd += ["-isystem", str(root / "usr" / "include"), *map(str, archives)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if res.returncode != 0:
        raise HarnessError(
            f"cross-compiling {src.name} for arm64 failed (needs zig: `pip install ziglang`, "
            f"scripts/setup.sh): {res.stderr.strip()[-600:]}"
        )
    return exe


def arch_segment(kernel: Arm64Kernel) -> bytes:
    """The per-kernel arm64 part: the modules and /vm/arch.sh, which init.sh sources."""
    cpio = CpioWriter()
    lines = [
        "# arm64 guest set-up, sourced by /init: the virtio-mmio transport and virtio console",
        "# are modules in Debian's cloud-arm64 kernel; the result port is the virtio console.",
    ]
    for mod in kernel.modules:
        cpio.file(f"vm/modules/{mod.name}", mod, 0o644)
        lines.append(
            f'insmod /vm/modules/{mod.name} || echo "arch.sh: insmod {mod.name} failed" >/dev/console'
        )
    lines += [
        "result_port=/dev/hvc0",
        # The node appears before the port is ready (ENODEV on open until the host side has
        # answered on the control queue); /init opens it once, retrying until it opens.
        "for _ in $(seq 200); do [ -c $result_port ] && break; sleep 0.05; done",
        '[ -c $result_port ] || echo "arch.sh: $result_port did not appear" >/dev/console',
    ]
    cpio.data("vm/arch.sh", ("\n".join(lines) + "\n").encode())
    return cpio.finish()


def qemu_command(vmlinux: Path, initrd: Path, console: Path, result: Path) -> list[str]:
    """The arm64 guest: ttyAMA0 is the console, a virtio console (hvc0) the result port."""
    return [
        *qemu.guest_command(QEMU, QEMU_ARGS, KERNEL_CMDLINE, vmlinux, initrd, console),
        "-chardev",
        f"file,id=result,path={result}",
        "-device",
        "virtio-serial-device",
        "-device",
        "virtconsole,chardev=result",
    ]


# ---- the cases ----


def cases(x86_cases: list[matrix.Case], fentry: bool) -> list[matrix.Case]:
    """The x86_64 cases, unchanged in what they run and check, with the xfail marks above, plus
    the scenario with eBPF switched off (after the BTF rows, before the self-tests). fentry: the
    kernel attaches fentry to kernel functions; if not, the system-BTF fentry and auto cells
    expect the sidecar to fall back to kprobe and to log the kernel's refusal."""
    marked = []
    for case in x86_cases:
        if case.id.startswith("selftest.") and not any(c.id == "ebpf-off.inotify" for c in marked):
            marked.append(ebpf_off_case())
        if not fentry and case.id in ("cell.system.fentry", "cell.system.auto"):
            case = _without_fentry(case)
        if not fentry and case.id == "replay.fentry":
            case = replay.without_fentry(case)
        if not fentry and case.id == "ops.fentry":
            case = dataclasses.replace(
                case,
                args=["fentry", "kprobe"],
                args_on=None,
                expect="kprobe (no fentry on this kernel)",
                expect_on=None,
                check=matrix._ops_check("fentry", expect="kprobe"),
            )
        if not fentry and case.id == "roundtrip.fentry":
            case = roundtrip.without_fentry(case)
        reason = next((r for g, r in XFAIL.items() if fnmatch.fnmatch(case.id, g)), "")
        marked.append(dataclasses.replace(case, xfail=reason) if reason else case)
    return marked


FENTRY_REFUSED = r"\[eBPF\] fentry: .*\(os error 524\)"  # ENOTSUPP from the attach


def _without_fentry(case: matrix.Case) -> matrix.Case:
    row, mode = case.args[:2]
    cell = matrix._cell_check(row, mode, expect="kprobe")

    def check(out, release):
        verdict = cell(out, release)
        if verdict.ok and not re.search(FENTRY_REFUSED, out.output):
            return dataclasses.replace(
                verdict, ok=False, note=f"no log line of the kernel refusing fentry (/{FENTRY_REFUSED}/)"
            )
        return verdict

    return dataclasses.replace(
        case,
        args=[row, mode, "kprobe"],
        args_on=None,
        expect="kprobe (no fentry on this kernel)",
        expect_on=None,
        check=check,
    )


def _check_ebpf_off(out, _release: str) -> matrix.Verdict:
    """--enable-ebpf=false: inotify at once, with the sidecar's reason, and the full journal."""
    if out.rc is None or out.rc == 137:
        return matrix.Verdict(False, "", "", "killed by the per-case timeout" if out.rc == 137 else "")
    seen = matrix.ready_backend(out.output)
    problems = [
        matrix.scenario_problem(out),
        f"backend {seen or 'none'} instead of inotify" if seen != "inotify" else "",
        "no `eBPF disabled (--enable-ebpf=false)` log line"
        if "eBPF disabled (--enable-ebpf=false)" not in out.output
        else "",
        "the sidecar loaded BTF although eBPF is off" if matrix.btf_line(out.output) else "",
    ]
    problems = [p for p in problems if p]
    return matrix.Verdict(not problems, seen, matrix.scenario_events(out.output), "; ".join(problems))


def ebpf_off_case() -> matrix.Case:
    return matrix.Case(
        "ebpf-off.inotify",
        "ebpf-off.sh",
        [],
        "sidecar --enable-ebpf=false",
        "-",
        "inotify",
        _check_ebpf_off,
        needs=("diffkeeper-sidecar", "diffkeeper-scenario"),
    )
