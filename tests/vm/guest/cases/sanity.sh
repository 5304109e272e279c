# The guest is what the matrix assumes: kprobe PMU present, the host's copy of the kernel BTF
# (used for `just min-btf` and the baked/mirror tarballs) is byte-identical to sysfs BTF, and
# hiding sysfs BTF works.
. /vm/lib.sh
. /vm/kernel.env
set -e
sysfs_sha=$(sha256sum /sys/kernel/btf/vmlinux | cut -d' ' -f1)
evidence host_btf_matches_sysfs "$([ "$sysfs_sha" = "$HOST_BTF_SHA256" ] && echo yes || echo no)"
evidence kprobe_pmu "$(cat /sys/bus/event_source/devices/kprobe/type)"
evidence hidden_btf_entries "$(without_sysfs_btf ls -A /sys/kernel/btf | wc -l)"
bpftool version | head -1
[ "$sysfs_sha" = "$HOST_BTF_SHA256" ]
