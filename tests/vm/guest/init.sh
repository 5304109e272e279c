#!/bin/busybox sh
# Guest /init: mount the kernel filesystems, run every case in /vm/cases.list one after the
# other, report each on the result port (x86_64: the second serial port; arm64: a virtio
# console), which qemu writes to the host's result.log, power off.
#
# Result port protocol (one line each; case output lines are prefixed with "| "):
#   @@BOOT release=<uname -r> sysfs_btf_sha256=<hash|none>
#   @@BEGIN <id>
#   | <output line>...
#   @@END <id> rc=<exit code; 137 = killed by the per-case timeout> secs=<wall seconds>
#   @@DONE
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/sbin:/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpffs /sys/fs/bpf
mkdir -p /run /var/empty
ip link set lo up
result_port=/dev/ttyS1
# Per-architecture set-up, if the initramfs has one (arm64: loads the virtio modules and sets
# result_port to the virtio console /dev/hvc0).
# shellcheck disable=SC1091 # only in the arm64 initramfs
[ -r /vm/arch.sh ] && . /vm/arch.sh
# A virtio console's node can exist before its port opens (ENODEV), most often on a loaded
# host. The port is opened once and kept open (no probing open/close: the last close of a
# virtio console port tells the host it went away), and through `command`, because a failed
# redirection on a plain `exec` ends the shell, and this shell is /init.
for _ in $(seq 200); do
    command exec 3>"$result_port" && break
    sleep 0.05
done
stty -F "$result_port" raw -echo 2>/dev/null

uptime_cs() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }

btf_sha=none
[ -r /sys/kernel/btf/vmlinux ] && btf_sha=$(sha256sum /sys/kernel/btf/vmlinux | cut -d' ' -f1)
echo "@@BOOT release=$(uname -r) sysfs_btf_sha256=$btf_sha" >&3

# Leftovers of a case that was killed by its timeout must not disturb the next one.
cleanup() {
    for pid in $(pidof diffkeeper-sidecar diffkeeper-scenario diffkeeper-init httpd); do
        kill -9 "$pid" 2>/dev/null
    done
    while grep -q ' /sys/kernel/btf ' /proc/mounts; do umount -l /sys/kernel/btf || break; done
    rm -rf /tmp/case
}

while read -r id timeout script args; do
    case "$id" in '' | '#'*) continue ;; esac
    echo "@@BEGIN $id" >&3
    start=$(uptime_cs)
    mkdir -p /tmp/case
    # shellcheck disable=SC2086 # args are whitespace-separated words by construction
    (cd /tmp/case && exec timeout -s KILL "$timeout" sh "/vm/cases/$script" $args) \
        </dev/null >/tmp/case.out 2>&1
    rc=$?
    end=$(uptime_cs)
    cleanup
    sed 's/^/| /' /tmp/case.out >&3
    echo "@@END $id rc=$rc secs=$(((end - start) / 100)).$(((end - start) % 100 / 10))" >&3
done </vm/cases.list

echo "@@DONE" >&3
sync
poweroff -f
