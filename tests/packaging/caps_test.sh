#!/usr/bin/env bash
# Least privilege, proven on this kernel (needs root to hand out exactly the capabilities wanted):
#  1. diffkeeper-sidecar with only CAP_BPF + CAP_PERFMON (what the pod spec grants: uid 0, drop ALL,
#     add BPF and PERFMON) attaches in tracepoint mode, journals a write, serves /healthz.
#  2. With no capability at all it falls back to inotify and logs the capability hint.
#  3. diffkeeper-init as uid 65532 with no capabilities provisions into a cache dir it owns, from a
#     baked archive and from a file:// mirror, with /sys/kernel/btf hidden in a private mount
#     namespace so it really has to; against a cache dir it does not own it fails clearly. As uid 0
#     without capabilities (the node-cache DaemonSet's writer) it provisions into a root-owned 0755
#     directory, as the kubelet creates a hostPath.
#
# usage: tests/packaging/caps_test.sh BIN_DIR
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
source "$(dirname "$0")/lib.sh"
bin_dir="$(cd "${1:?usage: $0 BIN_DIR}" && pwd)"
sidecar="$bin_dir/diffkeeper-sidecar"
init="$bin_dir/diffkeeper-init"
[[ $(id -u) == 0 ]] || { echo "caps_test.sh must run as root (it hands out capabilities)" >&2; exit 1; }
[[ -x $sidecar && -x $init ]] || { echo "missing $sidecar or $init: run just build" >&2; exit 1; }

work="$(mktemp -d /tmp/diffkeeper-caps-test.XXXXXX)"
sidecar_pid=""
cleanup() {
  [[ -z $sidecar_pid ]] || kill -9 "$sidecar_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every capability in this process's bounding set except the ones named: capsh --drop's argument.
caps_except() {
  local keep=",$1," all
  all="$(capsh --print | sed -n 's/^Bounding set =//p')"
  tr ',' '\n' <<<"$all" | while read -r cap; do [[ $keep == *",$cap,"* ]] || printf '%s,' "$cap"; done | sed 's/,$//'
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# alive PID: running (an exited child stays a zombie until waited for, and kill -0 succeeds on it).
alive() { local stat; stat="$(ps -o stat= -p "$1" 2>/dev/null)" && [[ $stat != Z* ]]; }

# wait_for_line FILE NEEDLE SECONDS [PID]: until NEEDLE is in FILE; gives up early if PID exits.
wait_for_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    [[ -z ${4:-} ]] || alive "$4" || return 1
    sleep 0.1
  done
  return 1
}

# run_sidecar NAME KEEP_CAPS: starts the sidecar as uid 0 holding only KEEP_CAPS (comma list, may
# be empty) and waits until it says it is ready. Sets sidecar_pid, state, journal, log, port.
run_sidecar() {
  local name="$1" keep="$2"
  state="$work/$name/state" journal="$work/$name/journal.jsonl" log="$work/$name/stderr.log"
  mkdir -p "$state" "$work/$name/cache"
  port="$(free_port)"
  # capsh drops the other capabilities from the bounding set; exec'd as uid 0 the sidecar then
  # holds exactly that set (no inheritable, no ambient) -- what a container runtime gives the pod.
  capsh --inh= --drop="$(caps_except "$keep")" -- -c 'exec "$@"' capsh "$sidecar" \
    --state-dir "$state" --btf-cache-dir "$work/$name/cache" --journal "$journal" --coalesce-ms 0 \
    --metrics-addr "127.0.0.1:$port" >"$work/$name/stdout" 2>"$log" &
  sidecar_pid=$!
  if wait_for_line "$log" "$READY_LINE" 20 "$sidecar_pid"; then
    pass "$name: sidecar became ready"
  else
    fail "$name: sidecar became ready" "no ready line within 20 s: $(tail -n 15 "$log")"
  fi
}

stop_sidecar() {
  local name="$1" rc
  kill -TERM "$sidecar_pid" 2>/dev/null || true
  set +e
  wait "$sidecar_pid"
  rc=$?
  set -e
  sidecar_pid=""
  expect_eq "$name: SIGTERM -> exit 0" "0" "$rc"
}

# --- 1. only CAP_BPF + CAP_PERFMON
run_sidecar bpf-perfmon cap_bpf,cap_perfmon
expect_eq "bpf-perfmon: the sidecar process holds exactly CAP_BPF+CAP_PERFMON (CapEff)" \
  "000000c000000000" "$(sed -n 's/^CapEff:\t//p' "/proc/$sidecar_pid/status" 2>/dev/null)"
expect_in "bpf-perfmon: attached in tracepoint mode" "${READY_LINE}tracepoint" "$log"
expect_in "bpf-perfmon: system BTF used" "[eBPF] Loaded BTF spec from /sys/kernel/btf/vmlinux" "$log"
health="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)"
expect_eq "bpf-perfmon: /healthz answers 200" "200" "$health"
# One write(2) of 4321 bytes (dd, not head, which writes in 4 KiB pieces).
dd if=/dev/zero of="$state/written-with-two-caps.bin" bs=4321 count=1 status=none
if wait_for_line "$journal" '"bytes":4321' 5; then
  line="$(grep -F '"bytes":4321' "$journal" | head -n 1)"
  expected='"backend":"tracepoint","op":"write","path":"'"$state"'/written-with-two-caps.bin","pid":'
  if [[ $line == *"$expected"* && $line == *'"comm":"dd"'* ]]; then
    pass "bpf-perfmon: a 4321-byte write is journaled by the tracepoint backend with path, pid, comm"
  else
    fail "bpf-perfmon: a 4321-byte write is journaled by the tracepoint backend with path, pid, comm" "journal: $(cat "$journal")"
  fi
else
  fail "bpf-perfmon: a 4321-byte write is journaled by the tracepoint backend with path, pid, comm" "no such line in $journal: $(cat "$journal")"
fi
stop_sidecar bpf-perfmon

# --- 2. no capability at all
run_sidecar no-caps ""
expect_eq "no-caps: the sidecar process holds no capability (CapEff)" \
  "0000000000000000" "$(sed -n 's/^CapEff:\t//p' "/proc/$sidecar_pid/status" 2>/dev/null)"
expect_in "no-caps: falls back to inotify" "${READY_LINE}inotify" "$log"
tp_line="$(grep -F '[eBPF] tracepoint:' "$log" | head -n 1)"
if [[ $tp_line == *EPERM* && $tp_line == *"CAP_BPF and CAP_PERFMON"* ]]; then
  pass "no-caps: the tracepoint failure names EPERM and the CAP_BPF and CAP_PERFMON hint"
else
  fail "no-caps: the tracepoint failure names EPERM and the CAP_BPF and CAP_PERFMON hint" "$(tail -n 15 "$log")"
fi
head -c 100 /dev/zero >"$state/written-without-caps.bin"
if wait_for_line "$journal" "written-without-caps.bin" 5; then
  pass "no-caps: the inotify fallback journals the write"
else
  fail "no-caps: the inotify fallback journals the write" "nothing in $journal: $(cat "$journal")"
fi
stop_sidecar no-caps

# --- 3. diffkeeper-init without capabilities, system BTF hidden: as uid 65532 (the pods), and as
#        uid 0 into a root-owned 0755 directory (the node-cache DaemonSet's writer on its hostPath)
release="$(uname -r)"
mkdir -p "$work/baked" "$work/mirror" "$work/host/etc" "$work/no-baked"
pack_btf_archive "$SYSTEM_BTF" "$work/baked" "$release.btf"
pack_btf_archive "$SYSTEM_BTF" "$work/mirror/debian/12/x86_64" "$release.btf"
printf 'ID=debian\nVERSION_ID="12"\n' >"$work/host/etc/os-release"
chmod -R a+rX "$work"
for name in cache-baked cache-mirror; do install -d -o 65532 -g 65532 "$work/$name"; done
for name in cache-node cache-root-owned; do install -d -o 0 -g 0 -m 0755 "$work/$name"; done

# run_init_without_caps UID LOG ARGS...: in a private mount namespace with /sys/kernel/btf empty,
# as UID (same gid, no supplementary groups) with empty capability sets, bounding set included.
run_init_without_caps() {
  local uid="$1" log="$2"
  shift 2
  # shellcheck disable=SC2016 # the inner scripts expand their own arguments
  unshare --mount --propagation private -- bash -c '
    mount -t tmpfs -o ro,size=4k diffkeeper-no-btf /sys/kernel/btf
    uid="$1"
    shift
    exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all --bounding-set=-all \
      --no-new-privs -- bash -c "sed -n \"s/^CapEff:\t/CapEff /p\" /proc/self/status >&2; exec \"\$@\"" init "$@"
  ' init "$uid" "$init" "$@" >"$log" 2>&1
}

# Each case: SOURCE UID CACHE_DIR_NAME.
for case in "baked 65532 cache-baked" "mirror 65532 cache-mirror" "node-writer 0 cache-node"; do
  read -r source uid cache_name <<<"$case"
  cache="$work/$cache_name"
  if [[ $source == mirror ]]; then
    args=(--baked-btf-dir "$work/no-baked" --btfhub-mirror "file://$work/mirror" --host-root "$work/host")
  else
    args=(--baked-btf-dir "$work/baked" --disable-btfhub-download)
  fi
  label="init ($source, uid $uid)"
  if run_init_without_caps "$uid" "$work/init-$source.log" --btf-cache-dir "$cache" --required "${args[@]}"; then
    pass "$label without capabilities provisions (exit 0)"
  else
    fail "$label without capabilities provisions (exit 0)" "$(tail -n 15 "$work/init-$source.log")"
  fi
  expect_in "$label: ran with CapEff 0" "CapEff 0000000000000000" "$work/init-$source.log"
  expect_not_in "$label: the system BTF was hidden" "system BTF /sys/kernel/btf/vmlinux is present" "$work/init-$source.log"
  same_file "$label: cached BTF byte-identical to the kernel's" "$SYSTEM_BTF" "$cache/$release.btf"
  expect_eq "$label: cache file owned by $uid" "$uid" "$(stat -c %u "$cache/$release.btf" 2>/dev/null)"
done
expect_eq "init (baked): status source" "baked" "$(json_field "$work/cache-baked/$release.json" source)"
expect_eq "init (mirror): status source" "download" "$(json_field "$work/cache-mirror/$release.json" source)"
expect_eq "init (mirror): status origin is the file:// URL" \
  "file://$work/mirror/debian/12/x86_64/$release.btf.tar.xz" "$(json_field "$work/cache-mirror/$release.json" origin)"

set +e
run_init_without_caps 65532 "$work/init-denied.log" --btf-cache-dir "$work/cache-root-owned" --required \
  --baked-btf-dir "$work/baked" --disable-btfhub-download
rc=$?
set -e
expect_eq "init as 65532 on a cache dir it cannot write, --required: exit 1" "1" "$rc"
expect_in "init on an unwritable cache: the error names the cache dir" "$work/cache-root-owned" "$work/init-denied.log"
expect_in "init on an unwritable cache: the error names the errno" "Permission denied" "$work/init-denied.log"
if [[ -z $(ls -A "$work/cache-root-owned") ]]; then pass "init on an unwritable cache: nothing written"; else
  fail "init on an unwritable cache: nothing written" "$(ls -A "$work/cache-root-owned")"; fi
