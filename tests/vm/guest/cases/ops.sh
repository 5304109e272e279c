# ops.sh MODE EXPECT [OBJECT]: the operations scenario (diffkeeper-scenario --ops) with the system
# BTF and --attach MODE, in a tmpfs with 64 inodes (so that a create ends in ENOSPC after its
# security hook ran): truncations (ftruncate, O_TRUNC opens, creat, truncate) are writes of 0
# bytes; operations that fail after their hook (ENOTEMPTY, EPERM, ENOSPC) leave no line; new names from link/linkat/symlink/symlinkat (relative to a dirfd and to the cwd,
# O_TMPFILE + linkat) are journaled as create by every mode, absolute and `..` names by
# kprobe/fentry only; names made outside the state dir and writes to unnamed files never appear.
. /vm/lib.sh
mode=$1 expect=$2 object=${3:-auto}
mkdir -p /tmp/case/small /tmp/case/btf-cache
mount -t tmpfs -o nr_inodes=64 tmpfs /tmp/case/small
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend "$expect" --ops \
    --workdir /tmp/case/small --ready-timeout 35 --verbose -- --attach "$mode" --ebpf-object "$object" \
    --btf-cache-dir /tmp/case/btf-cache
rc=$?
umount /tmp/case/small
exit $rc
