#!/usr/bin/env bash
# The image run the way k8s/base/deployment.yaml runs it, container by container (podman; docker
# 20.10 refuses --cap-add BPF):
#   diffkeeper-init:    uid 65532, no capabilities, read-only root, the cache an emptyDir-like
#                       directory (root-owned, 0777), the host's os-release at /host/etc/os-release;
#   diffkeeper-sidecar: uid 0 with every capability dropped but BPF and PERFMON, read-only root,
#                       no privilege escalation, its own PID namespace, /tmp a small writable
#                       mount, the cache and the state dir (shared with the "app", the host here)
#                       read-only.
#
# Cases: (1) a node whose kernel has no BTF (/sys/kernel/btf hidden): init provisions from a
# file:// BTFHub mirror, the sidecar loads the cached BTF and attaches; (2) a node with system
# BTF; (3) an old runtime's seccomp profile.
#
# Seccomp: Kubernetes' RuntimeDefault is the runtime's profile. Current containerd allows bpf(2)
# with CAP_BPF and perf_event_open(2) with CAP_PERFMON; older profiles (Debian 12's podman 4.3
# among them) allow both only with CAP_SYS_ADMIN. Cases 1 and 2 use podman's profile changed the
# way containerd's reads (must attach in tracepoint mode); case 3 uses podman's stock profile
# (EPERM with the capability hint, inotify fallback: a row of docs/troubleshooting.md).
#
# usage: tests/packaging/pod_sidecar_test.sh BIN_DIR
set -euo pipefail
# shellcheck source=tests/packaging/lib.sh
source "$(dirname "$0")/lib.sh"
bin_dir="$(cd "${1:?usage: $0 BIN_DIR}" && pwd)"

stock_profile=/usr/share/containers/seccomp.json
[[ -f $stock_profile ]] || { echo "podman's $stock_profile is missing (apt-get install podman)" >&2; exit 1; }
work="$(mktemp -d /tmp/diffkeeper-pod-test.XXXXXX)"
tag="localhost/diffkeeper:podtest-$$"
container=""
cleanup() {
  [[ -z $container ]] || podman rm -f "$container" >/dev/null 2>&1 || true
  podman image rm -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DIFFKEEPER_IMAGE_ENGINE=podman engine_up
image_build "$bin_dir" "" "$tag" 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }

"$(dirname "$0")/seccomp_containerd_style.py" "$stock_profile" "$work/containerd-style.json"

# podman_run NAME ARGS...: a detached container named after this run; sets container.
podman_run() {
  container="diffkeeper-pod-$1-$$"
  shift
  podman run -d --name "$container" --network none --read-only --security-opt no-new-privileges \
    "$@" >/dev/null
}

# finish NAME: waits for the container to exit (SIGTERM first if still running), keeps its stdout
# in $work/NAME/stdout and stderr in $work/NAME/log, echoes its exit code.
finish() {
  local name="$1" code
  mkdir -p "$work/$name"
  [[ $(podman inspect -f '{{.State.Running}}' "$container") != true ]] || podman stop -t 5 "$container" >/dev/null
  podman logs "$container" >"$work/$name/stdout" 2>"$work/$name/log"
  code="$(podman inspect -f '{{.State.ExitCode}}' "$container")"
  podman rm "$container" >/dev/null
  container=""
  echo "$code"
}

# sidecar NAME SECCOMP_PROFILE EXTRA_PODMAN_ARGS...: runs the sidecar as the pod does until it
# says it is ready (or exits), then has the "app" write 777 bytes and stops it.
sidecar() {
  local name="$1" profile="$2" i
  shift 2
  state="$work/$name/state"
  mkdir -p "$state"
  podman_run "$name" --user 0 --cap-drop ALL --cap-add BPF --cap-add PERFMON \
    --security-opt "seccomp=$profile" --tmpfs /tmp:size=4m -v "$state:/state:ro" "$@" \
    --entrypoint /usr/local/bin/diffkeeper-sidecar "$tag" \
    --state-dir /state --btf-cache-dir /var/cache/diffkeeper/btf --coalesce-ms 0
  for ((i = 0; i < 200; i++)); do
    podman logs "$container" 2>&1 | grep -qF "$READY_LINE" && break
    [[ $(podman inspect -f '{{.State.Running}}' "$container") == true ]] || break
    sleep 0.1
  done
  dd if=/dev/zero of="$state/app-write.bin" bs=777 count=1 status=none
  sleep 1
  expect_eq "$name: sidecar exit code after SIGTERM" "0" "$(finish "$name")"
}

# --- 1. kernel without BTF: init provisions into the shared cache, the sidecar uses it
release="$(uname -r)"
mkdir -p "$work/no-btf" "$work/host/etc"
install -d -m 0777 "$work/cache"   # what an emptyDir looks like
pack_btf_archive "$SYSTEM_BTF" "$work/mirror/debian/12/x86_64" "$release.btf"
printf 'ID=debian\nVERSION_ID="12"\n' >"$work/host/etc/os-release"
podman_run init --user 65532:65532 --cap-drop ALL -v "$work/no-btf:/sys/kernel/btf:ro" \
  -v "$work/cache:/var/cache/diffkeeper/btf" -v "$work/host/etc/os-release:/host/etc/os-release:ro" \
  -v "$work/mirror:/mirror:ro" "$tag" \
  --btf-cache-dir=/var/cache/diffkeeper/btf --host-root=/host --btfhub-mirror=file:///mirror --required
podman wait "$container" >/dev/null
expect_eq "no system BTF: init container exits 0" "0" "$(finish init)"
same_file "no system BTF: init provisioned the kernel's BTF into the shared cache" "$SYSTEM_BTF" "$work/cache/$release.btf"

sidecar cached-btf "$work/containerd-style.json" -v "$work/no-btf:/sys/kernel/btf:ro" \
  -v "$work/cache:/var/cache/diffkeeper/btf:ro"
expect_in "no system BTF: the sidecar loads the BTF init cached" \
  "[eBPF] Loaded BTF spec from /var/cache/diffkeeper/btf/$release.btf" "$work/cached-btf/log"
expect_in "no system BTF: attaches in tracepoint mode" "${READY_LINE}tracepoint" "$work/cached-btf/log"
expect_in "no system BTF: the app's write is journaled" \
  '"op":"write","path":"/state/app-write.bin"' "$work/cached-btf/stdout"
expect_in "no system BTF: the journal line carries the byte count" '"bytes":777' "$work/cached-btf/stdout"

# --- 2. system BTF, containerd-style RuntimeDefault
mkdir -p "$work/empty-cache"
sidecar system-btf "$work/containerd-style.json" -v "$work/empty-cache:/var/cache/diffkeeper/btf:ro"
expect_in "system BTF: attaches in tracepoint mode" "${READY_LINE}tracepoint" "$work/system-btf/log"
expect_in "system BTF: the journal line carries the byte count" '"bytes":777' "$work/system-btf/stdout"

# --- 3. an old runtime's RuntimeDefault: bpf(2) needs CAP_SYS_ADMIN there
sidecar old-runtime "$stock_profile" -v "$work/empty-cache:/var/cache/diffkeeper/btf:ro"
expect_in "old runtime seccomp: EPERM with the capability hint" \
  "permission denied (EPERM) (grant CAP_BPF and CAP_PERFMON" "$work/old-runtime/log"
expect_in "old runtime seccomp: falls back to inotify" "${READY_LINE}inotify" "$work/old-runtime/log"
expect_in "old runtime seccomp: inotify journals the app's write" \
  '"backend":"inotify","op":"write","path":"/state/app-write.bin"' "$work/old-runtime/stdout"
