# broken-writer.sh: auto with the broken cached BTF (sysfs BTF hidden) while an app writes
# through the whole start-up: the modes that fail the canary must leave no line in the journal,
# the inotify fallback's lines follow.
. /vm/lib.sh
cache=/tmp/case/btf-cache state=/tmp/case/state log=/tmp/case/sidecar.log
journal=/tmp/case/journal.jsonl part=broken-writer
mkdir -p "$cache" "$state"
cp "/vm/btf/broken/$RELEASE.btf" "$cache/$RELEASE.btf"
(
    i=0
    while [ ! -e /tmp/case/stop-writer ]; do
        echo "app data" >"$state/w-$i"
        i=$((i + 1))
        sleep 0.02
    done
) &
writer=$!
# without_sysfs_btf's steps, exec'd all the way down: $sidecar is the sidecar's own pid.
# shellcheck disable=SC2016 # the inner sh expands its own arguments
unshare -m --propagation private sh -c 'mount --bind /var/empty /sys/kernel/btf && exec "$@"' \
    without_sysfs_btf diffkeeper-sidecar --state-dir "$state" --attach auto \
    --btf-cache-dir "$cache" --coalesce-ms 0 --journal "$journal" 2>"$log" &
sidecar=$!
ready=0
for _ in $(seq 600); do
    grep -qF "$READY_LINE" "$log" && { ready=1; break; }
    kill -0 "$sidecar" 2>/dev/null || break
    sleep 0.1
done
# The fallback journals what the writer makes from now on.
sleep 1
touch /tmp/case/stop-writer
wait "$writer"
echo "after ready" >"$state/after-ready"
sleep 1
[ "$ready" = 1 ] || echo "the sidecar never said ready"
stop_sidecar "$log" "$journal"
evidence journal_lines "$(wc -l <"$journal")"
# Lines of a failed mode: another backend's, or a gap of a reason only eBPF gives. A gap the
# journal writes itself (`unreported change`: a file the writer made between the start-up scan
# and inotify's watch, then its repair lines) is the fallback's own honest account.
evidence foreign_lines "$(grep -v '"backend":"inotify"' "$journal" |
    grep -Evc '"op":"gap",.*"reason":"(unreported change|inotify queue overflow|inotify watch limit)"')"
evidence after_ready_journaled "$(grep -c "\"op\":\"write\",\"path\":\"$state/after-ready\"" "$journal")"
