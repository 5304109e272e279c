# kretprobe.sh VARIANT OBJECT: kprobe mode while 40 writers (well above the kernel's default
# maxactive, max(10, 2 x CPUs)) are blocked inside write(2) on a full FIFO in the watched
# directory; then one regular write there. VARIANT:
#   default  the sidecar's kretprobes (tracefs, maxactive 4096): the write must be journaled and
#            the kernel must report no missed return;
#   small    --kretprobe-maxactive 4: the write's return is missed, and counted and logged;
#   pmu      tracefs hidden from the sidecar: it falls back to the kprobe PMU (the kernel's
#            default maxactive), says so, and the write is lost;
#   mount    tracefs (and debugfs) unmounted in the sidecar's mount namespace: it mounts tracefs
#            itself, says so, and then as default.
# OBJECT: --ebpf-object. Prints evidence; the writers are killed on every path (and each ends
# itself after 30 s should this script be killed first).
. /vm/lib.sh
variant=$1 object=$2
writers=40
state=/tmp/case/state
cache=/tmp/case/btf-cache
log=/tmp/case/sidecar.log
journal=/tmp/case/journal.jsonl
metrics=http://127.0.0.1:9911/metrics
mkdir -p "$state" "$cache"
case $(uname -m) in aarch64) write_nr=64 ;; *) write_nr=1 ;; esac

pids=""
sidecar=""
release_writers() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    pids=""
}
trap 'release_writers; [ -n "$sidecar" ] && kill -9 "$sidecar" 2>/dev/null' EXIT

set -- diffkeeper-sidecar --state-dir "$state" --btf-cache-dir "$cache" --attach kprobe \
    --ebpf-object "$object" --fallback-fsnotify=false --coalesce-ms 0 --journal "$journal" \
    --metrics-addr 127.0.0.1:9911
case "$variant" in
small) set -- "$@" --kretprobe-maxactive 4 ;;
pmu)
    # A tracefs mount point holding something, but no kprobe_events; nothing at the second place.
    mkdir -p /tmp/case/no-tracefs && touch /tmp/case/no-tracefs/README
    hide='mount --bind /tmp/case/no-tracefs /sys/kernel/tracing &&
        mount --bind /var/empty /sys/kernel/debug && exec "$@"'
    set -- unshare -m --propagation private sh -c "$hide" hide "$@"
    ;;
mount)
    unmount='umount /sys/kernel/tracing && umount -l /sys/kernel/debug && exec "$@"'
    set -- unshare -m --propagation private sh -c "$unmount" unmount "$@"
    ;;
esac
# Unreclaimable slab before and after the start: the kretprobe instances' kernel memory (compare
# the default and small variants).
sunreclaim() { sed -n 's/^SUnreclaim: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
before=$(sunreclaim)
"$@" 2>"$log" &
sidecar=$!
for _ in $(seq 300); do
    grep -qF "$READY_LINE" "$log" && break
    kill -0 "$sidecar" 2>/dev/null || break
    sleep 0.1
done
evidence sunreclaim_kb_delta "$(($(sunreclaim) - before))"
metric() { wget -qO- "$metrics" | sed -n "s/^$1 //p"; }
evidence maxactive_gauge "$(metric diffkeeper_kretprobe_maxactive)"
evidence tracefs_kretprobes "$(grep -c ':diffkeeper/' /sys/kernel/tracing/kprobe_events)"

# Each writer holds the FIFO open read-write (so its open does not wait for a reader) and writes
# zeros until the pipe is full: from then on every one of them sleeps inside vfs_write.
mkfifo "$state/fifo"
for _ in $(seq $writers); do
    timeout -s KILL 30 dd if=/dev/zero bs=4096 2>/dev/null 1<>"$state/fifo" &
    pids="$pids $!"
done
blocked=0
for _ in $(seq 100); do
    blocked=0
    for p in $pids; do
        read -r nr _ <"/proc/$p/syscall" 2>/dev/null && [ "$nr" = "$write_nr" ] && blocked=$((blocked + 1))
    done
    [ "$blocked" -ge "$writers" ] && break
    sleep 0.1
done
evidence blocked_writers "$blocked"

printf 'hello' >"$state/probe.txt"
journaled=no
for _ in $(seq 30); do
    # Reported by the kretprobe itself, not by the repair that follows a "kretprobe missed" gap.
    grep '"op":"write","path":"'"$state"'/probe.txt"' "$journal" | grep -qv '"repair":true' &&
        journaled=yes && break
    sleep 0.1
done
evidence probe_journaled "$journaled"
sleep 0.5 # the reader refreshes the kernel's counts every 250 ms
evidence kretprobe_missed "$(metric diffkeeper_kretprobe_missed_total)"
missed_gap=no
grep -q '"op":"gap",.*"reason":"kretprobe missed"' "$journal" && missed_gap=yes
evidence missed_gap "$missed_gap"
echo "== kprobe_profile (our events: name hits nmissed)"
grep ' dk_' /sys/kernel/tracing/kprobe_profile

release_writers
kill -TERM "$sidecar"
wait "$sidecar"
evidence sidecar_rc "$?"
sidecar=""
evidence events_left "$(grep -c ':diffkeeper/' /sys/kernel/tracing/kprobe_events)"
echo "== sidecar log"
cat "$log"
echo "== journal"
cat "$journal"
