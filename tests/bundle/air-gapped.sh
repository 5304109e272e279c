#!/usr/bin/env bash
# air-gapped.sh BIN_DIR BUNDLE: the offline path end to end on this machine (root).
# In a private mount and network namespace (no network at all), with /sys/kernel/btf hidden (a
# kernel without BTF), downloads disabled and no baked per-kernel file: diffkeeper-init provisions
# the cache from BUNDLE, then diffkeeper-sidecar loads its eBPF object with that minimised BTF,
# attaches (--attach ATTACH, default tracepoint: this machine has no kprobes) and journals a
# change. Exits non-zero unless every step happened; prints the lines that prove it.
set -euo pipefail
die() { echo "air-gapped: FAIL: $*" >&2; exit 1; }

if [ "${1:-}" = __inside ]; then
  bin_dir=$2 bundle=$3 work=$4 attach=$5
  mount -t tmpfs -o nosuid,nodev,noexec tmpfs /sys/kernel/btf
  [ ! -e /sys/kernel/btf/vmlinux ] || die "system BTF still visible"
  echo "air-gapped: /sys/kernel/btf hidden; network interfaces: $(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
  mkdir -p "$work/baked" "$work/state"
  "$bin_dir/diffkeeper-init" --btf-cache-dir "$work/cache" --baked-btf-dir "$work/baked" \
    --btf-bundle "$bundle" --disable-btfhub-download --required 2>"$work/init.log" \
    || { cat "$work/init.log" >&2; die "diffkeeper-init failed"; }
  sed 's/^/air-gapped: init: /' "$work/init.log"
  release=$(uname -r)
  grep -q '"source": "bundle"' "$work/cache/$release.json" || die "status does not say source bundle"
  echo "air-gapped: status: $(tr -d '\n ' <"$work/cache/$release.json")"
  "$bin_dir/diffkeeper-sidecar" --state-dir "$work/state" --btf-cache-dir "$work/cache" \
    --attach "$attach" --fallback-fsnotify=false --journal "$work/journal.jsonl" 2>"$work/sidecar.log" &
  pid=$!
  for _ in $(seq 300); do
    grep -q "ready: backend=" "$work/sidecar.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/sidecar.log" >&2; die "sidecar exited early"; }
    sleep 0.1
  done
  grep -q "eBPF attached: backend=" "$work/sidecar.log" || { kill "$pid"; cat "$work/sidecar.log" >&2; die "sidecar ready without eBPF"; }
  echo "air-gapped: $(date +%s%N)" >"$work/state/proof.txt"
  sleep 1
  kill -TERM "$pid"; wait "$pid" || true
  grep -E 'BTF|object|attached|ready' "$work/sidecar.log" | sed 's/^/air-gapped: sidecar: /'
  grep -q proof.txt "$work/journal.jsonl" || die "the change was not journaled"
  echo "air-gapped: journal: $(grep proof.txt "$work/journal.jsonl" | head -1)"
  echo "air-gapped: PASS (bundle -> cache -> eBPF attached, no network, no system BTF, no baked file)"
  exit 0
fi

bin_dir=$(cd "${1:?usage: air-gapped.sh BIN_DIR BUNDLE [ATTACH]}" && pwd)
bundle=$(realpath "${2:?usage: air-gapped.sh BIN_DIR BUNDLE [ATTACH]}")
attach=${3:-tracepoint}
work=$(mktemp -d /tmp/diffkeeper-air-gapped.XXXXXX)
trap 'rm -rf "$work"' EXIT
unshare --mount --net --propagation private "$0" __inside "$bin_dir" "$bundle" "$work" "$attach"
