"""A minimal writer for the initramfs format (cpio "newc"): everything owned by root, no
dependency on the host's file owners or on the cpio tool. The kernel unpacks segments that
are simply concatenated, so the harness writes one shared segment and one per kernel."""

import stat
from pathlib import Path


class CpioWriter:
    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        header = b"070701" + "".join(f"{v:08X}" for v in fields).encode()
        self._ino += 1
        for part in (header + name.encode() + b"\0", data):
            self._chunks.append(part + b"\0" * (-len(part) % 4))

    def dir(self, name: str) -> None:
        """A directory and its missing parents (name relative to /, no leading slash)."""
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in self._dirs:
                self._dirs.add(sub)
                self._entry(sub, stat.S_IFDIR | 0o755)

    def _parent(self, name: str) -> None:
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])

    def data(self, name: str, content: bytes, mode: int = 0o644) -> None:
        self._parent(name)
        self._entry(name, stat.S_IFREG | mode, content)

    def file(self, name: str, source: Path, mode: int | None = None) -> None:
        """A copy of a host file (symlinks followed); keeps its exec bits unless mode is given."""
        if mode is None:
            mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
        self.data(name, source.read_bytes(), mode)

    def symlink(self, name: str, target: str) -> None:
        self._parent(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        blob = b"".join(self._chunks)
        return blob + b"\0" * (-len(blob) % 512)
