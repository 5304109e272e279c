#!/usr/bin/env bash
# The sidecar in the image, run the way k8s/base/deployment.yaml runs it: uid 0 with every
# capability dropped but BPF and PERFMON, read-only root, no privilege escalation, its own PID
# namespace, /tmp an empty writable mount, the state dir shared with the "app" (the host here).
# Docker 20.10 refuses --cap-add BPF, so podman runs it.
#
# Seccomp: Kubernetes' RuntimeDefault is the runtime's profile. Current containerd allows bpf(2)
# with CAP_BPF and perf_event_open(2) with CAP_PERFMON; older profiles (Debian 12's podman 4.3
# among them) allow both only with CAP_SYS_ADMIN. Both are run:
#   - containerd-style: podman's profile plus those two rules -> must attach in tracepoint mode;
#   - podman's stock profile -> EPERM with the capability hint, inotify fallback (the README's
#     troubleshooting row for old runtimes).
#
# usage: tests/packaging/pod_sidecar_test.sh BIN_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin_dir="$(cd "${1:?usage: pod_sidecar_test.sh BIN_DIR}" && pwd)"
source "$here/lib.sh"
source "$repo/scripts/image.sh"

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

DIFFKEEPER_IMAGE_ENGINE=podman engine_up
image_build "$bin_dir" "" "$tag" 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }

python3 - "$stock_profile" "$work/containerd-style.json" <<'EOF'
import json, sys
profile = json.load(open(sys.argv[1]))
# podman's profile denies both explicitly (EPERM) without CAP_SYS_ADMIN; containerd's has no such rule.
for rule in profile["syscalls"]:
    if rule["action"] == "SCMP_ACT_ERRNO" and "CAP_SYS_ADMIN" in rule.get("excludes", {}).get("caps", []):
        rule["names"] = [n for n in rule["names"] if n not in ("bpf", "perf_event_open")]
profile["syscalls"] = [r for r in profile["syscalls"] if r["names"]]
for syscall, cap in (("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")):
    profile["syscalls"].append({"names": [syscall], "action": "SCMP_ACT_ALLOW", "args": [], "includes": {"caps": [cap]}})
json.dump(profile, open(sys.argv[2], "w"))
EOF

# run_pod_sidecar NAME SECCOMP_PROFILE: starts the container detached; sets container, state.
run_pod_sidecar() {
  local name="$1" profile="$2"
  state="$work/$name/state"
  mkdir -p "$state"
  container="diffkeeper-pod-$name-$$"
  podman run -d --name "$container" --network none --user 0 --read-only --cap-drop ALL \
    --cap-add BPF --cap-add PERFMON --security-opt no-new-privileges --security-opt "seccomp=$profile" \
    --tmpfs /tmp:size=4m -v "$state:/state" --entrypoint /usr/local/bin/diffkeeper-sidecar "$tag" \
    --state-dir /state --coalesce-ms 0 >/dev/null
  local i
  for ((i = 0; i < 200; i++)); do
    podman logs "$container" 2>&1 | grep -q "diffkeeper-sidecar ready: backend=" && break
    [[ $(podman inspect -f '{{.State.Running}}' "$container") == true ]] || break
    sleep 0.1
  done
}

# stop_pod_sidecar NAME: SIGTERM, collect logs (stderr) and journal (stdout).
stop_pod_sidecar() {
  local name="$1"
  podman stop -t 5 "$container" >/dev/null
  podman logs "$container" >"$work/$name/journal" 2>"$work/$name/log"
  expect_eq "$name: exit code after SIGTERM" "0" "$(podman inspect -f '{{.State.ExitCode}}' "$container")"
  podman rm "$container" >/dev/null
  container=""
}

run_pod_sidecar containerd-seccomp "$work/containerd-style.json"
dd if=/dev/zero of="$state/app-write.bin" bs=777 count=1 status=none
sleep 1
stop_pod_sidecar containerd-seccomp
expect_in "pod spec + containerd-style RuntimeDefault: attaches in tracepoint mode" \
  "diffkeeper-sidecar ready: backend=tracepoint" "$work/containerd-seccomp/log"
expect_in "pod spec: the app's write is journaled" \
  '"op":"write","path":"/state/app-write.bin"' "$work/containerd-seccomp/journal"
expect_in "pod spec: journal line carries the byte count" '"bytes":777' "$work/containerd-seccomp/journal"

run_pod_sidecar old-runtime-seccomp "$stock_profile"
stop_pod_sidecar old-runtime-seccomp
expect_in "old runtime profile: EPERM with the capability hint" \
  "permission denied (EPERM) (grant CAP_BPF and CAP_PERFMON" "$work/old-runtime-seccomp/log"
expect_in "old runtime profile: falls back to inotify" \
  "diffkeeper-sidecar ready: backend=inotify" "$work/old-runtime-seccomp/log"
