"""Small shared helpers: the harness's error type, logging and subprocess calls."""

import subprocess
import sys
import time

_START = time.monotonic()


class HarnessError(Exception):
    """A setup problem that stops the whole run (not a failing matrix cell)."""


def log(msg: str) -> None:
    print(f"[vm {time.monotonic() - _START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd, capture=False, check=True, **kw) -> str:
    """Runs cmd; with check, a non-zero exit becomes a HarnessError naming the command."""
    res = subprocess.run(cmd, check=False, capture_output=capture, text=True, **kw)
    if check and res.returncode != 0:
        detail = f": {res.stderr.strip()}" if capture and res.stderr else ""
        raise HarnessError(f"`{' '.join(map(str, cmd))}` exited with {res.returncode}{detail}")
    return res.stdout if capture else ""
