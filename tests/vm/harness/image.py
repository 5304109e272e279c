"""The guest's initramfs: one segment shared by all kernels (busybox, the diffkeeper binaries,
bpftool, the guest scripts) and one per kernel (its case list and BTF files)."""

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from .cpio import CpioWriter
from .kernels import Kernel
from .util import HarnessError, log

GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"
REPO = GUEST_DIR.parents[2]
# Both eBPF objects, as committed per architecture in ebpf/obj/<arch>/ (the guest gets its
# architecture's as /vm/obj/; the verifier cases load them with bpftool/verifier-stats).
BPF_OBJECTS = ("diffkeeper.bpf.o", "diffkeeper-compat.bpf.o")


def bpf_objects(arch: str) -> list[Path]:
    """The committed objects of an architecture: "x86_64" or "aarch64" (`uname -m`)."""
    return [REPO / "ebpf" / "obj" / arch / name for name in BPF_OBJECTS]


# The modern object's placeholder kfunc calls (ebpf/c/dk_direct.bpf.h): the sidecar writes the
# kernel's bpf_rdonly_cast id into them, or `r0 = r1` where it does not use direct loads. A
# generic loader (bpftool, verifier-stats) cannot, so the guest gets the second form: what the
# sidecar loads without direct loads (their branches are dead with the default dk_direct = 0).
CAST_PLACEHOLDER = (0x7DCA57ED_00002085).to_bytes(8, "little")
MOVE_R1_TO_R0 = (0x10BF).to_bytes(8, "little")
SHF_EXECINSTR = 0x4


def loadable_object(obj: Path) -> bytes:
    """`obj` (a little-endian ELF64 eBPF object) with every placeholder cast made `r0 = r1`."""
    data = bytearray(obj.read_bytes())
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    for i in range(shnum):
        header = shoff + i * shentsize
        flags = int.from_bytes(data[header + 8:header + 16], "little")
        offset = int.from_bytes(data[header + 24:header + 32], "little")
        size = int.from_bytes(data[header + 32:header + 40], "little")
        if not flags & SHF_EXECINSTR:
            continue
        for at in range(offset, offset + size - 7, 8):
            if data[at:at + 8] == CAST_PLACEHOLDER:
                data[at:at + 8] = MOVE_R1_TO_R0
    return bytes(data)
BINARIES = ("diffkeeper-init", "diffkeeper-sidecar", "diffkeeper-scenario", "diffkeeper")
# What diffkeeper-init reads as the host's identity (BTFHub: debian/12/<x86_64|arm64>).
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def _add_dynamic(cpio: CpioWriter, exe: Path, guest_path: str) -> None:
    """A dynamically linked host program plus the shared libraries ldd resolves for it."""
    cpio.file(guest_path, exe, 0o755)
    out = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", out):
        cpio.file(lib.lstrip("/"), Path(lib), 0o755)


def _static_busybox() -> Path:
    busybox = shutil.which("busybox")
    kind = subprocess.run(
        ["file", "-L", busybox or "/bin/busybox"], check=False, capture_output=True, text=True
    )
    if busybox is None or "statically linked" not in kind.stdout:
        raise HarnessError("a static busybox is needed in the guest: apt-get install busybox-static")
    return Path(busybox)


def build_verifier_stats(out: Path) -> Path:
    """tests/vm/verifier-stats.c as a static binary (libbpf, libelf and zlib from libbpf-dev)."""
    src = GUEST_DIR.parent / "verifier-stats.c"
    exe = out / "verifier-stats"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    cc = shutil.which("clang") or shutil.which("cc")
    res = subprocess.run(
        [cc or "clang", "-O2", "-static", "-o", str(exe), str(src), "-lbpf", "-lelf", "-lz"],
        check=False,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise HarnessError(
            f"building {src.name} failed (needs clang and libbpf-dev: scripts/setup.sh): "
            f"{res.stderr.strip()[-600:]}"
        )
    return exe


def common_segment(
    bin_dir: Path,
    arch: str,
    userland: dict[str, Path] | None = None,
    verifier_stats: Path | None = None,
) -> bytes:
    """arch: whose eBPF objects go to /vm/obj ("x86_64" or "aarch64"). userland: guest path ->
    host file for busybox, bpftool and its libraries (another architecture's, see
    arm64.userland); default: the host's static busybox and bpftool. verifier_stats: the tool
    the verifier cases run, built for the guest's architecture."""
    cpio = CpioWriter()
    for d in ("proc", "sys", "dev", "tmp", "etc", "var/empty", "root"):
        cpio.dir(d)
    if userland is None:
        cpio.file("bin/busybox", _static_busybox(), 0o755)
        bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
        if not Path(bpftool).exists():
            raise HarnessError("bpftool not found: apt-get install bpftool")
        _add_dynamic(cpio, Path(bpftool), "usr/sbin/bpftool")
    else:
        for guest_path, host_file in userland.items():
            cpio.file(guest_path, host_file, 0o755)
    cpio.symlink("bin/sh", "busybox")
    for name in BINARIES:
        if (bin_dir / name).exists():
            cpio.file(f"usr/local/bin/{name}", bin_dir / name, 0o755)
    if verifier_stats is not None:
        cpio.file("usr/local/bin/verifier-stats", verifier_stats, 0o755)
    for obj in bpf_objects(arch):
        cpio.data(f"vm/obj/{obj.name}", loadable_object(obj), 0o644)
    cpio.data("etc/os-release", OS_RELEASE)
    cpio.file("init", GUEST_DIR / "init.sh", 0o755)
    cpio.file("vm/lib.sh", GUEST_DIR / "lib.sh", 0o644)
    for script in sorted((GUEST_DIR / "cases").glob("*.sh")):
        cpio.file(f"vm/cases/{script.name}", script, 0o755)
    return cpio.finish()


def btf_tarball(kernel: Kernel) -> Path:
    """<release>.btf.tar.xz as BTFHub ships it (one member, the raw BTF), cached per kernel."""
    out = kernel.btf.parent / f"{kernel.release}.btf.tar.xz"
    if not out.exists():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tar:
            tar.add(kernel.btf, arcname=f"{kernel.release}.btf")
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(out)
    return out


def kernel_segment(
    kernel: Kernel, cases_list: str, btf_variants: dict[str, Path], btfhub_arch: str = "x86_64"
) -> bytes:
    """The case list, the host-made BTF variants as /vm/btf/<variant>/<release>.btf, the baked
    tarball and the mirror tree."""
    cpio = CpioWriter()
    rel = kernel.release
    cpio.data("vm/cases.list", cases_list.encode())
    cpio.data("vm/kernel.env", f"HOST_BTF_SHA256={_sha256(kernel.btf)}\n".encode())
    for variant, path in btf_variants.items():
        cpio.file(f"vm/btf/{variant}/{rel}.btf", path, 0o644)
    tarball = btf_tarball(kernel)
    cpio.file(f"vm/btf/baked/{rel}.btf.tar.xz", tarball, 0o644)
    # A BTFHub-shaped mirror tree, served over http on the guest's loopback.
    cpio.file(f"vm/mirror/debian/12/{btfhub_arch}/{rel}.btf.tar.xz", tarball, 0o644)
    return cpio.finish()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_initrd(out: Path, common: bytes, kernel_part: bytes) -> Path:
    """Concatenated uncompressed segments (~17 MB). gzip -1 halves the file but measured no
    faster to boot under TCG (3.6-4.9 s to /init either way), so the step is skipped."""
    out.write_bytes(common + kernel_part)
    log(f"initrd {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out
