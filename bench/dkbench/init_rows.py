"""diffkeeper-init against the obvious shell commands, on a real BTF (this kernel's
/sys/kernel/btf/vmlinux packed as .btf.tar.xz), with the system BTF hidden so init has work."""

import contextlib
import filecmp
import functools
import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from . import stats, system
from .context import Context
from .procs import BenchError
from .table import Row, Value


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _mirror(root: Path):
    """A plain-HTTP loopback mirror (init with --allow-http; curl alike)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _timed(argv: list[str], what: str) -> float:
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise BenchError(f"{what} exited with {out.returncode}: {out.stderr.strip()[-800:]}")
    return elapsed * 1000


def _fresh(d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def init_rows(ctx: Context) -> list[Row]:
    release = os.uname().release
    work = system.mount_tmpfs(ctx.ws / "init")
    try:
        src = work / "src" / f"{release}.btf"
        src.parent.mkdir()
        shutil.copyfile(system.SYSTEM_BTF_DIR / "vmlinux", src)
        baked = work / "baked"
        baked.mkdir()
        archive = baked / f"{release}.btf.tar.xz"
        subprocess.run(["tar", "-cJf", str(archive), "-C", str(src.parent), src.name], check=True)
        mirror = work / "mirror"
        remote = mirror / "debian" / "12" / "x86_64" / archive.name
        remote.parent.mkdir(parents=True)
        shutil.copyfile(archive, remote)
        host = work / "host"
        (host / "etc").mkdir(parents=True)
        (host / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
        no_baked = _fresh(work / "no-baked")
        cache, out = work / "cache", work / "out"

        def check(result: Path):
            if not filecmp.cmp(result, src, shallow=False):
                raise BenchError(f"{result} differs from the source BTF {src}")

        def init(*extra):
            def run():
                _fresh(cache)
                ms = _timed([str(ctx.bins.init), "--btf-cache-dir", str(cache), "--host-root", str(host),
                             "--kernel-release", release, "--arch", "x86_64", *extra], "diffkeeper-init")
                check(cache / f"{release}.btf")
                return ms
            return run

        def shell(cmd: str, what: str, result: str = ""):
            def run():
                _fresh(out)
                ms = _timed(["sh", "-c", cmd], what)
                if not result:
                    check(out / src.name)
                elif not (out / result).stat().st_size > src.stat().st_size:
                    raise BenchError(f"{what} wrote less than the BTF's size")
                return ms
            return run

        with system.hidden_system_btf(ctx.empty_dir), _mirror(mirror) as url:
            url_file = f"{url}/debian/12/x86_64/{archive.name}"
            s_baked = stats.interleaved(ctx.sizes.init_reps, {
                "init": init("--baked-btf-dir", str(baked), "--disable-btfhub-download"),
                "tar": shell(f"tar -xJf {archive} -C {out}", "tar -xJf"),
                # Decoding alone, written to a file by the decoding process (init's shape:
                # one thread decodes and writes in turn, while tar -J runs xz beside itself).
                "xz": shell(f"xz -dc {archive} > {out}/decoded.tar", "xz -dc > file", result="decoded.tar"),
            })
            s_dl = stats.interleaved(ctx.sizes.init_reps, {
                "init": init("--baked-btf-dir", str(no_baked), "--btfhub-mirror", url, "--allow-http"),
                "curl": shell(f"set -e; curl -sf {url_file} | tar -xJ -C {out}", "curl | tar -xJ"),
            })
        size = f"BTF {src.stat().st_size / 1e6:.1f} MB, archive {archive.stat().st_size / 1e6:.2f} MB"
        return [
            Row("init: baked .btf.tar.xz -> cache", Value(stats.median(s_baked["init"]), "ms"),
                Value(stats.median(s_baked["tar"]), "ms"), "tar -xJf",
                stats.paired_ratio(s_baked["init"], s_baked["tar"]), "<= 1.05x",
                check=lambda v, r: r <= 1.05,
                note=f"{size}; xz -dc of the same archive to a file alone: {stats.median(s_baked['xz']):.0f} ms"),
            Row("init: loopback HTTP download + extract -> cache", Value(stats.median(s_dl["init"]), "ms"),
                Value(stats.median(s_dl["curl"]), "ms"), "curl -s URL | tar -xJ",
                stats.paired_ratio(s_dl["init"], s_dl["curl"]), "<= 1.1x",
                check=lambda v, r: r <= 1.1),
        ]
    finally:
        system.umount(work)
