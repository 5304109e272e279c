#!/usr/bin/env bash
# diffkeeper demo (`just demo`): diffkeeper-init provisions the BTF cache, diffkeeper-sidecar
# attaches with it and journals the changes made in a demo directory.
#
# Usage: scripts/demo.sh BIN_DIR      (BIN_DIR holds diffkeeper-init and diffkeeper-sidecar; root)
#
# On a node whose kernel exposes /sys/kernel/btf/vmlinux, init has nothing to do. To show the
# interesting case, the demo then emulates a node without system BTF (a private mount namespace
# with an empty /sys/kernel/btf) whose image has the kernel's BTF baked in: init copies it into
# the cache and the sidecar loads it from there. Nothing is downloaded.
set -euo pipefail

# The sidecar's readiness line up to the backend's name (cli/src/ready.rs, READY_PREFIX).
ready_line="diffkeeper-sidecar ready: backend="

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

# Runs the sidecar on $work/demo, makes some changes, stops it, prints the journal.
# Arguments: a label, then extra sidecar flags.
watch_changes() {
  local label=$1; shift
  local demo=$work/demo-$label journal=$work/journal-$label.jsonl log=$work/sidecar-$label.log
  mkdir -p "$demo"
  "$sidecar" --state-dir "$demo" --journal "$journal" "$@" 2>"$log" &
  sidecar_pid=$!
  for _ in $(seq 300); do
    grep -qF "$ready_line" "$log" && break
    kill -0 "$sidecar_pid" 2>/dev/null || { cat "$log" >&2; die "the sidecar exited early"; }
    sleep 0.1
  done
  grep -qF "$ready_line" "$log" || { cat "$log" >&2; die "the sidecar never got ready"; }
  grep -E '\[eBPF\] Loaded BTF spec|eBPF attached|unavailable|'"$ready_line" "$log" | sed 's/^/  sidecar log: /'

  say "$label: changes in $demo (and one outside it, which must not show up)"
  (
    set -x
    mkdir -p "$demo/app/data"
    sleep 0.3   # inotify can only watch a directory once it exists
    echo 'listen: 8080' > "$demo/app/config.yaml"
    for i in 1 2 3; do echo "line $i" >> "$demo/app/app.log"; done
    dd if=/dev/zero of="$demo/app/data/blob.bin" bs=4096 count=4 status=none
    mv "$demo/app/config.yaml" "$demo/app/config.yaml.old"
    rm "$demo/app/config.yaml.old"
    echo 'not watched' > "$work/outside.txt"
  )
  sleep 0.5
  kill -TERM "$sidecar_pid"
  wait "$sidecar_pid" || die "the sidecar exited with $? after SIGTERM"
  sidecar_pid=
  grep -E 'received SIGTERM|stopped' "$log" | sed 's/^/  sidecar log: /'
  say "$label: the journal (JSON lines; writes within 50 ms coalesced, with a count)"
  cat "$journal"
}

cleanup() {
  if [ -n "${sidecar_pid:-}" ]; then kill -TERM "$sidecar_pid" 2>/dev/null || true; fi
  if [ -n "${work:-}" ] && [ "${DIFFKEEPER_DEMO_INSIDE:-}" != 1 ]; then rm -rf "$work"; fi
}

# Second half, in a private mount namespace (the script re-runs itself there).
if [ "${1:-}" = __inside ]; then
  bin_dir=$2 work=$3 release=$4
  init=$bin_dir/diffkeeper-init sidecar=$bin_dir/diffkeeper-sidecar
  trap cleanup EXIT
  mount -t tmpfs -o nosuid,nodev,noexec tmpfs /sys/kernel/btf
  say "node without system BTF (emulated): ls /sys/kernel/btf -> '$(ls -A /sys/kernel/btf)'"
  say "diffkeeper-init: the image bakes $release.btf.tar.xz; provision the cache from it"
  "$init" --btf-cache-dir "$work/cache" --baked-btf-dir "$work/baked" --disable-btfhub-download
  ls -l "$work/cache"
  say "diffkeeper-sidecar with the cached BTF"
  watch_changes ebpf --btf-cache-dir "$work/cache"
  say "the same changes seen by the inotify backend (--enable-ebpf=false): no pid/comm/bytes"
  watch_changes inotify --enable-ebpf=false
  exit 0
fi

bin_dir=$(cd "${1:?usage: scripts/demo.sh BIN_DIR}" && pwd)
init=$bin_dir/diffkeeper-init sidecar=$bin_dir/diffkeeper-sidecar
for bin in "$init" "$sidecar"; do [ -x "$bin" ] || die "$bin is missing: run 'just build' first"; done
[ "$(id -u)" = 0 ] || die "run as root: eBPF and the mount namespace need it"
release=$(uname -r)
work=$(mktemp -d /tmp/diffkeeper-demo.XXXXXX)
trap cleanup EXIT

say "diffkeeper-init on this node (kernel $release)"
"$init" --btf-cache-dir "$work/cache" --disable-btfhub-download

if [ -r /sys/kernel/btf/vmlinux ]; then
  mkdir -p "$work/baked"
  cp /sys/kernel/btf/vmlinux "$work/$release.btf"
  tar -C "$work" -cJf "$work/baked/$release.btf.tar.xz" "$release.btf"
  rm "$work/$release.btf"
  DIFFKEEPER_DEMO_INSIDE=1 unshare --mount --propagation private -- "$0" __inside "$bin_dir" "$work" "$release"
else
  # A node without system BTF for real: init fetches it (BTFHub) unless it is baked or cached.
  "$init" --btf-cache-dir "$work/cache"
  watch_changes ebpf --btf-cache-dir "$work/cache"
fi
