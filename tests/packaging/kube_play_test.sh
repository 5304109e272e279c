#!/usr/bin/env bash
# The Kubernetes manifests run by an engine that reads them: the kustomize overlays rendered
# (kustomize_build.py) and played with `podman kube play` (Debian 12's podman 4.3 reads Pod and
# Deployment YAML, initContainers, emptyDir, hostPath, capabilities, users, read-only roots).
#
# Cases:
#   classic-sidecar, podman's stock seccomp profile: bpf(2) is refused, the sidecar falls back to
#     inotify (what an old runtime's RuntimeDefault does);
#   classic-sidecar, a Localhost profile that allows bpf/perf_event_open with CAP_BPF/CAP_PERFMON
#     as containerd's default does: the sidecar attaches in tracepoint mode (this kernel);
#   node-cache: the DaemonSet fills the node's hostPath cache, then the app pod's sidecar uses it.
# Each pod runs on an emulated node without kernel BTF, so diffkeeper-init must fetch the BTF
# from a file:// BTFHub mirror into the cache and the sidecar must load it from there.
#
# Proven from what podman ran: diffkeeper-init exits 0 and the cache holds the kernel's BTF; the sidecar says it is ready
# and /healthz answers 200 on the probe's port, with only the capabilities of the manifest; the
# app's own writes (its command from the manifest) reach the journal (`podman logs`); SIGTERM
# ends the sidecar with exit code 0 and `podman kube down` leaves nothing behind.
#
# What the YAML is changed in, and why: kube_play_adapt.py (local images, fsGroup, no-BTF node).
# The app's image busybox:1.36 and the DaemonSet's registry.k8s.io/pause cannot be pulled here:
# both become one local FROM-scratch image with Debian's static busybox (sh, date, sleep) and
# catatonit as its entrypoint (`catatonit -P` is a pause process, as podman's own infra uses).
#
# What podman 4.3 lacks, covered another way:
# - native sidecars (an init container with restartPolicy: Always): podman would wait for it to
#   exit, so k8s/base is not played; the classic-sidecar overlay runs the same containers, and
#   manifests_test.py validates the native form against the Kubernetes 1.29/1.37 schemas.
# - probes: startupProbe and readinessProbe are ignored, the livenessProbe becomes a healthcheck
#   that needs systemd timers (absent here). The test asks the probe's path and port itself,
#   from inside the pod's network namespace, as the kubelet would.
# - fsGroup: not implemented (see kube_play_adapt.py); ":U" mounts stand in for it.
# - DaemonSet: not a kind podman 4.3 reads; its pod template is played as a Pod (the pod the
#   DaemonSet would run on this node).
#
# usage: tests/packaging/kube_play_test.sh BIN_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/packaging/lib.sh
source "$here/lib.sh"
bin_dir="$(cd "${1:?usage: $0 BIN_DIR}" && pwd)"

stock_profile=/usr/share/containers/seccomp.json
[[ -f $stock_profile ]] || { echo "podman's $stock_profile is missing (apt-get install podman)" >&2; exit 1; }
command -v catatonit >/dev/null || { echo "catatonit is missing: podman's pod pause process (apt-get install catatonit)" >&2; exit 1; }
work="$(mktemp -d /tmp/diffkeeper-kube-play.XXXXXX)"
tag="localhost/diffkeeper:kubeplay-$$"
app_tag="localhost/diffkeeper-test-app:kubeplay-$$"
release="$(uname -r)"
played=()
cleanup() {
  local file
  for file in "${played[@]}"; do podman kube down "$file" >/dev/null 2>&1 || true; done
  podman image rm -f "$tag" "$app_tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sets CONTAINERS_CONF to a containers.conf with default_ulimits this session may set (no
# CAP_SYS_RESOURCE here); kube play's containers get the same ulimits.
DIFFKEEPER_IMAGE_ENGINE=podman engine_up
image_build "$bin_dir" "" "$tag" 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
mkdir -p "$work/app/bin"
cp /bin/busybox "$(command -v catatonit)" "$work/app/bin/"
for applet in sh date sleep; do ln -s busybox "$work/app/bin/$applet"; done
printf 'FROM scratch\nCOPY bin/ /bin/\nENV PATH=/bin\nENTRYPOINT ["/bin/catatonit", "-P"]\n' >"$work/app/Containerfile"
podman build --quiet -t "$app_tag" "$work/app" >/dev/null

# The emulated node: no /sys/kernel/btf, a BTFHub-shaped file:// mirror with this kernel's BTF
# under the distro and version of this machine's /etc/os-release (what init reads through its
# hostPath mount) and BTFHub's name of the architecture.
mkdir -p "$work/no-btf" "$work/seccomp" "$work/node-cache"
node_dir="$(. /etc/os-release && echo "$ID/$VERSION_ID")/$(uname -m | sed 's/^aarch64$/arm64/')"
pack_btf_archive "$SYSTEM_BTF" "$work/mirror/$node_dir" "$release.btf"
"$here/seccomp_containerd_style.py" "$stock_profile" "$work/seccomp/containerd-style.json"

# adapt KUSTOMIZATION_DIR OUT ARGS...: the kustomization rendered and made playable here.
adapt() {
  local source="$1" out="$2" rendered
  shift 2
  rendered="$work/$(basename "$source").rendered.yaml"
  [[ -f $rendered ]] || python3 "$here/kustomize_build.py" "$source" >"$rendered"
  python3 "$here/kube_play_adapt.py" "$rendered" "$out" --image "$tag" --app-image "$app_tag" \
    --no-btf-dir "$work/no-btf" --mirror-dir "$work/mirror" "$@"
}

# play FILE: `podman kube play`, retried when podman 4.3 loses its race with a finished init
# container ("failed to remove once init container ... as it is running").
play() {
  local file="$1" attempt
  played+=("$file")
  for attempt in 1 2 3 4 5; do
    if podman kube play --seccomp-profile-root "$work/seccomp" "$file" >"$file.play" 2>&1; then return 0; fi
    grep -q 'failed to remove once init container' "$file.play" || { cat "$file.play" >&2; return 1; }
    echo "kube play: podman's init container race (attempt $attempt), playing $file again" >&2
    podman kube down "$file" >/dev/null 2>&1 || true
  done
  cat "$file.play" >&2
  return 1
}

# wait_for_log CONTAINER NEEDLE SECONDS: until NEEDLE is in the container's logs (stdout+stderr).
wait_for_log() {
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    podman logs "$1" 2>&1 | grep -qF -- "$2" && return 0
    sleep 0.2
  done
  return 1
}

# mount_source CONTAINER DESTINATION: the host directory behind a container's mount.
mount_source() {
  podman inspect "$1" --format "{{range .Mounts}}{{if eq .Destination \"$2\"}}{{.Source}}{{end}}{{end}}"
}

# check_init NAME POD: diffkeeper-init exited 0 (it stays: see kube_play_adapt.py).
check_init() {
  local name="$1" init="$2-diffkeeper-init"
  expect_eq "$name: diffkeeper-init exited 0" "0 exited" \
    "$(podman inspect "$init" --format '{{.State.ExitCode}} {{.State.Status}}' 2>&1)"
  podman logs "$init" >"$work/$name.init.log" 2>&1 || true
  expect_in "$name: diffkeeper-init cached the mirror's BTF" "cached BTF /var/cache/diffkeeper/btf/$release.btf (" \
    "$work/$name.init.log"
  grep -F "cached BTF" "$work/$name.init.log" | sed "s/^/init log ($name): /"
}

# check_cache NAME DIR: DIR holds the kernel's BTF, which came from the mirror.
check_cache() {
  same_file "$1: the BTF cache holds the kernel's BTF" "$SYSTEM_BTF" "$2/$release.btf"
  expect_in "$1: the cached BTF came from the mirror" "file:///test-mirror/$node_dir/$release.btf.tar.xz" \
    "$2/$release.json"
}

# check_sidecar NAME POD BACKEND MANIFEST: ready with BACKEND under the manifest's capabilities,
# /healthz 200, the app's writes journaled.
check_sidecar() {
  local name="$1" pod="$2" backend="$3" manifest="$4" sidecar="$2-diffkeeper-sidecar" probe infra_pid
  wait_for_log "$sidecar" "$READY_LINE" 30 || true
  podman logs "$sidecar" >"$work/$name.stdout" 2>"$work/$name.log" || true
  expect_in "$name: the sidecar is ready with $backend" "$READY_LINE$backend" "$work/$name.log"
  expect_eq "$name: the sidecar runs with the manifest's capabilities only" "[CAP_BPF CAP_PERFMON]" \
    "$(podman inspect "$sidecar" --format '{{.EffectiveCaps}}')"
  expect_eq "$name: the sidecar runs as uid 0 on a read-only root" "0 true" \
    "$(podman inspect "$sidecar" --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}')"
  # The startupProbe's path and port, resolved from the manifest as the kubelet does.
  probe="$(python3 - "$manifest" <<'EOF'
import sys, yaml
pod = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"] == "Deployment")["spec"]["template"]["spec"]
sidecar = next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "diffkeeper-sidecar")
get = sidecar["startupProbe"]["httpGet"]
port = next(p["containerPort"] for p in sidecar["ports"] if get["port"] in (p["name"], p["containerPort"]))
print(f"{port}{get['path']}")
EOF
)"
  infra_pid="$(podman inspect "$(podman pod inspect "$pod" --format '{{.InfraContainerID}}')" --format '{{.State.Pid}}')"
  check "$name: the startupProbe's http://:$probe answers 200" \
    nsenter -t "$infra_pid" -n curl -sf --max-time 5 "http://127.0.0.1:$probe"
  # The app writes /state/app.log every 10 s; classic sidecars miss writes before they are ready.
  wait_for_log "$sidecar" '"path":"/state/app.log"' 25 || true
  podman logs "$sidecar" >"$work/$name.stdout" 2>/dev/null || true
  expect_in "$name: the app's write reaches the journal" \
    "\"backend\":\"$backend\",\"op\":\"write\",\"path\":\"/state/app.log\"" "$work/$name.stdout"
  grep -F '"path":"/state/app.log"' "$work/$name.stdout" | head -n 2 | sed "s/^/journal ($name): /"
}

# teardown NAME POD FILE: SIGTERM (pod stop), the sidecar's exit code, then kube down.
teardown() {
  local name="$1" pod="$2" file="$3"
  # The placeholder app (sh as PID 1) ignores SIGTERM: podman kills it after 5 s.
  podman pod stop -t 5 "$pod" >/dev/null
  expect_eq "$name: the sidecar exits 0 on SIGTERM" "0" \
    "$(podman inspect "$pod-diffkeeper-sidecar" --format '{{.State.ExitCode}}')"
  podman kube down "$file" >/dev/null
  if podman pod exists "$pod" || podman ps -a --format '{{.Names}}' | grep -q "^$pod-"; then
    fail "$name: kube down removed the pod" "$(podman ps -a --pod --format '{{.Names}} {{.Status}}')"
  else
    pass "$name: kube down removed the pod"
  fi
}

# classic NAME BACKEND ADAPT_ARGS...: the classic-sidecar overlay, played and checked.
classic() {
  local name="$1" backend="$2" file="$work/$1.yaml" pod=diffkeeper-demo-pod-0
  shift 2
  adapt "$repo/k8s/overlays/classic-sidecar" "$file" "$@"
  play "$file"
  check_init "$name" "$pod"
  check_cache "$name" "$(mount_source "$pod-diffkeeper-sidecar" /var/cache/diffkeeper/btf)"
  check_sidecar "$name" "$pod" "$backend" "$file"
  expect_in "$name: the sidecar loads the BTF init cached" \
    "Loaded BTF spec from /var/cache/diffkeeper/btf/$release.btf" "$work/$name.log"
  teardown "$name" "$pod" "$file"
}

classic stock-seccomp inotify
expect_in "stock-seccomp: EPERM with the capability hint" "permission denied (EPERM) (grant CAP_BPF and CAP_PERFMON" \
  "$work/stock-seccomp.log"
classic localhost-seccomp tracepoint --seccomp-profile containerd-style.json

# node-cache: the DaemonSet first (it fills the node's cache), then the app pods' Deployment,
# with the classic-sidecar component (podman cannot run the native sidecar).
adapt "$repo/k8s/overlays/node-cache" "$work/node-cache-ds.yaml" --node-cache-dir "$work/node-cache" --kind DaemonSet \
  --seccomp-profile containerd-style.json
play "$work/node-cache-ds.yaml"
ds_pod="$(podman pod ps --format '{{.Name}}' | grep '^diffkeeper-btf-cache' | head -n 1)"
check_init node-cache-daemonset "$ds_pod"
check_cache node-cache-daemonset "$work/node-cache"
expect_eq "node-cache-daemonset: the pause container runs" "running" \
  "$(podman inspect "$ds_pod-pause" --format '{{.State.Status}}' 2>&1)"
mkdir -p "$work/node-cache-classic"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\ncomponents: [%s]\n' \
  "$(realpath --relative-to="$work/node-cache-classic" "$repo/k8s/overlays/node-cache")" \
  "$(realpath --relative-to="$work/node-cache-classic" "$repo/k8s/components/classic-sidecar")" \
  >"$work/node-cache-classic/kustomization.yaml"
adapt "$work/node-cache-classic" "$work/node-cache-app.yaml" --node-cache-dir "$work/node-cache" --kind Deployment \
  --seccomp-profile containerd-style.json
play "$work/node-cache-app.yaml"
expect_eq "node-cache-app: diffkeeper-init exited 0" "0" \
  "$(podman inspect diffkeeper-demo-pod-0-diffkeeper-init --format '{{.State.ExitCode}}' 2>&1)"
podman logs diffkeeper-demo-pod-0-diffkeeper-init >"$work/node-cache-app.init.log" 2>&1 || true
expect_in "node-cache-app: diffkeeper-init finds the node's cache filled" \
  "cached BTF /var/cache/diffkeeper/btf/$release.btf is valid: nothing to download" "$work/node-cache-app.init.log"
check_sidecar node-cache-app diffkeeper-demo-pod-0 tracepoint "$work/node-cache-app.yaml"
expect_in "node-cache-app: the sidecar loads the node's cached BTF" \
  "Loaded BTF spec from /var/cache/diffkeeper/btf/$release.btf" "$work/node-cache-app.log"
teardown node-cache-app diffkeeper-demo-pod-0 "$work/node-cache-app.yaml"
podman kube down "$work/node-cache-ds.yaml" >/dev/null
if podman pod exists "$ds_pod"; then fail "node-cache-daemonset: kube down removed the pod" "$ds_pod is still there"
else pass "node-cache-daemonset: kube down removed the pod"; fi
