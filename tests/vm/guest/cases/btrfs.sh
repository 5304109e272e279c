# btrfs.sh MODE EXPECT: state dirs on a loop-mounted btrfs image (made on the host, see
# tests/vm/harness/btrfs.py for its layout) with --attach MODE and the system BTF; EXPECT: the
# backend the eBPF parts must end on. Parts (each starts with a `== part NAME:` line the host
# splits at): top and sub, the journal scenario in a directory of the top-level subvolume and in
# one inside subvolume `sub`; both, one sidecar watching a directory in each; sibling, a sidecar
# watching subvolume `sub` itself while a file is made in another subvolume's top (nest/subv, the
# same device and inode number); nest, a root with a subvolume below it, which must fall back to
# inotify and say why.
. /vm/lib.sh
mode=$1 expect=$2
mnt=/mnt/dk-btrfs
img=/tmp/dk-btrfs.img
cache=/tmp/case/btf-cache
unpacked=/tmp/case/btrfs
# A case killed by its timeout leaves the mount behind (outside /tmp/case on purpose: init's
# `rm -rf /tmp/case` must never walk into it).
umount -d "$mnt" 2>/dev/null
mkdir -p "$mnt" "$cache" "$unpacked"

setup() {
    load_disk_pack "$unpacked" || return 1
    grep -qw btrfs /proc/filesystems || { echo "no btrfs in /proc/filesystems"; return 1; }
    zcat "$unpacked/btrfs.img.gz" >"$img" || return 1
    mount -t btrfs -o loop "$img" "$mnt" || { echo "mount -o loop failed"; return 1; }
    grep " $mnt " /proc/mounts
}
if setup; then evidence setup ok; else
    evidence setup failed
    exit 1
fi

for part in top sub; do
    dir=$mnt/top
    [ "$part" = sub ] && dir=$mnt/sub/inner
    echo "== part $part: the journal scenario in $dir"
    diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" \
        --workdir "$dir" --ready-timeout 30 --verbose -- --attach "$mode" --btf-cache-dir "$cache"
    evidence "scenario_rc_$part" "$?"
done

part=both
a=$mnt/top/both b=$mnt/sub/inner/both
echo "== part both: one sidecar watching $a and $b"
evidence stat_devs "$(stat -c %d "$a"),$(stat -c %d "$b")"
evidence inodes "$(stat -c %i "$a"),$(stat -c %i "$b")"
if start_sidecar /tmp/case/both.log "$mnt/both.jsonl" "$a" "$b"; then
    for r in "$a" "$b"; do
        printf hello >"$r/new.txt"
        mv "$r/new.txt" "$r/moved.txt"
        printf abc >>"$r/moved.txt"
        rm "$r/moved.txt"
    done
    sleep 1
fi
stop_sidecar /tmp/case/both.log "$mnt/both.jsonl"

part=sibling
echo "== part sibling: a sidecar watching subvolume $mnt/sub; $mnt/nest/subv, a subvolume top with the same (device, inode), is not watched"
evidence sibling_inodes "$(stat -c %i "$mnt/sub"),$(stat -c %i "$mnt/nest/subv")"
if start_sidecar /tmp/case/sibling.log "$mnt/sibling.jsonl" "$mnt/sub"; then
    echo outside >"$mnt/nest/subv/outside.txt"
    echo inside >"$mnt/sub/inside.txt"
    sleep 1
fi
stop_sidecar /tmp/case/sibling.log "$mnt/sibling.jsonl"

part=nest
echo "== part nest: a sidecar watching $mnt/nest, which has subvolume nest/subv below it"
if start_sidecar /tmp/case/nest.log "$mnt/nest.jsonl" "$mnt/nest"; then
    printf x >"$mnt/nest/after-fallback.txt"
    sleep 1
fi
stop_sidecar /tmp/case/nest.log "$mnt/nest.jsonl"

umount -d "$mnt"
rm -f "$img"
