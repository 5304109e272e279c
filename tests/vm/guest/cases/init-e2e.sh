# init-e2e.sh baked|mirror: diffkeeper-init provisions the BTF cache on a kernel whose sysfs BTF
# is hidden (from the baked .btf.tar.xz, or over http from a BTFHub-shaped mirror on loopback),
# then, with sysfs BTF still hidden and --attach auto, two parts (each starts with a
# `== part NAME:` line the host splits at): attach, a sidecar from that cache inspected while it
# runs (bpftool, the kernel's kprobe list, the program types of its fds); scenario, the journal
# scenario (diffkeeper-scenario: exact journal) with a sidecar from that cache.
. /vm/lib.sh
source=$1
cache=/tmp/case/cache
state=/tmp/case/state
mkdir -p "$cache" "$state"

echo "== diffkeeper-init ($source)"
case "$source" in
baked)
    without_sysfs_btf diffkeeper-init --btf-cache-dir "$cache" --baked-btf-dir /vm/btf/baked \
        --disable-btfhub-download --required
    ;;
mirror)
    # Without -f busybox httpd returns once it listens (and daemonizes).
    httpd -p 127.0.0.1:8080 -h /vm/mirror
    httpd_pid=$(pidof httpd)
    without_sysfs_btf diffkeeper-init --btf-cache-dir "$cache" --baked-btf-dir /var/empty \
        --btfhub-mirror http://127.0.0.1:8080 --allow-http --required
    ;;
esac
init_rc=$?
[ -n "${httpd_pid:-}" ] && kill "$httpd_pid"
evidence init_rc "$init_rc"
evidence cache_files "$(ls -A "$cache" | tr '\n' ',')"
[ -f "$cache/$RELEASE.json" ] && evidence init_status "$(tr -d '\n' <"$cache/$RELEASE.json")"
cmp -s "$cache/$RELEASE.btf" /sys/kernel/btf/vmlinux && evidence cache_equals_sysfs_btf yes

echo "== part attach: diffkeeper-sidecar from that cache, sysfs BTF hidden"
without_sysfs_btf diffkeeper-sidecar --state-dir "$state" --btf-cache-dir "$cache" --attach auto \
    --coalesce-ms 0 --journal /tmp/case/journal.jsonl 2>/tmp/case/sidecar.log &
job=$! # the shell running without_sysfs_btf; its exit status is the sidecar's
for _ in $(seq 300); do
    grep -qF "$READY_LINE" /tmp/case/sidecar.log && break
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
done
sidecar=$(pidof diffkeeper-sidecar)
echo "== bpftool prog show (while the sidecar runs)"
bpftool prog show | grep ' name dk_'
evidence bpftool_kprobe_progs "$(bpftool prog show | grep -c '^[0-9]*: kprobe .* name dk_')"
echo "== bpftool link show + the kernel's kprobe list (where they are attached)"
bpftool link show
cat /sys/kernel/debug/kprobes/list
evidence perf_event_links "$(bpftool link show | grep -c ': perf_event ')"
evidence kprobe_attachments "$(grep -c -E ' [kr] +(vfs_write|security_inode_)' /sys/kernel/debug/kprobes/list)"
# The same from the sidecar's own fds: prog_type 2 is BPF_PROG_TYPE_KPROBE.
types=""
for fd in /proc/"$sidecar"/fd/*; do
    [ "$(readlink "$fd")" = "anon_inode:bpf-prog" ] || continue
    types="$types$(sed -n 's/^prog_type:[[:space:]]*//p' "/proc/$sidecar/fdinfo/${fd##*/}"),"
done
evidence sidecar_prog_types "$types"
kill -TERM "$sidecar"
wait "$job"
evidence sidecar_rc "$?"
echo "== sidecar log"
cat /tmp/case/sidecar.log

echo "== part scenario: the journal scenario with --attach auto from that cache, sysfs BTF hidden"
diffkeeper-scenario --sidecar /usr/local/bin/diffkeeper-sidecar --expect-backend kprobe \
    --workdir /tmp/case --ready-timeout 30 --verbose --hide-system-btf -- --attach auto \
    --btf-cache-dir "$cache"
