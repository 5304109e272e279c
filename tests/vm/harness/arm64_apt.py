"""apt for the arm64 architecture in the harness's own directories (<cache>/arm64/apt: sources
list, lists, archives, an empty dpkg status), so that the machine's apt configuration and dpkg
architectures stay untouched. Used for the arm64 kernel, the guest userland and the arm64
libraries verifier-stats links against."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .util import HarnessError, log, run

def _host_debian_sources() -> list[tuple[str, str]]:
    """(URI, suite) pairs of the machine's Debian bookworm sources, so the arm64 lists come from
    the same mirror host; deb.debian.org if none are found."""
    pairs: list[tuple[str, str]] = []
    etc = Path("/etc/apt")
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                pairs.append((words[1], words[2]))
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        if not f.is_file():
            continue
        for stanza in re.split(r"\n\s*\n", f.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                pairs += [(u, s) for u in fields.get("uris", []) for s in fields.get("suites", [])]
    debian = [
        (u.rstrip("/"), s)
        for u, s in pairs
        if re.search(r"/debian(-security)?$", u.rstrip("/")) and s.startswith("bookworm")
    ]
    return debian or [
        ("http://deb.debian.org/debian", "bookworm"),
        ("http://deb.debian.org/debian", "bookworm-updates"),
        ("http://deb.debian.org/debian-security", "bookworm-security"),
    ]


class Apt:
    """apt-get/apt-cache for the arm64 architecture with state under <cache>/arm64/apt."""

    KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

    def __init__(self, cache: Path) -> None:
        self.root = cache / "arm64" / "apt"
        self.debs = cache / "arm64" / "debs"
        try:
            for d in (self.root / "lists" / "partial", self.root / "archives" / "partial", self.debs):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HarnessError(
                f"cannot create the arm64 package cache under {cache}: {e.strerror}; "
                "point DIFFKEEPER_VM_CACHE (or --cache) at a writable directory"
            ) from e
        sources = "".join(
            f"deb [arch=arm64 signed-by={self.KEYRING}] {uri} {suite} main\n"
            for uri, suite in _host_debian_sources()
        )
        self.sources = self.root / "sources.list"
        if not self.sources.exists() or self.sources.read_text() != sources:
            self.sources.write_text(sources)
            shutil.rmtree(self.root / "lists", ignore_errors=True)
            (self.root / "lists" / "partial").mkdir(parents=True)
        (self.root / "status").touch()  # no packages installed for this "machine"
        self.updated = False

    def options(self) -> list[str]:
        r = self.root
        return [
            "-o", "APT::Architecture=arm64",
            "-o", "APT::Architectures::=arm64",
            "-o", f"Dir::Etc::sourcelist={self.sources}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::lists={r / 'lists'}",
            "-o", f"Dir::State::status={r / 'status'}",
            "-o", f"Dir::Cache={r}",
            "-o", f"Dir::Cache::archives={r / 'archives'}",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def update(self) -> None:
        if self.updated:
            return
        log(f"apt-get update for arm64 ({self.sources})")
        res = subprocess.run(
            ["apt-get", "-q", *self.options(), "update"], capture_output=True, text=True, check=False
        )
        self.updated = True
        if res.returncode != 0 or "\nE: " in "\n" + res.stderr:
            raise HarnessError(
                f"apt-get update for arm64 with {self.sources} failed (rc={res.returncode}): "
                f"{res.stderr.strip()[-800:]}"
            )

    def _lists_empty(self) -> bool:
        return not any((self.root / "lists").glob("*_Packages*"))

    def newest(self, pattern: re.Pattern) -> str | None:
        if self._lists_empty():
            self.update()
        names = run(["apt-cache", *self.options(), "pkgnames", "linux-image-"], capture=True)
        matches = [n for n in names.splitlines() if pattern.match(n)]
        if not matches and not self.updated:
            self.update()
            return self.newest(pattern)
        return max(matches, key=_version_key) if matches else None

    def version(self, package: str) -> str | None:
        out = run(
            ["apt-cache", *self.options(), "show", "--no-all-versions", f"{package}:arm64"],
            capture=True,
            check=False,
        )
        m = re.search(r"^Version: (\S+)$", out, re.MULTILINE)
        return m.group(1) if m else None

    def download(self, package: str) -> Path:
        """<cache>/arm64/debs/<package>_<version>_arm64.deb, downloaded only if missing; older
        versions of the package are removed. Raises naming the package and apt's message."""
        if self._lists_empty():
            self.update()
        version = self.version(package)
        if version is None and not self.updated:
            self.update()
            version = self.version(package)
        if version is None:
            cached = sorted(self.debs.glob(f"{package}_*_arm64.deb"), key=lambda p: _version_key(p.name))
            if cached:
                log(f"arm64 package {package} not in the apt lists: using cached {cached[-1].name}")
                return cached[-1]
            raise HarnessError(
                f"arm64 package {package} is not in the apt lists from {self.sources} "
                "(and not cached): check the Debian mirror and network access"
            )
        target = self.debs / f"{package}_{version.replace(':', '%3a')}_arm64.deb"
        if target.exists():
            return target
        log(f"downloading arm64 {package} {version} into {self.debs}")
        for attempt in (1, 2):
            with tempfile.TemporaryDirectory(dir=self.debs) as tmp:
                res = subprocess.run(
                    ["apt-get", "-q", *self.options(), "download", f"{package}:arm64={version}"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                got = list(Path(tmp).glob("*.deb"))
                if res.returncode == 0 and len(got) == 1:
                    os.replace(got[0], target)
                    for old in self.debs.glob(f"{package}_*_arm64.deb"):
                        if old != target:
                            old.unlink()
                    return target
            if attempt == 1 and not self.updated:
                self.update()  # stale lists: the version may be gone from the mirror
                continue
            break
        raise HarnessError(
            f"apt-get download {package}:arm64={version} failed (rc={res.returncode}): "
            f"{res.stderr.strip()[-600:]}"
        )


def _version_key(name: str):
    return [int(n) for n in re.findall(r"\d+", name)]


def _unpack(deb: Path, dest: Path) -> None:
    res = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise HarnessError(f"dpkg-deb -x {deb} failed: {res.stderr.strip()}")
