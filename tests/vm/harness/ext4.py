"""VM rows for "only completed operations" on a disk-backed file system: kprobe (and fentry where
the kernel attaches it) on the loop-mounted ext4 image of the disk pack (btrfs.py), on every
guest kernel. The guest's /tmp is a tmpfs, whose dentries are never dropped, so two operations
that run a security hook and then do not happen are only reachable here (guest script:
tests/vm/guest/cases/ext4.sh):

* open(O_CREAT) of an existing file whose dentry is not cached: lookup_open() runs
  may_o_create() -> security_inode_create() before the file system finds the file, and nothing
  is created (FMODE_CREATED stays clear);
* unlink of a file on a shut-down ext4 (EXT4_IOC_SHUTDOWN, still mounted read-write):
  vfs_unlink() runs security_inode_unlink(), then ext4_unlink() returns EIO.

The guest counts the hook calls with tracefs kprobe events, so a row fails (instead of passing
for nothing) if the hook did not run; a create, write and delete of another file between them
must be journaled, and the journal must be exactly those three lines.
"""

from __future__ import annotations

from .btrfs import disk_cases, expected_backend, journal_fields, journal_problem
from .case import Case, Verdict, _finished, _verdict, evidence, ready_backend
from .qemu import CaseOutput

ROOT = "/mnt/dk-ext4/w"  # the watched directory (ext4.sh)


def expected_lines(backend: str) -> list[dict]:
    """The journal of ext4.sh: g created, written (1 byte) and deleted; nothing of f or h."""
    g = f"{ROOT}/g"
    return [
        {"backend": backend, "op": "create", "path": g},
        {"backend": backend, "op": "write", "path": g, "bytes": 1},
        {"backend": backend, "op": "delete", "path": g},
    ]


def _check(mode: str):
    def check(out: CaseOutput, release: str) -> Verdict:
        if (v := _finished(out)) is not None:
            return v
        want = expected_backend(mode, release)
        ev = evidence(out)
        seen = ready_backend(out.output)
        got = journal_fields(out.output)
        hooks = f"create hook {ev.get('cold_open_create_hooks', '-')}, unlink hook {ev.get('unlink_hooks', '-')}"
        setup = f"setup: {ev.get('setup')}" if ev.get("setup") != "ok" else ""
        return _verdict(
            seen,
            f"{len(got)}/{len(expected_lines(want))}; {hooks}; dentries {ev.get('dentry_state_before')} -> "
            f"{ev.get('dentry_state_after')}",
            [
                setup,
                f"backend {seen or 'none'} instead of {want}" if seen != want else "",
                f"open(O_CREAT) of the existing f failed (rc {ev.get('cold_open_rc')})"
                if ev.get("cold_open_rc") != "0"
                else "",
                # Without the hook call the open was a plain one (dentry still cached): no proof.
                f"security_inode_create ran {ev.get('cold_open_create_hooks')} times for the open of f "
                "after drop_caches, not once"
                if ev.get("cold_open_create_hooks") != "1"
                else "",
                f"EXT4_IOC_SHUTDOWN failed (rc {ev.get('shutdown_rc')})" if ev.get("shutdown_rc") != "0" else "",
                "the unlink of h on the shut-down ext4 succeeded" if ev.get("unlink_rc") == "0" else "",
                f"security_inode_unlink ran {ev.get('unlink_hooks')} times for the unlink of h, not once"
                if ev.get("unlink_hooks") != "1"
                else "",
                journal_problem("journal", got, expected_lines(want)),
            ],
            [setup, "" if seen else "the sidecar never reported ready"],
        )

    return check


def cases() -> list[Case]:
    return disk_cases(
        "ext4",
        "ext4: open(O_CREAT) of an existing uncached file, unlink failing after its hook (system BTF)",
        ", only g journaled",
        _check,
        timeout=60,
    )
