"""Sizes: the static binaries and, when `just image` has built it, the image."""

import re
import subprocess
from pathlib import Path

from .context import Context
from .table import Row, Value


def _workspace_version(repo: Path) -> str:
    text = (repo / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)


def _image_size(repo: Path, tag: str) -> tuple[int | None, str]:
    """Asks the engine scripts/image.sh uses (it starts a private dockerd if none answers)."""
    script = (f'source scripts/image.sh; engine_up >&2; trap engine_down EXIT; '
              f'engine image inspect -f "{{{{.Size}}}}" {tag}')
    try:
        out = subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "the image engine did not answer within 120 s"
    if out.returncode == 0 and out.stdout.strip().isdigit():
        return int(out.stdout.strip()), ""
    said = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("image: ")]
    return None, f"no image {tag} (build it with `just image`){': ' + said[-1] if said else ''}"


def size_rows(ctx: Context, with_image: bool = True) -> list[Row]:
    rows = []
    for binary, limit in ((ctx.bins.init, 3.5e6), (ctx.bins.sidecar, 4e6)):
        size = binary.stat().st_size
        rows.append(Row(f"static binary size: {binary.name}", Value(size, "bytes"),
                        target=f"<= {limit / 1e6:g} MB", check=lambda v, r, limit=limit: v <= limit,
                        note="" if rows else f"from {binary.parent}"))
    tag = f"diffkeeper:{_workspace_version(ctx.repo)}"
    if with_image:
        size, why = _image_size(ctx.repo, tag)
    else:
        size, why = None, "not measured in the smoke run"
    rows.append(Row(f"image size ({tag})", None if size is None else Value(size, "bytes"),
                    target="<= 9 MB", check=lambda v, r: v <= 9e6, note=why, optional=True))
    return rows
