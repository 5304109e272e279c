"""Debian kernels for the matrix: pick the newest package per series, download it once into a
cache that outlives the checkout, and extract what the VM needs (ELF vmlinux + its BTF).

6.1 and 6.12 come from the machine's own apt sources (bookworm). 5.10 comes from Debian 11
(bullseye, bullseye-security) through an apt configuration of the harness's own, kept in the
cache dir (`<cache>/apt-bullseye/`): the machine's apt config is never touched.

Debian's cloud bzImages carry the kernel as an LZ4 (6.1) or zstd (6.12) payload; booting the
ELF vmlinux inside it (PVH entry) saves the slow in-guest decompression under TCG.
"""

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from .util import HarnessError, log, run

# Series -> regex over package names; group 1 is the kernel release (uname -r).
SERIES = {
    # bullseye-security serves only the signed image of the newest 5.10 (the -unsigned one 404s).
    "5.10": re.compile(r"^linux-image-(5\.10\.0-\d+-cloud-amd64)$"),
    "6.1": re.compile(r"^linux-image-(6\.1\.0-\d+-cloud-amd64)-unsigned$"),
    "6.12": re.compile(r"^linux-image-(6\.12\.\d+\+deb12-cloud-amd64)-unsigned$"),
}
# Series served by suites the machine's apt sources do not list: suite names of the harness's
# own sources list.
OWN_SUITES = {"5.10": ("bullseye", "bullseye-security")}
_SOURCE_FILES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]


def debian_mirror() -> tuple[str, str]:
    """(archive URL, security URL) of the Debian mirror the machine's own sources use."""
    urls = []
    for f in _SOURCE_FILES:
        if f.suffix not in (".list", ".sources") and f.name != "sources.list":
            continue
        try:
            text = f.read_text()
        except OSError:
            continue
        urls += re.findall(r"(?:^URIs:|^deb(?:\s+\[[^\]]*\])?)\s+(https?://\S+)", text, re.MULTILINE)
    main = next((u for u in urls if u.rstrip("/").endswith("/debian")), "http://deb.debian.org/debian")
    security = next(
        (u for u in urls if u.rstrip("/").endswith("/debian-security")),
        main.rstrip("/").removesuffix("/debian") + "/debian-security",
    )
    return main.rstrip("/"), security.rstrip("/")


def _apt_options(series: str, cache: Path) -> list[str]:
    """apt options for a series: none for the machine's suites; for OWN_SUITES a sources list,
    lists and package cache under <cache>/apt-<suite>/ (created on first use)."""
    suites = OWN_SUITES.get(series)
    if not suites:
        return []
    root = cache / f"apt-{suites[0]}"
    (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    main, security = debian_mirror()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    lines = [f"deb [signed-by={keyring}] {main} {suites[0]} main"]
    lines += [f"deb [signed-by={keyring}] {security} {s} main" for s in suites[1:]]
    sources = root / "sources.list"
    text = "\n".join(lines) + "\n"
    if not sources.exists() or sources.read_text() != text:
        sources.write_text(text)
    return [
        "-o", f"Dir::Etc::sourcelist={sources}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::lists={root / 'lists'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


@dataclasses.dataclass
class Kernel:
    series: str
    release: str  # uname -r inside the guest
    deb: Path  # cached package
    vmlinux: Path  # ELF image booted through PVH
    btf: Path  # raw .BTF section of vmlinux == the guest's /sys/kernel/btf/vmlinux


def _version_key(name: str):
    return [int(n) for n in re.findall(r"\d+", name)]


def _newest_package(series: str, apt: list[str]) -> str | None:
    names = run(["apt-cache", *apt, "pkgnames", "linux-image-"], capture=True, check=False).splitlines()
    matches = [n for n in names if SERIES[series].match(n)]
    return max(matches, key=_version_key) if matches else None


def _candidate_version(package: str, apt: list[str]) -> str | None:
    out = run(["apt-cache", *apt, "show", "--no-all-versions", package], capture=True, check=False)
    m = re.search(r"^Version: (\S+)$", out, re.MULTILINE)
    return m.group(1) if m else None


def _deb_name(package: str, version: str) -> str:
    # apt-get download writes the epoch colon as %3a.
    return f"{package}_{version.replace(':', '%3a')}_amd64.deb"


def _cached_debs(debs: Path, series: str) -> list[Path]:
    found = [p for p in debs.glob("*.deb") if SERIES[series].match(p.name.split("_")[0])]
    return sorted(found, key=lambda p: _version_key(p.name))


def fetch_deb(series: str, cache: Path, lists_refreshed: list[bool]) -> Path:
    """The newest package of the series, downloaded only if the cache lacks it."""
    debs = cache / "debs"
    try:
        debs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(
            f"cannot create the kernel cache {debs}: {e.strerror}; "
            "point DIFFKEEPER_VM_CACHE (or --cache) at a writable directory"
        ) from e
    apt = _apt_options(series, cache)
    package = _newest_package(series, apt)
    if package is None and (apt or not lists_refreshed[0]):
        where = f"{cache}/apt-{OWN_SUITES[series][0]}" if apt else "the machine's apt lists"
        log(f"{where}: no {series} cloud kernel package listed: running apt-get update")
        run(["apt-get", *apt, "update", "-qq"], check=False)
        if not apt:
            lists_refreshed[0] = True
        package = _newest_package(series, apt)
    version = _candidate_version(package, apt) if package else None
    if package and version:
        target = debs / _deb_name(package, version)
        if target.exists():
            return target
        log(f"downloading {package} {version} into {debs}")
        with tempfile.TemporaryDirectory(dir=debs) as tmp:
            # Sandbox user root: the _apt user cannot write into a root-owned cache dir.
            res = subprocess.run(
                ["apt-get", *apt, "download", "-q", "-o", "APT::Sandbox::User=root", package],
                check=False,
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            got = list(Path(tmp).glob("*.deb"))
            if res.returncode == 0 and got:
                os.replace(got[0], target)
                _prune_older(debs, cache, series, keep=target)
                return target
            log(f"apt-get download {package} failed: {res.stderr.strip()}")
    cached = _cached_debs(debs, series)
    if cached:
        log(f"using cached {cached[-1].name} (newest package not obtainable right now)")
        return cached[-1]
    raise HarnessError(
        f"no Debian linux-image-{series} cloud kernel available: apt-cache found "
        f"{package or 'no package'} and {debs} has no cached .deb; check the apt sources "
        "(bookworm + bookworm-security; bullseye for 5.10, in the cache's apt-bullseye/) and "
        "network access to the Debian mirror"
    )


def _prune_older(debs: Path, cache: Path, series: str, keep: Path) -> None:
    """Drops superseded packages of the series (and their extracted kernels) from the cache."""
    for old in _cached_debs(debs, series):
        if old != keep:
            log(f"removing superseded {old.name} from the cache")
            old.unlink()
            shutil.rmtree(cache / "kernels" / old.stem, ignore_errors=True)


# Compressed payload formats the kernel build can produce, by leading magic.
_DECOMPRESSORS = [
    (b"\x1f\x8b", ["gzip", "-dc"]),
    (b"\xfd7zXZ\x00", ["xz", "-dc"]),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dcq"]),
    (b"\x02\x21\x4c\x18", ["lz4", "-dcq"]),  # legacy LZ4 frame used by the kernel
    (b"\x5d\x00\x00", ["xz", "--format=lzma", "-dc"]),
    (b"BZh", ["bzip2", "-dc"]),
]


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage, located through the boot protocol header
    (payload_offset/payload_length at 0x248/0x24c, relative to the protected-mode code)."""
    if bzimage[0x202:0x206] != b"HdrS":
        raise HarnessError("not a bzImage: boot protocol magic HdrS missing at 0x202")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start : start + payload_length]
    for magic, cmd in _DECOMPRESSORS:
        if payload.startswith(magic):
            break
    else:
        raise HarnessError(f"unknown bzImage payload compression (magic {payload[:6].hex()})")
    if shutil.which(cmd[0]) is None:
        raise HarnessError(f"{cmd[0]} is needed to unpack this kernel: run scripts/setup.sh")
    # Except for gzip, the build appends the uncompressed size (le32), which the tools reject.
    expected_size = None
    if magic != b"\x1f\x8b":
        expected_size = struct.unpack("<I", payload[-4:])[0]
        payload = payload[:-4]
    res = subprocess.run(cmd, check=False, input=payload, capture_output=True)
    elf = res.stdout
    if not elf.startswith(b"\x7fELF") or (expected_size and len(elf) != expected_size):
        raise HarnessError(
            f"{' '.join(cmd)} did not produce the ELF vmlinux (rc={res.returncode}, "
            f"{len(elf)} bytes, expected {expected_size}): {res.stderr.decode(errors='replace')}"
        )
    return elf


def elf_section(elf: bytes, wanted: str) -> bytes:
    """Contents of a named section of a little-endian ELF64 file."""
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def header(i):  # (name, offset, size)
        f = struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
        return f[0], f[4], f[5]

    strtab_off = header(shstrndx)[1]
    for i in range(shnum):
        name_off, off, size = header(i)
        start = strtab_off + name_off
        if elf[start : elf.index(b"\0", start)].decode() == wanted:
            return elf[off : off + size]
    raise HarnessError(f"ELF has no {wanted} section")


def prepare(series: str, cache: Path, lists_refreshed: list[bool]) -> Kernel:
    """Downloaded (if needed) and extracted (if needed) kernel of one series."""
    deb = fetch_deb(series, cache, lists_refreshed)
    release = SERIES[series].match(deb.name.split("_")[0]).group(1)
    out = cache / "kernels" / deb.stem
    kernel = Kernel(series, release, deb, out / "vmlinux", out / f"{release}.btf")
    if kernel.vmlinux.exists() and kernel.btf.exists():
        return kernel
    log(f"extracting {deb.name}")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, f"./boot/vmlinuz-{release}"], stdin=tar.stdout, check=True)
        if tar.wait() != 0:
            raise HarnessError(f"dpkg-deb --fsys-tarfile {deb} failed")
        elf = extract_vmlinux((Path(tmp) / "boot" / f"vmlinuz-{release}").read_bytes())
        staging = Path(tmp) / "out"
        staging.mkdir()
        (staging / "vmlinux").write_bytes(elf)
        (staging / kernel.btf.name).write_bytes(elf_section(elf, ".BTF"))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, out)
    return kernel
