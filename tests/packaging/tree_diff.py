#!/usr/bin/env python3
"""tree_diff.py WANT GOT: every difference between two directory trees, one line each (type,
permission bits, owner, content, symlink target, which paths are hard links of each other);
exit 0 when equal, 1 when not, 2 on bad usage. Used by recorder_e2e_test.sh."""

import os
import stat
import sys


def entries(top):
    """{relative path: (kind, mode, uid, gid, content or link target, inode)} of everything below top."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                kind, data = "symlink", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, data = "dir", None
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    kind, data = "file", f.read()
            else:
                kind, data = "special", None
            found[os.path.relpath(path, top)] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data, st.st_ino)
    return found


def link_groups(found):
    """Sets of paths that are one inode (files with several names only)."""
    by_inode = {}
    for rel, (kind, *_rest, ino) in found.items():
        if kind == "file":
            by_inode.setdefault(ino, set()).add(rel)
    return sorted(sorted(g) for g in by_inode.values() if len(g) > 1)


def differences(want, got):
    out = []
    for rel in sorted(set(want) | set(got)):
        if rel not in got:
            out.append(f"{rel}: missing")
            continue
        if rel not in want:
            out.append(f"{rel}: not in {sys.argv[1]}")
            continue
        (wk, wm, wu, wg, wd, _), (gk, gm, gu, gg, gd, _) = want[rel], got[rel]
        if wk != gk:
            out.append(f"{rel}: a {wk}, got a {gk}")
            continue
        if wk != "symlink" and wm != gm:
            out.append(f"{rel}: mode {wm:o}, got {gm:o}")
        if (wu, wg) != (gu, gg):
            out.append(f"{rel}: owner {wu}:{wg}, got {gu}:{gg}")
        if wd != gd:
            what = "link target" if wk == "symlink" else "content"
            size = f" ({len(wd)} vs {len(gd)} bytes)" if wk == "file" else f" ({wd!r} vs {gd!r})"
            out.append(f"{rel}: {what} differs{size}")
    if link_groups(want) != link_groups(got):
        out.append(f"hard links: {link_groups(want)}, got {link_groups(got)}")
    return out


def main():
    if len(sys.argv) != 3 or not all(os.path.isdir(d) for d in sys.argv[1:]):
        sys.exit("usage: tree_diff.py WANT_DIR GOT_DIR (two existing directories)")
    want, got = entries(sys.argv[1]), entries(sys.argv[2])
    diffs = differences(want, got)
    for line in diffs:
        print(line)
    print(f"{len(want)} entries in {sys.argv[1]}, {len(got)} in {sys.argv[2]}, {len(diffs)} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
