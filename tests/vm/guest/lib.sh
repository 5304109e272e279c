# Sourced by the case scripts.
# shellcheck disable=SC2034 # used by the case scripts
RELEASE=$(uname -r)
# The sidecar's readiness line up to the backend's name (cli/src/ready.rs, READY_PREFIX).
READY_LINE="diffkeeper-sidecar ready: backend="
export RUST_BACKTRACE=1

# Lines the host harness collects as evidence: "@evidence KEY=VALUE".
evidence() { echo "@evidence $1=$2"; }

# without_sysfs_btf CMD...: CMD in a private mount namespace where /sys/kernel/btf is an empty
# directory, i.e. a kernel without system BTF as far as CMD can tell.
without_sysfs_btf() {
    unshare -m --propagation private \
        sh -c 'mount --bind /var/empty /sys/kernel/btf && exec "$@"' without_sysfs_btf "$@"
}

# load_disk_pack DIR: unpacks the host's disk pack (/vm/btf/disk/<release>.btf, a tar: the
# kernel's loop and btrfs modules, modules.order, btrfs.img.gz, ext4.img.gz; see
# tests/vm/harness/btrfs.py) into DIR and loads the modules an earlier case did not.
load_disk_pack() {
    tar -xf "/vm/btf/disk/$RELEASE.btf" -C "$1" || return 1
    for ko in $(cat "$1/modules.order"); do
        name=${ko#*-}
        name=${name%.ko}
        [ -d "/sys/module/$name" ] && continue
        insmod "$1/modules/$ko" || { echo "insmod $ko failed"; return 1; }
    done
}

# start_sidecar LOG JOURNAL ROOT...: diffkeeper-sidecar --attach $mode (system BTF, cache dir
# $cache) watching ROOT... in the background ($sidecar), waited for until ready.
start_sidecar() {
    log=$1 journal=$2
    shift 2
    roots=""
    for r in "$@"; do roots="$roots --state-dir $r"; done
    # shellcheck disable=SC2086 # roots: words by construction (no spaces in these paths)
    diffkeeper-sidecar $roots --attach "$mode" --btf-cache-dir "$cache" --coalesce-ms 0 \
        --journal "$journal" 2>"$log" &
    sidecar=$!
    for _ in $(seq 300); do
        grep -qF "$READY_LINE" "$log" && return 0
        kill -0 "$sidecar" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_sidecar LOG JOURNAL: SIGTERM, evidence sidecar_rc_$part, then the log and the journal.
stop_sidecar() {
    kill -TERM "$sidecar"
    wait "$sidecar"
    evidence "sidecar_rc_$part" "$?"
    echo "== sidecar log"
    cat "$1"
    echo "== journal"
    cat "$2"
}
