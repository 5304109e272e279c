# ext4.sh MODE: only completed operations are journaled, on a disk-backed file system
# (the loop-mounted ext4 image of the host's disk pack, see tests/vm/harness/btrfs.py) with
# --attach MODE and the system BTF (the host checks the backend and the journal). One sidecar
# watches $mnt/w, which holds f and h from before it started, while this script
#   1. drops the dentry cache and opens f with O_CREAT|O_WRONLY without writing: lookup_open()
#      runs may_o_create() -> security_inode_create() before it finds f on disk, no file is
#      created (tmpfs keeps every dentry, so only a disk file system gets here);
#   2. creates, writes and deletes g (real operations: the journal is not empty by accident);
#   3. shuts the file system down (EXT4_IOC_SHUTDOWN; it stays mounted read-write) and unlinks
#      h: vfs_unlink() runs security_inode_unlink(), then ext4_unlink() fails with EIO.
# The hook calls of steps 1 and 3 are counted by tracefs kprobe events on this shell and its
# children (@evidence *_hooks), so the check cannot pass without the hook having run.
. /vm/lib.sh
mode=$1
mnt=/mnt/dk-ext4
img=/tmp/dk-ext4.img
cache=/tmp/case/btf-cache
unpacked=/tmp/case/disk
dir=$mnt/w
t=/sys/kernel/tracing
# A case killed by its timeout leaves the mount behind (outside /tmp/case, see btrfs.sh).
umount -d "$mnt" 2>/dev/null
mkdir -p "$mnt" "$cache" "$unpacked"

setup() {
    load_disk_pack "$unpacked" || return 1
    zcat "$unpacked/ext4.img.gz" >"$img" || return 1
    mount -t ext4 -o loop "$img" "$mnt" || { echo "mount -t ext4 -o loop failed"; return 1; }
    grep " $mnt " /proc/mounts
    mkdir -p "$dir" && printf f >"$dir/f" && printf h >"$dir/h" && sync
}
if setup; then evidence setup ok; else
    evidence setup failed
    exit 1
fi

# tracefs kprobe events count the hook calls of this shell and its children; hooks EVENT: the
# calls of dkvm/EVENT recorded so far.
hooks() { grep -c " $1:" "$t/trace"; }
events_off() {
    echo 0 >"$t/events/dkvm/enable"
    echo >"$t/set_event_pid"
    echo 0 >"$t/options/event-fork"
    echo '-:dkvm/inode_create' >>"$t/kprobe_events"
    echo '-:dkvm/inode_unlink' >>"$t/kprobe_events"
}
events_on() {
    echo 'p:dkvm/inode_create security_inode_create' >>"$t/kprobe_events"
    echo 'p:dkvm/inode_unlink security_inode_unlink' >>"$t/kprobe_events"
    echo 1 >"$t/options/event-fork"
    echo $$ >"$t/set_event_pid" # the sidecar, started before, is not traced
    echo >"$t/trace"
    echo 1 >"$t/events/dkvm/enable"
}
events_off 2>/dev/null # left behind by a case killed by its timeout

part=ops
echo "== part ops: a sidecar watching $dir"
if start_sidecar /tmp/case/ops.log /tmp/case/ops.jsonl "$dir"; then
    events_on
    evidence dentry_state_before "$(cut -f1,2 /proc/sys/fs/dentry-state | tr '\t' ,)"
    echo 2 >/proc/sys/vm/drop_caches
    evidence dentry_state_after "$(cut -f1,2 /proc/sys/fs/dentry-state | tr '\t' ,)"
    before=$(hooks inode_create)
    : >>"$dir/f" # open(O_WRONLY|O_CREAT|O_APPEND), nothing written
    evidence cold_open_rc "$?"
    evidence cold_open_create_hooks "$(($(hooks inode_create) - before))"
    printf g >"$dir/g"
    rm "$dir/g"
    [ -e "$dir/h" ] # its dentry cached again: the unlink's lookup must not need the disk
    diffkeeper-scenario --shutdown-fs "$mnt"
    evidence shutdown_rc "$?"
    before=$(hooks inode_unlink)
    rm "$dir/h"
    evidence unlink_rc "$?"
    evidence unlink_hooks "$(($(hooks inode_unlink) - before))"
    sleep 1
fi
echo "== trace"
cat "$t/trace"
events_off
stop_sidecar /tmp/case/ops.log /tmp/case/ops.jsonl
umount -d "$mnt"
rm -f "$img"
